//! Run results and how they are shown.
//!
//! [`RunReport`] is what a run produced: one [`StepReport`] per step in plan
//! order. Renderers are pure functions of it, one file per format
//! ([`human`], [`json`], [`jsonl`], [`junit`], [`sarif`]), so every format
//! tells the same story; [`live`] shows a run while it goes.

pub mod agreement;
pub mod decisions;
pub mod events;
pub mod facts;
pub mod html;
pub mod human;
pub mod json;
pub mod jsonl;
pub mod junit;
pub mod live;
pub mod sarif;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::plan::StepKind;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// Ran and found nothing that fails it.
    Passed,
    /// Ran and found something that fails it (an error-severity finding).
    Failed,
    /// Did not run because a step it needs did not pass.
    Skipped,
    /// Could not finish: timed out, ran out of memory, crashed, or the plugin
    /// reported an error.
    Error,
    /// Failed, and a human accepted the failure (`cleanroom override`):
    /// steps that need it run as if it had passed, but it is never shown as
    /// `passed`, and the run's status says a human decided.
    Overridden,
}

impl StepStatus {
    /// The word shown in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Passed => "passed",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Error => "error",
            StepStatus::Overridden => "overridden",
        }
    }

    /// Whether steps that need this one may run: it passed, or a human
    /// accepted its failure.
    pub fn satisfied(self) -> bool {
        matches!(self, StepStatus::Passed | StepStatus::Overridden)
    }
}

/// How a whole run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Every step passed.
    Passed,
    /// A step failed, errored or was skipped, or retries ran out.
    Failed,
    /// Ctrl-C stopped it; `run --resume` continues it.
    Interrupted,
    /// Every step passed or was overridden, and a human accepted at least
    /// one failure (`cleanroom override`); `--fail-on-override` makes it
    /// exit 1.
    Overridden,
    /// Every step passed, and an approval gate waits for a human
    /// (`cleanroom approve`/`reject`); `run --resume` continues it.
    #[serde(rename = "awaiting-approval")]
    AwaitingApproval,
}

impl PartialEq<&str> for RunStatus {
    /// `status == "passed"`: the word, as reports write it.
    fn eq(&self, word: &&str) -> bool {
        self.as_str() == *word
    }
}

impl RunStatus {
    /// The word shown in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Passed => "passed",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Overridden => "overridden",
            RunStatus::AwaitingApproval => "awaiting-approval",
        }
    }
}

/// Why a run ended: one word every report format carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Termination {
    /// Every step passed.
    Passed,
    /// Gates still failed and their stages had no attempt left (a gate
    /// without `retry` has one attempt).
    MaxIterations,
    /// An evaluator's satisfaction stopped rising (`stop_on_plateau`).
    Plateau,
    /// A stage was sent back with the same normalised feedback three times.
    RepeatingFailure,
    /// A budget ran out: `[pipeline] max_duration`, or a step's `max_requests`.
    Budget,
    /// A step could not run for a reason no attempt of a stage changes.
    Error,
    /// Ctrl-C; `run --resume` continues it.
    Interrupted,
    /// An approval gate waits for a human decision.
    AwaitingApproval,
    /// A human rejected an approval gate, or it was not decided before its
    /// `timeout` (it fails closed).
    Rejected,
}

impl Termination {
    /// The word shown in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Termination::Passed => "passed",
            Termination::MaxIterations => "max-iterations",
            Termination::Plateau => "plateau",
            Termination::RepeatingFailure => "repeating-failure",
            Termination::Budget => "budget",
            Termination::Error => "error",
            Termination::Interrupted => "interrupted",
            Termination::AwaitingApproval => "awaiting-approval",
            Termination::Rejected => "rejected",
        }
    }
}

/// One workspace change a stage committed (or a link it made that was not
/// applied). In JSON it is the line the human report shows: `+ path`
/// written, `- path` removed, `! path (symlink, not applied)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A file written (created or replaced), workspace-relative.
    Written(String),
    /// A file removed.
    Removed(String),
    /// A symlink the stage made, which the commit did not apply.
    IgnoredLink(String),
}

impl Change {
    /// The path, if this is a file written.
    pub fn written(&self) -> Option<&str> {
        match self {
            Change::Written(p) => Some(p),
            _ => None,
        }
    }

