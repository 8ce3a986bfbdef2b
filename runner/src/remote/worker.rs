//! `cleanroom worker`: a worker for an REAPI service's scheduler, speaking
//! the Bots API (`google.devtools.remoteworkers.v1test2`) that BuildGrid
//! uses.
//!
//! Each of `--jobs` bot sessions offers the step contract and the worker's
//! `--tool` paths as platform properties, leases one action at a time,
//! materialises its input root in a private directory, runs the step with
//! the local backend — the same sandbox and jail as `cleanroom run` — and
//! reports the report and a stage's written files as the action's result.
//! It refuses an action of another contract, one asking for more time or
//! memory than `--max-timeout`/`--max-memory`, one whose program or tools
//! it does not have, and an input tree with a name that is not a plain
//! file name. On SIGINT or SIGTERM every session says `BOT_TERMINATING`,
//! so the service stops handing it work at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use googleapis_tonic_google_devtools_remoteworkers_v1test2::google::devtools::remoteworkers::v1test2 as bots;
use googleapis_tonic_google_devtools_remoteworkers_v1test2::google::rpc::Status;
use prost::Message;

use super::action::{
    self, Descriptor, CONTRACT_PROPERTY, PLACEHOLDER, PLUGIN_FILE, STEP_FILE, TOOL_PROPERTY, WORKSPACE_DIR,
};
use super::Client;
use crate::exec::local::{Local, Services};
use crate::exec::RunOptions;
use crate::plan::Action;
use crate::sandbox::Sandbox;

/// gRPC codes a refused lease carries.
const INVALID_ARGUMENT: i32 = 3;
const FAILED_PRECONDITION: i32 = 9;
const INTERNAL: i32 = 13;

/// What a worker offers and allows.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The service, `grpc://host:port`.
    pub endpoint: String,
    /// Its instance name.
    pub instance: String,
    /// A bearer token, when the service needs one.
    pub token: Option<String>,
    /// The team's sealing key: results are sealed with it.
    pub seal: Option<Vec<u8>>,
    /// Actions run at once (one bot session each).
    pub jobs: usize,
    /// Host tool paths this worker offers native steps (`--tool`).
    pub tools: Vec<PathBuf>,
    /// The longest step deadline it accepts.
    pub max_timeout: Duration,
    /// The most memory a step may ask for, in bytes.
    pub max_memory: u64,
    /// Where input roots are materialised (one private directory each).
    pub work_dir: PathBuf,
    /// The jail helper and `--allow-unjailed`, as for `cleanroom run`.
    pub run: RunOptions,
}

/// What every session shares.
struct Worker {
    client: Client,
    sandbox: Arc<Sandbox>,
    options: WorkerOptions,
    properties: Vec<(String, String)>,
}

/// A refused or failed action: the code and the reason the service records.
type Refusal = (i32, String);

/// Runs the worker until SIGINT or SIGTERM.
///
/// # Errors
/// When the service cannot be reached or the engine cannot start.
pub fn serve(options: WorkerOptions) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.jobs.max(1) + 1)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the worker's runtime: {e}"))?;
    runtime.block_on(async move {
        let client = Client::connect(&options.endpoint, &options.instance, options.token.as_deref()).await?;
        let capacity = crate::sandbox::pool::Capacity::for_jobs(options.jobs, options.max_memory);
        let sandbox = Arc::new(Sandbox::new(capacity).map_err(|e| e.to_string())?);
        crate::cache::private_dir_for(&options.work_dir, "worker directory")?;
        let mut properties = vec![(CONTRACT_PROPERTY.to_string(), action::contract())];
        for tool in &options.tools {
            properties.push((TOOL_PROPERTY.to_string(), tool.display().to_string()));
        }
        let worker = Arc::new(Worker { client, sandbox, options, properties });
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let mut sessions = tokio::task::JoinSet::new();
        for index in 0..worker.options.jobs.max(1) {
            let (worker, stopping) = (Arc::clone(&worker), stopping.clone());
            // A session the service drops (a restart, a network blip) is
            // opened again; only a stop ends it.
            sessions.spawn(async move {
                loop {
                    match Arc::clone(&worker).session(index, stopping.clone()).await {
                        Ok(()) => return Ok(()),
                        Err(e) if *stopping.borrow() => return Err(e),
                        Err(e) => {
                            tracing::warn!("worker: session {index}: {e}; opening it again in 2 s");
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                    }
                }
            });
        }
        tracing::info!("worker: {} sessions on {}", worker.options.jobs.max(1), worker.client.endpoint());
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| format!("cannot watch for SIGTERM: {e}"))?;
        let outcome = tokio::select! {
            _ = tokio::signal::ctrl_c() => Ok(()),
            _ = terminate.recv() => Ok(()),
            Some(ended) = sessions.join_next() => match ended {
                Ok(Err(e)) => Err(e),
                _ => Ok(()),
            },
        };
        let _ = stop.send(true);
        // Each session says BOT_TERMINATING; do not wait on a stuck one for long.
        let _ =
            tokio::time::timeout(Duration::from_secs(5), async { while sessions.join_next().await.is_some() {} }).await;
        outcome
    })
}

