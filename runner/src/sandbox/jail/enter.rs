//! The jail helper: runs in a fresh, single-threaded `cleanroom __jail`
//! process, reads its [`JailSpec`] from stdin, confines itself as the spec
//! says, then starts the program as the child of an init process of its own
//! PID namespace.
//!
//! Order matters: the spec is read whole from stdin (never argv, which other
//! local users can read in `/proc` and which the kernel caps), and fd 0 then
//! becomes the program's input (`/dev/null` unless a subject's); the
//! cgroups are joined and file sizes capped; new
//! user, mount and (unless `network`) network namespaces; uid/gid maps;
//! mounts made private so nothing propagates to the host; a new PID
//! namespace; each staged write copy bind-mounted over its workspace path
//! (the run directory shadow read-only on top); credential files under
//! granted tools hidden ([`crate::plan::command::HIDDEN_CREDENTIALS`]);
//! Landlock rules (read+execute for reads, tools and system paths; full
//! access for writes, the private temp dir and a few devices; TCP and signals
//! outside the jail denied where the kernel supports it). Everything so far
//! is inherited by what follows.
//!
//! Then the helper forks: the child is PID 1 of the new namespace ([`init`]).
//! It dies with the helper (`PR_SET_PDEATHSIG`), starts the program, reaps
//! every orphan until the program exits, reports how the program ended on a
//! close-on-exec pipe and exits. When PID 1 exits, the kernel kills every
//! other process of the namespace (`setsid` and double-forked daemons
//! included) and waits for them, so by the time the helper sees PID 1 gone,
//! nothing the program started is alive. The helper then ends the way the
//! program did: with its exit code, or killed by the same signal.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::Command;

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, LandlockStatus, NetPort, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, Scope, ABI,
};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::Signal;
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{getgid, getuid, Pid};

use super::{Bind, JailSpec, JAIL_FAILED_EXIT, MARKER, RELAY_FD, TWIN_FD};

pub use crate::plan::command::SYSTEM_READ;

/// Devices every program may also write.
pub const SYSTEM_WRITE: &[&str] = &["/dev/null", "/dev/full"];

/// The oldest Landlock ABI the jail accepts: 3 (Linux 6.2) is the first to
/// control truncation, without which a read-only file could be emptied.
const MIN_ABI: ABI = ABI::V3;

/// The largest spec the helper reads from stdin: far above any real one
/// (a megabyte of environment), far below what would hurt.
const MAX_SPEC: u64 = 256 << 20;

/// How the program ended, as PID 1 reports it to the helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl Ended {
    /// The line PID 1 writes on the status pipe.
    fn encode(self) -> String {
        match self {
            Ended::Code(code) => format!("exit {code}\n"),
            Ended::Signal(signal) => format!("signal {signal}\n"),
        }
    }

    /// Reads [`Ended::encode`]'s line back.
    fn decode(text: &str) -> Option<Ended> {
        let (kind, number) = text.trim().split_once(' ')?;
        let number = number.parse().ok()?;
        match kind {
            "exit" => Some(Ended::Code(number)),
            "signal" => Some(Ended::Signal(number)),
            _ => None,
        }
    }

    /// An exit code for a process that cannot die by the signal itself.
    fn exit_code(self) -> i32 {
        match self {
            Ended::Code(code) => code,
            Ended::Signal(signal) => 128 + signal,
        }
    }
}

