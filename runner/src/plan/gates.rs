//! Gates: how checks and evaluators judge, and what happens when they fail.
//!
//! A *gate* is a check or evaluator. [`Retry`] says which stage to re-run,
//! with one-line feedback, when the gate fails. [`Evaluation`] holds an
//! evaluator's k-of-n settings: each scenario runs `repeat` times, passes
//! with at least `require` passing runs, and the evaluator passes when the
//! share of passing scenarios (its *satisfaction*) is at least `threshold`.

use std::path::Path;

use serde::Serialize;

use crate::diag::{Code, Diagnostic, Diagnostics, Location};
pub use crate::plan::subjects::Subject;
use crate::plan::{subjects, Declared, StepKind};

/// Attempts of a retried stage when the gate sets no `max_iterations`.
pub const DEFAULT_MAX_ITERATIONS: u32 = 3;

/// Where a failing gate sends work back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Retry {
    /// The stage re-run with feedback (always upstream of the gate).
    pub stage: String,
    /// `max_iterations` as written on the gate (attempts of the stage at
    /// most, the first included); `None` when not written. The stage's one
    /// budget is [`super::Step::attempts`].
    pub max_iterations: Option<u32>,
    /// `stop_on_plateau`: rounds without a new best
    /// satisfaction after which the loop stops instead of retrying.
    pub stop_on_plateau: Option<u32>,
}

/// An evaluator's k-of-n settings and its subject.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Evaluation {
    /// Runs per scenario, each in a fresh instance.
    pub repeat: u32,
    /// Passing runs a scenario needs.
    pub require: u32,
    /// Share of scenarios that must pass (0.0 to 1.0).
    pub threshold: f64,
    /// The program under evaluation, if any.
    pub subject: Option<Subject>,
    /// The service its scenarios send requests to, if any.
    pub service: Option<crate::plan::services::Service>,
}

/// The `[subject.*]` and `[service.*]` tables, resolved once, by id
/// (`None` for a table with errors, already reported).
pub(crate) type Programs<'a> = (
    &'a std::collections::BTreeMap<String, Option<Subject>>,
    &'a std::collections::BTreeMap<String, Option<crate::plan::services::Service>>,
);

/// Sets every step's [`super::Step::attempts`]: for a stage retried by
/// gates, the largest `max_iterations` written on any of them, or
/// [`DEFAULT_MAX_ITERATIONS`] when none writes one; 1 for a stage no gate
/// retries and for every other step; at most `cap` when given. One stage
/// has one budget, so whichever of its gates fails, the run agrees on
/// whether it retries (`--fail-fast` included).
pub fn resolve_budgets(steps: &mut [super::Step], cap: Option<u32>) {
    // Stage id -> the largest budget written, if any gate writes one.
    let mut budgets: std::collections::BTreeMap<String, Option<u32>> = std::collections::BTreeMap::new();
    for retry in steps.iter().filter_map(|s| s.retry.as_ref()) {
        let budget = budgets.entry(retry.stage.clone()).or_insert(None);
        *budget = (*budget).max(retry.max_iterations);
    }
    for step in steps.iter_mut() {
        let budget = match budgets.get(&step.id) {
            Some(written) if step.kind == StepKind::Stage => written.unwrap_or(DEFAULT_MAX_ITERATIONS),
            _ => 1,
        };
        step.attempts = cap.map_or(budget, |cap| budget.min(cap.max(1)));
    }
}