impl Worker {
    fn bots(&self) -> bots::bots_client::BotsClient<tonic::transport::Channel> {
        bots::bots_client::BotsClient::new(self.client.channel()).max_decoding_message_size(64 << 20)
    }

    fn worker_proto(&self) -> bots::Worker {
        let properties = self
            .properties
            .iter()
            .map(|(key, value)| bots::device::Property { key: key.clone(), value: value.clone() });
        bots::Worker {
            devices: vec![bots::Device { handle: "cleanroom".into(), properties: properties.collect() }],
            ..Default::default()
        }
    }

    /// One bot session: lease, run, report, until told to stop.
    async fn session(
        self: Arc<Self>,
        index: usize,
        mut stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), String> {
        let bot_id = format!("cleanroom-{}-{}-{index}", super::host_name(), std::process::id());
        let created = bots::BotSession {
            bot_id: bot_id.clone(),
            status: bots::BotStatus::Ok as i32,
            worker: Some(self.worker_proto()),
            ..Default::default()
        };
        let request =
            bots::CreateBotSessionRequest { parent: self.client.instance().to_string(), bot_session: Some(created) };
        let mut session = self
            .bots()
            .create_bot_session(self.client.request(request))
            .await
            .map_err(|s| format!("CreateBotSession: {}", s.message()))?
            .into_inner();
        loop {
            if *stopping.borrow() {
                return self.terminate(session).await;
            }
            // A session runs one lease at a time, so any lease not finished
            // here is new: BuildGrid hands leases over already ACTIVE.
            let open = [bots::LeaseState::Pending as i32, bots::LeaseState::Active as i32];
            let pending = session.leases.iter().position(|l| open.contains(&l.state));
            tracing::debug!(
                "worker: session {} has leases {:?}",
                session.name,
                session.leases.iter().map(|l| (&l.id, l.state)).collect::<Vec<_>>()
            );
            if let Some(at) = pending {
                session.leases[at].state = bots::LeaseState::Active as i32;
                let lease_id = session.leases[at].id.clone();
                let payload = session.leases[at].payload.clone();
                // Its own task, so it runs while the session is kept alive.
                let mut job = tokio::spawn({
                    let (worker, bot_id) = (Arc::clone(&self), bot_id.clone());
                    async move { worker.run_lease(payload, &bot_id).await }
                });
                let outcome = loop {
                    tokio::select! {
                        outcome = &mut job => break Some(outcome.unwrap_or_else(|e| {
                            (Status { code: INTERNAL, message: format!("the action's task failed: {e}"), details: Vec::new() }, None)
                        })),
                        // Keep the lease alive while the step runs.
                        () = tokio::time::sleep(Duration::from_secs(1)) => {
                            session = self.update(session).await?;
                        }
                        _ = stopping.changed() => break None,
                    }
                };
                let Some((status, result)) = outcome else {
                    // Dropping the step stops it (its sandbox or process group).
                    job.abort();
                    return self.terminate(session).await;
                };
                match session.leases.iter_mut().find(|l| l.id == lease_id) {
                    Some(lease) => {
                        lease.state = bots::LeaseState::Completed as i32;
                        lease.status = Some(status);
                        lease.result = result;
                    }
                    None => tracing::warn!("worker: lease {lease_id} was withdrawn while it ran"),
                }
            }
            let update = self.update(session.clone());
            tokio::select! {
                updated = update => session = updated?,
                _ = stopping.changed() => {}
            }
        }
    }

