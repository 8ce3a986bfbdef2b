//! The filesystem capability, plan half: a step's `read`/`write` paths
//! become checked [`Mount`]s ([`resolve`], used again for a mount an
//! upstream step creates). The sandbox half: [`crate::sandbox::fs`] (a
//! plugin's preopens), the jail's mounts and Landlock rules, and
//! [`crate::writes`] (staging and commit).
//!
//! A mount path is workspace-relative. It may not be absolute, may not climb
//! out of the workspace with `..`, may not resolve outside it through a
//! symlink, may not name the run directory `.cleanroom/`, and must exist.

use std::path::{Component, Path};

use crate::diag::Code;
use crate::plan::grant::Mount;

pub use crate::manifest::RUN_DIR;

/// Why a mount path was refused: the code, the message and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountError {
    /// `CR007` (outside the workspace) or `CR008` (missing).
    pub code: Code,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub hint: String,
}

/// Resolves `raw` (as written in the pipeline) against the canonical
/// `workspace` directory.
///
/// # Errors
/// [`MountError`] naming the path and the rule it breaks.
pub fn resolve(workspace: &Path, raw: &str, writable: bool) -> Result<Mount, MountError> {
    let outside = |message: String, hint: &str| MountError { code: Code::CR007, message, hint: hint.to_string() };
    if raw.trim().is_empty() {
        return Err(outside("mount path is empty".into(), "write `.` for the whole workspace"));
    }
    if Path::new(raw).is_absolute() || raw.starts_with('~') {
        return Err(outside(
            format!("mount `{raw}` is absolute: mounts are relative to the workspace"),
            "write the path relative to the workspace root, e.g. `src`",
        ));
    }
    let Some(rel) = normalize(raw) else {
        return Err(outside(
            format!("mount `{raw}` escapes the workspace through `..`"),
            "mount only paths inside the workspace; set `workspace` in [pipeline] to widen it",
        ));
    };
    let parts: Vec<&str> = if rel == "." { Vec::new() } else { rel.split('/').collect() };
    if parts.first() == Some(&RUN_DIR) {
        return Err(outside(
            format!("mount `{raw}` names the run directory `{RUN_DIR}/`, which no step may see"),
            "remove it from the step; run records are read with `cleanroom` itself",
        ));
    }
    let lexical = workspace.join(&rel);
    let host = match fs_err::canonicalize(&lexical) {
        Ok(host) => host,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound && writable && fs_err::symlink_metadata(&lexical).is_err() =>
        {
            return resolve_missing_write(workspace, raw, &parts);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dangling = fs_err::symlink_metadata(&lexical).is_ok();
            let message = if dangling {
                format!("mount `{raw}` is a symlink to a path that does not exist")
            } else {
                format!("mount `{raw}` does not exist in the workspace `{}`", workspace.display())
            };
            return Err(MountError {
                code: Code::CR008,
                message,
                hint: "create it, fix the spelling, or remove it from the step".into(),
            });
        }
        Err(e) => return Err(outside(format!("mount `{raw}` cannot be resolved: {e}"), "check its permissions")),
    };
    if !host.starts_with(workspace) {
        return Err(outside(
            format!("mount `{raw}` resolves outside the workspace through a symlink (to `{}`)", host.display()),
            "mount the symlink's target directly if it is inside the workspace, or copy what the step needs into the workspace",
        ));
    }
    if host.strip_prefix(workspace).is_ok_and(|inner| inner.starts_with(RUN_DIR)) {
        return Err(outside(
            format!("mount `{raw}` resolves into the run directory `{RUN_DIR}/`, which no step may see"),
            "remove it from the step",
        ));
    }
    // Git's directory is seen only by a mount that names it: not through a
    // symlink (`hooks -> .git/hooks`), nor a selected file linking into it.
    if host.strip_prefix(workspace).is_ok_and(names_git) && !names_git(Path::new(&rel)) {
        return Err(outside(
            format!("mount `{raw}` resolves into git's directory `{}` through a symlink", host.display()),
            "name `.git` itself in the mount if the step must see it",
        ));
    }
    let is_dir = fs_err::metadata(&host).map(|m| m.is_dir()).unwrap_or(false);
    let guest = if rel == "." { "/".to_string() } else { format!("/{rel}") };
    Ok(Mount { rel, host, guest, writable, is_dir, exists: true })
}

/// Whether `path` is a `.git` or lies inside one: only a mount that names
/// git's directory this way may see or change it.
pub fn names_git(path: &Path) -> bool {
    path.components().any(|c| c.as_os_str() == crate::manifest::GIT_DIR)
}

/// `raw` normalised lexically (`./src/../docs` -> `docs`, `.` for the
/// root), or `None` if it is absolute or climbs out of the workspace.
pub fn normalize(raw: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for component in Path::new(raw).components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(if parts.is_empty() { ".".to_string() } else { parts.join("/") })
}

