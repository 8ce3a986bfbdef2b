//! `cleanroom stats`: how each evaluator's verdicts agree with people's,
//! over every recorded run of a workspace, and whether that is good enough
//! to let the evaluator merge on its own word.
//!
//! Everything here is derived from the runs' authenticated journals
//! ([`RecordedRun`]), never from a `report.json`, so the figures say what
//! was recorded, not what a file in the workspace claims.
//!
//! # What is counted
//!
//! - **Runs.** A run's start is the first 13 digits of its id (run ids are
//!   `<unix ms>-<pid>`). With `--since`, runs that started before it are
//!   left out, and so are runs whose id does not start with a time (their
//!   start cannot be shown to be after it). [`Stats::runs`] counts the runs
//!   considered. A run's pipeline is the one its `run_started` event names.
//! - **An evaluator's verdict in a run** is the *last* `step_finished`
//!   event of a step whose kind is `evaluator`: `passed` or `failed` is a
//!   verdict; `error` and `skipped` are not (the evaluator did not judge,
//!   so that run does not count for it at all). `overridden` (a failure a
//!   person accepted, as a resumed run may record it) is a failed verdict
//!   that was overridden. Its satisfaction is kept for the mean.
//! - **An override** is an accepted `override` decision whose target is the
//!   evaluator's id, on a run whose verdict is a failure: the evaluator
//!   said no and a person accepted the result anyway.
//! - **A person's judgement** of the run, for each evaluator, is the latest
//!   decision in journal order that applies to it: a `verdict` (accept or
//!   reject, for every evaluator of the run), an `override` of that
//!   evaluator (accept), or an `approval` whose recorded results
//!   (`artifacts`) include the evaluator's (approve = accept, reject =
//!   reject: an approval records the results of the steps it needs). A
//!   decision counts wherever it falls in the run's journal: a resumed run
//!   records again the results a decision was made on. A run nobody judged
//!   is not comparable.
//!
//! # The figures
//!
//! Per (pipeline, evaluator): verdicts, pass rate, mean satisfaction; the
//! override rate (overrides over verdicts); the false-pass rate (of the
//! passes a person judged, the share they rejected) and the false-fail rate
//! (of the failures a person judged, the share they accepted); and Cohen's
//! kappa between the evaluator's pass/fail and people's accept/reject over
//! the comparable runs, which corrects plain agreement for the agreement
//! two judges would reach by chance with the same leanings.
//!
//! A share over fewer than [`Thresholds::min_decisions`] decisions is *not
//! yet known* (`None`), never 0 %: two agreeing decisions say little, and a
//! 0 % shown for them would read as proof. Kappa is likewise unknown below
//! that many comparable runs, and undefined when both sides always gave the
//! same one answer (chance agreement is then certain).
//!
//! An evaluator is **eligible to auto-merge** only when both its false-pass
//! rate and its override rate are known and below their thresholds: the
//! first says how often a pass it gives is wrong, the second how often
//! people find its failures wrong. An unknown figure keeps it ineligible.

use std::collections::BTreeMap;

use super::{Decision, DecisionKind};
use crate::governance::time::format_ms;
use crate::journal::{Event, RecordedRun};
pub use crate::plan::approvals::Thresholds;
use crate::plan::StepKind;
pub use crate::report::agreement::{EvaluatorStats, Rate, Stats};
use crate::report::StepStatus;

/// The pipeline named for a run that does not say which it ran (no
/// `run_started` event and no report).
const UNKNOWN_PIPELINE: &str = "(unknown)";

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { max_false_pass: 0.05, max_override_rate: 0.10, min_decisions: 10 }
    }
}

impl Rate {
    /// `count` of `of`, with a value only once `of` reaches
    /// `min_decisions` (and is not 0): below that the share is not yet
    /// known, so that a handful of decisions never reads as a measured 0 %.
    pub fn new(count: u32, of: u32, min_decisions: u32) -> Rate {
        let value =
            (of > 0 && of >= min_decisions).then(|| f64::from(count) / f64::from(of)).filter(|value| value.is_finite());
        Rate { count, of, value }
    }
}

/// Measures every evaluator over `runs` (see the module documentation for
/// what counts): runs that started before `since_ms` are left out,
/// `unreadable` (why each run that could not be read was skipped) is
/// carried into the result so that a rendering can say what is missing,
/// and `thresholds` decide which rates are known yet and which evaluators
/// may auto-merge.
pub fn compute(runs: &[RecordedRun], unreadable: Vec<String>, since_ms: Option<u64>, thresholds: Thresholds) -> Stats {
    let mut tallies: BTreeMap<(String, String), Tally> = BTreeMap::new();
    let mut considered: u32 = 0;
    for run in runs {
        if let Some(since) = since_ms {
            match started_ms(&run.run_id) {
                Some(start) if start >= since => {}
                _ => continue,
            }
        }
        considered = considered.saturating_add(1);
        let pipeline = pipeline_of(run);
        for outcome in outcomes(&run.events) {
            tallies.entry((pipeline.clone(), outcome.evaluator.to_string())).or_default().add(&outcome);
        }
    }
    let evaluators = tallies
        .into_iter()
        .map(|((pipeline, evaluator), tally)| tally.into_stats(pipeline, evaluator, &thresholds))
        .collect();
    Stats { runs: considered, unreadable, since: since_ms.map(format_ms), thresholds, evaluators }
}

