//! The kernel jail for native command steps.
//!
//! [`run`] starts the `cleanroom` binary itself as a helper (`cleanroom
//! __jail`) in a new process group with an empty environment, writes the
//! [`JailSpec`] to the helper's stdin (never its argv: other local users can
//! read argv in `/proc`, and the kernel caps its size) and captures
//! stdout/stderr with caps; the helper confines itself ([`enter`]) and runs
//! the program under an init process of its own PID namespace, so nothing
//! the program starts outlives it. When the deadline passes, or when the
//! helper exits, the whole process group is killed and, as a backstop, every
//! process still in the step's pids cgroup ([`pids`]); the step is not
//! reported before that cgroup is empty. If the jail cannot be set up, the
//! helper exits with [`JAIL_FAILED_EXIT`] after a [`MARKER`] line giving the
//! reason, and the step is an error: the jail fails closed.

pub mod cgroup;
pub mod enter;
pub mod step;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::output::{CappedPipe, Captured};
use super::{Failure, Outcome};

/// Prefix of the helper's own lines on stderr (stripped from the report);
/// the run's nonce follows it ([`marker_prefix`]).
pub const MARKER: &str = "cleanroom-jail-";
/// Exit code of a helper that could not set the jail up.
pub const JAIL_FAILED_EXIT: i32 = 125;
/// How long captured pipes may keep draining after the process group is gone.
const DRAIN: Duration = Duration::from_secs(1);
/// How long the runner keeps killing what is left of a step (in its
/// cgroups, or its PID namespace after a deadline kill) before it gives up
/// and reports the step as an error.
const CGROUP_EMPTY_DEADLINE: Duration = Duration::from_secs(10);

/// Everything the helper needs to confine and start one program.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JailSpec {
    /// Absolute path of the program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its complete environment.
    pub env: Vec<(String, String)>,
    /// Its working directory (the workspace root).
    pub cwd: PathBuf,
    /// Paths it may read and execute (read mounts and tools).
    pub read: Vec<PathBuf>,
    /// Paths it may change (write mounts, after binding, and its temp dir).
    pub write: Vec<PathBuf>,
    /// Staged copies to mount over workspace paths.
    pub binds: Vec<Bind>,
    /// Whether to keep the host's network.
    pub network: bool,
    /// Whether to run anyway (with a warning) when the kernel cannot jail.
    pub allow_unjailed: bool,
    /// Largest file the program may write (`RLIMIT_FSIZE`), in bytes.
    pub max_file_size: u64,
    /// The `cgroup.procs` files of the cgroups to join (pids, memory).
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
    /// A file to give the program as its stdin (a subject's input), opened
    /// by the helper before it confines itself; `/dev/null` when `None`.
    #[serde(default)]
    pub stdin: Option<PathBuf>,
    /// Files and directories (host paths) to cover with an empty stand-in:
    /// credential files under granted tools, so a granted tool directory
    /// does not hand over the tokens kept in it, and a repository's `.git`.
    #[serde(default)]
    pub hide: Vec<PathBuf>,
    /// A directory holding the stand-ins for [`JailSpec::hide`]: an empty
    /// file `file` and an empty directory `dir`, outside anything the
    /// program may write.
    #[serde(default)]
    pub empty: Option<PathBuf>,
    /// For a service: the port it listens on inside its network namespace,
    /// which the helper brings the loopback up in, and the relay through
    /// which the runner reaches it ([`enter`]'s `relay`). The program may
    /// bind this port and no other, and connect to none.
    #[serde(default)]
    pub relay: Option<RelaySpec>,
    /// A random word the helper puts in its marker lines on stderr, set by
    /// [`run`]: the program shares that stderr but never sees the spec, so
    /// it cannot forge a marker (make a failure look like a jail error, or
    /// a jailed run look unjailed).
    #[serde(default)]
    pub nonce: String,
}

/// How the runner reaches a service inside its network namespace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RelaySpec {
    /// The port the service listens on (on the namespace's loopback).
    pub port: u16,
    /// Ports the relay listens on in the namespace, one per twin the
    /// service may call; each accepted connection is passed to the runner
    /// on [`TWIN_FD`] with the twin's index.
    #[serde(default)]
    pub twins: Vec<u16>,
}

