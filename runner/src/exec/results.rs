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
//! a hit can [`replay`](crate::writes::replay) them exactly.
//!
//! A planted entry must never answer for a step (a `failed` check turned
//! `passed`, a stage's files swapped), and ownership proves nothing when a
//! jailed stage runs as the runner's user. So an entry file is
//! its JSON sealed ([`Key::seal`]): `<tag hex>\n<json>`, HMAC-SHA256 under the per-user
//! [`Key`] of a label, the entry's key (its file name: an entry moved under
//! another key does not verify) and the JSON; an entry that does not verify
//! is deleted and missed. Blobs are named by their sha256, which the
//! authenticated entry lists and which is checked on every read: a blob
//! that is not what the runner stored is never replayed. Without a key
//! (`cleanroom cache size/clean`) nothing is read or stored.
//!
//! A hit sets the mtime of the entry and of its blobs ([`touch`]), and a
//! blob stored again is touched too: that is their last use, by which
//! [`crate::cache::evict`] keeps the cache under its `max-size`
//! ([`ResultCache::enforce_limit`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cache::{private_dir, read_private, touch, write_atomic};
use crate::key::Key;
use crate::plan::{Action, Plan, Step};
use crate::plugin::hex;
use crate::report::{StepReport, StepStatus};
use crate::writes::WrittenFile;

/// Bumped when the key material or the entry format changes.
const FORMAT: u32 = 3;

/// Label of an entry's mac: no other tag of the runner verifies as one.
const ENTRY_LABEL: &[u8] = b"cleanroom result entry v1";

/// Label of a remembered verdict's mac.
const VERDICT_LABEL: &[u8] = b"cleanroom verdict entry v1";

/// The results and blobs directories under the cache root.
#[derive(Debug, Clone)]
pub struct ResultCache {
    /// The cache directory both live in.
    root: PathBuf,
    results: PathBuf,
    blobs: PathBuf,
    /// Authenticates entries; without it the cache is never used.
    key: Option<Key>,
    /// Whether this process filed anything: a run that only read the cache
    /// did not grow it, so it need not walk it for the size cap.
    grew: Arc<std::sync::atomic::AtomicBool>,
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
        let cache = ResultCache {
            root: root.to_path_buf(),
            results: root.join("results"),
            blobs: root.join("blobs"),
            key: None,
            grew: Default::default(),
        };
        private_dir(&cache.results)?;
        private_dir(&cache.blobs)?;
        Ok(cache)
    }

    /// The cache, reading and storing entries authenticated with `key`.
    pub fn with_key(mut self, key: Key) -> ResultCache {
        self.key = Some(key);
        self
    }

    /// The entry for `key`, with its blobs, if all of it is present, was
    /// written by this runner (its mac verifies) and is intact.
    pub fn get(&self, key: &str) -> Option<Hit> {
        let mac_key = self.key.as_ref()?;
        let file = self.results.join(format!("{key}.json"));
        let bytes = read_private(&file)?;
        let Some(json) = mac_key.unseal(ENTRY_LABEL, key, &bytes) else {
            tracing::warn!("result cache: `{}` was not written by this runner; deleted", file.display());
            let _ = fs_err::remove_file(&file);
            return None;
        };
        let entry: Entry = serde_json::from_slice(json).ok()?;
        let mut files = Vec::with_capacity(entry.files.len());
        let mut blobs = Vec::with_capacity(entry.files.len());
        for record in entry.files {
            let blob = self.blobs.join(&record.sha256);
            let bytes = read_private(&blob)?;
            if hex(&Sha256::digest(&bytes)) != record.sha256 {
                tracing::warn!("result cache: `{}` does not match its sha256; deleted", blob.display());
                let _ = fs_err::remove_file(&blob);
                return None;
            }
            files.push(WrittenFile { path: record.path, bytes, mode: record.mode });
            blobs.push(blob);
        }
        // A hit: the entry and its blobs were used now, so they are evicted last.
        for used in std::iter::once(&file).chain(&blobs) {
            touch(used);
        }
        let mut report = entry.report;
        report.cached = true;
        Some(Hit { report, files, removed: entry.removed })
    }

    /// Files `report` under `key` if it is worth keeping; `written` are the
    /// files a passed stage wrote. Best effort: a cache that cannot be
    /// written only costs time, and says so at debug level.
    pub fn put(&self, key: &str, report: &StepReport, written: &[WrittenFile]) {
        let Some(mac_key) = &self.key else { return };
        if !matches!(report.status, StepStatus::Passed | StepStatus::Failed) {
            return;
        }
        self.grew.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut files = Vec::with_capacity(written.len());
        for file in written {
            let sha256 = hex(&Sha256::digest(&file.bytes));
            let blob = self.blobs.join(&sha256);
            // A blob already there is kept only if it is what its name says,
            // and is then used again: it ages with this entry, not its first.
            if read_private(&blob).is_some_and(|bytes| hex(&Sha256::digest(&bytes)) == sha256) {
                touch(&blob);
            } else if let Err(e) = write_atomic(&blob, &file.bytes) {
                tracing::debug!("result cache: cannot store a blob: {e}");
                return;
            }
            files.push(FileRecord { path: file.path.clone(), sha256, mode: file.mode });
        }
        let removed = report.changes.iter().filter_map(crate::report::Change::removed).map(str::to_string).collect();
        let entry = Entry { report: report.clone(), files, removed };
        let Ok(json) = serde_json::to_vec(&entry) else { return };
        let sealed = mac_key.seal(ENTRY_LABEL, key, &json);
        if let Err(e) = write_atomic(&self.results.join(format!("{key}.json")), &sealed) {
            tracing::debug!("result cache: cannot store a result: {e}");
        }
    }

    /// Keeps the whole cache directory under its `max-size`, deleting the
    /// least recently used entries first ([`crate::cache::evict::enforce`]);
    /// called once at the end of a run, after its results are stored, so
    /// the cache cannot grow without bound. Says at info level what it
    /// deleted.
    ///
    /// Skipped (nothing evicted) when this process filed nothing and
    /// `build_dirs_used` is false: the cache did not grow.
    pub fn enforce_limit(&self, build_dirs_used: bool) -> crate::cache::evict::Evicted {
        if !build_dirs_used && !self.grew.load(std::sync::atomic::Ordering::Relaxed) {
            return crate::cache::evict::Evicted::default();
        }
        let evicted = crate::cache::evict::enforce(&self.root);
        if evicted.files > 0 {
            tracing::info!(
                "the cache `{}` was over its max-size: deleted {} least recently used entries ({})",
                self.root.display(),
                evicted.files,
                crate::manifest::units::human_size(evicted.bytes)
            );
        }
        evicted
    }

    /// Deletes every result, verdict and blob; returns how many files.
    pub fn clean(&self) -> usize {
        [&self.results, &self.results.join("verdicts"), &self.blobs]
            .iter()
            .filter_map(|dir| fs_err::read_dir(dir).ok())
            .flat_map(|entries| entries.flatten())
            .filter(|e| fs_err::remove_file(e.path()).is_ok())
            .count()
    }
}

