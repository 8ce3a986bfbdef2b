//! Recording a person's decision in a run's journal: `cleanroom approve`,
//! `reject`, `override` and `verdict`.
//!
//! Every check happens here, before anything is written: the run is one
//! the runner recorded and its journal verifies; nothing is running in it;
//! the approval is asked for, undecided for these results and not expired;
//! the person is among its approvers; the reason is given where required;
//! an override names a check or evaluator whose latest result failed; a
//! verdict judges a finished run. The decision names the exact results it
//! was made on, so it never carries over to other ones.

use std::path::Path;

use super::{latest_artifacts, time, Decision, DecisionKind};
use crate::diag::{Code, Diagnostic, Location};
use crate::journal::{self, Journal};
use crate::key::Key;
use crate::plan::StepKind;
use crate::report::events::Event;
use crate::report::StepStatus;

/// A decision someone asked to record.
#[derive(Debug, Clone)]
pub struct Request {
    /// What about.
    pub kind: DecisionKind,
    /// The run, or `None` for the latest run the decision applies to.
    pub run: Option<String>,
    /// The approval's name or the step's id (ignored for verdicts).
    pub target: String,
    /// Approve / accept (`true`) or reject (`false`); overrides always accept.
    pub accepted: bool,
    /// `--as`.
    pub by: String,
    /// `--reason`.
    pub reason: String,
}

/// What was recorded, and where.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The run whose journal holds it.
    pub run_id: String,
    /// The decision as journaled.
    pub decision: Decision,
}

/// Checks `request` against its run's journal in `workspace` and appends it.
///
/// # Errors
/// `CR037` saying why the decision cannot be recorded and what to do;
/// `CR031`/`CR022` when the run's journal does not verify or is in use.
pub fn record(workspace: &Path, key: &Key, request: &Request) -> Result<Recorded, Diagnostic> {
    let refuse = |what: String, hint: &str| {
        Diagnostic::new(Code::CR037, what).at(Location::Path(journal::runs_dir(workspace))).hint(hint)
    };
    check_person(request).map_err(|(what, hint)| refuse(what, hint))?;
    let run_id = match &request.run {
        Some(run) => run.clone(),
        None => latest_applicable(workspace, key, request)
            .ok_or_else(|| refuse(no_run_waiting(request), "run the pipeline first"))?,
    };
    let (mut journal, events) = Journal::open_existing(workspace, key, &run_id)?;
    let decision = check(&run_id, &events, request).map_err(|(what, hint)| refuse(what, &hint))?;
    journal.append(&Event::HumanDecision(decision.clone())).map_err(|e| {
        Diagnostic::new(Code::CR022, format!("cannot write the decision into run `{run_id}`'s journal: {e}"))
            .hint("the workspace must be writable for `.cleanroom/`")
    })?;
    Ok(Recorded { run_id, decision })
}

/// `--as` and `--reason`, whatever the run.
fn check_person(request: &Request) -> Result<(), (String, &'static str)> {
    let who = request.by.trim();
    if who.is_empty() || who.len() > 100 || who.chars().any(char::is_control) {
        return Err((
            "`--as` must name who decides: 1 to 100 characters, no control characters".into(),
            "e.g. `--as alice`",
        ));
    }
    if request.reason.len() > 4096 {
        return Err(("`--reason` is longer than 4096 bytes".into(), "say why in a few sentences; link to the review"));
    }
    Ok(())
}

fn no_run_waiting(request: &Request) -> String {
    match request.kind {
        DecisionKind::Approval => format!("no run is waiting for approval `{}`", request.target),
        DecisionKind::Override => format!("no finished run has a failed `{}` to override", request.target),
        DecisionKind::Verdict => "no run has finished yet".into(),
    }
}

/// The latest recorded run of `workspace` that `request` applies to, else
/// the latest recorded run (whose check then says why it does not apply).
fn latest_applicable(workspace: &Path, key: &Key, request: &Request) -> Option<String> {
    let (runs, _) = journal::recorded_runs(workspace, key);
    let applicable = runs.iter().rev().find(|run| check(&run.run_id, &run.events, request).is_ok());
    applicable.or(runs.last()).map(|run| run.run_id.clone())
}

