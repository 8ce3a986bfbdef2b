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
//! * no TCP, no UDP, no name lookup; `wasi:http` only for plugins that import
//!   it, only to the step's `allow_hosts`, and at most `max_requests` per
//!   step run ([`network`]);
//! * for evaluators, the run being judged ([`judging`]);
//! * for checks, a native regex search of the same mounts ([`search`]);
//! * no environment variables but the secrets the step is granted;
//! * a wall-clock deadline, a memory cap, a table cap and a cap on bytes per
//!   host call ([`limits`]).

pub mod build_dirs;
pub mod cache;
pub mod fs;
pub mod jail;
pub mod judging;
pub mod limits;
pub mod network;
pub mod output;
pub mod pool;
pub mod quota;
pub mod search;
pub mod service;
pub mod subject;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::plan::Grant;
use crate::plugin::{PluginInfo, World};
use crate::secrets::Secrets;
use output::{CappedPipe, Captured};

/// Generated host bindings for the `cleanroom:plugin` worlds. The `types`
/// interface is generated once (in `check`) and shared by the others.
pub mod bindings {
    /// The `check` world, whose `search` import the host provides.
    pub mod check {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "check",
            imports: { default: async },
            exports: { default: async },
        });
    }
    /// The `stage` world.
    pub mod stage {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "stage",
            exports: { default: async },
            with: { "cleanroom:plugin/types": super::check::cleanroom::plugin::types },
        });
    }
    /// The `evaluator` world, whose `subject` import the host provides.
    pub mod evaluator {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "evaluator",
            imports: { default: async },
            exports: { default: async },
            with: { "cleanroom:plugin/types": super::check::cleanroom::plugin::types },
        });
    }
}

pub use bindings::check::cleanroom::plugin::types::{Finding, Invocation, Mount as GuestMount, Severity, Verdict};
pub use subject::{NativeProgram, SubjectFailure, SubjectOutput, SubjectRunner};

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

impl Failure {
    /// The part of the message the plugin chose (a trap's text, the
    /// plugin's error string), which [`std::fmt::Display`] puts last;
    /// `None` when all of it is the host's words.
    pub fn produced(&self) -> Option<&str> {
        match self {
            Failure::Trap(text) | Failure::Plugin(text) => Some(text),
            _ => None,
        }
    }

    /// Whether the host or the jail failed, not the guest: retrying the
    /// stage that produced the guest's input cannot change it.
    pub fn is_infrastructure(&self) -> bool {
        matches!(self, Failure::Host(_) | Failure::Jail(_))
    }

    /// A few fixed words for the failure, with none of the guest's or
    /// wasmtime's text: what may reach a stage when the failing step could
    /// read the holdout or ran the program under test.
    pub fn category(&self) -> &'static str {
        match self {
            Failure::Timeout(_) => "timed out",
            Failure::Memory(_) | Failure::Table => "ran out of memory",
            Failure::Trap(_) => "crashed",
            Failure::Plugin(_) => "reported an error",
            Failure::Host(_) | Failure::Jail(_) => "could not run",
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
    /// Outgoing requests the network policy refused, one line each.
    pub denied: Vec<String>,
}

/// Per-Store host state: WASI context, its resource table, the limiter, and
/// for evaluators the subject they may run.
pub struct StepState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: limits::StepLimiter,
    /// The grant's mounts, which `search` searches (the same ones WASI
    /// preopens).
    mounts: Arc<[crate::plan::Mount]>,
    subject: Option<Arc<SubjectRunner>>,
    /// For evaluators: the service their requests go to.
    service: Option<Arc<service::RunningService>>,
    /// When this invocation's deadline passes (requests end by then).
    deadline: Instant,
    http: network::HttpState,
    /// For `evaluate` calls: the scenario run being judged.
    judging: Option<Arc<judging::JudgingRun>>,
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl wasmtime_wasi_http::WasiHttpView for StepState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http.ctx,
            table: &mut self.table,
            hooks: &mut self.http.hooks,
        }
    }
}

