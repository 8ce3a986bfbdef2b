//! The journal: an append-only record of a run, for audit and resume.
//!
//! Each run writes `.cleanroom/runs/<run-id>/` in the workspace:
//! `events.jsonl`, one [`Event`] per line in a `{"type": ..., "data": ...}`
//! envelope, each line written before the run goes on (so it survives the
//! runner being killed) and fsync'd (so it survives the machine going down)
//! when it marks a change of the workspace or of the run's course: see
//! [`Event::is_commit_point`]; and
//! `report.json`, the final report, replaced atomically (written to a
//! temporary file, fsync'd, renamed). A run whose journal has no
//! `run_finished` event is unfinished and can be resumed. Run ids sort by
//! start time. Nothing secret is ever written here.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::plan::mounts::RUN_DIR;
use crate::report::{StepReport, StepStatus};

/// One thing that happened in a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Event {
    /// The run began.
    RunStarted {
        /// Its id.
        run_id: String,
        /// `[pipeline] name`.
        pipeline: String,
        /// sha256 of every plugin, by name.
        plugins: BTreeMap<String, String>,
    },
    /// A step began.
    StepStarted {
        /// Step id.
        step: String,
        /// Round of the run (1, then +1 per retry).
        round: u32,
        /// The step's attempt number.
        attempt: u32,
        /// Digest of each mounted input (and the subject), by path.
        inputs: BTreeMap<String, String>,
    },
    /// A step ended.
    StepFinished {
        /// Step id.
        step: String,
        /// Round of the run.
        round: u32,
        /// How it ended.
        status: StepStatus,
        /// Digests of its inputs when it started.
        inputs: BTreeMap<String, String>,
        /// Its full report.
        report: Box<StepReport>,
    },
    /// A gate (a check or evaluator with `retry`, or any evaluator) was
    /// judged after a round.
    GateDecision {
        /// Gate id.
        gate: String,
        /// Round judged.
        round: u32,
        /// How it ended (`passed`, `failed`, `error`, `skipped`).
        status: StepStatus,
        /// Why: its score or failure.
        reason: String,
        /// The stage re-run because of it, if any.
        retry: Option<String>,
    },
    /// A round ended; `retries` holds what the next round starts from.
    RoundFinished {
        /// The round that ended.
        round: u32,
        /// Stages to re-run: attempt number and feedback lines for each.
        retries: BTreeMap<String, Retrying>,
    },
    /// The run ended.
    RunFinished {
        /// `passed` or `failed`.
        status: String,
        /// Whether retries ran out.
        escalated: bool,
    },
}

/// A stage about to be re-run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retrying {
    /// Its next attempt number.
    pub attempt: u32,
    /// The one-line feedback it gets.
    pub feedback: Vec<String>,
}

/// An open run record.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    events: fs_err::File,
    run_id: String,
}

impl Journal {
    /// Starts a new run record in `workspace`.
    ///
    /// # Errors
    /// When `.cleanroom/runs/<id>/` cannot be created.
    pub fn create(workspace: &Path) -> io::Result<Journal> {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let run_id = format!("{:013}-{:07}", since_epoch.as_millis(), std::process::id());
        let dir = runs_dir(workspace).join(&run_id);
        fs_err::create_dir_all(&dir)?;
        let events = fs_err::OpenOptions::new().create_new(true).append(true).open(dir.join("events.jsonl"))?;
        Ok(Journal { dir, events, run_id })
    }

