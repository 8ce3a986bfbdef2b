//! Governance end to end on the factory demo: an approval gate stops the
//! run (exit 3) until a permitted person decides; an override accepts a
//! failed gate; verdicts and `stats` compare the evaluator with people; the
//! HTML report renders in a real browser (Debian's `chromium`, headless).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::factory::{factory_copy, run_pipeline};
use crate::{cleanroom, Workspace};

/// The factory demo with an approval gate on its holdout evaluator and check.
fn gated() -> Workspace {
    factory_copy(|toml| {
        format!(
            "{toml}\n[approval.merge]\nneeds = [\"holdout\", \"no-stubs\"]\napprovers = [\"alice\", \"bob\"]\ntimeout = \"72h\"\n"
        )
    })
}

/// The factory demo whose stage never gets it right within two attempts.
fn failing() -> Workspace {
    factory_copy(|toml| {
        toml.replace("\"/attempts/attempt-2.diff\"", "\"/attempts/attempt-1.diff\"")
            .replace("max_iterations = 5", "max_iterations = 2")
    })
}

fn step<'a>(json: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    json["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap()
}

#[test]
fn an_approval_gate_stops_the_factory_until_an_approver_decides() {
    let ws = gated();
    let waiting = run_pipeline(&ws, &[]);
    assert_eq!(waiting.code, 3, "{waiting:?}");
    assert_eq!(waiting.json()["status"], "awaiting-approval");
    assert!(waiting.stderr.contains("awaiting approval:"), "{waiting:?}");
    assert!(waiting.stderr.contains("cleanroom approve "), "the command to decide is printed: {waiting:?}");
    let run_id = waiting.json()["run_id"].as_str().unwrap().to_string();

    let stranger = cleanroom(ws.path(), &["approve", "merge", "--as", "mallory", "--reason", "lgtm"]);
    assert_eq!(stranger.code, 2, "{stranger:?}");
    assert!(stranger.stderr.contains("CR037") && stranger.stderr.contains("alice, bob"), "{stranger:?}");
    let no_reason = cleanroom(ws.path(), &["approve", "merge", "--as", "alice"]);
    assert_eq!(no_reason.code, 2, "{no_reason:?}");
    assert!(no_reason.stderr.contains("must say why"), "{no_reason:?}");

    let approved =
        cleanroom(ws.path(), &["approve", &run_id, "merge", "--as", "alice", "--reason", "read the diff and the spec"]);
    assert_eq!(approved.code, 0, "{approved:?}");
    let resumed = run_pipeline(&ws, &["--resume"]);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    let json = resumed.json();
    assert_eq!(json["status"], "passed");
    assert_eq!(json["approvals"][0]["status"], "approved");
    assert_eq!(json["approvals"][0]["decision"]["by"], "alice");
    assert!(
        step(&json, "holdout")["note"].as_str().is_some_and(|n| n.contains("reused on resume")),
        "the evaluator was not run again: {json}"
    );

    let verdict = cleanroom(ws.path(), &["verdict", "--as", "carol", "--reject", "--reason", "misses a case"]);
    assert_eq!(verdict.code, 0, "{verdict:?}");
    let stats = cleanroom(ws.path(), &["stats", "--format", "json", "--pipeline", "pipeline.toml"]);
    assert_eq!(stats.code, 0, "{stats:?}");
    let holdout = stats.json()["evaluators"].as_array().unwrap().iter().find(|e| e["evaluator"] == "holdout").cloned();
    let holdout = holdout.unwrap_or_else(|| panic!("{stats:?}"));
    assert_eq!(holdout["runs"], 1);
    assert_eq!(holdout["comparable"], 1);
    assert_eq!(holdout["false_pass_rate"]["count"], 1, "{holdout}");
    assert_eq!(holdout["false_pass_rate"]["value"], serde_json::Value::Null, "one decision is not yet a rate");
    assert_eq!(holdout["auto_merge_eligible"], false);
    let human = cleanroom(ws.path(), &["stats"]);
    assert!(human.stdout.contains("not yet known"), "{human:?}");
    let report = cleanroom(ws.path(), &["report", "--format", "json"]);
    let json = report.json();
    let words: Vec<&str> = json["decisions"].as_array().unwrap().iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(words, ["approval", "verdict"], "{report:?}");
}

