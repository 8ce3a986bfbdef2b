//! Scenario files (the `scenario-runner` plugin): parsing and judging must
//! never panic, and a summary must never quote an expected string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scenario_runner::judge::{judge, summary, Outcome};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(scenario) = scenario_runner::scenario::parse(text) else { return };
    let out = Outcome { exit_code: 1, stdout: b"1\n2\nFizz\n", stderr: b"error: N must be a positive integer\n" };
    let failures = judge(&scenario.expect, out);
    let line = summary(&failures);
    for wanted in scenario.expect.stdout_contains.iter().chain(&scenario.expect.stderr_contains) {
        if wanted.len() >= 8 && !"expected exit stdout stderr lacks an string strings missing differs from the output at line pattern does not match".contains(wanted.as_str()) {
            assert!(!line.contains(wanted.as_str()), "summary quotes the scenario: {line}");
        }
    }
});
