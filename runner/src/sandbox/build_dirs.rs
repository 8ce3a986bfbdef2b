//! Persistent build directories, sandbox half: a `run` step's `cache_dirs`
//! (plan half: `resolve_cache_dirs` in [`crate::plan`]) become private
//! directories of the runner's cache, mounted writable over their
//! workspace paths inside the jail, so `cargo test` finds last run's
//! `target/` without the step being able to write the workspace.
//!
//! Each lives in `<cache>/dirs/<key>/`, mode 0700, where the key is a
//! digest of the workspace, the step's id, the directory, the step's
//! mounts and whether it reads the holdout: no other step (nor the same
//! id with other grants, so never a step that could not read what a
//! holdout reader left there) is ever given it. The workspace's own copy
//! (the user's `target/`) is neither shown to the step nor hashed for its
//! cache key. The directory's mtime is its last use, which the cache's
//! size cap evicts by ([`crate::cache::evict`]).
//!
//! A bind mount needs a mount point: a workspace path that does not exist
//! yet is created as an empty directory and left there (where the tool
//! would have made it anyway), so steps running beside this one never see
//! it come and go, and their input digests stay the same from run to run.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::plan::Step;

/// One build directory: the private host directory and the workspace
/// path it is mounted over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildDir {
    /// `<cache>/dirs/<key>`.
    pub private: PathBuf,
    /// `<workspace>/<rel>`.
    pub target: PathBuf,
}

/// The key of `step`'s build directory `rel` in `workspace`.
fn key(step: &Step, workspace: &Path, rel: &str) -> String {
    let mut hasher = Sha256::new();
    let mut mounts: Vec<String> =
        step.grant.mounts.iter().map(|m| format!("{}:{}", m.rel, if m.writable { "w" } else { "r" })).collect();
    mounts.sort();
    for part in [workspace.display().to_string(), step.id.clone(), rel.to_string(), mounts.join(",")] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hasher.update([u8::from(step.reads_holdout)]);
    crate::plugin::hex(&hasher.finalize())[..32].to_string()
}

/// Prepares `step`'s build directories under the cache directory `cache`
/// (a temporary one, lost after the run, when there is none).
///
/// # Errors
/// Why a directory cannot be made or mounted: a private directory that is
/// not private, or a workspace path that is not a plain directory there
/// (a symlink could aim the mount elsewhere).
pub fn prepare(step: &Step, workspace: &Path, cache: Option<&Path>) -> Result<Vec<BuildDir>, String> {
    let Some(native) = step.grant.native() else { return Ok(Vec::new()) };
    let mut dirs = Vec::new();
    for rel in &native.cache_dirs {
        let root = match cache {
            Some(cache) => crate::cache::dirs_dir(cache),
            // Without a cache they last as long as this process.
            None => crate::scratch::process_dir().map_or_else(
                || std::env::temp_dir().join(format!("cleanroom-dirs-{}", nix::unistd::geteuid())),
                |scratch| scratch.join("dirs"),
            ),
        };
        let private = root.join(key(step, workspace, rel));
        if private.starts_with(workspace) {
            return Err(format!(
                "the cache directory `{}` is inside the workspace, where other steps could read a build directory",
                root.display()
            ));
        }
        crate::cache::private_dir_for(&private, "build directory")?;
        crate::cache::touch(&private);
        let target = workspace.join(rel);
        match fs_err::symlink_metadata(&target) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(format!("cache directory `{rel}` is not a directory in the workspace (a file or symlink)"))
            }
            Err(_) => fs_err::create_dir_all(&target)
                .map_err(|e| format!("cannot create the mount point for cache directory `{rel}`: {e}"))?,
        }
        // No symlink on the way: the mount must land in the workspace.
        if fs_err::canonicalize(&target).ok().as_deref() != Some(target.as_path()) {
            return Err(format!("cache directory `{rel}` leads out of the workspace through a symlink"));
        }
        dirs.push(BuildDir { private, target });
    }
    Ok(dirs)
}

/// `cleanroom cache clean` removes them with the rest of the cache
/// ([`crate::cache::clean_dirs`]).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_target_is_made_once_and_a_symlink_is_refused() {
        let ws = tempfile::tempdir().unwrap();
        let ws_path = fs_err::canonicalize(ws.path()).unwrap();
        let cache = tempfile::tempdir().unwrap();
        let plan_text = "[pipeline]\nname='t'\n[check.build]\nrun=['true']\nread=['.']\ncache_dirs=['target']\n";
        fs_err::write(ws_path.join("cleanroom.toml"), plan_text).unwrap();
        let plan = crate::Plan::load(&ws_path.join("cleanroom.toml")).unwrap();
        let dirs = prepare(&plan.steps[0], &ws_path, Some(cache.path())).unwrap();
        assert_eq!(dirs.len(), 1);
        assert!(dirs[0].target.is_dir());
        assert!(dirs[0].private.starts_with(cache.path().join("dirs")));
        let again = prepare(&plan.steps[0], &ws_path, Some(cache.path())).unwrap();
        assert_eq!(again[0].private, dirs[0].private, "the same step finds the same directory");
        fs_err::remove_dir(ws_path.join("target")).unwrap();
        std::os::unix::fs::symlink("/etc", ws_path.join("target")).unwrap();
        assert!(prepare(&plan.steps[0], &ws_path, Some(cache.path())).unwrap_err().contains("not a directory"));
    }
}
