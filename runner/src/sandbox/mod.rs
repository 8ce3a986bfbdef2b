//! The sandbox: the only code that builds a `WasiCtx` or touches wasmtime.
//!
//! A [`Sandbox`] owns one wasmtime `Engine` (epoch interruption on, a ticker
//! thread advancing it every [`limits::TICK`]) and one `Linker` with WASI 0.2.
//! [`Sandbox::load`] compiles a plugin once and pre-links it; every
//! invocation then gets a fresh `Store` built from the step's [`Grant`] by
//! the capability modules and nothing else. Defaults, for every invocation:
//!
//! * no environment variables, no arguments, no working directory;
//! * stdin closed; stdout and stderr captured up to the grant's cap ([`output`]);
//! * no preopens but the grant's mounts, read-only unless writable ([`fs`]);
//! * no TCP, no UDP, no name lookup;
//! * a wall-clock deadline, a memory cap, a table cap and a cap on bytes per
//!   host call ([`limits`]).

pub mod fs;
pub mod jail;
pub mod limits;
pub mod output;

use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::plan::Grant;
use crate::plugin::{PluginInfo, World};
use output::{CappedPipe, Captured};

/// Generated host bindings for the `cleanroom:plugin` worlds.
pub mod bindings {
    /// The `check` world.
    pub mod check {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "check",
            exports: { default: async },
        });
    }
}

pub use bindings::check::cleanroom::plugin::types::{Finding, Invocation, Mount as GuestMount, Severity};

/// A failure of the host or of loading, as opposed to a plugin's own failure.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The engine could not be configured.
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
    /// wasmtime rejected the component (invalid, or its types do not match its world).
    #[error("plugin `{plugin}` cannot be loaded: {reason}")]
    Load { plugin: String, reason: String },
    /// A mount could not be opened at run time.
    #[error("mount `{path}` cannot be opened: {reason}")]
    Mount { path: String, reason: String },
}

/// Why an invocation did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The deadline passed.
    Timeout(Duration),
    /// The guest tried to grow its memory past the cap.
    Memory(u64),
    /// The guest tried to grow a table past [`limits::MAX_TABLE_ELEMENTS`].
    Table,
    /// The guest trapped (panic, unreachable, stack overflow, ...).
    Trap(String),
    /// The plugin returned an error string.
    Plugin(String),
    /// The host could not set the invocation up.
    Host(String),
    /// The kernel jail for a native program could not be set up.
    Jail(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout(limit) => write!(f, "timed out after {}", crate::manifest::DurationSpec(*limit)),
            Failure::Memory(cap) => write!(f, "exceeded its memory limit of {}", crate::manifest::ByteSize(*cap)),
            Failure::Table => write!(f, "exceeded the table limit of {} elements", limits::MAX_TABLE_ELEMENTS),
            Failure::Trap(reason) => write!(f, "crashed: {reason}"),
            Failure::Plugin(message) => write!(f, "plugin error: {message}"),
            Failure::Host(reason) => write!(f, "could not be run: {reason}"),
            Failure::Jail(reason) => write!(f, "could not be jailed, so it did not run: {reason}"),
        }
    }
}

/// The result of one invocation, with what the plugin printed.
#[derive(Debug, Clone)]
pub struct Outcome<T> {
    /// What the plugin returned, or why it did not.
    pub result: Result<T, Failure>,
    /// Captured stdout.
    pub stdout: Captured,
    /// Captured stderr.
    pub stderr: Captured,
    /// Wall time from Store creation to drop.
    pub duration: Duration,
}

/// Per-Store host state: WASI context, its resource table, the limiter.
pub struct StepState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: limits::StepLimiter,
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// A compiled, pre-linked plugin, ready to instantiate many times.
#[derive(Clone)]
pub struct LoadedPlugin {
    name: String,
    check: Option<bindings::check::CheckPre<StepState>>,
}

/// The engine and linker shared by every invocation in a run.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<StepState>,
}