    /// The path, if this is a file removed.
    pub fn removed(&self) -> Option<&str> {
        match self {
            Change::Removed(p) => Some(p),
            _ => None,
        }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Written(p) => write!(f, "+ {p}"),
            Change::Removed(p) => write!(f, "- {p}"),
            Change::IgnoredLink(p) => write!(f, "! {p} (symlink, not applied)"),
        }
    }
}

impl PartialEq<&str> for Change {
    /// `change == "+ src/a.rs"`: the line, as reports write it.
    fn eq(&self, line: &&str) -> bool {
        line.parse::<Change>().is_ok_and(|parsed| parsed == *self)
    }
}

impl std::str::FromStr for Change {
    type Err = String;
    fn from_str(line: &str) -> Result<Change, String> {
        if let Some(path) = line.strip_prefix("+ ") {
            Ok(Change::Written(path.to_string()))
        } else if let Some(path) = line.strip_prefix("- ") {
            Ok(Change::Removed(path.to_string()))
        } else if let Some(path) = line.strip_prefix("! ").and_then(|p| p.strip_suffix(" (symlink, not applied)")) {
            Ok(Change::IgnoredLink(path.to_string()))
        } else {
            Err(format!("`{line}` is not a change (`+ path`, `- path` or `! path (symlink, not applied)`)"))
        }
    }
}

impl Serialize for Change {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Change {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Change, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

/// A finding as reported: paths are workspace-relative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingReport {
    /// The rule id the plugin gave.
    pub rule: String,
    /// `info`, `warning` or `error`.
    pub severity: String,
    /// What is wrong.
    pub message: String,
    /// Workspace-relative path, if any.
    pub path: Option<String>,
    /// 1-based line, if any.
    pub line: Option<u32>,
    /// 1-based column, if any.
    pub column: Option<u32>,
    /// Where, in `message`, the text the step or its program produced
    /// begins (a byte offset): what comes before is the runner's own words
    /// (`` `cargo test` exited with status 1: ``). Absent: all of it is the
    /// step's (a plugin's finding). Feedback withholds a line only for
    /// holdout text in the step's part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub produced_from: Option<usize>,
    /// sha256 (hex) of the finding's line as it read when the run ended,
    /// whitespace collapsed: what SARIF fingerprints, so a past run renders
    /// the same after the file changed. Absent without a path and line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_digest: Option<String>,
}

impl FindingReport {
    /// The part of `message` the step or its program produced.
    pub fn produced(&self) -> &str {
        produced_part(&self.message, self.produced_from)
    }
}

/// `text` from byte `from` on (all of it for `None`; nothing when `from` is
/// past the end or not on a character boundary).
fn produced_part(text: &str, from: Option<usize>) -> &str {
    match from {
        None => text,
        Some(at) => text.get(at..).unwrap_or(""),
    }
}

/// One scenario of an evaluator: `runs` runs, `passes` of them passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReport {
    /// The scenario's name.
    pub name: String,
    /// How many times it ran.
    pub runs: u32,
    /// How many runs passed.
    pub passes: u32,
    /// Whether `passes` reached the evaluator's `require`.
    pub passed: bool,
    /// One line from the evaluator: the first failing run's, else the last run's.
    pub summary: String,
    /// Longer text from that run, for humans only (never fed back to stages).
    pub detail: String,
    /// `passes / runs`: the share of its runs that passed.
    #[serde(default)]
    pub pass_rate: f64,
    /// How often two of its runs disagreed (one passed, the other failed),
    /// over every pair of runs: 0 when all runs agree. The judge's own noise
    /// when the subject is deterministic.
    #[serde(default)]
    pub run_disagreement: f64,
    /// With a council of judges: the share of runs in which the judges did
    /// not all vote alike. Absent when the evaluator reported no votes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_disagreement: Option<f64>,
    /// Runs whose verdict the verdict cache answered (no judge was asked).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cached_runs: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl ScenarioReport {
    /// The share of its runs that passed.
    pub fn pass_rate(&self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            f64::from(self.passes) / f64::from(self.runs)
        }
    }

    /// The judge's own noise in a few words (`runs disagree 67%, judges
    /// disagree 33%`), or nothing when its runs and judges all agreed.
    pub fn noise(&self) -> String {
        let mut parts = Vec::new();
        if self.run_disagreement > 0.0 {
            parts.push(format!("runs disagree {:.0}%", self.run_disagreement * 100.0));
        }
        if let Some(judges) = self.judge_disagreement.filter(|j| *j > 0.0) {
            parts.push(format!("judges disagree {:.0}%", judges * 100.0));
        }
        if self.cached_runs > 0 {
            parts.push(format!("{} of {} runs from the verdict cache", self.cached_runs, self.runs));
        }
        parts.join(", ")
    }

    /// The share of `runs` runs of which `passes` passed.
    pub fn share(passes: u32, runs: u32) -> f64 {
        if runs == 0 {
            0.0
        } else {
            f64::from(passes) / f64::from(runs)
        }
    }

    /// Over every pair of `runs` runs of which `passes` passed, the share
    /// of pairs that disagree.
    pub fn pairwise_disagreement(passes: u32, runs: u32) -> f64 {
        if runs < 2 {
            return 0.0;
        }
        let (p, n) = (f64::from(passes), f64::from(runs));
        p * (n - p) / (n * (n - 1.0) / 2.0)
    }
}

