//! `scenario-runner`: an evaluator whose scenarios are TOML files. For each
//! scenario it runs the subject once (through the host's `subject` import,
//! in the subject's own sandbox) and judges its exit code, stdout and stderr.
//!
//! Config (the step's `config` table):
//! - `scenarios` (required): the guest path of a directory in one of the
//!   step's read mounts, e.g. `/scenarios`. Every `*.toml` file directly in
//!   it is a scenario named by its file stem. Scenario keys (see
//!   `scenario.rs`): `description`, `args`, `stdin`, `exit_code`, `stdout`,
//!   `stdout_contains`, `stdout_regex`, `stderr_contains`; each expectation
//!   given must hold.
//!
//! A verdict's summary is fed back to the stage being retried, which must not
//! learn the hidden scenarios: it never quotes scenario content (only exit
//! codes, line numbers and counts). Expected and actual values go in the
//! detail, which only humans see. An invalid scenario file fails its scenario
//! without being quoted in the summary.

pub mod http;
pub mod judge;
pub mod scenario;

use cleanroom_plugin_sdk::evaluator::{subject, Guest, Invocation, Verdict};
use cleanroom_plugin_sdk::one_line;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    scenarios: String,
}

struct ScenarioRunner;

impl Guest for ScenarioRunner {
    fn scenarios(invocation: Invocation) -> Result<Vec<String>, String> {
        let config: Config = invocation.parse_config()?;
        scenario::list(&config.scenarios)
    }

    fn evaluate(name: String, invocation: Invocation) -> Verdict {
        evaluate(&name, &invocation).unwrap_or_else(|failed| failed)
    }
}

/// Runs scenario `name`; `Err` carries a failing verdict for problems that
/// stop the scenario before it is judged.
fn evaluate(name: &str, invocation: &Invocation) -> Result<Verdict, Verdict> {
    let config: Config = invocation.parse_config().map_err(|e| fail(one_line(&e, 150), String::new()))?;
    let path = scenario::path(&config.scenarios, name).map_err(|e| fail(e, String::new()))?;
    let text = std::fs::read_to_string(&path).map_err(|e| {
        fail("the scenario file could not be read: check the scenario directory".into(), format!("`{path}`: {e}"))
    })?;
    // A file with `[[requests]]` judges the step's service over HTTP.
    if text.parse::<toml::Table>().is_ok_and(|table| table.contains_key("requests")) {
        let scenario = http::parse(&text).map_err(|e| {
            fail("the scenario file is invalid: fix it (details in the report)".into(), format!("`{path}`: {e}"))
        })?;
        let ran = http::run(&scenario);
        return Ok(Verdict {
            passed: ran.passed,
            summary: one_line(&ran.summary, judge::SUMMARY_CHARS),
            detail: ran.detail,
        });
    }
    let scenario = scenario::parse(&text).map_err(|e| {
        fail("the scenario file is invalid: fix it (details in the report)".into(), format!("`{path}`: {e}"))
    })?;
    let output = subject::run(&scenario.args, scenario.stdin.as_bytes())
        .map_err(|e| fail(subject_failure(&e), format!("{}\n\n{e}", describe(&scenario))))?;
    let outcome = judge::Outcome { exit_code: output.exit_code, stdout: &output.stdout, stderr: &output.stderr };
    let failures = judge::judge(&scenario.expect, outcome);
    Ok(Verdict {
        passed: failures.is_empty(),
        summary: judge::summary(&failures),
        detail: detail(&scenario, &failures, outcome),
    })
}

/// The summary of a subject run that produced nothing to judge: one of the
/// host's fixed words, and never anything else, even from a host that sent
/// other text (the summary reaches the stage).
fn subject_failure(error: &str) -> String {
    let said = match error {
        "could not start" => "could not start",
        "trapped" => "trapped",
        "timed out" => "timed out",
        "out of memory" => "ran out of memory",
        "output cut" => "printed more than the output cap",
        _ => "could not run",
    };
    format!("the subject {said}")
}

fn fail(summary: String, detail: String) -> Verdict {
    Verdict::fail(summary).with_detail(detail)
}

/// The human-only report of a run: the scenario, each failure, and what the
/// subject printed.
fn detail(scenario: &scenario::Scenario, failures: &[judge::Failure], out: judge::Outcome<'_>) -> String {
    let mut text = describe(scenario);
    for failure in failures {
        text.push_str(&format!("\n\nFAILED: {}", failure.summary));
        if !failure.detail.is_empty() {
            text.push('\n');
            text.push_str(&failure.detail);
        }
    }
    text.push_str(&format!("\n\nexit code: {}", out.exit_code));
    text.push_str(&format!("\nstdout:\n{}", judge::clip(&String::from_utf8_lossy(out.stdout))));
    text.push_str(&format!("\nstderr:\n{}", judge::clip(&String::from_utf8_lossy(out.stderr))));
    text
}

/// The scenario's description and inputs, for the detail.
fn describe(scenario: &scenario::Scenario) -> String {
    let mut text = String::new();
    if let Some(description) = &scenario.description {
        text.push_str(&format!("scenario: {}\n", judge::clip(description)));
    }
    text.push_str(&format!("args: {}", judge::clip(&format!("{:?}", scenario.args))));
    if !scenario.stdin.is_empty() {
        text.push_str(&format!("\nstdin:\n{}", judge::clip(&scenario.stdin)));
    }
    text
}

cleanroom_plugin_sdk::export_evaluator!(ScenarioRunner);
