//! The command line: argument types (clap derive) and dispatch to the
//! library, one small file per command ([`run`], [`report`], [`pipeline`]
//! for validate/graph/list/lock/init, [`plugin`], [`cache`]).
//!
//! This is the only place that writes to stdout and stderr and decides exit
//! codes: 0 every step passed (or the pipeline is valid), 1 a step failed or
//! errored (or, with `--fail-on-override`, a person overrode one), 2 the
//! pipeline, a plugin or the command line could not be used, 3 the run waits
//! for an approval, 130 the run was stopped by Ctrl-C (after a clean shutdown). Colour follows
//! `--color` and `NO_COLOR`; `-q`/`-v` decide how much is printed.

mod cache;
mod governance;
mod pipeline;
mod plugin;
mod report;
mod run;
mod worker;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::diag::Diagnostics;
use crate::exec::{RunOptions, Selection};

/// Runs declarative TOML pipelines whose steps are sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "cleanroom", version, about, long_about = None)]
pub struct Cli {
    /// Print less: only failing steps and the summary.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more: every step's whole output; -v logs what the runner does
    /// (info), -vv more (debug). RUST_LOG, when set, decides the logging instead.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// When to use colours (the default `auto` means on a terminal, unless NO_COLOR is set).
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// The pipeline file argument: `cleanroom.toml` in the current directory when not given.
#[derive(Debug, Clone, clap::Args)]
pub struct PipelineArg {
    /// The pipeline file [default: cleanroom.toml].
    pub pipeline: Option<PathBuf>,
}

impl PipelineArg {
    /// The named file, else `cleanroom.toml` here or in the nearest
    /// directory above, within the repository.
    fn path(&self) -> PathBuf {
        self.pipeline.clone().unwrap_or_else(|| {
            let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
            crate::authoring::init::find_pipeline(&cwd)
        })
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a pipeline, then run its steps.
    Run {
        #[command(flatten)]
        pipeline: PipelineArg,
        /// Report format on stdout.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Steps to run at once (default: the number of CPU cores).
        #[arg(long, short = 'j', value_parser = clap::value_parser!(u16).range(1..))]
        jobs: Option<u16>,
        /// Run only these steps (ids or globs like `lint-*`, repeatable) and
        /// the steps they need.
        #[arg(long, value_name = "STEP")]
        only: Vec<String>,
        /// Do not run these steps (ids or globs, repeatable); steps that need
        /// them are skipped too.
        #[arg(long, value_name = "STEP")]
        skip: Vec<String>,
        /// Stop at the first step that fails or errors and will not be
        /// retried: nothing more starts, no retry round runs.
        #[arg(long)]
        fail_fast: bool,
        /// Print what would run (order, mounts, limits, gates, pins) and exit.
        #[arg(long)]
        dry_run: bool,
        /// Refuse to run unless every plugin matches `cleanroom.lock`.
        #[arg(long)]
        locked: bool,
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
        /// Give every stage at most N attempts (the first included),
        /// whatever its gates' `max_iterations` say: for debugging a loop.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_iterations: Option<u32>,
        /// An REAPI service (grpc://host:port, grpcs:// for TLS) whose
        /// action cache the run shares, over the pipeline's `[remote]`.
        #[arg(long, value_name = "URL")]
        remote: Option<String>,
        /// The service's instance name [default: "", or `[remote] instance`].
        #[arg(long, value_name = "NAME")]
        remote_instance: Option<String>,
        /// How the remote action cache is used: read-write (default), read
        /// (look up only) or off.
        #[arg(long, value_name = "MODE", value_parser = worker::cache_mode)]
        remote_cache: Option<crate::plan::remote::CacheMode>,
        /// Run steps on the service's workers (`cleanroom worker`); steps
        /// that judge a service or hold secrets stay on this machine.
        #[arg(long)]
        remote_exec: bool,
        /// Run on these files: steps with `include` run only when one of
        /// them matches, and see only those (steps without `include` run as usual).
        #[arg(long, num_args = 1.., value_name = "FILE", conflicts_with_all = ["staged", "from_ref"])]
        files: Vec<String>,
        /// Run on the files staged for the next commit (what the pre-commit hook does).
        #[arg(long, conflicts_with = "from_ref")]
        staged: bool,
        /// Run on the files changed since REF (`git diff REF...TO`), e.g. `origin/main`.
        #[arg(long, value_name = "REF")]
        from_ref: Option<String>,
        /// With --from-ref: the newer end [default: HEAD].
        #[arg(long, value_name = "REF", requires = "from_ref")]
        to_ref: Option<String>,
        /// Exit 1 when a person overrode a failed gate, as when it failed
        /// (for CI policies that do not accept overrides).
        #[arg(long)]
        fail_on_override: bool,
    },
    /// Approve an approval gate a run waits for (exit code 3), for the
    /// results it was asked about; `run --resume` then continues.
    #[command(name = "approve")]
    Approve {
        /// `[RUN] NAME`: the run id (default: the latest run waiting for
        /// NAME) and the approval's name.
        #[arg(num_args = 1..=2, value_names = ["RUN", "NAME"], required = true)]
        args: Vec<String>,
        #[command(flatten)]
        person: governance::Person,
    },
    /// Reject an approval gate a run waits for: `run --resume` then fails
    /// the run.
    Reject {
        /// `[RUN] NAME`, as for `approve`.
        #[arg(num_args = 1..=2, value_names = ["RUN", "NAME"], required = true)]
        args: Vec<String>,
        #[command(flatten)]
        person: governance::Person,
    },
    /// Accept a failed gate (a check or an evaluator): it is shown as
    /// `overridden`, never `passed`; `run --resume` continues past it.
    Override {
        /// `[RUN] STEP`: the run id (default: the latest run in which STEP
        /// failed) and the gate's id.
        #[arg(num_args = 1..=2, value_names = ["RUN", "STEP"], required = true)]
        args: Vec<String>,
        #[command(flatten)]
        person: governance::Person,
    },
    /// Record your judgement of a finished run's result (after reviewing
    /// the change), independent of its gates: what `cleanroom stats`
    /// compares evaluators with.
    Verdict {
        /// The run id (default: the latest finished run).
        run: Option<String>,
        /// The result is good.
        #[arg(long, conflicts_with = "reject", required_unless_present = "reject")]
        accept: bool,
        /// The result is not good.
        #[arg(long)]
        reject: bool,
        #[command(flatten)]
        person: governance::Person,
    },
    /// Per evaluator, over every recorded run: runs, pass rate, mean
    /// satisfaction, override rate, false-pass and false-fail rates, Cohen's
    /// kappa against people, and whether it may merge on its own word.
    Stats {
        /// Only runs started on or after this date (YYYY-MM-DD, UTC).
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        /// `human` or `json`.
        #[arg(long, value_enum, default_value_t = InspectFormat::Human)]
        format: InspectFormat,
        /// The pipeline whose `auto_merge_*` thresholds apply [default:
        /// cleanroom.toml, when there is one].
        #[arg(long)]
        pipeline: Option<PathBuf>,
        /// The workspace whose runs to read [default: the nearest one at or
        /// above the current directory].
        #[arg(long)]
        workspace: Option<PathBuf>,
    },
    /// Install git hooks that run the pipeline: before each commit on the
    /// staged files (and with `--hook pre-push`, before each push on what
    /// it sends). `git commit --no-verify` skips it once.
    Install {
        #[command(flatten)]
        pipeline: PipelineArg,
        /// Which hooks (repeatable) [default: pre-commit].
        #[arg(long = "hook", value_enum)]
        hooks: Vec<crate::git::Hook>,
        /// Keep a hook another tool wrote as `NAME.legacy`, run before Cleanroom.
        #[arg(long)]
        force: bool,
        /// Remove Cleanroom's hooks (restoring any `.legacy` one) instead.
        #[arg(long)]
        uninstall: bool,
    },
    /// Serve an REAPI service's scheduler as a worker (Bots API): lease
    /// Cleanroom actions, run each in the same sandbox and jail as `run`,
    /// report the results. Stops cleanly on Ctrl-C or SIGTERM.
    Worker(worker::WorkerCommand),
    /// Print the report of a past run again, from `.cleanroom/runs/`: the
    /// latest run by default, exactly as it printed then.
    Report {
        /// The run id (a directory name in `.cleanroom/runs/`); the latest
        /// run when not given.
        #[arg(conflicts_with = "history")]
        run: Option<String>,
        /// Report format on stdout.
        #[arg(long, value_enum, default_value_t = ReportFormat::Human)]
        format: ReportFormat,
        /// Every recorded run and the evaluators' agreement with people, as
        /// one page (`--format html` only).
        #[arg(long)]
        history: bool,
        /// Exit 1 when a person overrode a failed gate.
        #[arg(long)]
        fail_on_override: bool,
        /// The workspace whose runs to read (the directory holding
        /// `.cleanroom/`) [default: the nearest one at or above the current
        /// directory].
        #[arg(long)]
        workspace: Option<PathBuf>,
    },
    /// Check a pipeline without running any plugin: TOML, ids, needs, mounts,
    /// plugin files, pins and worlds (plugins are compiled, not run).
    Validate {
        #[command(flatten)]
        pipeline: PipelineArg,
    },
    /// Print the steps and what they need as a graph.
    Graph {
        #[command(flatten)]
        pipeline: PipelineArg,
        /// `dot` (Graphviz) or `mermaid`.
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// List the steps, one per line, in the order they may start.
    List {
        #[command(flatten)]
        pipeline: PipelineArg,
    },
    /// Write a starter pipeline (cleanroom.toml) for the project in DIR, with
    /// the plugins it uses vendored into cleanroom-plugins/.
    Init {
        /// The project directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Pin every plugin of a pipeline by sha256 in `cleanroom.lock` beside it
    /// (`run --locked` then refuses any drift).
    Lock {
        #[command(flatten)]
        pipeline: PipelineArg,
    },
    /// Write, inspect and test plugins.
    Plugin {
        /// What to do.
        #[command(subcommand)]
        action: PluginAction,
    },
    /// Inspect or empty the cache of precompiled plugins and step results
    /// (`CLEANROOM_CACHE_DIR`, else `$XDG_CACHE_HOME/cleanroom`, else
    /// `~/.cache/cleanroom`).
    Cache {
        /// What to do with it.
        #[command(subcommand)]
        action: CacheAction,
    },
    /// Internal: confine this process as the JSON spec on stdin says and
    /// run the program (the spec never goes on argv, which others can read).
    #[command(name = "__jail", hide = true)]
    Jail,
}

/// `cleanroom plugin` actions.
#[derive(Debug, Subcommand)]
pub enum PluginAction {
    /// Print a component's world, contract version, imports, exports, size
    /// and sha256, without running it; for an OCI reference, also its
    /// annotations and digests (it is pulled into the cache first).
    Inspect {
        /// The component file (plugins/dist/forbid_pattern.wasm), or an OCI
        /// reference (localhost:5000/evals/holdout:1.0.0).
        file: PathBuf,
        /// `human` or `json`.
        #[arg(long, value_enum, default_value_t = InspectFormat::Human)]
        format: InspectFormat,
        #[command(flatten)]
        login: RegistryLogin,
    },
    /// Publish a component to an OCI registry in the Wasm OCI artifact
    /// layout (as `wkg oci push` does), with its world, contract and SDK
    /// versions, description and source as annotations.
    Push {
        /// The component file.
        file: PathBuf,
        /// Where to publish: host[:port]/repository:tag.
        reference: String,
        /// What the plugin does, for the reviewer who reads `plugin inspect`.
        #[arg(long)]
        description: Option<String>,
        /// Where its source is (a URL).
        #[arg(long)]
        source: Option<String>,
        #[command(flatten)]
        login: RegistryLogin,
    },
    /// Fetch a component from an OCI registry into the cache, checking its
    /// digests (a tag is asked of the registry again).
    Pull {
        /// host[:port]/repository:tag or ...@sha256:<manifest digest>.
        reference: String,
        #[command(flatten)]
        login: RegistryLogin,
    },
    /// Create a plugin project that builds and passes its own test.
    New {
        /// The plugin's name: lowercase letters, digits and `-` (e.g. `no-fixme`).
        name: String,
        /// Which world it implements.
        #[arg(long, value_enum)]
        kind: KindArg,
        /// The language it is written in.
        #[arg(long, value_enum)]
        lang: crate::authoring::new::Lang,
        /// Where to create the NAME directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Run a plugin against test cases: CASES/<case>/case.toml with files/
    /// (and expected/ for stages).
    Test {
        /// The built component.
        plugin: PathBuf,
        /// The directory holding the cases.
        #[arg(default_value = "tests")]
        cases: PathBuf,
    },
}

/// Credentials for `plugin push`/`pull`/`inspect` (default: Docker's
/// `config.json`). The password is read from stdin, never from argv.
#[derive(Debug, clap::Args)]
pub struct RegistryLogin {
    /// The account to log in as; the password comes from stdin.
    #[arg(long, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password (or token) from stdin.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
}

/// `--kind` of `plugin new`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// Reads files and reports findings.
    Check,
    /// Writes files.
    Stage,
    /// Judges a program against scenarios.
    Evaluator,
}

/// `cleanroom cache` actions.
#[derive(Debug, Clone, Subcommand)]
pub enum CacheAction {
    /// Print the cache directory.
    Dir,
    /// Print how many precompiled plugins, step results, stage files and
    /// build directories it holds, their sizes, and the cap (max-size).
    Size,
    /// Delete every precompiled plugin, step result and stage file, and
    /// clear the build directories too.
    Clean,
    /// Print the cap on the cache's size, or set it (default 2 GiB). Over
    /// it, the least recently used entries are deleted until the cache is
    /// at 90% of it, after each run and at once when the cap is set.
    MaxSize {
        /// The new cap, as a pipeline's `memory` takes sizes (`5GiB`,
        /// `500MB`), or `default` for 2 GiB; none prints the current one.
        size: Option<String>,
    },
}

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per step, findings grouped by step, a summary.
    Human,
    /// Exactly one JSON document (schemas/report.schema.json).
    Json,
    /// One JSON event per line as the run goes (schemas/events.schema.json).
    Jsonl,
    /// JUnit XML: a testcase per step and per evaluator scenario.
    Junit,
    /// SARIF 2.1.0, for GitHub code scanning.
    Sarif,
    /// One self-contained HTML page (no external assets; works offline).
    Html,
}

/// `report --format`: every format of `run` except the live event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// One line per step, findings grouped by step, a summary.
    Human,
    /// Exactly one JSON document (schemas/report.schema.json).
    Json,
    /// JUnit XML: a testcase per step and per evaluator scenario.
    Junit,
    /// SARIF 2.1.0, for GitHub code scanning.
    Sarif,
    /// One self-contained HTML page (no external assets; works offline).
    Html,
}

impl From<ReportFormat> for Format {
    fn from(format: ReportFormat) -> Format {
        match format {
            ReportFormat::Human => Format::Human,
            ReportFormat::Json => Format::Json,
            ReportFormat::Junit => Format::Junit,
            ReportFormat::Sarif => Format::Sarif,
            ReportFormat::Html => Format::Html,
        }
    }
}

/// `graph --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
}

/// `plugin inspect --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InspectFormat {
    /// Aligned lines.
    Human,
    /// One JSON document.
    Json,
}

