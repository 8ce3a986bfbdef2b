//! The local step backend: runs a check, stage or evaluator plugin in
//! wasmtime, or a native program in the kernel jail, on this machine.
//!
//! [`Local`] turns a [`Step`] of the plan into sandbox calls and the
//! outcome into a [`StepReport`]. Stages (plugin or command) work on staged
//! copies of their write mounts, committed only on success
//! ([`crate::writes`]). Evaluators list their scenarios once, run each
//! scenario `repeat` times in fresh instances, and compare the share of
//! passing scenarios with their threshold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::backend::{Backend, Running};
use super::RunOptions;
use crate::plan::gates::Evaluation;
use crate::plan::{Action, Grant, Step, StepKind};
use crate::report::{EvaluationReport, FindingReport, ScenarioReport, StepReport, StepStatus};
use crate::sandbox::jail;
use crate::sandbox::jail::step::{NativeStep, StepJail};
use crate::sandbox::judging::{JudgingRun, VerdictCache, Verdicts};
use crate::sandbox::network::RequestBudget;
use crate::sandbox::output::Captured;
use crate::sandbox::quota::Quota;
use crate::sandbox::{Failure, Finding, GuestMount, Invocation, LoadedPlugin, Outcome, Sandbox, Severity};
use crate::writes;

/// The local backend: the engine with the plan's plugins loaded, and what
/// running native programs needs.
pub struct Local {
    /// The engine, its pool and the secrets it may hand out.
    pub sandbox: Arc<Sandbox>,
    /// Every plugin a step uses, compiled and linked ([`super::load_plugins`]).
    pub plugins: BTreeMap<String, LoadedPlugin>,
    /// The canonical workspace.
    pub workspace: PathBuf,
    /// The jail helper and `--allow-unjailed`.
    pub options: RunOptions,
    /// Secret values native steps are granted.
    pub secrets: Arc<crate::secrets::Secrets>,
    /// The services started for evaluators, kept up across them.
    pub services: Services,
    /// Where evaluators' verdicts are remembered (`judging.recall`), when
    /// the result cache is on.
    pub verdicts: Option<Arc<dyn VerdictCache>>,
}

/// The services running for this run's evaluators, by id, each with the
/// digest of what it read when it started. A service is started when the
/// first evaluator that names it runs, kept up for the others, restarted
/// when what it reads changed, and stopped (its whole process tree) when
/// the round ends, or when the backend is dropped (the run ended, Ctrl-C).
#[derive(Default)]
pub struct Services {
    running: tokio::sync::Mutex<BTreeMap<String, (String, Arc<crate::sandbox::service::RunningService>)>>,
    /// What the services stopped in this round printed.
    logs: std::sync::Mutex<Vec<crate::report::events::ServiceLog>>,
}

impl Services {
    /// The running `service`, started (and waited for) if it is not
    /// running or if what it reads changed since it started (`inputs`,
    /// the evaluator's input digests); `None` asks for a fresh one.
    async fn get(
        &self,
        local: &Local,
        service: &crate::plan::services::Service,
        inputs: Option<&BTreeMap<String, String>>,
    ) -> Result<Arc<crate::sandbox::service::RunningService>, crate::sandbox::service::ServiceFailure> {
        let unusable = |reason: String| crate::sandbox::service::ServiceFailure {
            reason: format!("service `{}`: {reason}", service.id),
            tail: Vec::new(),
            infrastructure: false,
        };
        let spec = server_spec(local, service, "service").map_err(unusable)?;
        // A fresh service is never compared, so it needs no digest.
        let digest = inputs.map(|inputs| {
            let mounts = spec.grant.mounts.iter().chain(&service.component);
            mounts.map(|m| format!("{}={};", m.rel, input_digest(local, inputs, m))).collect::<String>()
        });
        let mut running = self.running.lock().await;
        if let (Some((started_with, service)), Some(digest)) = (running.get(&service.id), &digest) {
            if started_with == digest {
                return Ok(Arc::clone(service));
            }
        }
        // Stop the old one before the new one takes the port.
        if let Some((_, old)) = running.remove(&service.id) {
            self.keep_logs(&old);
        }
        let mut twins = Vec::new();
        for twin in &service.twins {
            twins.push(crate::sandbox::service::TwinSpec {
                id: twin.id.clone(),
                origin: twin.origin.clone(),
                url_env: twin.url_env.clone(),
                faults: twin.faults,
                server: server_spec(local, &twin.server, "twin")
                    .map_err(|reason| unusable(format!("twin `{}`: {reason}", twin.id)))?,
            });
        }
        let started = crate::sandbox::service::RunningService::start(&spec, &twins).await?;
        tracing::info!("service `{}` ready after {:?}", service.id, started.ready_after);
        running.insert(service.id.clone(), (digest.unwrap_or_default(), Arc::clone(&started)));
        Ok(started)
    }