/// A compiled, pre-linked plugin, ready to instantiate many times.
#[derive(Clone)]
pub struct LoadedPlugin {
    name: String,
    /// The component's sha256, lowercase hex.
    sha256: String,
    world: Loaded,
}

impl LoadedPlugin {
    /// The component's sha256, lowercase hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

#[derive(Clone)]
enum Loaded {
    Check(bindings::check::CheckPre<StepState>),
    Stage(bindings::stage::StagePre<StepState>),
    Evaluator(bindings::evaluator::EvaluatorPre<StepState>),
}

/// One guest call on a fresh Store: borrows the Store for the call only.
type Call<T> = Box<
    dyn for<'a> FnOnce(&'a mut Store<StepState>) -> Pin<Box<dyn Future<Output = wasmtime::Result<T>> + Send + 'a>>
        + Send,
>;

/// The engine and linkers shared by every invocation in a run.
pub struct Sandbox {
    engine: Engine,
    allocator: pool::Allocator,
    /// WASI 0.2 and the host interfaces (`subject`, `service`, `judging`, `search`).
    linker: Linker<StepState>,
    /// The same plus outgoing `wasi:http`, for plugins that import it.
    http_linker: Linker<StepState>,
    cache: Option<cache::CompileCache>,
    secrets: Arc<Secrets>,
}

impl Sandbox {
    /// Starts an engine sized for `capacity` (see [`pool`]) and its epoch
    /// ticker thread.
    ///
    /// # Errors
    /// [`SandboxError::Engine`] when wasmtime cannot be configured here.
    pub fn new(capacity: pool::Capacity) -> Result<Sandbox, SandboxError> {
        Sandbox::with_allocator(capacity, pool::Allocator::Pooling)
    }

