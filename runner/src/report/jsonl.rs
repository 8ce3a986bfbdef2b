//! The event stream: one JSON object per line, written as the run goes
//! (`--format jsonl`), for CI systems and tools that follow a run live.
//!
//! Each line has an `event` field: `run_started`, `step_started`,
//! `step_finished` (with the step's report, exactly as in `--format json`),
//! `round_finished` (the stages sent back and their feedback) and
//! `run_finished` (the whole `--format json` document, also when Ctrl-C
//! stopped the run), or instead `run_awaiting` when approval gates wait
//! (after their `approval_requested` lines). The schema is `schemas/events.schema.json`. Fields are
//! only ever added. Each line is one [`Event`] of the run's one vocabulary;
//! gate decisions are in the `round_finished` that follows them and in the
//! final report, so they have no line of their own.

use serde_json::json;

use crate::report::events::Event;

/// `event` as one line of JSON, with its trailing newline; `None` for the
/// events the stream does not show.
pub fn line(event: &Event) -> Option<String> {
    let value = match event {
        Event::RunStarted { pipeline, run_id, steps, .. } => {
            json!({ "event": "run_started", "pipeline": pipeline, "run_id": run_id, "steps": steps })
        }
        Event::StepStarted { step, kind, round, attempt, .. } => {
            json!({ "event": "step_started", "step": step, "kind": kind, "round": round, "attempt": attempt })
        }
        Event::StepFinished { round, report, .. } => {
            json!({ "event": "step_finished", "round": round, "report": report })
        }
        Event::RoundFinished { round, retries } => {
            let retries: Vec<_> = retries
                .iter()
                .map(|(stage, r)| {
                    json!({ "stage": stage, "attempt": r.attempt, "feedback": r.feedback, "feedback_bits": r.feedback_bits })
                })
                .collect();
            json!({ "event": "round_finished", "round": round, "retries": retries })
        }
        Event::RunFinished { report: Some(report), .. } | Event::RunInterrupted { report: Some(report), .. } => {
            json!({ "event": "run_finished", "report": report })
        }
        Event::GateDecision { gate, round, status, reason, retry } => {
            json!({ "event": "gate_decision", "gate": gate, "round": round, "status": status, "reason": reason, "retry": retry })
        }
        Event::ApprovalRequested { approval, needs, approvers, reason_required, timeout, deadline, at, .. } => {
            json!({ "event": "approval_requested", "approval": approval, "needs": needs, "approvers": approvers,
                    "reason_required": reason_required, "timeout": timeout, "deadline": deadline, "at": at })
        }
        Event::HumanDecision(decision) => json!({ "event": "human_decision", "decision": decision }),
        Event::RunAwaiting { waiting, report: Some(report), .. } => {
            json!({ "event": "run_awaiting", "waiting": waiting, "report": report })
        }
        Event::ServiceOutput { .. }
        | Event::RunFinished { report: None, .. }
        | Event::RunInterrupted { report: None, .. }
        | Event::RunAwaiting { report: None, .. } => return None,
    };
    let mut text = value.to_string();
    text.push('\n');
    Some(text)
}
