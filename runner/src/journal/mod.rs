//! The journal: an append-only, authenticated record of a run, for audit
//! and resume.
//!
//! Each run writes `.cleanroom/runs/<run-id>/` in the workspace:
//! `events.jsonl`, one [`Event`] per line in a `{"type": ..., "data": ...,
//! "mac": ...}` envelope, each line written before the run goes on (so it
//! survives the runner being killed) and fsync'd (so it survives the
//! machine going down) when it marks a change of the workspace or of the
//! run's course: see [`Event::is_commit_point`]; and
//! `report.json`, the final report, replaced atomically (written to a
//! temporary file, fsync'd, renamed). A run whose journal has no
//! `run_finished` event is unfinished and can be resumed. Run ids sort by
//! start time. Nothing secret is ever written here.
//!
//! The workspace is within the coding stage's reach, so nothing read back
//! from it is trusted unless the runner can tell it wrote it:
//! - every line's `mac` is HMAC-SHA256 under the per-user [`Key`] of the
//!   run id, the previous line's mac (zeros for the first) and the line's
//!   bytes without the `mac` field (`{"type":..,"data":..}` exactly as
//!   written). A line cannot be edited, forged, removed, reordered or moved
//!   to another run without the key.
//! - at every commit point the runner also records the run's *head* (its
//!   pipeline, number of lines and last mac) in the private state directory
//!   beside the key (`runs/<workspace digest>/<run-id>.json`). `--resume`
//!   picks the run to continue from these heads — the latest run of the
//!   same pipeline in this workspace — never from the workspace's listing,
//!   so a planted run directory is never considered, and a journal shorter
//!   than its head (whole lines cut off the end) is refused.
//! - `run_started` records the pipeline file's sha256, every plugin's and a
//!   digest of the plan ([`RunIdentity`]); a run resumes only if they all
//!   match the present ones.
//!
//! A last line without its newline (the runner died mid-write) is cut off
//! on resume; every other line must verify, or the run is refused (`CR031`).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use fs_err::os::unix::fs::OpenOptionsExt;
use serde::{Deserialize, Serialize};

use crate::diag::{Code, Diagnostic, Location};
use crate::key::Key;
use crate::plan::mounts::RUN_DIR;
use crate::plan::Plan;
pub use crate::report::events::{Event, RecordedRun, Retrying};

/// What a run was started from: `--resume` continues a run only if all of
/// it is unchanged, and only considers runs of the same pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunIdentity {
    /// `[pipeline] name`.
    pub pipeline: String,
    /// The pipeline file, as the plan names it.
    pub pipeline_file: String,
    /// sha256 of the pipeline file's bytes.
    pub pipeline_sha256: String,
    /// sha256 of every plugin, by name.
    pub plugins: BTreeMap<String, String>,
    /// sha256 of the plan's canonical JSON: every resolved setting of every
    /// step (mounts, limits, config, tools, gates, ...). Secrets' values
    /// are never in a plan.
    pub config_sha256: String,
    /// Every step id, in plan order (told in `run_started`, not compared).
    pub steps: Vec<String>,
}

impl RunIdentity {
    /// The identity of a run of `plan` started now: the pipeline text is
    /// the one the plan was made from.
    pub fn of(plan: &Plan) -> RunIdentity {
        RunIdentity {
            pipeline: plan.name.clone(),
            // However the command line spelt it.
            pipeline_file: fs_err::canonicalize(&plan.pipeline_file)
                .unwrap_or_else(|_| plan.pipeline_file.clone())
                .display()
                .to_string(),
            pipeline_sha256: plan.pipeline_sha256.clone(),
            plugins: plan.plugins.iter().map(|(name, info)| (name.clone(), info.sha256.clone())).collect(),
            config_sha256: config_digest(plan),
            steps: plan.steps.iter().map(|s| s.id.clone()).collect(),
        }
    }

    /// The `run_started` event of run `run_id`.
    pub fn started(&self, run_id: &str) -> Event {
        Event::RunStarted {
            run_id: run_id.to_string(),
            steps: self.steps.clone(),
            pipeline: self.pipeline.clone(),
            pipeline_file: self.pipeline_file.clone(),
            pipeline_sha256: self.pipeline_sha256.clone(),
            plugins: self.plugins.clone(),
            config_sha256: self.config_sha256.clone(),
        }
    }

