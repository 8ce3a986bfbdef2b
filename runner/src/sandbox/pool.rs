//! The instance allocator: how the engine finds memory, tables and stacks
//! for each invocation.
//!
//! By default the engine uses wasmtime's pooling allocator: slots for every
//! instance a run can hold at once are reserved when the engine starts, so
//! an invocation takes a warm slot instead of mapping fresh memory, and
//! linear memories start from copy-on-write images of the plugin's data.
//! Reserving the pool needs a lot of address space (each memory slot is a
//! 4 GiB reservation plus guard pages); where the process may not reserve
//! that much (`ulimit -v`, some containers), the engine falls back to
//! allocating on demand, as Spin does, with each memory reserving only the
//! largest cap instead of 4 GiB, and says so at debug level. Both behave
//! the same to a plugin; only the cost per invocation differs.

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::limits;

/// What the pool must hold: sized from the plan, never guessed at run time.
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    /// Invocations that may be alive at once (a step's Store plus, for an
    /// evaluator, its subject's Store).
    pub concurrent: u32,
    /// The largest memory cap of any step or subject, in bytes.
    pub max_memory: u64,
}

impl Capacity {
    /// Room for `jobs` steps at once, each an evaluator running a subject.
    pub fn for_jobs(jobs: usize, max_memory: u64) -> Capacity {
        let jobs = u32::try_from(jobs.max(1)).unwrap_or(u32::MAX);
        Capacity { concurrent: jobs.saturating_mul(2).saturating_add(2), max_memory }
    }
}

/// Which allocator the engine ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// Slots reserved up front and reused.
    Pooling,
    /// Memory mapped per instance (the fallback).
    OnDemand,
}

/// More concurrent instances than this and the pool's reservation would be
/// unreasonable; such runs allocate on demand.
const MAX_POOLED: u32 = 1000;

/// Bytes of each linear memory reset with `memset` (and kept resident)
/// instead of returned to the kernel when an instance ends.
const KEEP_RESIDENT: usize = 2 << 20;

/// Decommits of pool slots gathered before one flush.
const DECOMMIT_BATCH: usize = 8;

/// Core instances, memories and tables one plugin component may have. Rust
/// components built for `wasm32-wasip2` have one memory, two or three core
/// instances and two tables; the margins allow for other toolchains.
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;
const MEMORIES_PER_COMPONENT: u32 = 2;
const TABLES_PER_COMPONENT: u32 = 4;

/// Starts an engine with epoch interruption, parallel compilation and
/// copy-on-write memory images, pooled when that is `preferred`, `capacity`
/// allows it and the
/// address space can be reserved; else allocating on demand with small
/// reservations.
///
/// # Errors
/// wasmtime's reason when even the on-demand engine cannot start.
pub fn engine(capacity: Capacity, preferred: Allocator) -> Result<(Engine, Allocator), String> {
    if preferred == Allocator::Pooling && capacity.concurrent <= MAX_POOLED {
        match Engine::new(&config(Some(capacity))) {
            Ok(engine) => return Ok((engine, Allocator::Pooling)),
            Err(e) => tracing::debug!("the instance pool cannot be reserved ({e:#}); allocating on demand"),
        }
    }
    let mut config = config(None);
    // Address space is what was short: reserve only what the largest cap
    // needs per memory (bounds are then checked in code, a little slower)
    // instead of 4 GiB plus guard pages.
    config.memory_reservation(max_memory(capacity)).memory_guard_size(64 << 10);
    Engine::new(&config).map(|engine| (engine, Allocator::OnDemand)).map_err(|e| format!("{e:#}"))
}

/// The largest memory cap, no more than a 32-bit memory can hold.
fn max_memory(capacity: Capacity) -> u64 {
    capacity.max_memory.min(4 << 30)
}

fn config(pool: Option<Capacity>) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true).parallel_compilation(true).memory_init_cow(true);
    if let Some(capacity) = pool {
        let slots = capacity.concurrent;
        let max_memory = usize::try_from(max_memory(capacity)).unwrap_or(usize::MAX);
        let mut pooling = PoolingAllocationConfig::new();
        pooling
            .total_component_instances(slots)
            .total_core_instances(slots * CORE_INSTANCES_PER_COMPONENT)
            .total_memories(slots * MEMORIES_PER_COMPONENT)
            .total_tables(slots * TABLES_PER_COMPONENT)
            .total_stacks(slots)
            .max_memory_size(max_memory)
            // Equal to the limiter's cap, so a growth attack is refused by
            // the limiter (and reported as such) before the pool says no.
            .table_elements(limits::MAX_TABLE_ELEMENTS)
            .max_memories_per_component(MEMORIES_PER_COMPONENT)
            .max_tables_per_component(TABLES_PER_COMPONENT)
            // A small check touches a few hundred KiB: resetting that with
            // `memset` and keeping it resident costs less than `madvise`,
            // which makes every core flush its TLB, and than the page
            // faults on the next use. Memory is zeroed either way, so no
            // invocation sees another's. Decommits that remain are batched.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT / 16)
            .decommit_batch_size(DECOMMIT_BATCH)
            // Where the kernel can say which pages were touched (Linux
            // 6.7), only those are reset.
            .pagemap_scan(wasmtime::Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_ordinary_size_gets_the_pool() {
        let (_, allocator) = engine(Capacity::for_jobs(2, 512 << 20), Allocator::Pooling).unwrap();
        assert_eq!(allocator, Allocator::Pooling);
    }

    #[test]
    fn more_jobs_than_the_pool_can_hold_allocate_on_demand() {
        let (_, allocator) = engine(Capacity::for_jobs(5000, 512 << 20), Allocator::Pooling).unwrap();
        assert_eq!(allocator, Allocator::OnDemand);
    }
}
