//! The executor: runs a plan's steps as a DAG, in rounds, until every gate
//! passes, retries run out, or something no retry can fix stops the loop.
//!
//! A *round* runs its pending steps: those whose `needs` all passed run
//! concurrently, at most `jobs` at a time, each through the step
//! [`Backend`]; a step whose `needs` did not pass is `skipped`. After a
//! round, every failed gate with `retry` sends its stage back: the stage
//! gets attempt + 1 and one-line feedback ([`feedback::build`]), and the
//! next round re-runs it and everything downstream of it. A stage's attempt
//! budget is the plan's ([`crate::plan::Step::attempts`]); when it is used
//! up, the run ends with an escalation. When a step is an `error` for a
//! reason that is not the stage's work ([`StepReport::infrastructure`]),
//! no stage is retried: the loop stops at once and says why. Everything is
//! recorded in the [`Journal`]; `resume` continues an unfinished run from
//! it. Everything that happens is one [`Event`], emitted once to the journal
//! (durable) and to the [`Observer`] (live: progress, `--format jsonl`).
//! Ctrl-C (when [`RunOptions::ctrl_c`] is set) stops the run cleanly:
//! running steps are dropped before they commit anything, the run stays
//! resumable, and the report's status is `interrupted`. The executor takes
//! a [`Plan`] and never reads TOML or builds a sandbox by hand.

pub mod backend;
pub mod feedback;
pub mod local;
pub mod results;
pub mod stopping;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::cache::digest::Digester;
use crate::diag::{Code, Diagnostic, Diagnostics, Location};
use crate::governance::{Artifact, DecisionKind};
use crate::journal::{self, Journal, Retrying};
use crate::key::Key;
use crate::plan::{Plan, Step, StepKind};
pub use crate::report::events::{Event, Observer};
use crate::report::{
    AttemptReport, Change, FailingScenario, GateScore, Retried, RunReport, RunStatus, StepReport, StepStatus,
    Termination,
};
use crate::sandbox::Sandbox;
use crate::secrets::Secrets;
pub use backend::Backend;
use results::{CacheKey, ResultCache, SharedCache};

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
    /// Continue the latest unfinished run instead of starting a new one.
    pub resume: bool,
    /// Answer steps whose inputs did not change from the result cache
    /// (`--no-cache` turns it off).
    pub cache: bool,
    /// After the first step that fails or errors (and will not be retried),
    /// launch nothing more: the steps left are skipped, no retry round runs.
    pub fail_fast: bool,
    /// Stop cleanly on SIGINT (Ctrl-C): running steps are dropped before
    /// they commit, the rest are not started, the run stays resumable.
    pub ctrl_c: bool,
    /// Hears the run as it goes (progress display, event stream).
    pub observer: Option<Arc<dyn Observer>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            jail_helper: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("cleanroom")),
            allow_unjailed: false,
            resume: false,
            cache: true,
            fail_fast: false,
            ctrl_c: false,
            observer: None,
        }
    }
}

/// Which part of a pipeline a run covers, and how strictly: the flags of
/// `cleanroom run` that shape the plan before anything runs.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `--only`: these steps (ids or globs) and what they need.
    pub only: Vec<String>,
    /// `--skip`: these steps are reported skipped, and what needs them.
    pub skip: Vec<String>,
    /// `--locked`: every plugin of the pipeline must match `cleanroom.lock`.
    pub locked: bool,
    /// `--max-iterations`: every stage gets at most this many attempts.
    pub max_iterations: Option<u32>,
    /// `--files`, `--staged`, `--from-ref`: steps with `include` run on
    /// these files only ([`crate::plan::files`]).
    pub files: Option<crate::git::FileSelection>,
}

/// Loads the pipeline file `pipeline` and shapes the plan for a run: the
/// lock is checked against the whole pipeline (so `--only` dropping a
/// plugin is not drift), then `--only`/`--skip` select, then a file
/// selection narrows the steps that say which files they are about, then
/// `--max-iterations` caps every stage.
///
/// # Errors
/// Every problem with the pipeline, the lock or the selection.
pub fn prepare(pipeline: &Path, selection: &Selection) -> Result<Plan, Diagnostics> {
    let fetching = crate::plan::Fetching {
        locked: if selection.locked { Some(crate::lock::oci_pins(pipeline)?) } else { None },
        ..Default::default()
    };
    let plan = Plan::load_with(pipeline, &fetching)?;
    if selection.locked {
        crate::lock::verify(&plan)?;
    }
    let mut plan = crate::plan::select::select(plan, &selection.only, &selection.skip)?;
    let selected = match &selection.files {
        Some(files) => Some(files.files(&plan.workspace)?),
        None => None,
    };
    plan = crate::plan::files::apply(plan, selected.as_deref());
    if let Some(max) = selection.max_iterations {
        plan.cap_attempts(max);
    }
    Ok(plan)
}

/// Compiles and links every plugin a step of `plan` uses.
///
/// # Errors
/// A `CR011` diagnostic per plugin wasmtime rejects.
pub fn load_plugins(
    plan: &Plan,
    sandbox: &Sandbox,
) -> Result<BTreeMap<String, crate::sandbox::LoadedPlugin>, Diagnostics> {
    let mut loaded = BTreeMap::new();
    let mut diags = Diagnostics::default();
    for step in &plan.steps {
        let crate::plan::Action::Plugin(name) = &step.action else { continue };
        if loaded.contains_key(name) {
            continue;
        }
        let Some(info) = plan.plugins.get(name) else { continue };
        match sandbox.load(name, info) {
            Ok(plugin) => {
                loaded.insert(name.clone(), plugin);
            }
            Err(e) => {
                let message = e.to_string();
                // A memory the plugin needs at start larger than a step's
                // cap is the pipeline's setting, not a broken plugin.
                let hint = if message.contains("minimum byte size") {
                    format!("plugin `{name}` needs more memory than its steps allow: raise `memory` on them")
                } else {
                    "rebuild the plugin against wit/plugin.wit for the wasm32-wasip2 target".to_string()
                };
                diags.push(Diagnostic::new(Code::CR011, message).at(Location::Path(info.path.clone())).hint(hint));
            }
        }
    }
    diags.into_result(loaded)
}

/// Loads `plan`'s plugins and runs every step on this machine, retrying
/// stages as gates ask.
///
/// # Errors
/// Diagnostics when the engine cannot start, a plugin cannot be loaded, the
/// run record cannot be written, or `resume` finds no unfinished run;
/// nothing has run then. Step failures are not errors: they are in the report.
pub fn run(plan: &Plan, options: &RunOptions) -> Result<RunReport, Diagnostics> {
    run_with(plan, options, &|local, _, _| Ok((local, None)))
}