/// An evaluator's result: satisfaction against its threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationReport {
    /// Passing scenarios / scenarios.
    pub satisfaction: f64,
    /// The share needed to pass.
    pub threshold: f64,
    /// Every scenario, in the order the evaluator listed them.
    pub scenarios: Vec<ScenarioReport>,
}

impl EvaluationReport {
    /// How many scenarios passed.
    pub fn passed_count(&self) -> usize {
        self.scenarios.iter().filter(|s| s.passed).count()
    }
}

/// What one step did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepReport {
    /// The step id.
    pub id: String,
    /// `check`, `stage` or `evaluator`.
    pub kind: StepKind,
    /// How it ended.
    pub status: StepStatus,
    /// Which attempt this was: a stage's attempt number (1 first), for other
    /// steps the round of the run it ran in.
    pub attempt: u32,
    /// Wall time, 0 for skipped steps.
    #[serde(rename = "duration_ms", serialize_with = "as_millis", deserialize_with = "from_millis")]
    pub duration: Duration,
    /// Why it errored, failed without findings, or was skipped.
    pub reason: Option<String>,
    /// A stage's one-line note on success.
    pub note: Option<String>,
    /// What the plugin found.
    pub findings: Vec<FindingReport>,
    /// What the plugin printed to stdout (lossy UTF-8, capped).
    pub stdout: String,
    /// What the plugin printed to stderr (lossy UTF-8, capped).
    pub stderr: String,
    /// Bytes of output dropped past the cap (stdout + stderr).
    pub output_dropped_bytes: u64,
    /// Workspace files a stage changed.
    pub changes: Vec<Change>,
    /// Set when a native step ran without the kernel jail
    /// (`--allow-unjailed`), with the reason the jail could not be set up.
    pub unjailed: Option<String>,
    /// Set when the result cache answered for the step: nothing ran, and
    /// `duration_ms`, findings and output are those of the run that was
    /// cached (a stage's writes were restored exactly).
    #[serde(default)]
    pub cached: bool,
    /// Outgoing requests the step's network policy refused (`origin: why`).
    #[serde(default)]
    pub denied_requests: Vec<String>,
    /// Evaluators: satisfaction, threshold and scenarios (flattened into
    /// the step's JSON object).
    #[serde(flatten)]
    pub evaluation: Option<EvaluationReport>,
    /// Set on an `error` whose cause is not the work being judged: the jail
    /// or a plugin could not be set up, a tool is missing, an evaluator's
    /// own configuration is wrong. Retrying a stage cannot fix it, so the
    /// retry loop stops at once and says so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub infrastructure: bool,
    /// Where, in `reason`, text the step or its program produced begins (a
    /// byte offset; see [`FindingReport::produced_from`]). Absent: all of
    /// the reason may be the step's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_produced_from: Option<usize>,
    /// 1-based line of the step's table in the pipeline file (0 unknown),
    /// where SARIF points results that have no file of their own.
    #[serde(default)]
    pub line: usize,
    /// Evaluators: set when the service they judge could not be used (it
    /// exited, or did not become ready in time), in the runner's words;
    /// its last output lines are in `stderr`. The step then failed without
    /// running a scenario, and a retried stage is told this line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_failure: Option<String>,
    /// Set when the step ran out of a budget, naming it (`max_requests =
    /// 40`): the step is an `error` (never a pass) and the run stops with
    /// `termination: budget`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_exhausted: Option<String>,
    /// Set when the result came from an REAPI service (its remote cache, or
    /// one of its workers): the action's digest, and the worker that ran it
    /// when the service says, so an audit can find who produced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteOrigin>,
    /// Stages: the committed changes as a unified diff (text files, each
    /// capped; binary files named only), for humans reviewing the work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// Where a remotely produced result came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteOrigin {
    /// The REAPI action digest, `sha256/size`.
    pub action: String,
    /// The worker that ran it, as the service names it (empty if unknown).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub worker: String,
    /// Whether it was answered from the remote action cache (`cached
    /// (remote)`) rather than run for this request.
    pub cached: bool,
}