/// Whether normalised `path` is `dir` or below it.
pub fn is_within(path: &str, dir: &str) -> bool {
    dir == "." || path == dir || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

/// Whether `raw` lies under one of `writes` (normalised paths that steps
/// upstream of the one asking write).
pub fn produced_upstream(raw: &str, writes: &[String]) -> bool {
    normalize(raw).is_some_and(|rel| writes.iter().any(|w| is_within(&rel, w)))
}

/// [`resolve`], except that a path that does not exist yet but lies under
/// one of `writes` (what upstream steps write) is accepted as
/// [`not_yet_created`], to be checked again when the step runs.
///
/// # Errors
/// As [`resolve`], for a path no upstream step writes.
pub fn resolve_or_upstream(
    workspace: &Path,
    raw: &str,
    writable: bool,
    writes: &[String],
) -> Result<Mount, MountError> {
    resolve(workspace, raw, writable).or_else(|e| {
        if e.code == Code::CR008 && produced_upstream(raw, writes) {
            Ok(not_yet_created(workspace, raw))
        } else {
            Err(e)
        }
    })
}

/// A read mount of a path an upstream step writes, which does not exist yet:
/// checked again when the step runs. `raw` must be normalisable.
pub fn not_yet_created(workspace: &Path, raw: &str) -> Mount {
    let rel = normalize(raw).unwrap_or_else(|| ".".to_string());
    let guest = if rel == "." { "/".to_string() } else { format!("/{rel}") };
    Mount { host: workspace.join(&rel), rel, guest, writable: false, is_dir: true, exists: false }
}

/// A `write` directory that does not exist yet: its nearest existing ancestor
/// must be a directory inside the workspace; the directory itself is created
/// only when the step's writes are committed.
fn resolve_missing_write(workspace: &Path, raw: &str, parts: &[&str]) -> Result<Mount, MountError> {
    for existing in (0..parts.len()).rev() {
        let Ok(ancestor) = fs_err::canonicalize(workspace.join(parts[..existing].join("/"))) else { continue };
        if !ancestor.starts_with(workspace) || !ancestor.is_dir() {
            break;
        }
        if ancestor.strip_prefix(workspace).is_ok_and(|inner| inner.starts_with(RUN_DIR)) {
            break;
        }
        let host = parts[existing..].iter().fold(ancestor, |path, part| path.join(part));
        let rel = parts.join("/");
        let guest = format!("/{rel}");
        return Ok(Mount { rel, host, guest, writable: true, is_dir: true, exists: false });
    }
    Err(MountError {
        code: Code::CR007,
        message: format!("write mount `{raw}` cannot be created inside the workspace"),
        hint: "write to a directory inside the workspace".into(),
    })
}

/// What `--dry-run` says of a step's mounts: `read: src at /src`.
pub fn describe(grant: &crate::plan::Grant) -> Vec<String> {
    grant
        .mounts
        .iter()
        .map(|m| format!("{}: {} at {}", if m.writable { "write" } else { "read" }, m.rel, m.guest))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = fs_err::canonicalize(dir.path()).unwrap();
        fs_err::create_dir_all(root.join("src/inner")).unwrap();
        fs_err::write(root.join("src/lib.rs"), "").unwrap();
        (dir, root)
    }

    #[test]
    fn relative_paths_resolve_to_guest_paths_of_the_same_name() {
        let (_dir, root) = workspace();
        let mount = resolve(&root, "./src/inner/..", false).unwrap();
        assert_eq!((mount.rel.as_str(), mount.guest.as_str(), mount.is_dir), ("src", "/src", true));
        let file = resolve(&root, "src/lib.rs", false).unwrap();
        assert!(!file.is_dir);
        assert_eq!(resolve(&root, ".", false).unwrap().guest, "/");
    }

    #[test]
    fn absolute_parent_and_missing_paths_are_refused() {
        let (_dir, root) = workspace();
        assert!(resolve(&root, "/etc", false).unwrap_err().message.contains("absolute"));
        assert!(resolve(&root, "src/../../x", false).unwrap_err().message.contains("escapes"));
        let missing = resolve(&root, "nope", false).unwrap_err();
        assert_eq!(missing.code, Code::CR008);
    }

    #[test]
    fn symlink_out_of_the_workspace_is_refused() {
        let (_dir, root) = workspace();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
        let err = resolve(&root, "link", false).unwrap_err();
        assert!(err.message.contains("through a symlink"), "{}", err.message);
    }

    #[test]
    fn missing_write_directory_is_created_later_but_missing_read_is_refused() {
        let (_dir, root) = workspace();
        let mount = resolve(&root, "build/out", true).unwrap();
        assert!(!mount.exists && mount.is_dir && mount.writable);
        assert_eq!(mount.host, root.join("build/out"));
        assert!(!root.join("build").exists(), "planning must not create anything");
        assert_eq!(resolve(&root, "build/out", false).unwrap_err().code, Code::CR008);
    }

    #[test]
    fn git_is_mountable_only_by_a_path_that_names_it() {
        let (_dir, root) = workspace();
        fs_err::create_dir_all(root.join(".git/hooks")).unwrap();
        fs_err::write(root.join(".git/config"), "[core]").unwrap();
        std::os::unix::fs::symlink(root.join(".git/hooks"), root.join("hooks")).unwrap();
        std::os::unix::fs::symlink(root.join(".git/config"), root.join("innocent.txt")).unwrap();
        for (raw, writable) in [("hooks", true), ("hooks", false), ("innocent.txt", false)] {
            let err = resolve(&root, raw, writable).unwrap_err();
            assert!(err.message.contains("git's directory"), "{raw}: {}", err.message);
        }
        assert!(resolve(&root, ".git/config", false).is_ok());
        assert!(resolve(&root, ".git", true).is_ok());
    }

    #[test]
    fn normalize_and_within() {
        assert_eq!(normalize("./a/../b/c").as_deref(), Some("b/c"));
        assert_eq!(normalize("../x"), None);
        assert!(is_within("build/app.wasm", "build") && is_within("build", "build") && is_within("x", "."));
        assert!(!is_within("buildx", "build"));
    }

    #[test]
    fn run_directory_is_never_mountable() {
        let (_dir, root) = workspace();
        fs_err::create_dir_all(root.join(".cleanroom/runs")).unwrap();
        assert!(resolve(&root, ".cleanroom/runs", false).unwrap_err().message.contains("run directory"));
        std::os::unix::fs::symlink(root.join(".cleanroom"), root.join("sneaky")).unwrap();
        assert!(resolve(&root, "sneaky", false).unwrap_err().message.contains("run directory"));
    }
}
