//! Running one step: a check, stage or evaluator plugin, or a jailed command.
//!
//! Each runner turns a [`Step`] of the plan into sandbox calls and the
//! outcome into a [`StepReport`]. Stages (plugin or command) work on staged
//! copies of their write mounts, committed only on success
//! ([`super::writes`]). Evaluators list their scenarios once, run each
//! scenario `repeat` times in fresh instances, and compare the share of
//! passing scenarios with their threshold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::feedback::Holdout;
use super::quota::Quota;
use super::{writes, RunOptions};
use crate::plan::gates::Evaluation;
use crate::plan::{Action, Grant, Step, StepKind};
use crate::report::{EvaluationReport, FindingReport, ScenarioReport, StepReport, StepStatus};
use crate::sandbox::jail::pids::PidsCgroup;
use crate::sandbox::jail::{self, Bind, JailSpec};
use crate::sandbox::output::Captured;
use crate::sandbox::{Failure, Finding, GuestMount, Invocation, LoadedPlugin, Outcome, Sandbox, Severity};

/// What every step task shares.
pub(super) struct Context {
    pub(super) sandbox: Sandbox,
    pub(super) plugins: BTreeMap<String, LoadedPlugin>,
    pub(super) workspace: PathBuf,
    pub(super) options: RunOptions,
    pub(super) holdout: Holdout,
    pub(super) digester: crate::cache::digest::Digester,
    pub(super) results: Option<crate::cache::results::ResultCache>,
    /// The run's secret values, to scrub from every report.
    pub(super) secrets: Arc<crate::secrets::Secrets>,
}

/// Runs one step (attempt `attempt`, with retry `feedback` for stages) and
/// turns its outcome into a report.
pub(super) async fn run_step(context: &Context, step: &Step, attempt: u32, feedback: Vec<String>) -> StepReport {
    let step = match resolve_deferred_mounts(step, &context.workspace) {
        Ok(step) => step,
        Err(reason) => return error_report(step, reason),
    };
    let step = &step;
    let plugin = |name: &str| {
        context.plugins.get(name).ok_or_else(|| format!("plugin `{name}` was not loaded (internal error)"))
    };
    match (&step.action, step.kind) {
        (Action::Command { program, args, display }, _) => {
            run_command_step(context, program, args, display, step, attempt, &feedback).await
        }
        (Action::Plugin(name), kind) => match plugin(name) {
            Err(reason) => error_report(step, reason),
            Ok(plugin) => match kind {
                StepKind::Check => run_check_step(context, plugin, step).await,
                StepKind::Stage => run_stage_step(context, plugin, step, attempt, feedback).await,
                StepKind::Evaluator => run_evaluator_step(context, plugin, step, attempt).await,
            },
        },
    }
}

/// The invocation record a plugin receives.
fn invocation(step: &Step, grant: &Grant, attempt: u32, feedback: Vec<String>) -> Invocation {
    Invocation {
        step: step.id.clone(),
        config: step.config.clone(),
        mounts: grant.mounts.iter().map(|m| GuestMount { path: m.guest.clone(), writable: m.writable }).collect(),
        attempt,
        feedback,
    }
}

async fn run_check_step(context: &Context, plugin: &LoadedPlugin, step: &Step) -> StepReport {
    let outcome: Outcome<Vec<Finding>> =
        context.sandbox.run_check(plugin, &step.grant, &invocation(step, &step.grant, 1, Vec::new())).await;
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
    report.denied_requests = outcome.denied;
    report
}