/// Confines this process as `spec` says, runs the program in a PID
/// namespace of its own and returns how it ended (the caller exits with
/// that). Returns `Err` with the reason when the jail cannot be set up.
///
/// With `allow_unjailed`, a part the kernel refuses is skipped (and reported
/// in an `unjailed` marker) while the other parts still apply, except that a
/// step with `write` mounts (or a run-directory shadow, or credential files
/// to hide) never runs without the mount namespace those need.
fn enter(spec: &JailSpec) -> Result<Ended, String> {
    let mut missing = Vec::new();
    limit_resources(spec)?;
    let needs_mounts = !spec.binds.is_empty() || !spec.hide.is_empty();
    let mut mount_ns = true;
    match enter_namespaces(spec.network) {
        Ok(()) => {}
        Err(reason) if spec.allow_unjailed && !needs_mounts => {
            mount_ns = false;
            missing.push(reason);
        }
        Err(reason) => return Err(reason),
    }
    if let Some(relay) = &spec.relay {
        // A service: never without its own network namespace.
        if spec.network || !mount_ns {
            return Err("a service runs only in a network namespace of its own, which this kernel refused".into());
        }
        loopback_up()?;
        start_relay(relay.port, &relay.twins)?;
    }
    let pid_ns = match unshare(CloneFlags::CLONE_NEWPID) {
        Ok(()) => true,
        Err(e) => {
            let reason =
                format!("cannot create a PID namespace ({e}), so processes the program starts could outlive it");
            if !spec.allow_unjailed {
                return Err(reason);
            }
            missing.push(reason);
            false
        }
    };
    if mount_ns {
        mount_views(spec)?;
    }
    match restrict_filesystem(spec) {
        Ok(()) => {}
        Err(reason) if spec.allow_unjailed => missing.push(reason),
        Err(reason) => return Err(reason),
    }
    if !missing.is_empty() {
        eprintln_marker(&format!("unjailed: {}", missing.join("; ")));
    }
    if pid_ns {
        fork_init(spec)
    } else {
        supervise_program(spec)
    }
}

/// Forks PID 1 of the new PID namespace, which runs the program ([`init`]),
/// and waits for it: once it is gone, so is everything the program started.
#[expect(unsafe_code, reason = "fork in the jail helper, which is single-threaded (see SAFETY)")]
fn fork_init(spec: &JailSpec) -> Result<Ended, String> {
    let (status_read, status_write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("cannot create the status pipe: {e}"))?;
    // SAFETY: `cleanroom __jail` is a fresh process that starts no threads
    // (it only parses its spec, makes syscalls and writes files), so the
    // child of this fork is a complete copy that may allocate, lock and run
    // any code.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(format!("cannot start the PID namespace's init process: {e}")),
        Ok(nix::unistd::ForkResult::Child) => {
            drop(status_read);
            let ended = init(spec, status_write);
            // PID 1 returns through `main` and exits there with the
            // program's code (or 128 + signal: an init cannot kill itself;
            // the helper reads the signal from the status pipe instead).
            Ok(ended)
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(status_write);
            let waited = loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => break Ended::Code(code),
                    Ok(WaitStatus::Signaled(_, signal, _)) => break Ended::Signal(signal as i32),
                    Ok(_) | Err(Errno::EINTR) => continue,
                    Err(e) => return Err(format!("cannot wait for the PID namespace's init process: {e}")),
                }
            };
            let mut reported = String::new();
            let _ = std::fs::File::from(status_read).take(64).read_to_string(&mut reported);
            // PID 1 killed before it could report (from outside the jail):
            // the step ends the way PID 1 did.
            Ok(Ended::decode(&reported).unwrap_or(waited))
        }
    }
}

/// PID 1 of the jail's PID namespace: dies with the helper, runs the
/// program, reaps every process orphaned into it until the program exits,
/// writes how it ended to `status` and returns it. Its exit then takes the
/// whole namespace down.
fn init(spec: &JailSpec, status: OwnedFd) -> Ended {
    // If the helper is killed (the runner's deadline), PID 1 follows, and
    // the namespace with it. (Killed before this line, PID 1 is still in the
    // helper's process group and pids cgroup, which the runner empties.)
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
        eprintln_marker(&format!("error: cannot tie the init process to the helper: {e}"));
        return Ended::Code(JAIL_FAILED_EXIT);
    }
    let ended = match program_command(spec).spawn() {
        Err(e) => {
            eprintln_marker(&format!("error: {}", exec_error(spec, &e)));
            Ended::Code(JAIL_FAILED_EXIT)
        }
        Ok(child) => {
            let program = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
            loop {
                match waitpid(None::<Pid>, None) {
                    Ok(WaitStatus::Exited(pid, code)) if pid == program => break Ended::Code(code),
                    Ok(WaitStatus::Signaled(pid, signal, _)) if pid == program => break Ended::Signal(signal as i32),
                    Ok(_) | Err(Errno::EINTR) => continue,
                    // No children left: cannot happen while the program
                    // lives; treat it as a lost program.
                    Err(_) => break Ended::Code(JAIL_FAILED_EXIT),
                }
            }
        }
    };
    let _ = std::fs::File::from(status).write_all(ended.encode().as_bytes());
    ended
}