/// Exit code: everything passed.
pub const EXIT_OK: i32 = 0;
/// Exit code: a step failed or errored.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: bad input (pipeline, plugin, flags).
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit code: the run waits for a person's decision on an approval gate.
pub const EXIT_AWAITING: i32 = 3;
/// Exit code: stopped by Ctrl-C (128 + SIGINT), after a clean shutdown.
pub const EXIT_INTERRUPTED: i32 = 130;

/// What every command shares: how to print.
#[derive(Debug, Clone, Copy)]
struct Output {
    /// Colours on stdout.
    color: bool,
    /// Colours on stderr.
    color_err: bool,
    quiet: bool,
    verbose: u8,
}

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
    if !matches!(cli.command, Command::Jail) {
        init_logging(cli.verbose);
        crate::scratch::sweep_abandoned();
    }
    let color_for = |terminal: bool| match cli.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    };
    let output = Output {
        color: color_for(std::io::stdout().is_terminal()),
        color_err: color_for(std::io::stderr().is_terminal()),
        quiet: cli.quiet,
        verbose: cli.verbose,
    };
    match cli.command {
        Command::Run {
            pipeline,
            format,
            jobs,
            only,
            skip,
            fail_fast,
            dry_run,
            locked,
            allow_unjailed,
            resume,
            no_cache,
            max_iterations,
            remote,
            remote_instance,
            remote_cache,
            remote_exec,
            files,
            staged,
            from_ref,
            to_ref,
            fail_on_override,
        } => {
            let mut options =
                RunOptions { allow_unjailed, resume, cache: !no_cache, fail_fast, ..RunOptions::default() };
            if let Some(jobs) = jobs {
                options.jobs = usize::from(jobs);
            }
            let files = match (files.is_empty(), staged, from_ref) {
                (false, _, _) => Some(crate::git::FileSelection::Files(files)),
                (_, true, _) => Some(crate::git::FileSelection::Staged),
                (_, _, Some(from)) => {
                    Some(crate::git::FileSelection::Changed { from, to: to_ref.unwrap_or_else(|| "HEAD".to_string()) })
                }
                _ => None,
            };
            let selection = Selection { only, skip, locked, max_iterations, files };
            let remote = worker::RemoteFlags {
                endpoint: remote,
                instance: remote_instance,
                cache: remote_cache,
                execute: remote_exec,
            };
            let run =
                run::RunCommand { pipeline: pipeline.path(), format, selection, dry_run, remote, fail_on_override };
            run.execute(options, output)
        }
        Command::Report { run, format, workspace, history, fail_on_override } => {
            report::report(report::ReportCommand { workspace, run, format, history, fail_on_override }, output)
        }
        Command::Approve { args, person } => {
            let (run, target) = governance::run_and_target(&args);
            governance::decide(crate::governance::DecisionKind::Approval, run, target, true, person, output)
        }
        Command::Reject { args, person } => {
            let (run, target) = governance::run_and_target(&args);
            governance::decide(crate::governance::DecisionKind::Approval, run, target, false, person, output)
        }
        Command::Override { args, person } => {
            let (run, target) = governance::run_and_target(&args);
            governance::decide(crate::governance::DecisionKind::Override, run, target, true, person, output)
        }
        Command::Verdict { run, accept, reject: _, person } => {
            governance::decide(crate::governance::DecisionKind::Verdict, run, String::new(), accept, person, output)
        }
        Command::Stats { since, format, pipeline, workspace } => {
            governance::stats(workspace, pipeline, since.as_deref(), format == InspectFormat::Json, output)
        }
        Command::Validate { pipeline } => pipeline::validate(&pipeline.path(), output),
        Command::Graph { pipeline, format } => pipeline::with_plan(&pipeline.path(), output, |plan| match format {
            GraphFormat::Dot => crate::plan::show::dot(plan),
            GraphFormat::Mermaid => crate::plan::show::mermaid(plan),
        }),
        Command::List { pipeline } => pipeline::with_plan(&pipeline.path(), output, crate::plan::show::list),
        Command::Init { dir } => pipeline::init(&dir, output),
        Command::Install { pipeline, hooks, force, uninstall } => {
            pipeline::install(&pipeline.path(), &hooks, force, uninstall, output)
        }
        Command::Lock { pipeline } => pipeline::lock(&pipeline.path(), output),
        Command::Plugin { action } => plugin::plugin(action, output),
        Command::Cache { action } => cache::cache(action),
        Command::Jail => crate::sandbox::jail::enter::main(),
        Command::Worker(worker) => worker.execute(),
    }
}

fn fail(diags: &Diagnostics, output: Output) -> i32 {
    let text = diags.render();
    let text = if output.color_err {
        text.lines()
            .map(|line| match line.strip_prefix("error[") {
                Some(rest) => format!("\x1b[1;31merror\x1b[0m[{rest}"),
                None => line.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    } else {
        text
    };
    err(&text);
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

/// Logs go to stderr: RUST_LOG when set, else `warn`, `info` with -v,
/// `debug` with -vv, `trace` with -vvv.
fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