/// Runs a stage plugin on staged copies of its write mounts; commits them
/// only when it returns `ok`. A stage that returns `err` has failed; one
/// that traps or runs out of time or memory is an error.
async fn run_stage_step(
    context: &Context,
    plugin: &LoadedPlugin,
    step: &Step,
    attempt: u32,
    feedback: Vec<String>,
) -> StepReport {
    let staged = match writes::stage(&step.grant.mounts) {
        Ok(staged) => staged,
        Err(e) => return error_report(step, format!("could not stage its write mounts: {e}")),
    };
    let mut grant = step.grant.clone();
    let copies: BTreeMap<PathBuf, PathBuf> = staged.binds().into_iter().map(|(copy, host)| (host, copy)).collect();
    for mount in grant.mounts.iter_mut().filter(|m| m.writable) {
        if let Some(copy) = copies.get(&mount.host) {
            mount.host = copy.clone();
            mount.exists = true;
        }
    }
    let quota = Quota::new(copies.values().cloned().collect(), step.grant.limits.max_write);
    let started = Instant::now();
    let invocation = invocation(step, &grant, attempt, feedback);
    let outcome = tokio::select! {
        outcome = context.sandbox.run_stage(plugin, &grant, &invocation) => outcome,
        why = quota.exceeded() => return StepReport { duration: started.elapsed(), ..error_report(step, why) },
    };
    let mut report =
        report_with_output(step, StepStatus::Error, None, outcome.stdout, outcome.stderr, outcome.duration);
    report.denied_requests = outcome.denied;
    if let (Ok(_), Some(why)) = (&outcome.result, quota.check()) {
        report.reason = Some(why);
        return report;
    }
    match outcome.result {
        Ok(note) => {
            commit(staged, &context.workspace, &mut report, Some(note));
        }
        Err(crate::sandbox::Failure::Plugin(message)) => {
            report.status = StepStatus::Failed;
            report.reason = Some(format!("the stage reported: {message}"));
        }
        Err(failure) => report.reason = Some(failure.to_string()),
    }
    report
}

/// Applies a successful stage's writes and records what changed.
fn commit(staged: writes::Staged, workspace: &Path, report: &mut StepReport, note: Option<String>) -> bool {
    match staged.commit(&workspace.join(crate::plan::mounts::RUN_DIR).join("tmp")) {
        Ok(changes) => {
            report.status = StepStatus::Passed;
            report.note = note;
            report.changes = change_lines(&changes);
            true
        }
        Err(e) => {
            report.status = StepStatus::Error;
            report.reason = Some(format!("its writes could not be committed: {e}"));
            false
        }
    }
}

/// A commit's changes as the report lists them: `+ path` written, `- path`
/// removed, `! path (symlink, not applied)`.
pub(super) fn change_lines(changes: &writes::Changes) -> Vec<String> {
    let written = changes.written.iter().map(|p| format!("+ {p}"));
    let removed = changes.removed.iter().map(|p| format!("- {p}"));
    let links = changes.ignored_links.iter().map(|p| format!("! {p} (symlink, not applied)"));
    written.chain(removed).chain(links).collect()
}

/// Lists an evaluator's scenarios, runs each `repeat` times, and compares
/// the share of passing scenarios with the threshold.
///
/// The step's `timeout` bounds all of it (listing, every run of every
/// scenario, and the subject runs inside them): each invocation gets what
/// is left, and the subject never runs past it.
async fn run_evaluator_step(context: &Context, plugin: &LoadedPlugin, step: &Step, attempt: u32) -> StepReport {
    let started = Instant::now();
    let limit = step.grant.limits.timeout;
    let deadline = started + limit;
    // A backstop over the whole step: invocations already stop at the
    // deadline; this also covers time between them.
    let backstop = limit + Duration::from_secs(1);
    match tokio::time::timeout(backstop, evaluate_all(context, plugin, step, attempt, started, deadline)).await {
        Ok(report) => report,
        Err(_) => StepReport { duration: started.elapsed(), ..error_report(step, step_timed_out(limit)) },
    }
}

/// Why an evaluator step that ran out of time is an error.
fn step_timed_out(limit: Duration) -> String {
    format!(
        "timed out after {} (the whole evaluator step, subject runs included)",
        crate::manifest::DurationSpec(limit)
    )
}

/// `grant` with its deadline cut to what is left before `deadline`, or
/// `None` when nothing is left.
fn remaining(grant: &Grant, deadline: Instant) -> Option<Grant> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return None;
    }
    let mut grant = grant.clone();
    grant.limits.timeout = grant.limits.timeout.min(left);
    Some(grant)
}