    /// What differs between the identity a run recorded and `self`, one
    /// phrase per change; empty when nothing did.
    fn changes_since(&self, recorded: &Event) -> Vec<String> {
        let Event::RunStarted { pipeline_sha256, plugins, config_sha256, pipeline_file, .. } = recorded else {
            return vec!["the run's first event is not `run_started`".into()];
        };
        let mut changes = Vec::new();
        if *pipeline_sha256 != self.pipeline_sha256 || *pipeline_file != self.pipeline_file {
            changes.push(format!("the pipeline file `{}` changed", self.pipeline_file));
        }
        for (name, sha256) in plugins {
            match self.plugins.get(name) {
                None => changes.push(format!("plugin `{name}` was removed")),
                Some(now) if now != sha256 => {
                    changes.push(format!("plugin `{name}` changed (sha256 {sha256} then, {now} now)"))
                }
                Some(_) => {}
            }
        }
        for name in self.plugins.keys().filter(|name| !plugins.contains_key(*name)) {
            changes.push(format!("plugin `{name}` was added"));
        }
        if *config_sha256 != self.config_sha256 {
            changes.push("the planned configuration changed (steps, mounts, limits, config, `--only`/`--skip`)".into());
        }
        changes
    }
}

/// sha256 of `plan` serialised as JSON. The serialisation is deterministic:
/// maps in a plan are `BTreeMap`s (or JSON objects built from TOML tables in
/// file order), lists keep the pipeline's order. The pipeline file's path
/// is left out (it is spelt as the command line gave it; [`RunIdentity`]
/// records it canonical, and its contents by sha256), so are plugin paths
/// (spelt relative to it; plugins are recorded by sha256), and so is whether
/// each mount exists yet (`exists`): that is the workspace's state, which
/// the run itself changes (a stage creates its `write` directory), not
/// its configuration; inputs are checked per step by their digests.
pub fn config_digest(plan: &Plan) -> String {
    use sha2::{Digest, Sha256};
    fn forget_state(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(object) => {
                object.remove("exists");
                object.values_mut().for_each(forget_state);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(forget_state),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(plan).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.remove("pipeline_file");
        // Plugin paths are spelt relative to the pipeline file as given;
        // each plugin is identified by its name and sha256.
        for plugin in object.get_mut("plugins").and_then(|p| p.as_object_mut()).into_iter().flat_map(|p| p.values_mut())
        {
            if let Some(plugin) = plugin.as_object_mut() {
                plugin.remove("path");
            }
        }
        for step in object.get_mut("steps").and_then(|s| s.as_array_mut()).into_iter().flatten() {
            if let Some(mounts) = step.pointer_mut("/grant/mounts") {
                forget_state(mounts);
            }
        }
    }
    crate::plugin::hex(&Sha256::digest(value.to_string().as_bytes()))
}

/// Label of a journal line's mac: no other tag of the runner verifies as one.
const LINE_LABEL: &[u8] = b"cleanroom journal line v1";

/// The `mac` field as it ends every line: `,"mac":"<64 hex>"}`.
const MAC_PREFIX: &str = ",\"mac\":\"";
const MAC_SUFFIX_LEN: usize = MAC_PREFIX.len() + 64 + 2;

/// The run's latest commit point, as the runner recorded it in its state
/// directory (out of every step's reach).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Head {
    run_id: String,
    pipeline: String,
    pipeline_file: String,
    /// Lines in the journal up to and including the latest commit point.
    lines: u64,
    /// That line's mac, hex.
    mac: String,
    /// Whether that line is `run_finished`.
    finished: bool,
}

/// An open run record.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    events: fs_err::File,
    run_id: String,
    key: Key,
    /// The run's head file in the state directory.
    head: PathBuf,
    pipeline: String,
    pipeline_file: String,
    /// Mac of the last line written.
    last_mac: [u8; 32],
    /// Lines written.
    lines: u64,
    /// Whether the run's events so far end it ([`finished`]).
    finished: bool,
}

impl Journal {
    /// Starts a new run record in `workspace` and writes its `run_started`.
    ///
    /// # Errors
    /// When `.cleanroom/runs/<id>/` or the run's head cannot be created.
    pub fn create(workspace: &Path, key: &Key, identity: &RunIdentity) -> io::Result<Journal> {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let run_id = format!("{:013}-{:07}", since_epoch.as_millis(), std::process::id());
        let runs = runs_dir(workspace);
        fs_err::create_dir_all(&runs)?;
        let dir = runs.join(&run_id);
        fs_err::create_dir(&dir)?;
        let events = fs_err::OpenOptions::new().create_new(true).append(true).open(dir.join("events.jsonl"))?;
        let heads = heads_dir(key, workspace);
        crate::cache::private_dir_for(&heads, "state directory").map_err(io::Error::other)?;
        let mut journal = Journal {
            dir,
            events,
            head: heads.join(format!("{run_id}.json")),
            run_id,
            key: key.clone(),
            pipeline: identity.pipeline.clone(),
            pipeline_file: identity.pipeline_file.clone(),
            last_mac: [0; 32],
            lines: 0,
            finished: false,
        };
        lock(&journal.events, &journal.run_id).map_err(|d| io::Error::other(d.message))?;
        journal.append(&identity.started(&journal.run_id))?;
        Ok(journal)
    }