    /// As [`Sandbox::new`], preferring `allocator` (benchmarks compare them).
    ///
    /// # Errors
    /// [`SandboxError::Engine`] when wasmtime cannot be configured here.
    pub fn with_allocator(capacity: pool::Capacity, allocator: pool::Allocator) -> Result<Sandbox, SandboxError> {
        let (engine, allocator) = pool::engine(capacity, allocator).map_err(SandboxError::Engine)?;
        let mut linker = Linker::new(&engine);
        let engine_error = |e: wasmtime::Error| SandboxError::Engine(e.to_string());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_error)?;
        bindings::evaluator::cleanroom::plugin::subject::add_to_linker::<StepState, HasSelf<StepState>>(
            &mut linker,
            |s| s,
        )
        .map_err(engine_error)?;
        bindings::evaluator::cleanroom::plugin::service::add_to_linker::<StepState, HasSelf<StepState>>(
            &mut linker,
            |s| s,
        )
        .map_err(engine_error)?;
        bindings::evaluator::cleanroom::plugin::judging::add_to_linker::<StepState, HasSelf<StepState>>(
            &mut linker,
            |s| s,
        )
        .map_err(engine_error)?;
        bindings::check::cleanroom::plugin::search::add_to_linker::<StepState, HasSelf<StepState>>(&mut linker, |s| s)
            .map_err(engine_error)?;
        let mut http_linker = linker.clone();
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut http_linker).map_err(engine_error)?;
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
        let cache = crate::cache::default_dir().and_then(|dir| match cache::CompileCache::open(&dir) {
            Ok(cache) => Some(cache),
            Err(reason) => {
                tracing::warn!("{reason}; compiling without a cache");
                None
            }
        });
        Ok(Sandbox { engine, allocator, linker, http_linker, cache, secrets: Arc::default() })
    }

    /// Gives granted steps these secret values (as environment variables
    /// and request headers); without it no step gets any.
    pub fn with_secrets(mut self, secrets: Arc<Secrets>) -> Sandbox {
        self.secrets = secrets;
        self
    }

    /// The instance allocator the engine got: pooled, or on demand when the
    /// pool could not be reserved.
    pub fn allocator(&self) -> pool::Allocator {
        self.allocator
    }

    /// Compiles `path` (sha256 `sha256`) through the compile cache, if any.
    fn compile(&self, path: &std::path::Path, sha256: &str) -> wasmtime::Result<Component> {
        match &self.cache {
            Some(cache) => cache.component(&self.engine, path, sha256),
            None => Component::from_file(&self.engine, path),
        }
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
        let component = self.compile(&info.path, &info.sha256).map_err(load_error)?;
        let linker = if info.imports_http() { &self.http_linker } else { &self.linker };
        let pre = linker.instantiate_pre(&component).map_err(load_error)?;
        let world = match info.world {
            World::Check => Loaded::Check(bindings::check::CheckPre::new(pre).map_err(load_error)?),
            World::Stage => Loaded::Stage(bindings::stage::StagePre::new(pre).map_err(load_error)?),
            World::Evaluator => Loaded::Evaluator(bindings::evaluator::EvaluatorPre::new(pre).map_err(load_error)?),
            _ => {
                return Err(SandboxError::Load {
                    plugin: name.to_string(),
                    reason: format!("it exports {}", info.world),
                })
            }
        };
        Ok(LoadedPlugin { name: name.to_string(), sha256: info.sha256.clone(), world })
    }

    /// Compiles a subject program (a `wasi:cli` command) for an evaluator,
    /// to run with `grant`, no run going past `step_deadline` (the
    /// evaluator step's).
    ///
    /// # Errors
    /// A one-line reason when the file is not a command component.
    pub fn load_subject(
        &self,
        path: &std::path::Path,
        grant: &Grant,
        step_deadline: Instant,
    ) -> Result<Arc<SubjectRunner>, String> {
        let info = crate::plugin::inspect(path).map_err(|e| e.to_string())?;
        if info.world != World::Command {
            return Err(format!("the subject `{}` exports {}, not a `wasi:cli` command", path.display(), info.world));
        }
        // wasmtime's first line says what is wrong; the rest is context.
        let one_line = |e: wasmtime::Error| first_line(&format!("{e:#}"));
        let component = self.compile(path, &info.sha256).map_err(one_line)?;
        let pre = self.linker.instantiate_pre(&component).map_err(one_line)?;
        let command = wasmtime_wasi::p2::bindings::CommandPre::new(pre).map_err(one_line)?;
        Ok(Arc::new(SubjectRunner::component(self.engine.clone(), command, grant.clone(), step_deadline)))
    }

    /// Compiles a `wasi:http/proxy` component (a service or twin) to serve
    /// in-process with `grant`.
    ///
    /// # Errors
    /// A one-line reason when it is not a component exporting
    /// `wasi:http/incoming-handler`.
    pub fn load_proxy(&self, path: &std::path::Path, grant: &Grant) -> Result<service::ComponentServer, String> {
        let info = crate::plugin::inspect(path).map_err(|e| e.to_string())?;
        let one_line = |e: wasmtime::Error| first_line(&format!("{e:#}"));
        let component = self.compile(path, &info.sha256).map_err(one_line)?;
        let pre = self.http_linker.instantiate_pre(&component).map_err(one_line)?;
        let proxy = wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre)
            .map_err(|e| format!("`{}` is not a `wasi:http/proxy` component: {}", path.display(), one_line(e)))?;
        Ok(service::ComponentServer::new(self.engine.clone(), proxy, grant.clone()))
    }

    /// Runs a check plugin once in a fresh Store built from `grant`,
    /// counting its requests against `budget` (its step's `max_requests`).
    pub async fn run_check(
        &self,
        plugin: &LoadedPlugin,
        grant: &Grant,
        invocation: &Invocation,
        budget: Option<Arc<network::RequestBudget>>,
    ) -> Outcome<Vec<Finding>> {
        let Loaded::Check(pre) = &plugin.world else { return wrong_world(plugin, "check") };
        let (pre, invocation) = (pre.clone(), invocation.clone());
        let call: Call<Result<Vec<Finding>, String>> = Box::new(move |store| {
            Box::pin(
                async move { pre.instantiate_async(&mut *store).await?.call_check(&mut *store, &invocation).await },
            )
        });
        let judged = Judged { requests: budget, ..Judged::default() };
        plugin_result(invoke(&self.engine, grant, &self.secrets, judged, call).await)
    }

    /// Runs a stage plugin once; `grant`'s writable mounts must already point
    /// at staged copies (the executor commits them on success). Its requests
    /// count against `budget`.
    pub async fn run_stage(
        &self,
        plugin: &LoadedPlugin,
        grant: &Grant,
        invocation: &Invocation,
        budget: Option<Arc<network::RequestBudget>>,
    ) -> Outcome<String> {
        let Loaded::Stage(pre) = &plugin.world else { return wrong_world(plugin, "stage") };
        let (pre, invocation) = (pre.clone(), invocation.clone());
        let call: Call<Result<String, String>> = Box::new(move |store| {
            Box::pin(async move { pre.instantiate_async(&mut *store).await?.call_run(&mut *store, &invocation).await })
        });
        let judged = Judged { requests: budget, ..Judged::default() };
        plugin_result(invoke(&self.engine, grant, &self.secrets, judged, call).await)
    }

    /// Asks an evaluator for its scenario names, in a fresh instance.
    pub async fn run_scenarios(
        &self,
        plugin: &LoadedPlugin,
        grant: &Grant,
        invocation: &Invocation,
        judged: Judged,
    ) -> Outcome<Vec<String>> {
        let Loaded::Evaluator(pre) = &plugin.world else { return wrong_world(plugin, "evaluator") };
        let (pre, invocation) = (pre.clone(), invocation.clone());
        let call: Call<Result<Vec<String>, String>> = Box::new(move |store| {
            Box::pin(
                async move { pre.instantiate_async(&mut *store).await?.call_scenarios(&mut *store, &invocation).await },
            )
        });
        plugin_result(invoke(&self.engine, grant, &self.secrets, judged, call).await)
    }

    /// Runs one scenario once, in a fresh instance.
    pub async fn run_evaluate(
        &self,
        plugin: &LoadedPlugin,
        grant: &Grant,
        scenario: &str,
        invocation: &Invocation,
        judged: Judged,
    ) -> Outcome<Verdict> {
        let Loaded::Evaluator(pre) = &plugin.world else { return wrong_world(plugin, "evaluator") };
        let (pre, invocation, scenario) = (pre.clone(), invocation.clone(), scenario.to_string());
        let call: Call<Verdict> = Box::new(move |store| {
            Box::pin(async move {
                pre.instantiate_async(&mut *store).await?.call_evaluate(&mut *store, &scenario, &invocation).await
            })
        });
        invoke(&self.engine, grant, &self.secrets, judged, call).await
    }
}

