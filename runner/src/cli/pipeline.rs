//! The commands that read a pipeline without running it: `validate`,
//! `graph`, `list`, `lock`, and `init`, which writes one.

use std::path::Path;

use super::{fail, out, Output, EXIT_OK};
use crate::diag::Diagnostics;
use crate::exec;
use crate::plan::Plan;
use crate::sandbox::Sandbox;

pub(super) fn validate(pipeline: &Path, output: Output) -> i32 {
    let plan = match Plan::load(pipeline) {
        Ok(plan) => plan,
        Err(diags) => return fail(&diags, output),
    };
    let loaded = Sandbox::new(crate::sandbox::pool::Capacity::for_jobs(1, plan.max_memory()))
        .map_err(|e| Diagnostics::from(crate::diag::Diagnostic::new(crate::diag::Code::CR011, e.to_string())))
        .and_then(|sandbox| exec::load_plugins(&plan, &sandbox));
    if let Err(diags) = loaded {
        return fail(&diags, output);
    }
    out(&format!(
        "ok: pipeline `{}` is valid ({} steps, {} plugins, workspace {})\n",
        plan.name,
        plan.steps.len(),
        plan.plugins.len(),
        plan.workspace.display()
    ));
    EXIT_OK
}

/// Loads the plan and prints what `show` makes of it.
pub(super) fn with_plan(pipeline: &Path, output: Output, show: impl Fn(&Plan) -> String) -> i32 {
    match Plan::load(pipeline) {
        Ok(plan) => {
            out(&show(&plan));
            EXIT_OK
        }
        Err(diags) => fail(&diags, output),
    }
}

pub(super) fn init(dir: &Path, output: Output) -> i32 {
    match crate::authoring::init::init(dir) {
        Ok(written) => {
            for path in &written {
                out(&format!("wrote {}\n", path.display()));
            }
            let pipeline = dir.join(crate::authoring::init::PIPELINE_FILE);
            out(&format!("next: cleanroom run {}\n", pipeline.display()));
            EXIT_OK
        }
        Err(diags) => fail(&diags, output),
    }
}

pub(super) fn lock(pipeline: &Path, output: Output) -> i32 {
    let written = Plan::load(pipeline).and_then(|plan| crate::lock::write(&plan));
    match written {
        Ok(written) => {
            for change in &written.changed {
                out(&format!("  {change}\n"));
            }
            out(&format!(
                "locked {} plugins in {} ({} changed)\n",
                written.pinned,
                written.path.display(),
                written.changed.len()
            ));
            EXIT_OK
        }
        Err(diags) => fail(&diags, output),
    }
}
