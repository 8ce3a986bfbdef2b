//! Subjects: `[subject.ID]` tables, native programs judged once per
//! scenario run in a fresh jail, and the errors a user can make declaring
//! them.

use crate::{cleanroom, example_copy, Workspace};

fn scenario_runner() -> String {
    crate::repo().join("plugins/dist/scenario_runner.wasm").display().to_string()
}

/// Attempt 1 of the Python `wc` fails two holdout scenarios; attempt 2,
/// written after one line of feedback per failing scenario, passes.
#[test]
fn native_cli_demo_fails_attempt_1_then_passes_attempt_2() {
    let ws = example_copy("native-cli", |toml| toml);
    let ran = cleanroom(ws.path(), &["run", "--format", "json", "pipeline.toml"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let json = ran.json();
    let holdout = json["steps"].as_array().unwrap().iter().find(|s| s["id"] == "holdout").unwrap();
    assert_eq!(holdout["satisfaction"], 1.0);
    let scenarios = holdout["scenarios"].as_array().unwrap();
    assert!(scenarios.len() >= 6 && scenarios.iter().all(|s| s["runs"] == 3 && s["passes"] == 3));
    let attempts = json["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    let feedback: Vec<&str> = attempts[0]["feedback"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert_eq!(feedback.len(), 2, "{feedback:?}");
    assert!(feedback.iter().any(|f| f.starts_with("implement: scenario unknown-option: failed 3/3: expected exit 2")));
    assert!(feedback.iter().any(|f| f.starts_with("implement: scenario multibyte-bytes: failed 3/3: ")));
}

/// What a native subject gets per call: its stdin, its arguments after
/// those in `run`, its environment, and its exit code whole (not 0/1).
#[test]
fn a_native_subject_gets_its_stdin_args_env_and_exit_code() {
    let ws = Workspace::new();
    ws.file(
        "app/echo.sh",
        "read line\necho \"$line|$1|$2|$GREETING|$(pwd)\"\nexit 42\n",
    )
    .file(
        "scenarios/echo.toml",
        "args = [\"second\"]\nstdin = \"from stdin\\n\"\nexit_code = 42\nstdout_regex = '^from stdin\\|first\\|second\\|hi\\|/'\n",
    );
    let toml = format!(
        "[pipeline]\nname = \"s\"\n[plugins]\nrunner = {:?}\n[barrier]\nholdout = [\"scenarios\"]\n\
         [subject.echo]\nrun = [\"sh\", \"app/echo.sh\", \"first\"]\nread = [\"app\"]\nenv = {{ GREETING = \"hi\" }}\n\
         [evaluator.judge]\nplugin = \"runner\"\nread = [\"scenarios\"]\nsubject = \"echo\"\nconfig = {{ scenarios = \"/scenarios\" }}\n",
        scenario_runner()
    );
    let ran = ws.run(&toml, &["run", "--format", "json"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let dry = ws.run(&toml, &["run", "--dry-run"]);
    assert!(dry.stdout.contains("evaluates on echo (sh app/echo.sh first, jailed)"), "{dry:?}");
}

/// A program the plan cannot find, a subject both native and component, a
/// misspelt subject name, and keys that belong in the subject's table:
/// each is refused with where and what to do.
#[test]
fn subject_mistakes_are_refused_with_where_and_what_to_do() {
    let ws = Workspace::new();
    ws.file("scenarios/s.toml", "").file("app/main.py", "print(1)");
    let head = format!("[pipeline]\nname = \"s\"\n[plugins]\nrunner = {:?}\n", scenario_runner());
    let judge =
        "[evaluator.judge]\nplugin = \"runner\"\nread = [\"scenarios\"]\nconfig = { scenarios = \"/scenarios\" }\n";
    let cases = [
        (
            "[subject.app]\nrun = [\"no-such-python\", \"app/main.py\"]\n",
            "subject = \"app\"\n",
            "error[CR018]: subject `app`: program `no-such-python`",
        ),
        (
            "[subject.app]\nrun = [\"python3\"]\ncomponent = \"build/a.wasm\"\n",
            "subject = \"app\"\n",
            "subject `app`: has both `run` and `component`",
        ),
        (
            "[subject.app]\nread = [\"app\"]\n",
            "subject = \"app\"\n",
            "subject `app`: has neither `run` nor `component`",
        ),
        (
            "[subject.application]\nrun = [\"python3\", \"app/main.py\"]\n",
            "subject = \"aplication\"\n",
            "did you mean `application`?",
        ),
        (
            "[subject.app]\nrun = [\"python3\", \"app/main.py\"]\nread = [\"app\"]\n",
            "subject = \"app\"\nsubject_read = [\"app\"]\n",
            "set `read` and `timeout` in [subject.app] instead",
        ),
        (
            "[subject.app]\ncomponent = \"build/a.wasm\"\nenv = { A = \"b\" }\n",
            "subject = \"app\"\n",
            "`env` applies only to `run` subjects",
        ),
        (
            "[subject.app]\nrun = [\"python3\", \"app/main.py\"]\ntimout = \"1s\"\n",
            "subject = \"app\"\n",
            "did you mean `timeout`?",
        ),
        ("", "subject = \"app/main.py\"\n", "`app/main.py` is not a WebAssembly component"),
    ];
    for (subject, evaluator_keys, expected) in cases {
        let ran = ws.run(&format!("{head}{subject}{judge}{evaluator_keys}"), &["validate"]);
        assert_eq!(ran.code, 2, "{subject}: {ran:?}");
        assert!(ran.stderr.contains(expected), "{subject}: expected `{expected}` in:\n{}", ran.stderr);
        assert!(ran.stderr.contains("pipeline.toml:"), "no file:line:col: {}", ran.stderr);
        assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
    }
}
