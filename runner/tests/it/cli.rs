//! The command line people and CI systems use: report formats checked
//! against their published schemas, exit codes (130 after Ctrl-C), step
//! selection, graphs, `init`, `lock` / `--locked`, `plugin inspect`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{cleanroom, cleanroom_with_env, component, repo, test_cache, Ran, Workspace};

/// A pipeline with a passing check, a failing one (a finding with a
/// position), a skipped one and an evaluator with failing scenarios.
fn mixed_workspace() -> Workspace {
    let ws = Workspace::new();
    ws.file("src/a.rs", "fn a() {\n    todo!()\n}\n").file("quote", "x").file(
        "pipeline.toml",
        &format!(
            "[pipeline]\nname = \"mixed\"\n[plugins]\nforbid = {:?}\nnoop = {:?}\neval = {:?}\n\
             [check.clean]\nplugin = \"noop\"\n\
             [check.no-todo]\nplugin = \"forbid\"\nread = [\"src\"]\nconfig = {{ patterns = ['todo!\\('] }}\n\
             [check.after]\nplugin = \"noop\"\nneeds = [\"no-todo\"]\n\
             [evaluator.judge]\nplugin = \"eval\"\nread = [\"quote\"]\nconfig = {{ quote = \"/quote\" }}\n",
            component("forbid_pattern"),
            component("guest:noop"),
            component("guest:fixed_verdicts"),
        ),
    );
    ws
}

fn run_mixed(ws: &Workspace, format: &str) -> Ran {
    let ran = cleanroom(ws.path(), &["run", "--format", format, "pipeline.toml"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    ran
}

/// A JSON Schema from `schemas/` (with the report schema registered, so
/// the events schema's references to it resolve offline).
pub fn validator(file: &str) -> jsonschema::Validator {
    let load =
        |path: &Path| -> serde_json::Value { serde_json::from_str(&fs_err::read_to_string(path).unwrap()).unwrap() };
    let report = load(&repo().join("schemas/report.schema.json"));
    let report_id = report["$id"].as_str().expect("report schema has an $id").to_string();
    let schema = load(&repo().join(file));
    jsonschema::options()
        .with_resource(report_id, jsonschema::Resource::from_contents(report).expect("the report schema is a resource"))
        .build(&schema)
        .unwrap_or_else(|e| panic!("{file} is not a valid schema: {e}"))
}

pub fn assert_valid(validator: &jsonschema::Validator, instance: &serde_json::Value, what: &str) {
    let errors: Vec<String> =
        validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path)).collect();
    assert!(errors.is_empty(), "{what} does not match its schema:\n{}\n{instance:#}", errors.join("\n"));
}

#[test]
fn report_prints_a_past_run_exactly_as_it_printed_and_refuses_a_changed_record() {
    let ws = mixed_workspace();
    let mut first = None;
    for format in ["human", "json", "junit", "sarif"] {
        let ran = run_mixed(&ws, format);
        let again = cleanroom(ws.path(), &["report", "--format", format]);
        assert_eq!(again.code, 1, "{again:?}");
        assert_eq!(again.stdout, ran.stdout, "`report --format {format}` differs from what the run printed");
        first.get_or_insert(ran);
    }
    // An older run by id, and the human report of the first (human) run.
    let runs = ws.path().join(".cleanroom/runs");
    let mut ids: Vec<String> =
        fs_err::read_dir(&runs).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    ids.sort();
    let oldest = cleanroom(ws.path(), &["report", &ids[0]]);
    assert_eq!(oldest.stdout, first.unwrap().stdout);
    // A report.json changed after the run is refused, with the run named.
    let file = runs.join(&ids[0]).join("report.json");
    let text = fs_err::read_to_string(&file).unwrap().replacen("\"failed\"", "\"passed\"", 1);
    fs_err::write(&file, text).unwrap();
    let refused = cleanroom(ws.path(), &["report", &ids[0]]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("error[CR033]") && refused.stderr.contains("not the report the run wrote"),
        "{refused:?}"
    );
    // From a subdirectory, the nearest workspace with runs is found.
    let nested = ws.path().join("src");
    let from_below = cleanroom(&nested, &["report", &ids[1], "--format", "json"]);
    assert_eq!(from_below.code, 1, "{from_below:?}");
    assert!(from_below.stdout.contains("\"pipeline\": \"mixed\""), "{from_below:?}");
    let unknown = cleanroom(ws.path(), &["report", "../../etc"]);
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(unknown.stderr.contains("is not a run id"), "{unknown:?}");
}

