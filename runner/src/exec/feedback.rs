//! Retry feedback: the only channel from the judges back to a stage.
//!
//! [`build`] is the one function that makes what a retried stage is told,
//! from the reports of the gates that failed, at the pipeline's `[barrier]
//! feedback` level, and bounds how many bits of holdout-dependent
//! information that carries. Verdict details, plugin and program output, a
//! holdout reader's own error text and anything else in a report never
//! reach a stage. A line that quotes a holdout file ([`Holdout`]) is
//! withheld.

use std::path::{Path, PathBuf};

use crate::manifest::FeedbackLevel;
use crate::plan::StepKind;
use crate::report::{StepReport, StepStatus};

/// Longest feedback line, in characters.
pub const MAX_LINE: usize = 200;
/// Shortest holdout text that counts as quoted.
const MIN_QUOTE: usize = 6;
/// Holdout files larger than this are not scanned for quotes.
const MAX_SCANNED_FILE: u64 = 1 << 20;

/// Text from the holdout paths that feedback may not quote, with the file
/// (workspace-relative) each piece came from.
#[derive(Debug, Default)]
pub struct Holdout {
    quotes: Vec<(String, String)>,
}

impl Holdout {
    /// Collects, from every file under `paths`, each trimmed line and each
    /// double-quoted string of at least 6 characters; files are named
    /// relative to `workspace`.
    pub fn scan(paths: &[PathBuf], workspace: &Path) -> Holdout {
        let mut quotes = Vec::new();
        for path in paths {
            scan_path(path, workspace, &mut quotes);
        }
        quotes.sort();
        quotes.dedup_by(|a, b| a.0 == b.0);
        Holdout { quotes }
    }

    /// The holdout file `text` quotes, if it quotes any.
    pub fn quoted_in(&self, text: &str) -> Option<&str> {
        self.quotes.iter().find(|(q, _)| text.contains(q.as_str())).map(|(_, file)| file.as_str())
    }
}

fn scan_path(path: &Path, workspace: &Path, quotes: &mut Vec<(String, String)>) {
    let Ok(meta) = fs_err::symlink_metadata(path) else { return };
    if meta.is_dir() {
        if let Ok(entries) = fs_err::read_dir(path) {
            for entry in entries.flatten() {
                scan_path(&entry.path(), workspace, quotes);
            }
        }
        return;
    }
    if !meta.is_file() || meta.len() > MAX_SCANNED_FILE {
        return;
    }
    let Ok(text) = fs_err::read_to_string(path) else { return };
    let file = path.strip_prefix(workspace).unwrap_or(path).display().to_string();
    for line in text.lines() {
        let line = line.trim();
        if line.chars().count() >= MIN_QUOTE {
            quotes.push((line.to_string(), file.clone()));
        }
        for (i, quoted) in line.split('"').enumerate() {
            if i % 2 == 1 && quoted.chars().count() >= MIN_QUOTE {
                quotes.push((quoted.to_string(), file.clone()));
            }
        }
    }
}

/// Most feedback lines one stage gets per attempt; the rest are counted
/// in a last line, so thousands of findings cannot flood a stage (or its
/// environment).
pub const MAX_LINES: usize = 100;

/// One failed gate (or a failed step between the stage and its gates)
/// whose report feedback is built from.
#[derive(Debug, Clone, Copy)]
pub struct Source<'r> {
    /// Its report.
    pub report: &'r StepReport,
    /// Whether it may read the holdout ([`crate::plan::Step::reads_holdout`]).
    pub reads_holdout: bool,
}

/// What a retried stage is told, and how much of it can depend on the
/// holdout.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Feedback {
    /// The lines, at most [`MAX_LINES`] (+1 that counts the rest), each at
    /// most [`MAX_LINE`] characters.
    pub lines: Vec<String>,
    /// An upper bound, in bits, on the holdout-dependent information the
    /// lines carry (the formula is in `docs/security.md`).
    pub bits: f64,
    /// For humans only (the report), never for the stage: one note per
    /// withheld line, naming the step and the holdout file it quoted.
    pub withheld: Vec<String>,
}

/// Bits of one gate's outcome (passed, failed or error).
fn outcome_bits() -> f64 {
    3f64.log2()
}