/// How a run gets its backend and shared cache from the local backend, the
/// scheduler's runtime and the run's secrets: the seam [`crate::remote`]
/// attaches to (connecting to its service before anything runs).
pub type Attach<'a> = &'a dyn Fn(
    Arc<local::Local>,
    &tokio::runtime::Runtime,
    &Arc<Secrets>,
) -> Result<(Arc<dyn Backend>, Option<Arc<dyn SharedCache>>), Diagnostics>;

/// [`run`], with the backend and shared cache `attach` makes.
///
/// # Errors
/// As [`run`], and what `attach` refuses.
pub fn run_with(plan: &Plan, options: &RunOptions, attach: Attach<'_>) -> Result<RunReport, Diagnostics> {
    // The key that authenticates the journal and the caches, and the
    // check that neither it nor the caches are within a step's reach.
    let key = crate::plan::taint::key_for_run(plan)?;
    // Secrets are read before anything runs: a missing one is bad input.
    let secrets = Arc::new(Secrets::read(plan)?);
    let capacity = crate::sandbox::pool::Capacity::for_jobs(options.jobs, plan.max_memory());
    let sandbox = Sandbox::new(capacity)
        .map_err(|e| Diagnostics::from(Diagnostic::new(Code::CR011, e.to_string())))?
        .with_secrets(Arc::clone(&secrets));
    let plugins = load_plugins(plan, &sandbox)?;
    // One result cache for the executor's step results and the backend's
    // remembered verdicts.
    let results = open_results(options, &key);
    let verdicts = results.clone().map(|cache| Arc::new(cache) as Arc<dyn crate::sandbox::judging::VerdictCache>);
    let runtime = scheduler_runtime(options)?;
    let local = Arc::new(local::Local {
        sandbox: Arc::new(sandbox),
        plugins,
        workspace: plan.workspace.clone(),
        options: options.clone(),
        secrets: Arc::clone(&secrets),
        services: local::Services::default(),
        verdicts,
    });
    let (backend, shared) = attach(local, &runtime, &secrets)?;
    // `--no-cache`: no cache answers, the shared one neither.
    let shared = shared.filter(|_| options.cache);
    run_with_cache(plan, backend, (secrets, key), options, (results, shared), runtime)
}

/// The runtime the scheduler (and a remote service's connection) runs on.
fn scheduler_runtime(options: &RunOptions) -> Result<tokio::runtime::Runtime, Diagnostics> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.jobs.max(1))
        .enable_all()
        .build()
        .map_err(|e| Diagnostics::from(Diagnostic::new(Code::CR011, format!("cannot start the scheduler: {e}"))))
}

/// Runs `plan` with `backend` running its steps: the scheduler, whatever
/// runs the steps. `key` authenticates the journal and result cache;
/// `secrets` are scrubbed from every report.
///
/// # Errors
/// As [`run`], once the backend exists.
pub fn run_on(
    plan: &Plan,
    backend: Arc<dyn Backend>,
    secrets: Arc<Secrets>,
    key: Key,
    options: &RunOptions,
) -> Result<RunReport, Diagnostics> {
    let results = open_results(options, &key);
    run_with_cache(plan, backend, (secrets, key), options, (results, None), scheduler_runtime(options)?)
}

/// [`run_on`] with the result cache already opened (or off).
fn run_with_cache(
    plan: &Plan,
    backend: Arc<dyn Backend>,
    (secrets, key): (Arc<Secrets>, Key),
    options: &RunOptions,
    (results, shared): (Option<ResultCache>, Option<Arc<dyn SharedCache>>),
    runtime: tokio::runtime::Runtime,
) -> Result<RunReport, Diagnostics> {
    let identity = journal::RunIdentity::of(plan);
    let journal_error = |e: std::io::Error| {
        Diagnostics::from(
            Diagnostic::new(
                Code::CR022,
                format!("cannot write the run record in `{}`: {e}", journal::runs_dir(&plan.workspace).display()),
            )
            .hint("the workspace must be writable for `.cleanroom/`"),
        )
    };
    let (journal, state) = if options.resume {
        // Only a run this runner recorded for this pipeline, every line of
        // it authenticated, and started from the same files and plan.
        let Some((journal, events)) = Journal::open_unfinished(&plan.workspace, &key, &identity)? else {
            return Err(Diagnostic::new(Code::CR022, format!("no unfinished run of `{}` to resume", plan.name))
                .hint("run without --resume to start a new run")
                .into());
        };
        (journal, RunState::resumed(plan, &events))
    } else {
        (Journal::create(&plan.workspace, &key, &identity).map_err(journal_error)?, RunState::fresh(plan))
    };
    let services = Arc::new(Services {
        workspace: plan.workspace.clone(),
        holdout: feedback::Holdout::scan(&plan.holdout, &plan.workspace),
        digester: Digester::open(&plan.workspace),
        results,
        shared,
        secrets,
    });
    let started = identity.started(journal.run_id());
    let mut executor = Executor {
        plan,
        backend,
        services,
        options,
        journal,
        state,
        journal_failure: None,
        stop: None,
        started: Instant::now(),
    };
    // The journal wrote `run_started` itself, first; live sinks hear it now.
    executor.tell(&started);
    let report = runtime.block_on(executor.execute());
    executor.services.digester.save();
    crate::sandbox::fs::release_staged();
    if let Some(results) = &executor.services.results {
        let build_dirs = plan.steps.iter().any(|s| s.grant.native().is_some_and(|n| !n.cache_dirs.is_empty()));
        results.enforce_limit(build_dirs);
    }
    if let Some(e) = executor.journal_failure {
        return Err(journal_error(e));
    }
    Ok(report)
}

/// The result cache, when `options` allow one and it can be opened (a
/// cache that cannot be is a warning: the run goes on without one).
fn open_results(options: &RunOptions, key: &Key) -> Option<ResultCache> {
    options.cache.then(crate::cache::default_dir).flatten().and_then(|root| {
        ResultCache::open(&root)
            .map(|cache| cache.with_key(key.clone()))
            .map_err(|reason| tracing::warn!("{reason}; running without a result cache"))
            .ok()
    })
}

/// What the executor itself uses around every step, whatever the backend.
struct Services {
    workspace: PathBuf,
    /// Holdout text feedback may not quote.
    holdout: feedback::Holdout,
    /// Digests of step inputs (journal, cache keys, resume).
    digester: Digester,
    results: Option<ResultCache>,
    /// A cache shared beyond this machine, asked after the local one.
    shared: Option<Arc<dyn SharedCache>>,
    /// The run's secret values, scrubbed from every report.
    secrets: Arc<Secrets>,
}