    async fn update(&self, session: bots::BotSession) -> Result<bots::BotSession, String> {
        let request =
            bots::UpdateBotSessionRequest { name: session.name.clone(), bot_session: Some(session), update_mask: None };
        Ok(self
            .bots()
            .update_bot_session(self.client.request(request))
            .await
            .map_err(|s| format!("UpdateBotSession: {}", s.message()))?
            .into_inner())
    }

    /// Says `BOT_TERMINATING`, so the service hands this session nothing more.
    async fn terminate(&self, mut session: bots::BotSession) -> Result<(), String> {
        session.status = bots::BotStatus::BotTerminating as i32;
        for lease in &mut session.leases {
            if lease.state != bots::LeaseState::Completed as i32 {
                lease.state = bots::LeaseState::Cancelled as i32;
            }
        }
        self.update(session).await.map(|_| ())
    }

    /// Runs a lease's action; the status and result to report.
    async fn run_lease(&self, payload: Option<prost_types::Any>, bot_id: &str) -> (Status, Option<prost_types::Any>) {
        let outcome = async {
            let payload = payload.ok_or((INVALID_ARGUMENT, "the lease has no payload".to_string()))?;
            // The action's digest is of the bytes the client sent: a seal
            // names the action it answers.
            let (action, digest) = if payload.type_url.ends_with("build.bazel.remote.execution.v2.Action") {
                let action =
                    re::Action::decode(payload.value.as_slice()).map_err(|e| (INVALID_ARGUMENT, e.to_string()))?;
                (action, action::digest_of(&payload.value))
            } else if payload.type_url.ends_with("build.bazel.remote.execution.v2.Digest") {
                let digest =
                    re::Digest::decode(payload.value.as_slice()).map_err(|e| (INVALID_ARGUMENT, e.to_string()))?;
                let bytes = self.fetch(&digest).await?;
                (re::Action::decode(bytes.as_slice()).map_err(|e| (INVALID_ARGUMENT, e.to_string()))?, digest)
            } else {
                return Err((INVALID_ARGUMENT, format!("a payload of type `{}` is not an action", payload.type_url)));
            };
            self.execute(&action, &digest, bot_id).await
        }
        .await;
        match outcome {
            Ok(result) => {
                let any = prost_types::Any {
                    type_url: "type.googleapis.com/build.bazel.remote.execution.v2.ActionResult".into(),
                    value: result.encode_to_vec(),
                };
                (Status { code: 0, ..Default::default() }, Some(any))
            }
            Err((code, message)) => {
                tracing::warn!("worker: action refused or failed: {message}");
                (Status { code, message, details: Vec::new() }, None)
            }
        }
    }

    async fn fetch(&self, digest: &re::Digest) -> Result<Vec<u8>, Refusal> {
        let mut found = self.client.download(std::slice::from_ref(digest)).await.map_err(|e| (INTERNAL, e))?;
        found.remove(&digest.hash).ok_or((INTERNAL, format!("blob {} is missing", digest.hash)))
    }