/// Without a PID namespace (`--allow-unjailed` on a kernel without one):
/// runs the program as a child of the helper and waits for it.
fn supervise_program(spec: &JailSpec) -> Result<Ended, String> {
    let status = program_command(spec).status().map_err(|e| exec_error(spec, &e))?;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => Ended::Code(code),
        (None, Some(signal)) => Ended::Signal(signal),
        (None, None) => Ended::Code(JAIL_FAILED_EXIT),
    })
}

/// Why the program could not be started, with what to do when the jail
/// is the reason (the program, its interpreter or a library it loads is
/// outside what the step may read).
fn exec_error(spec: &JailSpec, e: &std::io::Error) -> String {
    let program = spec.program.display();
    match e.raw_os_error() {
        Some(libc::EACCES | libc::ENOENT) => format!(
            "cannot execute `{program}`: {e}; the jail lets the step read only its mounts, its `tools` and the \
             system's directories: add the directory holding the program, or the interpreter its `#!` line \
             names, to the step's `tools` (or set `toolchain`)"
        ),
        _ => format!("cannot execute `{program}`: {e}"),
    }
}

/// The program with exactly the granted environment, in its working
/// directory; stdin is the helper's, the spec's input file by then.
fn program_command(spec: &JailSpec) -> Command {
    let mut command = Command::new(&spec.program);
    command
        .arg0(spec.program.file_name().unwrap_or(OsStr::new("program")))
        .args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd);
    command
}

/// Joins the cgroups (before anything else, so every child is counted),
/// caps the size of any one file the program writes, and turns core dumps
/// off (a crashing program must not write its memory anywhere).
fn limit_resources(spec: &JailSpec) -> Result<(), String> {
    for procs in &spec.cgroups {
        fs_err::write(procs, std::process::id().to_string())
            .map_err(|e| format!("cannot join the cgroup {}: {e}", procs.display()))?;
    }
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(|e| format!("cannot turn core dumps off: {e}"))?;
    setrlimit(Resource::RLIMIT_FSIZE, spec.max_file_size, spec.max_file_size)
        .map_err(|e| format!("cannot limit file sizes: {e}"))
}

/// Mounts what the program sees differently from the host: staged copies
/// over their workspace paths (then read-only shadows such as the run
/// directory's on top), and empty stand-ins over hidden credential files.
fn mount_views(spec: &JailSpec) -> Result<(), String> {
    let (shadows, copies): (Vec<&Bind>, Vec<&Bind>) = spec.binds.iter().partition(|b| b.read_only);
    for bind in copies.into_iter().chain(shadows) {
        bind_mount(&bind.staged, &bind.target, bind.read_only)
            .map_err(|e| format!("cannot mount the staged copy over `{}`: {e}", bind.target.display()))?;
    }
    if spec.hide.is_empty() {
        return Ok(());
    }
    let Some(empty) = &spec.empty else {
        return Err("credential files to hide, but no empty stand-ins (internal error)".into());
    };
    for path in &spec.hide {
        let meta = match fs_err::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("cannot hide `{}`: {e}", path.display())),
        };
        let stand_in = if meta.is_dir() { empty.join("dir") } else { empty.join("file") };
        bind_mount(&stand_in, path, true).map_err(|e| format!("cannot hide `{}`: {e}", path.display()))?;
    }
    Ok(())
}

