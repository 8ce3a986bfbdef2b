//! A pids limit for a jailed program, where the kernel's pids controller can
//! be used: a fresh cgroup (v1 `pids` hierarchy, or v2) whose `pids.max` caps
//! how many processes the program may have, so a fork bomb exhausts its own
//! cgroup instead of the machine. Where no such cgroup can be created (no
//! controller, or not permitted), there is no pids limit: only the deadline
//! bounds a fork bomb (the PID namespace still takes every process down
//! with the program); the report says so.
//!
//! The cgroup is also the runner's last word on "no process outlives its
//! step": after the helper exits, [`members`] lists whatever is still in
//! it, and the runner kills those until none is left.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Candidate parents: the v1 `pids` hierarchy, then the v2 root.
const PARENTS: &[&str] = &["/sys/fs/cgroup/pids", "/sys/fs/cgroup"];

/// A cgroup limiting one step's processes; removed when dropped.
#[derive(Debug)]
pub struct PidsCgroup {
    dir: PathBuf,
}

impl PidsCgroup {
    /// Creates a cgroup allowing `max` processes, or `None` when this
    /// machine does not let the runner create one.
    pub fn create(max: u32) -> Option<PidsCgroup> {
        let name = format!("cleanroom-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        PARENTS.iter().map(Path::new).find_map(|parent| {
            if !parent.join("cgroup.procs").exists() {
                return None;
            }
            sweep_stale(parent);
            let dir = parent.join(&name);
            fs_err::create_dir(&dir).ok()?;
            let cgroup = PidsCgroup { dir };
            fs_err::write(cgroup.dir.join("pids.max"), max.to_string()).ok()?;
            Some(cgroup)
        })
    }

    /// The file a process writes its pid to in order to join.
    pub fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
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

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        // Killed processes take a moment to leave; a cgroup with members
        // cannot be removed.
        for _ in 0..100 {
            if fs_err::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::warn!("could not remove the cgroup {}", self.dir.display());
    }
}
