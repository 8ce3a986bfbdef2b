//! The result cache: a step whose inputs did not change is not run again.
//!
//! A result is filed under a [`key`]: the sha256 of everything that can
//! change what the step does — the runner's version, the step as planned
//! (action, config, mounts, limits, environment, network, evaluation
//! settings), the plugin's sha256 or the program's, metadata digests of a
//! program's `tools`, content digests of every mount and of the subject
//! ([`super::digest`]), the workspace's path (a program's working
//! directory), and for stages the attempt and feedback they get. The step's
//! id is not part of it: two steps that do the same work share a result.
//!
//! Only results that say something about the inputs are kept: `passed` and
//! `failed`. Errors (timeouts, traps, a jail that could not be set up) are
//! about the machine, and are run again. A passed stage's entry also keeps
//! the files it wrote (by sha256, in `blobs/`) and the paths it removed, so
//! a hit can [`replay`](crate::exec::writes::replay) them exactly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{private_dir, read_private, write_atomic};
use crate::exec::writes::WrittenFile;
use crate::plan::{Action, Plan, Step};
use crate::plugin::hex;
use crate::report::{StepReport, StepStatus};

/// Bumped when the key material or the entry format changes.
const FORMAT: u32 = 1;

/// The results and blobs directories under the cache root.
#[derive(Debug, Clone)]
pub struct ResultCache {
    results: PathBuf,
    blobs: PathBuf,
}

/// A file in a cached stage result, by content.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileRecord {
    path: String,
    sha256: String,
    mode: u32,
}

/// What is stored per key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    report: StepReport,
    files: Vec<FileRecord>,
    removed: Vec<String>,
}

/// A cached result: the report as it was, and a stage's writes to replay.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The report of the run that was cached, marked `cached`.
    pub report: StepReport,
    /// Files to write, whole.
    pub files: Vec<WrittenFile>,
    /// Workspace paths to remove.
    pub removed: Vec<String>,
}

impl ResultCache {
    /// Opens (creating, mode 0700) `results/` and `blobs/` under `root`.
    ///
    /// # Errors
    /// When they cannot be created or are not this user's alone.
    pub fn open(root: &Path) -> Result<ResultCache, String> {
        private_dir(root)?;
        let cache = ResultCache { results: root.join("results"), blobs: root.join("blobs") };
        private_dir(&cache.results)?;
        private_dir(&cache.blobs)?;
        Ok(cache)
    }

    /// The entry for `key`, with its blobs, if all of it is present and intact.
    pub fn get(&self, key: &str) -> Option<Hit> {
        let bytes = read_private(&self.results.join(format!("{key}.json")))?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        let mut files = Vec::with_capacity(entry.files.len());
        for record in entry.files {
            let bytes = read_private(&self.blobs.join(&record.sha256))?;
            if hex(&Sha256::digest(&bytes)) != record.sha256 {
                return None;
            }
            files.push(WrittenFile { path: record.path, bytes, mode: record.mode });
        }
        let mut report = entry.report;
        report.cached = true;
        Some(Hit { report, files, removed: entry.removed })
    }

    /// Files `report` under `key` if it is worth keeping; `written` are the
    /// files a passed stage wrote. Best effort: a cache that cannot be
    /// written only costs time, and says so at debug level.
    pub fn put(&self, key: &str, report: &StepReport, written: &[WrittenFile]) {
        if !matches!(report.status, StepStatus::Passed | StepStatus::Failed) {
            return;
        }
        let mut files = Vec::with_capacity(written.len());
        for file in written {
            let sha256 = hex(&Sha256::digest(&file.bytes));
            let blob = self.blobs.join(&sha256);
            if !blob.exists() {
                if let Err(e) = write_atomic(&blob, &file.bytes) {
                    tracing::debug!("result cache: cannot store a blob: {e}");
                    return;
                }
            }
            files.push(FileRecord { path: file.path.clone(), sha256, mode: file.mode });
        }
        let removed = report.changes.iter().filter_map(|c| c.strip_prefix("- ")).map(str::to_string).collect();
        let entry = Entry { report: report.clone(), files, removed };
        let Ok(bytes) = serde_json::to_vec(&entry) else { return };
        if let Err(e) = write_atomic(&self.results.join(format!("{key}.json")), &bytes) {
            tracing::debug!("result cache: cannot store a result: {e}");
        }
    }

    /// Deletes every result and blob; returns how many files.
    pub fn clean(&self) -> usize {
        [&self.results, &self.blobs]
            .iter()
            .filter_map(|dir| fs_err::read_dir(dir).ok())
            .flat_map(|entries| entries.flatten())
            .filter(|e| fs_err::remove_file(e.path()).is_ok())
            .count()
    }
}

/// The result-cache key of `step` in `plan`, given its input digests (as the
/// journal records them) and, for stages, its attempt and feedback.
pub fn key(plan: &Plan, step: &Step, inputs: &BTreeMap<String, String>, attempt: u32, feedback: &[String]) -> String {
    let action = match &step.action {
        Action::Plugin(name) => plan.plugins.get(name).map(|info| info.sha256.clone()).unwrap_or_default(),
        Action::Command { program, .. } => super::digest::sha256_file(program).unwrap_or_default(),
    };
    let tools: Vec<String> = step.grant.tools.iter().map(|t| crate::journal::digest_metadata(t)).collect();
    let mut planned = serde_json::to_value(step).unwrap_or_default();
    if let Some(object) = planned.as_object_mut() {
        object.remove("id");
        object.remove("needs");
        object.remove("retry");
    }
    let material = serde_json::json!({
        "format": FORMAT,
        "runner": env!("CARGO_PKG_VERSION"),
        "workspace": plan.workspace,
        "step": planned,
        "action": action,
        "tools": tools,
        "inputs": inputs,
        "attempt": attempt,
        "feedback": feedback,
    });
    hex(&Sha256::digest(material.to_string().as_bytes()))
}
