//! The jail helper: runs in a fresh, single-threaded `cleanroom __jail`
//! process, confines itself as the [`JailSpec`] says, then becomes the
//! program with `exec`.
//!
//! Order matters: new user, mount and (unless `network`) network namespaces;
//! uid/gid maps; mounts made private so nothing propagates to the host; each
//! staged write copy bind-mounted over its workspace path; Landlock rules
//! (read+execute for reads, tools and system paths; full access for writes,
//! the private temp dir and a few devices; TCP and signals outside the jail
//! denied where the kernel supports it); then `exec` with exactly the granted
//! environment. Doing this in a fresh process rather than between `fork` and
//! `exec` of the multithreaded runner keeps it free of `unsafe`.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, LandlockStatus, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, Scope, ABI,
};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::resource::{setrlimit, Resource};
use nix::unistd::{getgid, getuid};

use super::{JailSpec, JAIL_FAILED_EXIT, MARKER};

/// Read+execute paths every program gets: the system's programs, libraries
/// and the few files of `/etc` that dynamic linking, users and time zones need.
pub const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/ssl/certs",
    "/etc/ca-certificates",
    "/dev/zero",
    "/dev/urandom",
    "/dev/random",
];

/// Devices every program may also write.
pub const SYSTEM_WRITE: &[&str] = &["/dev/null", "/dev/full"];

/// The oldest Landlock ABI the jail accepts: 3 (Linux 6.2) is the first to
/// control truncation, without which a read-only file could be emptied.
const MIN_ABI: ABI = ABI::V3;

/// Confines this process as `spec` says and replaces it with the program.
/// Returns only on failure, with the reason.
///
/// With `allow_unjailed`, a part the kernel refuses is skipped (and reported
/// in an `unjailed` marker) while the other parts still apply, except that a
/// step with `write` mounts never runs without the mount namespace its
/// staged copies need.
pub fn enter(spec: &JailSpec) -> String {
    let mut missing = Vec::new();
    if let Err(reason) = limit_resources(spec) {
        return reason;
    }
    match enter_namespaces(spec.network).and_then(|()| mount_staged_copies(spec)) {
        Ok(()) => {}
        Err(reason) if spec.allow_unjailed && spec.binds.is_empty() => missing.push(reason),
        Err(reason) => return reason,
    }
    match restrict_filesystem(spec) {
        Ok(()) => {}
        Err(reason) if spec.allow_unjailed => missing.push(reason),
        Err(reason) => return reason,
    }
    if !missing.is_empty() {
        eprintln_marker(&format!("unjailed: {}", missing.join("; ")));
    }
    let error = Command::new(&spec.program)
        .arg0(spec.program.file_name().unwrap_or(OsStr::new("program")))
        .args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .exec();
    format!("cannot execute `{}`: {error}", spec.program.display())
}

/// Joins the pids cgroup (before anything else, so every child is counted)
/// and caps the size of any one file the program writes.
fn limit_resources(spec: &JailSpec) -> Result<(), String> {
    if let Some(procs) = &spec.cgroup_procs {
        fs_err::write(procs, std::process::id().to_string())
            .map_err(|e| format!("cannot join the pids cgroup: {e}"))?;
    }
    setrlimit(Resource::RLIMIT_FSIZE, spec.max_file_size, spec.max_file_size)
        .map_err(|e| format!("cannot limit file sizes: {e}"))
}

fn mount_staged_copies(spec: &JailSpec) -> Result<(), String> {
    for bind in &spec.binds {
        mount(Some(&bind.staged), &bind.target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .map_err(|e| format!("cannot mount the staged copy over `{}`: {e}", bind.target.display()))?;
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

/// Writes one marker line the parent strips from the captured stderr.
fn eprintln_marker(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{MARKER}{text}");
}

/// Entry point of `cleanroom __jail SPEC`: never returns.
pub fn main(spec_json: &str) -> i32 {
    let reason = match serde_json::from_str::<JailSpec>(spec_json) {
        Ok(spec) => enter(&spec),
        Err(e) => format!("invalid jail spec: {e}"),
    };
    eprintln_marker(&format!("error: {reason}"));
    JAIL_FAILED_EXIT
}
