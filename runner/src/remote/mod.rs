//! Beyond one machine: a shared result cache and a worker pool over the
//! Remote Execution API (REAPI v2), the protocol Bazel, Buck2 and Pants
//! speak to BuildGrid, Buildbarn, BuildBuddy or NativeLink.
//!
//! A planned step is a pure function of its plugin, its inputs and its
//! settings, so it is an REAPI `Action` ([`action`]). The executor asks the
//! service's action cache after its own ([`Remote::lookup`]) and files fresh
//! results there ([`Remote::store`]); with `execute`, the remote backend
//! ([`backend`]) sends ready steps to the service's workers, and
//! `cleanroom worker` ([`worker`]) is such a worker, running each action in
//! the same sandbox and jail as a local run. The orchestration — the graph,
//! rounds, retries, feedback, the barrier, the journal — never leaves
//! `cleanroom run`.
//!
//! What a result from the service may do is bounded here, in one place
//! ([`Remote::result_of`] and [`hit_of`]): every blob is checked against its
//! digest; a result whose report is not `passed` or `failed` is never used
//! (errors are about a machine); a stage's files can only land in its own
//! write mounts ([`crate::writes::replay`]); and a result whose outputs
//! hold a secret value is never uploaded.

pub mod action;
pub mod backend;
pub mod client;
pub mod worker;

use std::collections::BTreeMap;
use std::path::PathBuf;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;

use crate::cache::digest::Digester;
use std::sync::Arc;

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::exec::backend::Backend;
use crate::exec::results::{Hit, SharedCache, SharedEntry};
use crate::exec::RunOptions;
pub use crate::plan::remote::{CacheMode, RemoteSettings};
use crate::plan::Plan;
use crate::plan::Step;
use crate::plugin::PluginInfo;
use crate::report::RunReport;
use crate::report::{RemoteOrigin, StepReport, StepStatus};
use crate::secrets::Secrets;
use crate::writes::WrittenFile;
use action::{StepAction, REPORT_FILE, WRITTEN_DIR};
pub use client::Client;

/// A connected service and what the executor needs to turn steps into
/// actions.
pub struct Remote {
    /// The connection.
    pub client: Client,
    /// What the run uses it for.
    pub settings: RemoteSettings,
    /// The plan's plugins (an action carries its step's).
    pub plugins: BTreeMap<String, PluginInfo>,
    /// The canonical workspace.
    pub workspace: PathBuf,
    /// Names every input file by its sha256 (reading the memo the run's
    /// own digester keeps, so an unchanged file is not read again).
    pub digester: Digester,
    /// The run's secret values: an output holding one is never uploaded.
    pub secrets: std::sync::Arc<crate::secrets::Secrets>,
    /// The team's sealing key, when `[remote] seal` names one.
    pub seal: Option<Vec<u8>>,
}

impl Remote {
    /// The action for `step` as attempt `attempt` with `feedback`.
    ///
    /// # Errors
    /// When an input cannot be read.
    pub fn action(&self, step: &Step, attempt: u32, feedback: &[String]) -> Result<StepAction, String> {
        StepAction::build(&self.plugins, step, &self.workspace, (attempt, feedback), &self.digester)
    }