async fn evaluate_all(
    context: &Context,
    plugin: &LoadedPlugin,
    step: &Step,
    attempt: u32,
    started: Instant,
    deadline: Instant,
) -> StepReport {
    let limit = step.grant.limits.timeout;
    let Some(evaluation) = &step.evaluation else {
        return error_report(step, "an evaluator without evaluation settings (internal error)".into());
    };
    let subject = match &evaluation.subject {
        None => None,
        Some(subject) => {
            let grant = match refresh_mounts(subject.grant.clone(), &context.workspace) {
                Ok(grant) => grant,
                Err(reason) => return error_report(step, format!("subject: {reason}")),
            };
            let path = match fs_err::canonicalize(&subject.component.host) {
                Ok(path) if path.starts_with(&context.workspace) => path,
                Ok(path) => {
                    return error_report(
                        step,
                        format!(
                            "the subject `{}` resolves outside the workspace (to `{}`)",
                            subject.component.rel,
                            path.display()
                        ),
                    )
                }
                Err(_) => {
                    return error_report(
                        step,
                        format!(
                            "the subject `{}` does not exist: the steps this evaluator needs did not build it",
                            subject.component.rel
                        ),
                    )
                }
            };
            match context.sandbox.load_subject(&path, &grant, deadline) {
                Ok(runner) => Some(runner),
                Err(reason) => return error_report(step, format!("the subject cannot be loaded: {reason}")),
            }
        }
    };
    // Evaluators never get feedback: only stages do.
    let invocation = invocation(step, &step.grant, attempt, Vec::new());
    let Some(grant) = remaining(&step.grant, deadline) else {
        return StepReport { duration: started.elapsed(), ..error_report(step, step_timed_out(limit)) };
    };
    let listed = context.sandbox.run_scenarios(plugin, &grant, &invocation, subject.clone()).await;
    let mut stdout = listed.stdout;
    let mut stderr = listed.stderr;
    let mut denied = listed.denied;
    let names = match listed.result {
        Ok(names) => dedupe(names),
        Err(failure) => {
            let mut report = report_with_output(
                step,
                StepStatus::Error,
                Some(format!("could not list its scenarios: {failure}")),
                stdout,
                stderr,
                started.elapsed(),
            );
            report.attempt = attempt;
            report.denied_requests = denied;
            return report;
        }
    };
    if names.is_empty() {
        return error_report(step, "the evaluator listed no scenarios, so it judged nothing".into());
    }
    let mut scenarios = Vec::with_capacity(names.len());
    for name in names {
        let scenario = run_scenario(
            context,
            plugin,
            (step, deadline),
            evaluation,
            &name,
            &invocation,
            subject.clone(),
            (&mut stdout, &mut stderr, &mut denied),
        )
        .await;
        let Some(scenario) = scenario else {
            let mut report = report_with_output(
                step,
                StepStatus::Error,
                Some(step_timed_out(limit)),
                stdout,
                stderr,
                started.elapsed(),
            );
            append_subject_log(&mut report, subject.as_deref());
            report.denied_requests = denied;
            return report;
        };
        scenarios.push(scenario);
    }
    let passed = scenarios.iter().filter(|s| s.passed).count();
    let satisfaction = passed as f64 / scenarios.len() as f64;
    // A tiny tolerance so 0.9 written in TOML compares as intended.
    let status = if satisfaction + 1e-9 >= evaluation.threshold { StepStatus::Passed } else { StepStatus::Failed };
    let mut report = report_with_output(step, status, None, stdout, stderr, started.elapsed());
    report.evaluation = Some(EvaluationReport { satisfaction, threshold: evaluation.threshold, scenarios });
    report.denied_requests = denied;
    append_subject_log(&mut report, subject.as_deref());
    report
}

/// Adds the subject's failed runs not already told in a scenario's detail
/// (none, normally), with wasmtime's words, to the step's stderr: for
/// humans only (stderr never reaches a stage).
fn append_subject_log(report: &mut StepReport, subject: Option<&crate::sandbox::SubjectRunner>) {
    let Some(subject) = subject else { return };
    for line in subject.take_log() {
        if !report.stderr.is_empty() && !report.stderr.ends_with('\n') {
            report.stderr.push('\n');
        }
        report.stderr.push_str(&format!("cleanroom: {line}\n"));
    }
}