    /// The latest run in `workspace` that did not finish, with its events.
    ///
    /// # Errors
    /// When the runs directory or a journal cannot be read.
    pub fn open_unfinished(workspace: &Path) -> io::Result<Option<(Journal, Vec<Event>)>> {
        let runs = runs_dir(workspace);
        if !runs.is_dir() {
            return Ok(None);
        }
        let mut ids: Vec<String> =
            fs_err::read_dir(&runs)?.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect();
        ids.sort();
        let Some(latest) = ids.pop() else { return Ok(None) };
        let dir = runs.join(&latest);
        let events = read_events(&dir.join("events.jsonl"))?;
        if events.iter().any(|e| matches!(e, Event::RunFinished { .. })) {
            return Ok(None);
        }
        let mut file = fs_err::OpenOptions::new().read(true).append(true).open(dir.join("events.jsonl"))?;
        // A crash may have cut the last line short: end it, so the next
        // event starts on a line of its own.
        let len = file.metadata()?.len();
        if len > 0 {
            use std::io::{Read, Seek, SeekFrom};
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        Ok(Some((Journal { dir, events: file, run_id: latest }, events)))
    }

    /// This run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Appends `event`; waits until it is on disk if it is a commit point.
    ///
    /// # Errors
    /// When the write or the fsync fails.
    pub fn append(&mut self, event: &Event) -> io::Result<()> {
        let mut line = serde_json::to_string(event).map_err(io::Error::other)?;
        line.push('\n');
        self.events.write_all(line.as_bytes())?;
        if event.is_commit_point() {
            self.events.sync_data()?;
        }
        Ok(())
    }

    /// Replaces `report.json` atomically with `json`.
    ///
    /// # Errors
    /// When writing, syncing or renaming fails.
    pub fn write_report(&self, json: &str) -> io::Result<()> {
        crate::cache::write_atomic_mode(&self.dir.join("report.json"), json.as_bytes(), 0o644)?;
        fs_err::File::open(&self.dir)?.sync_all()
    }
}

impl Event {
    /// Whether losing this event in a power cut would make a resumed run
    /// wrong rather than merely slower: the run's start and end, gate
    /// decisions and rounds, and a stage's result (the workspace changed).
    /// A lost `step_started`, or a lost check or evaluator result, only
    /// means that step runs again on resume. Skipping the fsync of those
    /// is what keeps a step's bookkeeping in microseconds.
    pub fn is_commit_point(&self) -> bool {
        match self {
            Event::StepStarted { .. } => false,
            Event::StepFinished { report, .. } => report.kind == crate::plan::StepKind::Stage,
            _ => true,
        }
    }
}

/// `<workspace>/.cleanroom/runs`.
pub fn runs_dir(workspace: &Path) -> PathBuf {
    workspace.join(RUN_DIR).join("runs")
}

/// Reads a journal, skipping any line a crash cut short.
fn read_events(path: &Path) -> io::Result<Vec<Event>> {
    let file = fs_err::File::open(path)?;
    let mut events = Vec::new();
    for line in io::BufReader::new(file).lines() {
        let line = line?;
        if let Ok(event) = serde_json::from_str(&line) {
            events.push(event);
        }
    }
    Ok(events)
}

/// A cheap digest of the files under `path`: every regular file's relative
/// path, size and modification time, in sorted order (contents are not
/// read). The run directory and symlinks are skipped.
pub fn digest_metadata(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let mut entries = Vec::new();
    collect_metadata(path, Path::new(""), &mut entries);
    entries.sort();
    let mut hasher = Sha256::new();
    for entry in entries {
        hasher.update(entry.as_bytes());
        hasher.update(b"\n");
    }
    crate::plugin::hex(&hasher.finalize())
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
            if rel.as_os_str().is_empty() && entry.file_name() == RUN_DIR {
                continue;
            }
            collect_metadata(root, &rel.join(entry.file_name()), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_unfinished_runs_are_found() {
        let ws = tempfile::tempdir().unwrap();
        let mut journal = Journal::create(ws.path()).unwrap();
        let started =
            Event::RunStarted { run_id: journal.run_id().into(), pipeline: "p".into(), plugins: BTreeMap::new() };
        journal.append(&started).unwrap();
        let (reopened, events) = Journal::open_unfinished(ws.path()).unwrap().expect("unfinished");
        assert_eq!(reopened.run_id(), journal.run_id());
        assert_eq!(events.len(), 1);
        journal.append(&Event::RunFinished { status: "passed".into(), escalated: false }).unwrap();
        assert!(Journal::open_unfinished(ws.path()).unwrap().is_none());
    }

    #[test]
    fn a_torn_last_line_is_ignored() {
        let ws = tempfile::tempdir().unwrap();
        let mut journal = Journal::create(ws.path()).unwrap();
        journal
            .append(&Event::RunStarted { run_id: "x".into(), pipeline: "p".into(), plugins: BTreeMap::new() })
            .unwrap();
        journal.events.write_all(b"{\"type\":\"step_sta").unwrap();
        let (mut reopened, events) = Journal::open_unfinished(ws.path()).unwrap().unwrap();
        assert_eq!(events.len(), 1);
        reopened.append(&Event::RunFinished { status: "passed".into(), escalated: false }).unwrap();
        let text = fs_err::read_to_string(reopened.dir.join("events.jsonl")).unwrap();
        assert_eq!(read_events(&reopened.dir.join("events.jsonl")).unwrap().len(), 2, "{text}");
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
