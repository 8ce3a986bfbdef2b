//! The service capability, sandbox half: a program under evaluation that
//! listens for requests (the plan half is [`crate::plan::services`]).
//!
//! [`RunningService::start`] runs the program in the kernel jail with a
//! network namespace of its own whose loopback is up and holds nothing
//! else: no route out, no other step's service, nothing of the host. The
//! program may bind its port and no other, and connect to nothing (Landlock
//! network rules). The runner reaches it through the jail's relay
//! ([`super::jail::enter`]): a process inside the namespace but outside the
//! program's Landlock domain and PID namespace, which connects to the port
//! for the runner and hands the connected socket back over a Unix socket
//! pair the runner made. No path, port or address on the host leads in.
//!
//! The service counts as started once it is ready ([`Ready`]), polled with
//! backoff until its ready timeout; a service that exits or never becomes
//! ready is [`ServiceFailure`], with its last output lines for humans.
//! Dropping the [`RunningService`] stops the jail, which kills the
//! program's whole process tree (its PID namespace, process group and
//! cgroups); so do Ctrl-C and the runner's death.
//!
//! Evaluators send HTTP requests through the `service` interface of the
//! WIT contract; they get the response, or one of the fixed, host-authored
//! [`SendError`] words.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;

use super::bindings::evaluator::cleanroom::plugin::service::{Call, Host, Request, Response};
use super::jail::step::{NativeStep, StepJail};
use super::jail::{self, RelaySpec};
use super::output::CappedPipe;
use super::StepState;
use crate::plan::services::Ready;
use crate::plan::Grant;

/// Longest a service may run: far past any round.
const LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest one request may take when the step's deadline is further.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body an evaluator is given.
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;
/// The longest pause between two readiness probes: a probe is one local
/// connection through the relay, so polling often costs little and a
/// ready service is noticed within a few milliseconds.
const MAX_READY_PAUSE: Duration = Duration::from_millis(5);
/// Bytes of each output stream a service's journal entry keeps (its end).
const LOG_TAIL_BYTES: usize = 64 << 10;
/// Output lines of a failed service kept for the report.
const TAIL_LINES: usize = 10;

/// What starting a service needs.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// What it is, for messages: ``service `api` `` or ``twin `mail` ``.
    pub name: String,
    /// The jail helper (the `cleanroom` binary).
    pub helper: PathBuf,
    /// The program (absolute) and its arguments.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its grant (native: reads, tools, environment, limits).
    pub grant: Grant,
    /// The canonical workspace: its working directory.
    pub workspace: PathBuf,
    /// The port it listens on inside its namespace (also `$PORT`).
    pub port: u16,
    /// When it counts as ready.
    pub ready: Ready,
    /// A component to serve in-process instead of the program (then
    /// `program`, `args`, `port` and `ready` are not used).
    pub component: Option<ComponentServer>,
}

/// Why a service could not be used, for the report: a reason in the
/// runner's words and the service's last output lines (its own text,
/// never sent to a stage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFailure {
    /// `service `api` did not become ready in 30s`, ...
    pub reason: String,
    /// Its last lines of stdout and stderr.
    pub tail: Vec<String>,
    /// Whether the cause is the host's (its jail could not be made), not
    /// the program's.
    pub infrastructure: bool,
}

/// Why a request got no response: a fixed word chosen by the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The step has no service.
    NoService,
    /// Nothing accepted the connection.
    NotReachable,
    /// No whole response in time.
    TimedOut,
    /// The body was over [`MAX_RESPONSE_BYTES`].
    TooLarge,
    /// Not an HTTP/1.1 response.
    BadResponse,
    /// The request cannot be sent as written.
    BadRequest,
}

impl SendError {
    /// The error string the evaluator receives (the WIT documents the set).
    pub fn as_str(self) -> &'static str {
        match self {
            SendError::NoService => "no service",
            SendError::NotReachable => "not reachable",
            SendError::TimedOut => "timed out",
            SendError::TooLarge => "too large",
            SendError::BadResponse => "bad response",
            SendError::BadRequest => "bad request",
        }
    }
}

