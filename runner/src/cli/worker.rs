//! `cleanroom worker` and the `run --remote*` flags.

use std::path::PathBuf;
use std::time::Duration;

use super::{err, EXIT_BAD_INPUT, EXIT_OK};
use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::manifest::{ByteSize, DurationSpec};
use crate::plan::remote::{check_endpoint, CacheMode, RemoteSettings};

/// `run --remote URL --remote-instance NAME --remote-cache MODE --remote-exec`.
#[derive(Debug, Clone, Default)]
pub(super) struct RemoteFlags {
    pub(super) endpoint: Option<String>,
    pub(super) instance: Option<String>,
    pub(super) cache: Option<CacheMode>,
    pub(super) execute: bool,
}

impl RemoteFlags {
    /// The plan's `[remote]` with the flags applied over it.
    ///
    /// # Errors
    /// A malformed `--remote`, or another flag without a service to use.
    pub(super) fn apply(self, plan: Option<RemoteSettings>) -> Result<Option<RemoteSettings>, Diagnostics> {
        let bad = |message: String, hint: &str| Diagnostics::from(Diagnostic::new(Code::CR034, message).hint(hint));
        let mut settings = match (self.endpoint, plan) {
            (Some(endpoint), plan) => {
                check_endpoint(&endpoint)
                    .map_err(|e| bad(format!("--remote: {e}"), "write the service's address as grpc://host:port"))?;
                let (token, seal) = plan.map(|p| (p.token, p.seal)).unwrap_or_default();
                RemoteSettings {
                    endpoint,
                    instance: String::new(),
                    cache: CacheMode::ReadWrite,
                    execute: false,
                    token,
                    seal,
                }
            }
            (None, Some(plan)) => plan,
            (None, None) => {
                if self.instance.is_some() || self.cache.is_some() || self.execute {
                    return Err(bad(
                        "--remote-instance, --remote-cache and --remote-exec need a service".into(),
                        "name it with --remote grpc://host:port, or with [remote] endpoint in the pipeline",
                    ));
                }
                return Ok(None);
            }
        };
        if let Some(instance) = self.instance {
            settings.instance = instance;
        }
        if let Some(cache) = self.cache {
            settings.cache = cache;
        }
        settings.execute |= self.execute;
        Ok(Some(settings))
    }
}

/// Parses `--remote-cache`.
pub(super) fn cache_mode(word: &str) -> Result<CacheMode, String> {
    CacheMode::parse(word)
}

/// Parses a duration flag (`30s`, `10m`).
pub(super) fn duration(word: &str) -> Result<Duration, String> {
    DurationSpec::try_from(toml::Value::String(word.to_string())).map(|d| d.0)
}

/// Parses a size flag (`4GiB`).
pub(super) fn size(word: &str) -> Result<u64, String> {
    ByteSize::try_from(toml::Value::String(word.to_string())).map(|b| b.0)
}

/// `cleanroom worker`'s flags.
#[derive(Debug, clap::Args)]
pub struct WorkerCommand {
    /// The service, grpc://host:port (grpcs:// for TLS).
    #[arg(long, value_name = "URL")]
    pub remote: String,
    /// The service's instance name.
    #[arg(long, value_name = "NAME", default_value = "")]
    pub instance: String,
    /// Actions run at once (default 1).
    #[arg(long, short = 'j', default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// A host tool path native steps may need (repeatable); offered to
    /// the service, which leases this worker only actions whose tools it offers.
    #[arg(long, value_name = "PATH")]
    pub tool: Vec<PathBuf>,
    /// The longest step deadline accepted; longer steps are refused.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = duration)]
    pub max_timeout: std::time::Duration,
    /// The most memory a step may ask for; larger steps are refused.
    #[arg(long, value_name = "SIZE", default_value = "8GiB", value_parser = size)]
    pub max_memory: u64,
    /// Where input roots are materialised [default: worker/ in the cache directory].
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// An environment variable holding a bearer token for the service.
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,
    /// An environment variable holding the team's sealing key (as
    /// `[remote] seal`): results are sealed with it.
    #[arg(long, value_name = "VAR")]
    pub seal_env: Option<String>,
    /// Run native steps even when the kernel cannot jail them (unsafe).
    #[arg(long)]
    pub allow_unjailed: bool,
}

impl WorkerCommand {
    pub(super) fn execute(self) -> i32 {
        if let Err(e) = check_endpoint(&self.remote) {
            err(&format!("error[CR034]: --remote: {e}\n  = help: write the service's address as grpc://host:port\n"));
            return EXIT_BAD_INPUT;
        }
        let mut values = Vec::new();
        for (flag, var) in [("--token-env", &self.token_env), ("--seal-env", &self.seal_env)] {
            values.push(match var {
                Some(var) => match std::env::var(var) {
                    Ok(value) if value.len() >= crate::secrets::MIN_SECRET_LEN => Some(value),
                    _ => {
                        err(&format!(
                            "error[CR034]: {flag}: `{var}` is not set or shorter than {} characters\n  = help: export it, or drop {flag}\n",
                            crate::secrets::MIN_SECRET_LEN
                        ));
                        return EXIT_BAD_INPUT;
                    }
                },
                None => None,
            });
        }
        let seal = values.pop().flatten().map(String::into_bytes);
        let token = values.pop().flatten();
        for tool in &self.tool {
            if !tool.is_absolute() || !tool.exists() {
                err(&format!(
                    "error[CR034]: --tool `{}` is not an absolute path that exists here\n  = help: offer only tools this machine has\n",
                    tool.display()
                ));
                return EXIT_BAD_INPUT;
            }
        }
        let work_dir = self.work_dir.or_else(|| crate::cache::default_dir().map(|d| d.join("worker")));
        let Some(work_dir) = work_dir else {
            err("error[CR034]: no directory for actions: give --work-dir, or set CLEANROOM_CACHE_DIR or HOME\n");
            return EXIT_BAD_INPUT;
        };
        let options = crate::remote::worker::WorkerOptions {
            endpoint: self.remote,
            instance: self.instance,
            token,
            seal,
            jobs: usize::from(self.jobs).max(1),
            tools: self.tool,
            max_timeout: self.max_timeout,
            max_memory: self.max_memory,
            work_dir,
            run: crate::exec::RunOptions { allow_unjailed: self.allow_unjailed, ..Default::default() },
        };
        err(&format!(
            "cleanroom worker: {} session{} on {} (instance {:?}); Ctrl-C or SIGTERM stops it\n",
            options.jobs,
            if options.jobs == 1 { "" } else { "s" },
            options.endpoint,
            options.instance
        ));
        match crate::remote::worker::serve(options) {
            Ok(()) => EXIT_OK,
            Err(e) => {
                err(&format!(
                    "error[CR034]: worker: {e}\n  = help: check that the service is up and --remote names it\n"
                ));
                EXIT_BAD_INPUT
            }
        }
    }
}