impl StepReport {
    /// A step that did not run because `needs` did not pass.
    pub fn skipped(id: &str, kind: StepKind, reason: String) -> Self {
        StepReport {
            id: id.to_string(),
            kind,
            status: StepStatus::Skipped,
            attempt: 1,
            duration: Duration::ZERO,
            reason: Some(reason),
            note: None,
            findings: Vec::new(),
            stdout: String::new(),
            stderr: String::new(),
            output_dropped_bytes: 0,
            changes: Vec::new(),
            unjailed: None,
            cached: false,
            denied_requests: Vec::new(),
            evaluation: None,
            infrastructure: false,
            reason_produced_from: None,
            line: 0,
            service_failure: None,
            budget_exhausted: None,
            remote: None,
            diff: None,
        }
    }

    /// A step that could not finish, for a reason in the runner's own words
    /// (nothing in it is the step's).
    pub fn error(id: &str, kind: StepKind, reason: String) -> Self {
        StepReport {
            status: StepStatus::Error,
            reason_produced_from: Some(reason.len()),
            reason: Some(reason),
            ..StepReport::skipped(id, kind, String::new())
        }
    }

    /// Marks this error as one the stage's work did not cause (see
    /// [`StepReport::infrastructure`]).
    pub fn infrastructure(mut self) -> Self {
        self.infrastructure = true;
        self
    }

    /// Sets `reason` to the runner's `words` followed by `produced`, text
    /// the step or its program chose.
    pub fn set_reason(&mut self, words: &str, produced: &str) {
        self.reason = Some(format!("{words}{produced}"));
        self.reason_produced_from = Some(words.len());
    }

    /// Calls `f` on every text of the report a step, plugin or program could
    /// have chosen (`true` for texts of several lines): one walk for
    /// escaping terminal controls and scrubbing secrets alike.
    pub fn for_each_text(&mut self, f: &mut dyn FnMut(&mut String, bool)) {
        f(&mut self.stdout, true);
        f(&mut self.stderr, true);
        for text in [&mut self.reason, &mut self.note, &mut self.unjailed].into_iter().flatten() {
            f(text, false);
        }
        for change in &mut self.changes {
            let (Change::Written(path) | Change::Removed(path) | Change::IgnoredLink(path)) = change;
            f(path, false);
        }
        for text in &mut self.denied_requests {
            f(text, false);
        }
        if let Some(diff) = &mut self.diff {
            f(diff, true);
        }
        for finding in &mut self.findings {
            f(&mut finding.rule, false);
            f(&mut finding.severity, false);
            f(&mut finding.message, false);
            if let Some(path) = &mut finding.path {
                f(path, false);
            }
        }
        for scenario in self.evaluation.iter_mut().flat_map(|e| e.scenarios.iter_mut()) {
            f(&mut scenario.name, false);
            f(&mut scenario.summary, false);
            f(&mut scenario.detail, true);
        }
    }

    /// The part of `reason` the step or its program produced.
    pub fn produced_reason(&self) -> &str {
        produced_part(self.reason.as_deref().unwrap_or(""), self.reason_produced_from)
    }

