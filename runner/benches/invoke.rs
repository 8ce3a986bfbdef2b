//! Per-invocation overhead of a no-op check with a warm engine: fresh Store
//! and WASI context, instantiate, call `check`, drop. Measured with the
//! pooling allocator (the default) and with on-demand allocation (the
//! fallback), against fork+exec of `/bin/true` in the same run, as the cost
//! of the cheapest unsandboxed hook a pre-commit-style runner can start.
//!
//! Run: `scripts/build-plugins && cargo bench -p cleanroom --bench invoke`
//! (`INVOKE_ITERATIONS` sets the sample count, default 5000).

#![expect(clippy::print_stdout, reason = "a benchmark prints its table on stdout")]

use std::path::Path;
use std::time::{Duration, Instant};

use cleanroom::plan::{Grant, Limits};
use cleanroom::sandbox::pool::{Allocator, Capacity};
use cleanroom::sandbox::{Invocation, Sandbox};

fn main() {
    let iterations: usize = std::env::var("INVOKE_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let pooled = runtime.block_on(invocations(Allocator::Pooling, iterations));
    let on_demand = runtime.block_on(invocations(Allocator::OnDemand, iterations));

    let spawn_iterations = (iterations / 5).max(200);
    let mut spawn_samples = Vec::with_capacity(spawn_iterations);
    for _ in 0..spawn_iterations {
        let started = Instant::now();
        let status = std::process::Command::new("/bin/true").status().expect("run /bin/true");
        spawn_samples.push(started.elapsed());
        assert!(status.success());
    }
    let spawn = Stats::of(spawn_samples);

    println!("| measurement | samples | median | p90 | p99 | /bin/true / this (medians) |");
    println!("|---|---|---|---|---|---|");
    for (name, stats) in [
        ("no-op check invocation, pooling allocator", &pooled),
        ("no-op check invocation, on-demand allocator", &on_demand),
        ("fork+exec /bin/true", &spawn),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} | {:.1}x |",
            stats.n,
            us(stats.median),
            us(stats.p90),
            us(stats.p99),
            spawn.median.as_secs_f64() / stats.median.as_secs_f64()
        );
    }
}

/// `iterations` timed invocations (after a tenth as many to warm up) on an
/// engine with `allocator`.
async fn invocations(allocator: Allocator, iterations: usize) -> Stats {
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sandbox-tests/dist/noop.wasm");
    let info =
        cleanroom::plugin::inspect(&wasm).expect("build sandbox-tests/dist/noop.wasm with scripts/build-plugins");
    let sandbox = Sandbox::with_allocator(Capacity::for_jobs(1, Limits::default().memory), allocator).expect("engine");
    assert_eq!(sandbox.allocator(), allocator, "the engine did not get the allocator asked for");
    let plugin = sandbox.load("noop", &info).expect("load noop");
    let grant = Grant::new(Vec::new(), Limits::default());
    let invocation =
        Invocation { step: "noop".into(), config: "{}".into(), mounts: Vec::new(), attempt: 1, feedback: Vec::new() };
    for _ in 0..iterations / 10 {
        sandbox.run_check(&plugin, &grant, &invocation, None).await.result.expect("noop passes");
    }
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        let outcome = sandbox.run_check(&plugin, &grant, &invocation, None).await;
        samples.push(started.elapsed());
        outcome.result.expect("noop passes");
    }
    Stats::of(samples)
}

struct Stats {
    n: usize,
    median: Duration,
    p90: Duration,
    p99: Duration,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Stats {
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Stats { n: samples.len(), median: at(0.5), p90: at(0.9), p99: at(0.99) }
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}