/// Bind-mounts `source` over `target`; with `read_only`, remounts it
/// read-only, keeping the flags the kernel locks in a user namespace.
fn bind_mount(source: &Path, target: &Path, read_only: bool) -> Result<(), Errno> {
    let flags = if read_only { MsFlags::MS_BIND } else { MsFlags::MS_BIND | MsFlags::MS_REC };
    mount(Some(source), target, None::<&str>, flags, None::<&str>)?;
    if read_only {
        let current = statvfs(target)?.flags();
        let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        for (fs, ms) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if current.contains(fs) {
                flags |= ms;
            }
        }
        mount(None::<&str>, target, None::<&str>, flags, None::<&str>)?;
    }
    Ok(())
}

fn enter_namespaces(network: bool) -> Result<(), String> {
    let (uid, gid) = (getuid().as_raw(), getgid().as_raw());
    let mut flags = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS;
    if !network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).map_err(|e| {
        format!("cannot create user, mount and network namespaces ({e}); unprivileged user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone / user.max_user_namespaces)")
    })?;
    // Inside, the program runs as the same uid, or as 1000 when the runner is
    // root, so `exec` drops every capability the namespace handed us.
    let inner_uid = if uid == 0 { 1000 } else { uid };
    let inner_gid = if gid == 0 { 1000 } else { gid };
    let write = |file: &str, text: String| {
        fs_err::write(Path::new("/proc/self").join(file), text)
            .map_err(|e| format!("cannot set up the user namespace: {e}"))
    };
    write("setgroups", "deny".into())?;
    write("uid_map", format!("{inner_uid} {uid} 1"))?;
    write("gid_map", format!("{inner_gid} {gid} 1"))?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| format!("cannot make mounts private: {e}"))?;
    Ok(())
}