/// Reads `retry` and `max_iterations` of a gate.
pub(crate) fn resolve_retry(
    d: &Declared,
    declared: &[Declared],
    ancestry: (&super::dag::Ancestry, usize),
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> Option<Retry> {
    let id = d.id.get_ref();
    let Some(stage) = &d.table.retry else {
        let without = [
            ("max_iterations", d.table.max_iterations.as_ref()),
            ("stop_on_plateau", d.table.stop_on_plateau.as_ref()),
        ];
        for (key, value) in without {
            let Some(value) = value else { continue };
            diags.push(
                Diagnostic::new(Code::CR020, format!("step `{id}` sets `{key}` without `retry`"))
                    .at(here(value.span()))
                    .hint(format!("add `retry = \"<stage id>\"`, or remove `{key}`")),
            );
        }
        return None;
    };
    let at = here(stage.span());
    let refuse = |message: String, hint: &str| Diagnostic::new(Code::CR020, message).at(at.clone()).hint(hint);
    if d.kind == StepKind::Stage {
        diags.push(refuse(
            format!("stage `{id}` sets `retry`, but only checks and evaluators are gates"),
            "move `retry` to the check or evaluator that judges this stage",
        ));
        return None;
    }
    let name = stage.get_ref();
    let Some(target) = declared.iter().position(|s| s.id.get_ref().0 == *name) else {
        diags.push(refuse(
            format!("step `{id}` retries `{name}`, which is not a step"),
            "name a [stage.*] this step needs",
        ));
        return None;
    };
    if declared[target].kind != StepKind::Stage {
        diags.push(refuse(
            format!("step `{id}` retries `{name}`, which is {}, not a stage", declared[target].kind.with_article()),
            "only stages write code; retry the stage whose output this step judges",
        ));
        return None;
    }
    if !ancestry.0.has(ancestry.1, target) {
        diags.push(refuse(
            format!("step `{id}` retries `{name}`, but does not need it, so a new attempt could not change what `{id}` sees"),
            &format!("add `{name}` (or a step that needs it) to the `needs` of `{id}`"),
        ));
        return None;
    }
    // Both count something that must happen at least once.
    let positive = |key: &str, value: Option<&toml::Spanned<u32>>, hint: &str, diags: &mut Diagnostics| match value {
        Some(v) if *v.get_ref() == 0 => {
            diags.push(
                Diagnostic::new(Code::CR020, format!("step `{id}` sets `{key} = 0`")).at(here(v.span())).hint(hint),
            );
            None
        }
        Some(v) => Some(*v.get_ref()),
        None => None,
    };
    let max_iterations = positive(
        "max_iterations",
        d.table.max_iterations.as_ref(),
        "it counts attempts including the first: use 1 for no retries",
        diags,
    );
    let stop_on_plateau = positive(
        "stop_on_plateau",
        d.table.stop_on_plateau.as_ref(),
        "it counts rounds without a better score: use 1 or more, or remove it",
        diags,
    );
    Some(Retry { stage: name.clone(), max_iterations, stop_on_plateau })
}

/// Reads an evaluator's `repeat`, `require`, `threshold` and subject keys,
/// refusing them on other kinds.
pub(crate) fn resolve_evaluation(
    d: &Declared,
    declared: Programs<'_>,
    workspace: &Path,
    upstream_writes: &[String],
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> Option<Evaluation> {
    let id = d.id.get_ref();
    let t = d.table;
    // Scoring keys on other steps are refused by `keys`. A native evaluator
    // is judged by its exit status alone: no scenarios, no subject.
    if d.kind != StepKind::Evaluator || t.run.is_some() {
        return None;
    }
    let invalid = |span: std::ops::Range<usize>, message: String, hint: &str| {
        Diagnostic::new(Code::CR021, format!("evaluator `{id}`: {message}")).at(here(span)).hint(hint)
    };
    let repeat = t.repeat.as_ref().map_or(1, |r| *r.get_ref());
    if let Some(r) = t.repeat.as_ref().filter(|r| *r.get_ref() == 0) {
        diags.push(invalid(r.span(), "`repeat` is 0".into(), "run each scenario at least once"));
    }
    let require = t.require.as_ref().map_or(repeat, |r| *r.get_ref());
    if let Some(r) = t.require.as_ref().filter(|r| *r.get_ref() == 0 || *r.get_ref() > repeat) {
        diags.push(invalid(
            r.span(),
            format!("`require = {}` must be between 1 and `repeat` ({repeat})", r.get_ref()),
            "a scenario passes when at least `require` of its `repeat` runs pass",
        ));
    }
    let threshold = t.threshold.as_ref().map_or(1.0, |r| *r.get_ref());
    if let Some(r) = t.threshold.as_ref().filter(|r| !(0.0..=1.0).contains(r.get_ref())) {
        diags.push(invalid(
            r.span(),
            format!("`threshold = {}` is outside 0.0 to 1.0", r.get_ref()),
            "it is the share of scenarios that must pass, e.g. 0.9",
        ));
    }
    let step_timeout = t.timeout.map_or(crate::plan::grant::DEFAULT_TIMEOUT, |d| d.0);
    let subject = match &t.subject {
        None => {
            if let Some(first) = t.subject_read.first() {
                diags.push(invalid(
                    first.span(),
                    "`subject_read` without `subject`".into(),
                    "add `subject = \"<path of a component>\"`",
                ));
            }
            None
        }
        Some(raw) => subjects::for_evaluator(
            id.0.as_str(),
            raw,
            subjects::PathKeys { read: &t.subject_read, timeout: t.subject_timeout, memory: t.memory, step_timeout },
            declared.0,
            (workspace, upstream_writes),
            here,
            diags,
        ),
    };
    let service = t.service.as_ref().and_then(|raw| {
        crate::plan::services::for_evaluator(id.0.as_str(), raw, declared.1, upstream_writes, here, diags)
    });
    Some(Evaluation { repeat, require, threshold, subject, service })
}

/// What `--dry-run` says of a gate: the stage it retries (with that
/// stage's one budget) and an evaluator's k-of-n settings and subject.
pub fn describe(plan: &super::Plan, step: &super::Step) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(retry) = &step.retry {
        let budget = plan.graph.index(&retry.stage).map_or(1, |s| plan.steps[s].attempts);
        let plateau = retry
            .stop_on_plateau
            .map_or(String::new(), |n| format!("; stop when its score has not improved for {n} rounds"));
        lines.push(format!("on failure: retry `{}` (at most {budget} attempts{plateau})", retry.stage));
    }
    if let Some(e) = &step.evaluation {
        let subject = e.subject.as_ref().map_or(String::new(), |s| format!(" on {}", s.describe()));
        lines.push(format!(
            "evaluates{subject}: each scenario {} times, {} must pass; threshold {:.2}",
            e.repeat, e.require, e.threshold
        ));
        if let Some(service) = &e.service {
            lines.push(format!("service: {}", service.describe()));
        }
    }
    lines
}
