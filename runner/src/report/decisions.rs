//! Human decisions as a run's record holds them: approvals, overrides and
//! verdicts ([`Decision`]), the results they name ([`Artifact`]), and where
//! each approval gate stands ([`ApprovalReport`]). Plain data, like the rest
//! of the report; [`crate::governance`] makes and checks decisions, and
//! [`apply`] shows them in a report read back from a run's journal.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::report::events::Event;
use crate::report::{RunReport, RunStatus, StepStatus};

/// What a human decided about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecisionKind {
    /// An `[approval.NAME]` gate: `target` is NAME; `accepted` is approve.
    Approval,
    /// A failed gate accepted anyway: `target` is the step id; always
    /// `accepted`.
    Override,
    /// A judgement of a finished run's result, independent of the gates:
    /// `target` is the run id.
    Verdict,
}

impl DecisionKind {
    /// `approval`, `override`, `verdict`.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Approval => "approval",
            DecisionKind::Override => "override",
            DecisionKind::Verdict => "verdict",
        }
    }
}

/// One step's result as a decision saw it: a decision holds only while the
/// step's result is this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// How the step ended.
    pub status: StepStatus,
    /// The round it ended in.
    pub round: u32,
    /// sha256 (hex) over the digests of every input the step read
    /// ([`inputs_digest`]): what it judged or built from.
    pub inputs_sha256: String,
}

/// A human decision, as the journal records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// What was decided about.
    pub kind: DecisionKind,
    /// The approval's name, the overridden step's id, or the run id.
    pub target: String,
    /// Approve / override / accept (`true`), or reject (`false`).
    pub accepted: bool,
    /// Who decided, as they named themselves (`--as`).
    pub by: String,
    /// Why, in their words (may be empty where the gate allows it).
    pub reason: String,
    /// When, RFC 3339 UTC (`2026-11-27T21:30:00.000Z`).
    pub at: String,
    /// The operating-system account that recorded it.
    pub user: String,
    /// The results decided on, by step id.
    #[serde(default)]
    pub artifacts: BTreeMap<String, Artifact>,
    /// Verdicts: sha256 of the `report.json` judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_sha256: Option<String>,
}

impl Decision {
    /// `approved`, `rejected`, `overridden`, `accepted`, `rejected`: the
    /// word a report shows.
    pub fn word(&self) -> &'static str {
        match (self.kind, self.accepted) {
            (DecisionKind::Approval, true) => "approved",
            (DecisionKind::Override, _) => "overridden",
            (DecisionKind::Verdict, true) => "accepted",
            (_, false) => "rejected",
        }
    }
}

/// Where an approval gate stands in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalStatus {
    /// Its needs passed; no decision on these results yet.
    Awaiting,
    /// A permitted person approved these results.
    Approved,
    /// A permitted person rejected them: the run fails.
    Rejected,
    /// Nobody decided before its `timeout`: it fails closed.
    Expired,
    /// A step it needs did not pass, so nobody was asked.
    Skipped,
}

impl ApprovalStatus {
    /// The word shown in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Awaiting => "awaiting",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Rejected => "rejected",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Skipped => "skipped",
        }
    }
}

/// An approval gate in a run's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalReport {
    /// `[approval.NAME]`.
    pub name: String,
    /// The steps whose results it decides on.
    pub needs: Vec<String>,
    /// Who may decide (empty: anyone).
    pub approvers: Vec<String>,
    /// Where it stands.
    pub status: ApprovalStatus,
    /// When the run first asked for it (RFC 3339 UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<String>,
    /// When it fails closed if still undecided (RFC 3339 UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// The decision that holds, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Why it is skipped, expired, or asked again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// sha256 (hex) of a step's input digests (path → digest), as an
/// [`Artifact`] records them.
pub fn inputs_digest(inputs: &BTreeMap<String, String>) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for (path, digest) in inputs {
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update(digest.as_bytes());
        hasher.update([0]);
    }
    crate::plugin::hex(&hasher.finalize())
}

/// Each step's latest journaled result in `events`, as decisions name it.
pub fn latest_artifacts(events: &[Event]) -> BTreeMap<String, Artifact> {
    let mut latest = BTreeMap::new();
    for event in events {
        if let Event::StepFinished { step, round, status, inputs, .. } = event {
            latest.insert(
                step.clone(),
                Artifact { status: *status, round: *round, inputs_sha256: inputs_digest(inputs) },
            );
        }
    }
    latest
}

/// Applies the decisions a run's `events` hold to the `report` it wrote:
/// lists them, and shows each failed gate a person overrode (for the very
/// result they saw) as `overridden`, with who and why; a run whose every
/// step then passed or was overridden is `overridden`. What `cleanroom
/// report` renders, so an override made after the run shows in every format.
pub fn apply(report: &mut RunReport, events: &[Event]) {
    let latest = latest_artifacts(events);
    let decisions: Vec<Decision> = events
        .iter()
        .filter_map(|e| match e {
            Event::HumanDecision(d) => Some(d.clone()),
            _ => None,
        })
        .collect();
    for decision in decisions.iter().filter(|d| d.kind == DecisionKind::Override) {
        let Some(step) = report.steps.iter_mut().find(|s| s.id == decision.target) else { continue };
        let seen = latest.get(&decision.target);
        if step.status == StepStatus::Failed && seen.is_some() && decision.artifacts.get(&decision.target) == seen {
            step.status = StepStatus::Overridden;
            step.note = Some(format!("failure accepted by {} on {}: {}", decision.by, decision.at, decision.reason));
        }
    }
    let refused =
        report.approvals.iter().any(|a| matches!(a.status, ApprovalStatus::Rejected | ApprovalStatus::Expired));
    if report.status == RunStatus::Failed
        && !refused
        && report.steps.iter().all(|s| s.status.satisfied())
        && report.steps.iter().any(|s| s.status == StepStatus::Overridden)
    {
        report.status = RunStatus::Overridden;
    }
    report.decisions = decisions;
}