/// Runs one scenario `repeat` times, each in a fresh instance.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the pieces are the step's context, not a concept of their own"
)]
async fn run_scenario(
    context: &Context,
    plugin: &LoadedPlugin,
    (step, deadline): (&Step, Instant),
    evaluation: &Evaluation,
    name: &str,
    invocation: &Invocation,
    subject: Option<Arc<crate::sandbox::SubjectRunner>>,
    (stdout, stderr, denied): (&mut Captured, &mut Captured, &mut Vec<String>),
) -> Option<ScenarioReport> {
    let mut passes = 0;
    let mut first_failure: Option<(String, String)> = None;
    let mut last = (String::new(), String::new());
    for _ in 0..evaluation.repeat {
        let grant = remaining(&step.grant, deadline)?;
        let outcome = context.sandbox.run_evaluate(plugin, &grant, name, invocation, subject.clone()).await;
        append(stdout, outcome.stdout, step.grant.limits.output);
        append(stderr, outcome.stderr, step.grant.limits.output);
        denied.extend(outcome.denied);
        let (passed, summary, detail) = match outcome.result {
            Ok(verdict) => (verdict.passed, verdict.summary, verdict.detail),
            // Fixed words in the summary (it may reach the stage); the
            // evaluator's or wasmtime's own text only in the detail.
            Err(Failure::Timeout(_)) if Instant::now() >= deadline => return None,
            Err(failure) => (false, format!("the evaluator {}", failure.category()), failure.to_string()),
        };
        // What wasmtime said about this run's failed subject calls: for
        // humans, in the detail (the evaluator was told only fixed words).
        let log = subject.as_deref().map(crate::sandbox::SubjectRunner::take_log).unwrap_or_default();
        let detail = if log.is_empty() {
            detail
        } else {
            let sep = if detail.is_empty() { "" } else { "\n\n" };
            format!("{detail}{sep}cleanroom: {}", log.join("\ncleanroom: "))
        };
        if passed {
            passes += 1;
        } else if first_failure.is_none() {
            first_failure = Some((summary.clone(), detail.clone()));
        }
        last = (summary, detail);
    }
    let passed = passes >= evaluation.require;
    let (summary, detail) = if passed { last } else { first_failure.unwrap_or(last) };
    Some(ScenarioReport { name: name.to_string(), runs: evaluation.repeat, passes, passed, summary, detail })
}

fn dedupe(names: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    names.into_iter().filter(|n| seen.insert(n.clone())).collect()
}

fn append(into: &mut Captured, from: Captured, cap: u64) {
    let room = usize::try_from(cap).unwrap_or(usize::MAX).saturating_sub(into.bytes.len());
    let kept = room.min(from.bytes.len());
    into.bytes.extend_from_slice(&from.bytes[..kept]);
    into.dropped += from.dropped + (from.bytes.len() - kept) as u64;
}