    /// The latest run of this pipeline (`identity`) in `workspace` that the
    /// runner recorded, verified line by line, with its events; `None` when
    /// there is none or it finished.
    ///
    /// # Errors
    /// `CR031` when its directory or journal is not a real one or fails
    /// verification (naming the run and the line), `CR032` when the
    /// pipeline file, a plugin or the configuration changed since it
    /// started, `CR022` when it cannot be read.
    pub fn open_unfinished(
        workspace: &Path,
        key: &Key,
        identity: &RunIdentity,
    ) -> Result<Option<(Journal, Vec<Event>)>, Diagnostic> {
        let heads = heads_dir(key, workspace);
        let Some(head) = latest_head(&heads, identity) else {
            warn_about_unknown_runs(workspace, &heads);
            return Ok(None);
        };
        let opened = Opened::verify(workspace, key, &heads, head)?;
        let first = opened.verified.events.first().ok_or_else(|| opened.refuse("it is empty".into()))?;
        let changes = identity.changes_since(first);
        if !changes.is_empty() {
            return Err(Diagnostic::new(
                Code::CR032,
                format!("cannot resume run `{}`: since it started, {}", opened.head.run_id, changes.join("; ")),
            )
            .at(Location::Path(PathBuf::from(&identity.pipeline_file)))
            .hint("start a new run without --resume"));
        }
        if finished(&opened.verified.events) {
            return Ok(None);
        }
        opened.into_journal().map(Some)
    }

    /// Run `run_id` of `workspace`, to append to: every line verified, the
    /// run recorded by this runner, and no run going on in it (the journal
    /// is locked while a run writes it). For recording a person's decision.
    ///
    /// # Errors
    /// `CR031` when the journal fails verification or the runner has no
    /// record of the run, `CR022` when it cannot be read or a run is going
    /// on in it.
    pub fn open_existing(workspace: &Path, key: &Key, run_id: &str) -> Result<(Journal, Vec<Event>), Diagnostic> {
        let heads = heads_dir(key, workspace);
        let head = read_head(&heads, run_id).ok_or_else(|| {
            Diagnostic::new(Code::CR031, format!("the runner has no record of run `{run_id}` in this workspace"))
                .at(Location::Path(runs_dir(workspace)))
                .hint("name a run this user started here (`ls .cleanroom/runs/`)")
        })?;
        Opened::verify(workspace, key, &heads, head)?.into_journal()
    }

