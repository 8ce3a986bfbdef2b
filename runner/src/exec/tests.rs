//! The scheduler over a scripted backend: rounds, retries, budgets, skips,
//! fail-fast, infrastructure stops, time separation and resume, without
//! compiling a component or starting a jail. Plans are real (resolved from
//! TOML with `run` steps); only the backend is scripted.

use std::sync::Mutex;

use super::*;
use crate::report::FindingReport;

/// What the scripted backend makes a step do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Pass,
    /// Failed with one error finding.
    Fail,
    /// An error the step's input may have caused (retried).
    Error,
    /// An error that is not the work's doing (stops the loop).
    Infra,
    /// Failed with the same finding every time (a stage that is stuck).
    Same,
    /// Failed with this many error findings, named after the attempt.
    Errors(usize),
    /// An evaluation in which this many of 4 scenarios passed; the failing
    /// ones are named after the attempt, so the feedback changes each round.
    Score(u32),
}

/// An error finding of rule `rule` saying `message`.
fn error_finding(message: String) -> FindingReport {
    FindingReport {
        rule: "rule".into(),
        severity: "error".into(),
        message,
        path: None,
        line: None,
        column: None,
        produced_from: None,
        line_digest: None,
    }
}

/// A word for an attempt, so feedback can differ without digits (which
/// the repeating-failure signature collapses).
fn word(attempt: u32) -> &'static str {
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight"]
        .get(attempt as usize)
        .copied()
        .unwrap_or("many")
}

/// One call the backend received.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    step: String,
    attempt: u32,
    feedback: Vec<String>,
}

type Decide = dyn Fn(&str, u32) -> Act + Send + Sync;

/// A backend that does what `decide` says for (step id, attempt), records
/// every call, and notes whether a stage ever ran alongside a holdout reader.
struct Scripted {
    decide: Box<Decide>,
    calls: Mutex<Vec<Call>>,
    running: Mutex<Vec<(String, bool, bool)>>,
    overlapped: Mutex<bool>,
    pause: Duration,
}

impl Backend for Scripted {
    fn run<'a>(
        &'a self,
        step: &'a Step,
        attempt: u32,
        feedback: Vec<String>,
        _inputs: &'a BTreeMap<String, String>,
    ) -> backend::Running<'a> {
        Box::pin(async move {
            self.calls.lock().unwrap().push(Call { step: step.id.clone(), attempt, feedback });
            {
                let mut running = self.running.lock().unwrap();
                let me = (step.id.clone(), step.kind == StepKind::Stage, step.reads_holdout);
                if running.iter().any(|(_, stage, reads)| (*stage && me.2) || (me.1 && *reads)) {
                    *self.overlapped.lock().unwrap() = true;
                }
                running.push(me);
            }
            if !self.pause.is_zero() {
                // As a real backend does: a step stops at its deadline.
                if self.pause > step.grant.limits.timeout {
                    tokio::time::sleep(step.grant.limits.timeout).await;
                    self.running.lock().unwrap().retain(|(id, _, _)| *id != step.id);
                    return StepReport::error(&step.id, step.kind, "timed out".into());
                }
                tokio::time::sleep(self.pause).await;
            }
            self.running.lock().unwrap().retain(|(id, _, _)| *id != step.id);
            let mut report = StepReport::skipped(&step.id, step.kind, String::new());
            report.reason = None;
            match (self.decide)(&step.id, attempt) {
                Act::Pass => report.status = StepStatus::Passed,
                Act::Fail => {
                    report.status = StepStatus::Failed;
                    report.findings.push(error_finding(format!("{} is wrong at attempt {}", step.id, word(attempt))));
                }
                Act::Errors(n) => {
                    report.status = StepStatus::Failed;
                    for k in 0..n {
                        report.findings.push(error_finding(format!(
                            "finding {} of attempt {}",
                            word(k as u32),
                            word(attempt)
                        )));
                    }
                }
                Act::Same => {
                    report.status = StepStatus::Failed;
                    report.reason = Some(format!("{} is stuck at attempt {attempt}", step.id));
                }
                Act::Score(passing) => {
                    let scenarios: Vec<crate::report::ScenarioReport> = (0..4)
                        .map(|n| crate::report::ScenarioReport {
                            name: format!("case-{}-{n}", word(attempt)),
                            runs: 1,
                            passes: u32::from(n < passing),
                            passed: n < passing,
                            summary: "wrong".into(),
                            detail: String::new(),
                            pass_rate: f64::from(u32::from(n < passing)),
                            run_disagreement: 0.0,
                            judge_disagreement: None,
                            cached_runs: 0,
                        })
                        .collect();
                    let satisfaction = f64::from(passing) / 4.0;
                    report.status = if passing == 4 { StepStatus::Passed } else { StepStatus::Failed };
                    report.evaluation =
                        Some(crate::report::EvaluationReport { satisfaction, threshold: 1.0, scenarios });
                }
                Act::Error => report = StepReport::error(&step.id, step.kind, "it crashed".into()),
                Act::Infra => {
                    report =
                        StepReport::error(&step.id, step.kind, "`gate-tool` is not installed".into()).infrastructure()
                }
            }
            report
        })
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    plan: Plan,
    key: Key,
}

