//! The executor: loads a plan's plugins and runs its steps as a DAG.
//!
//! Steps whose `needs` all passed run concurrently, at most `jobs` at a time,
//! each in its own sandboxed invocation; a step whose `needs` did not pass is
//! `skipped`. One step's failure never aborts its siblings. The executor
//! takes a [`Plan`] and never reads TOML or builds a sandbox by hand.

pub mod writes;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;

use crate::diag::{Code, Diagnostic, Diagnostics, Location};
use crate::plan::{Action, Plan, Step};
use crate::report::{FindingReport, RunReport, StepReport, StepStatus};
use crate::sandbox::jail::{self, Bind, JailSpec};
use crate::sandbox::output::Captured;
use crate::sandbox::{Finding, GuestMount, Invocation, LoadedPlugin, Outcome, Sandbox, Severity};

/// How to run a plan.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Steps running at once; at least 1.
    pub jobs: usize,
    /// The `cleanroom` binary, started as the jail helper for native steps.
    /// Default: the running executable (right for the CLI; a program that
    /// embeds the library must point this at a `cleanroom` binary).
    pub jail_helper: PathBuf,
    /// Run native steps without the kernel jail when the kernel cannot
    /// provide it (each such step is marked `unjailed` in the report).
    pub allow_unjailed: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            jail_helper: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("cleanroom")),
            allow_unjailed: false,
        }
    }
}

/// Compiles and links every plugin a step of `plan` uses.
///
/// # Errors
/// A `CR011` diagnostic per plugin wasmtime rejects.
pub fn load_plugins(plan: &Plan, sandbox: &Sandbox) -> Result<BTreeMap<String, LoadedPlugin>, Diagnostics> {
    let mut loaded = BTreeMap::new();
    let mut diags = Diagnostics::default();
    for step in &plan.steps {
        let Action::Plugin(name) = &step.action else { continue };
        if loaded.contains_key(name) {
            continue;
        }
        let Some(info) = plan.plugins.get(name) else { continue };
        match sandbox.load(name, info) {
            Ok(plugin) => {
                loaded.insert(name.clone(), plugin);
            }
            Err(e) => diags.push(
                Diagnostic::new(Code::CR011, e.to_string())
                    .at(Location::Path(info.path.clone()))
                    .hint("rebuild the plugin against wit/plugin.wit for the wasm32-wasip2 target"),
            ),
        }
    }
    diags.into_result(loaded)
}

/// Loads `plan`'s plugins and runs every step.
///
/// # Errors
/// Diagnostics when the engine cannot start or a plugin cannot be loaded;
/// nothing has run then. Step failures are not errors: they are in the report.
pub fn run(plan: &Plan, options: &RunOptions) -> Result<RunReport, Diagnostics> {
    let sandbox = Sandbox::new().map_err(|e| Diagnostics::from(Diagnostic::new(Code::CR011, e.to_string())))?;
    let plugins = load_plugins(plan, &sandbox)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.jobs.max(1))
        .enable_all()
        .build()
        .map_err(|e| Diagnostics::from(Diagnostic::new(Code::CR011, format!("cannot start the scheduler: {e}"))))?;
    Ok(runtime.block_on(execute(plan, sandbox, plugins, options)))
}

/// What every step task shares.
struct Context {
    sandbox: Sandbox,
    plugins: BTreeMap<String, LoadedPlugin>,
    workspace: PathBuf,
    options: RunOptions,
}