    /// Findings of `error` severity.
    pub fn error_count(&self) -> usize {
        self.findings.iter().filter(|f| f.severity == "error").count()
    }

    /// `satisfaction 0.83 (5/6) < 0.90` for evaluators, else `None`.
    pub fn score(&self) -> Option<String> {
        let e = self.evaluation.as_ref()?;
        let cmp = if self.status == StepStatus::Passed { ">=" } else { "<" };
        Some(format!(
            "satisfaction {:.2} ({}/{}) {cmp} {:.2}",
            e.satisfaction,
            e.passed_count(),
            e.scenarios.len(),
            e.threshold
        ))
    }
}

/// One round of a run: how each gate scored, which scenarios failed, and
/// which stages were sent back with what feedback. In JSON the structured
/// fields (`decisions`, `failing_scenarios`, `retried`) come with the
/// one-line forms reports always had (`gates`, `failing`, `retries`,
/// `feedback`, `withheld`), which are made from them and ignored on reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "AttemptJson", from = "AttemptJson")]
pub struct AttemptReport {
    /// 1 for the first pass over the pipeline, +1 per retry.
    pub round: u32,
    /// Every gate judged in this round.
    pub decisions: Vec<GateScore>,
    /// Evaluators' failing scenarios in this round.
    pub failing_scenarios: Vec<FailingScenario>,
    /// The stages sent back after this round.
    pub retried: Vec<Retried>,
    /// An upper bound on the bits of holdout-dependent information this
    /// round's feedback carried, all stages together (`docs/security.md`).
    pub feedback_bits: f64,
}

/// A gate's verdict in one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateScore {
    /// The gate's id.
    pub gate: String,
    /// How it ended.
    pub status: StepStatus,
    /// Its score or why it did not pass: `satisfaction 0.67 (4/6) < 0.90`.
    pub reason: String,
    /// The stage it sent back, if it did.
    #[serde(default)]
    pub retry: Option<String>,
}

impl std::fmt::Display for GateScore {
    /// `gate: status, reason`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}, {}", self.gate, self.status.as_str(), self.reason)
    }
}

/// A scenario an evaluator failed in one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailingScenario {
    /// The evaluator's id.
    pub gate: String,
    /// The scenario's name.
    pub scenario: String,
    /// Passing runs.
    pub passes: u32,
    /// Runs.
    pub runs: u32,
    /// The evaluator's one-line summary.
    pub summary: String,
}

impl std::fmt::Display for FailingScenario {
    /// `gate: name  K/N passed  summary`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}  {}/{} passed  {}", self.gate, self.scenario, self.passes, self.runs, self.summary)
    }
}

/// A stage sent back after a round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retried {
    /// The stage's id.
    pub stage: String,
    /// Its next attempt.
    pub attempt: u32,
    /// The feedback lines it got.
    pub feedback: Vec<String>,
    /// An upper bound on their holdout-dependent bits.
    pub feedback_bits: f64,
    /// For humans only, never sent to the stage: lines withheld because
    /// they quoted a holdout file, naming the file.
    #[serde(default)]
    pub withheld: Vec<String>,
}

impl std::fmt::Display for Retried {
    /// `stage: attempt N with M feedback lines (at most B bits ...)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: attempt {} with {} feedback lines (at most {:.1} bits of holdout-dependent information)",
            self.stage,
            self.attempt,
            self.feedback.len(),
            self.feedback_bits
        )
    }
}

impl AttemptReport {
    /// An empty record of round `round`.
    pub fn new(round: u32) -> Self {
        AttemptReport {
            round,
            decisions: Vec::new(),
            failing_scenarios: Vec::new(),
            retried: Vec::new(),
            feedback_bits: 0.0,
        }
    }

    /// `gate: status, reason` per gate.
    pub fn gate_lines(&self) -> Vec<String> {
        self.decisions.iter().map(ToString::to_string).collect()
    }

    /// `gate: name  K/N passed  summary` per failing scenario.
    pub fn failing_lines(&self) -> Vec<String> {
        self.failing_scenarios.iter().map(ToString::to_string).collect()
    }

    /// One line per stage sent back.
    pub fn retry_lines(&self) -> Vec<String> {
        self.retried.iter().map(ToString::to_string).collect()
    }