/// Where a run stands between rounds. Per-step state is by plan index.
struct RunState {
    /// Latest report of each step.
    reports: Vec<Option<StepReport>>,
    /// Each stage's current attempt (1 until it is retried).
    attempts: Vec<u32>,
    /// Feedback for each retried stage's current attempt.
    feedback: Vec<Vec<String>>,
    /// The round about to run.
    round: u32,
    /// Steps the round must run.
    pending: BTreeSet<usize>,
    /// Results from before an interruption that this round may reuse if the
    /// step's inputs are unchanged (resume): inputs then, and the report.
    reusable: BTreeMap<usize, (BTreeMap<String, String>, StepReport)>,
    /// One entry per finished round.
    history: Vec<AttemptReport>,
    /// Each gate's score per round, and the feedback each stage got: what
    /// plateau and repeating-failure stops look at.
    progress: stopping::Progress,
    /// The digests of the inputs each step's latest result was made from,
    /// and the round it was made in: what human decisions name.
    inputs: Vec<BTreeMap<String, String>>,
    result_round: Vec<u32>,
    /// The journal's `approval_requested` and `human_decision` events so
    /// far: what the approval gates are judged against.
    governance: Vec<Event>,
}

impl RunState {
    fn fresh(plan: &Plan) -> RunState {
        let n = plan.steps.len();
        RunState {
            reports: vec![None; n],
            attempts: vec![1; n],
            feedback: vec![Vec::new(); n],
            round: 1,
            pending: (0..n).collect(),
            reusable: BTreeMap::new(),
            history: Vec::new(),
            progress: stopping::Progress::default(),
            inputs: vec![BTreeMap::new(); n],
            result_round: vec![0; n],
            governance: Vec::new(),
        }
    }

    /// Rebuilds the state of an interrupted run from its journal.
    ///
    /// `events` are only ever the lines of a journal that verified under
    /// the runner's key, of a run started from this very plan
    /// ([`Journal::open_unfinished`]): nothing else read from the workspace
    /// (no `report.json`, no unauthenticated line) decides a step's status.
    fn resumed(plan: &Plan, events: &[Event]) -> RunState {
        let mut state = RunState::fresh(plan);
        let index = |id: &str| plan.graph.index(id);
        let mut finished: BTreeMap<usize, (u32, BTreeMap<String, String>, StepReport)> = BTreeMap::new();
        for event in events {
            // Rounds count from 1; never index with anything else.
            if let Event::StepFinished { round: 0, .. }
            | Event::GateDecision { round: 0, .. }
            | Event::RoundFinished { round: 0 | u32::MAX, .. } = event
            {
                continue;
            }
            match event {
                Event::StepFinished { step, round, status, inputs, report } => {
                    grow_history(&mut state.history, *round);
                    state.history[*round as usize - 1].failing_scenarios.extend(failing_scenarios(step, report));
                    if let Some(i) = index(step) {
                        if let Some(score) = stopping::score(report) {
                            state.progress.measured(i, *round, score);
                        }
                        state.reports[i] = Some((**report).clone());
                        state.inputs[i] = inputs.clone();
                        state.result_round[i] = *round;
                        if status.satisfied() {
                            finished.insert(i, (*round, inputs.clone(), (**report).clone()));
                        } else {
                            finished.remove(&i);
                        }
                    }
                }
                Event::GateDecision { round, .. } => {
                    grow_history(&mut state.history, *round);
                    state.history[*round as usize - 1].decisions.extend(gate_score(event));
                }
                Event::ApprovalRequested { .. } => state.governance.push(event.clone()),
                Event::HumanDecision(decision) => {
                    state.governance.push(event.clone());
                    // A person accepted a failed gate: it holds for the very
                    // result they saw (same round, same inputs), never for a
                    // result the step produces later.
                    let target = index(&decision.target).filter(|_| decision.kind == DecisionKind::Override);
                    if let Some(i) = target {
                        let seen = state.artifact(i);
                        let report = state.reports[i].as_mut().filter(|r| r.status == StepStatus::Failed);
                        if let (Some(report), Some(seen)) = (report, seen) {
                            if decision.artifacts.get(&decision.target) == Some(&seen) {
                                report.status = StepStatus::Overridden;
                                report.note = Some(format!(
                                    "failure accepted by {} on {}: {}",
                                    decision.by, decision.at, decision.reason
                                ));
                                finished.insert(i, (seen.round, state.inputs[i].clone(), report.clone()));
                            }
                        }
                    }
                }
                Event::RoundFinished { round, retries } => {
                    let mut stages = Vec::new();
                    for (stage, retrying) in retries {
                        state.progress.count(stage, &stopping::signature(&retrying.feedback));
                        if let Some(i) = index(stage) {
                            state.attempts[i] = retrying.attempt;
                            state.feedback[i] = retrying.feedback.clone();
                            stages.push(i);
                        }
                        if let Some(entry) = state.history.get_mut(*round as usize - 1) {
                            entry.add_retry(stage, retrying);
                        }
                    }
                    state.round = round + 1;
                    state.pending = plan.graph.downstream(stages);
                }
                _ => {}
            }
        }
        for (i, (round, inputs, report)) in finished {
            if round == state.round && state.pending.contains(&i) {
                state.reusable.insert(i, (inputs, report));
            }
        }
        state
    }

    /// Step `i`'s latest result as a human decision names it.
    fn artifact(&self, i: usize) -> Option<Artifact> {
        let report = self.reports[i].as_ref()?;
        Some(Artifact {
            status: report.status,
            round: self.result_round[i],
            inputs_sha256: crate::governance::inputs_digest(&self.inputs[i]),
        })
    }
}

struct Executor<'p> {
    plan: &'p Plan,
    backend: Arc<dyn Backend>,
    services: Arc<Services>,
    options: &'p RunOptions,
    journal: Journal,
    state: RunState,
    journal_failure: Option<std::io::Error>,
    /// Set when the run must launch nothing more.
    stop: Option<Stop>,
    /// When this run (or this resumption of it) started: `max_duration`
    /// counts from here.
    started: Instant,
}

/// Why a run stopped early.
enum Stop {
    /// `--fail-fast`: this step failed or errored and will not be retried.
    FailFast(String),
    /// Ctrl-C.
    Interrupted,
    /// `[pipeline] max_duration` was reached (the limit as written).
    OutOfTime(String),
}