#[test]
fn a_rejected_approval_fails_the_factory_run() {
    let ws = gated();
    assert_eq!(run_pipeline(&ws, &[]).code, 3);
    let rejected = cleanroom(ws.path(), &["reject", "merge", "--as", "bob", "--reason", "the error message is wrong"]);
    assert_eq!(rejected.code, 0, "{rejected:?}");
    let resumed = run_pipeline(&ws, &["--resume"]);
    assert_eq!(resumed.code, 1, "{resumed:?}");
    assert_eq!(resumed.json()["termination"], "rejected");
}

#[test]
fn an_override_of_the_holdout_evaluator_is_shown_and_counted() {
    let ws = failing();
    let failed = run_pipeline(&ws, &[]);
    assert_eq!(failed.code, 1, "{failed:?}");
    let stage = cleanroom(ws.path(), &["override", "implement", "--as", "alice", "--reason", "x"]);
    assert_eq!(stage.code, 2, "{stage:?}");
    let overridden = cleanroom(ws.path(), &["override", "holdout", "--as", "alice", "--reason", "scenarios are stale"]);
    assert_eq!(overridden.code, 0, "{overridden:?}");
    // Without resuming, every report of the run shows it.
    let report = cleanroom(ws.path(), &["report", "--format", "json"]);
    assert_eq!(step(&report.json(), "holdout")["status"], "overridden", "{report:?}");
    let resumed = run_pipeline(&ws, &["--resume"]);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    assert_eq!(resumed.json()["status"], "overridden");
    assert_eq!(step(&resumed.json(), "holdout")["status"], "overridden");
    let strict = cleanroom(ws.path(), &["report", "--fail-on-override"]);
    assert_eq!(strict.code, 1, "{strict:?}");
    assert!(strict.stdout.contains("overridden"), "{strict:?}");
    let stats = cleanroom(ws.path(), &["stats", "--format", "json"]);
    let holdout = &stats.json()["evaluators"][0];
    assert_eq!(holdout["override_rate"]["count"], 1, "{stats:?}");
}

/// Debian's headless Chromium, which `scripts/install-browser` installs.
fn chromium() -> PathBuf {
    let found = ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(name)).find(|p| p.is_file())
    });
    found.unwrap_or_else(|| panic!("no `chromium` on PATH: run scripts/install-browser (the test command does)"))
}