    /// Stops every service; returns what the services of the round printed.
    async fn stop_all(&self) -> Vec<crate::report::events::ServiceLog> {
        let stopped = std::mem::take(&mut *self.running.lock().await);
        for (_, service) in stopped.values() {
            self.keep_logs(service);
        }
        self.logs.lock().map(|mut logs| std::mem::take(&mut *logs)).unwrap_or_default()
    }

    fn keep_logs(&self, service: &crate::sandbox::service::RunningService) {
        if let Ok(mut logs) = self.logs.lock() {
            logs.extend(service.logs());
        }
    }
}

impl Backend for Local {
    fn run<'a>(
        &'a self,
        step: &'a Step,
        attempt: u32,
        feedback: Vec<String>,
        inputs: &'a BTreeMap<String, String>,
    ) -> Running<'a> {
        Box::pin(run_step(self, step, attempt, feedback, inputs))
    }

    fn round_finished(&self) -> super::backend::Finishing<'_> {
        Box::pin(self.services.stop_all())
    }
}

/// Runs one step (attempt `attempt`, with retry `feedback` for stages) and
/// turns its outcome into a report; `inputs` are its input digests.
async fn run_step(
    local: &Local,
    step: &Step,
    attempt: u32,
    feedback: Vec<String>,
    inputs: &BTreeMap<String, String>,
) -> StepReport {
    let step = match resolve_deferred_mounts(step, &local.workspace) {
        Ok(step) => step,
        Err(reason) => return error_report(step, reason),
    };
    let step = &step;
    let plugin =
        |name: &str| local.plugins.get(name).ok_or_else(|| format!("plugin `{name}` was not loaded (internal error)"));
    match (&step.action, step.kind) {
        (Action::Command { program, args, display }, _) => {
            run_command_step(local, program, args, display, step, attempt, &feedback).await
        }
        (Action::Plugin(name), kind) => match plugin(name) {
            Err(reason) => error_report(step, reason).infrastructure(),
            Ok(plugin) => match kind {
                StepKind::Check => run_check_step(local, plugin, step, attempt).await,
                StepKind::Stage => run_stage_step(local, plugin, step, attempt, feedback).await,
                StepKind::Evaluator => run_evaluator_step(local, plugin, (step, inputs), attempt).await,
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

async fn run_check_step(local: &Local, plugin: &LoadedPlugin, step: &Step, attempt: u32) -> StepReport {
    let invocation = invocation(step, &step.grant, step.told_attempt(attempt), Vec::new());
    let budget = RequestBudget::of(&step.grant);
    let outcome: Outcome<Vec<Finding>> =
        local.sandbox.run_check(plugin, &step.grant, &invocation, budget.clone()).await;
    let mut report =
        report_with_output(step, StepStatus::Error, None, outcome.stdout, outcome.stderr, outcome.duration);
    match outcome.result {
        Ok(findings) => {
            report.findings = findings.into_iter().map(finding_report).collect();
            let failed = report.findings.iter().any(|f| f.severity == "error");
            report.status = if failed { StepStatus::Failed } else { StepStatus::Passed };
        }
        Err(failure) => set_failure(&mut report, "", &failure),
    }
    report.denied_requests = outcome.denied;
    out_of_budget(&mut report, budget.as_deref());
    report
}

/// Makes `report` an `error` when its step ran out of its request budget,
/// whatever the plugin made of the refused request: a step past its
/// budget never passes (and a stage's writes are not committed, as the
/// caller checks this first).
fn out_of_budget(report: &mut StepReport, budget: Option<&RequestBudget>) -> bool {
    let Some(budget) = budget.filter(|b| b.exhausted()) else { return false };
    let name = format!("max_requests = {}", budget.limit());
    report.status = StepStatus::Error;
    report.reason = Some(format!(
        "ran out of its request budget (`{name}`): the request past it was refused; raise `max_requests` if the work needs more"
    ));
    report.reason_produced_from = None;
    report.budget_exhausted = Some(name);
    true
}

/// Records why a step that could not finish did not: `context` and the
/// runner's words, then the part the plugin chose ([`Failure::produced`]);
/// a failure of the host or the jail is marked as not the work's doing.
fn set_failure(report: &mut StepReport, context: &str, failure: &Failure) {
    report.status = StepStatus::Error;
    let text = failure.to_string();
    let (words, produced) = failure
        .produced()
        .and_then(|produced| text.strip_suffix(produced).map(|words| (words, produced)))
        .unwrap_or((&text, ""));
    report.set_reason(&format!("{context}{words}"), produced);
    report.infrastructure = failure.is_infrastructure();
}

/// Runs a stage plugin on staged copies of its write mounts; commits them
/// only when it returns `ok`. A stage that returns `err` has failed; one
/// that traps or runs out of time or memory is an error.
async fn run_stage_step(
    local: &Local,
    plugin: &LoadedPlugin,
    step: &Step,
    attempt: u32,
    feedback: Vec<String>,
) -> StepReport {
    let staged = match writes::stage(&step.grant.mounts) {
        Ok(staged) => staged,
        Err(e) => return error_report(step, format!("could not stage its write mounts: {e}")).infrastructure(),
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
    let budget = RequestBudget::of(&grant);
    let outcome = tokio::select! {
        outcome = local.sandbox.run_stage(plugin, &grant, &invocation, budget.clone()) => outcome,
        why = quota.exceeded() => return StepReport { duration: started.elapsed(), ..error_report(step, why) },
    };
    let mut report =
        report_with_output(step, StepStatus::Error, None, outcome.stdout, outcome.stderr, outcome.duration);
    report.denied_requests = outcome.denied;
    if out_of_budget(&mut report, budget.as_deref()) {
        return report;
    }
    if let (Ok(_), Some(why)) = (&outcome.result, quota.check()) {
        report.reason = Some(why);
        return report;
    }
    match outcome.result {
        Ok(note) => {
            commit(staged, &local.workspace, &mut report, Some(note));
        }
        Err(crate::sandbox::Failure::Plugin(message)) => {
            report.status = StepStatus::Failed;
            report.set_reason("the stage reported: ", &message);
        }
        Err(failure) => set_failure(&mut report, "", &failure),
    }
    report
}

/// Applies a successful stage's writes and records what changed.
fn commit(staged: writes::Staged, workspace: &Path, report: &mut StepReport, note: Option<String>) -> bool {
    match staged.commit(&workspace.join(crate::plan::mounts::RUN_DIR).join("tmp")) {
        Ok(changes) => {
            report.status = StepStatus::Passed;
            report.note = note;
            report.changes = changes.list();
            report.diff = Some(changes.diff).filter(|d| !d.is_empty());
            true
        }
        Err(e) => {
            report.status = StepStatus::Error;
            report.reason = Some(format!("its writes could not be committed: {e}"));
            report.reason_produced_from = report.reason.as_ref().map(String::len);
            false
        }
    }
}

/// Lists an evaluator's scenarios, runs each `repeat` times, and compares
/// the share of passing scenarios with the threshold.
///
/// The step's `timeout` bounds all of it (listing, every run of every
/// scenario, and the subject runs inside them): each invocation gets what
/// is left, and the subject never runs past it.
async fn run_evaluator_step(
    local: &Local,
    plugin: &LoadedPlugin,
    (step, inputs): (&Step, &BTreeMap<String, String>),
    attempt: u32,
) -> StepReport {
    let started = Instant::now();
    let limit = step.grant.limits.timeout;
    let deadline = started + limit;
    // A backstop over the whole step: invocations already stop at the
    // deadline; this also covers time between them.
    let backstop = limit + Duration::from_secs(1);
    let budget = RequestBudget::of(&step.grant);
    let all = evaluate_all(local, plugin, (step, inputs), attempt, (started, deadline), budget.clone());
    match tokio::time::timeout(backstop, all).await {
        Ok(mut report) => {
            // Whatever the evaluator made of a refused request, and however
            // far it got: past its budget, a step has no verdict.
            if out_of_budget(&mut report, budget.as_deref()) {
                report.evaluation = None;
            }
            report
        }
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
    local: &Local,
    plugin: &LoadedPlugin,
    (step, inputs): (&Step, &BTreeMap<String, String>),
    attempt: u32,
    (started, deadline): (Instant, Instant),
    budget: Option<Arc<RequestBudget>>,
) -> StepReport {
    let limit = step.grant.limits.timeout;
    let Some(evaluation) = &step.evaluation else {
        return error_report(step, "an evaluator without evaluation settings (internal error)".into()).infrastructure();
    };
    // A memory cap the kernel cannot enforce here is the machine's doing:
    // said once, before any call, and never retried as the stage's failure.
    if let Some(bytes) = evaluation.subject.as_ref().and_then(|s| s.grant.native()).and_then(|n| n.memory) {
        if let Err(reason) = crate::sandbox::jail::cgroup::Cgroup::memory(bytes) {
            let message = format!(
                "the subject's memory cap of {} cannot be enforced: {reason}; remove `memory` from the subject to run it without one",
                crate::manifest::ByteSize(bytes)
            );
            return error_report(step, message).infrastructure();
        }
    }
    let subject = match &evaluation.subject {
        None => None,
        Some(subject) => match load_subject(local, subject, deadline) {
            Ok(runner) => Some(runner),
            Err(reason) => return error_report(step, reason),
        },
    };
    let service = match &evaluation.service {
        Some(service) if service.restart == crate::manifest::RestartPolicy::OnChange => {
            match local.services.get(local, service, Some(inputs)).await {
                Ok(running) => Some(running),
                Err(failure) => return service_failed(step, failure, started),
            }
        }
        _ => None,
    };
    let judged = crate::sandbox::Judged { subject: subject.clone(), service, requests: budget, ..Default::default() };
    // Evaluators never get feedback: only stages do.
    let invocation = invocation(step, &step.grant, attempt, Vec::new());
    let Some(grant) = remaining(&step.grant, deadline) else {
        return StepReport { duration: started.elapsed(), ..error_report(step, step_timed_out(limit)) };
    };
    let listed = local.sandbox.run_scenarios(plugin, &grant, &invocation, judged.clone()).await;
    let mut stdout = listed.stdout;
    let mut stderr = listed.stderr;
    let mut denied = listed.denied;
    let names = match listed.result {
        Ok(names) => dedupe(names),
        Err(failure) => {
            // The evaluator's own problem (its configuration, its scenario
            // files): no attempt of a stage changes it.
            let mut report = report_with_output(step, StepStatus::Error, None, stdout, stderr, started.elapsed());
            set_failure(&mut report, "could not list its scenarios: ", &failure);
            report.infrastructure = true;
            report.attempt = attempt;
            report.denied_requests = denied;
            return report;
        }
    };
    if names.is_empty() {
        return error_report(step, "the evaluator listed no scenarios, so it judged nothing".into()).infrastructure();
    }
    let runs = Runs {
        target: judging_target(evaluation),
        verdicts: local.verdicts.clone().map(|cache| (cache, judged_salt(local, plugin, step, inputs))),
    };
    let mut scenarios = Vec::with_capacity(names.len());
    for name in names {
        let scenario = run_scenario(
            local,
            plugin,
            (step, deadline),
            (evaluation, &runs),
            &name,
            &invocation,
            judged.clone(),
            (&mut stdout, &mut stderr, &mut denied),
        )
        .await;
        let stopped = match scenario {
            Ok(scenario) => {
                scenarios.push(scenario);
                continue;
            }
            Err(stopped) => stopped,
        };
        let mut report = report_with_output(step, StepStatus::Error, None, stdout, stderr, started.elapsed());
        match stopped {
            ScenarioStop::TimedOut => report.reason = Some(step_timed_out(limit)),
            ScenarioStop::GaveUp { run, reason } => {
                // Not a verdict on the program: the judge could not judge.
                report.set_reason(
                    &format!("the evaluator gave up on scenario `{name}` (run {run} of {}): ", evaluation.repeat),
                    &reason,
                );
                report.infrastructure = true;
            }
        }
        append_subject_log(&mut report, subject.as_deref());
        report.denied_requests = denied;
        return report;
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

/// What every scenario run of one evaluator step shares for the `judging`
/// interface: what the step reaches, and the verdict cache with the salt
/// its keys are completed with.
struct Runs {
    target: crate::sandbox::judging::Reach,
    verdicts: Option<Verdicts>,
}

/// Why a scenario stopped the whole evaluator step.
enum ScenarioStop {
    /// The step's deadline passed.
    TimedOut,
    /// The evaluator gave up on run `run` (`judging.give-up`).
    GaveUp { run: u32, reason: String },
}

/// What an evaluator step can reach, as the `judging` interface says it.
fn judging_target(evaluation: &Evaluation) -> crate::sandbox::judging::Reach {
    crate::sandbox::judging::Reach {
        subject: evaluation.subject.is_some(),
        service: evaluation.service.is_some(),
        twins: evaluation.service.iter().flat_map(|s| s.twins.iter().map(|t| t.id.clone())).collect(),
    }
}

/// What the verdict cache completes an evaluator's keys with: the plugin's
/// digest, the subject and service as planned, and the content digests of
/// every path they read. A changed program, plugin or service setting never
/// finds another's verdict.
fn judged_salt(local: &Local, plugin: &LoadedPlugin, step: &Step, inputs: &BTreeMap<String, String>) -> String {
    let planned =
        step.evaluation.as_ref().map(|e| serde_json::json!({"subject": e.subject, "service": e.service}).to_string());
    let mut material = format!("plugin {}\nplanned {}\n", plugin.sha256(), planned.unwrap_or_default());
    for (_, mount) in step.judged_paths() {
        material.push_str(&format!("{}={}\n", mount.rel, input_digest(local, inputs, mount)));
    }
    crate::plugin::hex(&<sha2::Sha256 as sha2::Digest>::digest(material.as_bytes()))
}

/// `mount`'s content digest from the step's input digests, which the
/// executor made for every mount and judged path; hashed here only if it
/// is not among them.
fn input_digest(local: &Local, inputs: &BTreeMap<String, String>, mount: &crate::plan::Mount) -> String {
    inputs
        .get(&mount.rel)
        .cloned()
        .unwrap_or_else(|| crate::cache::digest::Digester::cold(&local.workspace).digest(&mount.host))
}

/// What starting `service` (a service, or a twin's program) needs: its
/// grant's deferred mounts resolved and its program found.
fn server_spec(
    local: &Local,
    service: &crate::plan::services::Service,
    what: &str,
) -> Result<crate::sandbox::service::ServiceSpec, String> {
    let grant = refresh_mounts(service.grant.clone(), &local.workspace)?;
    let component = match &service.component {
        None => None,
        Some(mount) => {
            let path = built_component(&local.workspace, mount, "its component")?;
            Some(local.sandbox.load_proxy(&path, &grant).map_err(|e| format!("its component cannot be loaded: {e}"))?)
        }
    };
    let program = program_path(&grant, &service.program, service.file.as_ref())?;
    Ok(crate::sandbox::service::ServiceSpec {
        name: format!("{what} `{}`", service.id),
        helper: local.options.jail_helper.clone(),
        program,
        args: service.args.clone(),
        grant,
        workspace: local.workspace.clone(),
        port: service.port,
        ready: service.ready.clone(),
        component,
    })
}

/// The report of an evaluator whose service could not be used: failed
/// (the work's doing, so its stage is retried with the runner's one line),
/// or an error when the host could not jail it; the service's last output
/// lines in stderr, for humans.
fn service_failed(step: &Step, failure: crate::sandbox::service::ServiceFailure, started: Instant) -> StepReport {
    let mut report = error_report(step, failure.reason.clone());
    report.duration = started.elapsed();
    if failure.infrastructure {
        return report.infrastructure();
    }
    report.status = StepStatus::Failed;
    report.stderr = failure.tail.iter().map(|l| format!("{l}\n")).collect();
    report.service_failure = Some(failure.reason);
    report
}

/// Makes the subject ready to run for one evaluator step: its deferred
/// mounts resolved, its program file checked to be in the workspace, a
/// component compiled; no run going past `deadline`.
///
/// # Errors
/// Why it cannot run, in one line (the step is an error: a subject that
/// was not built, or is not a command, is the work's doing).
fn load_subject(
    local: &Local,
    subject: &crate::plan::gates::Subject,
    deadline: Instant,
) -> Result<Arc<crate::sandbox::SubjectRunner>, String> {
    use crate::plan::subjects::SubjectProgram;
    let grant =
        refresh_mounts(subject.grant.clone(), &local.workspace).map_err(|reason| format!("subject: {reason}"))?;
    match &subject.program {
        SubjectProgram::Component(mount) => {
            let path = built_component(&local.workspace, mount, "the subject")?;
            local
                .sandbox
                .load_subject(&path, &grant, deadline)
                .map_err(|reason| format!("the subject cannot be loaded: {reason}"))
        }
        SubjectProgram::Native { program, args, file, .. } => {
            let program =
                program_path(&grant, program, file.as_ref()).map_err(|reason| format!("the subject: {reason}"))?;
            let native = crate::sandbox::NativeProgram {
                helper: local.options.jail_helper.clone(),
                program,
                args: args.clone(),
                workspace: local.workspace.clone(),
            };
            Ok(crate::sandbox::SubjectRunner::native(native, grant, deadline))
        }
    }
}

/// A component an upstream step built (a subject's, a service's or a
/// twin's), as it is now: canonical and inside the workspace. `what`
/// names it in messages (``the subject``).
fn built_component(workspace: &Path, mount: &crate::plan::Mount, what: &str) -> Result<PathBuf, String> {
    match fs_err::canonicalize(&mount.host) {
        Ok(path) if path.starts_with(workspace) => Ok(path),
        Ok(path) => Err(format!("{what} `{}` resolves outside the workspace (to `{}`)", mount.rel, path.display())),
        Err(_) => {
            Err(format!("{what} `{}` does not exist: the steps this evaluator needs did not build it", mount.rel))
        }
    }
}

/// The program a native subject, service or twin runs: the one found when
/// the plan was made, or its workspace `file`, one of `grant`'s mounts,
/// checked again (and its kind read) now that upstream steps have built it.
fn program_path(grant: &Grant, program: &Path, file: Option<&String>) -> Result<PathBuf, String> {
    let Some(rel) = file else { return Ok(program.to_path_buf()) };
    match grant.mounts.iter().find(|m| &m.rel == rel) {
        Some(mount) if !mount.is_dir => Ok(mount.host.clone()),
        Some(_) => Err(format!("its program `{rel}` is a directory")),
        None => Err(format!("its program `{rel}` is not in its grant (internal error)")),
    }
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
    local: &Local,
    plugin: &LoadedPlugin,
    (step, deadline): (&Step, Instant),
    (evaluation, runs): (&Evaluation, &Runs),
    name: &str,
    invocation: &Invocation,
    judged: crate::sandbox::Judged,
    (stdout, stderr, denied): (&mut Captured, &mut Captured, &mut Vec<String>),
) -> Result<ScenarioReport, ScenarioStop> {
    let subject = judged.subject.clone();
    let mut passes = 0;
    let mut first_failure: Option<(String, String)> = None;
    let mut last = (String::new(), String::new());
    // Runs whose council reported votes, and those in which it was split.
    let (mut voted, mut split, mut cached_runs) = (0u32, 0u32, 0u32);
    for index in 1..=evaluation.repeat {
        let grant = remaining(&step.grant, deadline).ok_or(ScenarioStop::TimedOut)?;
        // `restart = "per-scenario"`: a fresh service (and twins) for this run.
        let mut judged = judged.clone();
        let mut fresh = false;
        if let Some(service) =
            evaluation.service.as_ref().filter(|s| s.restart == crate::manifest::RestartPolicy::PerScenario)
        {
            match local.services.get(local, service, None).await {
                Ok(running) => {
                    judged.service = Some(running);
                    fresh = true;
                }
                Err(failure) => {
                    let detail = std::iter::once(failure.reason).chain(failure.tail).collect::<Vec<_>>().join("\n");
                    if first_failure.is_none() {
                        first_failure = Some(("the service could not be started".into(), detail.clone()));
                    }
                    last = ("the service could not be started".into(), detail);
                    continue;
                }
            }
        }
        // One scenario run at a time per shared service, from the twin
        // reset to the verdict.
        let shared = judged.service.clone().filter(|_| !fresh);
        let _turn = match &shared {
            Some(service) => Some(service.turn().await),
            None => None,
        };
        // Every scenario run starts with fresh twins and no recorded calls.
        if let Some(service) = judged.service.as_ref().filter(|s| s.has_twins() && !fresh) {
            if let Err(failure) = service.reset_twins().await {
                let detail = std::iter::once(failure.reason).chain(failure.tail).collect::<Vec<_>>().join("\n");
                if first_failure.is_none() {
                    first_failure = Some(("a twin could not be started".into(), detail.clone()));
                }
                last = ("a twin could not be started".into(), detail);
                continue;
            }
        }
        let run = Arc::new(JudgingRun::new(index, runs.target.clone(), runs.verdicts.clone()));
        judged.judging = Some(Arc::clone(&run));
        let outcome = local.sandbox.run_evaluate(plugin, &grant, name, invocation, judged).await;
        append(stdout, outcome.stdout, step.grant.limits.output);
        append(stderr, outcome.stderr, step.grant.limits.output);
        denied.extend(outcome.denied);
        let notes = run.notes();
        if let Some(reason) = notes.gave_up {
            return Err(ScenarioStop::GaveUp { run: index, reason });
        }
        let (passed, summary, detail) = match outcome.result {
            Ok(verdict) => (verdict.passed, verdict.summary, verdict.detail),
            // Fixed words in the summary (it may reach the stage); the
            // evaluator's or wasmtime's own text only in the detail.
            Err(Failure::Timeout(_)) if Instant::now() >= deadline => return Err(ScenarioStop::TimedOut),
            Err(failure) => (false, format!("the evaluator {}", failure.category()), failure.to_string()),
        };
        if !notes.votes.is_empty() {
            voted += 1;
            if notes.votes.iter().any(|&v| v != notes.votes[0]) {
                split += 1;
            }
        }
        if notes.recalled {
            cached_runs += 1;
        }
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
    Ok(ScenarioReport {
        name: name.to_string(),
        runs: evaluation.repeat,
        passes,
        passed,
        summary,
        detail,
        pass_rate: ScenarioReport::share(passes, evaluation.repeat),
        run_disagreement: ScenarioReport::pairwise_disagreement(passes, evaluation.repeat),
        judge_disagreement: (voted > 0).then(|| f64::from(split) / f64::from(voted)),
        cached_runs,
    })
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
    local: &Local,
    program: &std::path::Path,
    args: &[String],
    display: &str,
    step: &Step,
    attempt: u32,
    feedback: &[String],
) -> StepReport {
    let staged = match writes::stage(&step.grant.mounts) {
        Ok(staged) => staged,
        Err(e) => return error_report(step, format!("could not stage its write mounts: {e}")).infrastructure(),
    };
    let cache = crate::cache::default_dir();
    let build_dirs = match crate::sandbox::build_dirs::prepare(step, &local.workspace, cache.as_deref()) {
        Ok(dirs) => dirs,
        Err(reason) => return error_report(step, reason).infrastructure(),
    };
    let jail = StepJail::build(NativeStep {
        program,
        args,
        grant: &step.grant,
        workspace: &local.workspace,
        staged: staged.binds(),
        stage: (step.kind == StepKind::Stage).then_some((attempt, feedback)),
        secrets: &local.secrets,
        allow_unjailed: local.options.allow_unjailed,
        stdin: None,
        build_dirs: &build_dirs,
    });
    let jail = match jail {
        Ok(jail) => jail,
        Err(reason) => return error_report(step, reason).infrastructure(),
    };
    let limits = &step.grant.limits;
    let quota = Quota::new(jail.quota_dirs(), limits.max_write);
    let started = Instant::now();
    let outcome = tokio::select! {
        outcome = jail::run(&local.options.jail_helper, &jail.spec, limits.timeout, limits.output) => outcome,
        why = quota.exceeded() => {
            jail.remove_mount_points();
            return StepReport { duration: started.elapsed(), ..error_report(step, why) };
        }
    };
    let parsed = step
        .grant
        .native()
        .and_then(|n| n.findings.as_ref())
        .map(|plan| read_findings(plan, &outcome.stdout.bytes, jail.temp_dir(), &local.workspace));
    let mut report =
        report_with_output(step, StepStatus::Error, None, outcome.stdout, outcome.stderr, outcome.duration);
    let mut committed = false;
    match outcome.result {
        Err(failure) => set_failure(&mut report, "", &failure),
        Ok(exit) => {
            report.unjailed = exit.unjailed.clone();
            let last = last_line(&report);
            let parsed_error = match parsed {
                Some(Ok(findings)) => {
                    report.findings.extend(findings);
                    None
                }
                Some(Err(why)) => Some(why),
                None => None,
            };
            let error_findings = report.findings.iter().any(|f| f.severity == "error");
            if exit.success() && parsed_error.is_some() {
                // It said nothing readable: never a pass by default.
                report.set_reason(&format!("`{display}` exited 0, but {}", parsed_error.unwrap_or_default()), "");
            } else if exit.success() && error_findings {
                report.status = StepStatus::Failed;
            } else if exit.success() {
                committed = commit(staged, &local.workspace, &mut report, None);
            } else if jail.out_of_memory() {
                // Its memory cap: what its inputs made it take, so a
                // failure of the work (a retried stage can use less).
                let cap = step.grant.native().and_then(|n| n.memory).map(crate::manifest::ByteSize);
                report.status = StepStatus::Failed;
                report.reason = Some(match cap {
                    Some(cap) => format!("`{display}` ran out of memory (its `memory` cap of {cap}) and was killed"),
                    None => format!("`{display}` ran out of memory and was killed"),
                });
            } else if let (None, Some(signal)) = (exit.code, exit.signal) {
                // Killed from outside, or by itself: says nothing about its
                // inputs, so an error (never cached), not a failure.
                report.set_reason(&format!("`{display}` was killed by signal {signal}{}", last.0), &last.1);
            } else {
                report.status = StepStatus::Failed;
                if let Some(why) = &parsed_error {
                    report.findings.push(FindingReport {
                        rule: "findings-unreadable".into(),
                        severity: "warning".into(),
                        produced_from: Some(why.len()),
                        message: why.clone(),
                        path: None,
                        line: None,
                        column: None,
                        line_digest: None,
                    });
                }
                let words = format!("`{display}` exited with {}{}", exit.describe(), last.0);
                report.findings.push(FindingReport {
                    rule: "exit-status".into(),
                    severity: "error".into(),
                    produced_from: Some(words.len()),
                    message: format!("{words}{}", last.1),
                    path: None,
                    line: None,
                    column: None,
                    line_digest: None,
                });
            }
        }
    }
    if !committed {
        jail.remove_mount_points();
    }
    report
}

/// The findings a program's output holds, in its step's `findings` format:
/// its stdout, or the file under its temporary directory `tmpdir` that it
/// wrote (read before the directory goes). Every message is the program's
/// text (`produced_from` 0), so feedback treats it as such.
///
/// # Errors
/// Why there are none to read: no file, or output that is not the format.
fn read_findings(
    plan: &crate::plan::grant::FindingsPlan,
    stdout: &[u8],
    tmpdir: &Path,
    workspace: &Path,
) -> Result<Vec<FindingReport>, String> {
    let what = format!("its `{}` findings", plan.format.as_str());
    let from_file;
    let output = match plan.file.as_deref().and_then(|f| f.strip_prefix("$TMPDIR/")) {
        Some(rel) => {
            // Through the directory, never following a link the program left.
            let dir = cap_std::fs::Dir::open_ambient_dir(tmpdir, cap_std::ambient_authority())
                .map_err(|e| format!("{what} could not be read: {e}"))?;
            let mut options = cap_std::fs::OpenOptions::new();
            options.read(true);
            cap_std::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW | libc::O_NONBLOCK);
            let mut file = dir
                .open_with(rel, &options)
                .map_err(|e| format!("{what} file `$TMPDIR/{rel}` could not be read: {e}"))?;
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(&mut file, FINDINGS_FILE_CAP), &mut bytes)
                .map_err(|e| format!("{what} file `$TMPDIR/{rel}` could not be read: {e}"))?;
            from_file = bytes;
            &from_file[..]
        }
        None => stdout,
    };
    let parsed = crate::findings::parse(&plan.format, output, workspace).map_err(|e| format!("{what}: {e}"))?;
    Ok(parsed
        .into_iter()
        .map(|p| FindingReport {
            rule: p.rule,
            severity: p.severity.as_str().to_string(),
            message: p.message,
            path: p.path,
            line: p.line,
            column: p.column,
            produced_from: Some(0),
            line_digest: None,
        })
        .collect())
}

/// The most of a findings file read: a report larger than this is cut (and
/// then most likely fails to parse, which is reported).
const FINDINGS_FILE_CAP: u64 = 64 << 20;

/// Read mounts that did not exist when the plan was made (a step this one
/// needs writes them) must exist now; their host path is checked again and
/// their kind (file or directory) read.
fn resolve_deferred_mounts(step: &Step, workspace: &Path) -> Result<Step, String> {
    let mut step = step.clone();
    step.grant = refresh_mounts(step.grant, workspace)?;
    Ok(step)
}

/// See [`resolve_deferred_mounts`]; for any grant (a step's or a subject's).
/// The check is the plan's own ([`crate::plan::mounts::resolve`]): inside
/// the workspace, no symlink out, not the run directory.
fn refresh_mounts(mut grant: Grant, workspace: &Path) -> Result<Grant, String> {
    for mount in grant.mounts.iter_mut().filter(|m| !m.exists && !m.writable) {
        let resolved = crate::plan::mounts::resolve(workspace, &mount.rel, false).map_err(|e| match e.code {
            crate::diag::Code::CR008 => {
                format!("mount `{}` does not exist: none of the steps it needs created it", mount.rel)
            }
            _ => e.message,
        })?;
        mount.is_dir = resolved.is_dir;
        mount.host = resolved.host;
        mount.exists = true;
    }
    Ok(grant)
}

/// `(": ", <last non-empty output line>)` (stderr first), the line cut to
/// fit one line; two empty strings when there was no output. The line is
/// the program's text; the separator is the runner's.
fn last_line(report: &StepReport) -> (&'static str, String) {
    let last = |text: &str| text.lines().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().to_string());
    match last(&report.stderr).or_else(|| last(&report.stdout)) {
        Some(line) if line.chars().count() > 150 => (": ", format!("{}…", line.chars().take(149).collect::<String>())),
        Some(line) => (": ", line),
        None => ("", String::new()),
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

/// An error in the runner's own words.
fn error_report(step: &Step, reason: String) -> StepReport {
    StepReport::error(&step.id, step.kind, reason)
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
        produced_from: None,
        line_digest: None,
    }
}
