//! The command line: argument types (clap derive) and dispatch to the library.
//!
//! This is the only place that writes to stdout and stderr and decides exit
//! codes: 0 every step passed (or the pipeline is valid), 1 a step failed or
//! errored, 2 the pipeline, a plugin or the command line could not be used.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::diag::Diagnostics;
use crate::exec::{self, RunOptions};
use crate::manifest::Manifest;
use crate::plan::Plan;
use crate::report;
use crate::sandbox::Sandbox;

/// Runs declarative TOML pipelines whose steps are sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "cleanroom", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a pipeline, then run its steps.
    Run {
        /// The pipeline file, e.g. pipelines/self-check.toml.
        pipeline: PathBuf,
        /// Report format on stdout.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Steps to run at once (default: the number of CPU cores).
        #[arg(long, short = 'j', value_parser = clap::value_parser!(u16).range(1..))]
        jobs: Option<u16>,
        /// Run native (`run = [...]`) steps even when the kernel cannot jail
        /// them (no Landlock or no user namespaces). Unsafe for untrusted
        /// programs: each such step is marked `unjailed` and warned about.
        #[arg(long)]
        allow_unjailed: bool,
        /// Continue the latest unfinished run of this pipeline (in
        /// `.cleanroom/runs/`), reusing steps that passed and whose inputs
        /// are unchanged.
        #[arg(long)]
        resume: bool,
        /// Run every step, even those whose inputs match a cached result
        /// (results of this run are not cached either).
        #[arg(long)]
        no_cache: bool,
    },
    /// Check a pipeline without running any plugin: TOML, ids, needs, mounts,
    /// plugin files, pins and worlds (plugins are compiled, not run).
    Validate {
        /// The pipeline file.
        pipeline: PathBuf,
    },
    /// Inspect or empty the cache of precompiled plugins and step results
    /// (`CLEANROOM_CACHE_DIR`, else `$XDG_CACHE_HOME/cleanroom`, else
    /// `~/.cache/cleanroom`).
    Cache {
        /// What to do with it.
        #[command(subcommand)]
        action: CacheAction,
    },
    /// Internal: confine this process as SPEC says and exec the program.
    #[command(name = "__jail", hide = true)]
    Jail {
        /// The jail spec, as JSON.
        spec: String,
    },
}

/// `cleanroom cache` actions.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum CacheAction {
    /// Print the cache directory.
    Dir,
    /// Print how many precompiled plugins and step results it holds, and their size.
    Size,
    /// Delete every precompiled plugin and step result.
    Clean,
}

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per step, findings grouped by step, a summary.
    Human,
    /// Exactly one JSON document.
    Json,
}

/// Exit code: everything passed.
pub const EXIT_OK: i32 = 0;
/// Exit code: a step failed or errored.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: bad input (pipeline, plugin, flags).
pub const EXIT_BAD_INPUT: i32 = 2;

/// Parses the process arguments, runs the command and returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_BAD_INPUT } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    if !matches!(cli.command, Command::Jail { .. }) {
        init_logging();
    }
    match cli.command {
        Command::Run { pipeline, format, jobs, allow_unjailed, resume, no_cache } => {
            let mut options = RunOptions { allow_unjailed, resume, cache: !no_cache, ..RunOptions::default() };
            if let Some(jobs) = jobs {
                options.jobs = usize::from(jobs);
            }
            run(&pipeline, format, &options)
        }
        Command::Validate { pipeline } => validate(&pipeline),
        Command::Cache { action } => cache(action),
        Command::Jail { spec } => crate::sandbox::jail::enter::main(&spec),
    }
}

fn run(pipeline: &Path, format: Format, options: &RunOptions) -> i32 {
    let plan = match load_plan(pipeline) {
        Ok(plan) => plan,
        Err(diags) => return fail(&diags),
    };
    let report = match exec::run(&plan, options) {
        Ok(report) => report,
        Err(diags) => return fail(&diags),
    };
    let text = match format {
        Format::Human => report::human::render(&report),
        Format::Json => report::json::render(&report),
    };
    out(&text);
    for step in report.steps.iter().filter(|s| s.unjailed.is_some()) {
        err(&format!(
            "warning: step `{}` ran WITHOUT the kernel jail (--allow-unjailed): {}\n",
            step.id,
            step.unjailed.as_deref().unwrap_or_default()
        ));
    }
    if report.passed() {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

fn validate(pipeline: &Path) -> i32 {
    let plan = match load_plan(pipeline) {
        Ok(plan) => plan,
        Err(diags) => return fail(&diags),
    };
    let loaded = Sandbox::new(crate::sandbox::pool::Capacity::for_jobs(1, plan.max_memory()))
        .map_err(|e| Diagnostics::from(crate::diag::Diagnostic::new(crate::diag::Code::CR011, e.to_string())))
        .and_then(|sandbox| exec::load_plugins(&plan, &sandbox));
    if let Err(diags) = loaded {
        return fail(&diags);
    }
    out(&format!(
        "ok: pipeline `{}` is valid ({} steps, {} plugins, workspace {})\n",
        plan.name,
        plan.steps.len(),
        plan.plugins.len(),
        plan.workspace.display()
    ));
    EXIT_OK
}

fn cache(action: CacheAction) -> i32 {
    use crate::cache::{default_dir, results::ResultCache, usage, CACHE_DIR_VAR};
    use crate::sandbox::cache::CompileCache;
    let Some(dir) = default_dir() else {
        err(&format!("error: no cache directory: set {CACHE_DIR_VAR} or HOME\n"));
        return EXIT_BAD_INPUT;
    };
    if let CacheAction::Dir = action {
        out(&format!("{}\n", dir.display()));
        return EXIT_OK;
    }
    let opened = CompileCache::open(&dir).and_then(|compiled| Ok((compiled, ResultCache::open(&dir)?)));
    let (compiled, results) = match opened {
        Ok(caches) => caches,
        Err(reason) => {
            err(&format!("error: {reason}\n"));
            return EXIT_BAD_INPUT;
        }
    };
    match action {
        CacheAction::Size => {
            let (plugins, plugin_bytes) = compiled.size();
            let (result_files, result_bytes) = usage(&dir.join("results"));
            let (blobs, blob_bytes) = usage(&dir.join("blobs"));
            out(&format!(
                "{plugins} precompiled plugins ({}), {result_files} step results and {blobs} stage files ({}) in {}\n",
                crate::manifest::ByteSize(plugin_bytes),
                crate::manifest::ByteSize(result_bytes + blob_bytes),
                dir.display()
            ));
        }
        CacheAction::Clean => out(&format!(
            "removed {} precompiled plugins and {} cached results and files from {}\n",
            compiled.clean(),
            results.clean(),
            dir.display()
        )),
        CacheAction::Dir => {}
    }
    EXIT_OK
}

/// Reads, parses and resolves a pipeline file.
///
/// # Errors
/// Every diagnostic found.
pub fn load_plan(pipeline: &Path) -> Result<Plan, Diagnostics> {
    let (manifest, source) = Manifest::load(pipeline)?;
    Plan::resolve(&manifest, &source)
}

fn fail(diags: &Diagnostics) -> i32 {
    err(&diags.render());
    EXIT_BAD_INPUT
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
}

/// Writes to stderr while holding the stdout lock, so lines never interleave.
fn err(text: &str) {
    let _stdout = std::io::stdout().lock();
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
