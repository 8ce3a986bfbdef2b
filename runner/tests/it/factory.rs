//! The factory loop: stages, holdout evaluators, k-of-n gates, retries with
//! one-line feedback, the barrier, and resume from the journal.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{cleanroom, component, Ran, Workspace};

/// A copy of `pipelines/factory/` with `pipelines/factory.toml` adapted to
/// it (plugin paths made absolute, `edit` applied to the TOML).
pub fn factory_copy(edit: impl Fn(String) -> String) -> Workspace {
    crate::example_copy("factory", edit)
}

pub fn run_pipeline(ws: &Workspace, extra: &[&str]) -> Ran {
    let mut args = vec!["run", "--format", "json"];
    args.extend_from_slice(extra);
    args.push("pipeline.toml");
    cleanroom(ws.path(), &args)
}

/// Attempt 1 fails two holdout scenarios; `implement` is sent back with one
/// line per failing scenario; attempt 2 passes every scenario.
#[test]
fn factory_demo_fails_attempt_1_then_passes_attempt_2() {
    let ws = factory_copy(|toml| toml);
    let ran = run_pipeline(&ws, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let json = ran.json();
    let holdout = json["steps"].as_array().unwrap().iter().find(|s| s["id"] == "holdout").unwrap();
    assert_eq!(holdout["satisfaction"], 1.0);
    assert_eq!(holdout["threshold"], 0.9);
    let scenarios = holdout["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 6);
    assert!(scenarios.iter().all(|s| s["runs"] == 3 && s["passes"] == 3 && s["passed"] == true));
    let attempts = json["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    let failing: Vec<&str> = attempts[0]["failing"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert_eq!(failing.len(), 2, "{failing:?}");
    assert!(failing[0].starts_with("holdout: rejects-word  0/3 passed  "), "{failing:?}");
    assert!(failing[1].starts_with("holdout: rejects-zero  0/3 passed  "), "{failing:?}");
    let feedback: Vec<&str> = attempts[0]["feedback"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert_eq!(feedback.len(), 2);
    assert!(feedback.iter().all(|f| f.starts_with("implement: scenario rejects-") && f.contains(": failed 3/3: ")));
    let code = fs_err::read_to_string(ws.path().join("work/main.rs")).unwrap();
    assert!(code.contains("eprintln!"), "attempt 2 writes the error to stderr");
    assert!(!feedback.iter().any(|f| f.contains("positive integer")), "feedback quoted a scenario: {feedback:?}");
}

/// When the stage's attempts run out, the run fails with an escalation that
/// says what still fails and how each round scored.
#[test]
fn used_up_retries_escalate_to_a_human() {
    let ws = factory_copy(|toml| {
        toml.replace("\"/attempts/attempt-2.diff\"", "\"/attempts/attempt-1.diff\"")
            .replace("max_iterations = 5", "max_iterations = 2")
    });
    let ran = run_pipeline(&ws, &[]);
    assert_eq!(ran.code, 1, "{ran:?}");
    let escalation = ran.json()["escalation"].as_str().unwrap().to_string();
    assert!(escalation.starts_with("escalate to a human: retries are used up."), "{escalation}");
    assert!(
        escalation
            .contains("after 2 attempts of `implement`, still failing: `holdout` (satisfaction 0.67 (4/6) < 0.90)"),
        "{escalation}"
    );
    assert!(escalation.contains("round 1: ") && escalation.contains("round 2: "), "{escalation}");
    let human = cleanroom(ws.path(), &["run", "pipeline.toml"]);
    assert!(human.stdout.contains("escalate to a human"), "{human:?}");
}

fn refused(ws: &Workspace, toml: &str) -> Ran {
    let ran = ws.run(toml, &["validate"]);
    assert_eq!(ran.code, 2, "{ran:?}");
    ran
}

fn barrier_workspace() -> Workspace {
    let ws = Workspace::new();
    ws.file("scenarios/s.toml", "x = 1").file("src/main.rs", "fn main() {}").file("build/app.wasm", "");
    ws
}

fn pipeline(steps: &str) -> String {
    format!(
        "[pipeline]\nname = \"b\"\n[plugins]\nstage = {:?}\neval = {:?}\ncheck = {:?}\n\
         [barrier]\nholdout = [\"scenarios\"]\nprivate = [\"src\"]\n{steps}",
        component("guest:feedback_recorder"),
        component("guest:fixed_verdicts"),
        component("guest:noop"),
    )
}

/// No stage may see holdout paths, however it names them: `.`, a path
/// inside, or a symlink to them.
#[test]
fn stage_grants_that_reach_the_holdout_are_refused() {
    let ws = barrier_workspace();
    std::os::unix::fs::symlink("scenarios", ws.path().join("docs")).unwrap();
    for read in ["\".\"", "\"scenarios/s.toml\"", "\"docs\""] {
        let ran = refused(&ws, &pipeline(&format!("[stage.s]\nplugin = \"stage\"\nread = [{read}]\n")));
        assert!(ran.stderr.contains("error[CR019]: step `s`: mount"), "{read}: {ran:?}");
        assert!(ran.stderr.contains("crosses the barrier: `scenarios` is holdout"), "{read}: {ran:?}");
    }
    let ran = refused(&ws, &pipeline("[stage.s]\nrun = [\"true\"]\nwrite = [\"scenarios\"]\n"));
    assert!(ran.stderr.contains("error[CR019]: step `s`: mount `scenarios` crosses the barrier"), "{ran:?}");
}

/// The subject may not be or read holdout paths; evaluators may not read
/// private ones; a check whose findings become feedback may not read holdout.
#[test]
fn subject_evaluator_and_feedback_check_grants_are_fenced() {
    let ws = barrier_workspace();
    let ran = refused(
        &ws,
        &pipeline("[evaluator.e]\nplugin = \"eval\"\nsubject = \"build/app.wasm\"\nsubject_read = [\"scenarios\"]\n"),
    );
    assert!(
        ran.stderr.contains("step `e`: subject_read `scenarios` crosses the barrier: `scenarios` is holdout"),
        "{ran:?}"
    );
    let ran = refused(&ws, &pipeline("[evaluator.e]\nplugin = \"eval\"\nread = [\"src\"]\n"));
    assert!(ran.stderr.contains("step `e`: mount `src` crosses the barrier: `src` is private"), "{ran:?}");
    let ran = refused(
        &ws,
        &pipeline("[stage.s]\nplugin = \"stage\"\nwrite = [\"build\"]\n[check.c]\nplugin = \"check\"\nneeds = [\"s\"]\nread = [\".\"]\nretry = \"s\"\n"),
    );
    assert!(ran.stderr.contains("step `c`: mount `.` crosses the barrier: `scenarios` is holdout"), "{ran:?}");
    let ok = ws.run(
        &pipeline("[evaluator.e]\nplugin = \"eval\"\nread = [\"scenarios\"]\nconfig = { quote = \"x\" }\n"),
        &["validate"],
    );
    assert_eq!(ok.code, 0, "an evaluator may read the holdout: {ok:?}");
}

/// `retry` must name a stage the gate needs; k-of-n settings must make sense.
#[test]
fn bad_retry_and_evaluation_settings_are_refused() {
    let ws = barrier_workspace();
    let cases = [
        (
            "[stage.s]\nplugin = \"stage\"\n[check.c]\nplugin = \"check\"\nretry = \"s\"\n",
            "CR020",
            "retries `s`, but does not need it",
        ),
        ("[check.c]\nplugin = \"check\"\nretry = \"nope\"\n", "CR020", "retries `nope`, which is not a step"),
        (
            "[check.a]\nplugin = \"check\"\n[check.c]\nplugin = \"check\"\nneeds = [\"a\"]\nretry = \"a\"\n",
            "CR020",
            "which is a check, not a stage",
        ),
        (
            "[evaluator.e]\nplugin = \"eval\"\nrepeat = 3\nrequire = 4\n",
            "CR021",
            "`require = 4` must be between 1 and `repeat` (3)",
        ),
        ("[evaluator.e]\nplugin = \"eval\"\nthreshold = 1.5\n", "CR021", "`threshold = 1.5` is outside 0.0 to 1.0"),
        ("[check.c]\nplugin = \"check\"\nrepeat = 2\n", "CR009", "check `c` sets `repeat`, which only evaluators have"),
    ];
    for (steps, code, message) in cases {
        let ran = refused(&ws, &pipeline(steps));
        assert!(ran.stderr.contains(&format!("error[{code}]")) && ran.stderr.contains(message), "{steps}\n{ran:?}");
    }
}

/// A runner killed with SIGKILL mid-run and then resumed ends with the same
/// result as an uninterrupted run, without re-running steps that passed.
#[test]
fn resume_after_sigkill_ends_like_an_uninterrupted_run() {
    let toml = "[pipeline]\nname = \"r\"\n\
        [check.first]\nrun = [\"true\"]\n\
        [check.slow]\nrun = [\"sleep\", \"2\"]\nneeds = [\"first\"]\n\
        [check.last]\nrun = [\"sh\", \"-c\", \"exit 3\"]\nneeds = [\"slow\"]\n";
    let uninterrupted = Workspace::new();
    uninterrupted.file("pipeline.toml", toml);
    let expected = run_pipeline(&uninterrupted, &[]);

    let ws = Workspace::new();
    ws.file("pipeline.toml", toml);
    let mut child = Command::new(env!("CARGO_BIN_EXE_cleanroom"))
        .args(["run", "pipeline.toml"])
        .current_dir(ws.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let events = wait_for_event(ws.path(), "\"step\":\"slow\"");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!fs_err::read_to_string(&events).unwrap().contains("run_finished"));

    let resumed = run_pipeline(&ws, &["--resume"]);
    assert_eq!(resumed.code, expected.code, "{resumed:?}");
    let statuses = |ran: &Ran| -> Vec<(String, String)> {
        ran.json()["steps"].as_array().unwrap().iter().map(|s| (s["id"].to_string(), s["status"].to_string())).collect()
    };
    assert_eq!(statuses(&resumed), statuses(&expected));
    let journal = fs_err::read_to_string(&events).unwrap();
    assert_eq!(
        journal.matches("\"type\":\"step_started\",\"data\":{\"step\":\"first\"").count(),
        1,
        "`first` ran again:\n{journal}"
    );
    assert_eq!(journal.matches("run_finished").count(), 1);

    let again = run_pipeline(&ws, &["--resume"]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(again.stderr.contains("error[CR022]: no unfinished run of `r` to resume"), "{again:?}");
}

/// Polls the newest journal in `workspace` until it contains `needle`.
fn wait_for_event(workspace: &Path, needle: &str) -> std::path::PathBuf {
    let started = Instant::now();
    loop {
        let runs = workspace.join(".cleanroom/runs");
        if let Some(run) = fs_err::read_dir(&runs).ok().and_then(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).max()) {
            let events = run.join("events.jsonl");
            if fs_err::read_to_string(&events).is_ok_and(|text| text.contains(needle)) {
                return events;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(60), "`{needle}` never appeared in the journal");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Resuming in a later round restores steps skipped in an earlier one (they
/// are journaled too), so the resumed run ends as the uninterrupted one.
#[test]
fn resume_in_a_later_round_restores_skipped_steps() {
    let toml = "[pipeline]\nname = \"r2\"\n\
        [check.broken]\nrun = [\"false\"]\n\
        [check.after-broken]\nrun = [\"true\"]\nneeds = [\"broken\"]\n\
        [stage.impl]\nrun = [\"sh\", \"-c\", \"echo $CLEANROOM_ATTEMPT > out/a; if [ $CLEANROOM_ATTEMPT = 2 ]; then sleep 3; fi\"]\nwrite = [\"out\"]\n\
        [check.gate]\nrun = [\"true\"]\nneeds = [\"impl\", \"after-broken\"]\nretry = \"impl\"\nmax_iterations = 2\n";
    let uninterrupted = Workspace::new();
    uninterrupted.file("pipeline.toml", toml);
    let expected = run_pipeline(&uninterrupted, &[]);
    assert_eq!(expected.code, 1, "{expected:?}");
    assert!(expected.json()["escalation"].is_string());

    let ws = Workspace::new();
    ws.file("pipeline.toml", toml);
    let mut child = Command::new(env!("CARGO_BIN_EXE_cleanroom"))
        .args(["run", "pipeline.toml"])
        .current_dir(ws.path())
        .spawn()
        .unwrap();
    wait_for_event(ws.path(), "\"round\":2,\"attempt\":2");
    child.kill().unwrap();
    child.wait().unwrap();
    let resumed = run_pipeline(&ws, &["--resume"]);
    assert_eq!(resumed.code, expected.code, "{resumed:?}");
    let statuses = |ran: &Ran| -> Vec<(String, String)> {
        ran.json()["steps"].as_array().unwrap().iter().map(|s| (s["id"].to_string(), s["status"].to_string())).collect()
    };
    assert_eq!(statuses(&resumed), statuses(&expected));
    assert_eq!(resumed.json()["escalation"], expected.json()["escalation"]);
}

/// An evaluator whose own configuration is wrong cannot be fixed by another
/// attempt of the stage: the loop stops after the first round, says why,
/// and the stage keeps its budget (it had 5 attempts).
#[test]
fn a_misconfigured_evaluator_stops_the_loop_at_once() {
    let ws = factory_copy(|toml| {
        toml.replace("config = { scenarios = \"/scenarios\" }", "config = { scenarios = \"/no-such-dir\" }")
    });
    let ran = run_pipeline(&ws, &[]);
    assert_eq!(ran.code, 1, "{ran:?}");
    let json = ran.json();
    let holdout = json["steps"].as_array().unwrap().iter().find(|s| s["id"] == "holdout").unwrap();
    assert_eq!(holdout["status"], "error", "{holdout}");
    assert_eq!(holdout["infrastructure"], true, "{holdout}");
    let implement = json["steps"].as_array().unwrap().iter().find(|s| s["id"] == "implement").unwrap();
    assert_eq!(implement["attempt"], 1, "the stage was retried for the evaluator's mistake");
    let escalation = json["escalation"].as_str().unwrap();
    assert!(
        escalation.contains("not the stage's work") && escalation.contains("`holdout`: could not list its scenarios"),
        "{escalation}"
    );
    // `--max-iterations 1` gives every stage one attempt, whatever the gates say.
    let ws = factory_copy(|toml| toml);
    let capped = run_pipeline(&ws, &["--max-iterations", "1"]);
    assert_eq!(capped.code, 1, "{capped:?}");
    assert!(capped.json()["escalation"].as_str().unwrap().contains("after 1 attempts of `implement`"), "{capped:?}");
}