/// Runs a native program in the jail on staged copies of its write mounts;
/// commits the writes only if it exits 0. A program killed by a signal is an
/// error (not a verdict on its inputs, so never cached); a failed exit status
/// is a failure.
async fn run_command_step(
    context: &Context,
    program: &std::path::Path,
    args: &[String],
    display: &str,
    step: &Step,
    attempt: u32,
    feedback: &[String],
) -> StepReport {
    let staged = match writes::stage(&step.grant.mounts) {
        Ok(staged) => staged,
        Err(e) => return error_report(step, format!("could not stage its write mounts: {e}")),
    };
    let temp = match tempfile::Builder::new().prefix("cleanroom-tmp-").tempdir() {
        Ok(temp) => temp,
        Err(e) => return error_report(step, format!("could not create its temporary directory: {e}")),
    };
    // Empty stand-ins mounted over what the program must not see (the run
    // directory, credential files), outside anything it may write.
    let views = match empty_views() {
        Ok(views) => views,
        Err(e) => return error_report(step, format!("could not prepare its view of the host: {e}")),
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
    if step.kind == StepKind::Stage {
        env.push(("CLEANROOM_ATTEMPT".into(), attempt.to_string()));
        match feedback_env(feedback, temp.path()) {
            Ok(vars) => env.extend(vars),
            Err(e) => return error_report(step, format!("could not write its feedback file: {e}")),
        }
    }
    for name in &step.grant.secret_env {
        let Some(value) = context.secrets.value(name) else {
            return error_report(step, format!("secret `{name}` was not read (internal error)"));
        };
        env.push((name.clone(), value.to_string()));
    }
    let pids = PidsCgroup::create(step.grant.limits.pids);
    let reads = step.grant.mounts.iter().filter(|m| !m.writable).map(|m| m.host.clone());
    // A mount of the workspace root must not show the run directory: an
    // empty read-only directory is mounted over it inside the jail. A
    // writable root mount is a staged copy, which gets an empty mount point
    // for it (the commit accepts nothing else there).
    let run_dir = context.workspace.join(crate::plan::mounts::RUN_DIR);
    let shadow = (step.grant.mounts.iter().any(|m| m.rel == ".") && run_dir.is_dir()).then(|| Bind {
        staged: views.path().join("dir"),
        target: run_dir,
        read_only: true,
    });
    let mut binds: Vec<Bind> = Vec::new();
    for (copy, target) in staged.binds() {
        if shadow.is_some() && target == context.workspace {
            if let Err(e) = fs_err::create_dir(copy.join(crate::plan::mounts::RUN_DIR)) {
                return error_report(step, format!("could not prepare its view of the workspace: {e}"));
            }
        }
        binds.push(Bind { staged: copy, target, read_only: false });
    }
    binds.extend(shadow);
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
        binds,
        network: step.grant.network,
        allow_unjailed: context.options.allow_unjailed,
        max_file_size: step.grant.limits.max_write,
        cgroup_procs: pids.as_ref().map(PidsCgroup::procs_file),
        hide: hidden_credentials(&step.grant.tools),
        empty: Some(views.path().to_path_buf()),
        // Chosen by `jail::run` for each run.
        nonce: String::new(),
    };
    let limits = &step.grant.limits;
    let mut quota_dirs: Vec<PathBuf> = spec.binds.iter().filter(|b| !b.read_only).map(|b| b.staged.clone()).collect();
    quota_dirs.push(temp.path().to_path_buf());
    let quota = Quota::new(quota_dirs, limits.max_write);
    let started = Instant::now();
    let outcome = tokio::select! {
        outcome = jail::run(&context.options.jail_helper, &spec, limits.timeout, limits.output) => outcome,
        why = quota.exceeded() => {
            remove_mount_points(&mount_points);
            return StepReport { duration: started.elapsed(), ..error_report(step, why) };
        }
    };
    let mut report =
        report_with_output(step, StepStatus::Error, None, outcome.stdout, outcome.stderr, outcome.duration);
    let mut committed = false;
    match outcome.result {
        Err(failure) => report.reason = Some(failure.to_string()),
        Ok(exit) => {
            report.unjailed = exit.unjailed.clone();
            if exit.success() {
                committed = commit(staged, &context.workspace, &mut report, None);
            } else if let (None, Some(signal)) = (exit.code, exit.signal) {
                // Killed from outside, or by itself: says nothing about its
                // inputs, so an error (never cached), not a failure.
                report.reason = Some(format!("`{display}` was killed by signal {signal}{}", last_line(&report)));
            } else {
                report.status = StepStatus::Failed;
                report.findings.push(FindingReport {
                    rule: "exit-status".into(),
                    severity: "error".into(),
                    message: format!("`{display}` exited with {}{}", exit.describe(), last_line(&report)),
                    path: None,
                    line: None,
                    column: None,
                });
            }
        }
    }
    if !committed {
        remove_mount_points(&mount_points);
    }
    report
}

/// The longest `CLEANROOM_FEEDBACK` value: the kernel refuses any one
/// environment string (`NAME=value` and its NUL) over 128 KiB
/// (`MAX_ARG_STRLEN`) with E2BIG; this leaves room for the name.
const FEEDBACK_ENV_MAX: usize = 128 * 1024 - 64;

/// `CLEANROOM_FEEDBACK` (the feedback lines, as many whole lines as fit in
/// [`FEEDBACK_ENV_MAX`]) and `CLEANROOM_FEEDBACK_FILE` (a file in the
/// step's temp dir holding all of them), so thousands of lines still reach
/// the stage and never stop it from starting.
fn feedback_env(feedback: &[String], temp: &Path) -> std::io::Result<Vec<(String, String)>> {
    let all = feedback.join("\n");
    let file = temp.join("cleanroom-feedback.txt");
    fs_err::write(&file, &all)?;
    let mut shown = String::new();
    for line in feedback {
        if shown.len() + line.len() + 1 > FEEDBACK_ENV_MAX {
            break;
        }
        if !shown.is_empty() {
            shown.push('\n');
        }
        shown.push_str(line);
    }
    Ok(vec![("CLEANROOM_FEEDBACK".into(), shown), ("CLEANROOM_FEEDBACK_FILE".into(), file.display().to_string())])
}

/// A private directory holding an empty file `file` and an empty directory
/// `dir`, read-only, for the jail to mount over what must look empty.
fn empty_views() -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let views = tempfile::Builder::new().prefix("cleanroom-view-").tempdir()?;
    fs_err::write(views.path().join("file"), "")?;
    fs_err::create_dir(views.path().join("dir"))?;
    fs_err::set_permissions(views.path().join("file"), std::fs::Permissions::from_mode(0o444))?;
    fs_err::set_permissions(views.path().join("dir"), std::fs::Permissions::from_mode(0o555))?;
    Ok(views)
}

