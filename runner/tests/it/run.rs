//! `cleanroom run` and `validate` on pipelines that are valid.

use crate::{cleanroom, component, repo, Workspace};

/// The example that fails on purpose reports each finding with its position,
/// skips the step that needs a failed one, and exits 1.
#[test]
fn failing_demo_reports_findings_with_positions_and_exits_1() {
    let ran = cleanroom(&repo(), &["run", "pipelines/failing-demo.toml", "--format", "json"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    let report = ran.json();
    assert_eq!(report["pipeline"], "failing-demo");
    assert_eq!(report["status"], "failed");
    let steps = report["steps"].as_array().unwrap();
    let ids: Vec<&str> = steps.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["no-stubs", "env-example", "docs-present"]);
    let stubs = &steps[0];
    assert_eq!(stubs["kind"], "check");
    assert_eq!(stubs["status"], "failed");
    let first = &stubs["findings"][0];
    assert_eq!(first["rule"], "forbid-pattern");
    assert_eq!(first["severity"], "error");
    assert_eq!(first["path"], "src/main.rs");
    assert_eq!((first["line"].as_u64(), first["column"].as_u64()), (Some(7), Some(5)));
    assert_eq!(steps[1]["findings"][0]["message"], "`.env.example` is missing");
    assert_eq!(steps[2]["status"], "skipped");
    assert!(steps.iter().all(|s| s["duration_ms"].is_u64()));
}

/// Human output: one aligned line per step, findings as path:line:col, a summary.
#[test]
fn human_output_lists_steps_then_findings_then_a_summary() {
    let ran = cleanroom(&repo(), &["run", "--no-cache", "pipelines/failing-demo.toml"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert!(lines[0].starts_with("no-stubs ............... failed   2 findings  ("), "{ran:?}");
    assert!(lines[1].starts_with("env-example ............ failed   1 finding  ("), "{ran:?}");
    assert_eq!(lines[2], "docs-present ........... skipped  needs `env-example`, which did not pass");
    assert!(
        ran.stdout.contains("\n  src/main.rs:7:5: forbid-pattern `todo!(` matches forbidden pattern `todo!\\(`\n"),
        "{ran:?}"
    );
    assert!(lines.last().unwrap().starts_with("failed: 2 failed, 1 skipped in "), "{ran:?}");
    assert!(ran.stderr.is_empty(), "{ran:?}");
}

/// This repository's own self-check passes (it is the README's example).
#[test]
fn self_check_of_this_repository_passes() {
    let ran = cleanroom(&repo(), &["run", "pipelines/self-check.toml", "--format", "json"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ran.json()["status"], "passed");
}

/// All three first-party plugins find what they should on a known tree.
#[test]
fn first_party_plugins_find_exactly_the_planted_problems() {
    let ws = Workspace::new();
    ws.file("src/a.rs", "fn a() {\n    // fine\n}\n")
        .file("src/b.rs", "fn b() {\n  x; todo!()\n}\n")
        .file("src/skip/c.rs", "todo!()")
        .file("notes.txt", "todo!() in text is not included")
        .file("big.bin", &"x".repeat(2048))
        .file("docs/guide.md", "# guide");
    let pipeline = format!(
        "[pipeline]\nname = \"t\"\n[plugins]\nfp = {fp:?}\nrf = {rf:?}\nmf = {mf:?}\n\
         [check.stubs]\nplugin = \"fp\"\nread = [\"src\", \"notes.txt\"]\n\
         config = {{ patterns = ['todo!\\('], include = [\"**/*.rs\"], exclude = [\"src/skip/**\"] }}\n\
         [check.files]\nplugin = \"rf\"\nread = [\".\"]\nconfig = {{ paths = [\"docs/*.md\", \"LICENSE\", \"src/a.rs\", \"*.toml\"] }}\n\
         [check.sizes]\nplugin = \"mf\"\nread = [\".\"]\nconfig = {{ max = \"1KiB\", exclude = [\"pipeline.toml\"] }}\n",
        fp = component("forbid_pattern"),
        rf = component("required_files"),
        mf = component("max_file_size"),
    );
    let ran = ws.run(&pipeline, &["run", "--format", "json"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    let report = ran.json();
    let findings = |i: usize| -> Vec<String> {
        report["steps"][i]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                format!(
                    "{}:{}:{} {}",
                    f["path"].as_str().unwrap_or("-"),
                    f["line"],
                    f["column"],
                    f["message"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(findings(0), ["src/b.rs:2:6 `todo!(` matches forbidden pattern `todo!\\(`"]);
    assert_eq!(findings(1), ["LICENSE:null:null `LICENSE` is missing"]);
    assert_eq!(findings(2), ["big.bin:null:null 2048 bytes, over the limit of 1KiB (1024 bytes)"]);
}

/// A plugin that reports an error (here: bad config) makes its step `error`
/// with the plugin's message; the run still exits 1, not 2.
#[test]
fn plugin_error_is_reported_as_step_error_with_its_message() {
    let ws = Workspace::new();
    let pipeline = format!(
        "[pipeline]\nname = \"t\"\n[plugins]\nfp = {:?}\n[check.bad-config]\nplugin = \"fp\"\nconfig = {{ pattern = 'x' }}\n",
        component("forbid_pattern")
    );
    let ran = ws.run(&pipeline, &["run", "--format", "json"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    let step = &ran.json()["steps"][0];
    assert_eq!(step["status"], "error");
    let reason = step["reason"].as_str().unwrap();
    assert!(reason.starts_with("plugin error: invalid config: unknown field `pattern`, expected one of"), "{reason}");
}

/// `validate` checks without running and says what it checked.
#[test]
fn validate_accepts_a_valid_pipeline_without_running_it() {
    let ws = Workspace::new();
    let pipeline = format!(
        "[pipeline]\nname = \"t\"\n[plugins]\nspin = {:?}\n[check.never-runs]\nplugin = \"spin\"\n",
        component("guest:spin_forever")
    );
    let ran = ws.run(&pipeline, &["validate"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(ran.stdout.starts_with("ok: pipeline `t` is valid (1 steps, 1 plugins"), "{ran:?}");
}

/// Steps without mutual needs run concurrently; with `--jobs 1` they still
/// all run, one at a time.
#[test]
fn jobs_limit_still_runs_every_step() {
    let ws = Workspace::new();
    let mut pipeline = format!("[pipeline]\nname = \"t\"\n[plugins]\nnoop = {:?}\n", component("guest:noop"));
    for i in 0..6 {
        pipeline.push_str(&format!("[check.n{i}]\nplugin = \"noop\"\n"));
    }
    let ran = ws.run(&pipeline, &["run", "--jobs", "1", "--format", "json"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ran.json()["steps"].as_array().unwrap().len(), 6);
}

/// Where the address space for the instance pool cannot be reserved (here a
/// `ulimit -v` of 8 GB, less than the pool but more than one on-demand
/// memory), the engine allocates on demand and the run is unchanged.
#[test]
fn a_runner_that_cannot_reserve_the_instance_pool_allocates_on_demand() {
    let output = std::process::Command::new("sh")
        .args(["-c", "ulimit -v 8000000 && exec \"$@\"", "sh", env!("CARGO_BIN_EXE_cleanroom")])
        .args(["run", "pipelines/self-check.toml", "--format", "json"])
        .current_dir(repo())
        .env("RUST_LOG", "cleanroom=debug")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("the instance pool cannot be reserved"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["status"], "passed");
}

/// `[pipeline] max_duration` cuts a native step's deadline to the time
/// left: the step is stopped at the budget, its process tree with it, the
/// step after it does not start, and the run ends with `termination:
/// budget`, long before the step's own `timeout`.
#[test]
fn max_duration_stops_a_run_at_its_budget_not_later() {
    let ws = Workspace::new();
    ws.file("out/.keep", "");
    let pipeline = "[pipeline]\nname = \"budget\"\nmax_duration = \"1500ms\"\n\n\
                    [stage.slow]\nrun = [\"sleep\", \"30\"]\nwrite = [\"out\"]\ntimeout = \"60s\"\n\n\
                    [check.after]\nrun = [\"true\"]\nneeds = [\"slow\"]\n";
    let started = std::time::Instant::now();
    let ran = ws.run(pipeline, &["run", "--format", "json"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "the run overshot its budget: {ran:?}");
    assert_eq!(ran.code, 1, "{ran:?}");
    let report = ran.json();
    assert_eq!(report["termination"], "budget", "{report}");
    let slow = &report["steps"][0];
    assert_eq!(
        (slow["status"].as_str(), slow["budget_exhausted"].as_str()),
        (Some("error"), Some("max_duration = 1500ms"))
    );
    assert_eq!(report["steps"][1]["status"], "skipped");
    assert!(
        report["escalation"].as_str().unwrap().contains("ran out of its budget (`max_duration = 1500ms`)"),
        "{report}"
    );
}
