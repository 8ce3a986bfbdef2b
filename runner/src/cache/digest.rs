//! Content digests of step inputs, fast when nothing changed.
//!
//! A [`Digester`] hashes a workspace path (a file, or a directory tree) into
//! one sha256 over every entry's relative path, type, executable bit and
//! content (a symlink by its target text, never followed). The run directory
//! `.cleanroom/` at the workspace root and every `.git` below the path
//! ([`crate::manifest::GIT_DIR`]) are left out. Directories are listed
//! in one pass, then files are stat'ed and hashed on all cores (rayon).
//!
//! Hashing every byte on every run would make a no-change rerun cost as much
//! as reading the tree, so each file's sha256 is remembered with its
//! identity (device, inode, size, mtime and ctime, in nanoseconds) in
//! `.cleanroom/digests.json`; a file whose identity is unchanged is not read
//! again. ctime cannot be set from user space, so rewriting a file and
//! restoring its mtime still changes it. A file modified in the last two
//! seconds is hashed but not remembered (git's "racy" rule): a write in the
//! same timestamp tick as the hash could otherwise go unseen.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::manifest::{GIT_DIR, RUN_DIR};
use crate::plugin::hex;

/// The memo file, in the run directory.
const MEMO_FILE: &str = "digests.json";

/// Files modified this recently are not remembered, in nanoseconds.
const RACY_NS: i128 = 2_000_000_000;

/// What identifies a file's contents without reading them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i128,
    ctime: i128,
}

