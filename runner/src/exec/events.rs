//! What a run tells its observer while it goes: the live side of a run.
//!
//! The final [`RunReport`] is the whole story; an [`Observer`] hears it as it
//! happens, in order, from the scheduler's thread: the run starts, each step
//! starts and finishes, each retry round ends, the run ends. The CLI's
//! progress display and the `--format jsonl` event stream are observers;
//! neither can change what the run does.

use std::collections::BTreeMap;

use crate::journal::Retrying;
use crate::plan::StepKind;
use crate::report::{RunReport, StepReport};

/// One thing that happened during a run.
#[derive(Debug, Clone, Copy)]
pub enum Update<'a> {
    /// The run began; `steps` are the plan's step ids in plan order.
    RunStarted {
        /// `[pipeline] name`.
        pipeline: &'a str,
        /// The run's id (its records are in `.cleanroom/runs/<id>/`).
        run_id: &'a str,
        /// Every step id, in plan order.
        steps: &'a [String],
    },
    /// A step was launched (not sent for steps skipped or reused).
    StepStarted {
        /// The step id.
        step: &'a str,
        /// Its kind.
        kind: StepKind,
        /// The round of the run (1, then +1 per retry round).
        round: u32,
        /// A stage's attempt; the round for other steps.
        attempt: u32,
    },
    /// A step has a result (ran, came from the cache, or was skipped).
    StepFinished {
        /// The round it belongs to.
        round: u32,
        /// Its report.
        report: &'a StepReport,
    },
    /// A round ended with retries: these stages run again with this feedback.
    RoundFinished {
        /// The round that ended.
        round: u32,
        /// Stage id -> its next attempt and feedback lines.
        retries: &'a BTreeMap<String, Retrying>,
    },
    /// The run is over (also when it was interrupted).
    RunFinished {
        /// What the run did.
        report: &'a RunReport,
    },
}

/// Hears a run's [`Update`]s. Called on the scheduler's thread, in order;
/// keep it quick (write a line, move a progress bar).
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// Called once per update.
    fn update(&self, update: Update<'_>);
}