/// A twin as one service's runner runs it: its program (started fresh for
/// every scenario run), the faults on its traffic, and the calls recorded.
#[derive(Debug, Clone)]
pub struct TwinSpec {
    /// Its `[twin.ID]`.
    pub id: String,
    /// What the service believes it calls (sent as `x-cleanroom-origin`).
    pub origin: String,
    /// The variable that tells the service the twin's URL.
    pub url_env: String,
    /// Faults on the way.
    pub faults: crate::plan::services::Faults,
    /// Its program, run like a service.
    pub server: ServiceSpec,
}

/// One twin of a running service.
struct TwinState {
    spec: TwinSpec,
    /// Its program, restarted for every scenario run.
    running: tokio::sync::Mutex<Option<Arc<RunningService>>>,
    /// The requests it received in this scenario run.
    calls: Mutex<Vec<Call>>,
    /// Requests seen in this scenario run: the fault sequence's position.
    seen: std::sync::atomic::AtomicU64,
}

/// Largest request body a twin call records and forwards.
const MAX_CALL_BODY: usize = 1 << 20;

/// Header names whose values are secrets, never recorded.
const SECRET_HEADERS: &[&str] =
    &["authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key", "x-auth-token"];

/// A started, ready service. Dropping it stops the program and everything
/// it started, and its twins.
pub struct RunningService {
    name: String,
    twins: Vec<Arc<TwinState>>,
    /// Takes the service's twin connections from the relay.
    twin_task: Option<tokio::task::JoinHandle<()>>,
    /// The relay into a program's namespace; `None` for a component.
    relay: Option<tokio::sync::Mutex<tokio::net::UnixStream>>,
    /// A component served in-process; `None` for a program.
    component: Option<ComponentServer>,
    stdout: CappedPipe,
    stderr: CappedPipe,
    /// How the jail ended, once it has (the program exited or died), and
    /// whether the host is to blame (the jail could not be set up).
    ended: Arc<Mutex<Option<(String, bool)>>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// When it became ready, measured from the start of its jail.
    pub ready_after: Duration,
    /// Held for a whole scenario run: evaluators sharing the service take
    /// turns, so one's twin reset never wipes the calls another is about
    /// to read.
    turn: tokio::sync::Mutex<()>,
}

impl Drop for RunningService {
    fn drop(&mut self) {
        // Dropping the jail's future kills the PID namespace, the process
        // group and the cgroups, and waits for them to go.
        if let Some(task) = &self.task {
            task.abort();
        }
        if let Some(task) = &self.twin_task {
            task.abort();
        }
    }
}

impl RunningService {
    /// Starts `twins`, then the service, and waits until each is ready.
    ///
    /// # Errors
    /// [`ServiceFailure`] when a jail cannot be made, or a program exits or
    /// is not ready in time.
    pub async fn start(spec: &ServiceSpec, twins: &[TwinSpec]) -> Result<Arc<RunningService>, ServiceFailure> {
        let mut states = Vec::new();
        for twin in twins {
            let server = RunningService::start_one(&twin.server, Vec::new()).await?;
            states.push(Arc::new(TwinState {
                spec: twin.clone(),
                running: tokio::sync::Mutex::new(Some(Arc::new(server))),
                calls: Mutex::new(Vec::new()),
                seen: std::sync::atomic::AtomicU64::new(0),
            }));
        }
        Ok(Arc::new(RunningService::start_one(spec, states).await?))
    }

