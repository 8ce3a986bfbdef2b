//! Running on some files: a step's `include`/`exclude`/`whole_tree` (plan
//! half) and `run --files`, `--staged`, `--from-ref` (which files; the
//! host half asks git, in [`crate::git`]).
//!
//! A step that declares `include` is about some files ([`apply`]): it is
//! left out of a run in which no file it can read matches (unless a step
//! left in needs it); on a selection (workspace-relative paths) it sees
//! only the matching files, so a linter sees what changed and nothing
//! else; a `run` step gets its files as arguments. With `whole_tree =
//! true` the files decide only whether the step runs (`cargo test` needs
//! the crate). A step without `include` is never narrowed: it runs as the
//! pipeline says. Narrowing only ever removes what a step reads, so no
//! grant the barrier checked grows.
//!
//! Globs follow `.gitignore` habits: a pattern without `/` matches a name
//! at any depth (`*.rs`), one with `/` matches from the workspace root
//! (`src/**/*.py`).

use std::collections::BTreeSet;
use std::path::Path;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::diag::{Code, Diagnostic, Diagnostics, Location};
use crate::plan::{mounts, Declared, Plan};

/// A step's `include`, `exclude` and `whole_tree`, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFilter {
    /// Globs of the files the step is about.
    pub include: Vec<String>,
    /// Globs of files left out.
    pub exclude: Vec<String>,
    /// Whether the step keeps its whole mounts on a selection.
    pub whole_tree: bool,
}

impl FileFilter {
    /// Whether workspace-relative `rel` is one of the step's files.
    ///
    /// Patterns were checked when the plan was made; one that no longer
    /// compiles matches nothing.
    pub fn matches(&self, rel: &str) -> bool {
        let (Some(include), Some(exclude)) = (glob_set(&self.include), glob_set(&self.exclude)) else {
            return false;
        };
        include.is_match(rel) && !exclude.is_match(rel)
    }
}

/// `*.rs` -> `**/*.rs`: a pattern without `/` matches at any depth.
fn anchored(pattern: &str) -> String {
    let pattern = pattern.strip_prefix("./").unwrap_or(pattern);
    match pattern.strip_prefix('/') {
        Some(rooted) => rooted.to_string(),
        None if pattern.contains('/') => pattern.to_string(),
        None => format!("**/{pattern}"),
    }
}

/// One glob as a step's `include` and `exclude` (and the `search`
/// interface's, [`crate::sandbox::search`]) read it: see [`anchored`], and
/// `*` never crosses a `/`.
pub(crate) fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    globset::GlobBuilder::new(&anchored(pattern)).literal_separator(true).build()
}

fn glob_set(patterns: &[String]) -> Option<GlobSet> {
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        set.add(glob(pattern).ok()?);
    }
    set.build().ok()
}

