//! The event stream: one JSON object per line, written as the run goes
//! (`--format jsonl`), for CI systems and tools that follow a run live.
//!
//! Each line has an `event` field: `run_started`, `step_started`,
//! `step_finished` (with the step's report, exactly as in `--format json`),
//! `round_finished` (the stages sent back and their feedback) and
//! `run_finished` (the whole `--format json` document). The schema is
//! `schemas/events.schema.json`. Fields are only ever added.

use serde_json::json;

use crate::exec::Update;

/// `update` as one line of JSON, with its trailing newline.
pub fn line(update: Update<'_>) -> String {
    let value = match update {
        Update::RunStarted { pipeline, run_id, steps } => {
            json!({ "event": "run_started", "pipeline": pipeline, "run_id": run_id, "steps": steps })
        }
        Update::StepStarted { step, kind, round, attempt } => {
            json!({ "event": "step_started", "step": step, "kind": kind, "round": round, "attempt": attempt })
        }
        Update::StepFinished { round, report } => {
            json!({ "event": "step_finished", "round": round, "report": report })
        }
        Update::RoundFinished { round, retries } => {
            let retries: Vec<_> = retries
                .iter()
                .map(|(stage, r)| {
                    json!({ "stage": stage, "attempt": r.attempt, "feedback": r.feedback, "feedback_bits": r.feedback_bits })
                })
                .collect();
            json!({ "event": "round_finished", "round": round, "retries": retries })
        }
        Update::RunFinished { report } => json!({ "event": "run_finished", "report": report }),
    };
    let mut text = value.to_string();
    text.push('\n');
    text
}