/// Builds the feedback for a stage retried because `sources` failed, at
/// `level`. This is the only place a stage's feedback is made:
///
/// * an evaluator gives, per failing scenario, `scenario NAME: failed K/N:
///   SUMMARY` (`summary`), `scenario NAME: failed K/N` (`names`), or one
///   line `step ID: K scenarios failed` (`count`);
/// * a step that can read the holdout and did not produce scenario results
///   gives `step ID: error`, or for a native program `step ID: exited with
///   status N`: never its own words or output;
/// * any other step gives one line per error finding (`path:line: rule:
///   message`), or `step ID: error: REASON`.
///
/// Lines are flattened to one line of at most [`MAX_LINE`] characters; a
/// line quoting a holdout file is withheld; past [`MAX_LINES`] lines the
/// rest are counted, not sent.
pub fn build(sources: &[Source<'_>], level: FeedbackLevel, holdout: &Holdout) -> Feedback {
    let mut out = Feedback::default();
    // (line, bits of holdout-dependent text in it)
    let mut lines: Vec<(String, f64)> = Vec::new();
    let mut withheld = Vec::new();
    for source in sources {
        let gate = source.report;
        let mut guarded = |head: &str, text: &str, produced: &str| {
            let (line, file) = guarded(head, text, produced, holdout);
            if let Some(file) = file {
                withheld.push(format!("a line from `{}` quoted the holdout file `{file}`", gate.id));
            }
            line
        };
        // Evaluators judge by hidden scenarios whether or not a `[barrier]`
        // names them: their outcome is holdout-dependent.
        let judged_by_holdout = source.reads_holdout || gate.kind == StepKind::Evaluator;
        if judged_by_holdout {
            out.bits += outcome_bits();
        }
        if let Some(reason) = &gate.service_failure {
            // The runner's words about the service's start, before any
            // scenario ran: nothing holdout-dependent beyond the outcome.
            lines.push((one_line(&format!("step {}: {reason}", gate.id)), 0.0));
        } else if let Some(evaluation) = &gate.evaluation {
            let failing: Vec<_> = evaluation.scenarios.iter().filter(|s| !s.passed).collect();
            let runs = evaluation.scenarios.iter().map(|s| s.runs).max().unwrap_or(1);
            match level {
                FeedbackLevel::Count => {
                    out.bits += ((evaluation.scenarios.len() + 1) as f64).log2();
                    let n = failing.len();
                    let noun = if n == 1 { "scenario" } else { "scenarios" };
                    lines.push((one_line(&format!("step {}: {n} {noun} failed", gate.id)), 0.0));
                }
                FeedbackLevel::Names | FeedbackLevel::Summary => {
                    // Which scenarios failed, and how many of their runs.
                    out.bits += evaluation.scenarios.len() as f64 * f64::from(runs + 1).log2();
                    for scenario in &failing {
                        let failed = scenario.runs - scenario.passes;
                        let head = format!("scenario {}: failed {failed}/{}", scenario.name, scenario.runs);
                        let line = if level == FeedbackLevel::Summary {
                            guarded(&format!("{head}: "), &scenario.summary, &scenario.summary)
                        } else {
                            // The name is the evaluator's text: checked.
                            guarded("", &head, &scenario.name)
                        };
                        // Everything but the fixed words is holdout-dependent text.
                        let fixed = format!("scenario : failed {failed}/{}", scenario.runs).len()
                            + if level == FeedbackLevel::Summary { 2 } else { 0 };
                        let text = line.len().saturating_sub(fixed);
                        lines.push((line, 8.0 * text as f64));
                    }
                }
            }
            if failing.is_empty() && gate.status != StepStatus::Passed {
                lines.push((one_line(&format!("step {}: failed", gate.id)), 0.0));
            }
        } else if judged_by_holdout {
            let text = match exit_status(gate) {
                Some(status) if gate.status == StepStatus::Failed => {
                    // An exit code (0-255) or a signal (1-64).
                    out.bits += 320f64.log2();
                    format!("exited with {status}")
                }
                _ => "error".to_string(),
            };
            // The runner's own words only: nothing to withhold.
            lines.push((one_line(&format!("step {}: {text}", gate.id)), 0.0));
        } else if gate.status == StepStatus::Error || gate.findings.is_empty() {
            let reason = gate.reason.as_deref().unwrap_or("failed");
            let line = guarded(&format!("step {}: error: ", gate.id), reason, gate.produced_reason());
            lines.push((line, 0.0));
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
                let line = guarded(&format!("{place}{}: ", finding.rule), &finding.message, finding.produced());
                lines.push((line, 0.0));
            }
        }
    }
    out.withheld = withheld;
    let total = lines.len();
    for (line, bits) in lines.into_iter().take(MAX_LINES) {
        out.lines.push(line);
        out.bits += bits;
    }
    if total > MAX_LINES {
        out.lines
            .push(format!("({} more feedback lines not sent: at most {MAX_LINES} per attempt)", total - MAX_LINES));
    }
    out
}