/// The decision `request` makes on run `run_id` (its verified `events`), or
/// why it cannot be made and what to do.
fn check(run_id: &str, events: &[Event], request: &Request) -> Result<Decision, (String, String)> {
    let latest = latest_artifacts(events);
    let mut decision = Decision {
        kind: request.kind,
        target: request.target.clone(),
        accepted: request.accepted,
        by: request.by.trim().to_string(),
        reason: request.reason.trim().to_string(),
        at: time::now(),
        user: super::os_user(),
        artifacts: std::collections::BTreeMap::new(),
        report_sha256: None,
    };
    let needs_reason = |required: bool| -> Result<(), (String, String)> {
        if required && decision.reason.is_empty() {
            return Err((
                format!("a decision on `{}` must say why", request.target),
                "add `--reason \"...\"`: what you checked and why you decided so".into(),
            ));
        }
        Ok(())
    };
    match request.kind {
        DecisionKind::Approval => {
            let asked = events.iter().rev().find_map(|e| match e {
                Event::ApprovalRequested { approval, approvers, reason_required, deadline, artifacts, .. }
                    if *approval == request.target =>
                {
                    Some((approvers, *reason_required, deadline, artifacts))
                }
                _ => None,
            });
            let Some((approvers, reason_required, deadline, artifacts)) = asked else {
                let asked_for: Vec<&str> = events
                    .iter()
                    .filter_map(|e| match e {
                        Event::ApprovalRequested { approval, .. } => Some(approval.as_str()),
                        _ => None,
                    })
                    .collect();
                let hint = if asked_for.is_empty() {
                    "this run asked for no approval; run the pipeline until it stops with exit code 3".to_string()
                } else {
                    format!("it asked for: {}", asked_for.join(", "))
                };
                return Err((format!("run `{run_id}` did not ask for approval `{}`", request.target), hint));
            };
            if journal::finished(events) {
                return Err((
                    format!("run `{run_id}` has finished; its approvals are closed"),
                    "start a new run".into(),
                ));
            }
            let decided = events.iter().any(|e| {
                matches!(e, Event::HumanDecision(d) if d.kind == DecisionKind::Approval
                    && d.target == request.target && d.artifacts == *artifacts)
            });
            if decided {
                return Err((
                    format!("approval `{}` of run `{run_id}` is already decided for these results", request.target),
                    "`cleanroom run --resume` continues the run; a decision is never replaced".into(),
                ));
            }
            if !approvers.is_empty() && !approvers.contains(&decision.by) {
                return Err((
                    format!("`{}` may not decide approval `{}`", decision.by, request.target),
                    format!("its approvers are: {}", approvers.join(", ")),
                ));
            }
            if let Some(deadline) = deadline {
                if time::parse_ms(deadline).is_some_and(|d| time::now_ms() > d) {
                    return Err((
                        format!(
                            "approval `{}` of run `{run_id}` expired at {deadline}; it fails closed",
                            request.target
                        ),
                        "`cleanroom run --resume` records the failure; start a new run to ask again".into(),
                    ));
                }
            }
            needs_reason(reason_required)?;
            decision.artifacts = artifacts.clone();
        }
        DecisionKind::Override => {
            let step = events.iter().rev().find_map(|e| match e {
                Event::StepFinished { step, report, .. } if *step == request.target => Some(report),
                _ => None,
            });
            let Some(report) = step else {
                return Err((
                    format!("run `{run_id}` has no result for step `{}`", request.target),
                    "name a check or evaluator of the run that failed".into(),
                ));
            };
            if report.kind == StepKind::Stage {
                return Err((
                    format!(
                        "`{}` is a stage; only a failed gate (a check or an evaluator) can be overridden",
                        request.target
                    ),
                    "rerun the stage, or override the gate that judged its work".into(),
                ));
            }
            match report.status {
                StepStatus::Failed => {}
                StepStatus::Error => {
                    return Err((
                        format!("`{}` did not give a verdict in run `{run_id}` (it was an error)", request.target),
                        "an error is not a judgement to accept: fix its cause and rerun".into(),
                    ))
                }
                other => {
                    return Err((
                        format!("`{}` did not fail in run `{run_id}` (it is {})", request.target, other.as_str()),
                        "only a failed gate can be overridden".into(),
                    ))
                }
            }
            let artifact = latest.get(&request.target).cloned().ok_or_else(|| {
                (format!("run `{run_id}` has no result for step `{}`", request.target), String::new())
            })?;
            let done = events.iter().any(|e| {
                matches!(e, Event::HumanDecision(d) if d.kind == DecisionKind::Override
                    && d.target == request.target && d.artifacts.get(&request.target) == Some(&artifact))
            });
            if done {
                return Err((
                    format!("`{}` of run `{run_id}` is already overridden", request.target),
                    "`cleanroom run --resume` continues the run".into(),
                ));
            }
            needs_reason(true)?;
            decision.accepted = true;
            decision.artifacts = std::collections::BTreeMap::from([(request.target.clone(), artifact)]);
        }
        DecisionKind::Verdict => {
            let report = events.iter().rev().find_map(|e| match e {
                Event::RunFinished { report_sha256, .. } => Some(report_sha256.clone()),
                _ => None,
            });
            let Some(report_sha256) = report.filter(|_| journal::finished(events)) else {
                return Err((
                    format!("run `{run_id}` has not finished"),
                    "judge a finished run's result; resume this one first".into(),
                ));
            };
            needs_reason(true)?;
            decision.target = run_id.to_string();
            decision.artifacts = latest;
            decision.report_sha256 = report_sha256;
        }
    }
    Ok(decision)
}
