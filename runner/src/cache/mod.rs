//! The runner's caches and where they live.
//!
//! One private directory per user (`CLEANROOM_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/cleanroom`, else `~/.cache/cleanroom`), mode 0700, holds
//! precompiled plugins ([`crate::sandbox::cache`], top level), step results
//! ([`crate::exec::results`], `results/`) and the files cached stages wrote (`blobs/`).
//! Everything in it is written to a temporary name and renamed into place,
//! and only regular files owned by this user and writable by nobody else
//! are ever read back. [`digest`] hashes step inputs for the result cache
//! and the journal; its memo lives in the workspace, not here.

pub mod digest;

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
