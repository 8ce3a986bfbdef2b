//! Deciding a run's approval gates from what its journal holds.
//!
//! A gate whose needs all passed (or were overridden) asks for a decision on
//! exactly their results ([`Artifact`]s). A decision holds only for the
//! results it names: if a resumed run's needed steps produced other ones,
//! the gate asks again, and says whose decision no longer applies. A gate
//! with a `timeout` fails closed once that much time has passed since it
//! first asked for these results.

use std::collections::BTreeMap;

use super::{time, ApprovalReport, ApprovalStatus, Artifact, Decision, DecisionKind};
use crate::plan::approvals::ApprovalGate;
use crate::report::events::Event;

/// What judging the gates found: each gate's report, and the requests to
/// journal (gates asking for the first time for these results).
#[derive(Debug, Default)]
pub struct Judged {
    /// One per gate, in plan order.
    pub reports: Vec<ApprovalReport>,
    /// `approval_requested` events to append.
    pub requests: Vec<Event>,
}

impl Judged {
    /// The gates still waiting for a person.
    pub fn waiting(&self) -> Vec<String> {
        self.reports.iter().filter(|r| r.status == ApprovalStatus::Awaiting).map(|r| r.name.clone()).collect()
    }

    /// Whether a gate was rejected or expired: the run fails.
    pub fn refused(&self) -> bool {
        self.reports.iter().any(|r| matches!(r.status, ApprovalStatus::Rejected | ApprovalStatus::Expired))
    }
}