/// A plan from `steps` (TOML step tables; `run = ["true"]` is added to each).
fn fixture(steps: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    fs_err::create_dir_all(ws.join("holdout")).unwrap();
    fs_err::write(ws.join("holdout/secret.txt"), "hidden\n").unwrap();
    let mut text = String::from("[pipeline]\nname = \"t\"\n");
    for line in steps.lines() {
        text.push_str(line);
        text.push('\n');
        if ["[stage.", "[check.", "[evaluator."].iter().any(|table| line.starts_with(table)) {
            text.push_str("run = [\"true\"]\n");
        }
    }
    fs_err::write(ws.join("cleanroom.toml"), &text).unwrap();
    let plan = Plan::load(&ws.join("cleanroom.toml")).unwrap_or_else(|d| panic!("{}\n{text}", d.render()));
    let state = dir.path().join("state");
    fs_err::create_dir_all(&state).unwrap();
    let key = Key::from_bytes([7; 32], &state);
    Fixture { _dir: dir, plan, key }
}

fn scripted(decide: impl Fn(&str, u32) -> Act + Send + Sync + 'static) -> Arc<Scripted> {
    slow(decide, Duration::ZERO)
}

/// As [`scripted`], each step taking `pause`.
fn slow(decide: impl Fn(&str, u32) -> Act + Send + Sync + 'static, pause: Duration) -> Arc<Scripted> {
    Arc::new(Scripted {
        decide: Box::new(decide),
        calls: Mutex::new(Vec::new()),
        running: Mutex::new(Vec::new()),
        overlapped: Mutex::new(false),
        pause,
    })
}

fn options(jobs: usize, fail_fast: bool) -> RunOptions {
    RunOptions { jobs, cache: false, fail_fast, ctrl_c: false, ..RunOptions::default() }
}

fn run_with(f: &Fixture, backend: &Arc<Scripted>, options: &RunOptions) -> RunReport {
    let backend: Arc<dyn Backend> = Arc::clone(backend) as Arc<dyn Backend>;
    run_on(&f.plan, backend, Arc::new(Secrets::default()), f.key.clone(), options).unwrap()
}

fn calls_of(backend: &Scripted, step: &str) -> Vec<Call> {
    backend.calls.lock().unwrap().iter().filter(|c| c.step == step).cloned().collect()
}

const LOOP: &str = "[stage.code]\n[check.lint]\nneeds = [\"code\"]\nretry = \"code\"\nmax_iterations = 3\n";