/// The figures for people: a header saying how many runs were read (and
/// since when, and which were skipped and why), then one block per
/// evaluator. Rates not yet known say how many decisions they have of how
/// many they need, never 0 %.
pub fn render_human(stats: &Stats) -> String {
    let mut header = format!("{} read", plural(stats.runs, "run"));
    if let Some(since) = &stats.since {
        header.push_str(" since ");
        header.push_str(since);
    }
    if !stats.unreadable.is_empty() {
        header.push_str(&format!(", {} unreadable", stats.unreadable.len()));
    }
    let mut lines = vec![header];
    for reason in &stats.unreadable {
        // One line each, whatever the reason holds.
        let reason = reason.replace(['\r', '\n'], " ");
        lines.push(format!("  skipped: {reason}"));
    }
    if stats.evaluators.is_empty() {
        lines.push("no evaluator has given a verdict yet".to_string());
    }
    for evaluator in &stats.evaluators {
        lines.push(String::new());
        lines.extend(evaluator_block(evaluator, &stats.thresholds));
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The figures for programs: [`Stats`] as pretty JSON, ending in a newline.
/// Every number in it is finite ([`compute`] keeps no NaN or infinity;
/// a non-finite threshold as configured is written as `null`).
pub fn render_json(stats: &Stats) -> String {
    match serde_json::to_string_pretty(stats) {
        Ok(mut json) => {
            json.push('\n');
            json
        }
        Err(error) => format!("{}\n", serde_json::json!({ "error": error.to_string() })),
    }
}

/// A run's start, in ms since the epoch, from the first 13 digits of its id.
fn started_ms(run_id: &str) -> Option<u64> {
    let digits = run_id.get(..13)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The `[pipeline] name` a run ran: its `run_started` event's, else its
/// report's.
fn pipeline_of(run: &RecordedRun) -> String {
    run.events
        .iter()
        .find_map(|event| match event {
            Event::RunStarted { pipeline, .. } => Some(pipeline.clone()),
            _ => None,
        })
        .or_else(|| run.report.as_ref().map(|report| report.pipeline.clone()))
        .unwrap_or_else(|| UNKNOWN_PIPELINE.to_string())
}

/// One evaluator's verdict in one run, and what people made of it.
#[derive(Debug, Clone, PartialEq)]
struct Outcome<'a> {
    /// The evaluator's step id.
    evaluator: &'a str,
    /// Whether its verdict was a pass.
    passed: bool,
    /// Its satisfaction, if it reported one.
    satisfaction: Option<f64>,
    /// Whether it failed and a person overrode the failure.
    overridden: bool,
    /// The person's judgement: accept (`true`), reject, or none.
    accepted: Option<bool>,
}

/// Every evaluator's verdict in a run's `events`, in evaluator id order;
/// evaluators whose last result was an error or a skip have none.
fn outcomes(events: &[Event]) -> Vec<Outcome<'_>> {
    // The last result of each evaluator, and where it is in the journal.
    let mut last: BTreeMap<&str, (usize, StepStatus, Option<f64>)> = BTreeMap::new();
    for (at, event) in events.iter().enumerate() {
        if let Event::StepFinished { step, status, report, .. } = event {
            if report.kind == StepKind::Evaluator {
                let satisfaction =
                    report.evaluation.as_ref().map(|evaluation| evaluation.satisfaction).filter(|s| s.is_finite());
                last.insert(step.as_str(), (at, *status, satisfaction));
            }
        }
    }
    let mut found = Vec::new();
    for (evaluator, (at, status, satisfaction)) in last {
        let passed = match status {
            StepStatus::Passed => true,
            StepStatus::Failed | StepStatus::Overridden => false,
            StepStatus::Error | StepStatus::Skipped => continue,
        };
        // A result recorded as overridden is itself a person's acceptance.
        let mut overridden = status == StepStatus::Overridden;
        let mut accepted = None;
        for (index, event) in events.iter().enumerate() {
            if index == at && status == StepStatus::Overridden {
                accepted = Some(true);
            }
            let Event::HumanDecision(decision) = event else { continue };
            if let Some(said) = judgement(decision, evaluator) {
                accepted = Some(said);
            }
            if is_override_of(decision, evaluator) {
                overridden = true;
            }
        }
        found.push(Outcome { evaluator, passed, satisfaction, overridden: overridden && !passed, accepted });
    }
    found
}

/// Whether `decision` accepts `evaluator`'s failure.
fn is_override_of(decision: &Decision, evaluator: &str) -> bool {
    decision.kind == DecisionKind::Override && decision.accepted && decision.target == evaluator
}

/// What `decision` says of the run's result as `evaluator` judged it:
/// accept (`true`), reject (`false`), or nothing (`None`: it is about
/// other steps).
fn judgement(decision: &Decision, evaluator: &str) -> Option<bool> {
    match decision.kind {
        DecisionKind::Verdict => Some(decision.accepted),
        DecisionKind::Override => is_override_of(decision, evaluator).then_some(true),
        DecisionKind::Approval => decision.artifacts.contains_key(evaluator).then_some(decision.accepted),
    }
}

/// Adds one to a count, stopping at its largest value.
fn bump(count: &mut u32) {
    *count = count.saturating_add(1);
}

/// One evaluator's counts over the runs read.
#[derive(Debug, Default)]
struct Tally {
    /// Verdicts.
    runs: u32,
    /// Passing verdicts.
    passes: u32,
    /// Sum of the satisfactions reported.
    satisfaction_sum: f64,
    /// How many verdicts reported one.
    satisfaction_count: u32,
    /// Failures a person overrode.
    overrides: u32,
    /// Evaluator passed, person accepted.
    pass_accept: u32,
    /// Evaluator passed, person rejected (a false pass).
    pass_reject: u32,
    /// Evaluator failed, person accepted (a false fail).
    fail_accept: u32,
    /// Evaluator failed, person rejected.
    fail_reject: u32,
}

impl Tally {
    /// Counts one run's verdict.
    fn add(&mut self, outcome: &Outcome<'_>) {
        bump(&mut self.runs);
        if outcome.passed {
            bump(&mut self.passes);
        }
        if let Some(satisfaction) = outcome.satisfaction {
            self.satisfaction_sum += satisfaction;
            bump(&mut self.satisfaction_count);
        }
        if outcome.overridden {
            bump(&mut self.overrides);
        }
        match (outcome.passed, outcome.accepted) {
            (_, None) => {}
            (true, Some(true)) => bump(&mut self.pass_accept),
            (true, Some(false)) => bump(&mut self.pass_reject),
            (false, Some(true)) => bump(&mut self.fail_accept),
            (false, Some(false)) => bump(&mut self.fail_reject),
        }
    }

    /// Passes a person judged.
    fn passes_judged(&self) -> u32 {
        self.pass_accept.saturating_add(self.pass_reject)
    }

    /// Failures a person judged.
    fn failures_judged(&self) -> u32 {
        self.fail_accept.saturating_add(self.fail_reject)
    }

    /// Runs both the evaluator and a person judged.
    fn comparable(&self) -> u32 {
        self.passes_judged().saturating_add(self.failures_judged())
    }

    /// Cohen's kappa over the comparable runs, and whether it is undefined
    /// (rather than not yet known) when there is none.
    ///
    /// With n comparable runs, po = agreements / n and pe =
    /// p(eval pass)·p(person accepts) + p(eval fail)·p(person rejects);
    /// kappa = (po − pe) / (1 − pe) = (n·agreements − s) / (n² − s) where
    /// s = passes·accepts + fails·rejects, which this computes from the
    /// counts (and tests pe = 1, s = n², exactly in integers).
    fn kappa(&self, min_decisions: u32) -> (Option<f64>, bool) {
        let n = self.comparable();
        if n == 0 || n < min_decisions {
            return (None, false);
        }
        let eval_pass = self.passes_judged();
        let eval_fail = self.failures_judged();
        let human_accept = self.pass_accept.saturating_add(self.fail_accept);
        let human_reject = self.pass_reject.saturating_add(self.fail_reject);
        let chance =
            u128::from(eval_pass) * u128::from(human_accept) + u128::from(eval_fail) * u128::from(human_reject);
        if chance >= u128::from(n) * u128::from(n) {
            return (None, true);
        }
        let agreements = f64::from(self.pass_accept.saturating_add(self.fail_reject));
        let chance = f64::from(eval_pass) * f64::from(human_accept) + f64::from(eval_fail) * f64::from(human_reject);
        let n = f64::from(n);
        let kappa = (n * agreements - chance) / (n * n - chance);
        (kappa.is_finite().then_some(kappa), false)
    }

    /// The evaluator's figures under `thresholds`.
    fn into_stats(self, pipeline: String, evaluator: String, thresholds: &Thresholds) -> EvaluatorStats {
        let min = thresholds.min_decisions;
        let pass_rate = (self.runs > 0).then(|| f64::from(self.passes) / f64::from(self.runs));
        let mean_satisfaction = (self.satisfaction_count > 0)
            .then(|| self.satisfaction_sum / f64::from(self.satisfaction_count))
            .filter(|mean| mean.is_finite());
        let override_rate = Rate::new(self.overrides, self.runs, min);
        let false_pass_rate = Rate::new(self.pass_reject, self.passes_judged(), min);
        let false_fail_rate = Rate::new(self.fail_accept, self.failures_judged(), min);
        let (kappa, kappa_undefined) = self.kappa(min);
        let (auto_merge_eligible, auto_merge_reason) = auto_merge(&false_pass_rate, &override_rate, thresholds);
        EvaluatorStats {
            pipeline,
            evaluator,
            runs: self.runs,
            pass_rate,
            mean_satisfaction,
            override_rate,
            false_pass_rate,
            false_fail_rate,
            kappa,
            kappa_undefined,
            comparable: self.comparable(),
            auto_merge_eligible,
            auto_merge_reason,
        }
    }
}

/// Whether an evaluator with these rates may merge on its own word, and
/// the sentence saying why: `yes: …` naming both figures, or `no: …`
/// naming each figure that stands in the way.
fn auto_merge(false_pass: &Rate, overrides: &Rate, thresholds: &Thresholds) -> (bool, String) {
    let needed = thresholds.min_decisions.max(1);
    let false_pass = criterion("false-pass rate", false_pass, thresholds.max_false_pass, "decision", needed);
    let overrides = criterion("override rate", overrides, thresholds.max_override_rate, "run", needed);
    match (false_pass, overrides) {
        (Ok(false_pass), Ok(overrides)) => (true, format!("yes: {false_pass} and {overrides}")),
        (false_pass, overrides) => {
            let against: Vec<String> = [false_pass, overrides].into_iter().filter_map(Result::err).collect();
            (false, format!("no: {}", against.join(" and ")))
        }
    }
}

/// One auto-merge condition: `Ok` with the figure that meets it, or `Err`
/// saying why it is not met (not yet known, or not below `limit`).
fn criterion(name: &str, rate: &Rate, limit: f64, noun: &str, needed: u32) -> Result<String, String> {
    match rate.value {
        None => Err(format!("{name} not yet known ({} of {} needed)", rate.of, plural(needed, noun))),
        Some(value) if value < limit => Ok(format!(
            "{name} {} < {} over {}",
            percent_below(value, limit),
            percent_limit(limit),
            plural(rate.of, noun)
        )),
        Some(value) => Err(format!("{name} {} is not below {}", percent(value), percent_limit(limit))),
    }
}

/// `n word` or `n words`, as every report writes a count.
fn plural(n: u32, word: &str) -> String {
    crate::report::human::plural(n as usize, word)
}

/// A share as a whole percentage: `8%`.
fn percent(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

/// A threshold as a percentage, to at most two decimals: `5%`, `12.5%`.
fn percent_limit(share: f64) -> String {
    let text = format!("{:.2}", share * 100.0);
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { text.as_str() };
    format!("{text}%")
}

/// `share`, known to be below `limit`, as a percentage with as many
/// decimals (up to 3) as it takes not to read as equal to it: `4.6%`
/// rather than `5%` beside a 5 % limit.
fn percent_below(share: f64, limit: f64) -> String {
    let (scaled, limit) = (share * 100.0, limit * 100.0);
    for decimals in 0..3_usize {
        let shown = format!("{scaled:.decimals$}");
        if shown != format!("{limit:.decimals$}") {
            return format!("{shown}%");
        }
    }
    format!("{scaled:.3}%")
}

/// A figure's line in an evaluator's block: its label, padded, then its value.
fn row(label: &str, value: &str) -> String {
    format!("  {label:<18}{value}")
}

/// A rate's value for people: `8% (1 of 12)`, or `not yet known (4 of 10
/// decisions)`.
fn rate_text(rate: &Rate, min_decisions: u32, noun: &str) -> String {
    match rate.value {
        Some(value) => format!("{} ({} of {})", percent(value), rate.count, rate.of),
        None => format!("not yet known ({} of {})", rate.of, plural(min_decisions.max(1), noun)),
    }
}

/// One evaluator's block of [`render_human`], line by line.
fn evaluator_block(stats: &EvaluatorStats, thresholds: &Thresholds) -> Vec<String> {
    let min = thresholds.min_decisions;
    let pass_rate = stats.pass_rate.map_or_else(|| "-".to_string(), percent);
    let mean = stats.mean_satisfaction.map(|mean| format!("   mean satisfaction {mean:.2}")).unwrap_or_default();
    let kappa = match stats.kappa {
        Some(kappa) => {
            let shown = format!("{kappa:.2}");
            // -0.004 rounds to "-0.00": no agreement beyond chance is 0.00.
            let shown = if shown == "-0.00" { "0.00".to_string() } else { shown };
            format!("{shown} ({} comparable {})", stats.comparable, noun(stats.comparable, "decision"))
        }
        None if stats.kappa_undefined => {
            format!(
                "undefined: both always gave one answer ({} comparable {})",
                stats.comparable,
                noun(stats.comparable, "decision")
            )
        }
        None => format!(
            "not yet known ({} of {} comparable {})",
            stats.comparable,
            min.max(1),
            noun(min.max(1), "decision")
        ),
    };
    let (word, reason) = if stats.auto_merge_eligible { ("yes", "yes: ") } else { ("no", "no: ") };
    let reason = stats.auto_merge_reason.strip_prefix(reason).unwrap_or(stats.auto_merge_reason.as_str());
    vec![
        format!("evaluator `{}` (pipeline `{}`)", stats.evaluator, stats.pipeline),
        format!("  runs              {:<4} pass rate {pass_rate}{mean}", stats.runs),
        row("override rate", &rate_text(&stats.override_rate, min, "run")),
        row("false-pass rate", &rate_text(&stats.false_pass_rate, min, "decision")),
        row("false-fail rate", &rate_text(&stats.false_fail_rate, min, "decision")),
        row("agreement (kappa)", &kappa),
        format!("  auto-merge eligible: {word} — {reason}"),
    ]
}

/// `word`, or its plural for any count but 1.
fn noun(n: u32, word: &str) -> String {
    if n == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{compute, percent_below, render_human, render_json, Thresholds};
    use crate::governance::{Artifact, Decision, DecisionKind};
    use crate::journal::{Event, RecordedRun};
    use crate::plan::StepKind;
    use crate::report::{EvaluationReport, StepReport, StepStatus};

    /// 2026-01-01T00:00:00Z in ms since the epoch.
    const START: u64 = 1_767_225_600_000;
    /// A day in ms.
    const DAY: u64 = 86_400_000;

    fn started(pipeline: &str) -> Event {
        Event::RunStarted {
            run_id: String::new(),
            steps: Vec::new(),
            pipeline: pipeline.to_string(),
            pipeline_file: "cleanroom.toml".to_string(),
            pipeline_sha256: String::new(),
            plugins: BTreeMap::new(),
            config_sha256: String::new(),
        }
    }

    fn step_finished(step: &str, kind: StepKind, status: StepStatus) -> Event {
        let mut report = StepReport::skipped(step, kind, String::new());
        report.status = status;
        if kind == StepKind::Evaluator {
            report.evaluation = Some(EvaluationReport { satisfaction: 0.9, threshold: 0.9, scenarios: vec![] });
        }
        Event::StepFinished {
            step: step.to_string(),
            round: 1,
            status,
            inputs: BTreeMap::new(),
            report: Box::new(report),
        }
    }

    fn evaluated(step: &str, status: StepStatus) -> Event {
        step_finished(step, StepKind::Evaluator, status)
    }

    fn decision(kind: DecisionKind, target: &str, accepted: bool, artifacts: &[&str]) -> Event {
        Event::HumanDecision(Decision {
            kind,
            target: target.to_string(),
            accepted,
            by: "ana".to_string(),
            reason: String::new(),
            at: "2026-01-02T00:00:00Z".to_string(),
            user: "ana".to_string(),
            artifacts: artifacts
                .iter()
                .map(|id| {
                    let artifact = Artifact { status: StepStatus::Passed, round: 1, inputs_sha256: String::new() };
                    (id.to_string(), artifact)
                })
                .collect(),
            report_sha256: None,
        })
    }

    fn verdict(accepted: bool) -> Event {
        decision(DecisionKind::Verdict, "run", accepted, &[])
    }

    fn override_of(step: &str) -> Event {
        decision(DecisionKind::Override, step, true, &[step])
    }

    fn run_at(start_ms: u64, events: Vec<Event>) -> RecordedRun {
        RecordedRun { run_id: format!("{start_ms:013}-0004242"), events, report: None }
    }

    /// Runs of pipeline `factory` whose evaluator `holdout` ended with
    /// `status`, followed by `judged` (if any), one a second from START.
    fn holdout_runs(runs: &mut Vec<RecordedRun>, count: usize, status: StepStatus, judged: Option<Event>) {
        for _ in 0..count {
            let mut events = vec![started("factory"), evaluated("holdout", status)];
            events.extend(judged.clone());
            let start = START + 1000 * runs.len() as u64;
            runs.push(run_at(start, events));
        }
    }

    fn few(min_decisions: u32) -> Thresholds {
        Thresholds { min_decisions, ..Thresholds::default() }
    }

    #[test]
    fn rates_over_fewer_than_min_decisions_are_not_yet_known_rather_than_zero() {
        let mut runs = Vec::new();
        holdout_runs(&mut runs, 9, StepStatus::Passed, Some(verdict(true)));
        let stats = compute(&runs, Vec::new(), None, Thresholds::default());
        let holdout = &stats.evaluators[0];
        assert_eq!(holdout.runs, 9);
        assert_eq!(holdout.pass_rate, Some(1.0));
        assert_eq!((holdout.false_pass_rate.count, holdout.false_pass_rate.of), (0, 9));
        assert_eq!(holdout.false_pass_rate.value, None);
        assert_eq!(holdout.false_fail_rate.value, None);
        assert_eq!(holdout.override_rate.value, None);
        assert_eq!(holdout.kappa, None);
        assert!(!holdout.kappa_undefined);
        assert!(!holdout.auto_merge_eligible);
        let human = render_human(&stats);
        assert!(human.contains("  false-pass rate   not yet known (9 of 10 decisions)\n"), "{human}");
        assert!(human.contains("  override rate     not yet known (9 of 10 runs)\n"), "{human}");
        assert!(human.contains("  agreement (kappa) not yet known (9 of 10 comparable decisions)\n"), "{human}");
        assert!(!human.contains(" 0%"), "{human}");
    }

    #[test]
    fn kappa_matches_a_hand_computed_table() {
        // 20 comparable runs: evaluator pass & person accepts 12, pass &
        // rejects 1, fail & accepts 2, fail & rejects 5.
        // po = (12 + 5) / 20 = 0.85
        // p(eval pass) = 13/20 = 0.65, p(person accepts) = 14/20 = 0.70
        // pe = 0.65 * 0.70 + 0.35 * 0.30 = 0.455 + 0.105 = 0.56
        // kappa = (0.85 - 0.56) / (1 - 0.56) = 0.29 / 0.44 = 0.659090...
        let mut runs = Vec::new();
        holdout_runs(&mut runs, 12, StepStatus::Passed, Some(verdict(true)));
        holdout_runs(&mut runs, 1, StepStatus::Passed, Some(verdict(false)));
        holdout_runs(&mut runs, 2, StepStatus::Failed, Some(verdict(true)));
        holdout_runs(&mut runs, 5, StepStatus::Failed, Some(verdict(false)));
        let stats = compute(&runs, Vec::new(), None, Thresholds::default());
        let holdout = &stats.evaluators[0];
        assert_eq!(holdout.comparable, 20);
        let kappa = holdout.kappa.expect("20 comparable runs are enough");
        assert!((kappa - 0.29 / 0.44).abs() < 1e-9, "{kappa}");
        assert_eq!(holdout.pass_rate, Some(13.0 / 20.0));
        assert_eq!((holdout.false_pass_rate.count, holdout.false_pass_rate.of), (1, 13));
        assert_eq!(holdout.false_pass_rate.value, Some(1.0 / 13.0));
        assert_eq!((holdout.false_fail_rate.count, holdout.false_fail_rate.of), (2, 7));
        assert_eq!(holdout.false_fail_rate.value, None);
        // A verdict accepting a failure is a false fail, not an override.
        assert_eq!(holdout.override_rate.count, 0);
        assert_eq!(holdout.override_rate.value, Some(0.0));
        let human = render_human(&stats);
        for line in [
            "evaluator `holdout` (pipeline `factory`)\n",
            "  runs              20   pass rate 65%   mean satisfaction 0.90\n",
            "  override rate     0% (0 of 20)\n",
            "  false-pass rate   8% (1 of 13)\n",
            "  false-fail rate   not yet known (7 of 10 decisions)\n",
            "  agreement (kappa) 0.66 (20 comparable decisions)\n",
        ] {
            assert!(human.contains(line), "{line:?} in\n{human}");
        }
    }

    #[test]
    fn kappa_is_undefined_when_both_always_gave_one_answer() {
        let mut runs = Vec::new();
        holdout_runs(&mut runs, 10, StepStatus::Passed, Some(verdict(true)));
        let stats = compute(&runs, Vec::new(), None, Thresholds::default());
        let holdout = &stats.evaluators[0];
        assert_eq!(holdout.kappa, None);
        assert!(holdout.kappa_undefined);
        let human = render_human(&stats);
        assert!(
            human.contains("agreement (kappa) undefined: both always gave one answer (10 comparable decisions)"),
            "{human}"
        );
    }

    #[test]
    fn an_accepted_override_counts_as_an_override_and_as_acceptance() {
        let mut runs = Vec::new();
        holdout_runs(&mut runs, 8, StepStatus::Passed, Some(verdict(true)));
        holdout_runs(&mut runs, 2, StepStatus::Failed, Some(override_of("holdout")));
        // Overriding another step neither overrides nor judges this one.
        holdout_runs(&mut runs, 1, StepStatus::Failed, Some(override_of("lint")));
        // A failure recorded as overridden (by a resumed run) is one too.
        holdout_runs(&mut runs, 1, StepStatus::Overridden, None);
        let stats = compute(&runs, Vec::new(), None, few(2));
        let holdout = &stats.evaluators[0];
        assert_eq!(holdout.runs, 12);
        assert_eq!((holdout.override_rate.count, holdout.override_rate.of), (3, 12));
        assert_eq!(holdout.override_rate.value, Some(3.0 / 12.0));
        assert_eq!((holdout.false_fail_rate.count, holdout.false_fail_rate.of), (3, 3));
        assert_eq!(holdout.false_fail_rate.value, Some(1.0));
        assert_eq!(holdout.comparable, 11);
        assert_eq!(holdout.pass_rate, Some(8.0 / 12.0));
    }

    #[test]
    fn an_override_of_a_verdict_that_ended_as_a_pass_is_not_counted() {
        let runs = vec![run_at(
            START,
            vec![
                started("factory"),
                evaluated("holdout", StepStatus::Failed),
                override_of("holdout"),
                evaluated("holdout", StepStatus::Passed),
            ],
        )];
        let stats = compute(&runs, Vec::new(), None, few(1));
        let holdout = &stats.evaluators[0];
        assert_eq!(holdout.override_rate.count, 0);
        assert_eq!((holdout.false_pass_rate.count, holdout.false_pass_rate.of), (0, 1));
    }

    #[test]
    fn since_leaves_out_runs_that_started_before_it() {
        let mut runs = vec![
            run_at(START - DAY, vec![started("factory"), evaluated("holdout", StepStatus::Passed)]),
            run_at(START, vec![started("factory"), evaluated("holdout", StepStatus::Passed)]),
            run_at(START + DAY, vec![started("factory"), evaluated("holdout", StepStatus::Failed)]),
        ];
        runs.push(RecordedRun {
            run_id: "manual".to_string(),
            events: vec![started("factory"), evaluated("holdout", StepStatus::Passed)],
            report: None,
        });
        let all = compute(&runs, Vec::new(), None, Thresholds::default());
        assert_eq!(all.runs, 4);
        assert_eq!(all.evaluators[0].runs, 4);
        let recent = compute(&runs, Vec::new(), Some(START), Thresholds::default());
        assert_eq!(recent.runs, 2);
        assert_eq!(recent.evaluators[0].runs, 2);
        assert_eq!(recent.evaluators[0].pass_rate, Some(0.5));
        assert_eq!(recent.since.as_deref(), Some("2026-01-01T00:00:00.000Z"));
        assert!(render_human(&recent).starts_with("2 runs read since 2026-01-01T00:00:00.000Z\n"));
    }

    /// 50 runs: 45 passes (44 accepted, 1 rejected), 5 failures (2
    /// overridden, 3 rejected): false-pass 1/45 = 2.2 %, overrides 2/50 = 4 %.
    fn fifty_runs() -> Vec<RecordedRun> {
        let mut runs = Vec::new();
        holdout_runs(&mut runs, 44, StepStatus::Passed, Some(verdict(true)));
        holdout_runs(&mut runs, 1, StepStatus::Passed, Some(verdict(false)));
        holdout_runs(&mut runs, 2, StepStatus::Failed, Some(override_of("holdout")));
        holdout_runs(&mut runs, 3, StepStatus::Failed, Some(verdict(false)));
        runs
    }

    #[test]
    fn auto_merge_is_allowed_when_both_rates_are_known_and_below_their_thresholds() {
        let stats = compute(&fifty_runs(), Vec::new(), None, Thresholds::default());
        let holdout = &stats.evaluators[0];
        assert!(holdout.auto_merge_eligible);
        assert_eq!(
            holdout.auto_merge_reason,
            "yes: false-pass rate 2% < 5% over 45 decisions and override rate 4% < 10% over 50 runs"
        );
        let human = render_human(&stats);
        assert!(human.contains("  auto-merge eligible: yes — false-pass rate 2% < 5% over 45 decisions"), "{human}");
    }

    #[test]
    fn auto_merge_is_refused_when_the_override_rate_is_not_below_its_threshold() {
        let thresholds = Thresholds { max_override_rate: 0.03, ..Thresholds::default() };
        let stats = compute(&fifty_runs(), Vec::new(), None, thresholds);
        let holdout = &stats.evaluators[0];
        assert!(!holdout.auto_merge_eligible);
        assert_eq!(holdout.auto_merge_reason, "no: override rate 4% is not below 3%");
    }

    #[test]
    fn auto_merge_is_refused_while_the_false_pass_rate_is_not_yet_known() {
        let mut runs = Vec::new();
        holdout_runs(&mut runs, 3, StepStatus::Passed, Some(verdict(true)));
        holdout_runs(&mut runs, 9, StepStatus::Passed, None);
        let stats = compute(&runs, Vec::new(), None, Thresholds::default());
        let holdout = &stats.evaluators[0];
        assert_eq!(holdout.override_rate.value, Some(0.0));
        assert!(!holdout.auto_merge_eligible);
        assert_eq!(holdout.auto_merge_reason, "no: false-pass rate not yet known (3 of 10 decisions needed)");
        let human = render_human(&stats);
        assert!(
            human.contains("  auto-merge eligible: no — false-pass rate not yet known (3 of 10 decisions needed)\n"),
            "{human}"
        );
    }

    #[test]
    fn a_figure_just_below_its_limit_is_shown_with_the_decimals_that_tell_them_apart() {
        assert_eq!(percent_below(0.046, 0.05), "4.6%");
        assert_eq!(percent_below(0.02, 0.05), "2%");
    }

    #[test]
    fn error_and_skipped_results_are_not_verdicts() {
        let runs = vec![
            // Its last result is an error: no verdict in this run.
            run_at(
                START,
                vec![
                    started("factory"),
                    evaluated("holdout", StepStatus::Passed),
                    evaluated("holdout", StepStatus::Error),
                    verdict(false),
                ],
            ),
            run_at(START + 1000, vec![started("factory"), evaluated("holdout", StepStatus::Skipped), verdict(false)]),
            // An error followed by a pass is a pass.
            run_at(
                START + 2000,
                vec![
                    started("factory"),
                    evaluated("holdout", StepStatus::Error),
                    evaluated("holdout", StepStatus::Passed),
                    verdict(true),
                ],
            ),
            // A check is not an evaluator.
            run_at(
                START + 3000,
                vec![started("factory"), step_finished("lint", StepKind::Check, StepStatus::Passed), verdict(true)],
            ),
        ];
        let stats = compute(&runs, Vec::new(), None, few(1));
        assert_eq!(stats.runs, 4);
        assert_eq!(stats.evaluators.len(), 1);
        let holdout = &stats.evaluators[0];
        assert_eq!(holdout.evaluator, "holdout");
        assert_eq!(holdout.runs, 1);
        assert_eq!(holdout.pass_rate, Some(1.0));
        assert_eq!(holdout.comparable, 1);
        assert_eq!(holdout.false_pass_rate.count, 0);
    }

    #[test]
    fn a_verdict_decision_applies_to_every_evaluator_of_the_run() {
        let runs = vec![run_at(
            START,
            vec![
                started("factory"),
                evaluated("holdout", StepStatus::Passed),
                evaluated("judge", StepStatus::Failed),
                verdict(false),
            ],
        )];
        let stats = compute(&runs, Vec::new(), None, few(1));
        let [holdout, judge] = stats.evaluators.as_slice() else { panic!("two evaluators: {stats:?}") };
        assert_eq!(holdout.evaluator, "holdout");
        assert_eq!((holdout.false_pass_rate.count, holdout.false_pass_rate.of), (1, 1));
        assert_eq!(judge.evaluator, "judge");
        assert_eq!((judge.false_fail_rate.count, judge.false_fail_rate.of), (0, 1));
        assert_eq!((holdout.comparable, judge.comparable), (1, 1));
    }

    #[test]
    fn the_latest_judgement_that_applies_wins() {
        let runs = vec![
            // Approved, then rejected by a verdict: rejected, for both.
            run_at(
                START,
                vec![
                    started("factory"),
                    evaluated("holdout", StepStatus::Passed),
                    evaluated("judge", StepStatus::Passed),
                    decision(DecisionKind::Approval, "ship", true, &["holdout", "judge"]),
                    verdict(false),
                ],
            ),
            // Rejected by a verdict, then an approval of holdout's result
            // alone: holdout accepted, judge still rejected.
            run_at(
                START + 1000,
                vec![
                    started("factory"),
                    evaluated("holdout", StepStatus::Passed),
                    evaluated("judge", StepStatus::Passed),
                    verdict(false),
                    decision(DecisionKind::Approval, "ship", true, &["holdout"]),
                ],
            ),
            // An approval rejecting judge's result only.
            run_at(
                START + 2000,
                vec![
                    started("factory"),
                    evaluated("holdout", StepStatus::Passed),
                    evaluated("judge", StepStatus::Passed),
                    decision(DecisionKind::Approval, "ship", false, &["judge"]),
                ],
            ),
        ];
        let stats = compute(&runs, Vec::new(), None, few(1));
        let [holdout, judge] = stats.evaluators.as_slice() else { panic!("two evaluators: {stats:?}") };
        assert_eq!((holdout.false_pass_rate.count, holdout.false_pass_rate.of), (1, 2));
        assert_eq!((judge.false_pass_rate.count, judge.false_pass_rate.of), (3, 3));
    }

    #[test]
    fn evaluators_are_sorted_by_pipeline_then_id() {
        let runs = vec![
            run_at(START, vec![started("zeta"), evaluated("a", StepStatus::Passed)]),
            run_at(
                START + 1,
                vec![started("alpha"), evaluated("b", StepStatus::Passed), evaluated("a", StepStatus::Failed)],
            ),
        ];
        let stats = compute(&runs, Vec::new(), None, Thresholds::default());
        let order: Vec<(&str, &str)> =
            stats.evaluators.iter().map(|e| (e.pipeline.as_str(), e.evaluator.as_str())).collect();
        assert_eq!(order, [("alpha", "a"), ("alpha", "b"), ("zeta", "a")]);
    }

    #[test]
    fn nothing_judged_yet_says_so_and_lists_what_was_skipped() {
        let stats = compute(&[], vec!["run 123: journal does not verify".to_string()], None, Thresholds::default());
        assert_eq!(
            render_human(&stats),
            "0 runs read, 1 unreadable\n  skipped: run 123: journal does not verify\nno evaluator has given a verdict yet\n"
        );
    }

    #[test]
    fn json_is_the_stats_with_unknown_rates_as_null() {
        let mut runs = Vec::new();
        holdout_runs(&mut runs, 3, StepStatus::Passed, Some(verdict(true)));
        let stats = compute(&runs, Vec::new(), None, Thresholds::default());
        let json = render_json(&stats);
        assert!(json.ends_with("}\n"));
        let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(value["runs"], 3);
        assert_eq!(value["thresholds"]["min_decisions"], 10);
        let holdout = &value["evaluators"][0];
        assert_eq!(holdout["evaluator"], "holdout");
        assert_eq!(holdout["false_pass_rate"]["of"], 3);
        assert!(holdout["false_pass_rate"]["value"].is_null());
        assert!(holdout["kappa"].is_null());
        assert_eq!(holdout["pass_rate"], 1.0);
    }
}