/// Judges `gates` against `results` (each step's latest result, by id) and
/// the run's `history` (its journal so far), at `now_ms`.
pub fn judge(gates: &[ApprovalGate], results: &BTreeMap<String, Artifact>, history: &[Event], now_ms: u64) -> Judged {
    let mut judged = Judged::default();
    for gate in gates {
        let mut report = ApprovalReport {
            name: gate.name.clone(),
            needs: gate.needs.clone(),
            approvers: gate.approvers.clone(),
            status: ApprovalStatus::Skipped,
            requested_at: None,
            deadline: None,
            decision: None,
            note: None,
        };
        let blocker = gate.needs.iter().find(|need| !results.get(*need).is_some_and(|a| a.status.satisfied()));
        if let Some(need) = blocker {
            let what = results.get(need).map_or("has no result", |a| match a.status {
                crate::report::StepStatus::Skipped => "was skipped",
                _ => "did not pass",
            });
            report.note = Some(format!("not asked: it needs `{need}`, which {what}"));
            judged.reports.push(report);
            continue;
        }
        let artifacts: BTreeMap<String, Artifact> =
            gate.needs.iter().filter_map(|n| results.get(n).map(|a| (n.clone(), a.clone()))).collect();
        let decisions: Vec<&Decision> = history
            .iter()
            .filter_map(|e| match e {
                Event::HumanDecision(d) if d.kind == DecisionKind::Approval && d.target == gate.name => Some(d),
                _ => None,
            })
            .collect();
        if let Some(decision) = decisions.iter().rev().find(|d| d.artifacts == artifacts) {
            report.status = if decision.accepted { ApprovalStatus::Approved } else { ApprovalStatus::Rejected };
            report.decision = Some((*decision).clone());
        }
        let request = history.iter().rev().find_map(|e| match e {
            Event::ApprovalRequested { approval, at, artifacts: asked, .. }
                if *approval == gate.name && *asked == artifacts =>
            {
                Some(at.clone())
            }
            _ => None,
        });
        let requested_at = match request {
            Some(at) => at,
            None => {
                let at = time::format_ms(now_ms);
                judged.requests.push(Event::ApprovalRequested {
                    approval: gate.name.clone(),
                    needs: gate.needs.clone(),
                    approvers: gate.approvers.clone(),
                    reason_required: gate.reason_required,
                    timeout: gate.timeout.map(|t| t.to_string()),
                    deadline: gate.timeout.map(|t| deadline_of(now_ms, t.0)),
                    at: at.clone(),
                    artifacts: artifacts.clone(),
                });
                at
            }
        };
        let asked_ms = time::parse_ms(&requested_at).unwrap_or(now_ms);
        report.deadline = gate.timeout.map(|t| deadline_of(asked_ms, t.0));
        report.requested_at = Some(requested_at);
        if report.decision.is_none() {
            if let Some(earlier) = decisions.last() {
                report.note = Some(format!(
                    "{} {} other results on {}; decide again on these",
                    earlier.by,
                    earlier.word(),
                    earlier.at
                ));
            }
            let expired = gate.timeout.is_some_and(|t| now_ms > asked_ms.saturating_add(millis(t.0)));
            if expired {
                report.status = ApprovalStatus::Expired;
                report.note = Some(format!(
                    "nobody decided before {} (`timeout = \"{}\"`): it fails closed",
                    report.deadline.clone().unwrap_or_default(),
                    gate.timeout.map(|t| t.to_string()).unwrap_or_default()
                ));
            } else {
                report.status = ApprovalStatus::Awaiting;
            }
        }
        judged.reports.push(report);
    }
    judged
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// When a gate asked at `asked_ms` with `timeout` fails closed.
pub fn deadline_of(asked_ms: u64, timeout: std::time::Duration) -> String {
    time::format_ms(asked_ms.saturating_add(millis(timeout)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::WaitSpec;
    use crate::report::StepStatus;
    use std::time::Duration;

    fn gate(timeout: Option<u64>) -> ApprovalGate {
        ApprovalGate {
            name: "merge".into(),
            needs: vec!["holdout".into()],
            approvers: vec!["alice".into()],
            reason_required: true,
            timeout: timeout.map(|s| WaitSpec(Duration::from_secs(s))),
        }
    }

    fn results(status: StepStatus, inputs: &str) -> BTreeMap<String, Artifact> {
        BTreeMap::from([("holdout".to_string(), Artifact { status, round: 1, inputs_sha256: inputs.into() })])
    }

    fn decision(accepted: bool, inputs: &str) -> Event {
        Event::HumanDecision(Decision {
            kind: DecisionKind::Approval,
            target: "merge".into(),
            accepted,
            by: "alice".into(),
            reason: "looked".into(),
            at: time::format_ms(5_000),
            user: "u".into(),
            artifacts: results(StepStatus::Passed, inputs),
            report_sha256: None,
        })
    }

    #[test]
    fn a_gate_whose_needs_passed_asks_once_and_waits() {
        let first = judge(&[gate(None)], &results(StepStatus::Passed, "a"), &[], 1_000);
        assert_eq!(first.waiting(), ["merge"]);
        assert_eq!(first.requests.len(), 1);
        let again = judge(&[gate(None)], &results(StepStatus::Passed, "a"), &first.requests, 9_000);
        assert!(again.requests.is_empty(), "asked again for the same results");
        assert_eq!(again.reports[0].requested_at.as_deref(), Some(time::format_ms(1_000).as_str()));
    }

    #[test]
    fn a_decision_holds_only_for_the_results_it_names() {
        let history = vec![decision(true, "a")];
        let same = judge(&[gate(None)], &results(StepStatus::Passed, "a"), &history, 10_000);
        assert_eq!(same.reports[0].status, ApprovalStatus::Approved);
        let other = judge(&[gate(None)], &results(StepStatus::Passed, "b"), &history, 10_000);
        assert_eq!(other.reports[0].status, ApprovalStatus::Awaiting);
        assert!(other.reports[0].note.as_deref().is_some_and(|n| n.contains("other results")));
        let rejected = judge(&[gate(None)], &results(StepStatus::Passed, "a"), &[decision(false, "a")], 10_000);
        assert!(rejected.refused());
    }

    #[test]
    fn an_undecided_gate_fails_closed_after_its_timeout() {
        let asked = judge(&[gate(Some(60))], &results(StepStatus::Passed, "a"), &[], 0);
        let before = judge(&[gate(Some(60))], &results(StepStatus::Passed, "a"), &asked.requests, 59_000);
        assert_eq!(before.reports[0].status, ApprovalStatus::Awaiting);
        let after = judge(&[gate(Some(60))], &results(StepStatus::Passed, "a"), &asked.requests, 61_000);
        assert_eq!(after.reports[0].status, ApprovalStatus::Expired);
        assert!(after.refused());
    }

    #[test]
    fn a_gate_whose_needs_did_not_pass_is_not_asked() {
        let judged = judge(&[gate(None)], &results(StepStatus::Failed, "a"), &[], 0);
        assert_eq!(judged.reports[0].status, ApprovalStatus::Skipped);
        assert!(judged.requests.is_empty());
        let overridden = judge(&[gate(None)], &results(StepStatus::Overridden, "a"), &[], 0);
        assert_eq!(overridden.reports[0].status, ApprovalStatus::Awaiting);
    }
}