    /// Starts fresh twins (a new program each, no calls recorded): at the
    /// start of every scenario run.
    ///
    /// # Errors
    /// When a twin cannot be started again.
    pub async fn reset_twins(&self) -> Result<(), ServiceFailure> {
        for twin in &self.twins {
            let mut running = twin.running.lock().await;
            // The old one goes first: the new one takes its port.
            *running = None;
            *running = Some(Arc::new(RunningService::start_one(&twin.spec.server, Vec::new()).await?));
            if let Ok(mut calls) = twin.calls.lock() {
                calls.clear();
            }
            twin.seen.store(0, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// The calls the service made to twin `id` in this scenario run.
    ///
    /// # Errors
    /// When it has no twin `id`.
    pub fn twin_calls(&self, id: &str) -> Result<Vec<Call>, &'static str> {
        let twin = self.twins.iter().find(|t| t.spec.id == id).ok_or("no such twin")?;
        Ok(twin.calls.lock().map(|c| c.clone()).unwrap_or_default())
    }

    /// A component service, ready at once; its calls to `twins` are
    /// answered in-process ([`ComponentServer::send`]).
    fn serve_component(name: String, server: ComponentServer, twins: Vec<Arc<TwinState>>) -> RunningService {
        let output = server.grant.limits.output;
        RunningService {
            name,
            twins,
            twin_task: None,
            relay: None,
            component: Some(server),
            stdout: CappedPipe::new(output),
            stderr: CappedPipe::new(output),
            ended: Arc::default(),
            task: None,
            ready_after: Duration::ZERO,
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// Waits for this evaluator's turn with the service, for one scenario
    /// run: from its twin reset to its last request. Evaluators that share
    /// a service (`restart = "on-change"`) run their scenarios one at a
    /// time against it.
    pub async fn turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.turn.lock().await
    }

    /// Whether it calls twins.
    pub fn has_twins(&self) -> bool {
        !self.twins.is_empty()
    }

    /// Starts one program (a service with `twins`, or a twin's program
    /// with none) and waits until it is ready.
    async fn start_one(spec: &ServiceSpec, twins: Vec<Arc<TwinState>>) -> Result<RunningService, ServiceFailure> {
        if let Some(component) = &spec.component {
            return Ok(RunningService::serve_component(spec.name.clone(), component.clone(), twins));
        }
        let host_failure = |reason: String| ServiceFailure {
            reason: format!("{} could not be started: {reason}", spec.name),
            tail: Vec::new(),
            infrastructure: true,
        };
        let pair = || {
            std::os::unix::net::UnixStream::pair().and_then(|(ours, theirs)| {
                ours.set_nonblocking(true)?;
                Ok((tokio::net::UnixStream::from_std(ours)?, theirs))
            })
        };
        let ((ours, theirs), (twin_ours, twin_theirs)) = pair()
            .and_then(|a| Ok((a, pair()?)))
            .map_err(|e| host_failure(format!("cannot make its relay sockets: {e}")))?;
        let mut grant = spec.grant.clone();
        if let Some(native) = grant.native_mut() {
            native.env.insert("PORT".into(), spec.port.to_string());
        }
        let secrets = crate::secrets::Secrets::default();
        let jail = StepJail::build(NativeStep {
            program: &spec.program,
            args: &spec.args,
            grant: &grant,
            workspace: &spec.workspace,
            staged: Vec::new(),
            stage: None,
            secrets: &secrets,
            allow_unjailed: false,
            stdin: None,
            build_dirs: &[],
        })
        .map_err(host_failure)?;
        let mut jail_spec = jail.spec.clone();
        jail_spec.relay =
            Some(RelaySpec { port: spec.port, twins: twins.iter().map(|t| t.spec.server.port).collect() });
        let stdout = CappedPipe::new(grant.limits.output);
        let stderr = CappedPipe::new(grant.limits.output);
        let ended = Arc::new(Mutex::new(None));
        let task = {
            let (helper, stdout, stderr, ended) = (spec.helper.clone(), stdout.clone(), stderr.clone(), ended.clone());
            let relay_ends: (OwnedFd, OwnedFd) = (theirs.into(), twin_theirs.into());
            tokio::spawn(async move {
                // The jail's resources (temp dir, cgroups) live as long as it.
                let _jail = jail;
                let outcome = jail::run_with(&helper, &jail_spec, LIFETIME, (&stdout, &stderr), Some(relay_ends)).await;
                let how = match outcome.result {
                    Ok(exit) => (format!("exited with {}", exit.describe()), false),
                    Err(failure) => (failure.to_string(), failure.is_infrastructure()),
                };
                if let Ok(mut ended) = ended.lock() {
                    *ended = Some(how);
                }
            })
        };
        let started = Instant::now();
        let twin_task = (!twins.is_empty()).then(|| tokio::spawn(take_twin_calls(twin_ours, twins.clone())));
        let mut service = RunningService {
            name: spec.name.clone(),
            twins,
            twin_task,
            relay: Some(tokio::sync::Mutex::new(ours)),
            component: None,
            stdout,
            stderr,
            ended,
            task: Some(task),
            ready_after: Duration::ZERO,
            turn: tokio::sync::Mutex::new(()),
        };
        service.wait_until_ready(&spec.ready, started).await?;
        service.ready_after = started.elapsed();
        Ok(service)
    }

    /// Polls readiness with backoff (1 ms doubling to [`MAX_READY_PAUSE`])
    /// until ready, exited, or out of time.
    async fn wait_until_ready(&self, ready: &Ready, started: Instant) -> Result<(), ServiceFailure> {
        let deadline = started + ready.timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some((how, infrastructure)) = self.ended() {
                let mut failure = self.failure(format!("{} {how} before it became ready", self.name));
                failure.infrastructure = infrastructure;
                return Err(failure);
            }
            if self.is_ready(ready).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.failure(format!(
                    "{} did not become ready in {}",
                    self.name,
                    crate::manifest::DurationSpec(ready.timeout)
                )));
            }
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(MAX_READY_PAUSE);
        }
    }

