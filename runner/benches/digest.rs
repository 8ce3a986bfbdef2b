//! Input hashing for the result cache: a tree hashed from scratch (every
//! file read) and again with the memo of (device, inode, size, mtime,
//! ctime) a previous run saved (only stat'ed).
//!
//! Run: `DIGEST_TREE=/some/tree cargo bench -p cleanroom --bench digest`
//! (default: this repository's `runner/`). The tree's `.cleanroom/digests.json`
//! is written, as a run would.

#![expect(clippy::print_stdout, reason = "a benchmark prints its table on stdout")]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cleanroom::cache::digest::Digester;

fn main() {
    let tree = std::env::var_os("DIGEST_TREE").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let rounds = 5;
    let mut cold = Vec::new();
    let mut files = 0;
    for _ in 0..rounds {
        let digester = Digester::cold(&tree);
        let started = Instant::now();
        digester.digest(&tree);
        cold.push(started.elapsed());
        files = digester.files_hashed();
        digester.save();
    }
    let mut warm = Vec::new();
    let mut rehashed = 0;
    for _ in 0..rounds {
        let digester = Digester::open(&tree);
        let started = Instant::now();
        digester.digest(&tree);
        warm.push(started.elapsed());
        rehashed = digester.files_hashed();
    }
    println!("tree: {} ({files} files)", tree.display());
    println!("| digest | median of {rounds} | files read |");
    println!("|---|---|---|");
    println!("| cold (every file read and hashed) | {} | {files} |", ms(median(cold)));
    println!("| warm (memo of file identities) | {} | {rehashed} |", ms(median(warm)));
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}
