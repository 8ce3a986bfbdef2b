//! The commands that read a pipeline without running it: `validate`,
//! `graph`, `list`, `lock`, `init`, which writes one, and `install`, which
//! writes the git hooks that run it.

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
            out(&format!(
                "next: cleanroom run {}   (then `cleanroom install` for a pre-commit hook)\n",
                pipeline.display()
            ));
            EXIT_OK
        }
        Err(diags) => fail(&diags, output),
    }
}

pub(super) fn lock(pipeline: &Path, output: Output) -> i32 {
    // Tags are asked of the registry again: the lock pins what they name now.
    let fetching = crate::plan::Fetching { refresh: true, ..Default::default() };
    let written = Plan::load_with(pipeline, &fetching).and_then(|plan| crate::lock::write(&plan));
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

pub(super) fn install(
    pipeline: &Path,
    hooks: &[crate::git::Hook],
    force: bool,
    uninstall: bool,
    output: Output,
) -> i32 {
    let hooks = if hooks.is_empty() { &[crate::git::Hook::PreCommit][..] } else { hooks };
    if uninstall {
        let dir = pipeline.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        for &hook in hooks {
            match crate::git::uninstall(dir, hook) {
                Ok(Some(path)) => out(&format!("removed {}\n", path.display())),
                Ok(None) => out(&format!("no Cleanroom {} hook to remove\n", hook.name())),
                Err(diags) => return fail(&diags, output),
            }
        }
        return EXIT_OK;
    }
    // The pipeline must be usable before git is told to run it on every commit.
    if let Err(diags) = Plan::load(pipeline) {
        return fail(&diags, output);
    }
    let exe = std::env::current_exe().unwrap_or_else(|_| "cleanroom".into());
    for &hook in hooks {
        match crate::git::install(pipeline, hook, &exe, force) {
            Ok(installed) => {
                out(&format!("installed {} ({})\n", installed.path.display(), hook.name()));
                if let Some(kept) = installed.kept {
                    out(&format!("  the hook that was there runs first, from {}\n", kept.display()));
                }
            }
            Err(diags) => return fail(&diags, output),
        }
    }
    EXIT_OK
}