    /// This run's id.    /// This run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Appends `event` with its mac; waits until it is on disk, and records
    /// the run's head, if it is a commit point.
    ///
    /// # Errors
    /// When the write, the fsync or the head fails.
    pub fn append(&mut self, event: &Event) -> io::Result<()> {
        let body = serde_json::to_string(event).map_err(io::Error::other)?;
        let mac = self.key.mac(&[LINE_LABEL, self.run_id.as_bytes(), &self.last_mac, body.as_bytes()]);
        let Some(open) = body.strip_suffix('}') else {
            return Err(io::Error::other("an event did not serialise to a JSON object"));
        };
        let line = format!("{open}{MAC_PREFIX}{}\"}}\n", crate::key::to_hex(&mac));
        self.events.write_all(line.as_bytes())?;
        self.last_mac = mac;
        self.lines += 1;
        self.finished = finished(std::slice::from_ref(event)) || (self.finished && !reopens(event));
        if event.is_commit_point() {
            self.events.sync_data()?;
            let head = Head {
                run_id: self.run_id.clone(),
                pipeline: self.pipeline.clone(),
                pipeline_file: self.pipeline_file.clone(),
                lines: self.lines,
                mac: crate::key::to_hex(&mac),
                finished: self.finished,
            };
            crate::cache::write_atomic(&self.head, &serde_json::to_vec(&head).map_err(io::Error::other)?)?;
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

/// The report of a past run of `workspace` (`run_id`, else the latest run
/// that wrote one), exactly as the run wrote it: its journal must verify
/// under `key` and name the report's sha256, and `report.json` must match it.
///
/// # Errors
/// `CR033` naming the run and what is wrong: no such run, no report yet,
/// a journal that does not verify, or a report changed since.
pub fn past_report(workspace: &Path, key: &Key, run_id: Option<&str>) -> Result<crate::report::RunReport, Diagnostic> {
    let run = past_run(workspace, key, run_id)?;
    run.report.ok_or_else(|| {
        Diagnostic::new(Code::CR033, format!("run `{}` has not written its report yet", run.run_id))
            .at(Location::Path(runs_dir(workspace)))
            .hint("wait for it to finish, or resume it")
    })
}

/// A past run of `workspace` (`run_id`, else the latest run that wrote a
/// report): its verified events and its report as it wrote it, with the
/// decisions people recorded since applied ([`crate::governance::apply`]).
///
/// # Errors
/// As [`past_report`]; a run without a report yet is an error only when
/// none was named.
pub fn past_run(workspace: &Path, key: &Key, run_id: Option<&str>) -> Result<RecordedRun, Diagnostic> {
    let runs = runs_dir(workspace);
    let refuse =
        |what: String, hint: &str| Diagnostic::new(Code::CR033, what).at(Location::Path(runs.clone())).hint(hint);
    let run_id = match run_id {
        Some(id) => id.to_string(),
        None => {
            let mut ids: Vec<String> = fs_err::read_dir(&runs)
                .map_err(|_| refuse(format!("no runs in `{}`", runs.display()), "run the pipeline first"))?
                .flatten()
                .filter(|e| e.path().join("report.json").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|id| id.bytes().all(|b| b.is_ascii_digit() || b == b'-'))
                .collect();
            ids.sort();
            ids.pop().ok_or_else(|| {
                refuse(format!("no run in `{}` has a report", runs.display()), "run the pipeline first")
            })?
        }
    };
    read_run(workspace, key, &run_id).map_err(|(what, hint)| refuse(what, hint))
}

/// Every run of `workspace` the runner recorded (by its heads, never by
/// the workspace's listing), oldest first, each verified; runs that do not
/// verify are left out and named, with why.
pub fn recorded_runs(workspace: &Path, key: &Key) -> (Vec<RecordedRun>, Vec<String>) {
    let heads = heads_dir(key, workspace);
    let mut ids: Vec<String> = fs_err::read_dir(&heads)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json").map(str::to_string))
                .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit() || b == b'-'))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    let mut runs = Vec::new();
    let mut unreadable = Vec::new();
    for id in ids {
        match read_run(workspace, key, &id) {
            Ok(run) => runs.push(run),
            Err((why, _)) => unreadable.push(why),
        }
    }
    (runs, unreadable)
}

/// Run `run_id`'s verified events and report, or what is wrong and what to do.
fn read_run(workspace: &Path, key: &Key, run_id: &str) -> Result<RecordedRun, (String, &'static str)> {
    if run_id.is_empty() || !run_id.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return Err((format!("`{run_id}` is not a run id"), "run ids are the directory names in `.cleanroom/runs/`"));
    }
    let dir = runs_dir(workspace).join(run_id);
    let read = |name: &str| -> Result<Vec<u8>, (String, &'static str)> {
        let path = dir.join(name);
        let mut file = fs_err::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| {
                (
                    format!("run `{run_id}`: cannot read `{name}`: {e}"),
                    "name a run id from `.cleanroom/runs/`, or none for the latest",
                )
            })?;
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Err((format!("run `{run_id}`: `{name}` is not a regular file"), "rerun the pipeline"));
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| (format!("run `{run_id}`: cannot read `{name}`: {e}"), "rerun the pipeline"))?;
        Ok(bytes)
    };
    let events = read("events.jsonl")?;
    let verified = verify(key, run_id, &events).map_err(|why| {
        (
            format!("run `{run_id}`: {why}"),
            "the run record was changed by something other than the runner; rerun the pipeline",
        )
    })?;
    let recorded = verified.events.iter().rev().find_map(|event| match event {
        Event::RunFinished { report_sha256: Some(sha), .. }
        | Event::RunInterrupted { report_sha256: sha, .. }
        | Event::RunAwaiting { report_sha256: sha, .. } => Some(sha.clone()),
        _ => None,
    });
    let report = match recorded {
        None => None,
        Some(recorded) => {
            let bytes = read("report.json")?;
            let actual = crate::plugin::hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes));
            if actual != recorded {
                return Err((
                    format!("run `{run_id}`: `report.json` is not the report the run wrote (sha256 {actual}, the journal records {recorded})"),
                    "the run record was changed by something other than the runner; rerun the pipeline",
                ));
            }
            let mut report: crate::report::RunReport = serde_json::from_slice(&bytes).map_err(|e| {
                (
                    format!("run `{run_id}`: `report.json` cannot be read: {e}"),
                    "it was written by another version of cleanroom; rerun the pipeline",
                )
            })?;
            crate::report::decisions::apply(&mut report, &verified.events);
            Some(report)
        }
    };
    Ok(RecordedRun { run_id: run_id.to_string(), events: verified.events, report })
}

/// A run's journal, opened and verified against its head.
struct Opened {
    dir: PathBuf,
    file: fs_err::File,
    bytes_len: usize,
    verified: Verified,
    head: Head,
    heads: PathBuf,
    key: Key,
    workspace: PathBuf,
}