#[test]
fn a_failing_gate_sends_its_stage_back_with_feedback_until_it_passes() {
    let f = fixture(LOOP);
    let backend = scripted(|step, attempt| if step == "lint" && attempt < 2 { Act::Fail } else { Act::Pass });
    let report = run_with(&f, &backend, &options(2, false));
    assert_eq!(report.status, RunStatus::Passed);
    let code = calls_of(&backend, "code");
    assert_eq!(code.iter().map(|c| c.attempt).collect::<Vec<_>>(), [1, 2]);
    assert!(code[0].feedback.is_empty());
    assert_eq!(code[1].feedback, ["rule: lint is wrong at attempt one"]);
    assert_eq!(report.attempts.len(), 2, "one history entry per round");
    assert_eq!(report.termination, Some(Termination::Passed));
}

#[test]
fn retries_stop_at_the_stage_s_budget_with_an_escalation() {
    let f = fixture(LOOP);
    let backend = scripted(|step, _| if step == "lint" { Act::Fail } else { Act::Pass });
    let report = run_with(&f, &backend, &options(2, false));
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(calls_of(&backend, "code").len(), 3);
    let escalation = report.escalation.unwrap();
    assert!(escalation.contains("after 3 attempts of `code`"), "{escalation}");
    assert_eq!(report.termination, Some(Termination::MaxIterations));
}

/// `LOOP` with a larger budget, so that other stops come first.
const LONG_LOOP: &str = "[stage.code]\n[check.lint]\nneeds = [\"code\"]\nretry = \"code\"\nmax_iterations = 8\n";

#[test]
fn the_same_feedback_a_third_time_stops_the_loop() {
    let f = fixture(LONG_LOOP);
    let backend = scripted(|step, _| if step == "lint" { Act::Same } else { Act::Pass });
    let report = run_with(&f, &backend, &options(2, false));
    assert_eq!(report.status, RunStatus::Failed);
    // Rounds 1 and 2 send it back; round 3 fails the same way and stops.
    assert_eq!(calls_of(&backend, "code").len(), 3);
    assert_eq!(report.termination, Some(Termination::RepeatingFailure));
    let escalation = report.escalation.unwrap();
    assert!(escalation.contains("`code` failed the same way 3 times"), "{escalation}");
    assert!(escalation.contains("still failing:\n    `lint`"), "{escalation}");
    assert!(escalation.contains("how each round scored:\n    round 1:"), "{escalation}");
}

#[test]
fn a_success_elsewhere_does_not_reset_the_repeat_count() {
    // `lint` always fails the same way; `other` fails on odd attempts only,
    // so the feedback alternates between two texts: the one `lint` alone
    // gives is seen in rounds 2, 4 and 6 and stops the loop there.
    let f = fixture(&format!("{LONG_LOOP}[check.other]\nneeds = [\"code\"]\nretry = \"code\"\n"));
    let backend = scripted(|step, attempt| match step {
        "lint" => Act::Same,
        "other" if attempt % 2 == 1 => Act::Fail,
        _ => Act::Pass,
    });
    let report = run_with(&f, &backend, &options(2, false));
    assert_eq!(report.termination, Some(Termination::RepeatingFailure), "{:?}", report.escalation);
    assert_eq!(calls_of(&backend, "code").len(), 6);
}

#[test]
fn feedback_that_changes_keeps_the_loop_going() {
    let f = fixture(LONG_LOOP);
    let backend = scripted(|step, attempt| if step == "lint" && attempt < 6 { Act::Fail } else { Act::Pass });
    let report = run_with(&f, &backend, &options(2, false));
    assert_eq!(report.termination, Some(Termination::Passed), "{:?}", report.escalation);
    assert_eq!(calls_of(&backend, "code").len(), 6);
}

/// An evaluator gate over `code`, plateau patience `patience`.
fn plateau_fixture(patience: u32) -> Fixture {
    let mut f = fixture("[stage.code]\n[evaluator.judge]\nneeds = [\"code\"]\nretry = \"code\"\nmax_iterations = 8\n");
    let judge = f.plan.graph.index("judge").unwrap();
    f.plan.steps[judge].retry.as_mut().unwrap().stop_on_plateau = Some(patience);
    f
}

