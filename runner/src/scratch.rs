//! The runner's scratch space: the directories it needs only while it runs
//! (a native step's `/tmp` and its stand-ins, a stage's staged copy of its
//! write mounts, single files staged for a plugin, build directories when
//! there is no cache, a plugin test's workspace).
//!
//! Every one of them is made inside one directory per process,
//! `$TMPDIR/cleanroom-<uid>/<pid>-<random>/`, whose `lock` file the
//! process holds an exclusive lock on until it ends. A runner that could
//! not clean up after itself (killed by SIGKILL or the kernel's OOM killer,
//! a machine that lost power over a persistent `/tmp`) leaves its directory
//! behind with no one holding the lock; every `cleanroom` command starts by
//! removing such directories ([`sweep_abandoned`]). Without this, every
//! such death left its staged copies behind for good: the workspace's
//! files, a scenario's stdin, what a stage wrote.
//!
//! The per-user directory is mode 0700 and must be a directory (not a
//! symlink) owned by this user; when it is not (another user made it
//! first), it is neither used nor swept: scratch directories are made
//! directly in `$TMPDIR` as `cleanroom-<prefix>XXXXXX`, and a warning says
//! why.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// The lock file inside each process's directory.
const LOCK: &str = "lock";

/// Prefix of a process directory being made: it is renamed to its final
/// name only once its lock is held, so a sweep never sees it unlocked.
const MAKING: &str = ".making-";

/// A half-made process directory older than this was left by a process
/// that died while making it.
const MAKING_STALE: Duration = Duration::from_secs(3600);

/// This process's directory and the open lock file that marks it in use.
struct ProcessDir {
    path: PathBuf,
    _lock: File,
}

/// Made on first use; `None` when the per-user directory cannot be used.
static PROCESS: OnceLock<Option<ProcessDir>> = OnceLock::new();

/// A new empty directory for this process alone, named `<prefix>XXXXXX`,
/// removed when the value is dropped (and by the next runner if this one is
/// killed first).
///
/// # Errors
/// The I/O error when the directory cannot be made.
pub fn dir(prefix: &str) -> io::Result<tempfile::TempDir> {
    match process_dir() {
        Some(root) => tempfile::Builder::new().prefix(prefix).tempdir_in(root),
        None => tempfile::Builder::new().prefix(&format!("cleanroom-{prefix}")).tempdir(),
    }
}

/// This process's scratch directory, made (and stale ones swept) on first
/// use; `None` when the per-user directory is not usable.
pub fn process_dir() -> Option<&'static Path> {
    PROCESS
        .get_or_init(|| match make(&user_dir()) {
            Ok(made) => Some(made),
            Err(reason) => {
                tracing::warn!("scratch directories go straight into the temporary directory: {reason}");
                None
            }
        })
        .as_ref()
        .map(|p| p.path.as_path())
}

/// Removes this process's scratch directory, if it made one: the last
/// thing the command-line program does. Anything still using it is gone by
/// then.
pub fn release() {
    if let Some(Some(dir)) = PROCESS.get() {
        if let Err(e) = fs_err::remove_dir_all(&dir.path) {
            tracing::debug!("cannot remove the scratch directory: {e}");
        }
    }
}

/// Removes what runners that were killed left in this user's scratch
/// directory, without making one: every command of the command-line program
/// starts with it, whether or not it needs scratch space itself.
pub fn sweep_abandoned() {
    let dir = user_dir();
    let private = fs_err::symlink_metadata(&dir).is_ok_and(|m| m.is_dir() && crate::cache::is_private(&m));
    if private {
        sweep(&dir);
    }
}

/// `$TMPDIR/cleanroom-<uid>`: every process of this user makes its own
/// directory here.
pub fn user_dir() -> PathBuf {
    std::env::temp_dir().join(format!("cleanroom-{}", nix::unistd::geteuid()))
}

/// Sweeps `root`, then makes and locks this process's directory in it.
fn make(root: &Path) -> Result<ProcessDir, String> {
    crate::cache::private_dir_for(root, "scratch directory")?;
    sweep(root);
    let making = tempfile::Builder::new()
        .prefix(MAKING)
        .tempdir_in(root)
        .map_err(|e| format!("cannot make a directory in `{}`: {e}", root.display()))?;
    let lock = File::create(making.path().join(LOCK)).map_err(|e| format!("cannot make its lock file: {e}"))?;
    lock.try_lock().map_err(|e| format!("cannot lock its lock file: {e}"))?;
    let suffix = making.path().file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix(MAKING));
    let path = root.join(format!("{}-{}", std::process::id(), suffix.unwrap_or_default()));
    fs_err::rename(making.path(), &path).map_err(|e| e.to_string())?;
    // The directory now has its final name; nothing is left to remove.
    let _ = making.keep();
    Ok(ProcessDir { path, _lock: lock })
}

/// Removes every directory in `root` that no living process holds: its
/// lock can be taken (or it has none), or it is a half-made one older than
/// an hour. Best effort: what cannot be removed now is tried again
/// by the next runner.
pub fn sweep(root: &Path) {
    let Ok(entries) = fs_err::read_dir(root) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_dir() {
            continue;
        }
        let abandoned = if name.to_string_lossy().starts_with(MAKING) {
            meta.modified()
                .ok()
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .is_some_and(|age| age > MAKING_STALE)
        } else {
            match File::open(path.join(LOCK)) {
                // Held for as long as `lock` is open: the removal is done
                // before anyone could take the directory over.
                Ok(lock) => lock.try_lock().is_ok(),
                Err(e) => e.kind() == io::ErrorKind::NotFound,
            }
        };
        if abandoned {
            if let Err(e) = fs_err::remove_dir_all(&path) {
                tracing::debug!("cannot remove an abandoned scratch directory: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_whose_lock_is_free_is_swept_and_a_held_one_is_kept() {
        let root = tempfile::tempdir().unwrap();
        let dead = root.path().join("1-dead");
        fs_err::create_dir_all(dead.join("cleanroom-stage-x")).unwrap();
        fs_err::write(dead.join(LOCK), "").unwrap();
        let alive = root.path().join("2-alive");
        fs_err::create_dir(&alive).unwrap();
        let held = File::create(alive.join(LOCK)).unwrap();
        held.try_lock().unwrap();
        let unlocked = root.path().join("3-no-lock");
        fs_err::create_dir(&unlocked).unwrap();
        sweep(root.path());
        assert!(!dead.exists(), "a directory no process holds was kept");
        assert!(!unlocked.exists(), "a directory without a lock file was kept");
        assert!(alive.join(LOCK).exists(), "a directory a living process holds was removed");
    }

    #[test]
    fn a_directory_being_made_is_left_alone_until_it_is_stale() {
        let root = tempfile::tempdir().unwrap();
        let making = root.path().join(format!("{MAKING}abc"));
        fs_err::create_dir(&making).unwrap();
        sweep(root.path());
        assert!(making.exists(), "a directory another process is making was removed");
    }

    #[test]
    fn a_process_directory_is_locked_against_a_sweep() {
        let root = tempfile::tempdir().unwrap();
        let made = make(root.path()).unwrap();
        sweep(root.path());
        assert!(made.path.join(LOCK).exists(), "the sweep removed a directory its process still holds");
        drop(made);
        sweep(root.path());
        assert_eq!(fs_err::read_dir(root.path()).unwrap().count(), 0, "a released directory was kept");
    }
}