impl Opened {
    /// Opens the journal of the run `head` records, locks it (refusing a
    /// run that is going on), and verifies every line and the head.
    fn verify(workspace: &Path, key: &Key, heads: &Path, head: Head) -> Result<Opened, Diagnostic> {
        let run_id = head.run_id.clone();
        let refuse = |what: String| refusal(workspace, &run_id, &what);
        let unreadable = |e: io::Error| {
            Diagnostic::new(Code::CR022, format!("cannot read the journal of run `{run_id}`: {e}"))
                .hint("start a new run without --resume")
        };
        let dir = runs_dir(workspace).join(&run_id);
        match fs_err::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(refuse("its run directory is not a directory (a symlink or a file)".into())),
            Err(_) => return Err(refuse("its run directory is missing".into())),
        }
        let path = dir.join("events.jsonl");
        match fs_err::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(refuse("`events.jsonl` is not a regular file (a symlink, FIFO or directory)".into())),
            Err(_) => return Err(refuse("`events.jsonl` is missing".into())),
        }
        let mut file = fs_err::OpenOptions::new()
            .read(true)
            .append(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(&path)
            .map_err(unreadable)?;
        if !file.metadata().map_err(unreadable)?.is_file() {
            return Err(refuse("`events.jsonl` is not a regular file".into()));
        }
        lock(&file, &run_id)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(unreadable)?;
        let verified = verify(key, &run_id, &bytes).map_err(refuse)?;
        let head_mac = crate::key::from_hex(&head.mac).unwrap_or_default();
        let kept = usize::try_from(head.lines).unwrap_or(usize::MAX);
        if verified.macs.len() < kept || kept == 0 || !crate::key::constant_time_eq(&verified.macs[kept - 1], &head_mac)
        {
            return Err(refuse(format!(
                "it has {} lines, but the runner recorded {} (lines were removed or replaced)",
                verified.macs.len(),
                head.lines
            )));
        }
        let first = verified.events.first().ok_or_else(|| refuse("it is empty".into()))?;
        if !matches!(first, Event::RunStarted { run_id: id, .. } if *id == run_id) {
            return Err(refuse("line 1 is not this run's `run_started`".into()));
        }
        Ok(Opened {
            dir,
            file,
            bytes_len: bytes.len(),
            verified,
            head,
            heads: heads.to_path_buf(),
            key: key.clone(),
            workspace: workspace.to_path_buf(),
        })
    }

    fn refuse(&self, what: String) -> Diagnostic {
        refusal(&self.workspace, &self.head.run_id, &what)
    }

    /// The journal, ready to append to after its last verified line (a
    /// line a crash cut short is dropped first), and its events.
    fn into_journal(self) -> Result<(Journal, Vec<Event>), Diagnostic> {
        let run_id = self.head.run_id.clone();
        if self.verified.len < self.bytes_len {
            self.file.set_len(self.verified.len as u64).map_err(|e| {
                Diagnostic::new(Code::CR022, format!("cannot repair the journal of run `{run_id}`: {e}"))
                    .hint("start a new run")
            })?;
        }
        let journal = Journal {
            dir: self.dir,
            events: self.file,
            head: self.heads.join(format!("{run_id}.json")),
            run_id,
            key: self.key,
            pipeline: self.head.pipeline,
            pipeline_file: self.head.pipeline_file,
            last_mac: self.verified.macs.last().copied().unwrap_or([0; 32]),
            lines: self.verified.macs.len() as u64,
            finished: finished(&self.verified.events),
        };
        Ok((journal, self.verified.events))
    }
}

/// `CR031` for run `run_id`: its journal is not what the runner wrote.
fn refusal(workspace: &Path, run_id: &str, what: &str) -> Diagnostic {
    Diagnostic::new(Code::CR031, format!("cannot use run `{run_id}`: {what}"))
        .at(Location::Path(runs_dir(workspace).join(run_id).join("events.jsonl")))
        .hint(
            "start a new run without --resume; the journal was changed by something other than the runner, inspect it",
        )
}

/// Takes the journal's lock: a run holds it while it writes, so a decision
/// is never appended in the middle of a run, nor two runs resumed at once.
fn lock(file: &fs_err::File, run_id: &str) -> Result<(), Diagnostic> {
    // The lock lives as long as the open file description: until the run
    // (or the command recording a decision) drops its journal.
    if file.file().try_lock().is_ok() {
        Ok(())
    } else {
        Err(Diagnostic::new(Code::CR022, format!("run `{run_id}` is going on (its journal is locked)"))
            .hint("wait for it to stop, then try again"))
    }
}

/// Whether a run's events end it: a `run_finished` not followed by an
/// override (a person accepting a failed gate reopens the run for
/// `run --resume`).
pub fn finished(events: &[Event]) -> bool {
    events.iter().fold(false, |done, event| match event {
        Event::RunFinished { .. } => true,
        Event::HumanDecision(d) if d.kind == crate::report::decisions::DecisionKind::Override => false,
        _ => done,
    })
}