/// Brings the network namespace's loopback interface up (it starts down),
/// so a service can listen on 127.0.0.1.
#[expect(unsafe_code, reason = "the SIOCSIFFLAGS ioctl has no safe wrapper (see SAFETY)")]
fn loopback_up() -> Result<(), String> {
    /// `struct ifreq` with the flags member of its union.
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        flags: libc::c_short,
        _rest: [u8; 22],
    }
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("cannot open a socket to set up the loopback: {e}"))?;
    let mut request = IfReq {
        name: [0; 16],
        flags: (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as libc::c_short,
        _rest: [0; 22],
    };
    request.name[..2].copy_from_slice(b"lo");
    use std::os::fd::AsRawFd;
    // SAFETY: `request` is a properly sized, initialised `struct ifreq` that
    // lives across the call; the kernel reads the name and flags only.
    let done = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &mut request) };
    if done < 0 {
        return Err(format!("cannot bring the loopback up: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Forks the relay: a process inside the service's network namespace but
/// outside its Landlock domain and PID namespace, dying with the helper.
/// It serves the runner on [`RELAY_FD`]: for each byte the runner sends,
/// it connects to the service's `port` on the loopback and passes the
/// connected socket back (`SCM_RIGHTS`), or answers `e` when nothing
/// listens. It also listens on each twin's port (bound here, before the
/// program starts, so the program cannot take the port and play the twin
/// itself) and passes each connection the service makes there to the
/// runner on [`TWIN_FD`], with the twin's index. The helper closes its
/// copies, so the program never holds them.
#[expect(unsafe_code, reason = "fork in the jail helper, which is single-threaded (see SAFETY)")]
#[expect(clippy::exit, reason = "the relay is a forked child: it must end here, never return into the helper's code")]
fn start_relay(port: u16, twins: &[u16]) -> Result<(), String> {
    use std::os::fd::FromRawFd;
    // SAFETY: RELAY_FD and TWIN_FD were placed by the runner for this
    // helper alone and nothing else in this process owns them.
    let (control, pushed) = unsafe { (OwnedFd::from_raw_fd(RELAY_FD), OwnedFd::from_raw_fd(TWIN_FD)) };
    let listeners = twins
        .iter()
        .map(|&p| {
            std::net::TcpListener::bind(("127.0.0.1", p))
                .map_err(|e| format!("cannot listen for twin calls on port {p}: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    // SAFETY: as in `fork_init`: this helper starts no threads.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(format!("cannot start the service's relay: {e}")),
        Ok(nix::unistd::ForkResult::Child) => {
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            relay(control, pushed, port, &listeners);
            std::process::exit(0);
        }
        Ok(nix::unistd::ForkResult::Parent { .. }) => {
            drop((control, pushed, listeners));
            Ok(())
        }
    }
}

/// Sends `fd` over the Unix socket `to`, with the one-byte `tag`.
fn pass_fd(to: &impl std::os::fd::AsRawFd, tag: u8, fd: std::os::fd::RawFd) -> Result<(), Errno> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [fd];
    let message = [std::io::IoSlice::new(std::slice::from_ref(&tag))];
    sendmsg::<()>(to.as_raw_fd(), &message, &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None).map(drop)
}

/// The relay's loop (see [`start_relay`]); returns when the runner closes
/// its end.
fn relay(control: OwnedFd, pushed: OwnedFd, port: u16, listeners: &[std::net::TcpListener]) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::{AsFd, AsRawFd};
    let mut control = std::os::unix::net::UnixStream::from(control);
    let pushed = std::os::unix::net::UnixStream::from(pushed);
    loop {
        let mut fds: Vec<PollFd<'_>> = std::iter::once(PollFd::new(control.as_fd(), PollFlags::POLLIN))
            .chain(listeners.iter().map(|l| PollFd::new(l.as_fd(), PollFlags::POLLIN)))
            .collect();
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(_) => return,
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        if ready[0] {
            let mut byte = [0u8; 1];
            if !matches!(control.read(&mut byte), Ok(1)) {
                return;
            }
            let sent = match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(stream) => pass_fd(&control, b'k', stream.as_raw_fd()),
                Err(_) => control.write_all(b"e").map_err(|_| Errno::EPIPE),
            };
            if sent.is_err() {
                return;
            }
        }
        for (index, listener) in listeners.iter().enumerate() {
            if ready[index + 1] {
                if let Ok((stream, _)) = listener.accept() {
                    let tag = u8::try_from(index).unwrap_or(u8::MAX);
                    if pass_fd(&pushed, tag, stream.as_raw_fd()).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

fn restrict_filesystem(spec: &JailSpec) -> Result<(), String> {
    let abi = ABI::V6;
    let landlock_error = |e: landlock::RulesetError| format!("cannot set up Landlock: {e}");
    let mut ruleset = Ruleset::default().handle_access(AccessFs::from_all(abi)).map_err(landlock_error)?;
    if !spec.network {
        ruleset = ruleset.handle_access(AccessNet::from_all(abi)).map_err(landlock_error)?;
    }
    let read = spec.read.iter().map(|p| p.as_path()).chain(SYSTEM_READ.iter().map(Path::new));
    let write = spec.write.iter().map(|p| p.as_path()).chain(SYSTEM_WRITE.iter().map(Path::new));
    let status = ruleset
        .scope(Scope::from_all(abi))
        .map_err(landlock_error)?
        .create()
        .map_err(landlock_error)?
        .add_rules(path_beneath_rules(read, AccessFs::from_read(abi)))
        .map_err(landlock_error)?
        .add_rules(path_beneath_rules(write, AccessFs::from_all(abi)))
        .map_err(landlock_error)?
        // A service may listen on its port, and on no other, and connect
        // to its twins' ports (on its own loopback, where only the relay
        // listens), and to no other.
        .add_rules(spec.relay.iter().map(|r| Ok::<_, landlock::RulesetError>(NetPort::new(r.port, AccessNet::BindTcp))))
        .map_err(landlock_error)?
        .add_rules(
            spec.relay
                .iter()
                .flat_map(|r| r.twins.iter())
                .map(|&p| Ok::<_, landlock::RulesetError>(NetPort::new(p, AccessNet::ConnectTcp))),
        )
        .map_err(landlock_error)?
        .restrict_self()
        .map_err(landlock_error)?;
    let effective =
        match status.landlock {
            LandlockStatus::Available { effective_abi, .. } => effective_abi,
            LandlockStatus::NotEnabled => {
                return Err(
                    "Landlock is built into this kernel but not enabled (add `landlock` to the `lsm=` boot parameter)"
                        .into(),
                )
            }
            LandlockStatus::NotImplemented => return Err(
                "this kernel has no Landlock support (it needs Linux 6.2 or newer built with CONFIG_SECURITY_LANDLOCK)"
                    .into(),
            ),
        };
    if status.ruleset == RulesetStatus::NotEnforced || (effective as u32) < (MIN_ABI as u32) {
        return Err(format!(
            "the kernel's Landlock (ABI {}) cannot enforce read-only mounts; ABI {} (Linux 6.2) or newer is needed",
            effective as u32, MIN_ABI as u32
        ));
    }
    Ok(())
}

/// The marker prefix with this run's nonce, once the spec is read.
static MARKER_PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Writes one marker line the parent strips from the captured stderr
/// (before the spec is read, with no nonce: the runner then reports the
/// helper's exit code, as it cannot tell the line from the program's).
fn eprintln_marker(text: &str) {
    let prefix = MARKER_PREFIX.get().cloned().unwrap_or_else(|| MARKER.to_string());
    let _ = writeln!(std::io::stderr(), "{prefix}{text}");
}

/// Ties the helper's life to the runner's: if the runner dies (even by
/// SIGKILL), the helper is killed, its init with it, and the whole PID
/// namespace with that. (The kernel signals when the runner's thread that
/// started the helper exits: a scheduler worker, which lives as long as the
/// run.) A runner already gone before this line is caught by the check.
fn die_with_runner() -> Result<(), String> {
    let parent = nix::unistd::getppid();
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| format!("cannot tie the helper to the runner: {e}"))?;
    if parent.as_raw() == 1 || nix::unistd::getppid() != parent {
        return Err("the runner exited before the jail was set up".into());
    }
    Ok(())
}

/// Reads the spec from stdin (all of it), then makes fd 0 the spec's
/// `stdin` file (a subject's input) or `/dev/null`, so the program inherits
/// nothing else there.
fn read_spec() -> Result<JailSpec, String> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_SPEC)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the jail spec from stdin: {e}"))?;
    let spec: JailSpec = serde_json::from_slice(&bytes).map_err(|e| format!("invalid jail spec: {e}"))?;
    let input = spec.stdin.as_deref().unwrap_or(Path::new("/dev/null"));
    let input = fs_err::File::open(input).map_err(|e| format!("cannot open the program's stdin: {e}"))?;
    nix::unistd::dup2_stdin(&input).map_err(|e| format!("cannot set the program's stdin: {e}"))?;
    Ok(spec)
}

/// Entry point of `cleanroom __jail` (spec on stdin): returns the exit code,
/// or does not return when the program was killed by a signal (the helper
/// dies by the same one).
pub fn main() -> i32 {
    let spec = die_with_runner().and_then(|()| read_spec()).inspect(|spec| {
        let _ = MARKER_PREFIX.set(super::marker_prefix(&spec.nonce));
    });
    match spec.and_then(|spec| enter(&spec)) {
        Ok(Ended::Code(code)) => code,
        Ok(ended @ Ended::Signal(signal)) => {
            die_by(signal);
            ended.exit_code()
        }
        Err(reason) => {
            eprintln_marker(&format!("error: {reason}"));
            JAIL_FAILED_EXIT
        }
    }
}

/// Ends this process with `signal`, as the program ended, so the runner
/// sees the same wait status. (PID 1 cannot do this: the kernel ignores
/// the signals an init process sends itself.) Returns only for a signal
/// whose default action is not to terminate.
#[expect(unsafe_code, reason = "restoring a signal's default action installs no handler code")]
fn die_by(signal: i32) {
    let Ok(signal) = Signal::try_from(signal) else { return };
    // SAFETY: SIG_DFL runs no code of ours in a signal context.
    let _ = unsafe { nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigDfl) };
    let _ = nix::sys::signal::raise(signal);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_endings_survive_the_status_pipe() {
        for ended in [Ended::Code(0), Ended::Code(3), Ended::Signal(9)] {
            assert_eq!(Ended::decode(&ended.encode()), Some(ended));
        }
        assert_eq!(Ended::decode(""), None);
        assert_eq!(Ended::Signal(9).exit_code(), 137);
    }
}
