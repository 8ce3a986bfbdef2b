//! Plugins written in Python (componentize-py) and JavaScript (jco /
//! componentize-js), built from source by `scripts/build-plugins`, and the
//! `plugin new` scaffolds of every language and kind: each is generated,
//! built with its own build.sh, and must pass its own `plugin test`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{cleanroom, cleanroom_with_env, example_copy, repo, Ran};

/// The Python evaluator judges a program built from source in the jail:
/// every scenario passes; a changed expectation fails that scenario with a
/// one-line summary that does not quote the holdout's values.
#[test]
fn python_evaluator_example_passes_and_a_wrong_expectation_fails_without_quoting_it() {
    let ws = example_copy("python-evaluator", |toml| toml);
    let ran = cleanroom(ws.path(), &["run", "--format", "json", "pipeline.toml"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let report = ran.json();
    let holdout = &report["steps"][1];
    assert_eq!(holdout["satisfaction"], 1.0, "{ran:?}");
    assert_eq!(holdout["scenarios"].as_array().unwrap().len(), 6);

    let scenario = ws.path().join("scenarios/reads-stdin.json");
    let text = fs_err::read_to_string(&scenario).unwrap();
    fs_err::write(&scenario, text.replace("\"stdout\": \"", "\"stdout\": \"9999")).unwrap();
    let ran = cleanroom(ws.path(), &["run", "--format", "json", "pipeline.toml"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    let report = ran.json();
    let failing: Vec<&serde_json::Value> =
        report["steps"][1]["scenarios"].as_array().unwrap().iter().filter(|s| s["passed"] == false).collect();
    assert_eq!(failing.len(), 1, "{ran:?}");
    assert_eq!(failing[0]["name"], "reads-stdin");
    let summary = failing[0]["summary"].as_str().unwrap();
    assert!(summary.starts_with("stdout differs"), "{summary}");
    assert!(!summary.contains("9999"), "the summary quotes the holdout: {summary}");
    assert!(failing[0]["detail"].as_str().unwrap().contains("9999"), "the detail has the values");
}

/// The JavaScript check reports the broken JSON file with its position and
/// the repeated key as a warning, and passes once the file is fixed.
#[test]
fn js_check_example_finds_the_broken_file_and_passes_when_it_is_fixed() {
    let ws = example_copy("js-check", |toml| toml);
    let ran = cleanroom(ws.path(), &["run", "pipeline.toml"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(ran.stdout.contains("config/users.json:5:5: invalid-json"), "{ran:?}");
    assert!(ran.stdout.contains("config/limits.json:4:3: warning: duplicate-key"), "{ran:?}");
    assert!(!ran.stdout.contains("fixtures/"), "excluded files are not checked: {ran:?}");
    fs_err::write(ws.path().join("config/users.json"), "[{\"name\": \"ada\"}, {\"name\": \"bob\"}]\n").unwrap();
    let ran = cleanroom(ws.path(), &["run", "pipeline.toml"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let inspect = cleanroom(ws.path(), &["plugin", "inspect", &crate::component("json_check")]);
    assert!(!inspect.stdout.contains("wasi:http"), "no network imports: {inspect:?}");
}

/// Where the toolchains `scripts/build-plugins` installed live.
fn toolchain_path() -> String {
    let tools = repo().join(".tools");
    let mut dirs: Vec<PathBuf> = vec![tools.join("python/bin"), tools.join("node/node_modules/.bin")];
    dirs.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    std::env::join_paths(dirs).unwrap().to_string_lossy().into_owned()
}

/// `plugin new NAME --kind KIND --lang LANG`, `./build.sh`, then
/// `plugin test NAME.wasm tests` in the scaffold.
fn scaffold_and_test(lang: &str, kind: &str) -> (PathBuf, Ran, tempfile::TempDir) {
    let parent = tempfile::tempdir().unwrap();
    let name = format!("my-{lang}-{kind}");
    let new = cleanroom(parent.path(), &["plugin", "new", &name, "--kind", kind, "--lang", lang]);
    assert_eq!(new.code, 0, "{new:?}");
    let dir = parent.path().join(&name);
    for file in ["build.sh", "README.md", "wit/plugin.wit"] {
        assert!(dir.join(file).is_file(), "{lang}/{kind}: no {file}");
    }
    let build = Command::new("./build.sh")
        .current_dir(&dir)
        .env("PATH", toolchain_path())
        // Rust scaffolds share one target directory, so the SDK and its
        // dependencies compile once for the three of them.
        .env("CARGO_TARGET_DIR", repo().join("target/scaffolds"))
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "{lang}/{kind}: build.sh failed\n{}\n{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    let wasm = format!("{name}.wasm");
    let ran = cleanroom(&dir, &["plugin", "test", &wasm, "tests"]);
    (dir, ran, parent)
}

fn assert_scaffold_passes(lang: &str, kind: &str) {
    let (dir, ran, _keep) = scaffold_and_test(lang, kind);
    assert_eq!(ran.code, 0, "{lang}/{kind}: {ran:?}");
    assert!(ran.stdout.contains(" failed\n") && ran.stdout.contains(", 0 failed"), "{ran:?}");
    let cases = fs_err::read_dir(dir.join("tests"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("case.toml").is_file())
        .count();
    assert!(cases >= 2, "{lang}/{kind}: only {cases} cases");
    let inspect = cleanroom(&dir, &["plugin", "inspect", &format!("my-{lang}-{kind}.wasm")]);
    assert!(inspect.stdout.contains(&format!("world     {kind}")), "{inspect:?}");
    assert!(inspect.stdout.contains("contract  cleanroom:plugin@0.1.3"), "{inspect:?}");
}

#[test]
fn rust_scaffolds_build_and_pass_their_own_tests() {
    for kind in ["check", "stage", "evaluator"] {
        assert_scaffold_passes("rust", kind);
    }
}

#[test]
fn python_scaffolds_build_and_pass_their_own_tests() {
    for kind in ["check", "stage", "evaluator"] {
        assert_scaffold_passes("python", kind);
    }
}

#[test]
fn js_scaffolds_build_and_pass_their_own_tests() {
    for kind in ["check", "stage", "evaluator"] {
        assert_scaffold_passes("js", kind);
    }
}

/// `plugin test` says which expectation a plugin missed, exits 1, and
/// reports a malformed case.toml with its position, exit 2.
#[test]
fn plugin_test_reports_missed_expectations_and_bad_cases() {
    let (dir, ran, _keep) = scaffold_and_test("rust", "check");
    assert_eq!(ran.code, 0, "{ran:?}");
    let case = first_failing_case(&dir.join("tests"));
    let text = fs_err::read_to_string(&case).unwrap();
    fs_err::write(&case, text.replace("status = \"failed\"", "status = \"passed\"")).unwrap();
    let ran = cleanroom(&dir, &["plugin", "test", "my-rust-check.wasm"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(ran.stdout.contains("FAILED\n  status: expected passed, got failed"), "{ran:?}");
    assert!(ran.stdout.contains(", 1 failed"), "{ran:?}");

    fs_err::write(&case, "status = \"passed\"\nbogus = 1\n").unwrap();
    let ran = cleanroom(&dir, &["plugin", "test", "my-rust-check.wasm"]);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("error[CR026]: invalid test case: unknown field `bogus`"), "{ran:?}");
    assert!(ran.stderr.contains("case.toml:2:1"), "{ran:?}");
    let ran = cleanroom_with_env(&dir, &["plugin", "test", "missing.wasm"], &[]);
    assert_eq!(ran.code, 2, "{ran:?}");
}

/// A case of `tests/` whose case.toml expects `failed`.
fn first_failing_case(tests: &Path) -> PathBuf {
    let mut cases: Vec<PathBuf> =
        fs_err::read_dir(tests).unwrap().map(|e| e.unwrap().path().join("case.toml")).collect();
    cases.sort();
    cases
        .into_iter()
        .find(|c| fs_err::read_to_string(c).is_ok_and(|t| t.contains("status = \"failed\"")))
        .expect("a scaffold has a failing case")
}