    /// `stage: line` per feedback line sent.
    pub fn feedback_lines(&self) -> Vec<String> {
        self.retried.iter().flat_map(|r| r.feedback.iter().map(move |line| format!("{}: {line}", r.stage))).collect()
    }

    /// `stage: note` per feedback line withheld.
    pub fn withheld_lines(&self) -> Vec<String> {
        self.retried.iter().flat_map(|r| r.withheld.iter().map(move |line| format!("{}: {line}", r.stage))).collect()
    }
}

/// [`AttemptReport`] as JSON: the structured fields and the one-line forms.
#[derive(Serialize, Deserialize)]
struct AttemptJson {
    round: u32,
    #[serde(default)]
    gates: Vec<String>,
    #[serde(default)]
    failing: Vec<String>,
    #[serde(default)]
    retries: Vec<String>,
    #[serde(default)]
    feedback: Vec<String>,
    #[serde(default)]
    feedback_bits: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    withheld: Vec<String>,
    #[serde(default)]
    decisions: Vec<GateScore>,
    #[serde(default)]
    failing_scenarios: Vec<FailingScenario>,
    #[serde(default)]
    retried: Vec<Retried>,
}

impl From<AttemptReport> for AttemptJson {
    fn from(a: AttemptReport) -> AttemptJson {
        AttemptJson {
            round: a.round,
            gates: a.gate_lines(),
            failing: a.failing_lines(),
            retries: a.retry_lines(),
            feedback: a.feedback_lines(),
            feedback_bits: a.feedback_bits,
            withheld: a.withheld_lines(),
            decisions: a.decisions,
            failing_scenarios: a.failing_scenarios,
            retried: a.retried,
        }
    }
}

impl From<AttemptJson> for AttemptReport {
    fn from(j: AttemptJson) -> AttemptReport {
        AttemptReport {
            round: j.round,
            decisions: j.decisions,
            failing_scenarios: j.failing_scenarios,
            retried: j.retried,
            feedback_bits: j.feedback_bits,
        }
    }
}

/// What renderers need to know about the plan a run ran, so that a report
/// renders alone, also long after the run (`cleanroom report`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanFacts {
    /// The canonical workspace root.
    pub workspace: std::path::PathBuf,
    /// The nearest directory at or above the workspace holding `.git`, else
    /// the workspace: SARIF's `%SRCROOT%`.
    pub repository_root: std::path::PathBuf,
    /// The canonical pipeline file.
    pub pipeline_file: std::path::PathBuf,
    /// sha256 (hex) of each step's table line in the pipeline file,
    /// whitespace collapsed, by step id (SARIF fingerprints).
    #[serde(default)]
    pub step_line_digests: std::collections::BTreeMap<String, String>,
    /// Who does each step's work, in words (the `fmt` plugin, the command
    /// `cargo test`), by step id.
    #[serde(default)]
    pub doers: std::collections::BTreeMap<String, String>,
}

/// What a whole run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// `[pipeline] name`.
    pub pipeline: String,
    /// The run's id: its records are in `.cleanroom/runs/<run_id>/`.
    pub run_id: String,
    /// `passed` when every step passed, `interrupted` after Ctrl-C, else `failed`.
    pub status: RunStatus,
    /// Wall time of the whole run.
    #[serde(rename = "duration_ms", serialize_with = "as_millis", deserialize_with = "from_millis")]
    pub duration: Duration,
    /// One entry per step, in plan order: its latest attempt.
    pub steps: Vec<StepReport>,
    /// One entry per round when gates retried stages; empty otherwise.
    pub attempts: Vec<AttemptReport>,
    /// Set when retries ran out: what still fails and how each attempt scored.
    pub escalation: Option<String>,
    /// Why the run ended. Absent only in reports written before runs said so.
    #[serde(default)]
    pub termination: Option<Termination>,
    /// `[barrier] feedback`: how much feedback could say about the holdout.
    pub feedback_level: crate::manifest::FeedbackLevel,
    /// An upper bound on the bits of holdout-dependent information all
    /// retry feedback of the run carried (the sum over its rounds).
    pub feedback_bits: f64,
    /// What renderers need to know about the plan.
    #[serde(default)]
    pub plan: PlanFacts,
    /// Every `[approval.*]` gate and where it stands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<decisions::ApprovalReport>,
    /// Every human decision recorded for the run (approvals, overrides,
    /// verdicts), in the order they were made, including those made after
    /// the run wrote this report (`cleanroom report` adds them from the
    /// journal).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<decisions::Decision>,
}