    async fn is_ready(&self, ready: &Ready) -> bool {
        if let Some(text) = &ready.stdout {
            return String::from_utf8_lossy(&self.stdout.contents().bytes).contains(text.as_str());
        }
        match &ready.http {
            None => self.connect().await.is_ok(),
            Some(path) => {
                let request =
                    Request { method: "GET".into(), path: path.clone(), headers: Vec::new(), body: Vec::new() };
                let deadline = Instant::now() + Duration::from_secs(1);
                matches!(self.send(request, deadline).await, Ok(response) if (200..400).contains(&response.status))
            }
        }
    }

    fn ended(&self) -> Option<(String, bool)> {
        self.ended.lock().ok().and_then(|e| e.clone())
    }

    fn failure(&self, reason: String) -> ServiceFailure {
        ServiceFailure { reason, tail: self.tail(), infrastructure: false }
    }

    /// Its last lines of output (stderr, then stdout), for humans.
    pub fn tail(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for pipe in [&self.stdout, &self.stderr] {
            let text = String::from_utf8_lossy(&pipe.contents().bytes).into_owned();
            let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            lines.extend(all[all.len().saturating_sub(TAIL_LINES)..].iter().map(|l| l.to_string()));
        }
        lines
    }

    /// What it printed so far (the last [`LOG_TAIL_BYTES`] of each
    /// stream) and how it ended, for the journal; then its twins' too.
    pub fn logs(&self) -> Vec<crate::report::events::ServiceLog> {
        let tail = |pipe: &CappedPipe| {
            let bytes = pipe.contents().bytes;
            let start = bytes.len().saturating_sub(LOG_TAIL_BYTES);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        };
        let ended = self.ended().map_or_else(|| "stopped".to_string(), |(how, _)| how);
        let own = crate::report::events::ServiceLog {
            service: self.name.clone(),
            ended,
            stdout: tail(&self.stdout),
            stderr: tail(&self.stderr),
        };
        let mut logs = vec![own];
        for twin in &self.twins {
            if let Ok(running) = twin.running.try_lock() {
                logs.extend(running.iter().flat_map(|r| r.logs()));
            }
        }
        logs
    }

    /// A TCP connection to the service's port, made inside its namespace by
    /// the relay: one byte asks, the answer is `k` with the connected
    /// socket (`SCM_RIGHTS`) or `e` when nothing listens.
    async fn connect(&self) -> Result<std::net::TcpStream, SendError> {
        use tokio::io::AsyncWriteExt;
        let Some(relay) = &self.relay else { return Err(SendError::NotReachable) };
        let mut relay = relay.lock().await;
        relay.write_all(b"c").await.map_err(|_| SendError::NotReachable)?;
        match receive_socket(&relay).await {
            Ok((_, Some(stream))) => Ok(stream),
            _ => Err(SendError::NotReachable),
        }
    }

