//! The barrier: grants that may never cross between code writers and judges.
//!
//! `[barrier] holdout` paths are never readable or writable by a stage (its
//! mounts, or its tools), by an evaluator's subject (its component or
//! program, its `read` or `subject_read`, its tools), or by a check whose
//! findings become retry feedback. `[barrier] private` paths are never
//! readable by an evaluator, nor by its subject, which runs within the
//! judge's reach. The check
//! works on resolved grants (canonical host paths, symlinks followed), not
//! on TOML text, so `.`, `..` and symlinks cannot hide an overlap.

use std::path::{Path, PathBuf};

use crate::diag::{Code, Diagnostic, Diagnostics, Location};
use crate::manifest::BarrierTable;
use crate::plan::taint::overlaps;
use crate::plan::{mounts, Step, StepKind};

/// A resolved barrier path.
struct Fence {
    rel: String,
    host: PathBuf,
}

/// Refuses every grant in `steps` that crosses `table`; returns the
/// canonical holdout paths.
pub fn check(
    table: &BarrierTable,
    workspace: &Path,
    steps: &[Step],
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> Vec<PathBuf> {
    let resolve = |list: &[toml::Spanned<String>], diags: &mut Diagnostics| -> Vec<Fence> {
        list.iter()
            .filter_map(|raw| match mounts::resolve(workspace, raw.get_ref(), false) {
                Ok(mount) => Some(Fence { rel: mount.rel, host: mount.host }),
                // A path that does not exist yet (built later) is fenced by name.
                Err(e) if e.code == Code::CR008 => {
                    let mount = mounts::not_yet_created(workspace, raw.get_ref());
                    Some(Fence { rel: mount.rel, host: mount.host })
                }
                Err(e) => {
                    diags.push(
                        Diagnostic::new(e.code, format!("[barrier]: {}", e.message)).at(here(raw.span())).hint(e.hint),
                    );
                    None
                }
            })
            .collect()
    };
    let holdout = resolve(&table.holdout, diags);
    let private = resolve(&table.private, diags);

    for step in steps {
        let mut refuse = |fence: &Fence, kind: &str, what: String, hint: &str| {
            diags.push(
                Diagnostic::new(
                    Code::CR019,
                    format!("step `{}`: {what} crosses the barrier: `{}` is {kind}", step.id, fence.rel),
                )
                .hint(hint.to_string()),
            );
        };
        let mounted = step.grant.mounts.iter().map(|m| (format!("mount `{}`", m.rel), &m.host));
        let tools = step.grant.tools().iter().map(|t| (format!("tool path `{}`", t.display()), t));
        let feeds_a_stage = step.kind == StepKind::Check && step.retry.is_some();
        if step.kind == StepKind::Stage || feeds_a_stage {
            for (what, host) in mounted.clone().chain(tools) {
                if let Some(fence) = holdout.iter().find(|f| overlaps(host, &f.host)) {
                    let hint = if feeds_a_stage {
                        "a check whose findings become retry feedback may not read holdout paths; narrow its `read`"
                    } else {
                        "stages may never see holdout scenarios; narrow the stage's `read`/`write` (e.g. `src` instead of `.`)"
                    };
                    refuse(fence, "holdout", what, hint);
                }
            }
        }
        if step.kind == StepKind::Evaluator {
            for (what, host) in mounted {
                if let Some(fence) = private.iter().find(|f| overlaps(host, &f.host)) {
                    refuse(
                        fence,
                        "private",
                        what,
                        "evaluators judge behaviour, not source; remove the private path from `read`",
                    );
                }
            }
        }
        let paths = step.judged_paths().into_iter().map(|(what, m)| (what, m.host.clone()));
        let tools = step
            .judged_tools()
            .into_iter()
            .map(|t| (format!("tool path `{}` of the program under evaluation", t.display()), t.clone()));
        for (what, host) in paths.chain(tools) {
            if let Some(fence) = holdout.iter().find(|f| overlaps(&host, &f.host)) {
                refuse(
                    fence,
                    "holdout",
                    what.clone(),
                    "the program under evaluation must never see the scenarios it is judged by",
                );
            }
            if let Some(fence) = private.iter().find(|f| overlaps(&host, &f.host)) {
                refuse(
                    fence,
                    "private",
                    what,
                    "the program under evaluation runs within the judge's reach: give it what was built (e.g. `build/`), not the private source, or drop the path from `private`",
                );
            }
        }
    }
    holdout.into_iter().map(|fence| fence.host).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_containment_either_way() {
        assert!(overlaps(Path::new("/w"), Path::new("/w/scenarios")));
        assert!(overlaps(Path::new("/w/scenarios/a.toml"), Path::new("/w/scenarios")));
        assert!(!overlaps(Path::new("/w/src"), Path::new("/w/scenarios")));
        assert!(!overlaps(Path::new("/w/scenarios2"), Path::new("/w/scenarios")));
    }
}