impl RunReport {
    /// Builds the report; the status follows from the steps: `passed`
    /// when every step passed, `overridden` when every step passed or was
    /// overridden, else `failed`.
    pub fn new(pipeline: String, run_id: String, duration: Duration, steps: Vec<StepReport>) -> Self {
        let status = if steps.iter().all(|s| s.status == StepStatus::Passed) {
            RunStatus::Passed
        } else if steps.iter().all(|s| s.status.satisfied()) {
            RunStatus::Overridden
        } else {
            RunStatus::Failed
        };
        RunReport {
            pipeline,
            run_id,
            status,
            duration,
            steps,
            attempts: Vec::new(),
            escalation: None,
            termination: None,
            feedback_level: crate::manifest::FeedbackLevel::default(),
            feedback_bits: 0.0,
            plan: PlanFacts::default(),
            approvals: Vec::new(),
            decisions: Vec::new(),
        }
    }

    /// True when every step passed.
    pub fn passed(&self) -> bool {
        self.status == RunStatus::Passed
    }

    /// How many steps ended with `status`.
    pub fn count(&self, status: StepStatus) -> usize {
        self.steps.iter().filter(|s| s.status == status).count()
    }

    /// `3 passed, 1 failed (2 from cache)`: how many steps ended each way,
    /// as the terminal and HTML reports both say it.
    pub fn step_counts(&self) -> String {
        let counts: Vec<String> =
            [StepStatus::Passed, StepStatus::Overridden, StepStatus::Failed, StepStatus::Error, StepStatus::Skipped]
                .into_iter()
                .filter_map(|status| match self.count(status) {
                    0 => None,
                    n => Some(format!("{n} {}", status.as_str())),
                })
                .collect();
        let mut counts = if counts.is_empty() { "no steps".to_string() } else { counts.join(", ") };
        let cached = self.steps.iter().filter(|s| s.cached).count();
        if cached > 0 {
            counts.push_str(&format!(" ({cached} from cache)"));
        }
        counts
    }
}

/// `text` with every character that could redraw a terminal made visible:
/// C0 and C1 controls (escape sequences, carriage returns, backspaces),
/// Unicode bidirectional overrides and isolates (which reorder a line), and
/// newlines unless `multiline`. Each becomes `\u{..}` text, so a file name
/// or program output cannot draw a failing run as passing.
pub fn escape_controls(text: &str, multiline: bool) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && !(multiline && c == '\n') && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

impl RunReport {
    /// A copy with every text a step, plugin or program could have chosen
    /// passed through [`escape_controls`]: what renderers for terminals
    /// and humans draw from.
    pub fn escaped(&self) -> RunReport {
        let one = |s: &String| escape_controls(s, false).into_owned();
        let many = |s: &String| escape_controls(s, true).into_owned();
        let lines = |v: &Vec<String>| v.iter().map(one).collect::<Vec<_>>();
        let mut report = self.clone();
        report.pipeline = one(&report.pipeline);
        for step in &mut report.steps {
            step.for_each_text(&mut |text, multiline| {
                *text = escape_controls(text, multiline).into_owned();
            });
            // Offsets into the original text no longer apply.
            step.reason_produced_from = None;
            for finding in &mut step.findings {
                finding.produced_from = None;
            }
        }
        for attempt in &mut report.attempts {
            for decision in &mut attempt.decisions {
                decision.gate = one(&decision.gate);
                decision.reason = one(&decision.reason);
            }
            for failing in &mut attempt.failing_scenarios {
                failing.scenario = one(&failing.scenario);
                failing.summary = one(&failing.summary);
            }
            for retried in &mut attempt.retried {
                retried.feedback = lines(&retried.feedback);
                retried.withheld = lines(&retried.withheld);
            }
        }
        report.escalation = report.escalation.as_ref().map(many);
        report
    }
}

fn as_millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

fn from_millis<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    u64::deserialize(deserializer).map(Duration::from_millis)
}