/// What an invocation is connected to beyond its grant, for the step run
/// it belongs to: an evaluator's subject, service and scenario run, and any
/// plugin step's request budget (all `None` when absent).
#[derive(Clone, Default)]
pub struct Judged {
    /// The program it runs through the `subject` interface.
    pub subject: Option<Arc<SubjectRunner>>,
    /// The service it sends requests to through the `service` interface.
    pub service: Option<Arc<service::RunningService>>,
    /// The scenario run an `evaluate` call judges (the `judging` interface).
    pub judging: Option<Arc<judging::JudgingRun>>,
    /// The step run's `max_requests`, shared by all its invocations.
    pub requests: Option<Arc<network::RequestBudget>>,
    /// Origins its outgoing `wasi:http` requests reach in-process: a
    /// component service's twins.
    pub routes: network::LocalRoutes,
}

/// Runs `call` on a fresh Store built from `grant`, under its deadline, and
/// captures what the guest printed.
async fn invoke<T>(engine: &Engine, grant: &Grant, secrets: &Secrets, judged: Judged, call: Call<T>) -> Outcome<T> {
    let started = Instant::now();
    let stdout = CappedPipe::new(grant.limits.output);
    let stderr = CappedPipe::new(grant.limits.output);
    let denied = Arc::new(Mutex::new(Vec::new()));
    let io = StoreIo {
        stdout: &stdout,
        stderr: &stderr,
        stdin: Vec::new(),
        args: None,
        secrets,
        denied: Arc::clone(&denied),
        env: Vec::new(),
    };
    let result = match new_store(engine, grant, io, judged) {
        Err(failure) => Err(failure),
        Ok((mut store, _staging)) => {
            limits::arm_deadline(&mut store, Instant::now() + grant.limits.timeout);
            // The epoch callback interrupts running guest code; this backstop
            // also covers time spent inside host calls.
            let backstop = grant.limits.timeout + 4 * limits::TICK;
            match tokio::time::timeout(backstop, call(&mut store)).await {
                Err(_) => Err(Failure::Timeout(grant.limits.timeout)),
                Ok(Ok(value)) => Ok(value),
                Ok(Err(error)) => Err(classify_trap(&error, store.data(), grant)),
            }
        }
    };
    let denied = denied.lock().map(|d| d.clone()).unwrap_or_default();
    Outcome { result, stdout: stdout.contents(), stderr: stderr.contents(), duration: started.elapsed(), denied }
}

