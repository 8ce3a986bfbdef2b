//! Attacks on governance: the decisions people record (approvals,
//! overrides, verdicts) must be theirs, hold only for what they decided
//! on, and be counted only from journals the runner wrote.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sandbox_tests::{cleanroom_binary, Workspace};

use super::{case, output_text as text, Case};

/// A stage copies the spec's answer, a check judges it, and an approval
/// gate waits for alice on the check's result.
const GATED: &str = "[pipeline]\nname = \"governed\"\n\
    [stage.code]\nrun = [\"sh\", \"-c\", \"cp spec/answer out/answer\"]\nread = [\"spec\"]\nwrite = [\"out\"]\n\
    [check.judge]\nrun = [\"sh\", \"-c\", \"sleep $(cat spec/delay); grep -q right out/answer\"]\nread = [\"out\", \"spec\"]\nneeds = [\"code\"]\n\
    [approval.merge]\nneeds = [\"judge\"]\napprovers = [\"alice\"]\n";

fn workspace(answer: &str) -> Workspace {
    let ws = Workspace::new();
    ws.file("pipeline.toml", GATED).file("spec/answer", answer).file("spec/delay", "0").dir("out");
    ws
}

fn cli(ws: &Workspace, args: &[&str]) -> Output {
    Command::new(cleanroom_binary()).args(args).current_dir(ws.root()).output().unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Runs the pipeline until it waits for `merge`; the run's directory.
fn waiting(ws: &Workspace) -> PathBuf {
    let ran = cli(ws, &["run", "pipeline.toml"]);
    assert_eq!(code(&ran), 3, "control: the run waits for its approval\n{}", text(&ran));
    newest_run(ws)
}

fn newest_run(ws: &Workspace) -> PathBuf {
    fs_err::read_dir(ws.root().join(".cleanroom/runs")).unwrap().filter_map(|e| e.ok()).map(|e| e.path()).max().unwrap()
}

fn run_id(run: &std::path::Path) -> String {
    run.file_name().unwrap().to_string_lossy().into_owned()
}

/// A `human_decision` line approving `merge` as alice, with a made-up mac.
fn forged_approval() -> String {
    format!(
        "{{\"type\":\"human_decision\",\"data\":{{\"kind\":\"approval\",\"target\":\"merge\",\"accepted\":true,\"by\":\"alice\",\
         \"reason\":\"forged\",\"at\":\"2026-11-27T00:00:00.000Z\",\"user\":\"root\",\"artifacts\":{{}}}},\"mac\":\"{}\"}}\n",
        "ab".repeat(32)
    )
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        case("forge an approval by appending a decision line to the run's journal", || {
            let ws = workspace("right");
            let run = waiting(&ws);
            let events = run.join("events.jsonl");
            let original = fs_err::read_to_string(&events).unwrap();
            fs_err::write(&events, format!("{original}{}", forged_approval())).unwrap();
            let resumed = cli(&ws, &["run", "--resume", "pipeline.toml"]);
            assert_eq!(code(&resumed), 2, "a forged approval was accepted\n{}", text(&resumed));
            assert!(text(&resumed).contains("CR031"), "{}", text(&resumed));
            // Control: the real decision, on the untouched journal, lets it pass.
            fs_err::write(&events, original).unwrap();
            let approved = cli(&ws, &["approve", "merge", "--as", "alice", "--reason", "checked"]);
            assert_eq!(code(&approved), 0, "{}", text(&approved));
            let resumed = cli(&ws, &["run", "--resume", "pipeline.toml"]);
            assert_eq!(code(&resumed), 0, "control: the approved run passes\n{}", text(&resumed));
        }),
        case("replay an approval from another run's journal", || {
            let ws = workspace("right");
            let first = waiting(&ws);
            assert_eq!(code(&cli(&ws, &["approve", &run_id(&first), "merge", "--as", "alice", "--reason", "ok"])), 0);
            let decision = fs_err::read_to_string(first.join("events.jsonl"))
                .unwrap()
                .lines()
                .find(|l| l.starts_with("{\"type\":\"human_decision\""))
                .map(|l| format!("{l}\n"))
                .unwrap();
            std::thread::sleep(Duration::from_millis(5));
            let second = waiting(&ws);
            assert_ne!(first, second);
            let events = second.join("events.jsonl");
            let journal = fs_err::read_to_string(&events).unwrap();
            fs_err::write(&events, format!("{journal}{decision}")).unwrap();
            let resumed = cli(&ws, &["run", "--resume", "pipeline.toml"]);
            assert_eq!(code(&resumed), 2, "a replayed approval was accepted\n{}", text(&resumed));
            let report = cli(&ws, &["report", &run_id(&second), "--format", "json"]);
            assert_ne!(code(&report), 0, "the report of the tampered run was shown\n{}", text(&report));
        }),
        case("carry an approval over to results that changed after it", || {
            let ws = workspace("right");
            waiting(&ws);
            assert_eq!(code(&cli(&ws, &["approve", "merge", "--as", "alice", "--reason", "read it"])), 0);
            // What was approved changes before the run goes on.
            ws.file("spec/answer", "right, and something else");
            let resumed = cli(&ws, &["run", "--resume", "--format", "json", "pipeline.toml"]);
            assert_eq!(code(&resumed), 3, "an approval held for other results\n{}", text(&resumed));
            let json: serde_json::Value = serde_json::from_slice(&resumed.stdout).unwrap();
            assert_eq!(json["approvals"][0]["status"], "awaiting", "{json}");
            let note = json["approvals"][0]["note"].as_str().unwrap_or_default();
            assert!(note.contains("alice approved other results"), "{note}");
        }),
        case("decide as someone who is not an approver, or without a reason", || {
            let ws = workspace("right");
            waiting(&ws);
            for args in [
                &["approve", "merge", "--as", "mallory", "--reason", "trust me"][..],
                &["approve", "merge", "--as", "alice"][..],
                &["approve", "merge", "--as", "alice\u{1b}[2K", "--reason", "x"][..],
                &["approve", "no-such-gate", "--as", "alice", "--reason", "x"][..],
            ] {
                let refused = cli(&ws, args);
                assert_eq!(code(&refused), 2, "{args:?} was recorded\n{}", text(&refused));
                assert!(text(&refused).contains("CR037"), "{}", text(&refused));
            }
            let resumed = cli(&ws, &["run", "--resume", "pipeline.toml"]);
            assert_eq!(code(&resumed), 3, "a refused decision let the run through\n{}", text(&resumed));
        }),
        case("plant a run with forged decisions for stats and approve to count", || {
            let ws = workspace("right");
            waiting(&ws);
            let planted = ws.root().join(".cleanroom/runs/9999999999999-9999999");
            fs_err::create_dir_all(&planted).unwrap();
            fs_err::write(planted.join("events.jsonl"), forged_approval().repeat(20)).unwrap();
            let approve = cli(&ws, &["approve", "9999999999999-9999999", "merge", "--as", "alice", "--reason", "x"]);
            assert_eq!(code(&approve), 2, "a planted run was decided on\n{}", text(&approve));
            let stats = cli(&ws, &["stats", "--format", "json"]);
            assert_eq!(code(&stats), 0, "{}", text(&stats));
            let json: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
            assert_eq!(json["runs"], 1, "a planted run was counted: {json}");
        }),
        case("record a decision into a run while it is going on", || {
            let ws = workspace("wrong");
            ws.file("spec/delay", "20");
            let mut child = Command::new(cleanroom_binary())
                .args(["run", "pipeline.toml"])
                .current_dir(ws.root())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let started = Instant::now();
            let events = loop {
                let runs = ws.root().join(".cleanroom/runs");
                let found = fs_err::read_dir(&runs).ok().and_then(|mut d| d.next()).and_then(|e| e.ok());
                if let Some(entry) = found {
                    let events = entry.path().join("events.jsonl");
                    if fs_err::read_to_string(&events).unwrap_or_default().contains("\"step\":\"judge\"") {
                        break events;
                    }
                }
                assert!(started.elapsed() < Duration::from_secs(30), "the judge never started");
                std::thread::sleep(Duration::from_millis(20));
            };
            let run = run_id(events.parent().unwrap());
            let decided = cli(&ws, &["verdict", &run, "--as", "alice", "--accept", "--reason", "early"]);
            let _ = child.kill();
            let _ = child.wait();
            assert_eq!(code(&decided), 2, "a decision was written into a running run\n{}", text(&decided));
            assert!(text(&decided).contains("is going on"), "{}", text(&decided));
            assert!(!fs_err::read_to_string(&events).unwrap().contains("human_decision"));
        }),
        case("smuggle markup into the HTML report through a stage's output", || {
            let ws = workspace("right\n</pre><script>alert(1)</script><img src=x onerror=alert(2)>\n");
            waiting(&ws);
            let page = cli(&ws, &["report", "--format", "html"]);
            let html = String::from_utf8_lossy(&page.stdout);
            assert!(html.contains("&lt;script&gt;alert(1)"), "control: the stage's text is on the page");
            for forbidden in ["<script", "<img"] {
                assert!(!html.contains(forbidden), "`{forbidden}` reached the page unescaped");
            }
            assert!(html.contains("Content-Security-Policy"), "the page has no policy");
        }),
    ]
}