#[test]
fn a_plateau_of_satisfaction_stops_the_loop_at_the_right_round() {
    let f = plateau_fixture(2);
    // Satisfaction by round: 0.25, 0.50, 0.50, 0.25: rounds 3 and 4 do not
    // rise above 0.50, so the loop stops after round 4.
    let backend = scripted(|step, attempt| match (step, attempt) {
        ("judge", 1 | 4) => Act::Score(1),
        ("judge", _) => Act::Score(2),
        _ => Act::Pass,
    });
    let report = run_with(&f, &backend, &options(2, false));
    assert_eq!(report.termination, Some(Termination::Plateau), "{:?}", report.escalation);
    assert_eq!(calls_of(&backend, "code").len(), 4);
    let escalation = report.escalation.unwrap();
    assert!(escalation.contains("`judge`'s satisfaction has not risen above 0.50 for 2 rounds"), "{escalation}");
    assert!(escalation.contains("scenario case-four-3: 0/1 runs passed"), "{escalation}");
    assert_eq!(report.attempts.len(), 4);
    assert!(report.attempts[3].retried.is_empty(), "no retry is recorded for the round that stopped");
}

#[test]
fn a_check_plateaus_when_its_error_findings_stop_dropping() {
    // `lint` reports 3, 2, 2 error findings: with `stop_on_plateau = 1`,
    // round 3 did not improve on round 2, so the loop stops there (before
    // the same feedback could repeat a third time).
    let mut f = fixture(LONG_LOOP);
    let lint = f.plan.graph.index("lint").unwrap();
    f.plan.steps[lint].retry.as_mut().unwrap().stop_on_plateau = Some(1);
    let backend = scripted(|step, attempt| match (step, attempt) {
        ("lint", 1) => Act::Errors(3),
        ("lint", _) => Act::Errors(2),
        _ => Act::Pass,
    });
    let report = run_with(&f, &backend, &options(2, false));
    assert_eq!(report.termination, Some(Termination::Plateau), "{:?}", report.escalation);
    assert_eq!(calls_of(&backend, "code").len(), 3);
    let escalation = report.escalation.unwrap();
    assert!(escalation.contains("`lint`'s error findings have not dropped below 2 for 1 round"), "{escalation}");
}

#[test]
fn rising_satisfaction_is_not_a_plateau() {
    let f = plateau_fixture(1);
    let backend = scripted(|step, attempt| match step {
        "judge" => Act::Score(attempt.min(4)),
        _ => Act::Pass,
    });
    let report = run_with(&f, &backend, &options(2, false));
    assert_eq!(report.termination, Some(Termination::Passed), "{:?}", report.escalation);
    assert_eq!(calls_of(&backend, "code").len(), 4);
}

#[test]
fn a_step_cut_short_by_max_duration_ran_out_of_the_run_s_budget() {
    let mut f = fixture("[stage.a]\n[check.b]\nneeds = [\"a\"]\n");
    f.plan.max_duration = Some(crate::manifest::DurationSpec(Duration::from_millis(150)));
    let backend = slow(|_, _| Act::Pass, Duration::from_millis(400));
    let report = run_with(&f, &backend, &options(1, false));
    let a = report.steps.iter().find(|s| s.id == "a").unwrap();
    assert_eq!(a.status, StepStatus::Error);
    assert_eq!(a.budget_exhausted.as_deref(), Some("max_duration = 150ms"));
    assert!(a.reason.as_deref().unwrap().contains("reached its `max_duration` of 150ms"), "{:?}", a.reason);
    assert_eq!(report.termination, Some(Termination::Budget), "{:?}", report.escalation);
}

