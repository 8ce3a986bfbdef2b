//! Run results and how they are shown.
//!
//! [`RunReport`] is what a run produced: one [`StepReport`] per step in plan
//! order. Renderers are pure functions of it, one file per format
//! ([`human`], [`json`]), so every format tells the same story.

pub mod human;
pub mod json;

use std::time::Duration;

use serde::Serialize;

use crate::plan::StepKind;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
}

impl StepStatus {
    /// The word shown in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Passed => "passed",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Error => "error",
        }
    }
}

/// A finding as reported: paths are workspace-relative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FindingReport {
    /// The rule id the plugin gave.
    pub rule: String,
    /// `info`, `warning` or `error`.
    pub severity: &'static str,
    /// What is wrong.
    pub message: String,
    /// Workspace-relative path, if any.
    pub path: Option<String>,
    /// 1-based line, if any.
    pub line: Option<u32>,
    /// 1-based column, if any.
    pub column: Option<u32>,
}

/// What one step did.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// The step id.
    pub id: String,
    /// `check`, `stage` or `evaluator`.
    pub kind: StepKind,
    /// How it ended.
    pub status: StepStatus,
    /// Wall time, 0 for skipped steps.
    #[serde(rename = "duration_ms", serialize_with = "as_millis")]
    pub duration: Duration,
    /// Why it errored or was skipped; `None` when it passed or failed.
    pub reason: Option<String>,
    /// What the plugin found.
    pub findings: Vec<FindingReport>,
    /// What the plugin printed to stdout (lossy UTF-8, capped).
    pub stdout: String,
    /// What the plugin printed to stderr (lossy UTF-8, capped).
    pub stderr: String,
    /// Bytes of output dropped past the cap (stdout + stderr).
    pub output_dropped_bytes: u64,
    /// Workspace files a stage changed: `+ path` written, `- path` removed.
    pub changes: Vec<String>,
    /// Set when a native step ran without the kernel jail
    /// (`--allow-unjailed`), with the reason the jail could not be set up.
    pub unjailed: Option<String>,
}

impl StepReport {
    /// A step that did not run because `needs` did not pass.
    pub fn skipped(id: &str, kind: StepKind, reason: String) -> Self {
        StepReport {
            id: id.to_string(),
            kind,
            status: StepStatus::Skipped,
            duration: Duration::ZERO,
            reason: Some(reason),
            findings: Vec::new(),
            stdout: String::new(),
            stderr: String::new(),
            output_dropped_bytes: 0,
            changes: Vec::new(),
            unjailed: None,
        }
    }

    /// Findings of `error` severity.
    pub fn error_count(&self) -> usize {
        self.findings.iter().filter(|f| f.severity == "error").count()
    }
}

/// What a whole run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// `[pipeline] name`.
    pub pipeline: String,
    /// `passed` when every step passed, else `failed`.
    pub status: &'static str,
    /// Wall time of the whole run.
    #[serde(rename = "duration_ms", serialize_with = "as_millis")]
    pub duration: Duration,
    /// One entry per step, in plan order.
    pub steps: Vec<StepReport>,
}

impl RunReport {
    /// Builds the report; the status follows from the steps.
    pub fn new(pipeline: String, duration: Duration, steps: Vec<StepReport>) -> Self {
        let passed = steps.iter().all(|s| s.status == StepStatus::Passed);
        RunReport { pipeline, status: if passed { "passed" } else { "failed" }, duration, steps }
    }

    /// True when every step passed.
    pub fn passed(&self) -> bool {
        self.status == "passed"
    }

    /// How many steps ended with `status`.
    pub fn count(&self, status: StepStatus) -> usize {
        self.steps.iter().filter(|s| s.status == status).count()
    }
}

fn as_millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}
