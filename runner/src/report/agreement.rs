//! How evaluators agree with people, as `cleanroom stats` and the history
//! page show it: plain data, computed by [`crate::governance::stats`].

use serde::Serialize;

use crate::plan::approvals::Thresholds;

/// A share of decisions: `count` of `of`; `value` is `None` ("not yet
/// known") while `of` is below [`Thresholds::min_decisions`], never 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    /// How many decisions counted for it.
    pub count: u32,
    /// Out of how many.
    pub of: u32,
    /// `count / of`, once `of` is large enough to say.
    pub value: Option<f64>,
}

/// One evaluator's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvaluatorStats {
    /// `[pipeline] name` of the runs it judged in.
    pub pipeline: String,
    /// The evaluator's step id.
    pub evaluator: String,
    /// Runs in which it gave a verdict (passed or failed).
    pub runs: u32,
    /// Share of those it passed (known from the first run).
    pub pass_rate: Option<f64>,
    /// Mean satisfaction of its final verdicts.
    pub mean_satisfaction: Option<f64>,
    /// Its failures that a person overrode, over its verdicts.
    pub override_rate: Rate,
    /// Of the runs it passed that a person judged, the share the person rejected.
    pub false_pass_rate: Rate,
    /// Of the runs it failed that a person judged, the share the person accepted.
    pub false_fail_rate: Rate,
    /// Cohen's kappa between its verdicts and people's; `None` while not
    /// yet known or undefined (everyone always gave one answer).
    pub kappa: Option<f64>,
    /// Whether `kappa` is `None` because it is undefined rather than not
    /// yet known: over enough comparable runs, the evaluator and people
    /// each always gave the same one answer, so chance alone explains
    /// their agreement and kappa divides by zero.
    pub kappa_undefined: bool,
    /// Runs where both it and a person judged.
    pub comparable: u32,
    /// Whether it may merge on its own word.
    pub auto_merge_eligible: bool,
    /// Why (or why not), in a sentence.
    pub auto_merge_reason: String,
}

/// Every evaluator's figures, and what was read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Runs read.
    pub runs: u32,
    /// Runs left out because their journal did not verify, with why.
    pub unreadable: Vec<String>,
    /// The `--since` instant (RFC 3339 UTC) runs were counted from, if
    /// any, so that a rendering says which runs its figures cover.
    pub since: Option<String>,
    /// The thresholds applied.
    pub thresholds: Thresholds,
    /// One entry per (pipeline, evaluator), sorted.
    pub evaluators: Vec<EvaluatorStats>,
}