    /// Sends one HTTP/1.1 request and reads the whole response, before
    /// `deadline` at the latest.
    ///
    /// # Errors
    /// The [`SendError`] word for what went wrong.
    pub async fn send(&self, request: Request, deadline: Instant) -> Result<Response, SendError> {
        let deadline = deadline.min(Instant::now() + REQUEST_TIMEOUT);
        if let Some(component) = &self.component {
            return component.send(request, deadline, (&self.stdout, &self.stderr), &self.twins).await;
        }
        let stream = self.connect().await?;
        let http_request = build_request(request)?;
        let exchange = async move {
            stream.set_nonblocking(true).map_err(|_| SendError::NotReachable)?;
            let stream = tokio::net::TcpStream::from_std(stream).map_err(|_| SendError::NotReachable)?;
            let io = wasmtime_wasi_http::io::TokioIo::new(stream);
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(io).await.map_err(|_| SendError::BadResponse)?;
            let driver = tokio::spawn(async move {
                let _ = connection.await;
            });
            let response = sender.send_request(http_request).await.map_err(|e| {
                if e.is_parse() {
                    SendError::BadResponse
                } else {
                    SendError::NotReachable
                }
            })?;
            let (parts, body) = response.into_parts();
            let body = http_body_util::Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                        SendError::TooLarge
                    } else {
                        SendError::BadResponse
                    }
                })?
                .to_bytes();
            driver.abort();
            let headers = parts
                .headers
                .iter()
                .map(|(name, value)| {
                    (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned())
                })
                .collect();
            Ok(Response { status: parts.status.as_u16(), headers, body: body.to_vec() })
        };
        match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), exchange).await {
            Ok(result) => result,
            Err(_) => Err(SendError::TimedOut),
        }
    }
}

/// A `wasi:http/proxy` component served in-process: a fresh instance per
/// request, as `wasi:http` prescribes, in a Store built from its grant
/// (its `read` mounts, no environment, no outgoing HTTP, its memory cap and
/// the request's deadline). What it prints goes to the service's output.
#[derive(Clone)]
pub struct ComponentServer {
    engine: wasmtime::Engine,
    pre: wasmtime_wasi_http::p2::bindings::ProxyPre<StepState>,
    grant: Grant,
}

impl std::fmt::Debug for ComponentServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentServer").field("grant", &self.grant).finish_non_exhaustive()
    }
}

impl ComponentServer {
    pub(super) fn new(
        engine: wasmtime::Engine,
        pre: wasmtime_wasi_http::p2::bindings::ProxyPre<StepState>,
        grant: Grant,
    ) -> ComponentServer {
        ComponentServer { engine, pre, grant }
    }

    /// Handles `request` in a fresh instance. The instance's outgoing
    /// requests to `http://TWIN.twin` (its `url_env` for each of `twins`)
    /// are answered by that twin, recorded and faulted as a program
    /// service's calls are; any other request is refused.
    async fn send(
        &self,
        request: Request,
        deadline: Instant,
        (stdout, stderr): (&CappedPipe, &CappedPipe),
        twins: &[Arc<TwinState>],
    ) -> Result<Response, SendError> {
        use wasmtime_wasi_http::WasiHttpView;
        let request = build_request(request)?.map(|body| {
            body.map_err(|never: std::convert::Infallible| -> wasmtime_wasi_http::Error { match never {} })
        });
        let secrets = crate::secrets::Secrets::default();
        let env = twins
            .iter()
            .map(|t| (t.spec.url_env.clone(), format!("http://{}", component_twin_authority(&t.spec.id))))
            .collect();
        let io = super::StoreIo {
            stdout,
            stderr,
            stdin: Vec::new(),
            args: None,
            secrets: &secrets,
            denied: Arc::default(),
            env,
        };
        let mut grant = self.grant.clone();
        grant.limits.timeout = deadline.saturating_duration_since(Instant::now());
        let routes = twins
            .iter()
            .map(|t| (component_twin_authority(&t.spec.id), Arc::clone(t) as Arc<dyn super::network::LocalRoute>))
            .collect();
        let judged = super::Judged { routes, ..super::Judged::default() };
        let (mut store, _staging) =
            super::new_store(&self.engine, &grant, io, judged).map_err(|_| SendError::NotReachable)?;
        super::limits::arm_deadline(&mut store, deadline);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let scheme = wasmtime_wasi_http::p2::bindings::http::types::Scheme::Http;
        let incoming =
            store.data_mut().http().new_incoming_request(scheme, request).map_err(|_| SendError::BadRequest)?;
        let out = store.data_mut().http().new_response_outparam(sender).map_err(|_| SendError::BadRequest)?;
        // The handler and the reading of its answer run side by side in
        // this task (the body streams from one to the other); the answer
        // is whole when `work` is done, whatever the handler does after.
        let pre = &self.pre;
        let call = async {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy.wasi_http_incoming_handler().call_handle(&mut store, incoming, out).await
        };
        let work = async {
            let response = match receiver.await {
                Ok(Ok(response)) => response,
                // The handler trapped, or returned without a response.
                _ => return Err(SendError::BadResponse),
            };
            let (parts, body) = response.into_parts();
            let body = http_body_util::Limited::new(body, MAX_RESPONSE_BYTES).collect().await.map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                    SendError::TooLarge
                } else {
                    SendError::BadResponse
                }
            })?;
            let headers = parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect();
            Ok(Response { status: parts.status.as_u16(), headers, body: body.to_bytes().to_vec() })
        };
        let both = async {
            tokio::pin!(call);
            tokio::pin!(work);
            let mut called = false;
            loop {
                tokio::select! {
                    answer = &mut work => break answer,
                    _ = &mut call, if !called => called = true,
                }
            }
        };
        match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), both).await {
            Ok(result) => result,
            Err(_) => Err(SendError::TimedOut),
        }
    }
}

