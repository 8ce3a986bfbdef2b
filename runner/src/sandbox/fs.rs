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
use std::sync::{Arc, Mutex};

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::plan::Mount;
use crate::sandbox::SandboxError;

/// Staging directories for single-file mounts and empty shadows; keep it
/// alive as long as the Store.
#[derive(Debug, Default)]
pub struct Staging {
    _dirs: Vec<Arc<tempfile::TempDir>>,
}

/// Staged copies already made in this process, by what they hold: the same
/// files with the same identity (device, inode, size, mtime, ctime) are
/// served from one read-only directory to every step that is granted them,
/// instead of a directory made, filled and deleted per invocation (which
/// cost more than the check itself). A changed file has another identity,
/// so it gets a fresh copy. Emptied by [`release_staged`] when a run ends.
static STAGED: Mutex<BTreeMap<String, Arc<tempfile::TempDir>>> = Mutex::new(BTreeMap::new());

/// More distinct staged directories than this are made per invocation, not
/// remembered.
const MAX_STAGED: usize = 256;

/// Deletes the staged copies remembered so far (the end of a run).
pub fn release_staged() {
    STAGED.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// The staged directory for `key`, made by `fill` when there is none yet
/// (every time for `None`: what it holds cannot be identified).
fn staged(
    key: Option<String>,
    fill: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<Arc<tempfile::TempDir>> {
    if let Some(dir) = key.as_ref().and_then(|key| STAGED.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned()) {
        return Ok(dir);
    }
    let dir = crate::scratch::dir("files-")?;
    fill(dir.path())?;
    let dir = Arc::new(dir);
    let mut memo = STAGED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(key) = key.filter(|_| memo.len() < MAX_STAGED) {
        memo.entry(key).or_insert_with(|| Arc::clone(&dir));
    }
    Ok(dir)
}

/// What identifies the files of `files` without reading them.
fn identity_key(parent: &str, files: &[&Mount]) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let mut key = format!("files {parent}");
    for file in files {
        let meta = fs_err::metadata(&file.host).ok()?;
        key.push_str(&format!(
            "\0{}\0{} {} {} {}.{} {}.{}",
            file.host.display(),
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec()
        ));
    }
    Some(key)
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
                let empty = staged(Some("empty".to_string()), |_| Ok(())).map_err(|e| mount_error(&e))?;
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
        let fill = |dir: &Path| {
            for file in &files {
                let name = Path::new(&file.guest).file_name().unwrap_or_default();
                fs_err::copy(&file.host, dir.join(name))
                    .map_err(|e| std::io::Error::other(format!("`{}`: {e}", file.rel)))?;
            }
            Ok(())
        };
        // A file that cannot be stat'ed is copied (and fails) as before.
        let dir = staged(identity_key(&parent, &files), fill).map_err(|e| SandboxError::Mount {
            path: parent.clone(),
            reason: format!("cannot stage the granted files: {e}"),
        })?;
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
