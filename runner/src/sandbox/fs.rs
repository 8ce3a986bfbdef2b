//! The filesystem capability: turns a grant's mounts into WASI preopens.
//!
//! Each directory mount becomes one preopen at its guest path (`/src`), with
//! `FsPerms::ReadOnly` unless the mount is writable. WASI preopens are
//! directories, so single-file mounts are served from a private staging
//! directory holding a copy of each granted file, preopened read-only at the
//! file's parent guest path; the file's real siblings stay invisible. Inside
//! a preopen, wasmtime resolves paths beneath the directory (cap-std), so
//! `..` and symlinks cannot leave it.
//!
//! A mount of the workspace root also gets an empty read-only preopen at
//! `/.cleanroom`, and a mount holding a repository's `.git` one at
//! `<mount>/.git`, so path lookups and directory walks never see the run
//! directory or git's. This hides it from well-behaved plugins; it is not a security
//! boundary (a plugin can still open it relative to the `/` preopen), which
//! is why the barrier keeps every stage, subject and feedback-giving check
//! away from the workspace root.

use std::collections::BTreeMap;
use std::path::Path;

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::plan::Mount;
use crate::sandbox::SandboxError;

/// Staging directories for single-file mounts; deleted when dropped, so keep
/// it alive as long as the Store.
#[derive(Debug, Default)]
pub struct Staging {
    _dirs: Vec<tempfile::TempDir>,
}

/// Adds a preopen for every mount in `mounts` to `builder`.
///
/// # Errors
/// [`SandboxError::Mount`] when a mounted path cannot be opened or a granted
/// file cannot be copied (e.g. it was deleted after planning).
pub fn apply(builder: &mut WasiCtxBuilder, mounts: &[Mount]) -> Result<Staging, SandboxError> {
    let mut staging = Staging::default();
    let dir_guests: Vec<&str> = mounts.iter().filter(|m| m.is_dir).map(|m| m.guest.as_str()).collect();
    let mut files_by_parent: BTreeMap<String, Vec<&Mount>> = BTreeMap::new();
    for mount in mounts {
        let mount_error =
            |e: &dyn std::fmt::Display| SandboxError::Mount { path: mount.rel.clone(), reason: e.to_string() };
        if mount.is_dir {
            let perms = if mount.writable { FsPerms::ReadWrite } else { FsPerms::ReadOnly };
            // Registered before the mount, so lookups under the shadowed
            // path resolve to it (wasi-libc does not prefer the longer prefix).
            for shadowed in shadowed(mount) {
                let empty =
                    tempfile::Builder::new().prefix("cleanroom-shadow-").tempdir().map_err(|e| mount_error(&e))?;
                builder.preopened_dir(empty.path(), shadowed, FsPerms::ReadOnly).map_err(|e| mount_error(&e))?;
                staging._dirs.push(empty);
            }
            builder.preopened_dir(&mount.host, &mount.guest, perms).map_err(|e| mount_error(&e))?;
        } else {
            let parent = parent_guest(&mount.guest);
            if !dir_guests.contains(&parent.as_str()) {
                files_by_parent.entry(parent).or_default().push(mount);
            }
        }
    }
    for (parent, files) in files_by_parent {
        let dir = tempfile::Builder::new().prefix("cleanroom-files-").tempdir().map_err(|e| SandboxError::Mount {
            path: parent.clone(),
            reason: format!("cannot create a staging directory: {e}"),
        })?;
        for file in files {
            let name = Path::new(&file.guest).file_name().unwrap_or_default();
            fs_err::copy(&file.host, dir.path().join(name))
                .map_err(|e| SandboxError::Mount { path: file.rel.clone(), reason: e.to_string() })?;
        }
        builder
            .preopened_dir(dir.path(), &parent, FsPerms::ReadOnly)
            .map_err(|e| SandboxError::Mount { path: parent.clone(), reason: e.to_string() })?;
        staging._dirs.push(dir);
    }
    Ok(staging)
}

/// The guest paths under a directory mount that an empty preopen covers:
/// the run directory under the workspace root, and the repository's `.git`
/// ([`crate::manifest::GIT_DIR`]) directly under the mount.
fn shadowed(mount: &Mount) -> Vec<String> {
    let under = |name: &str| if mount.guest == "/" { format!("/{name}") } else { format!("{}/{name}", mount.guest) };
    let mut paths = Vec::new();
    if mount.rel == "." {
        paths.push(under(crate::plan::mounts::RUN_DIR));
    }
    if fs_err::symlink_metadata(mount.host.join(crate::manifest::GIT_DIR)).is_ok() {
        paths.push(under(crate::manifest::GIT_DIR));
    }
    paths
}

/// `/a/b.txt` -> `/a`; `/b.txt` -> `/`.
fn parent_guest(guest: &str) -> String {
    match guest.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(i) => guest[..i].to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_of_guest_paths() {
        assert_eq!(parent_guest("/a/b.txt"), "/a");
        assert_eq!(parent_guest("/b.txt"), "/");
    }
}