    /// Checks, materialises and runs one action; its result.
    async fn execute(
        &self,
        action: &re::Action,
        digest: &re::Digest,
        bot_id: &str,
    ) -> Result<re::ActionResult, Refusal> {
        let command_digest = action.command_digest.clone().ok_or((INVALID_ARGUMENT, "no command".to_string()))?;
        let command = re::Command::decode(self.fetch(&command_digest).await?.as_slice())
            .map_err(|e| (INVALID_ARGUMENT, e.to_string()))?;
        self.check_platform(action, &command)?;
        let dir = tempfile::Builder::new()
            .prefix("action-")
            .tempdir_in(&self.options.work_dir)
            .map_err(|e| (INTERNAL, format!("cannot make a directory for the action: {e}")))?;
        let root = action.input_root_digest.clone().ok_or((INVALID_ARGUMENT, "no input root".to_string()))?;
        self.materialise(&root, dir.path()).await?;
        let descriptor: Descriptor = serde_json::from_slice(
            &fs_err::read(dir.path().join(STEP_FILE))
                .map_err(|e| (INVALID_ARGUMENT, format!("no {STEP_FILE}: {e}")))?,
        )
        .map_err(|e| (INVALID_ARGUMENT, format!("{STEP_FILE} cannot be read: {e}")))?;
        if descriptor.contract != action::contract() {
            return Err((
                FAILED_PRECONDITION,
                format!(
                    "the step was made by contract {}, this worker runs {}",
                    descriptor.contract,
                    action::contract()
                ),
            ));
        }
        let workspace_dir = dir.path().join(WORKSPACE_DIR);
        fs_err::create_dir_all(&workspace_dir).map_err(|e| (INTERNAL, e.to_string()))?;
        let workspace = workspace_dir.canonicalize().map_err(|e| (INTERNAL, e.to_string()))?;
        let mut step = action::rebase_step(&descriptor.step, Path::new(PLACEHOLDER), &workspace)
            .map_err(|e| (INVALID_ARGUMENT, e))?;
        // What was shipped is what exists (a write directory the step will
        // create was not).
        for mount in &mut step.grant.mounts {
            mount.exists = mount.host.exists();
        }
        self.check_limits(&step)?;
        let mut plugins = BTreeMap::new();
        if let (Action::Plugin(name), Some(info)) = (&step.action, &descriptor.plugin) {
            let info = crate::plugin::PluginInfo { path: dir.path().join(PLUGIN_FILE), ..info.clone() };
            let loaded = self.sandbox.load(name, &info).map_err(|e| (FAILED_PRECONDITION, e.to_string()))?;
            plugins.insert(name.clone(), loaded);
        }
        let local = Local {
            sandbox: Arc::clone(&self.sandbox),
            plugins,
            workspace: workspace.clone(),
            options: self.options.run.clone(),
            secrets: Arc::default(),
            services: Services::default(),
            verdicts: None,
        };
        let digester = crate::cache::digest::Digester::cold(&workspace);
        let inputs = crate::exec::input_digests(&step, &digester);
        use crate::exec::backend::Backend as _;
        let report = local.run(&step, descriptor.attempt, descriptor.feedback, &inputs).await;
        // Each action has a workspace of its own: nothing staged for this
        // one serves the next (a store still using a copy keeps it).
        crate::sandbox::fs::release_staged();
        let written: Vec<String> =
            report.changes.iter().filter_map(crate::report::Change::written).map(str::to_string).collect();
        let files = crate::writes::read_written(&step.grant.mounts, &written)
            .map_err(|e| (INTERNAL, format!("the step's writes cannot be read back: {e}")))?;
        let sealing = super::Sealing { action: digest, key: self.options.seal.as_deref() };
        let (result, blobs) = super::result_of(&report, &files, &crate::secrets::Secrets::default(), bot_id, &sealing)
            .ok_or((INTERNAL, "the result cannot be encoded".to_string()))?;
        self.client.upload_bytes(blobs).await.map_err(|e| (INTERNAL, e))?;
        Ok(result)
    }