/// Evaluators' remembered verdicts (`judging.remember`), in `results/verdicts/`,
/// sealed like step results: a verdict planted by anything but this
/// runner never answers for a run.
impl crate::sandbox::judging::VerdictCache for ResultCache {
    fn get(&self, key: &str) -> Option<crate::sandbox::judging::StoredVerdict> {
        let mac_key = self.key.as_ref()?;
        let file = self.results.join("verdicts").join(format!("{key}.json"));
        let bytes = read_private(&file)?;
        let Some(json) = mac_key.unseal(VERDICT_LABEL, key, &bytes) else {
            tracing::warn!("verdict cache: `{}` was not written by this runner; deleted", file.display());
            let _ = fs_err::remove_file(&file);
            return None;
        };
        let verdict: crate::sandbox::judging::StoredVerdict = serde_json::from_slice(json).ok()?;
        // A hit: used now, so evicted last.
        touch(&file);
        Some(verdict)
    }

    fn put(&self, key: &str, verdict: &crate::sandbox::judging::StoredVerdict) {
        let Some(mac_key) = &self.key else { return };
        let dir = self.results.join("verdicts");
        if let Err(e) = private_dir(&dir) {
            tracing::debug!("verdict cache: {e}");
            return;
        }
        let Ok(json) = serde_json::to_vec(verdict) else { return };
        if let Err(e) = write_atomic(&dir.join(format!("{key}.json")), &mac_key.seal(VERDICT_LABEL, key, &json)) {
            tracing::debug!("verdict cache: cannot store a verdict: {e}");
        }
    }
}

/// A result cache shared beyond this machine, asked after the local one
/// ([`crate::remote`] is one, over REAPI). The executor hands it each step
/// before running it and files what ran; what a shared result may do is
/// the implementation's to bound, and it must answer only with `passed` or
/// `failed` results whose files it has checked.
pub trait SharedCache: Send + Sync {
    /// The step's entry (its key, computed before it runs, since a stage
    /// changes its own inputs); `None` when it cannot have one (an input
    /// cannot be read: the step just runs).
    fn entry<'a>(&'a self, step: &'a Step, attempt: u32, feedback: &'a [String]) -> Option<Box<dyn SharedEntry + 'a>>;
}