/// The well-known credential files ([`crate::plan::command::HIDDEN_CREDENTIALS`],
/// under `$HOME`) that exist and lie inside a granted tools path without
/// being one: the jail covers them with an empty stand-in. Canonical paths,
/// so a link inside a tool directory hides what it points at.
fn hidden_credentials(tools: &[PathBuf]) -> Vec<PathBuf> {
    let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from) else {
        return Vec::new();
    };
    let mut hidden = Vec::new();
    for rel in crate::plan::command::HIDDEN_CREDENTIALS {
        let Ok(path) = fs_err::canonicalize(home.join(rel)) else { continue };
        let granted_itself = tools.contains(&path);
        let under_a_tool = tools.iter().any(|t| path.starts_with(t));
        if under_a_tool && !granted_itself && !hidden.contains(&path) {
            hidden.push(path);
        }
    }
    hidden
}

/// Read mounts that did not exist when the plan was made (a step this one
/// needs writes them) must exist now; their host path is checked again and
/// their kind (file or directory) read.
fn resolve_deferred_mounts(step: &Step, workspace: &Path) -> Result<Step, String> {
    let mut step = step.clone();
    step.grant = refresh_mounts(step.grant, workspace)?;
    Ok(step)
}

/// See [`resolve_deferred_mounts`]; for any grant (a step's or a subject's).
fn refresh_mounts(mut grant: Grant, workspace: &Path) -> Result<Grant, String> {
    for mount in grant.mounts.iter_mut().filter(|m| !m.exists && !m.writable) {
        let host = fs_err::canonicalize(&mount.host)
            .map_err(|_| format!("mount `{}` does not exist: none of the steps it needs created it", mount.rel))?;
        if !host.starts_with(workspace) {
            return Err(format!("mount `{}` now resolves outside the workspace (to `{}`)", mount.rel, host.display()));
        }
        mount.is_dir = host.is_dir();
        mount.host = host;
        mount.exists = true;
    }
    Ok(grant)
}

/// Content digests of a step's inputs, as the journal records them and the
/// result cache keys them: each mount (and an evaluator's subject and the
/// subject's mounts) by workspace path. A write mount's digest is of what
/// the step starts from.
pub(super) fn input_digests(step: &Step, digester: &crate::cache::digest::Digester) -> BTreeMap<String, String> {
    let subject = step.evaluation.as_ref().and_then(|e| e.subject.as_ref());
    let subject_mounts = subject.into_iter().flat_map(|s| std::iter::once(&s.component).chain(&s.grant.mounts));
    step.grant.mounts.iter().chain(subject_mounts).map(|m| (m.rel.clone(), digester.digest(&m.host))).collect()
}

/// Removes the (empty) mount points made for missing write directories.
fn remove_mount_points(mount_points: &[PathBuf]) {
    for dir in mount_points.iter().rev() {
        let _ = fs_err::remove_dir(dir);
    }
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

pub(super) fn report_with_output(
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

pub(super) fn error_report(step: &Step, reason: String) -> StepReport {
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
        }
        .to_string(),
        message: f.message,
        path: f.path.map(|p| p.trim_start_matches('/').to_string()),
        line: f.line,
        column: f.column,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_of_feedback_lines_fit_the_environment_and_the_file_has_them_all() {
        let temp = tempfile::tempdir().unwrap();
        let lines: Vec<String> =
            (0..5000).map(|i| format!("scenario s{i:04}: failed 1/1: the answer was not 42")).collect();
        let env = feedback_env(&lines, temp.path()).unwrap();
        let shown = &env.iter().find(|(k, _)| k == "CLEANROOM_FEEDBACK").unwrap().1;
        assert!(shown.len() <= FEEDBACK_ENV_MAX, "{} bytes would hit E2BIG", shown.len());
        assert!(shown.starts_with("scenario s0000:") && shown.lines().all(|l| l.ends_with("42")), "whole lines only");
        let file = &env.iter().find(|(k, _)| k == "CLEANROOM_FEEDBACK_FILE").unwrap().1;
        assert_eq!(fs_err::read_to_string(file).unwrap(), lines.join("\n"));
        let few = feedback_env(&lines[..2], temp.path()).unwrap();
        assert_eq!(few[0].1, lines[..2].join("\n"), "short feedback is passed whole");
    }
}
