//! The runner's caches and where they live.
//!
//! One private directory per user (`CLEANROOM_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/cleanroom`, else `~/.cache/cleanroom`), mode 0700, holds
//! precompiled plugins ([`crate::sandbox::cache`], top level), step results
//! ([`crate::exec::results`], `results/`), the files cached stages wrote
//! (`blobs/`) and steps' persistent build directories (`dirs/<entry>/`,
//! [`dirs_dir`]). Everything in it is written to a temporary name and
//! renamed into place, and only regular files owned by this user and
//! writable by nobody else are ever read back. An entry's mtime is its last
//! use ([`touch`] on every hit): [`evict`] keeps the whole directory under
//! its `max-size`, least recently used first. [`digest`] hashes step inputs
//! for the result cache and the journal; its memo lives in the workspace,
//! not here.

pub mod digest;
pub mod evict;

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use fs_err::os::unix::fs::OpenOptionsExt;

/// Environment variable naming the cache directory.
pub const CACHE_DIR_VAR: &str = "CLEANROOM_CACHE_DIR";

/// The cache directory this process would use, from the environment.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(CACHE_DIR_VAR).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(xdg).join("cleanroom"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("cleanroom"))
}

/// Where steps' persistent build directories live (`cache_dirs`): one
/// `dirs/<entry>/` per step and directory, evicted whole, whose own mtime is
/// its last use. One name for every part of the runner that uses them.
pub fn dirs_dir(cache: &Path) -> PathBuf {
    cache.join("dirs")
}

/// Whether `name`, a file name in the cache directory's top level, is a
/// precompiled plugin as [`crate::sandbox::cache::CompileCache`] names it:
/// `<sha256>-<engine hash>.cwasm`. The one definition both the compile
/// cache and [`evict`] use, so eviction deletes nothing else there.
pub fn is_precompiled_name(name: &str) -> bool {
    name.strip_suffix(".cwasm").is_some_and(is_precompiled_stem)
}

/// `<sha256>-<engine hash>`: two runs of hex digits joined by `-` (a
/// precompiled plugin's name without `.cwasm`, as its temporary file keeps it).
pub(crate) fn is_precompiled_stem(stem: &str) -> bool {
    stem.split_once('-').is_some_and(|(sha256, engine)| {
        [sha256, engine].iter().all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

/// Marks `file` as used now (sets its mtime), so that least-recently-used
/// eviction ([`evict`]) keeps it longest; called on every cache hit. A
/// symlink is never followed (only its own time would change). Best
/// effort: a file that cannot be touched is only evicted sooner.
pub fn touch(file: &Path) {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let touched = utimensat(
        nix::fcntl::AT_FDCWD,
        file,
        &TimeSpec::UTIME_OMIT,
        &TimeSpec::UTIME_NOW,
        UtimensatFlags::NoFollowSymlink,
    );
    if let Err(e) = touched {
        tracing::debug!("cannot mark the cache entry `{}` as used: {e}", file.display());
    }
}

/// Deletes every build directory (`dirs/<entry>`, with everything in it;
/// a symlink there is removed itself, never followed); returns how many.
/// For `cleanroom cache clean`; a directory that cannot be deleted is
/// skipped and not counted.
pub fn clean_dirs(cache: &Path) -> usize {
    let dirs = dirs_dir(cache);
    if !fs_err::symlink_metadata(&dirs).is_ok_and(|meta| meta.is_dir()) {
        return 0;
    }
    let Ok(entries) = fs_err::read_dir(&dirs) else { return 0 };
    entries
        .flatten()
        .filter(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => fs_err::remove_dir_all(entry.path()).is_ok(),
            Ok(_) => fs_err::remove_file(entry.path()).is_ok(),
            Err(_) => false,
        })
        .count()
}

/// Creates `dir` (and parents) with mode 0700 if missing, and checks that
/// it is a directory this user alone can write.
///
/// # Errors
/// A sentence naming the directory and what is wrong with it.
pub fn private_dir(dir: &Path) -> Result<(), String> {
    private_dir_for(dir, "cache directory")
}

/// [`private_dir`] for any private directory of the runner; `what` names
/// it in the error ("state directory").
///
/// # Errors
/// A sentence naming the directory and what is wrong with it.
pub fn private_dir_for(dir: &Path, what: &str) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create the {what} `{}`: {e}", dir.display()))?;
    let meta = fs_err::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if !meta.is_dir() || !is_private(&meta) {
        return Err(format!(
            "the {what} `{}` is not a directory owned by this user alone (mode 0700); it is not used",
            dir.display()
        ));
    }
    Ok(())
}

/// Owned by this user, and neither group- nor world-writable.
pub fn is_private(meta: &std::fs::Metadata) -> bool {
    meta.uid() == nix::unistd::geteuid().as_raw() && meta.mode() & 0o022 == 0
}

/// Reads `file` if it is a regular file (not a symlink) that is private to
/// this user; `None` otherwise or when it cannot be read.
pub fn read_private(file: &Path) -> Option<Vec<u8>> {
    let meta = fs_err::symlink_metadata(file).ok()?;
    if !meta.is_file() || !is_private(&meta) {
        return None;
    }
    fs_err::read(file).ok()
}

/// Writes `bytes` to `file` whole: to a temporary name beside it (mode
/// 0600), synced, then renamed over it.
///
/// # Errors
/// The I/O error, with the file named.
pub fn write_atomic(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_mode(file, bytes, 0o600)
}

/// [`write_atomic`] with the file's mode (`cleanroom.lock` and scaffold
/// files are for people to read and run, not private).
///
/// # Errors
/// The I/O error, with the file named.
pub fn write_atomic_mode(file: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let temporary = file.with_extension(format!("tmp{}", std::process::id()));
    let written = (|| {
        let mut out = fs_err::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&temporary)?;
        out.write_all(bytes)?;
        out.sync_all()?;
        fs_err::rename(&temporary, file)
    })();
    if written.is_err() {
        let _ = fs_err::remove_file(&temporary);
    }
    written
}

/// Number of regular files under `dir` (recursively) and their total size.
pub fn usage(dir: &Path) -> (usize, u64) {
    let Ok(entries) = fs_err::read_dir(dir) else { return (0, 0) };
    entries.flatten().fold((0, 0), |(n, bytes), entry| match entry.file_type() {
        Ok(t) if t.is_dir() => {
            let (m, b) = usage(&entry.path());
            (n + m, bytes + b)
        }
        Ok(t) if t.is_file() => (n + 1, bytes + entry.metadata().map(|m| m.len()).unwrap_or(0)),
        _ => (n, bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::DirBuilder::new().mode(0o777).create(&shared).unwrap();
        std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        assert!(private_dir(&shared).unwrap_err().contains("owned by this user alone"));
        assert!(private_dir(&dir.path().join("mine")).is_ok());
    }

    #[test]
    fn a_file_others_can_write_is_not_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("entry");
        write_atomic(&file, b"ok").unwrap();
        assert_eq!(read_private(&file).as_deref(), Some(&b"ok"[..]));
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
        assert_eq!(read_private(&file), None);
    }
}