/// One step's place in a [`SharedCache`].
pub trait SharedEntry: Send + Sync {
    /// The result filed here, if there is a usable one.
    fn lookup(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Hit>> + Send + '_>>;

    /// Files `report` and a stage's `written` files here (best effort).
    fn store<'a>(
        &'a self,
        report: &'a StepReport,
        written: &'a [WrittenFile],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;
}

/// What a step's result is filed under: everything that can change what
/// the step does, listed field by field, and nothing else. Not in it: the
/// step's id (two steps doing the same work share a result), its `needs`
/// and `retry` (where it sits in the graph), its line in the pipeline file
/// (a comment added above it changes nothing), whether it is cached or
/// excluded, and its attempt budget.
#[derive(Debug, Serialize)]
pub struct CacheKey<'s> {
    /// Bumped when what a key covers changes.
    format: u32,
    /// The runner's version: another runner may run steps differently.
    runner: &'static str,
    /// A program's working directory.
    workspace: &'s Path,
    /// Check, stage or evaluator.
    kind: crate::plan::StepKind,
    /// The plugin (by name) or the program, its arguments and display.
    action: &'s Action,
    /// The plugin's or the program's sha256.
    code: String,
    /// The step's `config` JSON.
    config: &'s str,
    /// Mounts, limits, environment, network, secrets' names, tools.
    grant: &'s crate::plan::Grant,
    /// An evaluator's k-of-n settings and subject.
    evaluation: Option<&'s crate::plan::gates::Evaluation>,
    /// Metadata digests of a program's `tools` (a toolchain's left out).
    tools: Vec<String>,
    /// Content digests of a toolchain's binaries: with its version (in the
    /// grant), what stands for its files.
    toolchain: Vec<String>,
    /// Content digests of every mount and the subject, by path.
    inputs: &'s BTreeMap<String, String>,
    /// The attempt the step is told ([`crate::plan::Step::told_attempt`]).
    attempt: u32,
    /// A stage's retry feedback.
    feedback: &'s [String],
}

