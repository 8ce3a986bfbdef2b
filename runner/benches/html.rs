//! The HTML report at scale: a run of 500 steps over 50 rounds (every
//! round's step results journaled, an evaluator with 10 scenarios, a diff
//! per stage per round), rendered by `report::html::render`.
//!
//! Run: `cargo bench -p cleanroom --bench html -- OUT.html` prints the
//! median render time and writes the page to OUT.html, which
//! `scripts/bench html` then loads in headless Chromium.

#![expect(clippy::print_stdout, reason = "a benchmark prints its table on stdout")]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cleanroom::plan::StepKind;
use cleanroom::report::events::{Event, Retrying};
use cleanroom::report::{html, EvaluationReport, RunReport, ScenarioReport, StepReport, StepStatus};

const STEPS: usize = 500;
const ROUNDS: u32 = 50;

fn step(i: usize, round: u32) -> StepReport {
    let kind = match i % 10 {
        0 => StepKind::Stage,
        9 => StepKind::Evaluator,
        _ => StepKind::Check,
    };
    let mut report = StepReport::skipped(&format!("step-{i:03}"), kind, String::new());
    report.reason = None;
    report.status =
        if (i + round as usize).is_multiple_of(7) && round < ROUNDS { StepStatus::Failed } else { StepStatus::Passed };
    report.attempt = round;
    report.duration = Duration::from_millis(10 + i as u64);
    report.stdout = format!("output of step {i} in round {round}\n").repeat(5);
    if kind == StepKind::Stage {
        report.changes = vec![format!("+ src/file{i}.rs").parse().unwrap_or_else(|_| unreachable!())];
        report.diff = Some(format!(
            "--- a/src/file{i}.rs\n+++ b/src/file{i}.rs\n@@ -1,3 +1,3 @@\n fn main() {{\n-    old({round});\n+    new({round});\n }}\n"
        ));
    }
    if kind == StepKind::Evaluator {
        let passed = (round as usize * 10 / ROUNDS as usize).min(10);
        let scenarios = (0..10)
            .map(|s| ScenarioReport {
                name: format!("scenario-{s}"),
                runs: 3,
                passes: if s < passed { 3 } else { 1 },
                passed: s < passed,
                summary: format!("scenario {s} summary"),
                detail: String::new(),
                pass_rate: 0.0,
                run_disagreement: 0.0,
                judge_disagreement: None,
                cached_runs: 0,
            })
            .collect();
        report.evaluation = Some(EvaluationReport { satisfaction: passed as f64 / 10.0, threshold: 0.9, scenarios });
    }
    report
}

fn main() {
    let out = std::env::args().nth(1).unwrap_or_else(|| "target/bench/html-500x50.html".into());
    let mut events = Vec::new();
    for round in 1..=ROUNDS {
        for i in 0..STEPS {
            let report = step(i, round);
            events.push(Event::StepFinished {
                step: report.id.clone(),
                round,
                status: report.status,
                inputs: BTreeMap::new(),
                report: Box::new(report),
            });
        }
        let retrying = Retrying {
            attempt: round + 1,
            feedback: vec![format!("scenario-9: failed 2/3: round {round}")],
            feedback_bits: 4.0,
            withheld: Vec::new(),
        };
        events.push(Event::RoundFinished { round, retries: BTreeMap::from([("step-000".to_string(), retrying)]) });
    }
    let steps = (0..STEPS).map(|i| step(i, ROUNDS)).collect();
    let report = RunReport::new("bench".into(), "1795815172266-0000001".into(), Duration::from_secs(600), steps);
    let runs = 10;
    let mut times = Vec::new();
    let mut page = String::new();
    for _ in 0..runs {
        let started = Instant::now();
        page = html::render(&report, &events);
        times.push(started.elapsed());
    }
    times.sort();
    if let Some(dir) = std::path::Path::new(&out).parent() {
        let _ = fs_err::create_dir_all(dir);
    }
    if let Err(e) = fs_err::write(&out, &page) {
        println!("cannot write {out}: {e}");
    }
    println!("| render {STEPS} steps x {ROUNDS} rounds | median of {runs} | page size |");
    println!("|---|---|---|");
    println!(
        "| `report::html::render` | {:.1} ms | {:.1} MiB |",
        times[runs / 2].as_secs_f64() * 1e3,
        page.len() as f64 / 1048576.0
    );
}
