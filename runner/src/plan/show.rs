//! Showing a plan without running it: `list`, `run --dry-run` and `graph`
//! (Graphviz DOT and Mermaid).
//!
//! All four read only the [`Plan`], so what they show is exactly what `run`
//! would do: the resolved order, mounts, limits and pins, after validation.

use std::fmt::Write;

use crate::plan::{Action, Plan, Step, StepKind};

/// One line per step: id, kind, what it runs, what it needs.
pub fn list(plan: &Plan) -> String {
    let width = plan.steps.iter().map(|s| s.id.len()).max().unwrap_or(0);
    let mut out = String::new();
    for step in &plan.steps {
        let needs = if step.needs.is_empty() { String::new() } else { format!("  needs {}", step.needs.join(", ")) };
        let _ = writeln!(out, "{:<width$}  {:<9}  {}{needs}", step.id, step.kind.as_str(), action(step));
    }
    out
}

/// Everything `run` would do, step by step, in the order it would start
/// them: grants, limits, gates, cache use, and the plugins with their pins.
pub fn dry_run(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "pipeline `{}` (workspace {})", plan.name, plan.workspace.display());
    if let Some(max) = plan.max_duration {
        let _ = writeln!(out, "max duration: {max} (no step starts after it)");
    }
    if let Some(remote) = &plan.remote {
        let _ = writeln!(
            out,
            "remote: {} (instance {:?}), cache {}, {}",
            remote.endpoint,
            remote.instance,
            remote.cache.as_str(),
            if remote.execute { "steps run on its workers" } else { "steps run on this machine" }
        );
    }
    let _ = writeln!(out, "plugins:");
    for (name, info) in &plan.plugins {
        let _ = match &info.origin {
            Some(origin) => writeln!(
                out,
                "  {name}: {} (manifest {}, cached at {}) sha256:{}",
                origin.reference,
                origin.manifest.as_deref().unwrap_or("-"),
                info.path.display(),
                info.sha256
            ),
            None => writeln!(out, "  {name}: {} sha256:{}", info.path.display(), info.sha256),
        };
    }
    let _ = writeln!(out, "steps, in the order they may start:");
    for (i, step) in plan.steps.iter().enumerate() {
        let _ = writeln!(out, "  {}. {} {} ({})", i + 1, step.kind, step.id, action(step));
        if let Some(why) = &step.excluded {
            let _ = writeln!(out, "       not run: {why}");
        }
        if !step.needs.is_empty() {
            let _ = writeln!(out, "       needs: {}", step.needs.join(", "));
        }
        if plan.remote.as_ref().is_some_and(|r| r.execute) {
            if let Some(why) = super::remote::runs_here(step, &plan.workspace) {
                let _ = writeln!(out, "       runs on this machine: {why}");
            }
        }
        // Each capability says what it grants, in the order a reader checks them.
        let lines = super::mounts::describe(&step.grant)
            .into_iter()
            .chain(super::command::describe(&step.grant))
            .chain(super::network::describe(&step.grant))
            .chain(super::secrets::describe(&step.grant))
            .chain([super::limits::describe(step)])
            .chain(super::gates::describe(plan, step));
        for line in lines {
            let _ = writeln!(out, "       {line}");
        }
    }
    let _ = writeln!(out, "dry run: nothing was run");
    out
}

/// The plan as a Graphviz DOT digraph: an edge from each need to the step
/// that needs it, dashed edges from gates back to the stage they retry.
pub fn dot(plan: &Plan) -> String {
    let mut out = format!("digraph {} {{\n  rankdir=LR;\n", quote(&plan.name));
    for step in &plan.steps {
        let shape = match step.kind {
            StepKind::Check => "box",
            StepKind::Stage => "ellipse",
            StepKind::Evaluator => "diamond",
        };
        // `\n` is DOT's line break inside a label.
        let label = format!("{}\\n{} {}", escape(&step.id), step.kind, escape(&action(step)));
        let _ = writeln!(out, "  {} [shape={shape}, label=\"{label}\"];", quote(&step.id));
    }
    for step in &plan.steps {
        for need in &step.needs {
            let _ = writeln!(out, "  {} -> {};", quote(need), quote(&step.id));
        }
        if let Some(retry) = &step.retry {
            let _ = writeln!(out, "  {} -> {} [style=dashed, label=\"retry\"];", quote(&step.id), quote(&retry.stage));
        }
    }
    out.push_str("}\n");
    out
}

/// The plan as a Mermaid flowchart (renders in GitHub Markdown).
pub fn mermaid(plan: &Plan) -> String {
    let mut out = String::from("flowchart LR\n");
    let node = |i: usize| format!("s{i}");
    for (i, step) in plan.steps.iter().enumerate() {
        let label = format!("{}<br/>{} {}", step.id, step.kind, action(step)).replace('"', "#quot;");
        let (open, close) = match step.kind {
            StepKind::Check => ("[\"", "\"]"),
            StepKind::Stage => ("([\"", "\"])"),
            StepKind::Evaluator => ("{\"", "\"}"),
        };
        let _ = writeln!(out, "  {}{open}{label}{close}", node(i));
    }
    for (i, step) in plan.steps.iter().enumerate() {
        for &need in plan.graph.needs(i) {
            let _ = writeln!(out, "  {} --> {}", node(need), node(i));
        }
        if let Some(retry) = &step.retry {
            let _ = writeln!(out, "  {} -. retry .-> {}", node(i), node(plan.graph.index(&retry.stage).unwrap_or(0)));
        }
    }
    out
}

/// `plugin forbid-pattern` or `run rustc --edition ...`.
fn action(step: &Step) -> String {
    match &step.action {
        Action::Plugin(name) => format!("plugin {name}"),
        Action::Command { display, .. } => format!("run {display}"),
    }
}

/// A DOT double-quoted string.
fn quote(text: &str) -> String {
    format!("\"{}\"", escape(text))
}

/// `text` with DOT's string escapes.
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}
