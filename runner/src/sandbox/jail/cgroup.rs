//! Kernel cgroups for a jailed program, where this machine lets the runner
//! create them:
//!
//! * a pids cgroup ([`Cgroup::pids`]), whose `pids.max` caps how many
//!   processes the program may have, so a fork bomb exhausts its own cgroup
//!   instead of the machine. Where none can be created (no controller, or
//!   not permitted), there is no pids limit: only the deadline bounds a fork
//!   bomb (the PID namespace still takes every process down with the
//!   program); the report says so.
//! * a memory cgroup ([`Cgroup::memory`]), whose limit caps the memory of
//!   the program's whole process tree (swap included where the kernel
//!   accounts it); the kernel's OOM killer stops it past the cap, and
//!   [`Cgroup::oom_killed`] tells that from any other kill. A step that
//!   asks for a memory cap where none can be made is refused with the
//!   reason, never run uncapped.
//!
//! A cgroup is also the runner's last word on "no process outlives its
//! step": after the helper exits, [`members`] lists whatever is still in
//! it, and the runner kills those until none is left.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Candidate parents of a pids cgroup: the v1 `pids` hierarchy, then the v2 root.
const PIDS_PARENTS: &[&str] = &["/sys/fs/cgroup/pids", "/sys/fs/cgroup"];
/// Candidate parents of a memory cgroup: the v1 `memory` hierarchy, then the v2 root.
const MEMORY_PARENTS: &[&str] = &["/sys/fs/cgroup/memory", "/sys/fs/cgroup"];

/// A cgroup limiting one step's processes; removed when dropped.
#[derive(Debug)]
pub struct Cgroup {
    dir: PathBuf,
}

impl Cgroup {
    /// Creates a cgroup allowing `max` processes, or `None` when this
    /// machine does not let the runner create one.
    pub fn pids(max: u32) -> Option<Cgroup> {
        PIDS_PARENTS.iter().map(Path::new).find_map(|parent| {
            let cgroup = Cgroup::create_under(parent).ok()?;
            fs_err::write(cgroup.dir.join("pids.max"), max.to_string()).ok()?;
            Some(cgroup)
        })
    }

    /// Creates a cgroup capping its processes' memory (and swap, where the
    /// kernel accounts it) at `bytes` in all.
    ///
    /// # Errors
    /// Why no memory cgroup can be made here, for the user.
    pub fn memory(bytes: u64) -> Result<Cgroup, String> {
        let mut reasons = Vec::new();
        for parent in MEMORY_PARENTS.iter().map(Path::new) {
            let cgroup = match Cgroup::create_under(parent) {
                Ok(cgroup) => cgroup,
                Err(reason) => {
                    reasons.push(reason);
                    continue;
                }
            };
            // v1 names the limit `memory.limit_in_bytes` (then the memory
            // and swap total, which must not be lower); v2 `memory.max`
            // (and `memory.swap.max`, swap alone).
            let v1 = cgroup.dir.join("memory.limit_in_bytes");
            let written = if v1.exists() {
                fs_err::write(&v1, bytes.to_string()).and_then(|()| {
                    let memsw = cgroup.dir.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        fs_err::write(memsw, bytes.to_string())?;
                    }
                    Ok(())
                })
            } else if cgroup.dir.join("memory.max").exists() {
                fs_err::write(cgroup.dir.join("memory.max"), bytes.to_string()).and_then(|()| {
                    let swap = cgroup.dir.join("memory.swap.max");
                    if swap.exists() {
                        fs_err::write(swap, "0")?;
                    }
                    Ok(())
                })
            } else {
                reasons.push(format!("{} has no memory controller", parent.display()));
                continue;
            };
            match written {
                Ok(()) => return Ok(cgroup),
                Err(e) => reasons.push(format!("cannot set its limit under {}: {e}", parent.display())),
            }
        }
        Err(format!("no memory cgroup can be created on this machine ({})", reasons.join("; ")))
    }

    fn create_under(parent: &Path) -> Result<Cgroup, String> {
        if !parent.join("cgroup.procs").exists() {
            return Err(format!("{} is not a cgroup hierarchy", parent.display()));
        }
        sweep_stale(parent);
        let name = format!("cleanroom-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let dir = parent.join(name);
        fs_err::create_dir(&dir).map_err(|e| format!("cannot create a cgroup under {}: {e}", parent.display()))?;
        Ok(Cgroup { dir })
    }

    /// The file a process writes its pid to in order to join.
    pub fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// Whether the kernel's OOM killer killed a process of this (memory)
    /// cgroup: its `oom_kill` count (v1 `memory.oom_control`, v2
    /// `memory.events`) is not 0.
    pub fn oom_killed(&self) -> bool {
        ["memory.oom_control", "memory.events"].iter().any(|file| {
            fs_err::read_to_string(self.dir.join(file)).is_ok_and(|text| {
                text.lines().any(|line| {
                    line.strip_prefix("oom_kill ").is_some_and(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0))
                })
            })
        })
    }
}

/// The live processes in the cgroup whose `cgroup.procs` is `procs` (empty
/// when it cannot be read: a removed cgroup has no members). Zombies are
/// left out: they are dead, and whoever inherited them reaps them when it
/// will (the cgroup lists them until then).
pub fn members(procs: &Path) -> Vec<nix::unistd::Pid> {
    fs_err::read_to_string(procs)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse::<i32>().ok())
        .filter(|&pid| pid > 0 && !is_dead(pid))
        .map(nix::unistd::Pid::from_raw)
        .collect()
}

/// Whether process `pid` is gone or a zombie (state `Z` or `X` in
/// `/proc/PID/stat`, after the command name, which may hold anything).
fn is_dead(pid: i32) -> bool {
    let Ok(stat) = fs_err::read_to_string(format!("/proc/{pid}/stat")) else { return true };
    let state = stat.rfind(')').and_then(|end| stat[end + 1..].split_whitespace().next());
    matches!(state, Some("Z" | "X") | None)
}

/// Removes the empty cgroups of runners that died without dropping theirs
/// (killed with SIGKILL, say), so they do not pile up under `parent`. A
/// cgroup still holding processes cannot be removed and is left alone.
fn sweep_stale(parent: &Path) {
    let Ok(entries) = fs_err::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name.to_str().and_then(|n| n.strip_prefix("cleanroom-")).and_then(|n| n.split('-').next())
        else {
            continue;
        };
        let alive = Path::new("/proc").join(owner).exists();
        if !alive && owner.parse::<u32>().is_ok() {
            let _ = fs_err::remove_dir(entry.path());
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Killed processes take a moment to leave; a cgroup with members
        // cannot be removed.
        // (Checked every millisecond: a step's report waits for this.)
        for _ in 0..1000 {
            if fs_err::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        tracing::warn!("could not remove the cgroup {}", self.dir.display());
    }
}