#[test]
fn max_duration_is_checked_before_each_step_starts() {
    let mut f = fixture("[check.a]\n[check.b]\n[check.c]\n");
    f.plan.max_duration = Some(crate::manifest::DurationSpec(Duration::from_millis(300)));
    let backend = slow(|_, _| Act::Pass, Duration::from_millis(200));
    let report = run_with(&f, &backend, &options(1, false));
    // One at a time: `a` ran; `b` started with 100 ms left and was stopped
    // at the cut deadline; `c` found no time left and did not start.
    let step = |id: &str| report.steps.iter().find(|s| s.id == id).unwrap();
    assert_eq!(step("a").status, StepStatus::Passed);
    assert_eq!(step("b").budget_exhausted.as_deref(), Some("max_duration = 300ms"));
    assert!(calls_of(&backend, "c").is_empty());
    assert_eq!(step("c").status, StepStatus::Skipped);
    let reason = step("c").reason.clone().unwrap();
    assert!(reason.contains("reached its `max_duration` of 300ms"), "{reason}");
    assert_eq!(report.termination, Some(Termination::Budget));
    assert_eq!(report.status, RunStatus::Failed);
    assert!(report.escalation.unwrap().contains("max_duration"));
}

#[test]
fn two_gates_with_different_budgets_agree_on_the_stage_s_one_budget_under_fail_fast() {
    // `quick` allows 2 attempts, `thorough` 4: the stage's budget is 4,
    // whichever of them fails, so --fail-fast must not stop at attempt 2.
    let f = fixture(
        "[stage.code]\n[check.quick]\nneeds = [\"code\"]\nretry = \"code\"\nmax_iterations = 2\n\
         [check.thorough]\nneeds = [\"code\"]\nretry = \"code\"\nmax_iterations = 4\n",
    );
    assert_eq!(f.plan.steps[f.plan.graph.index("code").unwrap()].attempts, 4);
    let backend = scripted(|step, attempt| if step != "code" && attempt < 4 { Act::Fail } else { Act::Pass });
    let report = run_with(&f, &backend, &options(1, true));
    assert_eq!(report.status, RunStatus::Passed, "{:?}", report.escalation);
    assert_eq!(calls_of(&backend, "code").len(), 4);
}

#[test]
fn an_infrastructure_error_stops_the_loop_at_once_and_says_why() {
    let f = fixture(LOOP);
    let backend = scripted(|step, _| if step == "lint" { Act::Infra } else { Act::Pass });
    let report = run_with(&f, &backend, &options(2, false));
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(calls_of(&backend, "code").len(), 1, "no attempt was burnt");
    assert_eq!(report.termination, Some(Termination::Error));
    let escalation = report.escalation.unwrap();
    assert!(escalation.contains("not the stage's work"), "{escalation}");
    assert!(escalation.contains("`lint`: `gate-tool` is not installed"), "{escalation}");
}

#[test]
fn an_error_the_work_may_have_caused_is_retried() {
    let f = fixture(LOOP);
    let backend = scripted(|step, attempt| if step == "lint" && attempt == 1 { Act::Error } else { Act::Pass });
    let report = run_with(&f, &backend, &options(2, false));
    assert_eq!(report.status, RunStatus::Passed);
    assert_eq!(calls_of(&backend, "code")[1].feedback, ["step lint: error: it crashed"]);
}

#[test]
fn an_infrastructure_error_is_final_for_fail_fast() {
    let f = fixture(&format!("{LOOP}[check.other]\n"));
    let backend = scripted(|step, _| if step == "lint" { Act::Infra } else { Act::Pass });
    let report = run_with(&f, &backend, &options(1, true));
    let other = report.steps.iter().find(|s| s.id == "other").unwrap();
    assert_eq!(other.status, StepStatus::Skipped);
    assert!(other.reason.as_deref().unwrap().contains("--fail-fast stopped the run after `lint`"));
}

#[test]
fn max_iterations_caps_every_stage() {
    let mut f = fixture(LOOP);
    f.plan.cap_attempts(1);
    let backend = scripted(|step, _| if step == "lint" { Act::Fail } else { Act::Pass });
    let report = run_with(&f, &backend, &options(2, false));
    assert_eq!(calls_of(&backend, "code").len(), 1);
    assert!(report.escalation.unwrap().contains("after 1 attempts of `code`"));
}