impl Stop {
    fn skip_reason(&self) -> String {
        match self {
            Stop::FailFast(step) => format!("not run: --fail-fast stopped the run after `{step}` did not pass"),
            Stop::Interrupted => "not run: the run was interrupted (Ctrl-C)".to_string(),
            Stop::OutOfTime(limit) => format!("not run: the run reached its `max_duration` of {limit}"),
        }
    }
}

/// Resolves on SIGINT when `enabled`, else never.
async fn ctrl_c_signal(enabled: bool) {
    if enabled && tokio::signal::ctrl_c().await.is_ok() {
        return;
    }
    std::future::pending::<()>().await;
}

/// `duration` cut to whole milliseconds, as reports keep it: a report read
/// back renders exactly as it did live.
fn whole_millis(duration: Duration) -> Duration {
    Duration::from_millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

impl Executor<'_> {
    /// Sends `event` to every sink: the journal, then the observer.
    fn emit(&mut self, event: &Event) {
        if self.journal_failure.is_none() {
            if let Err(e) = self.journal.append(event) {
                self.journal_failure = Some(e);
            }
        }
        self.tell(event);
    }

    /// Sends `event` to the live sinks only (the caller says why it is not
    /// journaled).
    fn tell(&self, event: &Event) {
        if let Some(observer) = &self.options.observer {
            observer.event(event);
        }
    }

    async fn execute(&mut self) -> RunReport {
        let started = self.started;
        let escalation = loop {
            self.run_round().await;
            for log in self.backend.round_finished().await {
                let crate::report::events::ServiceLog { service, ended, stdout, stderr } = log;
                self.emit(&Event::ServiceOutput { round: self.state.round, service, ended, stdout, stderr });
            }
            if self.stop.is_some() {
                // No retry round after --fail-fast or Ctrl-C.
                break None;
            }
            match self.judge_round() {
                Verdict::Done => break None,
                Verdict::Escalate(termination, message) => break Some((termination, message)),
                Verdict::Retry => {}
            }
        };
        let (mut termination, mut escalation) = match escalation {
            Some((termination, message)) => (Some(termination), Some(message)),
            None => (None, None),
        };
        if let Some(Stop::OutOfTime(limit)) = &self.stop {
            let headline = format!("the run reached its `max_duration` of {limit}; the steps left did not start");
            escalation = Some(self.escalation(&headline));
            termination = Some(Termination::Budget);
        }
        let steps = self
            .state
            .reports
            .iter()
            .zip(&self.plan.steps)
            .map(|(report, step)| {
                let mut report = report.clone().unwrap_or_else(|| {
                    StepReport::error(&step.id, step.kind, "the runner lost this step's result (internal error)".into())
                        .infrastructure()
                });
                report.duration = whole_millis(report.duration);
                report
            })
            .collect();
        let mut report = RunReport::new(
            self.plan.name.clone(),
            self.journal.run_id().to_string(),
            whole_millis(started.elapsed()),
            steps,
        );
        if escalation.is_some() {
            report.status = RunStatus::Failed;
        }
        let interrupted = matches!(self.stop, Some(Stop::Interrupted));
        report.termination = Some(match termination {
            _ if interrupted => Termination::Interrupted,
            Some(termination) => termination,
            None if report.status == RunStatus::Passed => Termination::Passed,
            None if report.steps.iter().any(|s| s.budget_exhausted.is_some()) => Termination::Budget,
            None if report.steps.iter().any(|s| s.status == StepStatus::Error) => Termination::Error,
            None => Termination::MaxIterations,
        });
        if self.state.round > 1 {
            report.attempts = self.state.history.clone();
        }
        report.feedback_level = self.plan.feedback;
        report.feedback_bits = self.state.history.iter().map(|a| a.feedback_bits).sum();
        report.escalation = escalation;
        crate::report::facts::record(&mut report, self.plan);
        // A command line may spell a secret's value out (it is scrubbed from
        // findings and reasons that quote it, so from the doers too).
        for doer in report.plan.doers.values_mut() {
            self.services.secrets.scrub_in_place(doer);
        }
        let mut waiting = Vec::new();
        if !interrupted && !self.plan.approvals.is_empty() {
            waiting = self.judge_approvals(&mut report);
        }
        report.decisions = self
            .state
            .governance
            .iter()
            .filter_map(|e| match e {
                Event::HumanDecision(d) => Some(d.clone()),
                _ => None,
            })
            .collect();
        if interrupted {
            report.status = RunStatus::Interrupted;
        }
        let json = crate::report::json::render(&report);
        if let Err(e) = self.journal.write_report(&json) {
            self.journal_failure.get_or_insert(e);
        }
        let report_sha256 = crate::plugin::hex(&<sha2::Sha256 as sha2::Digest>::digest(json.as_bytes()));
        let whole = Some(Box::new(report.clone()));
        if interrupted {
            // No `run_finished`: the run stays resumable.
            self.emit(&Event::RunInterrupted { report_sha256, report: whole });
        } else if !waiting.is_empty() {
            // No `run_finished`: `run --resume` continues after a decision.
            self.emit(&Event::RunAwaiting { waiting, report_sha256, report: whole });
        } else {
            self.emit(&Event::RunFinished {
                status: report.status.as_str().to_string(),
                escalated: report.escalation.is_some(),
                report_sha256: Some(report_sha256),
                report: whole,
            });
        }
        report
    }

    /// Judges the approval gates on the steps' latest results: journals the
    /// gates that ask for the first time, puts them in `report`, and makes
    /// the run fail (a gate rejected or expired) or wait (a gate undecided)
    /// when every step is through. Returns the gates waited for.
    fn judge_approvals(&mut self, report: &mut RunReport) -> Vec<String> {
        let results: BTreeMap<String, Artifact> = self
            .plan
            .steps
            .iter()
            .enumerate()
            .filter_map(|(i, step)| self.state.artifact(i).map(|a| (step.id.clone(), a)))
            .collect();
        let now = crate::governance::time::now_ms();
        let judged = crate::governance::approvals::judge(&self.plan.approvals, &results, &self.state.governance, now);
        for request in &judged.requests {
            self.emit(request);
            self.state.governance.push(request.clone());
        }
        report.approvals = judged.reports.clone();
        let through = matches!(report.status, RunStatus::Passed | RunStatus::Overridden);
        if !through {
            return Vec::new();
        }
        if judged.refused() {
            report.status = RunStatus::Failed;
            report.termination = Some(Termination::Rejected);
            return Vec::new();
        }
        let waiting = judged.waiting();
        if !waiting.is_empty() {
            report.status = RunStatus::AwaitingApproval;
            report.termination = Some(Termination::AwaitingApproval);
        }
        waiting
    }

    /// Runs every pending step of the current round as a DAG.
    async fn run_round(&mut self) {
        let plan = self.plan;
        let graph = &plan.graph;
        let round = self.state.round;
        for &i in &self.state.pending {
            self.state.reports[i] = None;
        }
        let mut launched: Vec<bool> = (0..plan.steps.len()).map(|i| !self.state.pending.contains(&i)).collect();
        let mut running = JoinSet::new();
        let mut in_flight: BTreeSet<usize> = BTreeSet::new();
        let jobs = self.options.jobs.max(1);
        let ctrl_c = ctrl_c_signal(self.options.ctrl_c);
        tokio::pin!(ctrl_c);
        loop {
            let mut progress = false;
            for (i, step) in plan.steps.iter().enumerate() {
                if launched[i] {
                    continue;
                }
                if let Some(stop) = &self.stop {
                    launched[i] = true;
                    let mut report = StepReport::skipped(&step.id, step.kind, stop.skip_reason());
                    report.attempt = self.attempt_of(i);
                    // Live only, not journaled: a resumed run runs these.
                    self.finish(i, round, report, BTreeMap::new(), Sink::Live);
                    progress = true;
                    continue;
                }
                let blocker = graph.needs(i).iter().find_map(|&n| {
                    self.state.reports[n].as_ref().filter(|r| !r.status.satisfied()).map(|r| (n, r.status))
                });
                let skipped = match (&step.excluded, blocker) {
                    (Some(why), _) => Some(why.clone()),
                    (None, Some((need, status))) => {
                        let why = if status == StepStatus::Skipped { "was skipped" } else { "did not pass" };
                        Some(format!("needs `{}`, which {why}", plan.steps[need].id))
                    }
                    (None, None) => None,
                };
                if let Some(reason) = skipped {
                    launched[i] = true;
                    let mut report = StepReport::skipped(&step.id, step.kind, reason);
                    report.attempt = self.attempt_of(i);
                    // Journaled like any result, so a resumed run knows it.
                    self.finish(i, round, report, BTreeMap::new(), Sink::All);
                    progress = true;
                    continue;
                }
                let ready = graph.needs(i).iter().all(|&n| self.state.reports[n].is_some());
                // Time separation: a stage and a step that can read the
                // holdout never run at the same time, so neither can signal
                // the other (a lock, a timing) while both are alive.
                let held_apart = in_flight.iter().any(|&r| kept_apart(step, &plan.steps[r]));
                if !ready || running.len() >= jobs || held_apart {
                    continue;
                }
                // `max_duration`, checked before the step starts: past it,
                // nothing more starts (the loop's next pass skips the rest).
                let time_left = plan.max_duration.map(|max| max.0.saturating_sub(self.started.elapsed()));
                if time_left.is_some_and(|left| left.is_zero()) {
                    let limit = plan.max_duration.map(|max| max.to_string()).unwrap_or_default();
                    self.stop = Some(Stop::OutOfTime(limit));
                    progress = true;
                    continue;
                }
                launched[i] = true;
                progress = true;
                let inputs = input_digests(step, &self.services.digester);
                if let Some(reused) = self.reuse(i, &inputs) {
                    // Live only: the journal holds it from before.
                    self.state.inputs[i] = inputs;
                    self.finish(i, round, reused, BTreeMap::new(), Sink::Live);
                    continue;
                }
                let attempt = self.attempt_of(i);
                self.emit(&Event::StepStarted {
                    step: step.id.clone(),
                    kind: step.kind,
                    round,
                    attempt,
                    inputs: inputs.clone(),
                });
                tracing::info!("round {round}: starting {} `{}` (attempt {attempt})", step.kind, step.id);
                let feedback = self.state.feedback[i].clone();
                let key = (step.cache && (self.services.results.is_some() || self.services.shared.is_some()))
                    .then(|| CacheKey::of(plan, step, &inputs, attempt, &feedback, &self.services.digester).digest());
                let services = Arc::clone(&self.services);
                let backend = Arc::clone(&self.backend);
                let mut step = step.clone();
                // No step runs past the run's `max_duration`: its deadline
                // is cut to the time left, and a step stopped by the cut
                // deadline ran out of the run's budget, not of its own.
                let cut = time_left.filter(|left| *left < step.grant.limits.timeout);
                if let Some(left) = cut {
                    step.grant.limits.timeout = left;
                }
                let max_duration = plan.max_duration;
                in_flight.insert(i);
                running.spawn(async move {
                    let started = Instant::now();
                    let mut report =
                        run_or_reuse(&*backend, &services, (&step, &inputs), attempt, feedback, key).await;
                    report.attempt = attempt;
                    if let (Some(left), Some(max)) = (cut, max_duration) {
                        if report.status == StepStatus::Error && started.elapsed() >= left {
                            report.budget_exhausted = Some(format!("max_duration = {max}"));
                            report.reason = Some(format!(
                                "stopped when the run reached its `max_duration` of {max} (its deadline was cut to the {} left)",
                                crate::manifest::DurationSpec(whole_millis(left))
                            ));
                            report.reason_produced_from = None;
                        }
                    }
                    (i, inputs, report)
                });
            }
            if running.is_empty() {
                // Plan order is topological: one pass skipped or launched
                // everything it could, so with nothing running, the round is
                // over (a reused result may have unblocked more: loop again).
                if launched.iter().all(|&l| l) {
                    break;
                }
                if !progress {
                    // A need without a result and nothing running to give
                    // it one: never spin; say so on the steps left.
                    for (i, step) in plan.steps.iter().enumerate().filter(|(i, _)| !launched[*i]) {
                        let reason =
                            "could not be scheduled: a step it needs has no result (internal error)".to_string();
                        self.state.reports[i] = Some(StepReport::error(&step.id, step.kind, reason).infrastructure());
                    }
                    break;
                }
                continue;
            }
            let joined = tokio::select! {
                joined = running.join_next() => joined,
                () = &mut ctrl_c, if self.stop.is_none() => {
                    // Dropping a step's task drops its sandbox (or kills its
                    // process group) before anything is committed: commits
                    // and cache replays never await, so they are whole.
                    running.abort_all();
                    self.stop = Some(Stop::Interrupted);
                    continue;
                }
            };
            match joined {
                Some(Ok((i, inputs, report))) => {
                    in_flight.remove(&i);
                    let step = &plan.steps[i];
                    let final_failure =
                        matches!(report.status, StepStatus::Failed | StepStatus::Error) && !self.will_retry(i, &report);
                    if self.options.fail_fast && final_failure && self.stop.is_none() {
                        self.stop = Some(Stop::FailFast(step.id.clone()));
                    }
                    self.finish(i, round, report, inputs, Sink::All);
                }
                Some(Err(join_error)) if join_error.is_cancelled() => {}
                Some(Err(join_error)) => tracing::error!("a step task failed: {join_error}"),
                None => {}
            }
        }
        // Steps whose task was dropped by Ctrl-C: not journaled, so that a
        // resumed run starts them again.
        for i in in_flight {
            if self.state.reports[i].is_none() {
                let step = &plan.steps[i];
                let reason = "interrupted (Ctrl-C) while running; nothing was committed".to_string();
                let mut report = StepReport::error(&step.id, step.kind, reason).infrastructure();
                report.attempt = self.attempt_of(i);
                // Live only, not journaled: a resumed run starts them again.
                self.finish(i, round, report, BTreeMap::new(), Sink::Live);
            }
        }
    }

    /// Stores step `i`'s result for this round and emits `step_finished`
    /// to `sinks`, with the digests of the `inputs` it started from (none
    /// for a step that did not run).
    fn finish(&mut self, i: usize, round: u32, report: StepReport, inputs: BTreeMap<String, String>, sinks: Sink) {
        tracing::info!("round {round}: `{}` {}", report.id, report.status.as_str());
        let event = Event::StepFinished {
            step: report.id.clone(),
            round,
            status: report.status,
            inputs,
            report: Box::new(report),
        };
        match sinks {
            Sink::All => self.emit(&event),
            Sink::Live => self.tell(&event),
        }
        if let Event::StepFinished { report, inputs, .. } = event {
            self.state.reports[i] = Some(*report);
            if !inputs.is_empty() {
                self.state.inputs[i] = inputs;
            }
            self.state.result_round[i] = round;
        }
    }

    /// Whether gate `i`, which ended as `report` says, will send its stage
    /// back: it has `retry`, it failed for a reason a new attempt can
    /// change, and the stage has attempts left in its budget.
    fn will_retry(&self, i: usize, report: &StepReport) -> bool {
        let Some(retry) = &self.plan.steps[i].retry else { return false };
        let Some(stage) = self.plan.graph.index(&retry.stage) else { return false };
        matches!(report.status, StepStatus::Failed | StepStatus::Error)
            && !report.infrastructure
            && self.state.attempts[stage] < self.plan.steps[stage].attempts
    }

    /// A result from before an interruption, if its inputs did not change.
    fn reuse(&mut self, i: usize, inputs: &BTreeMap<String, String>) -> Option<StepReport> {
        let (recorded, mut report) = self.state.reusable.remove(&i)?;
        if &recorded != inputs {
            return None;
        }
        report.note = Some(match report.note {
            Some(note) => format!("{note} (result reused on resume)"),
            None => "result reused on resume".to_string(),
        });
        Some(report)
    }

    /// A stage's attempt number; for other steps, the round.
    fn attempt_of(&self, i: usize) -> u32 {
        match self.plan.steps[i].kind {
            StepKind::Stage => self.state.attempts[i],
            _ => self.state.round,
        }
    }

    /// Decides, after a round, whether the run is done, retries, or escalates.
    fn judge_round(&mut self) -> Verdict {
        let plan = self.plan;
        let round = self.state.round;
        let ran: Vec<usize> = self.state.pending.iter().copied().collect();
        for &i in &ran {
            if let Some(score) = self.state.reports[i].as_ref().and_then(stopping::score) {
                self.state.progress.measured(i, round, score);
            }
        }
        let report = |i: usize| self.state.reports[i].as_ref();
        let mut entry = AttemptReport::new(round);
        let mut decisions = Vec::new();
        // Failed gates with `retry`, grouped by the stage they send back.
        let mut failing: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &i in &ran {
            let step = &plan.steps[i];
            let Some(r) = report(i) else { continue };
            if step.kind == StepKind::Stage {
                continue;
            }
            let passed = r.status.satisfied();
            let reason = gate_reason(r);
            entry.failing_scenarios.extend(failing_scenarios(&step.id, r));
            if step.retry.is_some() || step.kind == StepKind::Evaluator {
                let stage = step.retry.as_ref().filter(|_| !passed).and_then(|retry| plan.graph.index(&retry.stage));
                if let Some(stage) = stage {
                    failing.entry(stage).or_default().push(i);
                }
                decisions.push((step.id.clone(), r.status, reason, stage));
            }
        }
        // Steps that could not run for a reason no attempt of a stage can
        // change: retrying would only burn the budget.
        let broken: Vec<usize> = ran
            .iter()
            .copied()
            .filter(|&i| report(i).is_some_and(|r| r.status == StepStatus::Error && r.infrastructure))
            .collect();
        // Steps that ran out of a budget: the run spends no more.
        let spent: Vec<usize> =
            ran.iter().copied().filter(|&i| report(i).is_some_and(|r| r.budget_exhausted.is_some())).collect();
        let mut stop: Option<(Termination, String)> = None;
        if let Some(&i) = spent.first() {
            let r = report(i).expect("filtered on its report");
            let budget = r.budget_exhausted.as_deref().unwrap_or("a budget");
            stop = Some((Termination::Budget, format!("`{}` ran out of its budget (`{budget}`)", r.id)));
        }
        let mut retries: BTreeMap<String, Retrying> = BTreeMap::new();
        let mut exhausted = Vec::new();
        for (&stage, gates) in failing.iter().filter(|_| broken.is_empty()) {
            if stop.is_some() {
                break;
            }
            let attempt = self.state.attempts[stage];
            if attempt >= plan.steps[stage].attempts {
                exhausted.push((stage, attempt));
                continue;
            }
            let stage_id = &plan.steps[stage].id;
            // A gate whose satisfaction stopped rising: more attempts would
            // be spent on the same score.
            let plateau = gates.iter().find_map(|&g| {
                let patience = plan.steps[g].retry.as_ref()?.stop_on_plateau?;
                self.state.progress.plateau(g, patience).map(|best| (g, patience, best))
            });
            if let Some((gate, patience, best)) = plateau {
                let gate = &plan.steps[gate];
                let what = match gate.kind {
                    StepKind::Evaluator => format!("satisfaction has not risen above {best:.2}"),
                    _ => format!("error findings have not dropped below {}", -best),
                };
                let rounds = if patience == 1 { "round" } else { "rounds" };
                stop = Some((
                    Termination::Plateau,
                    format!(
                        "`{}`'s {what} for {patience} {rounds} (`stop_on_plateau = {patience}`), so `{stage_id}` is not sent back again",
                        gate.id
                    ),
                ));
                break;
            }
            let downstream = plan.graph.downstream([stage]);
            // The gates' reports, and failures between the stage and its
            // gates (a build that did not compile), are the feedback.
            let sources: Vec<feedback::Source<'_>> = ran
                .iter()
                .filter(|&&i| downstream.contains(&i) && i != stage)
                .filter(|&&i| {
                    gates.contains(&i) || (plan.steps[i].retry.is_none() && plan.steps[i].kind == StepKind::Stage)
                })
                .filter_map(|&i| report(i).map(|r| (i, r)))
                .filter(|(_, r)| matches!(r.status, StepStatus::Failed | StepStatus::Error))
                .map(|(i, report)| feedback::Source { report, reads_holdout: plan.steps[i].reads_holdout })
                .collect();
            let built = feedback::build(&sources, plan.feedback, &self.services.holdout);
            // The same failure, fed back again: the stage is not getting
            // anywhere with it.
            let seen = self.state.progress.seen(stage_id, &stopping::signature(&built.lines));
            if seen + 1 >= stopping::REPEATS_BEFORE_STOP {
                stop = Some((
                    Termination::RepeatingFailure,
                    format!(
                        "`{stage_id}` failed the same way {} times (the same feedback, numbers aside), so it is not sent back again",
                        seen + 1
                    ),
                ));
                break;
            }
            retries.insert(
                stage_id.clone(),
                Retrying {
                    attempt: attempt + 1,
                    feedback: built.lines,
                    feedback_bits: built.bits,
                    withheld: built.withheld,
                },
            );
        }
        if stop.is_some() {
            retries.clear();
        }
        for (gate, status, reason, stage) in decisions {
            let retry = stage.map(|s| plan.steps[s].id.clone()).filter(|stage| retries.contains_key(stage));
            let event = Event::GateDecision { gate, round, status, reason, retry };
            entry.decisions.extend(gate_score(&event));
            self.emit(&event);
        }
        for (stage, retrying) in &retries {
            entry.add_retry(stage, retrying);
        }
        // A resumed run may have rebuilt part of this round from the journal;
        // the judgement just made covers all of it.
        self.state.history.truncate(round as usize - 1);
        self.state.history.push(entry);
        if let Some((Termination::Budget, headline)) = stop.take_if(|(t, _)| *t == Termination::Budget) {
            return Verdict::Escalate(Termination::Budget, self.escalation(&headline));
        }
        if failing.is_empty() {
            return Verdict::Done;
        }
        if !broken.is_empty() {
            return Verdict::Escalate(Termination::Error, self.infrastructure_stop(&broken, &failing));
        }
        if let Some((termination, headline)) = stop {
            return Verdict::Escalate(termination, self.escalation(&headline));
        }
        if retries.is_empty() {
            return Verdict::Escalate(Termination::MaxIterations, self.retries_used_up(&failing, &exhausted));
        }
        self.emit(&Event::RoundFinished { round, retries: retries.clone() });
        let mut stages = Vec::new();
        for (stage, retrying) in retries {
            self.state.progress.count(&stage, &stopping::signature(&retrying.feedback));
            let Some(i) = plan.graph.index(&stage) else { continue };
            self.state.attempts[i] = retrying.attempt;
            self.state.feedback[i] = retrying.feedback;
            stages.push(i);
        }
        self.state.pending = plan.graph.downstream(stages);
        self.state.round += 1;
        Verdict::Retry
    }

    /// The escalation summary when retries ran out: what each stage's
    /// gates still say, and how each round scored.
    fn retries_used_up(&self, failing: &BTreeMap<usize, Vec<usize>>, exhausted: &[(usize, u32)]) -> String {
        let mut text = String::from("escalate to a human: retries are used up.\n");
        for &(stage, attempts) in exhausted {
            let gates: Vec<String> = failing[&stage]
                .iter()
                .filter_map(|&g| self.state.reports[g].as_ref())
                .map(|r| format!("`{}` ({})", r.id, gate_reason(r)))
                .collect();
            let stage = &self.plan.steps[stage].id;
            text.push_str(&format!("  after {attempts} attempts of `{stage}`, still failing: {}\n", gates.join(", ")));
        }
        self.push_history(&mut text);
        text.trim_end().to_string()
    }

    /// The escalation summary: why the loop stopped (`headline`), what
    /// still fails, and how each round scored.
    fn escalation(&self, headline: &str) -> String {
        let mut text = format!("escalate to a human: {headline}.\n");
        self.push_still_failing(&mut text);
        self.push_history(&mut text);
        text.trim_end().to_string()
    }

    /// `  still failing:` and every gate that did not pass in its latest
    /// run, with its score and its failing scenarios.
    fn push_still_failing(&self, text: &mut String) {
        let gates: Vec<&StepReport> = self
            .plan
            .steps
            .iter()
            .zip(&self.state.reports)
            .filter(|(step, _)| step.kind != StepKind::Stage)
            .filter_map(|(_, report)| report.as_ref())
            .filter(|r| matches!(r.status, StepStatus::Failed | StepStatus::Error))
            .collect();
        if gates.is_empty() {
            return;
        }
        text.push_str("  still failing:\n");
        for gate in gates {
            text.push_str(&format!("    `{}` ({})\n", gate.id, gate_reason(gate)));
            for scenario in gate.evaluation.iter().flat_map(|e| e.scenarios.iter().filter(|s| !s.passed)) {
                text.push_str(&format!(
                    "      scenario {}: {}/{} runs passed\n",
                    scenario.name, scenario.passes, scenario.runs
                ));
            }
        }
    }

    /// Why the loop stopped without retrying: the steps that could not run
    /// for reasons that are not a stage's work, and what each stage's gates said.
    fn infrastructure_stop(&self, broken: &[usize], failing: &BTreeMap<usize, Vec<usize>>) -> String {
        let mut text = String::from(
            "escalate to a human: stopped without retrying, because these steps could not run for reasons that are not the stage's work (another attempt would not change them):\n",
        );
        for &i in broken {
            let Some(report) = self.state.reports[i].as_ref() else { continue };
            let reason = report.reason.as_deref().unwrap_or("error");
            text.push_str(&format!("  `{}`: {reason}\n", report.id));
        }
        let stages: Vec<String> = failing.keys().map(|&s| format!("`{}`", self.plan.steps[s].id)).collect();
        text.push_str(&format!(
            "  fix them and run again; {} kept {} attempts\n",
            stages.join(", "),
            if stages.len() == 1 { "its" } else { "their" }
        ));
        self.push_history(&mut text);
        text.trim_end().to_string()
    }

    fn push_history(&self, text: &mut String) {
        text.push_str("  how each round scored:\n");
        for entry in &self.state.history {
            text.push_str(&format!("    round {}: {}\n", entry.round, entry.gate_lines().join("; ")));
        }
    }
}

