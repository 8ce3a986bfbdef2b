//! `[approval.NAME]` gates, planned: which steps' results a person decides
//! on, who may decide, whether they must say why, and how long the run
//! waits. The executor decides them with [`crate::governance::approvals`].
//!
//! An approval comes after the steps it needs and before nothing: no step
//! may `need` an approval (the run stops at it; what happens after an
//! approval, such as a merge, happens outside the run, on its exit code).

use std::collections::BTreeSet;

use serde::Serialize;

use crate::diag::{suggest, Code, Diagnostic, Diagnostics, Location};
use crate::manifest::{Manifest, WaitSpec};

/// One approval gate, ready for the executor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalGate {
    /// `[approval.NAME]`.
    pub name: String,
    /// The steps whose results are decided on, as written.
    pub needs: Vec<String>,
    /// Who may decide (empty: anyone).
    pub approvers: Vec<String>,
    /// Whether a decision without a reason is refused.
    pub reason_required: bool,
    /// How long the run waits once it asks, if limited.
    pub timeout: Option<WaitSpec>,
}

/// The approval gates of `manifest`, checked against the step ids it
/// declares.
pub fn resolve(
    manifest: &Manifest,
    steps: &BTreeSet<&str>,
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> Vec<ApprovalGate> {
    let mut gates = Vec::new();
    for (name, table) in &manifest.approval {
        let id = name.get_ref().0.clone();
        let mut bad = |span: std::ops::Range<usize>, message: String, hint: String| {
            diags.push(Diagnostic::new(Code::CR036, message).at(here(span)).hint(hint));
        };
        if steps.contains(id.as_str()) {
            bad(
                name.span(),
                format!("approval `{id}` has the name of a step"),
                "approval names and step ids share one namespace; rename one".into(),
            );
        }
        if table.needs.is_empty() {
            bad(
                name.span(),
                format!("approval `{id}` needs no step"),
                "add `needs = [\"STEP\"]`: the steps whose results a person approves".into(),
            );
        }
        for need in &table.needs {
            let wanted = need.get_ref().as_str();
            if !steps.contains(wanted) {
                let hint = match suggest(wanted, steps.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!("steps in this pipeline: {}", steps.iter().copied().collect::<Vec<_>>().join(", ")),
                };
                bad(need.span(), format!("approval `{id}` needs `{wanted}`, which is not a step"), hint);
            }
        }
        for approver in &table.approvers {
            let who = approver.get_ref();
            if who.trim().is_empty() || who.chars().any(char::is_control) || who.len() > 100 {
                bad(
                    approver.span(),
                    format!("approval `{id}` has an approver name that is empty, too long or has control characters"),
                    "write names as people give them with `--as` (e.g. \"alice\")".into(),
                );
            }
        }
        let reason_required = match table.reason.as_ref().map(|r| (r.get_ref().as_str(), r.span())) {
            None | Some(("required", _)) => true,
            Some(("optional", _)) => false,
            Some((other, span)) => {
                bad(
                    span,
                    format!("approval `{id}` has `reason = \"{other}\"`"),
                    "write `reason = \"required\"` (a decision must say why; the default) or `\"optional\"`".into(),
                );
                true
            }
        };
        gates.push(ApprovalGate {
            name: id,
            needs: table.needs.iter().map(|n| n.get_ref().clone()).collect(),
            approvers: table.approvers.iter().map(|a| a.get_ref().clone()).collect(),
            reason_required,
            timeout: table.timeout,
        });
    }
    gates
}

/// When an evaluator may merge on its own word (`[pipeline]`
/// `auto_merge_max_false_pass`, `auto_merge_max_override_rate`,
/// `auto_merge_min_decisions`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Thresholds {
    /// The false-pass rate must be below this (default 0.05).
    pub max_false_pass: f64,
    /// The override rate must be below this (default 0.10).
    pub max_override_rate: f64,
    /// A rate over fewer decisions than this is not yet known (default 10).
    pub min_decisions: u32,
}

/// `[pipeline] auto_merge_*`, checked: each rate in 0..=1, at least one decision.
pub fn thresholds(
    manifest: &Manifest,
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> Thresholds {
    let mut thresholds = Thresholds::default();
    let pipeline = &manifest.pipeline;
    for (value, slot, key) in [
        (&pipeline.auto_merge_max_false_pass, &mut thresholds.max_false_pass, "auto_merge_max_false_pass"),
        (&pipeline.auto_merge_max_override_rate, &mut thresholds.max_override_rate, "auto_merge_max_override_rate"),
    ] {
        if let Some(value) = value {
            let v = *value.get_ref();
            if (0.0..=1.0).contains(&v) {
                *slot = v;
            } else {
                diags.push(
                    Diagnostic::new(Code::CR036, format!("`{key} = {v}` is not a share between 0 and 1"))
                        .at(here(value.span()))
                        .hint("write a share, e.g. 0.05 for 5%"),
                );
            }
        }
    }
    if let Some(min) = &pipeline.auto_merge_min_decisions {
        if *min.get_ref() == 0 {
            diags.push(
                Diagnostic::new(Code::CR036, "`auto_merge_min_decisions = 0` would call a rate known with no decision")
                    .at(here(min.span()))
                    .hint("write at least 1 (the default is 10)"),
            );
        } else {
            thresholds.min_decisions = *min.get_ref();
        }
    }
    thresholds
}
