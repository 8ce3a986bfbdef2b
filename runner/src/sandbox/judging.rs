//! The `judging` capability, sandbox half: what an evaluator may learn about
//! the scenario run it judges, and the few things it may tell the host
//! besides its verdict (the plan half is the evaluator's own settings in
//! [`crate::plan::gates`]).
//!
//! One [`JudgingRun`] per `evaluate` call. It answers `target` and
//! `run-index`, looks verdicts up in and files them into the runner's
//! verdict cache ([`VerdictCache`]) under a key the host completes, and
//! records a council's votes and a give-up for the backend to read when
//! the call returns. Nothing here reaches a stage: the backend turns a
//! give-up into an `error` of the step and votes into the report's figures.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::bindings::evaluator::cleanroom::plugin::judging::Host;
/// What an evaluator step can reach, as `judging.target` tells it.
pub use super::bindings::evaluator::cleanroom::plugin::judging::Reach;
use super::{StepState, Verdict};

/// A verdict as the verdict cache keeps it, with the council's votes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredVerdict {
    /// Whether the run passed.
    pub passed: bool,
    /// Its one line.
    pub summary: String,
    /// Its detail, for humans.
    pub detail: String,
    /// The council's votes, if the judge reported them.
    pub votes: Vec<bool>,
}

/// Where verdicts are remembered across runs: the runner's private cache,
/// authenticated like its step results ([`crate::exec::results`]).
pub trait VerdictCache: Send + Sync {
    /// The verdict filed under `key`, if one is and it verifies.
    fn get(&self, key: &str) -> Option<StoredVerdict>;
    /// Files `verdict` under `key` (best effort).
    fn put(&self, key: &str, verdict: &StoredVerdict);
}

/// Where a step's verdicts are remembered, and the salt their keys get
/// (the plugin's digest and the digest of what is judged).
pub type Verdicts = (Arc<dyn VerdictCache>, String);

/// What is known of one scenario run while the evaluator judges it.
pub struct JudgingRun {
    /// 1 up to the step's `repeat`.
    index: u32,
    /// What the step can reach.
    target: Reach,
    /// The cache and the salt every key is completed with: the plugin's
    /// digest and the digest of what is judged.
    cache: Option<Verdicts>,
    notes: Mutex<RunNotes>,
}

/// What the evaluator told the host during the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunNotes {
    /// The council's votes (empty when not reported).
    pub votes: Vec<bool>,
    /// Set when the evaluator gave up on the run, with its reason.
    pub gave_up: Option<String>,
    /// Whether the verdict came from the cache (`recall` answered).
    pub recalled: bool,
}

impl JudgingRun {
    /// Run `index` of a scenario of a step that reaches `target`, with
    /// verdicts cached in `cache` under keys salted with `salt`.
    pub fn new(index: u32, target: Reach, cache: Option<Verdicts>) -> JudgingRun {
        JudgingRun { index, target, cache, notes: Mutex::new(RunNotes::default()) }
    }

    /// What the evaluator said during the run.
    pub fn notes(&self) -> RunNotes {
        self.notes.lock().map(|n| n.clone()).unwrap_or_default()
    }

    /// The file key of the plugin's `key` for this run: the salt (plugin and
    /// judged digests), the run index and the key, hashed.
    fn full_key(&self, salt: &str, key: &str) -> String {
        let mut hash = Sha256::new();
        for part in ["cleanroom verdict v1", salt, &self.index.to_string(), key] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
        crate::plugin::hex(&hash.finalize())
    }

    fn with_notes(&self, change: impl FnOnce(&mut RunNotes)) {
        if let Ok(mut notes) = self.notes.lock() {
            change(&mut notes);
        }
    }
}

/// The target of a step that judges nothing but files.
fn no_target() -> Reach {
    Reach { subject: false, service: false, twins: Vec::new() }
}

impl Host for StepState {
    async fn target(&mut self) -> Reach {
        self.judging.as_ref().map_or_else(no_target, |run| run.target.clone())
    }

    async fn run_index(&mut self) -> u32 {
        self.judging.as_ref().map_or(1, |run| run.index)
    }

    async fn recall(&mut self, key: String) -> Option<Verdict> {
        let run = self.judging.as_ref()?;
        let (cache, salt) = run.cache.as_ref()?;
        let stored = cache.get(&run.full_key(salt, &key))?;
        run.with_notes(|notes| {
            notes.votes = stored.votes.clone();
            notes.recalled = true;
        });
        Some(Verdict { passed: stored.passed, summary: stored.summary, detail: stored.detail })
    }

    async fn remember(&mut self, key: String, verdict: Verdict) {
        let Some(run) = self.judging.as_ref() else { return };
        let Some((cache, salt)) = run.cache.as_ref() else { return };
        let notes = run.notes();
        if notes.gave_up.is_some() {
            return;
        }
        let stored = StoredVerdict {
            passed: verdict.passed,
            summary: verdict.summary,
            detail: verdict.detail,
            votes: notes.votes,
        };
        cache.put(&run.full_key(salt, &key), &stored);
    }

    async fn votes(&mut self, votes: Vec<bool>) {
        if let Some(run) = &self.judging {
            run.with_notes(|notes| notes.votes = votes);
        }
    }

    async fn give_up(&mut self, reason: String) {
        if let Some(run) = &self.judging {
            let reason = reason.lines().next().unwrap_or_default().chars().take(300).collect::<String>();
            run.with_notes(|notes| notes.gave_up = Some(reason));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_salt_index_and_key() {
        let run = |index| JudgingRun::new(index, no_target(), None);
        let base = run(1).full_key("salt", "k");
        assert_eq!(base, run(1).full_key("salt", "k"));
        assert_ne!(base, run(2).full_key("salt", "k"), "the run index is part of the key");
        assert_ne!(base, run(1).full_key("salt2", "k"), "the judged program is part of the key");
        assert_ne!(base, run(1).full_key("salt", "k2"));
        // Length-prefixed parts: moving a boundary changes the key.
        assert_ne!(run(1).full_key("ab", "c"), run(1).full_key("a", "bc"));
    }
}
