//! The limits capability, plan half: a step's `timeout`, `memory`,
//! `max_write` and `pids` become its [`Limits`], with finite defaults for
//! each. The sandbox half enforces them: the engine's deadline and memory
//! limiter ([`crate::sandbox::limits`]), the write quota
//! ([`crate::sandbox::quota`]), the pids cgroup
//! ([`crate::sandbox::jail::pids`]) and the jail's file-size limit.

use std::time::Duration;

use serde::Serialize;

use crate::manifest::{ByteSize, StepTable};

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

/// Finite resources for one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
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

/// A step's limits from its table; defaults for what it leaves out. (Which
/// steps may set which key is [`super::keys`]'s to say.)
pub fn resolve(table: &StepTable) -> Limits {
    Limits {
        timeout: table.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0),
        memory: table.memory.map_or(DEFAULT_MEMORY, |m| m.0),
        max_write: table.max_write.as_ref().map_or(DEFAULT_MAX_WRITE, |m| m.get_ref().0),
        pids: table.pids.as_ref().map_or(DEFAULT_PIDS, |p| *p.get_ref()),
        ..Limits::default()
    }
}

/// What `--dry-run` says of a step's limits, network and caching, in one line.
pub fn describe(step: &super::Step) -> String {
    let limits = &step.grant.limits;
    let memory = match (&step.action, step.grant.native().and_then(|n| n.memory)) {
        (super::Action::Plugin(_), _) => format!(", memory {}", ByteSize(limits.memory)),
        (super::Action::Command { .. }, Some(cap)) => format!(", memory {} (cgroup)", ByteSize(cap)),
        (super::Action::Command { .. }, None) => String::new(),
    };
    let network = if step.grant.network() { ", network ON" } else { "" };
    let cache = if step.cache { "" } else { ", not cached" };
    format!("limits: timeout {:?}{memory}{network}{cache}", limits.timeout)
}
