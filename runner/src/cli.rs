//! The command line: argument types (clap derive) and dispatch to the library.
//!
//! This is the only place that writes to stdout and stderr and decides exit
//! codes: 0 every step passed (or the pipeline is valid), 1 a step failed or
//! errored, 2 the pipeline, a plugin or the command line could not be used,
//! 130 the run was stopped by Ctrl-C (after a clean shutdown). Colour follows
//! `--color` and `NO_COLOR`; `-q`/`-v` decide how much is printed.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
    fn path(&self) -> PathBuf {
        self.pipeline.clone().unwrap_or_else(|| PathBuf::from(crate::authoring::init::PIPELINE_FILE))
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
    /// Print a component's world, contract version, imports, exports, size and sha256.
    Inspect {
        /// The component, e.g. plugins/dist/forbid_pattern.wasm.
        file: PathBuf,
        /// `human` or `json`.
        #[arg(long, value_enum, default_value_t = InspectFormat::Human)]
        format: InspectFormat,
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
    /// Exactly one JSON document (schemas/report.schema.json).
    Json,
    /// One JSON event per line as the run goes (schemas/events.schema.json).
    Jsonl,
    /// JUnit XML: a testcase per step and per evaluator scenario.
    Junit,
    /// SARIF 2.1.0, for GitHub code scanning.
    Sarif,
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
        } => {
            let mut options =
                RunOptions { allow_unjailed, resume, cache: !no_cache, fail_fast, ..RunOptions::default() };
            if let Some(jobs) = jobs {
                options.jobs = usize::from(jobs);
            }
            let run = RunCommand { pipeline: pipeline.path(), format, only, skip, dry_run, locked };
            run.execute(options, output)
        }
        Command::Validate { pipeline } => validate(&pipeline.path(), output),
        Command::Graph { pipeline, format } => with_plan(&pipeline.path(), output, |plan| match format {
            GraphFormat::Dot => crate::plan::show::dot(plan),
            GraphFormat::Mermaid => crate::plan::show::mermaid(plan),
        }),
        Command::List { pipeline } => with_plan(&pipeline.path(), output, crate::plan::show::list),
        Command::Init { dir } => init(&dir, output),
        Command::Lock { pipeline } => lock(&pipeline.path(), output),
        Command::Plugin { action } => plugin(action, output),
        Command::Cache { action } => cache(action),
        Command::Jail => crate::sandbox::jail::enter::main(),
    }
}

/// How long a run may take to stop cleanly after Ctrl-C before it is ended
/// anyway (a step stuck where it cannot be cancelled must not hold it).
const CTRL_C_GRACE: Duration = Duration::from_secs(10);

/// Ctrl-C must always end a run: the first stops it cleanly (the
/// executor's own handler); a second one, or the first once
/// [`CTRL_C_GRACE`] has passed, exits at once with [`EXIT_INTERRUPTED`].
/// A thread with a runtime of its own watches, so a scheduler whose workers
/// are all busy cannot delay it; commits replace each file whole, so an exit
/// mid-commit leaves no half-written file.
fn exit_on_second_ctrl_c() {
    let watcher = std::thread::Builder::new().name("ctrl-c".into()).spawn(|| {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        runtime.block_on(async {
            let kind = tokio::signal::unix::SignalKind::interrupt();
            let Ok(mut interrupts) = tokio::signal::unix::signal(kind) else { return };
            if interrupts.recv().await.is_none() {
                return;
            }
            tokio::select! {
                _ = interrupts.recv() => {}
                () = tokio::time::sleep(CTRL_C_GRACE) => {}
            }
            let _ = std::io::stderr().write_all(b"\ninterrupted: exiting now\n");
            #[expect(clippy::exit, reason = "a second Ctrl-C ends the process, whatever the run is doing")]
            std::process::exit(EXIT_INTERRUPTED);
        });
    });
    if let Err(e) = watcher {
        tracing::warn!("cannot watch for a second Ctrl-C: {e}");
    }
}

/// `cleanroom run`, once its flags are parsed.
struct RunCommand {
    pipeline: PathBuf,
    format: Format,
    only: Vec<String>,
    skip: Vec<String>,
    dry_run: bool,
    locked: bool,
}