#[test]
fn a_step_whose_need_did_not_pass_is_skipped_and_says_which() {
    let f = fixture("[stage.code]\n[check.lint]\nneeds = [\"code\"]\n[check.after]\nneeds = [\"lint\"]\n");
    let backend = scripted(|step, _| if step == "code" { Act::Fail } else { Act::Pass });
    let report = run_with(&f, &backend, &options(2, false));
    let reason = |id: &str| report.steps.iter().find(|s| s.id == id).unwrap().reason.clone().unwrap();
    assert_eq!(reason("lint"), "needs `code`, which did not pass");
    assert_eq!(reason("after"), "needs `lint`, which was skipped");
    assert!(calls_of(&backend, "lint").is_empty());
}

#[test]
fn fail_fast_launches_nothing_after_a_final_failure() {
    let f = fixture("[check.a]\n[check.b]\n[check.c]\n");
    let backend = scripted(|step, _| if step == "a" { Act::Fail } else { Act::Pass });
    let report = run_with(&f, &backend, &options(1, true));
    assert_eq!(backend.calls.lock().unwrap().len(), 1);
    assert!(report.steps[1..].iter().all(|s| s.status == StepStatus::Skipped));
}

#[test]
fn a_stage_and_a_holdout_reader_never_run_at_the_same_time() {
    let f = fixture(
        "[barrier]\nholdout = [\"holdout\"]\n[stage.code]\n[check.judge]\nread = [\"holdout\"]\n[check.free]\n",
    );
    let backend = slow(|_, _| Act::Pass, Duration::from_millis(30));
    let report = run_with(&f, &backend, &options(4, false));
    assert_eq!(report.status, RunStatus::Passed);
    assert!(f.plan.steps.iter().any(|s| s.reads_holdout), "the judge reads the holdout");
    assert!(!*backend.overlapped.lock().unwrap(), "a stage ran while a holdout reader did");
}

#[test]
fn a_check_is_told_attempt_one_and_keeps_its_cache_key_across_rounds() {
    let f = fixture(LOOP);
    let lint = &f.plan.steps[f.plan.graph.index("lint").unwrap()];
    let code = &f.plan.steps[f.plan.graph.index("code").unwrap()];
    assert_eq!(lint.told_attempt(3), 1);
    assert_eq!(code.told_attempt(3), 3);
    let inputs = BTreeMap::new();
    let digester = crate::cache::digest::Digester::cold(&f.plan.workspace);
    assert_eq!(
        CacheKey::of(&f.plan, lint, &inputs, 1, &[], &digester).digest(),
        CacheKey::of(&f.plan, lint, &inputs, 3, &[], &digester).digest()
    );
    assert_ne!(
        CacheKey::of(&f.plan, code, &inputs, 1, &[], &digester).digest(),
        CacheKey::of(&f.plan, code, &inputs, 2, &[], &digester).digest()
    );
}

#[test]
fn resume_rebuilds_attempts_feedback_and_pending_steps_from_the_journal() {
    let f = fixture(&format!("{LOOP}[check.unrelated]\n"));
    let passed = |id: &str| {
        let step = f.plan.graph.index(id).unwrap();
        let mut report = StepReport::skipped(id, f.plan.steps[step].kind, String::new());
        report.status = StepStatus::Passed;
        report
    };
    let mut failed = passed("lint");
    failed.status = StepStatus::Failed;
    let finished = |id: &str, report: StepReport| Event::StepFinished {
        step: id.into(),
        round: 1,
        status: report.status,
        inputs: BTreeMap::new(),
        report: Box::new(report),
    };
    let retrying = Retrying { attempt: 2, feedback: vec!["fix it".into()], feedback_bits: 0.0, withheld: Vec::new() };
    let events = vec![
        finished("code", passed("code")),
        finished("lint", failed),
        finished("unrelated", passed("unrelated")),
        Event::RoundFinished { round: 1, retries: BTreeMap::from([("code".to_string(), retrying)]) },
    ];
    let state = RunState::resumed(&f.plan, &events);
    let code = f.plan.graph.index("code").unwrap();
    assert_eq!(state.round, 2);
    assert_eq!(state.attempts[code], 2);
    assert_eq!(state.feedback[code], ["fix it"]);
    let pending: Vec<&str> = state.pending.iter().map(|&i| f.plan.steps[i].id.as_str()).collect();
    assert_eq!(pending, ["code", "lint"], "the stage and what is downstream of it, not `unrelated`");
}