/// Runs the DAG to completion on the current tokio runtime.
async fn execute(
    plan: &Plan,
    sandbox: Sandbox,
    plugins: BTreeMap<String, LoadedPlugin>,
    options: &RunOptions,
) -> RunReport {
    let jobs = options.jobs.max(1);
    let context = Arc::new(Context { sandbox, plugins, workspace: plan.workspace.clone(), options: options.clone() });
    let started = Instant::now();
    let index: BTreeMap<&str, usize> = plan.steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    let mut reports: Vec<Option<StepReport>> = vec![None; plan.steps.len()];
    let mut launched = vec![false; plan.steps.len()];
    let mut running = JoinSet::new();

    loop {
        for (i, step) in plan.steps.iter().enumerate() {
            if launched[i] {
                continue;
            }
            let blocker = step.needs.iter().find_map(|need| {
                reports[index[need.as_str()]]
                    .as_ref()
                    .filter(|r| r.status != StepStatus::Passed)
                    .map(|r| (need, r.status))
            });
            if let Some((need, status)) = blocker {
                launched[i] = true;
                let reason = format!(
                    "needs `{need}`, which {}",
                    if status == StepStatus::Skipped { "was skipped" } else { "did not pass" }
                );
                reports[i] = Some(StepReport::skipped(&step.id, step.kind, reason));
                continue;
            }
            let ready = step.needs.iter().all(|need| reports[index[need.as_str()]].is_some());
            if ready && running.len() < jobs {
                launched[i] = true;
                let context = Arc::clone(&context);
                let step = step.clone();
                running.spawn(async move { (i, run_step(&context, &step).await) });
            }
        }
        // Plan order is topological, so one pass has skipped every step whose
        // needs failed and launched every ready one: with nothing running,
        // nothing is left.
        if running.is_empty() {
            break;
        }
        match running.join_next().await {
            Some(Ok((i, report))) => reports[i] = Some(report),
            Some(Err(join_error)) => {
                // A panic inside a step task is a bug in the runner; record it
                // against no step rather than losing the others.
                tracing::error!("a step task failed: {join_error}");
            }
            None => {}
        }
    }

    let steps = reports
        .into_iter()
        .zip(&plan.steps)
        .map(|(report, step)| {
            report.unwrap_or_else(|| error_report(step, "the runner lost this step's result (internal error)".into()))
        })
        .collect();
    RunReport::new(plan.name.clone(), started.elapsed(), steps)
}

/// Runs one step and turns its outcome into a report.
async fn run_step(context: &Context, step: &Step) -> StepReport {
    let step = match resolve_deferred_mounts(step, &context.workspace) {
        Ok(step) => step,
        Err(reason) => return error_report(step, reason),
    };
    let step = &step;
    match &step.action {
        Action::Plugin(name) => run_plugin_step(context, name, step).await,
        Action::Command { program, args, display } => run_command_step(context, program, args, display, step).await,
    }
}

async fn run_plugin_step(context: &Context, name: &str, step: &Step) -> StepReport {
    let invocation = Invocation {
        step: step.id.clone(),
        config: step.config.clone(),
        mounts: step.grant.mounts.iter().map(|m| GuestMount { path: m.guest.clone(), writable: m.writable }).collect(),
        attempt: 1,
        feedback: Vec::new(),
    };
    let Some(plugin) = context.plugins.get(name) else {
        return error_report(step, format!("plugin `{name}` was not loaded (internal error)"));
    };
    let outcome: Outcome<Vec<Finding>> = context.sandbox.run_check(plugin, &step.grant, &invocation).await;
    let (status, reason, findings) = match outcome.result {
        Ok(findings) => {
            let findings: Vec<FindingReport> = findings.into_iter().map(finding_report).collect();
            let failed = findings.iter().any(|f| f.severity == "error");
            (if failed { StepStatus::Failed } else { StepStatus::Passed }, None, findings)
        }
        Err(failure) => (StepStatus::Error, Some(failure.to_string()), Vec::new()),
    };
    let mut report = report_with_output(step, status, reason, outcome.stdout, outcome.stderr, outcome.duration);
    report.findings = findings;
    report
}