/// Reads step `d`'s `include`, `exclude` and `whole_tree`; `None` when it
/// has no `include`.
pub(crate) fn resolve(
    d: &Declared,
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> Option<FileFilter> {
    let id = &d.id.get_ref().0;
    for pattern in d.table.include.iter().chain(&d.table.exclude) {
        if let Err(e) = glob(pattern.get_ref()) {
            diags.push(
                Diagnostic::new(
                    Code::CR002,
                    format!("step `{id}`: `{}` is not a glob: {}", pattern.get_ref(), e.kind()),
                )
                .at(here(pattern.span()))
                .hint("write globs like `*.rs`, `src/**/*.py` or `docs/*.md`"),
            );
        }
    }
    if d.table.include.is_empty() {
        let orphan = d.table.whole_tree.as_ref().map(|w| w.span()).or(d.table.exclude.first().map(|e| e.span()));
        if let Some(span) = orphan {
            diags.push(
                Diagnostic::new(Code::CR017, format!("step `{id}` sets `exclude` or `whole_tree` without `include`"))
                    .at(here(span))
                    .hint("add `include = [...]` naming the files the step is about, e.g. `include = [\"*.rs\"]`"),
            );
        }
        return None;
    }
    Some(FileFilter {
        include: d.table.include.iter().map(|p| p.get_ref().clone()).collect(),
        exclude: d.table.exclude.iter().map(|p| p.get_ref().clone()).collect(),
        whole_tree: d.table.whole_tree.as_ref().is_some_and(|w| *w.get_ref()),
    })
}

/// Applies the steps' `include` to a run on `selected` workspace-relative
/// files (`None`: every file under each step's read mounts).
///
/// - A step with `include` that no file matches is left out of the plan
///   ([`Plan::not_selected`]) unless a step left in needs it, in which case
///   it runs as written: a selection never makes a step that something
///   depends on pass by not running.
/// - On a selection, a step without `whole_tree` sees only the matching
///   files (its read mounts are replaced by them).
/// - A `run` step without `whole_tree` gets its matching files as
///   arguments, after its own, as pre-commit passes file names: a program
///   cannot list what it is not allowed to read.
///
/// Selected paths that are not files in the workspace (deleted, or outside
/// it) are ignored, and so is anything inside `.git` or the run directory.
pub fn apply(mut plan: Plan, selected: Option<&[String]>) -> Plan {
    let workspace = plan.workspace.clone();
    let mut unmatched = BTreeSet::new();
    for step in plan.steps.iter_mut() {
        let Some(filter) = &step.files else { continue };
        let reads: Vec<&crate::plan::Mount> = step.grant.mounts.iter().filter(|m| !m.writable).collect();
        let candidates = match selected {
            Some(selected) => selected.to_vec(),
            None => reads.iter().flat_map(|m| files_under(&workspace, &m.rel)).collect(),
        };
        let mut files: Vec<String> = candidates
            .into_iter()
            .filter(|rel| {
                filter.matches(rel)
                    && reads.iter().any(|m| mounts::is_within(rel, &m.rel))
                    && mounts::resolve(&workspace, rel, false).is_ok_and(|m| !m.is_dir)
            })
            .collect();
        files.sort();
        files.dedup();
        if files.is_empty() {
            unmatched.insert(step.id.clone());
            continue;
        }
        if filter.whole_tree {
            continue;
        }
        if let crate::plan::Action::Command { args, display, .. } = &mut step.action {
            args.extend(files.iter().cloned());
            display.push_str(&format!(" <{} files>", files.len()));
        }
        if selected.is_some() {
            let narrowed = files.iter().filter_map(|rel| mounts::resolve(&workspace, rel, false).ok());
            let narrowed: Vec<_> = narrowed.collect();
            step.grant.mounts.retain(|m| m.writable);
            step.grant.mounts.splice(0..0, narrowed);
        }
    }
    // Plan order is topological: walking it backwards, a kept step keeps
    // its needs before they are visited.
    let mut keep: BTreeSet<String> =
        plan.steps.iter().filter(|s| !unmatched.contains(&s.id)).map(|s| s.id.clone()).collect();
    for step in plan.steps.iter().rev() {
        if keep.contains(&step.id) {
            keep.extend(step.needs.iter().cloned());
        }
    }
    plan.not_selected = plan.steps.iter().filter(|s| !keep.contains(&s.id)).map(|s| s.id.clone()).collect();
    if !plan.not_selected.is_empty() {
        plan.retain_steps(|s| keep.contains(&s.id));
    }
    plan
}

/// Every file under workspace path `rel` (itself, if a file), workspace-
/// relative, without `.git` or the run directory; symlinks not followed.
fn files_under(workspace: &Path, rel: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut walk = vec![rel.to_string()];
    while let Some(rel) = walk.pop() {
        let path = if rel == "." { workspace.to_path_buf() } else { workspace.join(&rel) };
        let Ok(meta) = fs_err::symlink_metadata(&path) else { continue };
        if meta.is_file() {
            found.push(rel);
        } else if meta.is_dir() {
            let Ok(entries) = fs_err::read_dir(&path) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name == crate::manifest::GIT_DIR || (rel == "." && name == mounts::RUN_DIR) {
                    continue;
                }
                walk.push(if rel == "." { name } else { format!("{rel}/{name}") });
            }
        }
    }
    found
}

/// Turns paths as the user gave them (relative to `cwd`, or absolute) into
/// workspace-relative ones; those outside the workspace are dropped.
pub fn relative_to_workspace(paths: &[String], cwd: &Path, workspace: &Path) -> Vec<String> {
    paths
        .iter()
        .filter_map(|raw| {
            let absolute = cwd.join(raw);
            let absolute = fs_err::canonicalize(&absolute).unwrap_or(absolute);
            let rel = absolute.strip_prefix(workspace).ok()?;
            mounts::normalize(&rel.to_string_lossy()).filter(|r| r != ".")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(include: &[&str], exclude: &[&str]) -> FileFilter {
        FileFilter {
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            whole_tree: false,
        }
    }

    #[test]
    fn a_pattern_without_a_slash_matches_at_any_depth_and_one_with_a_slash_from_the_root() {
        let rust = filter(&["*.rs"], &["vendor/**"]);
        assert!(rust.matches("main.rs") && rust.matches("src/deep/lib.rs"));
        assert!(!rust.matches("vendor/x/lib.rs"), "excluded");
        assert!(!rust.matches("src/lib.rsx"));
        let rooted = filter(&["src/*.py"], &[]);
        assert!(rooted.matches("src/a.py"));
        assert!(!rooted.matches("src/pkg/a.py"), "`*` does not cross `/`");
        assert!(!rooted.matches("lib/src/a.py"));
        assert!(filter(&["src/**/*.py"], &[]).matches("src/pkg/a.py"));
        assert!(filter(&["/Cargo.toml"], &[]).matches("Cargo.toml"));
    }

    #[test]
    fn user_paths_become_workspace_relative_and_outside_ones_are_dropped() {
        let ws = tempfile::tempdir().unwrap();
        let ws_path = fs_err::canonicalize(ws.path()).unwrap();
        fs_err::create_dir_all(ws_path.join("src")).unwrap();
        fs_err::write(ws_path.join("src/a.rs"), "").unwrap();
        let paths = ["a.rs".to_string(), "../Cargo.toml".to_string(), "/etc/passwd".to_string()];
        let rel = relative_to_workspace(&paths, &ws_path.join("src"), &ws_path);
        assert_eq!(rel, ["src/a.rs", "Cargo.toml"]);
    }
}