impl RunCommand {
    fn execute(self, mut options: RunOptions, output: Output) -> i32 {
        let plan = match load_plan(&self.pipeline)
            .and_then(|plan| crate::plan::select::select(plan, &self.only, &self.skip))
            .and_then(|plan| if self.locked { crate::lock::verify(&plan).map(|()| plan) } else { Ok(plan) })
        {
            Ok(plan) => plan,
            Err(diags) => return fail(&diags, output),
        };
        if self.dry_run {
            out(&crate::plan::show::dry_run(&plan));
            return EXIT_OK;
        }
        options.ctrl_c = true;
        exit_on_second_ctrl_c();
        options.observer = match self.format {
            Format::Jsonl => Some(Arc::new(report::live::EventStream)),
            _ if std::io::stderr().is_terminal() && !output.quiet => Some(Arc::new(report::live::Progress::new())),
            _ => None,
        };
        let report = match exec::run(&plan, &options) {
            Ok(report) => report,
            Err(diags) => return fail(&diags, output),
        };
        let style = report::human::Style { color: output.color, quiet: output.quiet, verbose: output.verbose > 0 };
        let text = match self.format {
            Format::Human => report::human::render(&report, style),
            Format::Json => report::json::render(&report),
            // Already streamed, `run_finished` last.
            Format::Jsonl => String::new(),
            Format::Junit => report::junit::render(&report),
            Format::Sarif => report::sarif::render(&report, &plan),
        };
        out(&text);
        for step in report.steps.iter().filter(|s| s.unjailed.is_some()) {
            err(&format!(
                "warning: step `{}` ran WITHOUT the kernel jail (--allow-unjailed): {}\n",
                step.id,
                step.unjailed.as_deref().unwrap_or_default()
            ));
        }
        match report.status {
            "passed" => EXIT_OK,
            "interrupted" => {
                if self.format != Format::Human {
                    err("interrupted (Ctrl-C): nothing half-written; `cleanroom run --resume` continues the run\n");
                }
                EXIT_INTERRUPTED
            }
            _ => EXIT_FAILED,
        }
    }
}