impl Identity {
    fn of(meta: &std::fs::Metadata) -> Identity {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: ns(meta.mtime(), meta.mtime_nsec()),
            ctime: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Remembered {
    identity: Identity,
    sha256: String,
}

/// Hashes workspace paths, remembering file digests between runs.
#[derive(Debug)]
pub struct Digester {
    workspace: PathBuf,
    memo: Mutex<HashMap<String, Remembered>>,
    /// Files read and hashed (not answered from the memo) so far.
    hashed: std::sync::atomic::AtomicUsize,
}

impl Digester {
    /// A digester for `workspace`, with the memo a previous run saved.
    pub fn open(workspace: &Path) -> Digester {
        let memo = fs_err::read(workspace.join(RUN_DIR).join(MEMO_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Digester { workspace: workspace.to_path_buf(), memo: Mutex::new(memo), hashed: Default::default() }
    }

    /// A digester that remembers nothing from before (for measurements).
    pub fn cold(workspace: &Path) -> Digester {
        Digester { workspace: workspace.to_path_buf(), memo: Mutex::default(), hashed: Default::default() }
    }

    /// How many files this digester has read and hashed.
    pub fn files_hashed(&self) -> usize {
        self.hashed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The digest of `path`: a file, a directory tree, or `missing`.
    pub fn digest(&self, path: &Path) -> String {
        self.digest_except(path, &[])
    }

    /// [`Digester::digest`], leaving out the workspace-relative directories
    /// `skip` (a step's `cache_dirs`, which it never sees the workspace's
    /// copy of).
    pub fn digest_except(&self, path: &Path, skip: &[String]) -> String {
        let skip: Vec<PathBuf> = skip.iter().map(|rel| self.workspace.join(rel)).collect();
        let mut entries = Vec::new();
        let mut files = Vec::new();
        match fs_err::symlink_metadata(path) {
            Err(_) => return "missing".to_string(),
            Ok(meta) if meta.is_dir() => self.list(path, "", &skip, &mut entries, &mut files),
            Ok(_) => files.push((String::new(), path.to_path_buf())),
        }
        let hashed: Vec<(String, String)> = files
            .par_iter()
            .map(|(rel, full)| {
                let line = match fs_err::symlink_metadata(full) {
                    Ok(meta) if meta.is_file() => match self.file_digest(full, &meta) {
                        Some(sha) => format!("f{}{sha}", if meta.mode() & 0o111 != 0 { 'x' } else { '-' }),
                        None => "unreadable".to_string(),
                    },
                    Ok(meta) if meta.is_symlink() => match fs_err::read_link(full) {
                        Ok(target) => format!("l {}", target.display()),
                        Err(_) => "unreadable".to_string(),
                    },
                    Ok(_) => "other".to_string(),
                    Err(_) => "vanished".to_string(),
                };
                (rel.clone(), line)
            })
            .collect();
        entries.extend(hashed);
        entries.sort();
        let mut hasher = Sha256::new();
        for (rel, line) in entries {
            hasher.update(rel.as_bytes());
            hasher.update([0]);
            hasher.update(line.as_bytes());
            hasher.update([0]);
        }
        hex(&hasher.finalize())
    }

    /// Lists `dir` recursively: directories into `entries`, everything else
    /// into `files` to be looked at in parallel.
    fn list(
        &self,
        dir: &Path,
        rel: &str,
        skip: &[PathBuf],
        entries: &mut Vec<(String, String)>,
        files: &mut Vec<(String, PathBuf)>,
    ) {
        let Ok(read) = fs_err::read_dir(dir) else {
            entries.push((rel.to_string(), "unreadable directory".to_string()));
            return;
        };
        entries.push((rel.to_string(), "d".to_string()));
        let run_dir = self.workspace.join(RUN_DIR);
        for entry in read.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path == run_dir || name == GIT_DIR || skip.contains(&path) {
                continue;
            }
            let child = if rel.is_empty() {
                name.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", name.to_string_lossy())
            };
            match entry.file_type() {
                Ok(t) if t.is_dir() => self.list(&path, &child, skip, entries, files),
                _ => files.push((child, path)),
            }
        }
    }

    /// The sha256 of the regular file `path` (not followed if a symlink),
    /// from the memo when its identity is unchanged: what the remote
    /// backend names each input file by.
    pub fn file_sha256(&self, path: &Path, meta: &std::fs::Metadata) -> Option<String> {
        self.file_digest(path, meta)
    }

    /// A regular file's sha256, from the memo when its identity is unchanged.
    fn file_digest(&self, path: &Path, meta: &std::fs::Metadata) -> Option<String> {
        let identity = Identity::of(meta);
        let key = path.to_str().map(str::to_string);
        if let Some(key) = &key {
            let memo = self.memo.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(known) = memo.get(key).filter(|r| r.identity == identity) {
                return Some(known.sha256.clone());
            }
        }
        let sha256 = sha256_file(path)?;
        self.hashed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128);
        if let Some(key) = key.filter(|_| identity.mtime.max(identity.ctime) < now - RACY_NS) {
            let mut memo = self.memo.lock().unwrap_or_else(|e| e.into_inner());
            memo.insert(key, Remembered { identity, sha256: sha256.clone() });
        }
        Some(sha256)
    }

    /// Writes the memo for the next run (best effort: a memo that cannot be
    /// written only costs time).
    pub fn save(&self) {
        let memo = self.memo.lock().unwrap_or_else(|e| e.into_inner());
        // Forget files that no longer exist, so the memo does not grow forever.
        let live: HashMap<&String, &Remembered> = memo.iter().filter(|(path, _)| Path::new(path).exists()).collect();
        let Ok(bytes) = serde_json::to_vec(&live) else { return };
        let dir = self.workspace.join(RUN_DIR);
        if fs_err::create_dir_all(&dir).is_ok() {
            let _ = super::write_atomic(&dir.join(MEMO_FILE), &bytes);
        }
    }
}

/// The sha256 of a file's contents, read in 64 KiB blocks.
pub fn sha256_file(path: &Path) -> Option<String> {
    let mut file = fs_err::File::open(path).ok()?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(hex(&hasher.finalize()))
}

/// A cheap digest of the files under `path`: every regular file's relative
/// path, size and modification time, in sorted order (contents are not
/// read). The run directory and symlinks are skipped.
pub fn digest_metadata(path: &Path) -> String {
    let mut entries = Vec::new();
    collect_metadata(path, Path::new(""), &mut entries);
    entries.sort();
    let mut hasher = Sha256::new();
    for entry in entries {
        hasher.update(entry.as_bytes());
        hasher.update(b"\n");
    }
    hex(&hasher.finalize())
}

fn collect_metadata(root: &Path, rel: &Path, out: &mut Vec<String>) {
    let path = root.join(rel);
    let Ok(meta) = fs_err::symlink_metadata(&path) else {
        out.push(format!("{} missing", rel.display()));
        return;
    };
    if meta.is_file() {
        let modified = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).unwrap_or_default();
        out.push(format!("{} {} {}", rel.display(), meta.len(), modified.as_nanos()));
    } else if meta.is_dir() {
        let Ok(entries) = fs_err::read_dir(&path) else { return };
        for entry in entries.flatten() {
            if (rel.as_os_str().is_empty() && entry.file_name() == RUN_DIR) || entry.file_name() == GIT_DIR {
                continue;
            }
            collect_metadata(root, &rel.join(entry.file_name()), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let ws = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(ws.path().join("src/deep")).unwrap();
        fs_err::write(ws.path().join("src/a.rs"), "fn a() {}").unwrap();
        fs_err::write(ws.path().join("src/deep/b.rs"), "fn b() {}").unwrap();
        ws
    }

    #[test]
    fn the_same_tree_elsewhere_has_the_same_digest_and_renames_change_it() {
        let (one, two) = (tree(), tree());
        let digester = Digester::cold(one.path());
        assert_eq!(
            digester.digest(&one.path().join("src")),
            Digester::cold(two.path()).digest(&two.path().join("src"))
        );
        fs_err::rename(two.path().join("src/a.rs"), two.path().join("src/c.rs")).unwrap();
        assert_ne!(
            digester.digest(&one.path().join("src")),
            Digester::cold(two.path()).digest(&two.path().join("src"))
        );
    }

    #[test]
    fn unchanged_files_are_answered_from_the_memo_and_rewritten_ones_are_not() {
        let ws = tree();
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        for file in ["src/a.rs", "src/deep/b.rs"] {
            fs_err::File::options().write(true).open(ws.path().join(file)).unwrap().set_modified(old).unwrap();
        }
        // ctime is now: wait out the racy window rather than fake it.
        std::thread::sleep(std::time::Duration::from_nanos(RACY_NS as u64 + 100_000_000));
        let first = Digester::open(ws.path());
        let digest = first.digest(&ws.path().join("src"));
        assert_eq!(first.files_hashed(), 2);
        first.save();
        let second = Digester::open(ws.path());
        assert_eq!(second.digest(&ws.path().join("src")), digest);
        assert_eq!(second.files_hashed(), 0, "unchanged files were read again");

        // Same size, mtime put back: the ctime still tells.
        let file = ws.path().join("src/a.rs");
        fs_err::write(&file, "fn x() {}").unwrap();
        fs_err::File::options().write(true).open(&file).unwrap().set_modified(old).unwrap();
        let third = Digester::open(ws.path());
        assert_ne!(third.digest(&ws.path().join("src")), digest, "a rewritten file was answered from the memo");
        assert_eq!(third.files_hashed(), 1);
    }

    #[test]
    fn the_run_directory_and_missing_paths() {
        let ws = tree();
        let digester = Digester::cold(ws.path());
        let before = digester.digest(ws.path());
        fs_err::create_dir_all(ws.path().join(RUN_DIR)).unwrap();
        fs_err::write(ws.path().join(RUN_DIR).join("x"), "journal").unwrap();
        assert_eq!(before, digester.digest(ws.path()));
        assert_eq!(digester.digest(&ws.path().join("nope")), "missing");
    }

    #[test]
    fn a_commit_changes_no_digest_but_a_mount_naming_git_sees_it() {
        let ws = tree();
        let digester = Digester::cold(ws.path());
        fs_err::create_dir_all(ws.path().join(".git/refs")).unwrap();
        fs_err::write(ws.path().join("src/.git"), "gitdir: ../.git/modules/src").unwrap();
        let before = (digester.digest(ws.path()), digester.digest(&ws.path().join(".git")));
        fs_err::write(ws.path().join(".git/refs/main"), "0123abcd").unwrap();
        fs_err::write(ws.path().join("src/.git"), "gitdir: elsewhere").unwrap();
        assert_eq!(before.0, digester.digest(ws.path()), "the tree's digest ignores every .git");
        assert_ne!(before.1, digester.digest(&ws.path().join(".git")), "a mount of .git itself is hashed");
    }

    #[test]
    fn a_symlink_is_digested_by_its_target_text_not_followed() {
        let ws = tree();
        std::os::unix::fs::symlink("/etc/passwd", ws.path().join("src/link")).unwrap();
        let digester = Digester::cold(ws.path());
        let before = digester.digest(&ws.path().join("src"));
        fs_err::remove_file(ws.path().join("src/link")).unwrap();
        std::os::unix::fs::symlink("/etc/hosts", ws.path().join("src/link")).unwrap();
        assert_ne!(before, digester.digest(&ws.path().join("src")));
    }

    #[test]
    fn metadata_digest_changes_when_a_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("a"), "1").unwrap();
        let before = digest_metadata(dir.path());
        assert_eq!(before, digest_metadata(dir.path()));
        fs_err::write(dir.path().join("a"), "22").unwrap();
        assert_ne!(before, digest_metadata(dir.path()));
    }
}