/// Answers from the result cache when `key` has an entry, else from the
/// shared cache (an REAPI service's; replaying a stage's writes first),
/// else runs the step on `backend` and files its result in both. Every report
/// is scrubbed of secret values before it is cached, journaled, fed back
/// or shown.
async fn run_or_reuse(
    backend: &dyn Backend,
    services: &Services,
    (step, inputs): (&Step, &BTreeMap<String, String>),
    attempt: u32,
    feedback: Vec<String>,
    key: Option<String>,
) -> StepReport {
    let run = |feedback| async move {
        let mut report = backend.run(step, attempt, feedback, inputs).await;
        report.for_each_text(&mut |text, _| services.secrets.scrub_in_place(text));
        report
    };
    let Some(key) = key else {
        return run(feedback).await;
    };
    let local = services.results.as_ref();
    if let Some(report) = local.and_then(|cache| cache.get(&key)).and_then(|hit| reuse(step, services, hit)) {
        return report;
    }
    let entry = services.shared.as_ref().and_then(|shared| shared.entry(step, attempt, &feedback));
    if let Some(hit) = match &entry {
        Some(entry) => entry.lookup().await,
        None => None,
    } {
        let files = hit.files.clone();
        if let Some(report) = reuse(step, services, hit) {
            if let Some(cache) = local {
                cache.put(&key, &report, &files);
            }
            return report;
        }
    }
    // The entry keeps the feedback it was keyed with.
    let report = run(feedback.clone()).await;
    let written: Vec<String> = report.changes.iter().filter_map(Change::written).map(str::to_string).collect();
    let files = match crate::writes::read_written(&step.grant.mounts, &written) {
        Ok(files) => files,
        Err(e) => {
            tracing::debug!("step `{}`: not cached, its writes cannot be read back ({e})", step.id);
            return report;
        }
    };
    if let Some(cache) = local {
        cache.put(&key, &report, &files);
    }
    // A worker's result is in the service's cache already.
    if let (Some(entry), None) = (&entry, &report.remote) {
        entry.store(&report, &files).await;
    }
    report
}