fn validate(pipeline: &Path, output: Output) -> i32 {
    let plan = match load_plan(pipeline) {
        Ok(plan) => plan,
        Err(diags) => return fail(&diags, output),
    };
    let loaded = Sandbox::new(crate::sandbox::pool::Capacity::for_jobs(1, plan.max_memory()))
        .map_err(|e| Diagnostics::from(crate::diag::Diagnostic::new(crate::diag::Code::CR011, e.to_string())))
        .and_then(|sandbox| exec::load_plugins(&plan, &sandbox));
    if let Err(diags) = loaded {
        return fail(&diags, output);
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

/// Loads the plan and prints what `show` makes of it.
fn with_plan(pipeline: &Path, output: Output, show: impl Fn(&Plan) -> String) -> i32 {
    match load_plan(pipeline) {
        Ok(plan) => {
            out(&show(&plan));
            EXIT_OK
        }
        Err(diags) => fail(&diags, output),
    }
}

fn init(dir: &Path, output: Output) -> i32 {
    match crate::authoring::init::init(dir) {
        Ok(written) => {
            for path in &written {
                out(&format!("wrote {}\n", path.display()));
            }
            let pipeline = dir.join(crate::authoring::init::PIPELINE_FILE);
            out(&format!("next: cleanroom run {}\n", pipeline.display()));
            EXIT_OK
        }
        Err(diags) => fail(&diags, output),
    }
}

fn lock(pipeline: &Path, output: Output) -> i32 {
    let written = load_plan(pipeline).and_then(|plan| crate::lock::write(&plan));
    match written {
        Ok(written) => {
            for change in &written.changed {
                out(&format!("  {change}\n"));
            }
            out(&format!(
                "locked {} plugins in {} ({} changed)\n",
                written.pinned,
                written.path.display(),
                written.changed.len()
            ));
            EXIT_OK
        }
        Err(diags) => fail(&diags, output),
    }
}

fn plugin(action: PluginAction, output: Output) -> i32 {
    match action {
        PluginAction::Inspect { file, format } => match crate::plugin::inspect(&file) {
            Ok(info) => {
                out(&match format {
                    InspectFormat::Human => inspect_text(&info),
                    InspectFormat::Json => {
                        let mut text = serde_json::to_string_pretty(&info).unwrap_or_default();
                        text.push('\n');
                        text
                    }
                });
                EXIT_OK
            }
            Err(e) => fail(
                &crate::diag::Diagnostic::new(crate::diag::Code::CR026, e.to_string())
                    .hint("give a WebAssembly component built for wasm32-wasip2")
                    .into(),
                output,
            ),
        },
        PluginAction::New { name, kind, lang, dir } => {
            let kind = match kind {
                KindArg::Check => crate::plan::StepKind::Check,
                KindArg::Stage => crate::plan::StepKind::Stage,
                KindArg::Evaluator => crate::plan::StepKind::Evaluator,
            };
            match crate::authoring::new::scaffold(&name, kind, lang, &dir) {
                Ok((created, files)) => {
                    out(&format!("created {} ({} files)\n", created.display(), files.len()));
                    out(&format!(
                        "next: cd {} && ./build.sh && cleanroom plugin test {name}.wasm tests\n",
                        created.display()
                    ));
                    EXIT_OK
                }
                Err(diags) => fail(&diags, output),
            }
        }
        PluginAction::Test { plugin, cases } => {
            let options = RunOptions { ctrl_c: false, ..RunOptions::default() };
            let results = match crate::authoring::test::run_cases(&plugin, &cases, &options) {
                Ok(results) => results,
                Err(diags) => return fail(&diags, output),
            };
            let style = report::human::Style { color: output.color, ..Default::default() };
            let width = results.iter().map(|r| r.name.len()).max().unwrap_or(0).max(20) + 4;
            let mut failed = 0;
            let mut text = String::new();
            for result in &results {
                let dots = ".".repeat(width.saturating_sub(result.name.len() + 1));
                let ok = result.problems.is_empty();
                let word = style.verdict(ok);
                text.push_str(&format!("{} {dots} {word}\n", result.name));
                for problem in &result.problems {
                    text.push_str(&format!("  {problem}\n"));
                }
                if !ok || output.verbose > 0 {
                    for line in result.report.stdout.lines().chain(result.report.stderr.lines()) {
                        text.push_str(&format!("  | {line}\n"));
                    }
                }
                failed += usize::from(!ok);
            }
            text.push_str(&format!("\n{} cases: {} passed, {failed} failed\n", results.len(), results.len() - failed));
            out(&text);
            if failed == 0 {
                EXIT_OK
            } else {
                EXIT_FAILED
            }
        }
    }
}

/// `plugin inspect`'s aligned lines.
fn inspect_text(info: &crate::plugin::PluginInfo) -> String {
    let world = match &info.world {
        crate::plugin::World::Check => "check".to_string(),
        crate::plugin::World::Stage => "stage".to_string(),
        crate::plugin::World::Evaluator => "evaluator".to_string(),
        crate::plugin::World::Command => "wasi:cli/command (a program, usable as an evaluator's subject)".to_string(),
        other => other.to_string(),
    };
    let mut text = format!(
        "file      {}\nworld     {world}\ncontract  {}\nsize      {:.1} KiB ({} bytes)\nsha256    {}\n",
        info.path.display(),
        info.contract.as_deref().map_or("-".to_string(), |v| format!("cleanroom:plugin@{v}")),
        info.size as f64 / 1024.0,
        info.size,
        info.sha256
    );
    text.push_str(&format!("exports   {}\n", info.exports.join(", ")));
    text.push_str("imports\n");
    for import in &info.imports {
        text.push_str(&format!("  {import}\n"));
    }
    let foreign = info.foreign_imports();
    if !foreign.is_empty() {
        text.push_str(&format!("refused   a step cannot use it: it imports {}\n", foreign.join(", ")));
    }
    text.push_str(&format!("pin       sha256 = \"{}\"\n", info.sha256));
    text
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
