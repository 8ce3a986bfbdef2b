//! Resolving a step's `read`/`write` paths into checked [`Mount`]s.
//!
//! A mount path is workspace-relative. It may not be absolute, may not climb
//! out of the workspace with `..`, may not resolve outside it through a
//! symlink, may not name the run directory `.cleanroom/`, and must exist.

use std::path::{Component, Path};

use crate::diag::Code;
use crate::plan::grant::Mount;

/// The run directory inside a workspace: journals and staged writes. Never mountable.
pub const RUN_DIR: &str = ".cleanroom";

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
    let mut parts: Vec<&str> = Vec::new();
    for component in Path::new(raw).components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(outside(
                        format!("mount `{raw}` escapes the workspace through `..`"),
                        "mount only paths inside the workspace; set `workspace` in [pipeline] to widen it",
                    ));
                }
            }
            Component::Normal(part) => match part.to_str() {
                Some(part) => parts.push(part),
                None => return Err(outside(format!("mount `{raw}` is not valid UTF-8"), "rename the path")),
            },
            Component::RootDir | Component::Prefix(_) => unreachable!("absolute paths were rejected above"),
        }
    }
    let rel = if parts.is_empty() { ".".to_string() } else { parts.join("/") };
    if parts.first() == Some(&RUN_DIR) {
        return Err(outside(
            format!("mount `{raw}` names the run directory `{RUN_DIR}/`, which no step may see"),
            "remove it from the step; run records are read with `cleanroom` itself",
        ));
    }
    let lexical = workspace.join(&rel);
    let host = match fs_err::canonicalize(&lexical) {
        Ok(host) => host,
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
    let is_dir = fs_err::metadata(&host).map(|m| m.is_dir()).unwrap_or(false);
    let guest = if rel == "." { "/".to_string() } else { format!("/{rel}") };
    Ok(Mount { rel, host, guest, writable, is_dir })
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
    fn run_directory_is_never_mountable() {
        let (_dir, root) = workspace();
        fs_err::create_dir_all(root.join(".cleanroom/runs")).unwrap();
        assert!(resolve(&root, ".cleanroom/runs", false).unwrap_err().message.contains("run directory"));
        std::os::unix::fs::symlink(root.join(".cleanroom"), root.join("sneaky")).unwrap();
        assert!(resolve(&root, "sneaky", false).unwrap_err().message.contains("run directory"));
    }
}