/// The helper's file descriptor on which a service's relay takes the
/// runner's connection requests (one end of a Unix socket pair, put there
/// by [`supervise`]).
pub const RELAY_FD: i32 = 3;
/// The helper's file descriptor on which a service's relay passes the
/// connections the service made to its twins.
pub const TWIN_FD: i32 = 4;

/// A staged copy mounted over a workspace path inside the jail.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bind {
    /// The private copy the program really writes to.
    pub staged: PathBuf,
    /// The workspace path where the program sees it.
    pub target: PathBuf,
    /// Mounted read-only, after (on top of) every writable copy: for
    /// shadows such as the empty directory over the run directory, which
    /// the program must neither read nor write.
    #[serde(default)]
    pub read_only: bool,
}

/// How a jailed program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// Its exit code, when it exited.
    pub code: Option<i32>,
    /// The signal that killed it, when one did.
    pub signal: Option<i32>,
    /// Set when it ran without the jail (`--allow-unjailed`), with the reason.
    pub unjailed: Option<String>,
}

impl Exit {
    /// True for exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// `status 1`, `signal 9`.
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(code), _) => format!("status {code}"),
            (None, Some(signal)) => format!("signal {signal}"),
            (None, None) => "an unknown status".into(),
        }
    }
}

/// Runs `spec` through the helper binary `helper` with `timeout` and output
/// caps of `output_cap` bytes per stream.
pub async fn run(helper: &Path, spec: &JailSpec, timeout: Duration, output_cap: u64) -> Outcome<Exit> {
    let stdout = CappedPipe::new(output_cap);
    let stderr = CappedPipe::new(output_cap);
    run_with(helper, spec, timeout, (&stdout, &stderr), None).await
}

/// As [`run`], capturing into `stdout` and `stderr` (which the caller may
/// read while the program runs: a service's readiness), and giving the
/// helper `relay` as its [`RELAY_FD`] and [`TWIN_FD`] (a service's relay
/// sockets).
pub async fn run_with(
    helper: &Path,
    spec: &JailSpec,
    timeout: Duration,
    (stdout, stderr): (&CappedPipe, &CappedPipe),
    relay: Option<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)>,
) -> Outcome<Exit> {
    let started = Instant::now();
    let mut spec = spec.clone();
    spec.nonce = match random_nonce() {
        Ok(nonce) => nonce,
        Err(e) => {
            let failure = Failure::Host(format!("cannot read random bytes for the jail: {e}"));
            let (stdout, stderr) = (Captured::default(), Captured::default());
            return Outcome { result: Err(failure), stdout, stderr, duration: started.elapsed(), denied: Vec::new() };
        }
    };
    let result = supervise(helper, &spec, timeout, (stdout, stderr), relay).await;
    let (stderr, markers) = split_markers(stderr.contents(), &marker_prefix(&spec.nonce));
    let result = result.and_then(|mut exit| {
        if let Some(reason) = markers.iter().find_map(|m| m.strip_prefix("error: ")) {
            if exit.code == Some(JAIL_FAILED_EXIT) {
                return Err(Failure::Jail(reason.to_string()));
            }
        }
        exit.unjailed = markers.iter().find_map(|m| m.strip_prefix("unjailed: ")).map(str::to_string);
        Ok(exit)
    });
    Outcome { result, stdout: stdout.contents(), stderr, duration: started.elapsed(), denied: Vec::new() }
}