/// Takes every connection the service makes to a twin from the relay
/// (tagged with the twin's index) and serves it: each request is recorded,
/// delayed or failed as the twin's faults say, and forwarded to the twin's
/// current program.
async fn take_twin_calls(relay: tokio::net::UnixStream, twins: Vec<Arc<TwinState>>) {
    loop {
        let (tag, stream) = match receive_socket(&relay).await {
            Ok(received) => received,
            Err(_) => return,
        };
        let Some(stream) = stream else { continue };
        let Some(twin) = twins.get(usize::from(tag)).cloned() else { continue };
        tokio::spawn(serve_twin_connection(stream, twin));
    }
}

/// The next message from a relay: its one-byte tag and the connected
/// socket passed with it (`SCM_RIGHTS`), if any.
///
/// # Errors
/// When the relay is gone (end of stream) or the socket fails.
async fn receive_socket(relay: &tokio::net::UnixStream) -> std::io::Result<(u8, Option<std::net::TcpStream>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd, RawFd};
    let receive = || -> std::io::Result<(u8, Option<RawFd>)> {
        let mut tag = [0u8; 1];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut tag)];
        let message = recvmsg::<()>(relay.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(std::io::Error::from)?;
        if message.bytes == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let fd = message.cmsgs().ok().into_iter().flatten().find_map(|c| match c {
            ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
            _ => None,
        });
        Ok((tag[0], fd))
    };
    let (tag, fd) = loop {
        relay.readable().await?;
        match relay.try_io(tokio::io::Interest::READABLE, receive) {
            Ok(received) => break received,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    };
    #[expect(unsafe_code, reason = "taking ownership of a descriptor the kernel just passed us")]
    // SAFETY: the kernel installed this descriptor for us alone
    // (SCM_RIGHTS); nothing else owns it.
    let stream = fd.map(|fd| unsafe { std::net::TcpStream::from_raw_fd(fd) });
    Ok((tag, stream))
}