    /// Refuses an action of another contract, or needing a tool this
    /// worker does not offer.
    fn check_platform(&self, action: &re::Action, command: &re::Command) -> Result<(), Refusal> {
        #[allow(deprecated, reason = "services before REAPI 2.2 read the platform from the command")]
        let platform = action.platform.as_ref().or(command.platform.as_ref());
        let properties = platform.map(|p| p.properties.as_slice()).unwrap_or_default();
        let contract = properties.iter().find(|p| p.name == CONTRACT_PROPERTY).map(|p| p.value.as_str());
        if contract != Some(action::contract().as_str()) {
            return Err((
                FAILED_PRECONDITION,
                format!("the action asks for contract {contract:?}, this worker runs {}", action::contract()),
            ));
        }
        for tool in properties.iter().filter(|p| p.name == TOOL_PROPERTY) {
            if !self.options.tools.iter().any(|t| t.as_os_str() == tool.value.as_str()) {
                return Err((FAILED_PRECONDITION, format!("this worker does not offer the tool `{}`", tool.value)));
            }
        }
        Ok(())
    }

    /// Refuses a step asking for more than this worker allows, or whose
    /// program it does not have.
    fn check_limits(&self, step: &crate::plan::Step) -> Result<(), Refusal> {
        let limits = &step.grant.limits;
        if limits.timeout > self.options.max_timeout {
            return Err((
                FAILED_PRECONDITION,
                format!(
                    "step `{}` asks for a {:?} deadline; this worker allows at most {:?} (--max-timeout)",
                    step.id, limits.timeout, self.options.max_timeout
                ),
            ));
        }
        let memory = step.grant.native().and_then(|n| n.memory).unwrap_or(limits.memory);
        if memory > self.options.max_memory {
            return Err((
                FAILED_PRECONDITION,
                format!(
                    "step `{}` asks for {memory} bytes of memory; this worker allows at most {} (--max-memory)",
                    step.id, self.options.max_memory
                ),
            ));
        }
        if let Action::Command { program, .. } = &step.action {
            if !program.exists() {
                return Err((FAILED_PRECONDITION, format!("this worker has no `{}`", program.display())));
            }
        }
        Ok(())
    }

    /// Writes the input root `root` into `dir`: directories and files
    /// first, symbolic links last (so no write goes through one), every
    /// name a plain file name, every blob checked against its digest.
    async fn materialise(&self, root: &re::Digest, dir: &Path) -> Result<(), Refusal> {
        let mut pending = vec![(root.clone(), dir.to_path_buf())];
        let mut files: Vec<(re::Digest, PathBuf, bool)> = Vec::new();
        let mut links: Vec<(PathBuf, String)> = Vec::new();
        while let Some((digest, path)) = pending.pop() {
            let directory = re::Directory::decode(self.fetch(&digest).await?.as_slice())
                .map_err(|e| (INVALID_ARGUMENT, format!("an input directory cannot be read: {e}")))?;
            fs_err::create_dir_all(&path).map_err(|e| (INTERNAL, e.to_string()))?;
            for node in directory.directories {
                let child = path.join(plain(&node.name)?);
                pending.push((node.digest.unwrap_or_default(), child));
            }
            for node in directory.files {
                files.push((node.digest.unwrap_or_default(), path.join(plain(&node.name)?), node.is_executable));
            }
            for node in directory.symlinks {
                links.push((path.join(plain(&node.name)?), node.target));
            }
        }
        let digests: Vec<re::Digest> = files.iter().map(|(d, _, _)| d.clone()).collect();
        let blobs = self.client.download(&digests).await.map_err(|e| (INTERNAL, e))?;
        for (digest, path, executable) in files {
            let bytes = blobs.get(&digest.hash).ok_or((INTERNAL, format!("blob {} is missing", digest.hash)))?;
            let mode = if executable { 0o755 } else { 0o644 };
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&path)
                .map_err(|e| (INVALID_ARGUMENT, format!("cannot write input `{}`: {e}", path.display())))?;
            file.write_all(bytes).map_err(|e| (INTERNAL, e.to_string()))?;
        }
        for (path, target) in links {
            std::os::unix::fs::symlink(&target, &path)
                .map_err(|e| (INVALID_ARGUMENT, format!("cannot make link `{}`: {e}", path.display())))?;
        }
        Ok(())
    }
}

/// `name` if it is one plain path component.
fn plain(name: &str) -> Result<&str, Refusal> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err((INVALID_ARGUMENT, format!("the input tree has the name `{name}`, which is not a file name")));
    }
    Ok(name)
}