/// Loads `page` in headless Chromium: its rendered DOM, and a screenshot.
fn browse(page: &Path, shot: &Path) -> String {
    let url = format!("file://{}", page.display());
    let flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"];
    let home = page.parent().unwrap().join("chromium-home");
    let dom = Command::new(chromium())
        .args(flags)
        .arg(format!("--user-data-dir={}", home.display()))
        .args(["--dump-dom", &url])
        .env("HOME", &home)
        .output()
        .unwrap();
    assert!(dom.status.success(), "chromium --dump-dom: {}", String::from_utf8_lossy(&dom.stderr));
    let screenshot = Command::new(chromium())
        .args(flags)
        .arg(format!("--user-data-dir={}", home.display()))
        .args(["--window-size=1280,1600", "--hide-scrollbars"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .env("HOME", &home)
        .output()
        .unwrap();
    assert!(screenshot.status.success(), "chromium --screenshot: {}", String::from_utf8_lossy(&screenshot.stderr));
    String::from_utf8(dom.stdout).unwrap()
}

/// The share of pixels of the PNG at `path` that differ from its first
/// pixel (the page background), and how many distinct colours it has.
fn ink(path: &Path) -> (f64, usize) {
    let decoder = png::Decoder::new(std::io::BufReader::new(fs_err::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(channels).collect();
    let background = pixels[0];
    let inked = pixels.iter().filter(|p| *p != &background).count();
    let colours: std::collections::BTreeSet<&[u8]> = pixels.iter().copied().collect();
    (inked as f64 / pixels.len() as f64, colours.len())
}

#[test]
fn the_html_report_renders_in_a_real_browser() {
    let ws = gated();
    assert_eq!(run_pipeline(&ws, &[]).code, 3);
    assert_eq!(cleanroom(ws.path(), &["approve", "merge", "--as", "bob", "--reason", "ok"]).code, 0);
    assert_eq!(run_pipeline(&ws, &["--resume"]).code, 0);
    let page = cleanroom(ws.path(), &["report", "--format", "html"]);
    assert_eq!(page.code, 0, "{page:?}");
    for forbidden in ["http://", "https://", "<script", "<link"] {
        assert!(!page.stdout.contains(forbidden), "the page is not self-contained: it has `{forbidden}`");
    }
    let out = ws.path().join("out");
    fs_err::create_dir_all(&out).unwrap();
    let file = out.join("run.html");
    fs_err::write(&file, &page.stdout).unwrap();
    let dom = browse(&file, &out.join("run.png"));
    for expected in [
        "id=\"run-status\"",
        "data-step=\"holdout\"",
        "data-step=\"implement\"",
        "id=\"satisfaction-chart\"",
        "data-approval=\"merge\"",
        "data-decision=\"approval\"",
        "class=\"diff\"",
    ] {
        assert!(dom.contains(expected), "the rendered DOM lacks {expected}:\n{}", &dom[..dom.len().min(3000)]);
    }
    // Two rounds of the holdout evaluator make two points on the chart.
    assert!(dom.contains("data-points=\"2\""), "{}", &dom[..dom.len().min(3000)]);
    let (inked, colours) = ink(&out.join("run.png"));
    assert!(inked > 0.01 && colours > 8, "the screenshot is blank: {inked:.4} of it inked, {colours} colours");

    let history = cleanroom(ws.path(), &["report", "--history", "--format", "html"]);
    assert_eq!(history.code, 0, "{history:?}");
    let file = out.join("history.html");
    fs_err::write(&file, &history.stdout).unwrap();
    let dom = browse(&file, &out.join("history.png"));
    assert!(dom.contains("id=\"agreement\"") && dom.contains("data-evaluator=\"holdout\""), "{dom}");
    assert!(dom.contains("not yet known"), "one run is not enough to know a rate");
    let (inked, _) = ink(&out.join("history.png"));
    assert!(inked > 0.01, "the history screenshot is blank");
}

#[test]
fn governance_events_and_reports_match_their_schemas() {
    use crate::cli::{assert_valid, validator};
    let events = validator("schemas/events.schema.json");
    let reports = validator("schemas/report.schema.json");
    let ws = gated();
    let waiting = cleanroom(ws.path(), &["run", "--format", "jsonl", "pipeline.toml"]);
    assert_eq!(waiting.code, 3, "{waiting:?}");
    let lines: Vec<serde_json::Value> = waiting.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for line in &lines {
        assert_valid(&events, line, "a jsonl event");
    }
    let kinds: Vec<&str> = lines.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"approval_requested"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"run_awaiting"), "{kinds:?}");
    assert_valid(&reports, &lines.last().unwrap()["report"], "the waiting run's report");
    assert_eq!(cleanroom(ws.path(), &["approve", "merge", "--as", "alice", "--reason", "ok"]).code, 0);
    assert_eq!(run_pipeline(&ws, &["--resume"]).code, 0);
    assert_eq!(cleanroom(ws.path(), &["verdict", "--as", "bob", "--accept", "--reason", "good"]).code, 0);
    let report = cleanroom(ws.path(), &["report", "--format", "json"]);
    assert_valid(&reports, &report.json(), "a report with approvals and decisions");
    let ws = failing();
    assert_eq!(run_pipeline(&ws, &[]).code, 1);
    assert_eq!(cleanroom(ws.path(), &["override", "holdout", "--as", "alice", "--reason", "stale"]).code, 0);
    let resumed = run_pipeline(&ws, &["--resume"]);
    assert_valid(&reports, &resumed.json(), "an overridden run's report");
}