/// Records `kind` on `target` in the latest run of `f`, as `by` says why.
fn decide(
    f: &Fixture,
    kind: DecisionKind,
    target: &str,
    accepted: bool,
    by: &str,
    reason: &str,
) -> Result<(), Diagnostic> {
    let request = crate::governance::record::Request {
        kind,
        run: None,
        target: target.into(),
        accepted,
        by: by.into(),
        reason: reason.into(),
    };
    crate::governance::record::record(&f.plan.workspace, &f.key, &request).map(|_| ())
}

fn resumed(f: &Fixture, backend: &Arc<Scripted>) -> RunReport {
    run_with(f, backend, &RunOptions { resume: true, ..options(2, false) })
}

const GATED: &str = "[stage.code]\n[evaluator.judge]\nneeds = [\"code\"]\n\
    [approval.merge]\nneeds = [\"judge\"]\napprovers = [\"alice\", \"bob\"]\n";

#[test]
fn a_run_whose_steps_passed_waits_for_its_approval_and_resumes_after_it() {
    let f = fixture(GATED);
    let backend = scripted(|_, _| Act::Pass);
    let waiting = run_with(&f, &backend, &options(2, false));
    assert_eq!(waiting.status, RunStatus::AwaitingApproval);
    assert_eq!(waiting.termination, Some(Termination::AwaitingApproval));
    assert_eq!(waiting.approvals[0].status, crate::governance::ApprovalStatus::Awaiting);
    let d = decide(&f, DecisionKind::Approval, "merge", true, "mallory", "looks fine").unwrap_err();
    assert_eq!(d.code, Code::CR037);
    assert!(d.hint.as_deref().is_some_and(|h| h.contains("alice, bob")), "{d:?}");
    let d = decide(&f, DecisionKind::Approval, "merge", true, "alice", "  ").unwrap_err();
    assert!(d.message.contains("must say why"), "{}", d.message);
    decide(&f, DecisionKind::Approval, "merge", true, "alice", "read the diff").unwrap();
    let d = decide(&f, DecisionKind::Approval, "merge", false, "bob", "no").unwrap_err();
    assert!(d.message.contains("already decided"), "{}", d.message);
    let calls = backend.calls.lock().unwrap().len();
    let done = resumed(&f, &backend);
    assert_eq!(done.status, RunStatus::Passed, "{:?}", done.approvals);
    assert_eq!(backend.calls.lock().unwrap().len(), calls, "steps whose inputs did not change are reused");
    let decision = done.approvals[0].decision.as_ref().expect("the decision that holds");
    assert_eq!((decision.by.as_str(), decision.reason.as_str()), ("alice", "read the diff"));
    assert_eq!(done.decisions.len(), 1);
}

#[test]
fn a_rejected_approval_fails_the_run() {
    let f = fixture(GATED);
    let backend = scripted(|_, _| Act::Pass);
    run_with(&f, &backend, &options(2, false));
    decide(&f, DecisionKind::Approval, "merge", false, "bob", "the API changed without a note").unwrap();
    let done = resumed(&f, &backend);
    assert_eq!(done.status, RunStatus::Failed);
    assert_eq!(done.termination, Some(Termination::Rejected));
}

