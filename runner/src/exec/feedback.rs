//! Retry feedback: the only channel from the judges back to a stage.
//!
//! [`lines`] is the one function that builds what a retried stage is told,
//! from the reports of the gates that failed. A check gives one line per
//! error finding (`path:line: rule: message`); an evaluator one line per
//! failing scenario (`scenario NAME: failed K/N: SUMMARY`, K failing runs of
//! N); a gate that could not run gives `step ID: error: REASON`. Each line is
//! flattened to one line of at most [`MAX_LINE`] characters. Verdict
//! details, plugin output and anything else in a report never reach a stage.
//! A line that quotes a holdout file ([`Holdout`]) is withheld.

use std::path::{Path, PathBuf};

use crate::report::{StepReport, StepStatus};

/// Longest feedback line, in characters.
pub const MAX_LINE: usize = 200;
/// Shortest holdout text that counts as quoted.
const MIN_QUOTE: usize = 6;
/// Holdout files larger than this are not scanned for quotes.
const MAX_SCANNED_FILE: u64 = 1 << 20;

/// Text from the holdout paths that feedback may not quote.
#[derive(Debug, Default)]
pub struct Holdout {
    quotes: Vec<String>,
}

impl Holdout {
    /// Collects, from every file under `paths`, each trimmed line and each
    /// double-quoted string of at least 6 characters.
    pub fn scan(paths: &[PathBuf]) -> Holdout {
        let mut quotes = Vec::new();
        for path in paths {
            scan_path(path, &mut quotes);
        }
        quotes.sort();
        quotes.dedup();
        Holdout { quotes }
    }

    /// Whether `line` contains any holdout text.
    pub fn is_quoted_in(&self, line: &str) -> bool {
        self.quotes.iter().any(|q| line.contains(q.as_str()))
    }
}

fn scan_path(path: &Path, quotes: &mut Vec<String>) {
    let Ok(meta) = fs_err::symlink_metadata(path) else { return };
    if meta.is_dir() {
        if let Ok(entries) = fs_err::read_dir(path) {
            for entry in entries.flatten() {
                scan_path(&entry.path(), quotes);
            }
        }
        return;
    }
    if !meta.is_file() || meta.len() > MAX_SCANNED_FILE {
        return;
    }
    let Ok(text) = fs_err::read_to_string(path) else { return };
    for line in text.lines() {
        let line = line.trim();
        if line.chars().count() >= MIN_QUOTE {
            quotes.push(line.to_string());
        }
        for (i, quoted) in line.split('"').enumerate() {
            if i % 2 == 1 && quoted.chars().count() >= MIN_QUOTE {
                quotes.push(quoted.to_string());
            }
        }
    }
}

/// The feedback lines for a stage retried because `gates` failed.
pub fn lines(gates: &[&StepReport], holdout: &Holdout) -> Vec<String> {
    let mut out = Vec::new();
    for gate in gates {
        if let Some(evaluation) = &gate.evaluation {
            for scenario in evaluation.scenarios.iter().filter(|s| !s.passed) {
                let failed = scenario.runs - scenario.passes;
                let head = format!("scenario {}: failed {failed}/{}: ", scenario.name, scenario.runs);
                out.push(guarded(&head, &scenario.summary, holdout));
            }
            if evaluation.scenarios.iter().all(|s| s.passed) && gate.status != StepStatus::Passed {
                out.push(guarded(&format!("step {}: ", gate.id), "failed", holdout));
            }
        } else if gate.status == StepStatus::Error || gate.findings.is_empty() {
            let reason = gate.reason.as_deref().unwrap_or("failed");
            out.push(guarded(&format!("step {}: error: ", gate.id), reason, holdout));
        } else {
            for finding in gate.findings.iter().filter(|f| f.severity == "error") {
                let mut place = String::new();
                if let Some(path) = &finding.path {
                    place.push_str(path);
                    if let Some(line) = finding.line {
                        place.push_str(&format!(":{line}"));
                    }
                    place.push_str(": ");
                }
                out.push(guarded(&format!("{place}{}: ", finding.rule), &finding.message, holdout));
            }
        }
    }
    out
}

/// `head` + `text` on one line, at most [`MAX_LINE`] characters; `text`
/// is withheld when it quotes the holdout.
fn guarded(head: &str, text: &str, holdout: &Holdout) -> String {
    let text = if holdout.is_quoted_in(text) { "(withheld: it quoted holdout content)" } else { text };
    let flat: String = format!("{head}{text}").chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() <= MAX_LINE {
        flat
    } else {
        let mut cut: String = flat.chars().take(MAX_LINE - 1).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::StepKind;
    use crate::report::{EvaluationReport, FindingReport, ScenarioReport};

    fn evaluator(summary: &str, detail: &str) -> StepReport {
        let mut report = StepReport::skipped("holdout", StepKind::Evaluator, String::new());
        report.status = StepStatus::Failed;
        report.reason = None;
        report.stdout = "SECRET-STDOUT".into();
        report.evaluation = Some(EvaluationReport {
            satisfaction: 0.5,
            threshold: 1.0,
            scenarios: vec![
                ScenarioReport {
                    name: "ok".into(),
                    runs: 3,
                    passes: 3,
                    passed: true,
                    summary: "passed".into(),
                    detail: String::new(),
                },
                ScenarioReport {
                    name: "rejects-zero".into(),
                    runs: 3,
                    passes: 1,
                    passed: false,
                    summary: summary.into(),
                    detail: detail.into(),
                },
            ],
        });
        report
    }

    #[test]
    fn evaluator_feedback_is_one_summary_line_per_failing_scenario() {
        let report = evaluator("expected exit 2, got 1", "DETAIL: expected stderr `positive integer`");
        assert_eq!(
            lines(&[&report], &Holdout::default()),
            ["scenario rejects-zero: failed 2/3: expected exit 2, got 1"]
        );
    }

    #[test]
    fn check_feedback_names_place_rule_and_message() {
        let mut report = StepReport::skipped("no-stubs", StepKind::Check, String::new());
        report.status = StepStatus::Failed;
        for (severity, line) in [("error", Some(7)), ("warning", Some(9))] {
            report.findings.push(FindingReport {
                rule: "forbid-pattern".into(),
                severity: severity.into(),
                message: "placeholder\nleft".into(),
                path: Some("work/main.rs".into()),
                line,
                column: Some(5),
            });
        }
        assert_eq!(lines(&[&report], &Holdout::default()), ["work/main.rs:7: forbid-pattern: placeholder left"]);
    }

    #[test]
    fn lines_are_cut_to_200_characters() {
        let report = evaluator(&"x".repeat(500), "");
        let line = &lines(&[&report], &Holdout::default())[0];
        assert_eq!(line.chars().count(), MAX_LINE);
    }

    #[test]
    fn summaries_quoting_the_holdout_are_withheld() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(
            dir.path().join("rejects-zero.toml"),
            "args = [\"0\"]\nstderr_contains = [\"positive integer\"]\n",
        )
        .unwrap();
        let holdout = Holdout::scan(&[dir.path().to_path_buf()]);
        let report = evaluator("stderr should say positive integer", "");
        assert_eq!(
            lines(&[&report], &holdout),
            ["scenario rejects-zero: failed 2/3: (withheld: it quoted holdout content)"]
        );
    }
}