/// Moves a plugin's own `err` into [`Failure::Plugin`].
fn plugin_result<T>(outcome: Outcome<Result<T, String>>) -> Outcome<T> {
    Outcome {
        result: outcome.result.and_then(|inner| inner.map_err(Failure::Plugin)),
        stdout: outcome.stdout,
        stderr: outcome.stderr,
        duration: outcome.duration,
        denied: outcome.denied,
    }
}

fn wrong_world<T>(plugin: &LoadedPlugin, world: &str) -> Outcome<T> {
    Outcome {
        result: Err(Failure::Host(format!("plugin `{}` is not a {world} plugin", plugin.name))),
        stdout: Captured::default(),
        stderr: Captured::default(),
        duration: Duration::ZERO,
        denied: Vec::new(),
    }
}

/// What a Store is connected to besides its grant.
pub(crate) struct StoreIo<'a> {
    pub(crate) stdout: &'a CappedPipe,
    pub(crate) stderr: &'a CappedPipe,
    /// For subject programs; plugins get none.
    pub(crate) stdin: Vec<u8>,
    /// For subject programs; plugins get none.
    pub(crate) args: Option<&'a [String]>,
    /// Where granted secrets' values come from.
    pub(crate) secrets: &'a Secrets,
    /// Where the network policy records refused requests.
    pub(crate) denied: Arc<Mutex<Vec<String>>>,
    /// Environment variables besides granted secrets (a component
    /// service's twin URLs); plugins get none.
    pub(crate) env: Vec<(String, String)>,
}

/// A Store with exactly what `grant` allows; see the module docs for defaults.
fn new_store(
    engine: &Engine,
    grant: &Grant,
    io: StoreIo<'_>,
    judged: Judged,
) -> Result<(Store<StepState>, fs::Staging), Failure> {
    let StoreIo { stdout, stderr, stdin, args, secrets, denied, env } = io;
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
    if let Some(args) = args {
        builder.args(args).stdin(wasmtime_wasi::p2::pipe::MemoryInputPipe::new(stdin));
    }
    for (name, value) in &env {
        builder.env(name, value);
    }
    for name in &grant.secret_env {
        let value = secrets.value(name).ok_or_else(|| Failure::Host(format!("secret `{name}` was not read")))?;
        builder.env(name, value);
    }
    let staging = fs::apply(&mut builder, &grant.mounts).map_err(|e| Failure::Host(e.to_string()))?;
    let state = StepState {
        wasi: builder.build(),
        table: ResourceTable::new(),
        limiter: limits::StepLimiter::new(grant.limits.memory),
        mounts: grant.mounts.clone().into(),
        subject: judged.subject,
        service: judged.service,
        deadline: Instant::now() + grant.limits.timeout,
        http: network::HttpState::new(grant.http(), secrets, denied, judged.requests, judged.routes),
        judging: judged.judging,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    store.set_hostcall_fuel(limits::HOSTCALL_FUEL);
    Ok((store, staging))
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
        // The root cause says what happened (e.g. the per-call byte cap);
        // the outer layers are backtraces.
        None => Failure::Trap(first_line(&error.root_cause().to_string())),
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().chars().take(300).collect()
}