/// The head of run `run_id` among `heads`, if the runner recorded one.
fn read_head(heads: &Path, run_id: &str) -> Option<Head> {
    if run_id.is_empty() || !run_id.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return None;
    }
    let bytes = crate::cache::read_private(&heads.join(format!("{run_id}.json")))?;
    serde_json::from_slice::<Head>(&bytes).ok().filter(|head| head.run_id == run_id)
}

/// A journal's lines that verified.
struct Verified {
    events: Vec<Event>,
    /// Each line's mac.
    macs: Vec<[u8; 32]>,
    /// Bytes up to the end of the last complete line.
    len: usize,
}

/// Verifies every complete line of run `run_id`'s journal `bytes`; a last
/// line without its newline is left out.
///
/// # Errors
/// What is wrong and on which line (1-based).
fn verify(key: &Key, run_id: &str, bytes: &[u8]) -> Result<Verified, String> {
    let mut verified = Verified { events: Vec::new(), macs: Vec::new(), len: 0 };
    let mut previous = [0u8; 32];
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |end| end + 1);
    for (index, line) in bytes[..complete].split_inclusive(|&b| b == b'\n').enumerate() {
        let line = &line[..line.len() - 1];
        let number = index + 1;
        let bad = |why: &str| format!("line {number} of its journal {why}");
        let split = line
            .len()
            .checked_sub(MAC_SUFFIX_LEN)
            .filter(|&at| line[at..].starts_with(MAC_PREFIX.as_bytes()) && line.ends_with(b"\"}"))
            .ok_or_else(|| bad("has no `mac` (it was not written by this runner)"))?;
        let mac = std::str::from_utf8(&line[split + MAC_PREFIX.len()..line.len() - 2])
            .ok()
            .and_then(crate::key::from_hex)
            .ok_or_else(|| bad("has a malformed `mac`"))?;
        let mut body = line[..split].to_vec();
        body.push(b'}');
        if !key.verify(&[LINE_LABEL, run_id.as_bytes(), &previous, &body], &mac) {
            return Err(bad(
                "does not verify: it was edited, forged, moved, or lines before it were removed or reordered (or it was written with another key)",
            ));
        }
        let event: Event = serde_json::from_slice(&body).map_err(|e| bad(&format!("is not an event: {e}")))?;
        previous.copy_from_slice(&mac);
        verified.events.push(event);
        verified.macs.push(previous);
        verified.len += line.len() + 1;
    }
    Ok(verified)
}

/// `<state>/runs/<sha256 of the workspace path, 32 hex>`: the heads of the
/// runs of `workspace`.
fn heads_dir(key: &Key, workspace: &Path) -> PathBuf {
    use sha2::{Digest, Sha256};
    let digest = crate::plugin::hex(&Sha256::digest(workspace.as_os_str().as_encoded_bytes()));
    key.dir().join("runs").join(&digest[..32])
}

/// The head of the latest run of `identity`'s pipeline among `heads`.
fn latest_head(heads: &Path, identity: &RunIdentity) -> Option<Head> {
    let entries = fs_err::read_dir(heads).ok()?;
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| crate::cache::read_private(&e.path()))
        .filter_map(|bytes| serde_json::from_slice::<Head>(&bytes).ok())
        .filter(|head| head.pipeline == identity.pipeline && head.pipeline_file == identity.pipeline_file)
        .filter(|head| head.run_id.bytes().all(|b| b.is_ascii_digit() || b == b'-'))
        .max_by(|a, b| a.run_id.cmp(&b.run_id))
}

/// Whether `event` reopens a finished run (an override).
fn reopens(event: &Event) -> bool {
    matches!(event, Event::HumanDecision(d) if d.kind == crate::report::decisions::DecisionKind::Override)
}