    /// The remote action cache's result for `action`, when it has a usable
    /// one: every blob present and what its digest says, the report
    /// `passed` or `failed`. Anything else is a miss, logged.
    pub async fn lookup(&self, action: &StepAction) -> Option<Hit> {
        if self.settings.cache == CacheMode::Off {
            return None;
        }
        let result = match self.client.get_action_result(&action.digest).await {
            Ok(Some(result)) => result,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!("remote cache: {e}; running the step");
                return None;
            }
        };
        match hit_of(&self.client, &action.digest, result, true, self.seal.as_deref()).await {
            Ok(hit) => Some(hit),
            Err(e) => {
                tracing::warn!("remote cache: the result for {} is not used: {e}", action_name(&action.digest));
                None
            }
        }
    }

    /// Files `report` (and a stage's `written` files) under `action` when
    /// the cache is writable, the result is worth keeping and no output
    /// holds a secret value. Best effort: a result that cannot be filed
    /// only costs time, and says so.
    pub async fn store(&self, action: &StepAction, report: &StepReport, written: &[WrittenFile]) {
        // As the local cache: only a verdict on the inputs is worth keeping.
        let verdict = matches!(report.status, StepStatus::Passed | StepStatus::Failed);
        if self.settings.cache != CacheMode::ReadWrite || action.action.do_not_cache || !verdict {
            return;
        }
        let sealing = Sealing { action: &action.digest, key: self.seal.as_deref() };
        // The result names who filed it, as a worker's names the worker.
        let filer = format!("cleanroom-{}-client", host_name());
        let Some((result, blobs)) = result_of(report, written, &self.secrets, &filer, &sealing) else { return };
        // The action and its command go too, so an audit can see from the
        // digest what produced the result.
        let mut all: Vec<Vec<u8>> = blobs;
        for (_, source) in action.blobs.values() {
            if let action::Source::Bytes(bytes) = source {
                all.push(bytes.clone());
            }
        }
        let stored = async {
            self.client.upload_bytes(all).await?;
            self.client.update_action_result(&action.digest, result).await
        };
        if let Err(e) = stored.await {
            tracing::warn!("remote cache: the result of `{}` was not stored: {e}", report.id);
        }
    }
}

/// This machine's name, for naming who produced a result.
pub fn host_name() -> String {
    fs_err::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

/// Runs `plan`: on this machine, or with its `[remote]` service — its
/// action cache asked after the local one, and with `execute` its workers
/// running the steps ([`backend`]). The library's and the CLI's `run`.
///
/// # Errors
/// As [`crate::exec::run`]; `CR034` when the service cannot be reached.
pub fn run(plan: &Plan, options: &RunOptions) -> Result<RunReport, Diagnostics> {
    let Some(settings) = plan.remote.clone() else { return crate::exec::run(plan, options) };
    // `--no-cache` turns the remote action cache off too: every step runs.
    let cache = if options.cache { settings.cache } else { CacheMode::Off };
    if !settings.execute && cache == CacheMode::Off {
        return crate::exec::run(plan, options);
    }
    let settings = RemoteSettings { cache, ..settings };
    crate::exec::run_with(plan, options, &|local, runtime, secrets| {
        let remote = Arc::new(runtime.block_on(connect(plan, &settings, secrets))?);
        let shared = (settings.cache != CacheMode::Off).then(|| Arc::clone(&remote) as Arc<dyn SharedCache>);
        let backend: Arc<dyn Backend> = match settings.execute {
            true => Arc::new(backend::RemoteBackend { local, remote }),
            false => local,
        };
        Ok((backend, shared))
    })
}

/// Connects to the run's REAPI service before anything runs: a service
/// that cannot be reached is bad input (`CR034`), not a slow run.
async fn connect(plan: &Plan, settings: &RemoteSettings, secrets: &Arc<Secrets>) -> Result<Remote, Diagnostics> {
    let token = settings.token.as_deref().and_then(|name| secrets.value(name));
    let client = Client::connect(&settings.endpoint, &settings.instance, token).await.map_err(|e| {
        Diagnostics::from(
            Diagnostic::new(Code::CR034, format!("the remote service: {e}"))
                .hint("start the service or correct [remote] endpoint (or --remote); without --remote the run stays on this machine"),
        )
    })?;
    let client = client.giving_up_when_silent();
    Ok(Remote {
        client,
        settings: settings.clone(),
        plugins: plan.plugins.clone(),
        workspace: plan.workspace.clone(),
        digester: Digester::open(&plan.workspace),
        seal: settings.seal.as_deref().and_then(|name| secrets.value(name)).map(|v| v.as_bytes().to_vec()),
        secrets: Arc::clone(secrets),
    })
}

/// The remote action cache as the executor's shared cache.
impl SharedCache for Remote {
    fn entry<'a>(&'a self, step: &'a Step, attempt: u32, feedback: &'a [String]) -> Option<Box<dyn SharedEntry + 'a>> {
        match self.action(step, attempt, feedback) {
            Ok(action) => Some(Box::new(Entry { remote: self, action })),
            Err(e) => {
                tracing::warn!("step `{}`: not looked up remotely: {e}", step.id);
                None
            }
        }
    }
}