/// `status N` or `signal N` from a native step's `exit-status` finding.
fn exit_status(report: &StepReport) -> Option<String> {
    let finding = report.findings.iter().find(|f| f.rule == "exit-status")?;
    let (_, after) = finding.message.split_once("exited with ")?;
    let mut words = after.split([' ', ':']);
    let kind = words.next().filter(|k| *k == "status" || *k == "signal")?;
    let number: i64 = words.next()?.parse().ok()?;
    Some(format!("{kind} {number}"))
}

/// The feedback lines for a stage retried because `gates` failed, at the
/// `summary` level, none of them holdout readers.
#[cfg(test)]
fn lines(gates: &[&StepReport], holdout: &Holdout) -> Vec<String> {
    let sources: Vec<Source<'_>> = gates.iter().map(|report| Source { report, reads_holdout: false }).collect();
    build(&sources, FeedbackLevel::Summary, holdout).lines
}

/// `head` + `text` on one line, at most [`MAX_LINE`] characters, unless
/// `produced` (the part of `text` the step or its program wrote: the
/// runner's own words never count) quotes the holdout: then `text` is
/// withheld, and the file it quoted is returned for the report.
fn guarded(head: &str, text: &str, produced: &str, holdout: &Holdout) -> (String, Option<String>) {
    match holdout.quoted_in(produced) {
        Some(file) => (one_line(&format!("{head}(withheld: it quoted holdout content)")), Some(file.to_string())),
        None => (one_line(&format!("{head}{text}")), None),
    }
}