/// Says so when the workspace holds run directories the runner has no
/// record of: they are never resumed.
fn warn_about_unknown_runs(workspace: &Path, heads: &Path) {
    let Ok(entries) = fs_err::read_dir(runs_dir(workspace)) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !heads.join(format!("{name}.json")).exists() {
            tracing::warn!("ignoring `{}`: the runner has no record of that run", entry.path().display());
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::StepStatus;

    struct Fixture {
        _dir: tempfile::TempDir,
        ws: PathBuf,
        key: Key,
        identity: RunIdentity,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        fs_err::create_dir(&ws).unwrap();
        let key = Key::from_bytes([3; 32], &dir.path().join("state"));
        let identity = RunIdentity {
            pipeline: "p".into(),
            pipeline_file: ws.join("pipeline.toml").display().to_string(),
            pipeline_sha256: "aa".into(),
            plugins: BTreeMap::from([("noop".to_string(), "11".to_string())]),
            config_sha256: "cc".into(),
            steps: vec!["a".into()],
        };
        Fixture { _dir: dir, ws, key, identity }
    }

    fn gate(status: StepStatus) -> Event {
        Event::GateDecision { gate: "g".into(), round: 1, status, reason: "r".into(), retry: None }
    }

    /// Releases the journal's lock, as a run that stopped does, while the
    /// test keeps writing through it.
    fn unlocked(journal: Journal) -> Journal {
        journal.events.file().unlock().unwrap();
        journal
    }

    fn events_file(journal: &Journal) -> PathBuf {
        journal.dir.join("events.jsonl")
    }

    fn resume(f: &Fixture) -> Result<Option<(Journal, Vec<Event>)>, Diagnostic> {
        Journal::open_unfinished(&f.ws, &f.key, &f.identity)
    }

    fn refusal(f: &Fixture) -> Diagnostic {
        resume(f).expect_err("the journal was accepted")
    }

    #[test]
    fn events_round_trip_and_unfinished_runs_are_found() {
        let f = fixture();
        let mut journal = unlocked(Journal::create(&f.ws, &f.key, &f.identity).unwrap());
        journal.append(&gate(StepStatus::Failed)).unwrap();
        let (reopened, events) = resume(&f).unwrap().expect("unfinished");
        assert_eq!(reopened.run_id(), journal.run_id());
        assert_eq!(events.len(), 2);
        drop(reopened);
        let text = fs_err::read_to_string(events_file(&journal)).unwrap();
        assert!(text.starts_with("{\"type\":\"run_started\",\"data\":{"), "{text}");
        assert!(text.lines().all(|l| l.contains(",\"mac\":\"")), "{text}");
        journal
            .append(&Event::RunFinished {
                status: "failed".into(),
                escalated: false,
                report_sha256: None,
                report: None,
            })
            .unwrap();
        assert!(resume(&f).unwrap().is_none());
    }

    #[test]
    fn a_torn_last_line_is_cut_and_the_chain_goes_on() {
        let f = fixture();
        let mut journal = unlocked(Journal::create(&f.ws, &f.key, &f.identity).unwrap());
        journal.events.write_all(b"{\"type\":\"step_sta").unwrap();
        let (mut reopened, events) = resume(&f).unwrap().unwrap();
        assert_eq!(events.len(), 1);
        reopened.append(&gate(StepStatus::Passed)).unwrap();
        drop(reopened);
        let (_, events) = resume(&f).unwrap().unwrap();
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn an_edited_line_is_refused_with_its_number() {
        let f = fixture();
        let mut journal = unlocked(Journal::create(&f.ws, &f.key, &f.identity).unwrap());
        journal.append(&gate(StepStatus::Failed)).unwrap();
        let path = events_file(&journal);
        let text = fs_err::read_to_string(&path).unwrap();
        fs_err::write(&path, text.replace("\"status\":\"failed\"", "\"status\":\"passed\"")).unwrap();
        let d = refusal(&f);
        assert_eq!(d.code, Code::CR031);
        assert!(d.message.contains("line 2") && d.message.contains(journal.run_id()), "{}", d.message);
    }

    #[test]
    fn removed_reordered_and_appended_lines_are_refused() {
        let f = fixture();
        let mut journal = unlocked(Journal::create(&f.ws, &f.key, &f.identity).unwrap());
        journal.append(&gate(StepStatus::Failed)).unwrap();
        journal.append(&gate(StepStatus::Error)).unwrap();
        let path = events_file(&journal);
        let original = fs_err::read_to_string(&path).unwrap();
        let lines: Vec<&str> = original.lines().collect();
        let write = |lines: &[&str]| fs_err::write(&path, lines.iter().map(|l| format!("{l}\n")).collect::<String>());
        // A middle line removed.
        write(&[lines[0], lines[2]]).unwrap();
        assert!(refusal(&f).message.contains("line 2"));
        // Two lines swapped.
        write(&[lines[0], lines[2], lines[1]]).unwrap();
        assert!(refusal(&f).message.contains("line 2"));
        // The last commit point cut off: the head remembers it.
        write(&[lines[0], lines[1]]).unwrap();
        assert!(refusal(&f).message.contains("lines were removed"), "{}", refusal(&f).message);
        // A line copied again at the end.
        write(&[lines[0], lines[1], lines[2], lines[1]]).unwrap();
        assert!(refusal(&f).message.contains("line 4"));
        // A line forged with another key.
        let other = Key::from_bytes([4; 32], f.key.dir());
        let body = serde_json::to_string(&Event::RunFinished {
            status: "passed".into(),
            escalated: false,
            report_sha256: None,
            report: None,
        })
        .unwrap();
        let mac = other.mac(&[LINE_LABEL, journal.run_id().as_bytes(), &journal.last_mac, body.as_bytes()]);
        let forged = format!("{}{MAC_PREFIX}{}\"}}", &body[..body.len() - 1], crate::key::to_hex(&mac));
        write(&[lines[0], lines[1], lines[2], &forged]).unwrap();
        assert!(refusal(&f).message.contains("line 4"));
        write(&lines).unwrap();
        assert!(resume(&f).unwrap().is_some(), "the untouched journal resumes");
    }

    #[test]
    fn a_run_the_runner_did_not_record_is_never_resumed() {
        let f = fixture();
        let journal = unlocked(Journal::create(&f.ws, &f.key, &f.identity).unwrap());
        let fake = runs_dir(&f.ws).join("9999999999999-0000001");
        fs_err::create_dir(&fake).unwrap();
        fs_err::copy(events_file(&journal), fake.join("events.jsonl")).unwrap();
        let (resumed, _) = resume(&f).unwrap().unwrap();
        assert_eq!(resumed.run_id(), journal.run_id());
    }

    #[test]
    fn a_run_going_on_is_neither_resumed_nor_written_by_another_process() {
        let f = fixture();
        let journal = Journal::create(&f.ws, &f.key, &f.identity).unwrap();
        let d = refusal(&f);
        assert!(d.message.contains("is going on"), "{}", d.message);
        let d = Journal::open_existing(&f.ws, &f.key, journal.run_id()).unwrap_err();
        assert!(d.message.contains("is going on"), "{}", d.message);
        let id = journal.run_id().to_string();
        drop(journal);
        assert!(Journal::open_existing(&f.ws, &f.key, &id).is_ok());
    }

    #[test]
    fn an_override_reopens_a_finished_run_and_a_verdict_does_not() {
        use crate::governance::{Decision, DecisionKind};
        let f = fixture();
        let mut journal = unlocked(Journal::create(&f.ws, &f.key, &f.identity).unwrap());
        let finished =
            Event::RunFinished { status: "failed".into(), escalated: false, report_sha256: None, report: None };
        journal.append(&finished).unwrap();
        let decision = |kind| {
            Event::HumanDecision(Decision {
                kind,
                target: "a".into(),
                accepted: true,
                by: "alice".into(),
                reason: "r".into(),
                at: "2026-11-27T00:00:00Z".into(),
                user: "u".into(),
                artifacts: BTreeMap::new(),
                report_sha256: None,
            })
        };
        journal.append(&decision(DecisionKind::Verdict)).unwrap();
        assert!(resume(&f).unwrap().is_none(), "a verdict reopened the run");
        journal.append(&decision(DecisionKind::Override)).unwrap();
        let (reopened, events) = resume(&f).unwrap().expect("the override reopens it");
        assert_eq!(events.len(), 4);
        drop(reopened);
    }

    #[test]
    fn a_run_directory_that_is_a_symlink_is_refused() {
        let f = fixture();
        let journal = unlocked(Journal::create(&f.ws, &f.key, &f.identity).unwrap());
        let moved = f.ws.join("elsewhere");
        fs_err::rename(&journal.dir, &moved).unwrap();
        std::os::unix::fs::symlink(&moved, &journal.dir).unwrap();
        assert!(refusal(&f).message.contains("not a directory"));
    }

    #[test]
    fn runs_of_another_pipeline_are_not_considered_and_changes_are_named() {
        let f = fixture();
        unlocked(Journal::create(&f.ws, &f.key, &f.identity).unwrap());
        let other = RunIdentity { pipeline: "q".into(), ..f.identity.clone() };
        assert!(Journal::open_unfinished(&f.ws, &f.key, &other).unwrap().is_none());
        let changed = RunIdentity {
            pipeline_sha256: "ab".into(),
            plugins: BTreeMap::from([("noop".to_string(), "12".to_string())]),
            config_sha256: "cd".into(),
            ..f.identity.clone()
        };
        let d = Journal::open_unfinished(&f.ws, &f.key, &changed).unwrap_err();
        assert_eq!(d.code, Code::CR032);
        for what in ["pipeline file", "plugin `noop` changed", "configuration changed"] {
            assert!(d.message.contains(what), "{}", d.message);
        }
    }

    #[test]
    fn the_plan_digest_is_deterministic_and_sees_every_setting() {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = dir.path().join("pipeline.toml");
        let toml = "[pipeline]\nname = \"d\"\n[stage.s]\nrun = [\"true\"]\nwrite = [\"out\"]\n\
            [check.a]\nrun = [\"true\"]\nneeds = [\"s\"]\nenv = { B = \"2\", A = \"1\", C = \"3\" }\n";
        fs_err::write(&pipeline, toml).unwrap();
        let digest = || config_digest(&Plan::load(&pipeline).unwrap());
        let first = digest();
        assert!((0..5).all(|_| digest() == first));
        // The stage creating its output directory is not a new configuration.
        fs_err::create_dir(dir.path().join("out")).unwrap();
        assert_eq!(digest(), first);
        fs_err::write(&pipeline, format!("{toml}timeout = \"7s\"\n")).unwrap();
        assert_ne!(digest(), first);
    }
}
