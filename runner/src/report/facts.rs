//! What a report must know about its plan and workspace, taken once when a
//! run ends, so every renderer is a function of the report alone and a past
//! run re-renders exactly as it printed (`cleanroom report`).

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::plan::{Action, Plan};
use crate::report::{PlanFacts, RunReport};

/// The facts of `plan` renderers need.
pub fn of(plan: &Plan) -> PlanFacts {
    let pipeline_file = fs_err::canonicalize(&plan.pipeline_file).unwrap_or_else(|_| plan.pipeline_file.clone());
    let pipeline_text = fs_err::read(&pipeline_file).map(|b| String::from_utf8_lossy(&b).into_owned()).ok();
    // Split once: a pipeline of thousands of steps has thousands of lines.
    let lines: Vec<&str> = pipeline_text.as_deref().map(|t| t.lines().collect()).unwrap_or_default();
    let step_line_digests =
        plan.steps.iter().filter_map(|s| Some((s.id.clone(), line_digest(&lines, s.line)?))).collect();
    let doers = plan
        .steps
        .iter()
        .map(|s| {
            let doer = match &s.action {
                Action::Plugin(name) => format!("the `{name}` plugin"),
                Action::Command { display, .. } => format!("the command `{display}`"),
            };
            (s.id.clone(), doer)
        })
        .collect();
    PlanFacts {
        workspace: plan.workspace.clone(),
        repository_root: repository_root(&plan.workspace),
        pipeline_file,
        step_line_digests,
        doers,
    }
}

/// Fills in `report`'s plan facts and every finding's line digest, reading
/// each file a finding names once.
pub fn record(report: &mut RunReport, plan: &Plan) {
    report.plan = of(plan);
    for step in &mut report.steps {
        step.line = plan.graph.index(&step.id).map_or(0, |i| plan.steps[i].line);
    }
    // Each file a finding names is read and split once.
    let mut texts: BTreeMap<String, Option<String>> = BTreeMap::new();
    for finding in report.steps.iter().flat_map(|s| &s.findings) {
        if let (Some(path), Some(_)) = (&finding.path, finding.line) {
            texts.entry(path.clone()).or_insert_with(|| read_text(&plan.workspace.join(path)));
        }
    }
    let lines: BTreeMap<&str, Vec<&str>> = texts
        .iter()
        .map(|(path, text)| (path.as_str(), text.as_deref().map(|t| t.lines().collect()).unwrap_or_default()))
        .collect();
    for finding in report.steps.iter_mut().flat_map(|s| s.findings.iter_mut()) {
        let (Some(path), Some(line)) = (&finding.path, finding.line) else { continue };
        finding.line_digest = lines.get(path.as_str()).and_then(|lines| line_digest(lines, line as usize));
    }
}

fn read_text(path: &Path) -> Option<String> {
    // Only regular files: a finding cannot make the report read a FIFO.
    let meta = fs_err::symlink_metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    fs_err::read(path).ok().map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// sha256 (hex) of line `line` (1-based) of `lines`, whitespace collapsed.
fn line_digest(lines: &[&str], line: usize) -> Option<String> {
    let content = lines.get(line.checked_sub(1)?)?;
    let collapsed = content.split_whitespace().collect::<Vec<_>>().join(" ");
    Some(crate::plugin::hex(&Sha256::digest(collapsed.as_bytes())))
}

/// The nearest directory at or above `workspace` that holds `.git`, else
/// the workspace itself.
fn repository_root(workspace: &Path) -> std::path::PathBuf {
    workspace.ancestors().find(|dir| dir.join(".git").exists()).unwrap_or(workspace).to_path_buf()
}
