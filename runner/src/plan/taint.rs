//! Taint and the judge's reach: which paths the program under test may have
//! shaped, which steps hold the holdout, and what no stage may write.
//!
//! A path is *tainted* when a stage may write it: whatever lies there may be
//! the program under test, or something derived from it. A step is a
//! *holdout reader* when one of its mounts or tools overlaps a `[barrier]
//! holdout` path. The two must never meet inside one sandbox: a holdout
//! reader may judge the program under test only through the subject
//! mechanism, which runs it in a sandbox of its own without the holdout.
//! And the *judge's definition* (the pipeline file, its lock file, every
//! plugin file and the runner's private directories) is out of every
//! stage's reach, so a stage cannot rewrite what judges it.

use std::path::{Path, PathBuf};

use crate::diag::{Code, Diagnostic, Diagnostics, Location};
use crate::key::STATE_DIR_VAR;
use crate::plan::{Action, Plan, Step, StepKind};

/// Whether one path contains the other (or they are the same).
pub fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Whether `step` may read one of the canonical `holdout` paths, through a
/// mount or a tool path.
pub fn reads_holdout(step: &Step, holdout: &[PathBuf]) -> bool {
    let mounted = step.grant.mounts.iter().map(|m| &m.host);
    mounted.chain(step.grant.tools()).any(|path| holdout.iter().any(|h| overlaps(path, h)))
}

/// Every path a stage may write, with the stage's id: the tainted paths.
pub fn tainted(steps: &[Step]) -> Vec<(PathBuf, String, String)> {
    steps
        .iter()
        .filter(|s| s.kind == StepKind::Stage)
        .flat_map(|s| {
            s.grant.mounts.iter().filter(|m| m.writable).map(|m| (m.host.clone(), m.rel.clone(), s.id.clone()))
        })
        .collect()
}

/// Refuses every holdout reader that may read or execute a tainted path
/// other than through its subject: its mounts, its tools and, for a `run`
/// step, its program.
pub fn check_holdout_readers(steps: &[Step], pipeline_file: &Path, diags: &mut Diagnostics) {
    let tainted = tainted(steps);
    let stage_with_network = steps.iter().find(|s| s.kind == StepKind::Stage && s.grant.network());
    for step in steps.iter().filter(|s| s.reads_holdout) {
        // The host's network is a way around the barrier: the holdout
        // reader sends, a stage with the network fetches it later.
        if step.grant.network() {
            let also = stage_with_network.map_or(String::new(), |s| format!(", and stage `{}` has it too", s.id));
            diags.push(
                Diagnostic::new(
                    Code::CR019,
                    format!("step `{}` can read the holdout and has the host's network (`network = true`){also}: the holdout could leave through it", step.id),
                )
                .at(at_step(step, pipeline_file))
                .hint("remove `network = true` from this step; a judge that needs a service gets it through a plugin's `allow_hosts`"),
            );
        }
        let program = match &step.action {
            Action::Command { program, .. } => Some(("program", program)),
            Action::Plugin(_) => None,
        };
        let paths = step
            .grant
            .mounts
            .iter()
            .map(|m| ("mount", &m.host))
            .chain(step.grant.tools().iter().map(|t| ("tool path", t)))
            .chain(program);
        for (what, path) in paths {
            let Some((_, rel, writer)) = tainted.iter().find(|(t, _, _)| overlaps(path, t)) else { continue };
            let (how, hint) = match step.action {
                Action::Command { .. } => (
                    "a native program that can read the holdout would run or read what a stage wrote",
                    "judge the program through an evaluator plugin's `subject` (its own sandbox, without the holdout), or narrow this step's `read`/`tools` so it sees either the holdout or what stages write, not both",
                ),
                Action::Plugin(_) => (
                    "a step that can read the holdout may see what a stage wrote only through its `subject`",
                    "name the built program as the evaluator's `subject` (and its data in `subject_read`) instead of mounting it",
                ),
            };
            diags.push(
                Diagnostic::new(
                    Code::CR019,
                    format!(
                        "step `{}` can read the holdout, and its {what} `{}` is tainted: stage `{writer}` writes `{rel}`; {how}",
                        step.id,
                        shown(path, &step.grant.mounts),
                    ),
                )
                .at(at_step(step, pipeline_file))
                .hint(hint.to_string()),
            );
        }
    }
}

/// The step's table header in the pipeline file.
fn at_step(step: &Step, pipeline_file: &Path) -> Location {
    Location::File { path: pipeline_file.to_path_buf(), line: step.line, column: 1 }
}

/// A path as the user wrote it when it is a mount, else as a host path.
fn shown(path: &Path, mounts: &[crate::plan::Mount]) -> String {
    mounts.iter().find(|m| m.host == path).map_or_else(|| path.display().to_string(), |m| m.rel.clone())
}

/// The files and directories that define the judge, each with what it is.
pub struct Definition {
    /// `(canonical host path, what it is)`.
    pub paths: Vec<(PathBuf, String)>,
}