/// A cached result for `step`, its writes replayed; `None` when they could
/// not be (the step then runs).
fn reuse(step: &Step, services: &Services, hit: results::Hit) -> Option<StepReport> {
    let mut report = hit.report;
    report.id = step.id.clone();
    if hit.files.is_empty() && hit.removed.is_empty() {
        return Some(report);
    }
    let scratch = services.workspace.join(crate::plan::mounts::RUN_DIR).join("tmp");
    match crate::writes::replay(&step.grant.mounts, &hit.files, &hit.removed, &scratch) {
        Ok(changes) => {
            report.changes = changes.list();
            Some(report)
        }
        Err(e) => {
            tracing::warn!("step `{}`: the cached writes could not be replayed ({e}); running it", step.id);
            None
        }
    }
}

/// Where an event goes.
#[derive(Clone, Copy)]
enum Sink {
    /// The journal and the live sinks.
    All,
    /// The live sinks only.
    Live,
}

enum Verdict {
    Done,
    Retry,
    Escalate(Termination, String),
}

/// A gate's score in a few words: `satisfaction 0.67 (4/6) < 0.90`, `2 findings`, or why it did not run.
fn gate_reason(report: &StepReport) -> String {
    if let Some(score) = report.score() {
        return score;
    }
    match report.status {
        StepStatus::Passed => "no findings".to_string(),
        StepStatus::Failed if report.error_count() > 0 => format!("{} error findings", report.error_count()),
        _ => report.reason.clone().unwrap_or_else(|| report.status.as_str().to_string()),
    }
}

