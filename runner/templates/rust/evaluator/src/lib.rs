//! {{name}}: a Cleanroom evaluator plugin.
//!
//! An evaluator judges a program built by earlier steps (the *subject*)
//! against scenarios the stages that wrote it never see. This one has two
//! scenarios, written in the code:
//!
//! - `echo-hello`: runs the subject with the argument `hello` and expects it
//!   to print `hello` and a newline (or the step's `config.expect_stdout`);
//! - `exit-zero`: runs the subject with no arguments and expects exit code 0.
//!
//! Config (the step's `config` table):
//!
//! ```toml
//! config = { expect_stdout = "hello\n" }   # optional; default "hello\n"
//! ```
//!
//! The host calls `scenarios` once per attempt, then `evaluate` for each
//! scenario, possibly several times (`repeat`), each call in a fresh
//! instance. `subject::run` starts the subject in a sandbox of its own.
//! A verdict's `summary` may be sent back to a retried stage, so it says
//! what failed without quoting the scenario; `detail` is for humans only.

use cleanroom_plugin_sdk::evaluator::{subject, Guest, Invocation, Verdict};
use cleanroom_plugin_sdk::one_line;
use serde::Deserialize;

/// The step's `config` table. `deny_unknown_fields` turns a misspelt key
/// into an error the user sees instead of a setting silently ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// What `echo-hello` expects on stdout.
    #[serde(default = "default_expect_stdout")]
    expect_stdout: String,
}

fn default_expect_stdout() -> String {
    "hello\n".to_string()
}

/// The scenarios, by name: unique, one line each.
const SCENARIOS: [&str; 2] = ["echo-hello", "exit-zero"];

/// The plugin: a type implementing the `evaluator` world's `Guest` trait,
/// exported with `export_evaluator!` at the bottom of this file.
struct Evaluator;

impl Guest for Evaluator {
    /// Lists the scenarios; `Err` (e.g. bad config) makes the step an `error`.
    fn scenarios(invocation: Invocation) -> Result<Vec<String>, String> {
        let _: Config = invocation.parse_config()?; // refuse bad config before anything runs
        Ok(SCENARIOS.iter().map(|s| s.to_string()).collect())
    }

    /// Runs one scenario against the subject and judges it.
    fn evaluate(scenario: String, invocation: Invocation) -> Verdict {
        let config: Config = match invocation.parse_config() {
            Ok(config) => config,
            Err(e) => return Verdict::fail(e),
        };
        match scenario.as_str() {
            "echo-hello" => expect_stdout(&["hello"], &config.expect_stdout),
            "exit-zero" => expect_exit_zero(),
            other => Verdict::fail(format!("unknown scenario `{}`", one_line(other, 60))),
        }
    }
}

/// Runs the subject with `args` and no stdin.
fn run(args: &[&str]) -> Result<subject::Output, Verdict> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    // `Err` means the subject could not run at all (it trapped, ran out of
    // time or memory); a non-zero exit is an `Ok` output.
    subject::run(&args, &[]).map_err(|e| Verdict::fail(format!("the subject could not run: {}", one_line(&e, 120))))
}

/// Passes when the subject prints exactly `expected` on stdout.
fn expect_stdout(args: &[&str], expected: &str) -> Verdict {
    let output = match run(args) {
        Ok(output) => output,
        Err(verdict) => return verdict,
    };
    let stdout = output.stdout_text();
    if stdout == expected {
        Verdict::pass("stdout as expected")
    } else {
        Verdict::fail("stdout differs from what the scenario expects").with_detail(format!(
            "expected stdout {expected:?}\nactual stdout   {stdout:?}\nstderr: {:?}",
            output.stderr_text()
        ))
    }
}

/// Passes when the subject exits with code 0.
fn expect_exit_zero() -> Verdict {
    match run(&[]) {
        Ok(output) if output.exit_code == 0 => Verdict::pass("exit code 0"),
        // Never what the subject chose (its exit code, its output) in a
        // summary: the summary reaches the stage. The detail is for humans.
        Ok(output) => Verdict::fail("expected exit code 0, got another")
            .with_detail(format!("exit code: {}\nstderr: {:?}", output.exit_code, output.stderr_text())),
        Err(verdict) => verdict,
    }
}

cleanroom_plugin_sdk::export_evaluator!(Evaluator);