#[test]
fn json_report_matches_its_schema() {
    let ws = mixed_workspace();
    let ran = run_mixed(&ws, "json");
    assert_valid(&validator("schemas/report.schema.json"), &ran.json(), "--format json");
}

#[test]
fn jsonl_streams_events_in_order_and_each_matches_the_schema() {
    let ws = mixed_workspace();
    let ran = run_mixed(&ws, "jsonl");
    let validator = validator("schemas/events.schema.json");
    let events: Vec<serde_json::Value> =
        ran.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    for event in &events {
        assert_valid(&validator, event, "a jsonl event");
    }
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"run_started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"run_finished"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "step_finished").count(), 4, "{kinds:?}");
    // A step is announced before its result.
    let position = |kind: &str, step: &str| {
        events.iter().position(|e| e["event"] == kind && (e["step"] == step || e["report"]["id"] == step))
    };
    assert!(position("step_started", "no-todo") < position("step_finished", "no-todo"));
    // The evaluator is a gate: its decision has a line, after its result.
    let decision = events.iter().position(|e| e["event"] == "gate_decision" && e["gate"] == "judge");
    assert!(decision.is_some() && decision > position("step_finished", "judge"), "{kinds:?}");
    assert_eq!(events.last().unwrap()["report"]["status"], "failed");
    assert!(events.last().unwrap()["report"]["termination"].is_string());
}

#[test]
fn sarif_matches_the_sarif_2_1_0_schema_and_what_github_requires() {
    let ws = mixed_workspace();
    let ran = run_mixed(&ws, "sarif");
    let sarif: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    let schema: serde_json::Value = serde_json::from_str(
        &fs_err::read_to_string(repo().join("runner/tests/fixtures/schemas/sarif-schema-2.1.0.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the SARIF schema compiles");
    assert_valid(&validator, &sarif, "--format sarif");

    // GitHub code scanning's own requirements, beyond the schema.
    assert!(sarif["$schema"].as_str().unwrap().contains("sarif-schema-2.1.0"));
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "cleanroom");
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    for rule in rules {
        for key in ["shortDescription", "fullDescription", "help"] {
            assert!(rule[key]["text"].as_str().is_some_and(|t| !t.is_empty()), "rule lacks {key}: {rule}");
        }
    }
    let results = run["results"].as_array().unwrap();
    let todo = results.iter().find(|r| r["ruleId"] == "no-todo/forbid-pattern").expect("the finding is a result");
    let location = &todo["locations"][0]["physicalLocation"];
    // Repo-relative: the workspace is not in a git repository, so paths are
    // relative to the workspace.
    assert_eq!(location["artifactLocation"]["uri"], "src/a.rs");
    assert_eq!(location["region"]["startLine"], 2);
    assert_eq!(location["region"]["startColumn"], 5);
    assert_eq!(todo["level"], "error");
    for result in results {
        let uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].as_str().unwrap();
        assert!(!uri.starts_with('/') && !uri.contains("://"), "not relative: {uri}");
        assert!(rules.iter().any(|r| r["id"] == result["ruleId"]), "no rule for {result}");
        let fingerprint = result["partialFingerprints"]["primaryLocationLineHash"].as_str().unwrap();
        assert!(fingerprint.len() > 10, "{fingerprint}");
    }
    // Failing scenarios point at the evaluator's table in the pipeline file.
    let scenario = results.iter().find(|r| r["ruleId"] == "judge/scenario").expect("a scenario result");
    assert_eq!(scenario["locations"][0]["physicalLocation"]["artifactLocation"]["uri"], "pipeline.toml");
    assert_eq!(scenario["locations"][0]["physicalLocation"]["region"]["startLine"], 16);
}

