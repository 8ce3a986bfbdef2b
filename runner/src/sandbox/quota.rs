//! The write quota: how much a stage may write before it is stopped.
//!
//! A stage writes only to private directories (its staged copies, and for
//! native programs its temporary directory). [`Quota::exceeded`] measures
//! them every [`INTERVAL`] and resolves once they hold more than the step's
//! `max_write` bytes, each file, directory or link counting
//! [`ENTRY_COST`] bytes on top of its size (so a million empty files is as
//! bounded as one huge file); the executor then drops the running step
//! (which stops a plugin and kills a program's process group) and reports
//! an error. Symlinks are counted, never followed.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often usage is measured while a stage runs.
pub const INTERVAL: Duration = Duration::from_millis(50);
/// What each file, directory or link costs toward the quota besides its size.
pub const ENTRY_COST: u64 = 4096;

/// The places a stage writes and how much they may hold.
#[derive(Debug, Clone)]
pub struct Quota {
    dirs: Vec<PathBuf>,
    max_bytes: u64,
}

impl Quota {
    /// A quota of `max_bytes` over `dirs`.
    pub fn new(dirs: Vec<PathBuf>, max_bytes: u64) -> Quota {
        Quota { dirs, max_bytes }
    }

    /// Why the quota is exceeded now, if it is.
    pub fn check(&self) -> Option<String> {
        let mut usage = Usage::default();
        for dir in &self.dirs {
            usage.add(dir, self.max_bytes);
        }
        (usage.bytes > self.max_bytes).then(|| {
            format!(
                "exceeded its write quota of {} (`max_write`; {} files and directories written)",
                crate::manifest::ByteSize(self.max_bytes),
                usage.files
            )
        })
    }

    /// Resolves, with the reason, once the quota is exceeded; never otherwise.
    pub async fn exceeded(&self) -> String {
        loop {
            tokio::time::sleep(INTERVAL).await;
            let quota = self.clone();
            if let Ok(Some(why)) = tokio::task::spawn_blocking(move || quota.check()).await {
                return why;
            }
        }
    }
}

#[derive(Debug, Default)]
struct Usage {
    bytes: u64,
    files: u64,
}

impl Usage {
    /// Adds what is under `path`, stopping early once past the limits.
    fn add(&mut self, path: &Path, max_bytes: u64) {
        let Ok(entries) = fs_err::read_dir(path) else { return };
        for entry in entries.flatten() {
            if self.bytes > max_bytes {
                return;
            }
            self.files += 1;
            self.bytes += ENTRY_COST;
            let Ok(meta) = fs_err::symlink_metadata(entry.path()) else { continue };
            if meta.is_dir() {
                self.add(&entry.path(), max_bytes);
            } else {
                self.bytes += meta.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_files_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("a")).unwrap();
        fs_err::write(dir.path().join("a/x"), vec![0u8; 2000]).unwrap();
        let used = 2000 + 2 * ENTRY_COST;
        assert_eq!(Quota::new(vec![dir.path().into()], used).check(), None);
        let over = Quota::new(vec![dir.path().into()], used - 1).check().unwrap();
        assert_eq!(
            over,
            format!("exceeded its write quota of {}B (`max_write`; 2 files and directories written)", used - 1)
        );
    }
}
