//! First run (compile) against cached load, per first-party plugin: what the
//! compile cache saves every run after the first.
//!
//! Run: `scripts/build-plugins && cargo bench -p cleanroom --bench compile_cache`
//! (`CACHE_ITERATIONS` sets the cached-load sample count, default 50).
#![expect(clippy::print_stdout, reason = "a benchmark prints its table on stdout")]

use std::path::Path;
use std::time::{Duration, Instant};

use cleanroom::sandbox::cache::CompileCache;
use wasmtime::{Config, Engine};

fn main() {
    let iterations: usize = std::env::var("CACHE_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let mut config = Config::new();
    config.epoch_interruption(true);
    let engine = Engine::new(&config).expect("engine");
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
    let mut plugins: Vec<_> =
        fs_err::read_dir(&dist).expect("build plugins first").map(|e| e.unwrap().path()).collect();
    plugins.sort();
    println!("| plugin | size | compile (cache miss) | cached load, median of {iterations} | ratio |");
    println!("|---|---|---|---|---|");
    for path in plugins {
        let info = cleanroom::plugin::inspect(&path).expect("a component");
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::open(&dir.path().join("cache")).unwrap();
        let started = Instant::now();
        cache.component(&engine, &path, &info.sha256).expect("compiles");
        let compile = started.elapsed();
        let mut loads: Vec<Duration> = (0..iterations)
            .map(|_| {
                let started = Instant::now();
                cache.component(&engine, &path, &info.sha256).expect("loads");
                started.elapsed()
            })
            .collect();
        loads.sort();
        let load = loads[loads.len() / 2];
        println!(
            "| {} | {} KiB | {:.1} ms | {:.2} ms | {:.0}x |",
            path.file_stem().unwrap().to_string_lossy(),
            info.size / 1024,
            compile.as_secs_f64() * 1e3,
            load.as_secs_f64() * 1e3,
            compile.as_secs_f64() / load.as_secs_f64()
        );
    }
}
