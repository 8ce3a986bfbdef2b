//! Judges one run of the subject against a scenario's expectations.
//!
//! Every failure has two texts: a `summary` that may be fed back to a
//! code-writing stage and therefore NEVER quotes scenario content (expected
//! strings, patterns, arguments, stdin, description; only counts, line
//! numbers and the expected exit code) nor anything the subject chose (its
//! exit code, its output), and a `detail` for humans that may quote both.

use regex::Regex;

/// The longest excerpt of one value (expected or actual) put in a detail.
pub const DETAIL_CHARS: usize = 2000;

/// The longest summary, in characters.
pub const SUMMARY_CHARS: usize = 150;

/// What a scenario requires of a run. Absent or empty fields require nothing.
#[derive(Debug, Default)]
pub struct Expectations {
    /// The exit code.
    pub exit_code: u32,
    /// The exact stdout.
    pub stdout: Option<String>,
    /// Strings stdout must contain.
    pub stdout_contains: Vec<String>,
    /// A pattern stdout must match somewhere (unanchored).
    pub stdout_regex: Option<Regex>,
    /// Strings stderr must contain.
    pub stderr_contains: Vec<String>,
}

/// What the subject did.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    /// Its exit code.
    pub exit_code: u32,
    /// Its stdout.
    pub stdout: &'a [u8],
    /// Its stderr.
    pub stderr: &'a [u8],
}

/// One expectation that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// One line, without scenario content.
    pub summary: String,
    /// For humans: may quote expected and actual values.
    pub detail: String,
}

/// Every expectation that does not hold, in a fixed order: exit code, exact
/// stdout, stdout strings, stdout pattern, stderr strings.
pub fn judge(expect: &Expectations, out: Outcome<'_>) -> Vec<Failure> {
    let stdout = String::from_utf8_lossy(out.stdout);
    let stderr = String::from_utf8_lossy(out.stderr);
    let mut failures = Vec::new();
    if out.exit_code != expect.exit_code {
        failures.push(Failure {
            // Never the code the subject chose: that would be a channel
            // from the program under test to the stage.
            summary: format!("expected exit {}, got another", expect.exit_code),
            detail: format!("exit code: {}", out.exit_code),
        });
    }
    if let Some(expected) = &expect.stdout {
        failures.extend(check_exact(expected, &stdout));
    }
    failures.extend(check_contains("stdout", &expect.stdout_contains, &stdout));
    if let Some(pattern) = &expect.stdout_regex {
        if !pattern.is_match(&stdout) {
            failures.push(Failure {
                summary: "stdout does not match the expected pattern".into(),
                detail: format!("pattern: {}", clip(pattern.as_str())),
            });
        }
    }
    failures.extend(check_contains("stderr", &expect.stderr_contains, &stderr));
    failures
}

/// The summary of a judged run: `passed`, or the first failure, with a count
/// of the others.
pub fn summary(failures: &[Failure]) -> String {
    let Some(first) = failures.first() else { return "passed".into() };
    let text = match failures.len() - 1 {
        0 => first.summary.clone(),
        1 => format!("{} (and 1 more failure)", first.summary),
        more => format!("{} (and {more} more failures)", first.summary),
    };
    cleanroom_plugin_sdk::one_line(&text, SUMMARY_CHARS)
}

fn check_exact(expected: &str, actual: &str) -> Option<Failure> {
    if expected == actual {
        return None;
    }
    let (line, hint) = first_difference(expected, actual);
    Some(Failure {
        summary: format!("stdout differs from the expected output at line {line}{hint}"),
        detail: format!("expected stdout:\n{}", clip(expected)),
    })
}

/// The 1-based line where `actual` first departs from `expected` (which
/// differ), and a hint that names no content.
pub fn first_difference(expected: &str, actual: &str) -> (usize, &'static str) {
    let want: Vec<&str> = expected.split_inclusive('\n').collect();
    let got: Vec<&str> = actual.split_inclusive('\n').collect();
    let index = want.iter().zip(&got).take_while(|(w, g)| w == g).count();
    let hint = match (want.get(index), got.get(index)) {
        (Some(_), None) => " (the output ends early)",
        (None, Some(_)) => " (the output has extra lines)",
        (Some(w), Some(g)) if w.trim_end_matches(['\n', '\r']) == g.trim_end_matches(['\n', '\r']) => {
            " (only the line ending differs)"
        }
        _ => "",
    };
    (index + 1, hint)
}

fn check_contains(stream: &str, wanted: &[String], actual: &str) -> Option<Failure> {
    let missing: Vec<&String> = wanted.iter().filter(|w| !actual.contains(w.as_str())).collect();
    if missing.is_empty() {
        return None;
    }
    let listed: Vec<String> = missing.iter().map(|m| format!("  {}", clip(m))).collect();
    Some(Failure {
        summary: format!("{stream} lacks an expected string ({} of {} missing)", missing.len(), wanted.len()),
        detail: format!("missing from {stream}:\n{}", listed.join("\n")),
    })
}

