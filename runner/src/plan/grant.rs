//! Grants: per step, the complete list of what it may touch.
//!
//! A [`Grant`] is plain data decided by the plan and applied by the sandbox;
//! nothing else decides access. Defaults deny: no mounts, no environment, no
//! network, and finite limits on time, memory and captured output.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// Deadline when a step sets no `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Memory cap when a step sets no `memory`.
pub const DEFAULT_MEMORY: u64 = 512 << 20;
/// Bytes of stdout, and separately of stderr, kept per invocation; the rest
/// is dropped (the plugin is not told, so log spam cannot kill it).
pub const DEFAULT_OUTPUT_CAP: u64 = 1 << 20;
/// Bytes a stage may write when it sets no `max_write`.
pub const DEFAULT_MAX_WRITE: u64 = 1 << 30;
/// Processes a native program may have at once when it sets no `pids`.
pub const DEFAULT_PIDS: u32 = 512;

/// Everything one step may touch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    /// Files and directories it sees, in the order the pipeline lists them.
    pub mounts: Vec<Mount>,
    /// Resource limits.
    pub limits: Limits,
    /// Extra host paths a native program may read and execute (toolchains);
    /// always empty for plugins.
    pub tools: Vec<PathBuf>,
    /// The complete environment of a native program (`PATH` and `HOME`
    /// included; `TMPDIR` is added per run); always empty for plugins.
    pub env: BTreeMap<String, String>,
    /// Whether a native program may use the network; never for plugins.
    pub network: bool,
}

impl Grant {
    /// A grant of `mounts` and `limits` and nothing else.
    pub fn new(mounts: Vec<Mount>, limits: Limits) -> Grant {
        Grant { mounts, limits, tools: Vec::new(), env: BTreeMap::new(), network: false }
    }
}

/// One file or directory of the workspace made visible to a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// Workspace-relative path, normalised (`src/lib`, or `.` for the root).
    pub rel: String,
    /// Canonical host path (symlinks resolved; checked to be in the workspace).
    pub host: PathBuf,
    /// Where the step sees it: `/` + `rel` (`/` for the root).
    pub guest: String,
    /// Whether the step may change it (stage `write` mounts only).
    pub writable: bool,
    /// A directory (true) or a single file (false).
    pub is_dir: bool,
    /// False when the path did not exist at planning time: a `write`
    /// directory (created when the step's writes are committed, and only
    /// then), or a `read` path that a step it needs writes (checked, and its
    /// kind read, when the step runs).
    pub exists: bool,
}

/// Finite resources for one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Wall-clock deadline, enforced by interrupting the guest.
    pub timeout: Duration,
    /// Maximum linear memory the guest may hold, in bytes.
    pub memory: u64,
    /// Bytes of stdout and of stderr kept, each.
    pub output: u64,
    /// Bytes a stage may write.
    pub max_write: u64,
    /// Processes a native program may have at once (where enforceable).
    pub pids: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: DEFAULT_TIMEOUT,
            memory: DEFAULT_MEMORY,
            output: DEFAULT_OUTPUT_CAP,
            max_write: DEFAULT_MAX_WRITE,
            pids: DEFAULT_PIDS,
        }
    }
}