impl Sandbox {
    /// Starts an engine with epoch interruption and a ticker thread.
    ///
    /// # Errors
    /// [`SandboxError::Engine`] when wasmtime cannot be configured here.
    pub fn new() -> Result<Sandbox, SandboxError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| SandboxError::Engine(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| SandboxError::Engine(e.to_string()))?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("cleanroom-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(limits::TICK);
                }
            })
            .map_err(|e| SandboxError::Engine(format!("cannot start the epoch ticker: {e}")))?;
        Ok(Sandbox { engine, linker })
    }

    /// Compiles the plugin `name` described by `info` and links it against
    /// WASI and its world.
    ///
    /// # Errors
    /// [`SandboxError::Load`] when the bytes are not a valid component, its
    /// imports cannot be satisfied, or its exports do not have the types its
    /// world declares.
    pub fn load(&self, name: &str, info: &PluginInfo) -> Result<LoadedPlugin, SandboxError> {
        let load_error = |e: wasmtime::Error| SandboxError::Load { plugin: name.to_string(), reason: format!("{e:#}") };
        let component = Component::from_file(&self.engine, &info.path).map_err(load_error)?;
        let pre = self.linker.instantiate_pre(&component).map_err(load_error)?;
        let check = match info.world {
            World::Check => Some(bindings::check::CheckPre::new(pre).map_err(load_error)?),
            _ => None,
        };
        Ok(LoadedPlugin { name: name.to_string(), check })
    }

    /// Runs a check plugin once in a fresh Store built from `grant`.
    pub async fn run_check(
        &self,
        plugin: &LoadedPlugin,
        grant: &Grant,
        invocation: &Invocation,
    ) -> Outcome<Vec<Finding>> {
        let started = Instant::now();
        let stdout = CappedPipe::new(grant.limits.output);
        let stderr = CappedPipe::new(grant.limits.output);
        let result = match &plugin.check {
            Some(pre) => self.call_check(pre, grant, invocation, &stdout, &stderr).await,
            None => Err(Failure::Host(format!("plugin `{}` is not a check", plugin.name))),
        };
        Outcome { result, stdout: stdout.contents(), stderr: stderr.contents(), duration: started.elapsed() }
    }

    async fn call_check(
        &self,
        pre: &bindings::check::CheckPre<StepState>,
        grant: &Grant,
        invocation: &Invocation,
        stdout: &CappedPipe,
        stderr: &CappedPipe,
    ) -> Result<Vec<Finding>, Failure> {
        let (mut store, _staging) = self.store(grant, stdout, stderr)?;
        let deadline = Instant::now() + grant.limits.timeout;
        limits::arm_deadline(&mut store, deadline);
        let call = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance.call_check(&mut store, invocation).await
        };
        // The epoch callback interrupts running guest code; this backstop also
        // covers time spent inside host calls.
        let backstop = grant.limits.timeout + 4 * limits::TICK;
        let result = match tokio::time::timeout(backstop, call).await {
            Ok(result) => result,
            Err(_) => return Err(Failure::Timeout(grant.limits.timeout)),
        };
        match result {
            Ok(Ok(findings)) => Ok(findings),
            Ok(Err(message)) => Err(Failure::Plugin(message)),
            Err(error) => Err(classify_trap(&error, store.data(), grant)),
        }
    }

    /// A Store with exactly what `grant` allows; see the module docs for defaults.
    fn store(
        &self,
        grant: &Grant,
        stdout: &CappedPipe,
        stderr: &CappedPipe,
    ) -> Result<(Store<StepState>, fs::Staging), Failure> {
        let mut builder = WasiCtxBuilder::new();
        builder
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            // Filesystem calls run inline on this step's worker thread instead
            // of hopping to a blocking pool: steps already run in parallel.
            .allow_blocking_current_thread(true);
        let staging = fs::apply(&mut builder, &grant.mounts).map_err(|e| Failure::Host(e.to_string()))?;
        let state = StepState {
            wasi: builder.build(),
            table: ResourceTable::new(),
            limiter: limits::StepLimiter::new(grant.limits.memory),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_hostcall_fuel(limits::HOSTCALL_FUEL);
        Ok((store, staging))
    }
}

/// Turns a wasmtime error from a call into the most specific [`Failure`].
fn classify_trap(error: &wasmtime::Error, state: &StepState, grant: &Grant) -> Failure {
    if state.limiter.memory_exceeded {
        return Failure::Memory(grant.limits.memory);
    }
    if state.limiter.table_exceeded {
        return Failure::Table;
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Failure::Timeout(grant.limits.timeout),
        Some(Trap::StackOverflow) => Failure::Trap("stack overflow".into()),
        Some(Trap::UnreachableCodeReached) => {
            Failure::Trap("the plugin panicked or aborted (unreachable executed)".into())
        }
        Some(trap) => Failure::Trap(trap.to_string()),
        None => Failure::Trap(first_line(&format!("{error:#}"))),
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().chars().take(300).collect()
}