impl Definition {
    /// The pipeline file, its lock file, every plugin file, and the runner's
    /// cache and state directories (when they exist or would be created).
    pub fn of(pipeline_file: &Path, plugins: &[(String, PathBuf)]) -> Definition {
        let canonical = |path: &Path| crate::key::resolve(path);
        let mut paths = vec![(canonical(pipeline_file), "the pipeline file".to_string())];
        let lock = pipeline_file.parent().unwrap_or(Path::new(".")).join(crate::manifest::LOCK_FILE);
        paths.push((canonical(&lock), "the lock file".to_string()));
        for (name, path) in plugins {
            paths.push((canonical(path), format!("the file of plugin `{name}`")));
        }
        for (dir, what) in private_dirs() {
            paths.push((canonical(&dir), what.to_string()));
        }
        Definition { paths }
    }

    /// Refuses every stage `write` grant that covers part of the definition.
    pub fn check_stages(&self, steps: &[Step], pipeline_file: &Path, diags: &mut Diagnostics) {
        for step in steps.iter().filter(|s| s.kind == StepKind::Stage) {
            for mount in step.grant.mounts.iter().filter(|m| m.writable) {
                // A write grant covers a path when the path lies inside it;
                // writing a directory that holds the path is the same.
                if let Some((_, what)) = self.paths.iter().find(|(p, _)| p.starts_with(&mount.host)) {
                    diags.push(
                        Diagnostic::new(
                            Code::CR019,
                            format!(
                                "stage `{}`: write mount `{}` covers {what}, which defines the judge",
                                step.id, mount.rel
                            ),
                        )
                        .at(at_step(step, pipeline_file))
                        .hint("a stage may never change what judges it: narrow its `write` (e.g. `src` instead of `.`), or move the pipeline, lock file, plugins and caches out of what it writes"),
                    );
                }
            }
        }
    }
}

/// The runner's private directories, which no step may reach: the cache
/// directory (compiled plugins, results) and the state directory (keys).
pub fn private_dirs() -> Vec<(PathBuf, &'static str)> {
    let mut dirs = Vec::new();
    if let Some(cache) = crate::cache::default_dir() {
        dirs.push((cache, "the runner's cache directory"));
    }
    if let Some(state) = crate::key::state_dir() {
        dirs.push((state, "the runner's state directory"));
    }
    dirs
}

/// What of the run's reach `dir` overlaps, if anything: the workspace, or
/// a `tools` path of a step (either inside the other).
pub fn reach_overlapping(plan: &Plan, dir: &Path) -> Option<String> {
    let dir = crate::key::resolve(dir);
    let overlaps = |granted: &Path| overlaps(&dir, granted);
    if overlaps(&plan.workspace) {
        return Some(format!("the workspace `{}`", plan.workspace.display()));
    }
    plan.steps.iter().find_map(|step| {
        step.grant
            .tools()
            .iter()
            .find(|tool| overlaps(&crate::key::resolve(tool)))
            .map(|tool| format!("`{}`, which step `{}` is granted in `tools`", tool.display(), step.id))
    })
}

/// Checks that the state and cache directories are out of every step's
/// reach, and loads (creating on first use) the key, before a run starts.
///
/// # Errors
/// `CR029` for the state directory or the key, `CR030` for the cache
/// directory, with where they are and what to do.
pub fn key_for_run(plan: &Plan) -> Result<crate::key::Key, Diagnostics> {
    let Some(state) = crate::key::state_dir() else {
        return Err(Diagnostic::new(
            Code::CR029,
            "no state directory for the runner's key: none of CLEANROOM_STATE_DIR, XDG_STATE_HOME and HOME is set",
        )
        .hint(format!("set {STATE_DIR_VAR} to a private directory outside the workspace"))
        .into());
    };
    let mut diags = Diagnostics::default();
    if let Some(what) = reach_overlapping(plan, &state) {
        diags.push(
            Diagnostic::new(
                Code::CR029,
                format!(
                    "the runner's state directory `{}` (it holds the key that authenticates journals and caches) overlaps {what}: a step could read or replace the key",
                    state.display()
                ),
            )
            .at(Location::Path(state.clone()))
            .hint(format!("set {STATE_DIR_VAR} to a private directory outside the workspace and every `tools` path")),
        );
    }
    if let Some(cache) = crate::cache::default_dir() {
        if let Some(what) = reach_overlapping(plan, &cache) {
            diags.push(
                Diagnostic::new(
                    Code::CR030,
                    format!(
                        "the cache directory `{}` overlaps {what}: a step could plant precompiled code or step results there",
                        cache.display()
                    ),
                )
                .at(Location::Path(cache))
                .hint(format!(
                    "set {} to a directory outside the workspace and every `tools` path",
                    crate::cache::CACHE_DIR_VAR
                )),
            );
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    crate::key::Key::load_from(&state).map_err(|reason| {
        Diagnostic::new(Code::CR029, reason)
            .at(Location::Path(state))
            .hint(format!(
                "fix or delete it (a new key only costs the caches and unfinished runs), or set {STATE_DIR_VAR}"
            ))
            .into()
    })
}