/// Serves one connection from the service to a twin.
async fn serve_twin_connection(stream: std::net::TcpStream, twin: Arc<TwinState>) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let Ok(stream) = tokio::net::TcpStream::from_std(stream) else { return };
    let io = wasmtime_wasi_http::io::TokioIo::new(stream);
    let handler = hyper::service::service_fn(move |request| {
        let twin = Arc::clone(&twin);
        async move { Ok::<_, std::convert::Infallible>(twin_call(&twin, request).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, handler).await;
}

/// The host name a component service reaches twin `id` at:
/// `$URL_ENV` is `http://ID.twin`.
fn component_twin_authority(id: &str) -> String {
    format!("{id}.twin")
}

impl super::network::LocalRoute for TwinState {
    fn call(
        &self,
        call: super::network::LocalCall,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = super::network::LocalAnswer> + Send + '_>> {
        Box::pin(twin_exchange(self, call))
    }
}

/// One call to a twin over a connection from the relay, as hyper hands it.
async fn twin_call(
    twin: &TwinState,
    request: http::Request<hyper::body::Incoming>,
) -> http::Response<http_body_util::Full<hyper::body::Bytes>> {
    let (parts, body) = request.into_parts();
    let (status, headers, body) = match http_body_util::Limited::new(body, MAX_CALL_BODY).collect().await {
        Err(_) => (413, Vec::new(), b"request body over the twin's limit".to_vec()),
        Ok(body) => twin_exchange(twin, super::network::LocalCall::from_parts(&parts, body.to_bytes().to_vec())).await,
    };
    super::network::local_response(status, headers, http_body_util::Full::new(hyper::body::Bytes::from(body)))
}

/// One call to a twin: recorded, then failed or delayed as its faults say,
/// then forwarded to the twin's current program; its answer, without the
/// headers that describe a connection.
async fn twin_exchange(twin: &TwinState, call: super::network::LocalCall) -> super::network::LocalAnswer {
    let respond = |status: u16, body: &str| (status, Vec::new(), body.as_bytes().to_vec());
    let super::network::LocalCall { method, path, headers, body } = call;
    if body.len() > MAX_CALL_BODY {
        return respond(413, "request body over the twin's limit");
    }
    let recorded = headers
        .iter()
        .map(|(name, value)| {
            let value = if SECRET_HEADERS.contains(&name.as_str()) { "<redacted>".to_string() } else { value.clone() };
            (name.clone(), value)
        })
        .collect();
    if let Ok(mut calls) = twin.calls.lock() {
        calls.push(Call { method: method.clone(), path: path.clone(), headers: recorded, body: body.clone() });
    }
    let faults = twin.spec.faults;
    let n = twin.seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if faults.error_rate > 0.0 && unit_interval(faults.seed, n) < faults.error_rate {
        return respond(503, "{\"error\":\"injected fault\"}");
    }
    let Some(server) = twin.running.lock().await.clone() else { return respond(502, "the twin is not running") };
    let mut forwarded: Vec<(String, String)> = headers.into_iter().filter(|(name, _)| name != "host").collect();
    forwarded.push(("x-cleanroom-origin".into(), twin.spec.origin.clone()));
    let request = Request { method, path, headers: forwarded, body };
    match server.send(request, Instant::now() + REQUEST_TIMEOUT).await {
        Err(e) => respond(502, e.as_str()),
        Ok(answer) => {
            let headers = answer
                .headers
                .into_iter()
                .filter(|(name, _)| {
                    !["connection", "transfer-encoding", "content-length", "keep-alive"].contains(&name.as_str())
                })
                .collect();
            (answer.status, headers, answer.body)
        }
    }
}

/// A number in [0, 1) from `seed` and `n`: the same for the same pair
/// (splitmix64), so a seed gives the same faults request by request.
fn unit_interval(seed: u64, n: u64) -> f64 {
    let mut z = seed.wrapping_add(n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The evaluator's request as an `http` request with a full body.
fn build_request(request: Request) -> Result<http::Request<http_body_util::Full<hyper::body::Bytes>>, SendError> {
    if !request.path.starts_with('/') {
        return Err(SendError::BadRequest);
    }
    let mut builder = http::Request::builder()
        .method(http::Method::from_bytes(request.method.as_bytes()).map_err(|_| SendError::BadRequest)?)
        .uri(&request.path)
        .header(http::header::HOST, "localhost");
    for (name, value) in &request.headers {
        let lower = name.to_ascii_lowercase();
        if ["host", "content-length", "connection", "transfer-encoding"].contains(&lower.as_str()) {
            continue;
        }
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder.body(http_body_util::Full::new(hyper::body::Bytes::from(request.body))).map_err(|_| SendError::BadRequest)
}

impl Host for StepState {
    async fn twin_calls(&mut self, twin: String) -> Result<Vec<Call>, String> {
        let Some(service) = &self.service else { return Err(SendError::NoService.as_str().into()) };
        service.twin_calls(&twin).map_err(str::to_string)
    }

    async fn send(&mut self, request: Request) -> Result<Response, String> {
        let Some(service) = self.service.clone() else { return Err(SendError::NoService.as_str().into()) };
        let deadline = self.deadline;
        // On a task of its own, so the Store is never re-entered; dropped
        // (with the connection) when the evaluator's call is.
        let mut task = AbortOnDrop(tokio::spawn(async move { service.send(request, deadline).await }));
        let result = match (&mut task.0).await {
            Ok(result) => result,
            Err(_) => Err(SendError::NotReachable),
        };
        result.map_err(|e| e.as_str().to_string())
    }
}

/// Aborts a spawned request when its caller stops waiting for it.
struct AbortOnDrop(tokio::task::JoinHandle<Result<Response, SendError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