impl<'s> CacheKey<'s> {
    /// The key of `step` in `plan`, given its input digests (as the journal
    /// records them) and the attempt and feedback it gets; `digester`
    /// remembers the digests of programs and toolchain binaries between runs.
    pub fn of(
        plan: &'s Plan,
        step: &'s Step,
        inputs: &'s BTreeMap<String, String>,
        attempt: u32,
        feedback: &'s [String],
        digester: &crate::cache::digest::Digester,
    ) -> CacheKey<'s> {
        let sha256 = |path: &Path| {
            fs_err::metadata(path).ok().and_then(|meta| digester.file_sha256(path, &meta)).unwrap_or_default()
        };
        let code = match &step.action {
            Action::Plugin(name) => plan.plugins.get(name).map(|info| info.sha256.clone()).unwrap_or_default(),
            Action::Command { program, .. } => sha256(program),
        };
        let toolchain = step.grant.native().and_then(|n| n.toolchain.as_ref());
        let walked = |tool: &&std::path::PathBuf| !toolchain.is_some_and(|t| t.paths.contains(tool));
        CacheKey {
            format: FORMAT,
            runner: env!("CARGO_PKG_VERSION"),
            workspace: &plan.workspace,
            kind: step.kind,
            action: &step.action,
            code,
            config: &step.config,
            grant: &step.grant,
            evaluation: step.evaluation.as_ref(),
            tools: step.grant.tools().iter().filter(walked).map(|t| crate::cache::digest::digest_metadata(t)).collect(),
            toolchain: toolchain.iter().flat_map(|t| t.binaries.iter()).map(|b| sha256(b)).collect(),
            inputs,
            attempt: step.told_attempt(attempt),
            feedback,
        }
    }

    /// The key as the entry's file name: sha256 of its JSON, hex.
    pub fn digest(&self) -> String {
        hex(&Sha256::digest(serde_json::to_string(self).unwrap_or_default().as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::StepKind;

    fn report(status: StepStatus) -> StepReport {
        let mut report = StepReport::skipped("gate", StepKind::Stage, String::new());
        report.status = status;
        report.reason = None;
        report
    }

    fn cache(root: &Path, byte: u8) -> ResultCache {
        ResultCache::open(root).unwrap().with_key(Key::from_bytes([byte; 32], root))
    }

    #[test]
    fn remembered_verdicts_are_authenticated_and_bound_to_their_key() {
        use crate::sandbox::judging::{StoredVerdict, VerdictCache};
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path(), 1);
        let failed = StoredVerdict { passed: false, summary: "no".into(), detail: String::new(), votes: vec![false] };
        VerdictCache::put(&cache, "k1", &failed);
        assert_eq!(VerdictCache::get(&cache, "k1"), Some(failed.clone()));
        assert_eq!(VerdictCache::get(&cache, "k2"), None);
        let file = |key: &str| dir.path().join("results/verdicts").join(format!("{key}.json"));
        // Moved under another key, edited to pass, or planted in plain JSON:
        // never believed, and deleted.
        fs_err::copy(file("k1"), file("k2")).unwrap();
        assert_eq!(VerdictCache::get(&cache, "k2"), None);
        assert!(!file("k2").exists());
        let text = fs_err::read_to_string(file("k1")).unwrap();
        write_atomic(&file("k1"), text.replace("\"passed\":false", "\"passed\":true").as_bytes()).unwrap();
        assert_eq!(VerdictCache::get(&cache, "k1"), None);
        let planted = serde_json::to_vec(&StoredVerdict { passed: true, ..failed.clone() }).unwrap();
        write_atomic(&file("k3"), &planted).unwrap();
        assert_eq!(VerdictCache::get(&cache, "k3"), None);
        // Another runner's key does not verify either.
        VerdictCache::put(&cache, "k4", &failed);
        let other = ResultCache::open(dir.path()).unwrap().with_key(Key::from_bytes([2; 32], dir.path()));
        assert_eq!(VerdictCache::get(&other, "k4"), None);
    }

    #[test]
    fn entries_are_authenticated_and_bound_to_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let results = cache(dir.path(), 1);
        let file = WrittenFile { path: "out/a".into(), bytes: b"made".to_vec(), mode: 0o644 };
        results.put("passing", &report(StepStatus::Passed), std::slice::from_ref(&file));
        results.put("failing", &report(StepStatus::Failed), &[]);
        let hit = results.get("passing").expect("a hit");
        assert_eq!((hit.report.status, hit.files[0].bytes.as_slice()), (StepStatus::Passed, &b"made"[..]));
        // Another key's runner, or no key at all, never uses it.
        assert!(cache(dir.path(), 2).get("failing").is_none());
        assert!(ResultCache::open(dir.path()).unwrap().get("passing").is_none());

        let results = cache(dir.path(), 1);
        results.put("failing", &report(StepStatus::Failed), &[]);
        let entry = |k: &str| dir.path().join("results").join(format!("{k}.json"));
        // The passed entry copied over the failing one.
        fs_err::copy(entry("passing"), entry("failing")).unwrap();
        assert!(results.get("failing").is_none(), "an entry moved to another key was used");
        assert!(!entry("failing").exists(), "the planted entry was kept");
        // The failing entry edited to say passed, or a plain entry planted.
        results.put("failing", &report(StepStatus::Failed), &[]);
        let text = fs_err::read_to_string(entry("failing")).unwrap();
        write_atomic(&entry("failing"), text.replace("\"failed\"", "\"passed\"").as_bytes()).unwrap();
        assert!(results.get("failing").is_none());
        let json = serde_json::to_vec(&Entry { report: report(StepStatus::Passed), files: vec![], removed: vec![] });
        write_atomic(&entry("failing"), &json.unwrap()).unwrap();
        assert!(results.get("failing").is_none());
        // A blob swapped under its name.
        write_atomic(&dir.path().join("blobs").join(hex(&Sha256::digest(b"made"))), b"evil").unwrap();
        assert!(results.get("passing").is_none());
        // ... and put mends it.
        results.put("passing", &report(StepStatus::Passed), &[file]);
        assert_eq!(results.get("passing").unwrap().files[0].bytes, b"made");
    }

    #[test]
    fn a_comment_above_a_step_does_not_change_its_cache_key_but_its_settings_do() {
        let dir = tempfile::tempdir().unwrap();
        let key_of = |pipeline: &str| {
            let path = dir.path().join("cleanroom.toml");
            fs_err::write(&path, pipeline).unwrap();
            let plan = Plan::load(&path).unwrap();
            let step = &plan.steps[0];
            assert!(step.line > 0);
            CacheKey::of(&plan, step, &BTreeMap::new(), 1, &[], &crate::cache::digest::Digester::cold(dir.path()))
                .digest()
        };
        let plain = key_of("[pipeline]\nname = \"c\"\n[check.t]\nrun = [\"true\"]\n");
        let commented = key_of("[pipeline]\nname = \"c\"\n# why this check exists\n\n[check.t]\nrun = [\"true\"]\n");
        assert_eq!(plain, commented, "a comment moved the step's line and changed its key");
        let renamed = key_of("[pipeline]\nname = \"c\"\n[check.other-id]\nrun = [\"true\"]\n");
        assert_eq!(plain, renamed, "the id is not part of the key");
        let changed = key_of("[pipeline]\nname = \"c\"\n[check.t]\nrun = [\"true\", \"x\"]\n");
        assert_ne!(plain, changed, "an argument is part of the key");
    }
}
