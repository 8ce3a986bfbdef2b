//! The limits capability: memory and table caps per Store, and the deadline.
//!
//! [`StepLimiter`] refuses linear-memory and table growth past the grant and
//! remembers that it did, so a trap can be reported as "exceeded its memory
//! limit" rather than as an opaque crash. The deadline is enforced by
//! [`arm_deadline`]: the engine's epoch ticks every [`TICK`], and on each tick
//! past the deadline the guest is interrupted; before it, the guest yields so
//! other steps on the same thread make progress.

use std::time::{Duration, Instant};

use wasmtime::{ResourceLimiter, Store, UpdateDeadline};

/// How often the epoch advances: the granularity of deadlines and yields.
pub const TICK: Duration = Duration::from_millis(10);

/// Table elements a guest may hold per table. Compiled Rust components use a
/// few thousand; more means a table-growth attack.
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Bytes a guest may hand to one host call (e.g. one `write`). wasmtime's
/// default is 128 MiB; a plugin has no business moving that much per call.
pub const HOSTCALL_FUEL: usize = 16 << 20;

/// Caps linear memory and tables for one Store and records refusals.
#[derive(Debug)]
pub struct StepLimiter {
    memory_cap: usize,
    /// Set when a memory growth was refused.
    pub memory_exceeded: bool,
    /// Set when a table growth was refused.
    pub table_exceeded: bool,
}

impl StepLimiter {
    /// A limiter allowing each linear memory up to `memory_cap` bytes.
    pub fn new(memory_cap: u64) -> Self {
        StepLimiter {
            memory_cap: usize::try_from(memory_cap).unwrap_or(usize::MAX),
            memory_exceeded: false,
            table_exceeded: false,
        }
    }
}

impl ResourceLimiter for StepLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.memory_exceeded = true;
            return Err(wasmtime::format_err!("memory limit of {} bytes exceeded", self.memory_cap));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.table_exceeded = true;
            return Err(wasmtime::format_err!("table limit of {MAX_TABLE_ELEMENTS} elements exceeded"));
        }
        Ok(true)
    }
}

/// Arms the wall-clock deadline on `store`: the guest is interrupted (trap
/// `Interrupt`) at the first epoch tick after `deadline`, and yields to the
/// async executor on every tick before it.
pub fn arm_deadline<T: 'static>(store: &mut Store<T>, deadline: Instant) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
}
