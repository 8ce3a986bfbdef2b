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
use std::time::Instant;

use super::feedback::Holdout;
use super::quota::Quota;
use super::{writes, RunOptions};
use crate::plan::gates::Evaluation;
use crate::plan::{Action, Grant, Step, StepKind};
use crate::report::{EvaluationReport, FindingReport, ScenarioReport, StepReport, StepStatus};
use crate::sandbox::jail::pids::PidsCgroup;
use crate::sandbox::jail::{self, Bind, JailSpec};
use crate::sandbox::output::Captured;
use crate::sandbox::{Finding, GuestMount, Invocation, LoadedPlugin, Outcome, Sandbox, Severity};

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
async fn run_evaluator_step(context: &Context, plugin: &LoadedPlugin, step: &Step, attempt: u32) -> StepReport {
    let started = Instant::now();
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
            match context.sandbox.load_subject(&path, &grant) {
                Ok(runner) => Some(runner),
                Err(reason) => return error_report(step, format!("the subject cannot be loaded: {reason}")),
            }
        }
    };
    // Evaluators never get feedback: only stages do.
    let invocation = invocation(step, &step.grant, attempt, Vec::new());
    let listed = context.sandbox.run_scenarios(plugin, &step.grant, &invocation, subject.clone()).await;
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
        scenarios.push(
            run_scenario(
                context,
                plugin,
                step,
                evaluation,
                &name,
                &invocation,
                subject.clone(),
                (&mut stdout, &mut stderr, &mut denied),
            )
            .await,
        );
    }
    let passed = scenarios.iter().filter(|s| s.passed).count();
    let satisfaction = passed as f64 / scenarios.len() as f64;
    // A tiny tolerance so 0.9 written in TOML compares as intended.
    let status = if satisfaction + 1e-9 >= evaluation.threshold { StepStatus::Passed } else { StepStatus::Failed };
    let mut report = report_with_output(step, status, None, stdout, stderr, started.elapsed());
    report.evaluation = Some(EvaluationReport { satisfaction, threshold: evaluation.threshold, scenarios });
    report.denied_requests = denied;
    report
}

/// Runs one scenario `repeat` times, each in a fresh instance.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the pieces are the step's context, not a concept of their own"
)]
async fn run_scenario(
    context: &Context,
    plugin: &LoadedPlugin,
    step: &Step,
    evaluation: &Evaluation,
    name: &str,
    invocation: &Invocation,
    subject: Option<Arc<crate::sandbox::SubjectRunner>>,
    (stdout, stderr, denied): (&mut Captured, &mut Captured, &mut Vec<String>),
) -> ScenarioReport {
    let mut passes = 0;
    let mut first_failure: Option<(String, String)> = None;
    let mut last = (String::new(), String::new());
    for _ in 0..evaluation.repeat {
        let outcome = context.sandbox.run_evaluate(plugin, &step.grant, name, invocation, subject.clone()).await;
        append(stdout, outcome.stdout, step.grant.limits.output);
        append(stderr, outcome.stderr, step.grant.limits.output);
        denied.extend(outcome.denied);
        let (passed, summary, detail) = match outcome.result {
            Ok(verdict) => (verdict.passed, verdict.summary, verdict.detail),
            Err(failure) => (false, format!("the evaluator {failure}"), String::new()),
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
    ScenarioReport { name: name.to_string(), runs: evaluation.repeat, passes, passed, summary, detail }
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
/// commits the writes only if it exits 0.
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
        env.push(("CLEANROOM_FEEDBACK".into(), feedback.join("\n")));
    }
    let pids = PidsCgroup::create(step.grant.limits.pids);
    let reads = step.grant.mounts.iter().filter(|m| !m.writable).map(|m| m.host.clone());
    // A mount of the workspace root must not show the run directory: an
    // empty directory is mounted over it inside the jail.
    let run_dir = context.workspace.join(crate::plan::mounts::RUN_DIR);
    let shadow = (step.grant.mounts.iter().any(|m| m.rel == ".") && run_dir.is_dir())
        .then(|| Bind { staged: temp.path().join(".empty-run-dir"), target: run_dir });
    if let Some(bind) = &shadow {
        if let Err(e) = fs_err::create_dir(&bind.staged) {
            return error_report(step, format!("could not prepare its view of the workspace: {e}"));
        }
    }
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
        binds: staged.binds().into_iter().map(|(staged, target)| Bind { staged, target }).chain(shadow).collect(),
        network: step.grant.network,
        allow_unjailed: context.options.allow_unjailed,
        max_file_size: step.grant.limits.max_write,
        cgroup_procs: pids.as_ref().map(PidsCgroup::procs_file),
    };
    let limits = &step.grant.limits;
    let mut quota_dirs: Vec<PathBuf> = spec.binds.iter().map(|b| b.staged.clone()).collect();
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