#[expect(unsafe_code, reason = "placing the relay socket at a fixed descriptor in the child (see SAFETY)")]
async fn supervise(
    helper: &Path,
    spec: &JailSpec,
    timeout: Duration,
    (stdout, stderr): (&CappedPipe, &CappedPipe),
    relay: Option<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)>,
) -> Result<Exit, Failure> {
    let spec_json =
        serde_json::to_string(spec).map_err(|e| Failure::Host(format!("cannot encode the jail spec: {e}")))?;
    let mut command = tokio::process::Command::new(helper);
    if let Some((connect, twins)) = &relay {
        use std::os::fd::AsRawFd;
        // The sockets are close-on-exec in the runner, so no other child (a
        // step started at the same moment) inherits them; dup2 in this
        // child alone puts copies at RELAY_FD and TWIN_FD without that flag.
        // (Neither is already at 3 or 4: the runner's stdio and the
        // helper's pipes are opened long before.)
        let (connect, twins) = (connect.as_raw_fd(), twins.as_raw_fd());
        // SAFETY: between fork and exec the closure calls only dup2, which
        // is async-signal-safe, and touches no memory but its own copies.
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(connect, RELAY_FD) < 0 || libc::dup2(twins, TWIN_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = command
        .arg("__jail")
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Failure::Host(format!("cannot start the jail helper `{}`: {e}", helper.display())))?;
    // The helper has its copy of the relay socket: close the runner's, so
    // the runner's end sees the relay go when the jail does.
    drop(relay);
    let group = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
    // If this future is dropped (the write quota stopped the step, Ctrl-C),
    // the whole process group and the pids cgroup die with it.
    let mut group_guard = GroupKill(group, spec.cgroups.clone());
    // The spec goes through the helper's stdin, closed once written; a
    // helper that dies early says why on stderr, so a write error is moot.
    let stdin_task = child.stdin.take().map(|mut stdin| {
        tokio::spawn(async move {
            let _ = stdin.write_all(spec_json.as_bytes()).await;
            let _ = stdin.shutdown().await;
        })
    });
    let drain = |pipe: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>, sink: &CappedPipe| {
        let mut sink = sink.clone();
        tokio::spawn(async move {
            if let Some(mut pipe) = pipe {
                let _ = tokio::io::copy(&mut pipe, &mut sink).await;
            }
        })
    };
    let out_task = drain(child.stdout.take().map(|p| Box::new(p) as _), stdout);
    let err_task = drain(child.stderr.take().map(|p| Box::new(p) as _), stderr);

    let waited = tokio::time::timeout(timeout, child.wait()).await;
    // At the deadline the helper is still alive: note its PID namespace
    // before killing it. (When the helper exited by itself, its init process
    // and with it the whole namespace were gone before it did.)
    let namespace = if waited.is_err() { group.and_then(pid_namespace_of) } else { None };
    // Kill the namespace first (its init included) while the helper lives
    // to reap that init: killed together, the init would be an orphan
    // zombie until the machine's init got round to it.
    if let Some(namespace) = &namespace {
        empty_until(CGROUP_EMPTY_DEADLINE, || namespace_members(namespace), "its PID namespace").await?;
    }
    // Whatever happened, nothing the program started may outlive the step.
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGKILL);
    }
    let status = match waited {
        Ok(status) => Some(status.map_err(|e| Failure::Host(format!("cannot wait for the program: {e}")))?),
        Err(_) => {
            let _ = child.wait().await;
            None
        }
    };
    // The helper is reaped: from here its pid may be reused, so the guard
    // must not touch it; the orderly checks below take its place.
    group_guard.0 = None;
    if let Some(task) = stdin_task {
        task.abort();
    }
    for procs in &spec.cgroups {
        empty_until(CGROUP_EMPTY_DEADLINE, || cgroup::members(procs), &procs.display().to_string()).await?;
    }
    let _ = tokio::time::timeout(DRAIN, out_task).await;
    let _ = tokio::time::timeout(DRAIN, err_task).await;
    match status {
        None => Err(Failure::Timeout(timeout)),
        Some(status) => Ok(Exit { code: status.code(), signal: status.signal(), unjailed: None }),
    }
}

/// Kills every process `members` lists until it lists none (a process may
/// fork while the list is read: read, kill, read again). The PID namespace
/// already took everything down; this is the backstop that holds even if it
/// did not (the pids cgroup), and that waits out the namespace's teardown
/// after a deadline kill (the helper's init dies asynchronously then).
///
/// # Errors
/// When processes are still there after `deadline`: the step is then an
/// error, and nothing of it is committed.
async fn empty_until(deadline: Duration, members: impl Fn() -> Vec<Pid>, what: &str) -> Result<(), Failure> {
    let deadline = Instant::now() + deadline;
    loop {
        let left = kill_listed(&members);
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Failure::Host(format!("{left} of its processes could not be killed (still in {what})")));
        }
        tokio::time::sleep(KILL_PAUSE).await;
    }
}