#[test]
fn an_approval_whose_needs_failed_is_not_asked_and_cannot_be_decided() {
    let f = fixture(GATED);
    let backend = scripted(|step, _| if step == "judge" { Act::Fail } else { Act::Pass });
    let done = run_with(&f, &backend, &options(2, false));
    assert_eq!(done.status, RunStatus::Failed);
    assert_eq!(done.approvals[0].status, crate::governance::ApprovalStatus::Skipped);
    let d = decide(&f, DecisionKind::Approval, "merge", true, "alice", "ok").unwrap_err();
    assert_eq!(d.code, Code::CR037);
}

#[test]
fn an_undecided_approval_fails_closed_after_its_timeout() {
    let f = fixture(&format!("{GATED}timeout = \"1ms\"\n"));
    let backend = scripted(|_, _| Act::Pass);
    assert_eq!(run_with(&f, &backend, &options(2, false)).status, RunStatus::AwaitingApproval);
    std::thread::sleep(Duration::from_millis(1100));
    let d = decide(&f, DecisionKind::Approval, "merge", true, "alice", "late").unwrap_err();
    assert!(d.message.contains("expired"), "{}", d.message);
    let done = resumed(&f, &backend);
    assert_eq!(done.status, RunStatus::Failed);
    assert_eq!(done.approvals[0].status, crate::governance::ApprovalStatus::Expired);
}

const OVERRIDABLE: &str = "[stage.code]\n[check.lint]\nneeds = [\"code\"]\n[check.after]\nneeds = [\"lint\"]\n";

#[test]
fn an_override_shows_overridden_and_lets_a_resumed_run_go_past_the_gate() {
    let f = fixture(OVERRIDABLE);
    let backend = scripted(|step, _| if step == "lint" { Act::Fail } else { Act::Pass });
    let failed = run_with(&f, &backend, &options(2, false));
    assert_eq!(failed.status, RunStatus::Failed);
    let d = decide(&f, DecisionKind::Override, "code", true, "alice", "fine").unwrap_err();
    assert!(d.message.contains("is a stage"), "{}", d.message);
    let d = decide(&f, DecisionKind::Override, "after", true, "alice", "fine").unwrap_err();
    assert!(d.message.contains("did not fail"), "{}", d.message);
    decide(&f, DecisionKind::Override, "lint", true, "alice", "the rule is wrong here").unwrap();
    let done = resumed(&f, &backend);
    let status = |id: &str| done.steps.iter().find(|s| s.id == id).unwrap().status;
    assert_eq!(status("lint"), StepStatus::Overridden);
    assert_eq!(status("after"), StepStatus::Passed);
    assert_eq!(done.status, RunStatus::Overridden);
    assert_eq!(calls_of(&backend, "lint").len(), 1, "the overridden result is reused, not rerun");
    assert_eq!(calls_of(&backend, "after").len(), 1);
}

#[test]
fn an_error_is_not_a_verdict_to_override() {
    let f = fixture(OVERRIDABLE);
    let backend = scripted(|step, _| if step == "lint" { Act::Error } else { Act::Pass });
    run_with(&f, &backend, &options(2, false));
    let d = decide(&f, DecisionKind::Override, "lint", true, "alice", "whatever").unwrap_err();
    assert!(d.message.contains("error"), "{}", d.message);
}

#[test]
fn a_verdict_is_recorded_only_on_a_finished_run() {
    let f = fixture(GATED);
    let backend = scripted(|_, _| Act::Pass);
    run_with(&f, &backend, &options(2, false));
    let d = decide(&f, DecisionKind::Verdict, "", true, "alice", "good").unwrap_err();
    assert_eq!(d.code, Code::CR037);
    decide(&f, DecisionKind::Approval, "merge", true, "alice", "ok").unwrap();
    resumed(&f, &backend);
    decide(&f, DecisionKind::Verdict, "", false, "carol", "misses the edge case").unwrap();
    let (runs, unreadable) = crate::journal::recorded_runs(&f.plan.workspace, &f.key);
    assert!(unreadable.is_empty(), "{unreadable:?}");
    let report = runs[0].report.as_ref().unwrap();
    assert_eq!(report.decisions.iter().map(|d| d.word()).collect::<Vec<_>>(), ["approved", "rejected"]);
}