/// A step's action in the remote cache.
struct Entry<'a> {
    remote: &'a Remote,
    action: StepAction,
}

impl SharedEntry for Entry<'_> {
    fn lookup(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Hit>> + Send + '_>> {
        Box::pin(self.remote.lookup(&self.action))
    }

    fn store<'a>(
        &'a self,
        report: &'a StepReport,
        written: &'a [WrittenFile],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(self.remote.store(&self.action, report, written))
    }
}

/// `hash/size`, as reports and the journal name an action.
pub fn action_name(digest: &re::Digest) -> String {
    format!("{}/{}", digest.hash, digest.size_bytes)
}

/// The exit code an action result carries for a report's status.
fn exit_code(status: StepStatus) -> i32 {
    match status {
        StepStatus::Passed => 0,
        StepStatus::Failed => 1,
        StepStatus::Error => 2,
        StepStatus::Skipped => 3,
        StepStatus::Overridden => 4,
    }
}

/// The output holding a sealed result's seal.
pub const SEAL_FILE: &str = "seal";

/// Label of a seal's mac: no other mac of the runner verifies as one.
const SEAL_LABEL: &[u8] = b"cleanroom remote result v1";

/// How a result is sealed: with the team's key (`[remote] seal`,
/// `worker --seal-env`), over the action it answers and every output's
/// path and digest. A client holding the key believes only sealed results,
/// so a peer that may write the action cache (or connect as a worker) but
/// does not hold the key — a stage with network access, say — cannot plant
/// a verdict; the digests make the seal cover every byte.
pub struct Sealing<'a> {
    /// The action the result answers.
    pub action: &'a re::Digest,
    /// The key; `None` leaves results unsealed.
    pub key: Option<&'a [u8]>,
}

impl Sealing<'_> {
    /// The seal of `outputs` (the result's files but the seal itself), hex.
    fn seal(&self, key: &[u8], outputs: &[re::OutputFile]) -> String {
        let name = action_name(self.action);
        let mut parts: Vec<&[u8]> = vec![SEAL_LABEL, name.as_bytes()];
        for file in outputs.iter().filter(|f| f.path != SEAL_FILE) {
            parts.push(file.path.as_bytes());
            parts.push(file.digest.as_ref().map_or(&b""[..], |d| d.hash.as_bytes()));
            parts.push(if file.is_executable { b"x" } else { b"-" });
        }
        crate::key::to_hex(&crate::key::hmac_sha256(key, &parts))
    }
}

/// `report` and a stage's `written` files as an action result and the
/// blobs it names, sealed when `sealing` has a key; `None` when an output
/// holds a secret value (then nothing of it may leave this machine) or it
/// cannot be encoded. `worker` is named in the result's metadata.
pub fn result_of(
    report: &StepReport,
    written: &[WrittenFile],
    secrets: &crate::secrets::Secrets,
    worker: &str,
    sealing: &Sealing<'_>,
) -> Option<(re::ActionResult, Vec<Vec<u8>>)> {
    let json = serde_json::to_vec(report).ok()?;
    let mut blobs = Vec::with_capacity(written.len() + 1);
    let mut output_files = Vec::with_capacity(written.len() + 1);
    for (path, bytes, executable) in std::iter::once((REPORT_FILE.to_string(), json, false))
        .chain(written.iter().map(|f| (format!("{WRITTEN_DIR}/{}", f.path), f.bytes.clone(), f.mode & 0o111 != 0)))
    {
        if secrets.appears_in(&bytes) {
            tracing::warn!("remote cache: an output of `{}` holds a secret value; it is not uploaded", report.id);
            return None;
        }
        output_files.push(re::OutputFile {
            path,
            digest: Some(action::digest_of(&bytes)),
            is_executable: executable,
            ..Default::default()
        });
        blobs.push(bytes);
    }
    if let Some(key) = sealing.key {
        let seal = sealing.seal(key, &output_files).into_bytes();
        output_files.push(re::OutputFile {
            path: SEAL_FILE.into(),
            digest: Some(action::digest_of(&seal)),
            ..Default::default()
        });
        blobs.push(seal);
    }
    let result = re::ActionResult {
        output_files,
        exit_code: exit_code(report.status),
        execution_metadata: Some(re::ExecutedActionMetadata { worker: worker.to_string(), ..Default::default() }),
        ..Default::default()
    };
    Some((result, blobs))
}