/// `text` flattened to one line of at most [`MAX_LINE`] characters.
fn one_line(text: &str) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
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
                    pass_rate: 1.0,
                    run_disagreement: 0.0,
                    judge_disagreement: None,
                    cached_runs: 0,
                },
                ScenarioReport {
                    name: "rejects-zero".into(),
                    runs: 3,
                    passes: 1,
                    passed: false,
                    summary: summary.into(),
                    detail: detail.into(),
                    pass_rate: ScenarioReport::share(1, 3),
                    run_disagreement: ScenarioReport::pairwise_disagreement(1, 3),
                    judge_disagreement: None,
                    cached_runs: 0,
                },
            ],
        });
        report
    }

    /// An error finding with no location.
    fn error_finding(rule: &str, message: &str) -> FindingReport {
        FindingReport {
            rule: rule.into(),
            severity: "error".into(),
            message: message.into(),
            path: None,
            line: None,
            column: None,
            produced_from: None,
            line_digest: None,
        }
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
                produced_from: None,
                line_digest: None,
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
        let holdout = Holdout::scan(&[dir.path().to_path_buf()], dir.path());
        let report = evaluator("stderr should say positive integer", "");
        assert_eq!(
            lines(&[&report], &holdout),
            ["scenario rejects-zero: failed 2/3: (withheld: it quoted holdout content)"]
        );
    }

    #[test]
    fn names_level_drops_summaries_and_count_level_drops_names() {
        let report = evaluator("expected exit 2, got another", "");
        let source = [Source { report: &report, reads_holdout: true }];
        let names = build(&source, FeedbackLevel::Names, &Holdout::default());
        assert_eq!(names.lines, ["scenario rejects-zero: failed 2/3"]);
        let count = build(&source, FeedbackLevel::Count, &Holdout::default());
        assert_eq!(count.lines, ["step holdout: 1 scenario failed"]);
        let summary = build(&source, FeedbackLevel::Summary, &Holdout::default());
        assert!(count.bits < names.bits && names.bits < summary.bits, "{count:?} {names:?} {summary:?}");
    }

    #[test]
    fn the_bound_covers_every_byte_of_holdout_dependent_text() {
        let report = evaluator("x".repeat(150).as_str(), "");
        let built =
            build(&[Source { report: &report, reads_holdout: true }], FeedbackLevel::Summary, &Holdout::default());
        // 2 scenarios of up to 3 runs: which failed and how often; the
        // outcome; the name and the summary, 8 bits a byte.
        let text = "rejects-zero".len() + 150;
        assert!(built.bits >= 8.0 * text as f64 + 2.0 * 4f64.log2(), "{}", built.bits);
    }

    #[test]
    fn a_holdout_reading_program_is_reported_by_exit_status_only() {
        let mut report = StepReport::skipped("judge", StepKind::Check, String::new());
        report.status = StepStatus::Failed;
        report
            .findings
            .push(error_finding("exit-status", "`sh judge.sh` exited with status 3: expected 42 for input 17"));
        let reader =
            build(&[Source { report: &report, reads_holdout: true }], FeedbackLevel::Summary, &Holdout::default());
        assert_eq!(reader.lines, ["step judge: exited with status 3"]);
        let other =
            build(&[Source { report: &report, reads_holdout: false }], FeedbackLevel::Summary, &Holdout::default());
        assert!(other.lines[0].contains("expected 42"), "a gate without the holdout keeps its message");
        assert_eq!(other.bits, 0.0);
    }

    #[test]
    fn an_erroring_evaluator_says_only_that_it_errored() {
        let mut report = StepReport::skipped("holdout", StepKind::Evaluator, String::new());
        report.status = StepStatus::Error;
        report.reason = Some("could not list its scenarios: plugin error: the input is 17 17 +".into());
        let built =
            build(&[Source { report: &report, reads_holdout: false }], FeedbackLevel::Summary, &Holdout::default());
        assert_eq!(built.lines, ["step holdout: error"]);
    }

    #[test]
    fn feedback_is_capped_per_attempt() {
        let mut report = StepReport::skipped("lint", StepKind::Check, String::new());
        report.status = StepStatus::Failed;
        for i in 0..5000 {
            report.findings.push(error_finding("r", &format!("finding {i}")));
        }
        let built = lines(&[&report], &Holdout::default());
        assert_eq!(built.len(), MAX_LINES + 1);
        assert_eq!(built[MAX_LINES], "(4900 more feedback lines not sent: at most 100 per attempt)");
    }

    #[test]
    fn the_runners_own_words_are_never_withheld() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("s.md"), "exited with status 3\n2 scenarios failed\n").unwrap();
        let holdout = Holdout::scan(&[dir.path().to_path_buf()], dir.path());
        let mut report = StepReport::skipped("judge", StepKind::Evaluator, String::new());
        report.status = StepStatus::Failed;
        report.findings.push(error_finding("exit-status", "`judge` exited with status 3"));
        let built = build(&[Source { report: &report, reads_holdout: true }], FeedbackLevel::Summary, &holdout);
        assert_eq!(built.lines, ["step judge: exited with status 3"]);
    }

    #[test]
    fn holdout_text_in_the_runner_s_own_words_withholds_nothing_but_in_the_program_s_it_does() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("cases.txt"), "status\nthe secret answer is 42\n").unwrap();
        let holdout = Holdout::scan(&[dir.path().to_path_buf()], dir.path());
        let native = |last: &str| {
            let mut report = StepReport::skipped("build", StepKind::Check, String::new());
            report.status = StepStatus::Failed;
            let words = "`make` exited with status 1: ".to_string();
            report.findings.push(FindingReport {
                produced_from: Some(words.len()),
                message: format!("{words}{last}"),
                ..error_finding("exit-status", "")
            });
            report
        };
        // "status" is a holdout line, but only the runner wrote it here.
        let report = native("undefined reference to main");
        let sources = [Source { report: &report, reads_holdout: false }];
        let built = build(&sources, FeedbackLevel::Summary, &holdout);
        assert_eq!(built.lines, ["exit-status: `make` exited with status 1: undefined reference to main"]);
        assert!(built.withheld.is_empty());
        // The program's own text quoting the holdout is withheld, and the
        // report (never the stage) learns which file it quoted.
        let report = native("note: the secret answer is 42");
        let sources = [Source { report: &report, reads_holdout: false }];
        let built = build(&sources, FeedbackLevel::Summary, &holdout);
        assert_eq!(built.lines, ["exit-status: (withheld: it quoted holdout content)"]);
        assert_eq!(built.withheld, ["a line from `build` quoted the holdout file `cases.txt`"]);
        assert!(!built.lines.concat().contains("cases.txt"));
        // The same for a reason: the runner's words never count.
        let mut errored = StepReport::error("build", StepKind::Check, "timed out after status".into());
        errored.set_reason("the stage reported: ", "status");
        let sources = [Source { report: &errored, reads_holdout: false }];
        assert_eq!(
            build(&sources, FeedbackLevel::Summary, &holdout).lines,
            ["step build: error: (withheld: it quoted holdout content)"]
        );
        let plain = StepReport::error("build", StepKind::Check, "could not run: status unknown".into());
        let sources = [Source { report: &plain, reads_holdout: false }];
        assert_eq!(
            build(&sources, FeedbackLevel::Summary, &holdout).lines,
            ["step build: error: could not run: status unknown"]
        );
    }
}