#[test]
fn sarif_paths_are_relative_to_the_git_repository_root() {
    let ws = mixed_workspace();
    fs_err::create_dir(ws.path().join(".git")).unwrap();
    fs_err::create_dir(ws.path().join("sub")).unwrap();
    fs_err::rename(ws.path().join("src"), ws.path().join("sub/src")).unwrap();
    fs_err::rename(ws.path().join("quote"), ws.path().join("sub/quote")).unwrap();
    let text = fs_err::read_to_string(ws.path().join("pipeline.toml")).unwrap();
    ws.file("pipeline.toml", &text.replace("name = \"mixed\"", "name = \"mixed\"\nworkspace = \"sub\""));
    let ran = run_mixed(&ws, "sarif");
    let sarif: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    let uris: Vec<&str> = sarif["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].as_str().unwrap())
        .collect();
    assert!(uris.contains(&"sub/src/a.rs"), "{uris:?}");
}

#[test]
fn junit_is_valid_against_the_junit_xsd_with_a_testcase_per_step_and_scenario() {
    let ws = mixed_workspace();
    let ran = run_mixed(&ws, "junit");
    let document = roxmltree::Document::parse(&ran.stdout).unwrap_or_else(|e| panic!("{e}\n{}", ran.stdout));
    let cases: Vec<(String, String)> = document
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .map(|n| {
            let outcome = n.children().find(|c| c.is_element()).map_or("passed", |c| c.tag_name().name());
            (n.attribute("name").unwrap().to_string(), outcome.to_string())
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("clean", "passed"),
        ("no-todo", "failure"),
        ("after", "passed"),
        ("judge", "failure"),
        ("alpha", "failure"),
        ("smuggle", "failure"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    // `after` needs `no-todo`, so it is skipped; the rest as above.
    let mut expected = expected;
    expected[2].1 = "skipped".into();
    assert_eq!(cases, expected, "{}", ran.stdout);
    let root = document.root_element();
    assert_eq!(root.attribute("tests"), Some("6"));
    assert_eq!(root.attribute("failures"), Some("4"));
    let suite = root.children().find(|n| n.has_tag_name("testsuite")).unwrap();
    assert_eq!(suite.attribute("skipped"), Some("1"));

    // And against the published XSD, with a real XML Schema validator.
    let xml = ws.path().join("report.xml");
    fs_err::write(&xml, &ran.stdout).unwrap();
    let python = repo().join(".tools/test-venv/bin/python");
    assert!(python.is_file(), "{} is missing: run scripts/install-test-tools", python.display());
    let xsd = repo().join("runner/tests/fixtures/schemas/junit.xsd");
    let check = Command::new(python)
        .args(["-c", "import sys, xmlschema; xmlschema.XMLSchema(sys.argv[1]).validate(sys.argv[2])"])
        .arg(&xsd)
        .arg(&xml)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
}

#[test]
fn colour_follows_the_flag_and_no_color() {
    let ws = mixed_workspace();
    let always = cleanroom(ws.path(), &["--color", "always", "run", "pipeline.toml"]);
    assert!(always.stdout.contains("\x1b[31mfailed"), "{always:?}");
    // Not a terminal: `auto` means no colour, and no progress display.
    let auto = cleanroom(ws.path(), &["run", "pipeline.toml"]);
    assert!(!auto.stdout.contains('\x1b') && !auto.stderr.contains('\x1b'), "{auto:?}");
    let never = cleanroom(ws.path(), &["--color", "never", "run", "pipeline.toml"]);
    assert!(!never.stdout.contains('\x1b'), "{never:?}");
}

/// On a terminal (a real pty from `script`), colours are on unless NO_COLOR
/// is set, and a run longer than a moment draws a progress line on stderr.
#[test]
fn on_a_terminal_colours_and_progress_appear_unless_no_color() {
    let ws = Workspace::new();
    ws.file("pipeline.toml", "[pipeline]\nname = \"slow\"\n[check.slow]\nrun = [\"sleep\", \"1\"]\n");
    let on_tty = |no_color: bool| -> String {
        let bin = env!("CARGO_BIN_EXE_cleanroom");
        let mut command = Command::new("script");
        command
            .args(["-qfec", &format!("{bin} run --no-cache pipeline.toml"), "/dev/null"])
            .current_dir(ws.path())
            .env("CLEANROOM_CACHE_DIR", test_cache())
            .env("TERM", "xterm")
            .stdin(Stdio::null());
        if no_color {
            command.env("NO_COLOR", "1");
        } else {
            command.env_remove("NO_COLOR");
        }
        let output = command.output().expect("script(1) from util-linux");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let coloured = on_tty(false);
    assert!(coloured.contains("\x1b[32mpassed"), "{coloured:?}");
    assert!(coloured.contains("running: slow"), "no progress line: {coloured:?}");
    let plain = on_tty(true);
    assert!(!plain.contains("\x1b[32m"), "{plain:?}");
}

#[test]
fn quiet_prints_only_failures_and_verbose_prints_all_output() {
    let ws = mixed_workspace();
    let quiet = cleanroom(ws.path(), &["-q", "run", "pipeline.toml"]);
    assert!(!quiet.stdout.contains("clean ...") && quiet.stdout.contains("no-todo ..."), "{quiet:?}");
    assert!(quiet.stdout.contains("\nfailed: 1 passed, 2 failed, 1 skipped in "), "{quiet:?}");
    // fixed_verdicts prints on stdout; -v shows it under the step.
    let verbose = cleanroom(ws.path(), &["-v", "run", "--no-cache", "pipeline.toml"]);
    assert!(verbose.stdout.contains("  output:\n  | SECRET-DETAIL on stdout"), "{verbose:?}");
    assert!(verbose.stderr.contains("INFO"), "-v logs at info: {verbose:?}");
}

/// Ctrl-C stops a run cleanly: exit 130, the running stage's writes are not
/// committed, its process group is gone, and `--resume` finishes the run.
#[test]
fn ctrl_c_stops_cleanly_with_exit_130_and_the_run_resumes() {
    let ws = Workspace::new();
    let marker = format!("sleep 30.{}", std::process::id());
    ws.file("out/kept", "old").file("go/.keep", "").file(
        "pipeline.toml",
        &format!(
            "[pipeline]\nname = \"stop\"\n\
             [stage.slow]\nrun = [\"sh\", \"-c\", \"echo new > out/kept; echo more > out/added; [ -f go/now ] || exec {marker}\"]\nwrite = [\"out\"]\nread = [\"go\"]\n\
             [check.after]\nrun = [\"true\"]\nneeds = [\"slow\"]\n"
        ),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_cleanroom"))
        .args(["run", "--format", "jsonl", "pipeline.toml"])
        .current_dir(ws.path())
        .env("CLEANROOM_CACHE_DIR", test_cache())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_process(&marker);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let output = child.wait_with_output().unwrap();
    let ran = Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into(),
        stderr: String::from_utf8_lossy(&output.stderr).into(),
    };
    assert_eq!(ran.code, 130, "{ran:?}");
    assert!(ran.stdout.lines().last().unwrap().contains("\"status\":\"interrupted\""), "{ran:?}");
    assert!(ran.stderr.contains("--resume"), "{ran:?}");
    assert_eq!(fs_err::read_to_string(ws.path().join("out/kept")).unwrap(), "old");
    assert!(!ws.path().join("out/added").exists());
    std::thread::sleep(Duration::from_millis(200));
    assert!(!pgrep(&marker), "the stage's process outlived the run");

    // The interrupted run is unfinished; resuming runs it to the end (a
    // run resumes only from an unchanged pipeline file, so the stage is
    // told to finish through its input instead).
    ws.file("go/now", "");
    let resumed = cleanroom(ws.path(), &["run", "--resume", "pipeline.toml"]);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    assert_eq!(fs_err::read_to_string(ws.path().join("out/kept")).unwrap(), "new\n");
}

fn pgrep(pattern: &str) -> bool {
    Command::new("pgrep").args(["-f", pattern]).output().is_ok_and(|o| o.status.success())
}

/// Waits until a process whose command line holds `marker` runs (a step's
/// program has started).
fn wait_for_process(marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pgrep(marker) {
        assert!(Instant::now() < deadline, "the stage never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A runner killed by SIGKILL mid-stage cannot clean up: its scratch
/// directory (the stage's staged copy of its write mount, its `/tmp`) is
/// left behind. The next runner removes it, and a run that ends normally
/// leaves nothing in the temporary directory.
#[test]
fn a_killed_runners_scratch_space_is_removed_by_the_next_run() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = Workspace::new();
    let marker = format!("sleep 31.{}", std::process::id());
    ws.file("out/kept", "old").file(
        "pipeline.toml",
        &format!(
            "[pipeline]\nname = \"killed\"\n\
             [stage.slow]\nrun = [\"sh\", \"-c\", \"echo staged > out/left-behind; exec {marker}\"]\nwrite = [\"out\"]\n"
        ),
    );
    let tmpdir = tmp.path().as_os_str();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cleanroom"))
        .args(["run", "pipeline.toml"])
        .current_dir(ws.path())
        .env("CLEANROOM_CACHE_DIR", test_cache())
        .env("TMPDIR", tmpdir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_process(&marker);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let left: Vec<String> = crate::files_under(tmp.path())
        .iter()
        .map(|p| p.strip_prefix(tmp.path()).unwrap().display().to_string())
        .collect();
    assert!(
        left.iter().any(|p| p.ends_with("/left-behind")),
        "control: the killed runner left no staged copy behind: {left:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while pgrep(&marker) {
        assert!(Instant::now() < deadline, "the stage's process outlived the runner");
        std::thread::sleep(Duration::from_millis(20));
    }

    let next = Workspace::new();
    next.file("pipeline.toml", "[pipeline]\nname = \"next\"\n[check.quick]\nrun = [\"true\"]\n");
    let ran = cleanroom_with_env(next.path(), &["run", "pipeline.toml"], &[("TMPDIR", tmpdir)]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let user_dir = tmp.path().join(format!("cleanroom-{}", nix::unistd::geteuid()));
    let after: Vec<_> = fs_err::read_dir(&user_dir).unwrap().flatten().map(|e| e.path()).collect();
    assert!(after.is_empty(), "the scratch directory still holds {after:?}");
    assert_eq!(fs_err::read_to_string(ws.path().join("out/kept")).unwrap(), "old");
}

#[test]
fn only_runs_the_matching_steps_and_what_they_need() {
    let ws = mixed_workspace();
    let ran = cleanroom(ws.path(), &["run", "--format", "json", "--only", "aft*", "pipeline.toml"]);
    let ids: Vec<String> =
        ran.json()["steps"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, ["no-todo", "after"], "{ran:?}");
}

#[test]
fn skip_reports_the_steps_as_skipped_and_their_dependents_too() {
    let ws = mixed_workspace();
    let ran =
        cleanroom(ws.path(), &["run", "--format", "json", "--skip", "no-todo", "--skip", "judge", "pipeline.toml"]);
    assert_eq!(ran.code, 1, "skipped steps are not a pass: {ran:?}");
    let report = ran.json();
    let status = |id: &str| {
        let step = report["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap().clone();
        (step["status"].as_str().unwrap().to_string(), step["reason"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(status("no-todo"), ("skipped".into(), "skipped by --skip".into()));
    assert_eq!(status("after").0, "skipped");
    assert_eq!(status("clean").0, "passed");
}

#[test]
fn an_only_or_skip_pattern_that_matches_nothing_is_an_error() {
    let ws = mixed_workspace();
    let ran = cleanroom(ws.path(), &["run", "--only", "no-tood", "pipeline.toml"]);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("error[CR024]: --only `no-tood` matches no step"), "{ran:?}");
    assert!(ran.stderr.contains("did you mean `no-todo`?"), "{ran:?}");
}

#[test]
fn fail_fast_starts_nothing_after_the_first_failure() {
    let ws = Workspace::new();
    ws.file(
        "pipeline.toml",
        "[pipeline]\nname = \"ff\"\n[check.first]\nrun = [\"false\"]\n\
         [check.second]\nrun = [\"true\"]\nneeds = []\n[check.third]\nrun = [\"true\"]\n",
    );
    let ran = cleanroom(ws.path(), &["run", "--jobs", "1", "--fail-fast", "--format", "json", "pipeline.toml"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    let statuses: Vec<String> =
        ran.json()["steps"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap().to_string()).collect();
    assert_eq!(statuses, ["failed", "skipped", "skipped"], "{ran:?}");
    let without = cleanroom(ws.path(), &["run", "--jobs", "1", "--format", "json", "pipeline.toml"]);
    let statuses: Vec<String> =
        without.json()["steps"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap().to_string()).collect();
    assert_eq!(statuses, ["failed", "passed", "passed"], "{without:?}");
}

#[test]
fn dry_run_prints_the_plan_and_runs_nothing() {
    let ws = Workspace::new();
    ws.file(
        "pipeline.toml",
        "[pipeline]\nname = \"dry\"\n[stage.make]\nrun = [\"sh\", \"-c\", \"echo x > out/made\"]\nwrite = [\"out\"]\n",
    )
    .file("out/.keep", "");
    let ran = cleanroom(ws.path(), &["run", "--dry-run", "pipeline.toml"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(ran.stdout.contains("1. stage make (run sh -c echo x > out/made)"), "{ran:?}");
    assert!(ran.stdout.contains("write: out at /out"), "{ran:?}");
    assert!(!ws.path().join("out/made").exists());
    assert!(!ws.path().join(".cleanroom/runs").exists(), "a dry run records no run");
    // Network and secret grants are part of what a dry run shows.
    let agent = cleanroom(&repo(), &["run", "--dry-run", "pipelines/agent.toml"]);
    assert!(agent.stdout.contains("http: https://api.openai.com\n"), "{agent:?}");
    assert!(agent.stdout.contains("header: authorization from secret API_KEY for https://api.openai.com"), "{agent:?}");
}

#[test]
fn graph_prints_dot_and_mermaid_with_needs_and_retries() {
    let ws = mixed_workspace();
    let dot = cleanroom(ws.path(), &["graph", "pipeline.toml"]);
    assert_eq!(dot.code, 0, "{dot:?}");
    assert!(dot.stdout.starts_with("digraph \"mixed\" {"), "{dot:?}");
    assert!(dot.stdout.contains("\"no-todo\" -> \"after\";"), "{dot:?}");
    let mermaid = cleanroom(ws.path(), &["graph", "--format", "mermaid", "pipeline.toml"]);
    assert!(mermaid.stdout.starts_with("flowchart LR\n"), "{mermaid:?}");
    assert!(mermaid.stdout.contains(" --> "), "{mermaid:?}");
    let factory = cleanroom(&repo(), &["graph", "pipelines/factory.toml"]);
    assert!(factory.stdout.contains("\"holdout\" -> \"implement\" [style=dashed, label=\"retry\"];"), "{factory:?}");
    let list = cleanroom(ws.path(), &["list", "pipeline.toml"]);
    assert!(list.stdout.contains("after    check      plugin noop  needs no-todo"), "{list:?}");
}

#[test]
fn init_writes_a_starter_pipeline_that_runs_and_finds_conflict_markers() {
    let ws = Workspace::new();
    ws.file("README.md", "# project\n").file("src/lib.rs", "pub fn f() {}\n");
    let init = cleanroom(ws.path(), &["init"]);
    assert_eq!(init.code, 0, "{init:?}");
    let ran = cleanroom(ws.path(), &["run"]);
    assert_eq!(ran.code, 0, "the starter pipeline passes on a clean project: {ran:?}");
    assert!(ran.stdout.contains("project-files"), "README is required: {ran:?}");
    ws.file("src/merge.rs", "<<<<<<< HEAD\nfn a() {}\n=======\nfn b() {}\n>>>>>>> branch\n");
    let ran = cleanroom(ws.path(), &["run"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(ran.stdout.contains("src/merge.rs:1:1: conflict-marker"), "{ran:?}");
    let again = cleanroom(ws.path(), &["init"]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(again.stderr.contains("error[CR026]") && again.stderr.contains("already exists"), "{again:?}");
    // `.cleanroom/` is ignored by git, once.
    let ignore = fs_err::read_to_string(ws.path().join(".gitignore")).unwrap();
    assert_eq!(ignore.matches(".cleanroom/").count(), 1, "{ignore}");
}

#[test]
fn init_adds_the_run_directory_to_an_existing_gitignore_only_once() {
    let ws = Workspace::new();
    ws.file(
        "README.md",
        "# p
",
    )
    .file(".gitignore", "target");
    assert_eq!(cleanroom(ws.path(), &["init"]).code, 0);
    assert_eq!(
        fs_err::read_to_string(ws.path().join(".gitignore")).unwrap(),
        "target\n# Cleanroom's runs, journals and digest memo\n.cleanroom/\n"
    );
    let other = Workspace::new();
    other
        .file(
            "README.md",
            "# p
",
        )
        .file(".gitignore", "/.cleanroom\n");
    assert_eq!(cleanroom(other.path(), &["init"]).code, 0);
    assert_eq!(fs_err::read_to_string(other.path().join(".gitignore")).unwrap(), "/.cleanroom\n");
}

#[test]
fn a_command_in_a_subdirectory_finds_the_pipeline_above_it_within_the_repository() {
    let ws = Workspace::new();
    ws.file("cleanroom.toml", "[pipeline]\nname = \"up\"\n\n[check.t]\nrun = [\"true\"]\n").file("src/deep/x.txt", "x");
    let found = cleanroom(&ws.path().join("src/deep"), &["validate"]);
    assert_eq!(found.code, 0, "{found:?}");
    // A repository root stops the search: a pipeline above it is not this project's.
    fs_err::create_dir_all(ws.path().join("src/.git")).unwrap();
    let stopped = cleanroom(&ws.path().join("src/deep"), &["validate"]);
    assert_eq!(stopped.code, 2, "{stopped:?}");
    assert!(stopped.stderr.contains("cleanroom.toml"), "{stopped:?}");
}

#[test]
fn locked_with_only_checks_the_whole_pipeline_before_selecting() {
    let ws = Workspace::new();
    fs_err::copy(component("guest:noop"), ws.path().join("noop.wasm")).unwrap();
    fs_err::copy(component("required_files"), ws.path().join("other.wasm")).unwrap();
    ws.file(
        "pipeline.toml",
        "[pipeline]\nname = \"l\"\n[plugins]\nnoop = \"noop.wasm\"\nother = \"other.wasm\"\n\
         [check.a]\nplugin = \"noop\"\n[check.b]\nplugin = \"other\"\nconfig = { paths = [\"pipeline.toml\"] }\n",
    );
    assert_eq!(cleanroom(ws.path(), &["lock", "pipeline.toml"]).code, 0);
    // `--only a` drops plugin `other` from the plan: not drift.
    let only = cleanroom(ws.path(), &["run", "--locked", "--only", "a", "pipeline.toml"]);
    assert_eq!(only.code, 0, "{only:?}");
    // Drift in a plugin the selection drops is still drift.
    fs_err::copy(component("guest:noop"), ws.path().join("other.wasm")).unwrap();
    let drifted = cleanroom(ws.path(), &["run", "--locked", "--only", "a", "pipeline.toml"]);
    assert_eq!(drifted.code, 2, "{drifted:?}");
    assert!(
        drifted.stderr.contains("error[CR025]") && drifted.stderr.contains("plugin `other` changed"),
        "{drifted:?}"
    );
}

#[test]
fn locked_runs_refuse_any_drift_from_cleanroom_lock() {
    let ws = Workspace::new();
    let plugin = ws.path().join("noop.wasm");
    fs_err::copy(component("guest:noop"), &plugin).unwrap();
    // Another check plugin, to swap in under the same name.
    let other = component("required_files");
    ws.file(
        "pipeline.toml",
        "[pipeline]\nname = \"l\"\n[plugins]\nnoop = \"noop.wasm\"\n[check.c]\nplugin = \"noop\"\n",
    );
    let missing = cleanroom(ws.path(), &["run", "--locked", "pipeline.toml"]);
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(missing.stderr.contains("error[CR025]: --locked, but there is no"), "{missing:?}");
    let lock = cleanroom(ws.path(), &["lock", "pipeline.toml"]);
    assert_eq!(lock.code, 0, "{lock:?}");
    let text = fs_err::read_to_string(ws.path().join("cleanroom.lock")).unwrap();
    assert!(text.contains("path = \"noop.wasm\""), "{text}");
    assert_eq!(cleanroom(ws.path(), &["run", "--locked", "pipeline.toml"]).code, 0);

    // Another plugin under the same name.
    fs_err::copy(&other, &plugin).unwrap();
    let runs = || fs_err::read_dir(ws.path().join(".cleanroom/runs")).unwrap().count();
    let before = runs();
    let ran = cleanroom(ws.path(), &["run", "--locked", "pipeline.toml"]);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("error[CR025]: plugin `noop` changed: its sha256 is"), "{ran:?}");
    assert_eq!(runs(), before, "nothing ran");
    // A plugin added without relocking.
    fs_err::copy(component("guest:noop"), &plugin).unwrap();
    ws.file(
        "pipeline.toml",
        &format!("[pipeline]\nname = \"l\"\n[plugins]\nnoop = \"noop.wasm\"\nother = {:?}\n[check.c]\nplugin = \"noop\"\n[check.d]\nplugin = \"other\"\n", component("guest:noop")),
    );
    let ran = cleanroom(ws.path(), &["run", "--locked", "pipeline.toml"]);
    assert!(ran.stderr.contains("plugin `other` is not in the lock file"), "{ran:?}");
}

#[test]
fn plugin_inspect_shows_world_contract_imports_and_sha256() {
    let path = component("scenario_runner");
    let ran = cleanroom(&repo(), &["plugin", "inspect", &path]);
    assert_eq!(ran.code, 0, "{ran:?}");
    use sha2::Digest;
    let sha = sha2::Sha256::digest(fs_err::read(&path).unwrap());
    let hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
    assert!(ran.stdout.contains(&format!("sha256    {hex}")), "{ran:?}");
    assert!(ran.stdout.contains("world     evaluator"), "{ran:?}");
    assert!(ran.stdout.contains("contract  cleanroom:plugin@0.1.3"), "{ran:?}");
    assert!(ran.stdout.contains("exports   scenarios, evaluate"), "{ran:?}");
    assert!(ran.stdout.contains("  cleanroom:plugin/subject@0.1.3"), "{ran:?}");
    let json = cleanroom(&repo(), &["plugin", "inspect", "--format", "json", &component("guest:http_probe")]);
    let info: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(info["imports"].as_array().unwrap().iter().any(|i| i.as_str().unwrap().starts_with("wasi:http/")));
    let bad = cleanroom(&repo(), &["plugin", "inspect", "README.md"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("error[CR026]") && bad.stderr.contains("is not a WebAssembly component"), "{bad:?}");
}

#[test]
fn no_command_prints_help_and_a_bad_flag_exits_2() {
    let ws = Workspace::new();
    let bad = cleanroom_with_env(ws.path(), &["run", "--format", "xml"], &[]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("invalid value 'xml'"), "{bad:?}");
    let missing = cleanroom(ws.path(), &["run"]);
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(missing.stderr.contains("cleanroom.toml"), "the default pipeline is named: {missing:?}");
}

/// Every example pipeline points editors at the schema and matches it; a
/// misspelt key fails the schema as it fails the runner.
#[test]
fn every_example_pipeline_matches_the_pipeline_schema() {
    let schema: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(repo().join("schemas/pipeline.schema.json")).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the pipeline schema compiles");
    let as_json = |text: &str| serde_json::to_value(toml::from_str::<toml::Value>(text).unwrap()).unwrap();
    let mut checked = 0;
    for entry in fs_err::read_dir(repo().join("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = fs_err::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("#:schema ../schemas/pipeline.schema.json\n"),
            "{} does not name the schema on its first line",
            path.display()
        );
        assert_valid(&validator, &as_json(&text), &path.display().to_string());
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} example pipelines found");
    let typo = "[pipeline]\nname = \"t\"\n[check.c]\nrun = [\"true\"]\ntimout = \"5s\"\n";
    assert!(!validator.is_valid(&as_json(typo)), "the schema accepts a misspelt key");
    let ws = Workspace::new();
    assert_eq!(ws.run(typo, &["validate"]).code, 2);
}