/// Runs a native program in the jail on staged copies of its write mounts;
/// commits the writes only if it exits 0.
async fn run_command_step(
    context: &Context,
    program: &std::path::Path,
    args: &[String],
    display: &str,
    step: &Step,
) -> StepReport {
    let staged = match writes::stage(&step.grant.mounts) {
        Ok(staged) => staged,
        Err(e) => return error_report(step, format!("could not stage its write mounts: {e}")),
    };
    let temp = match tempfile::Builder::new().prefix("cleanroom-tmp-").tempdir() {
        Ok(temp) => temp,
        Err(e) => return error_report(step, format!("could not create its temporary directory: {e}")),
    };
    // A bind mount needs a mount point: create missing write directories for
    // the run, and remove them again unless the writes are committed.
    let mut mount_points = Vec::new();
    for mount in step.grant.mounts.iter().filter(|m| m.writable && !m.exists) {
        if let Err(e) = fs_err::create_dir_all(&mount.host) {
            return error_report(step, format!("could not create `{}`: {e}", mount.rel));
        }
        mount_points.push(mount.host.clone());
    }
    let mut env: Vec<(String, String)> = step.grant.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if !step.grant.env.contains_key("TMPDIR") {
        env.push(("TMPDIR".into(), temp.path().display().to_string()));
    }
    let reads = step.grant.mounts.iter().filter(|m| !m.writable).map(|m| m.host.clone());
    let spec = JailSpec {
        program: program.to_path_buf(),
        args: args.to_vec(),
        env,
        cwd: context.workspace.clone(),
        read: reads.chain(step.grant.tools.iter().cloned()).collect(),
        write: step
            .grant
            .mounts
            .iter()
            .filter(|m| m.writable)
            .map(|m| m.host.clone())
            .chain([temp.path().to_path_buf()])
            .collect(),
        binds: staged.binds().into_iter().map(|(staged, target)| Bind { staged, target }).collect(),
        network: step.grant.network,
        allow_unjailed: context.options.allow_unjailed,
    };
    let limits = &step.grant.limits;
    let outcome = jail::run(&context.options.jail_helper, &spec, limits.timeout, limits.output).await;
    let mut report =
        report_with_output(step, StepStatus::Error, None, outcome.stdout, outcome.stderr, outcome.duration);
    let mut committed = false;
    match outcome.result {
        Err(failure) => report.reason = Some(failure.to_string()),
        Ok(exit) => {
            report.unjailed = exit.unjailed.clone();
            if exit.success() {
                match staged.commit() {
                    Ok(changes) => {
                        committed = true;
                        report.status = StepStatus::Passed;
                        report.changes = changes
                            .written
                            .iter()
                            .map(|p| format!("+ {p}"))
                            .chain(changes.removed.iter().map(|p| format!("- {p}")))
                            .collect();
                        report
                            .changes
                            .extend(changes.ignored_links.iter().map(|p| format!("! {p} (symlink, not applied)")));
                    }
                    Err(e) => report.reason = Some(format!("its writes could not be committed: {e}")),
                }
            } else {
                report.status = StepStatus::Failed;
                report.findings.push(FindingReport {
                    rule: "exit-status".into(),
                    severity: "error",
                    message: format!("`{display}` exited with {}{}", exit.describe(), last_line(&report)),
                    path: None,
                    line: None,
                    column: None,
                });
            }
        }
    }
    if !committed {
        for dir in mount_points.iter().rev() {
            let _ = fs_err::remove_dir(dir);
        }
    }
    report
}

/// Read mounts that did not exist when the plan was made (a step this one
/// needs writes them) must exist now; their host path is checked again and
/// their kind (file or directory) read.
fn resolve_deferred_mounts(step: &Step, workspace: &std::path::Path) -> Result<Step, String> {
    let mut step = step.clone();
    for mount in step.grant.mounts.iter_mut().filter(|m| !m.exists && !m.writable) {
        let host = fs_err::canonicalize(&mount.host)
            .map_err(|_| format!("mount `{}` does not exist: none of the steps it needs created it", mount.rel))?;
        if !host.starts_with(workspace) {
            return Err(format!("mount `{}` now resolves outside the workspace (to `{}`)", mount.rel, host.display()));
        }
        mount.is_dir = host.is_dir();
        mount.host = host;
        mount.exists = true;
    }
    Ok(step)
}

/// `: <last non-empty output line>` (stderr first), cut to fit one line.
fn last_line(report: &StepReport) -> String {
    let last = |text: &str| text.lines().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().to_string());
    match last(&report.stderr).or_else(|| last(&report.stdout)) {
        Some(line) if line.chars().count() > 150 => format!(": {}…", line.chars().take(149).collect::<String>()),
        Some(line) => format!(": {line}"),
        None => String::new(),
    }
}

fn report_with_output(
    step: &Step,
    status: StepStatus,
    reason: Option<String>,
    stdout: Captured,
    stderr: Captured,
    duration: std::time::Duration,
) -> StepReport {
    StepReport {
        status,
        reason,
        duration,
        stdout: String::from_utf8_lossy(&stdout.bytes).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.bytes).into_owned(),
        output_dropped_bytes: stdout.dropped + stderr.dropped,
        ..StepReport::skipped(&step.id, step.kind, String::new())
    }
}

fn error_report(step: &Step, reason: String) -> StepReport {
    StepReport {
        status: StepStatus::Error,
        reason: Some(reason),
        ..StepReport::skipped(&step.id, step.kind, String::new())
    }
}

/// A guest finding as reported: guest paths (`/src/a.rs`) become
/// workspace-relative (`src/a.rs`).
fn finding_report(f: Finding) -> FindingReport {
    FindingReport {
        rule: f.rule,
        severity: match f.severity {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        },
        message: f.message,
        path: f.path.map(|p| p.trim_start_matches('/').to_string()),
        line: f.line,
        column: f.column,
    }
}