/// How long the kill loops wait for killed processes to leave.
const KILL_PAUSE: Duration = Duration::from_millis(5);

/// Sends SIGKILL to every process `members` lists; returns how many it
/// listed (0: none left).
fn kill_listed(members: &impl Fn() -> Vec<Pid>) -> usize {
    let left = members();
    for &pid in &left {
        let _ = kill(pid, Signal::SIGKILL);
    }
    left.len()
}

/// The PID namespace the children of process `pid` are created in
/// (`pid:[4026532...]`), when it is not the runner's own.
fn pid_namespace_of(pid: Pid) -> Option<String> {
    let theirs = fs_err::read_link(format!("/proc/{pid}/ns/pid_for_children")).ok()?;
    let ours = fs_err::read_link("/proc/self/ns/pid").ok()?;
    (theirs != ours).then(|| theirs.display().to_string())
}

/// Every live process on this machine in PID namespace `namespace` (a
/// zombie has no namespace left, so is not listed).
fn namespace_members(namespace: &str) -> Vec<Pid> {
    let Ok(entries) = fs_err::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| {
            fs_err::read_link(format!("/proc/{pid}/ns/pid")).is_ok_and(|ns| ns.display().to_string() == namespace)
        })
        .map(Pid::from_raw)
        .collect()
}

/// When [`supervise`] is dropped mid-run (the write quota stopped the step,
/// Ctrl-C aborted it), kills the helper's PID namespace, its process group
/// and what is in the pids cgroup, and waits (a little, synchronously: a
/// drop cannot await) until they are gone. The helper is not reaped yet
/// (its `Child` is dropped after this guard), so its pid is still its own.
struct GroupKill(Option<Pid>, Vec<PathBuf>);

/// How long a dropped step's guard waits for its processes to die.
const DROP_DEADLINE: Duration = Duration::from_secs(2);

impl Drop for GroupKill {
    fn drop(&mut self) {
        let Some(group) = self.0 else { return };
        let deadline = Instant::now() + DROP_DEADLINE;
        if let Some(namespace) = pid_namespace_of(group) {
            kill_until_sync(deadline, || namespace_members(&namespace));
        }
        let _ = killpg(group, Signal::SIGKILL);
        for procs in &self.1 {
            kill_until_sync(deadline, || cgroup::members(procs));
        }
    }
}

/// [`empty_until`] without a runtime, for [`GroupKill`]: best effort.
fn kill_until_sync(deadline: Instant, members: impl Fn() -> Vec<Pid>) {
    while kill_listed(&members) > 0 && Instant::now() <= deadline {
        std::thread::sleep(KILL_PAUSE);
    }
}

/// 128 random bits as hex, from the kernel.
fn random_nonce() -> std::io::Result<String> {
    Ok(crate::plugin::hex(&crate::key::random_bytes::<16>()?))
}

/// The start of a marker line of the helper started with `nonce`.
pub fn marker_prefix(nonce: &str) -> String {
    format!("{MARKER}{nonce}: ")
}

/// Separates the helper's marker lines (those starting with `prefix`)
/// from the program's stderr.
fn split_markers(mut captured: Captured, prefix: &str) -> (Captured, Vec<String>) {
    let text = String::from_utf8_lossy(&captured.bytes).into_owned();
    if !text.contains(prefix) {
        return (captured, Vec::new());
    }
    let mut markers = Vec::new();
    let mut kept = String::new();
    for line in text.split_inclusive('\n') {
        match line.strip_prefix(prefix) {
            Some(marker) => markers.push(marker.trim_end().to_string()),
            None => kept.push_str(line),
        }
    }
    captured.bytes = kept.into_bytes();
    (captured, markers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_lines_are_split_from_program_output() {
        let text = "cleanroom-jail-ab12: unjailed: no landlock\ncleanroom-jail: error: forged\nreal output\n";
        let captured = Captured { bytes: text.as_bytes().to_vec(), ..Captured::default() };
        let (kept, markers) = split_markers(captured, &marker_prefix("ab12"));
        assert_eq!(kept.bytes, b"cleanroom-jail: error: forged\nreal output\n", "a line without the nonce is output");
        assert_eq!(markers, ["unjailed: no landlock"]);
    }
}