/// `text` cut to [`DETAIL_CHARS`] characters, saying so when cut.
pub fn clip(text: &str) -> String {
    let total = text.chars().count();
    if total <= DETAIL_CHARS {
        return text.to_string();
    }
    let kept: String = text.chars().take(DETAIL_CHARS).collect();
    format!("{kept}\n… (truncated: {total} characters in all)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out<'a>(exit_code: u32, stdout: &'a str, stderr: &'a str) -> Outcome<'a> {
        Outcome { exit_code, stdout: stdout.as_bytes(), stderr: stderr.as_bytes() }
    }

    fn summary_of(expect: &Expectations, run: Outcome<'_>) -> String {
        summary(&judge(expect, run))
    }

    #[test]
    fn all_expectations_met_passes() {
        let expect = Expectations {
            exit_code: 2,
            stdout: Some("a\nb\n".into()),
            stdout_contains: vec!["b".into()],
            stdout_regex: Some(Regex::new(r"^a\n").unwrap()),
            stderr_contains: vec!["warn".into()],
        };
        assert!(judge(&expect, out(2, "a\nb\n", "a warning")).is_empty());
        assert_eq!(summary_of(&expect, out(2, "a\nb\n", "a warning")), "passed");
    }

    #[test]
    fn exit_code_mismatch() {
        let expect = Expectations::default();
        assert_eq!(summary_of(&expect, out(1, "", "")), "expected exit 0, got another");
    }

    #[test]
    fn exact_stdout_names_the_first_differing_line() {
        let expect = Expectations { stdout: Some("1\n2\nFizz\n".into()), ..Default::default() };
        assert_eq!(
            summary_of(&expect, out(0, "1\n3\nFizz\n", "")),
            "stdout differs from the expected output at line 2"
        );
        assert_eq!(
            summary_of(&expect, out(0, "1\n2\n", "")),
            "stdout differs from the expected output at line 3 (the output ends early)"
        );
        assert_eq!(
            summary_of(&expect, out(0, "1\n2\nFizz\n4\n", "")),
            "stdout differs from the expected output at line 4 (the output has extra lines)"
        );
        assert_eq!(
            summary_of(&expect, out(0, "1\n2\nFizz", "")),
            "stdout differs from the expected output at line 3 (only the line ending differs)"
        );
    }

    #[test]
    fn contains_counts_missing_strings() {
        let expect = Expectations { stdout_contains: vec!["a".into(), "b".into(), "c".into()], ..Default::default() };
        assert_eq!(summary_of(&expect, out(0, "a c", "")), "stdout lacks an expected string (1 of 3 missing)");
        let expect = Expectations { stderr_contains: vec!["oops".into()], ..Default::default() };
        assert_eq!(summary_of(&expect, out(0, "oops", "")), "stderr lacks an expected string (1 of 1 missing)");
    }

    #[test]
    fn regex_must_match_somewhere() {
        let expect = Expectations { stdout_regex: Some(Regex::new(r"\d+ items").unwrap()), ..Default::default() };
        assert!(judge(&expect, out(0, "found 12 items\n", "")).is_empty());
        assert_eq!(summary_of(&expect, out(0, "found none\n", "")), "stdout does not match the expected pattern");
    }

    #[test]
    fn several_failures_summarize_the_first() {
        let expect = Expectations {
            exit_code: 2,
            stderr_contains: vec!["x".into()],
            stdout_contains: vec!["y".into()],
            ..Default::default()
        };
        let failures = judge(&expect, out(1, "", ""));
        assert_eq!(failures.len(), 3);
        assert_eq!(summary(&failures), "expected exit 2, got another (and 2 more failures)");
    }

    #[test]
    fn summary_never_quotes_scenario_content() {
        let secret = "SECRET-7f3a";
        let expect = Expectations {
            exit_code: 3,
            stdout: Some(format!("{secret}\n")),
            stdout_contains: vec![format!("{secret}-a"), format!("{secret}-b")],
            stdout_regex: Some(Regex::new(&format!("^{secret}-re$")).unwrap()),
            stderr_contains: vec![format!("{secret}-err")],
        };
        let failures = judge(&expect, out(0, "something else\n", "nothing"));
        assert_eq!(failures.len(), 5);
        for failure in &failures {
            assert!(!failure.summary.contains(secret), "{}", failure.summary);
            assert!(failure.summary.chars().count() <= SUMMARY_CHARS);
        }
        assert!(!summary(&failures).contains(secret));
        // The details, for humans, do say what was expected.
        assert!(failures[1].detail.contains(secret));
        assert!(failures[2].detail.contains(&format!("{secret}-b")));
    }

    #[test]
    fn clip_cuts_long_values() {
        let long = "x".repeat(DETAIL_CHARS + 5);
        let clipped = clip(&long);
        assert!(clipped.starts_with(&"x".repeat(DETAIL_CHARS)));
        assert!(clipped.ends_with(&format!("(truncated: {} characters in all)", DETAIL_CHARS + 5)));
        assert_eq!(clip("short"), "short");
    }
}