/// A `gate_decision` event as the round history keeps it (a live round and
/// one rebuilt on resume alike).
fn gate_score(event: &Event) -> Option<GateScore> {
    let Event::GateDecision { gate, status, reason, retry, .. } = event else { return None };
    Some(GateScore { gate: gate.clone(), status: *status, reason: reason.clone(), retry: retry.clone() })
}

/// An evaluator's failing scenarios, as the round history keeps them.
fn failing_scenarios(step: &str, report: &StepReport) -> Vec<FailingScenario> {
    report
        .evaluation
        .iter()
        .flat_map(|e| e.scenarios.iter().filter(|s| !s.passed))
        .map(|s| FailingScenario {
            gate: step.to_string(),
            scenario: s.name.clone(),
            passes: s.passes,
            runs: s.runs,
            summary: s.summary.clone(),
        })
        .collect()
}

/// Makes sure `history` has an entry for `round`.
fn grow_history(history: &mut Vec<AttemptReport>, round: u32) {
    while history.len() < round as usize {
        history.push(AttemptReport::new(history.len() as u32 + 1));
    }
}

impl AttemptReport {
    /// Records that `stage` is retried as `retrying` says.
    fn add_retry(&mut self, stage: &str, retrying: &Retrying) {
        self.retried.push(Retried {
            stage: stage.to_string(),
            attempt: retrying.attempt,
            feedback: retrying.feedback.clone(),
            feedback_bits: retrying.feedback_bits,
            withheld: retrying.withheld.clone(),
        });
        self.feedback_bits += retrying.feedback_bits;
    }
}

/// Content digests of a step's inputs, as the journal records them and the
/// result cache keys them: each mount (and an evaluator's subject and the
/// subject's mounts) by workspace path. A write mount's digest is of what
/// the step starts from.
pub fn input_digests(step: &Step, digester: &Digester) -> BTreeMap<String, String> {
    let skip = step.grant.native().map(|n| n.cache_dirs.as_slice()).unwrap_or_default();
    step.inputs().into_iter().map(|m| (m.rel.clone(), digester.digest_except(&m.host, skip))).collect()
}

/// Whether `a` and `b` may not run at the same time: one is a stage and
/// the other can read the holdout.
fn kept_apart(a: &Step, b: &Step) -> bool {
    (a.kind == StepKind::Stage && b.reads_holdout) || (b.kind == StepKind::Stage && a.reads_holdout)
}