/// A result from the service as a hit: its blobs downloaded and checked,
/// the report read, written files by workspace path. `cached` says whether
/// it came from the action cache (shown `cached (remote)`), and then only
/// a `passed` or `failed` report is accepted; a worker's fresh `error` is
/// returned as it is (and never cached).
///
/// With `seal` (the team's key), only a result sealed with it is accepted.
///
/// # Errors
/// A blob missing or not what its digest says; no report; a cached report
/// that is not `passed` or `failed`; an output outside `report.json`,
/// `written/` and `seal`; a missing or wrong seal when `seal` is given.
pub async fn hit_of(
    client: &Client,
    digest: &re::Digest,
    result: re::ActionResult,
    cached: bool,
    seal: Option<&[u8]>,
) -> Result<Hit, String> {
    let digests: Vec<re::Digest> = result.output_files.iter().filter_map(|f| f.digest.clone()).collect();
    let blobs = client.download(&digests).await?;
    if let Some(key) = seal {
        let sealed = result.output_files.iter().find(|f| f.path == SEAL_FILE).and_then(|f| f.digest.as_ref());
        let Some(sealed) = sealed else { return Err("it is not sealed with the team's key".into()) };
        let expected = Sealing { action: digest, key: Some(key) }.seal(key, &result.output_files);
        let given = blobs.get(&sealed.hash).map(Vec::as_slice).unwrap_or_default();
        if !crate::key::constant_time_eq(given, expected.as_bytes()) {
            return Err("its seal does not verify with the team's key".into());
        }
    }
    let mut report: Option<StepReport> = None;
    let mut files = Vec::new();
    for file in &result.output_files {
        let bytes = file.digest.as_ref().and_then(|d| blobs.get(&d.hash)).ok_or("an output has no digest")?;
        if file.path == REPORT_FILE {
            report = Some(serde_json::from_slice(bytes).map_err(|e| format!("its report cannot be read: {e}"))?);
        } else if let Some(rel) = file.path.strip_prefix(WRITTEN_DIR).and_then(|p| p.strip_prefix('/')) {
            let mode = if file.is_executable { 0o755 } else { 0o644 };
            files.push(WrittenFile { path: rel.to_string(), bytes: bytes.clone(), mode });
        } else if file.path == SEAL_FILE {
            // Checked above when this client holds the key.
        } else {
            return Err(format!("it has an output `{}` no step makes", file.path));
        }
    }
    let mut report = report.ok_or("it has no report")?;
    if cached && !matches!(report.status, StepStatus::Passed | StepStatus::Failed) {
        return Err(format!("its report says `{}`, which is never reused", report.status.as_str()));
    }
    let worker = result.execution_metadata.map(|m| m.worker).unwrap_or_default();
    report.cached = cached;
    report.remote = Some(RemoteOrigin { action: action_name(digest), worker, cached });
    let removed = report.changes.iter().filter_map(crate::report::Change::removed).map(str::to_string).collect();
    Ok(Hit { report, files, removed })
}
