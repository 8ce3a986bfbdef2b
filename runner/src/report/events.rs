//! The run's one event vocabulary: what happened, in order, told to every
//! sink the same way.
//!
//! The executor emits each [`Event`] once. The journal is the durable sink
//! (authenticated, fsync'd at commit points: [`crate::journal`]); the
//! progress display and the `--format jsonl` stream are live sinks
//! ([`Observer`]s, see [`super::live`] and [`super::jsonl`]). A resumed run
//! is rebuilt from the same events the live sinks saw. A few events are
//! live only, and the executor says why where it sends them. Nothing
//! secret is ever in an event.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plan::StepKind;
use crate::report::{RunReport, StepReport, StepStatus};

/// One thing that happened in a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Event {
    /// The run began.
    RunStarted {
        /// Its id.
        run_id: String,
        /// Every step id, in plan order.
        #[serde(default)]
        steps: Vec<String>,
        /// `[pipeline] name`.
        pipeline: String,
        /// The pipeline file, as the plan names it.
        pipeline_file: String,
        /// sha256 of the pipeline file.
        pipeline_sha256: String,
        /// sha256 of every plugin, by name.
        plugins: BTreeMap<String, String>,
        /// sha256 of the plan ([`config_digest`]).
        config_sha256: String,
    },
    /// A step was launched (not sent for steps skipped or reused).
    StepStarted {
        /// Step id.
        step: String,
        /// Its kind.
        kind: StepKind,
        /// Round of the run (1, then +1 per retry).
        round: u32,
        /// The step's attempt number.
        attempt: u32,
        /// Digest of each mounted input (and the subject), by path.
        inputs: BTreeMap<String, String>,
    },
    /// A step has a result (ran, came from the cache, or was skipped).
    StepFinished {
        /// Step id.
        step: String,
        /// Round of the run.
        round: u32,
        /// How it ended.
        status: StepStatus,
        /// Digests of its inputs when it started.
        inputs: BTreeMap<String, String>,
        /// Its full report.
        report: Box<StepReport>,
    },
    /// A gate (a check or evaluator with `retry`, or any evaluator) was
    /// judged after a round.
    GateDecision {
        /// Gate id.
        gate: String,
        /// Round judged.
        round: u32,
        /// How it ended (`passed`, `failed`, `error`, `skipped`).
        status: StepStatus,
        /// Why: its score or failure.
        reason: String,
        /// The stage re-run because of it, if any.
        retry: Option<String>,
    },
    /// What a service (or a twin) printed while it ran in a round, from its
    /// start to its stop (its last 64 KiB of each stream). Journaled only:
    /// the live displays and jsonl do not show it.
    ServiceOutput {
        /// The round it ran in.
        round: u32,
        /// ``service `api` `` or ``twin `mail` ``.
        service: String,
        /// How it ended: `stopped`, or how it exited.
        ended: String,
        /// Its stdout.
        stdout: String,
        /// Its stderr.
        stderr: String,
    },
    /// A round ended; `retries` holds what the next round starts from.
    RoundFinished {
        /// The round that ended.
        round: u32,
        /// Stages to re-run: attempt number and feedback lines for each.
        retries: BTreeMap<String, Retrying>,
    },
    /// The run ended.
    RunFinished {
        /// `passed` or `failed`.
        status: String,
        /// Whether retries ran out.
        escalated: bool,
        /// sha256 of the `report.json` the run wrote: `cleanroom report`
        /// renders it only if it is still what the run wrote.
        #[serde(default)]
        report_sha256: Option<String>,
        /// The whole report, for live sinks; never journaled (the run
        /// directory has it as `report.json`).
        #[serde(skip)]
        report: Option<Box<RunReport>>,
    },
    /// An approval gate's needs passed and no decision holds for their
    /// results: the run asks for one (once per set of results; its `at` is
    /// when the gate's `timeout` starts).
    ApprovalRequested {
        /// `[approval.NAME]`.
        approval: String,
        /// The steps decided on.
        needs: Vec<String>,
        /// Who may decide (empty: anyone).
        approvers: Vec<String>,
        /// Whether a decision must give a reason.
        reason_required: bool,
        /// The gate's `timeout` as written, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout: Option<String>,
        /// When it fails closed (RFC 3339 UTC), if it has a timeout.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline: Option<String>,
        /// When it was asked for (RFC 3339 UTC).
        at: String,
        /// The needed steps' results, by step id.
        artifacts: BTreeMap<String, crate::report::decisions::Artifact>,
    },
    /// A person decided: an approval, an override or a verdict, appended by
    /// `cleanroom approve`/`reject`/`override`/`verdict`, possibly long
    /// after the run stopped.
    HumanDecision(crate::report::decisions::Decision),
    /// The run stopped to wait for approvals; it stays resumable
    /// (`run --resume` after a decision).
    RunAwaiting {
        /// The approvals waited for.
        waiting: Vec<String>,
        /// sha256 of the `report.json` written when it stopped.
        report_sha256: String,
        /// The whole report, for live sinks; never journaled.
        #[serde(skip)]
        report: Option<Box<RunReport>>,
    },
    /// Ctrl-C stopped the run; it stays resumable.
    RunInterrupted {
        /// sha256 of the `report.json` written when it stopped.
        report_sha256: String,
        /// The whole report, for live sinks; never journaled.
        #[serde(skip)]
        report: Option<Box<RunReport>>,
    },
}

/// What a service printed between its start and its stop, as a backend
/// hands it to the executor when a round ends (see [`Event::ServiceOutput`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLog {
    /// ``service `api` `` or ``twin `mail` ``.
    pub service: String,
    /// How it ended.
    pub ended: String,
    /// Its stdout (the last 64 KiB).
    pub stdout: String,
    /// Its stderr (the last 64 KiB).
    pub stderr: String,
}

/// A stage about to be re-run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retrying {
    /// Its next attempt number.
    pub attempt: u32,
    /// The one-line feedback it gets.
    pub feedback: Vec<String>,
    /// An upper bound on the bits of holdout-dependent information in
    /// `feedback` (see `docs/security.md`).
    #[serde(default)]
    pub feedback_bits: f64,
    /// For humans only, never sent to the stage: which lines were withheld
    /// because they quoted a holdout file, naming the file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withheld: Vec<String>,
}

/// Hears a run's [`Event`]s as they happen. Called on the scheduler's
/// thread, in order; keep it quick (write a line, move a progress bar).
/// An observer cannot change what the run does.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// Called once per event.
    fn event(&self, event: &Event);
}

/// A past run as its journal tells it: every line verified under the
/// runner's key, and the report it wrote if that is still the one its
/// journal names.
#[derive(Debug, Clone)]
pub struct RecordedRun {
    /// The run id (its directory in `.cleanroom/runs/`).
    pub run_id: String,
    /// Every event of its journal, in order.
    pub events: Vec<Event>,
    /// Its latest report, if it wrote one.
    pub report: Option<crate::report::RunReport>,
}
