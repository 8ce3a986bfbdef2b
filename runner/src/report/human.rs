//! The terminal report: one line per step, then findings grouped by step,
//! then a summary line. Built to be scanned: status words line up, paths come
//! first in `path:line:col` form so terminals and editors can jump to them.
//! [`Style`] adds colour (status words only, so pipes and `NO_COLOR` users
//! lose nothing), `-q` (only what failed, and the summary) and `-v` (every
//! step's whole output, grouped under the step).

use std::fmt::Write;
use std::time::Duration;

use crate::report::{FindingReport, RunReport, RunStatus, StepReport, StepStatus};

/// Findings listed per step before the rest are counted instead.
pub const MAX_FINDINGS_SHOWN: usize = 50;
/// Lines of output shown under a step that failed or errored.
const OUTPUT_TAIL_LINES: usize = 5;

/// How the terminal report looks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style {
    /// ANSI colours on status words and the summary.
    pub color: bool,
    /// `-q`: no line for steps that passed or were skipped; failures and the
    /// summary only.
    pub quiet: bool,
    /// `-v`: each step's whole captured output, not only the last lines of
    /// failing steps.
    pub verbose: bool,
}

impl Style {
    /// `text` in the colour for `status` (when colours are on).
    fn status(&self, status: StepStatus, text: &str) -> String {
        let code = match status {
            StepStatus::Passed => "32",
            StepStatus::Failed => "31",
            StepStatus::Error => "1;31",
            StepStatus::Skipped => "33",
            StepStatus::Overridden => "35",
        };
        self.paint(code, text)
    }

    /// `ok` in green or `FAILED` in red (for `plugin test`).
    pub fn verdict(&self, ok: bool) -> String {
        if ok {
            self.paint("32", "ok")
        } else {
            self.paint("1;31", "FAILED")
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color && !text.is_empty() {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// Renders `report` as text for a terminal.
pub fn render(report: &RunReport, style: Style) -> String {
    // Nothing a step chose may move the cursor or reorder a line.
    let report = &report.escaped();
    let mut out = String::new();
    let width = report.steps.iter().map(|s| s.id.len()).max().unwrap_or(0).max(20) + 4;
    for step in &report.steps {
        if style.quiet && matches!(step.status, StepStatus::Passed | StepStatus::Skipped) {
            continue;
        }
        let _ = writeln!(out, "{}", step_line(step, width, style));
    }
    for step in &report.steps {
        let tail = if style.verbose { full_output(step) } else { output_tail(step) };
        // Failing scenarios, and passing ones whose runs or judges disagreed.
        let failing_scenarios: Vec<_> = step
            .evaluation
            .iter()
            .flat_map(|e| e.scenarios.iter().filter(|s| !s.passed || !s.noise().is_empty()))
            .collect();
        if step.findings.is_empty()
            && tail.is_empty()
            && step.changes.is_empty()
            && failing_scenarios.is_empty()
            && step.denied_requests.is_empty()
        {
            continue;
        }
        let _ = writeln!(out, "\n{}:", step.id);
        let name_width = failing_scenarios.iter().map(|s| s.name.len()).max().unwrap_or(0);
        for scenario in &failing_scenarios {
            let noise = scenario.noise();
            let noise = if noise.is_empty() { noise } else { format!("  [{noise}]") };
            let _ = writeln!(
                out,
                "  {:<name_width$}  {}/{} passed  {}{noise}",
                scenario.name, scenario.passes, scenario.runs, scenario.summary
            );
        }
        for finding in step.findings.iter().take(MAX_FINDINGS_SHOWN) {
            let _ = writeln!(out, "  {}", finding_line(finding));
        }
        if step.findings.len() > MAX_FINDINGS_SHOWN {
            let _ = writeln!(
                out,
                "  ... and {} more (all of them with --format json)",
                step.findings.len() - MAX_FINDINGS_SHOWN
            );
        }
        if !tail.is_empty() {
            let _ = writeln!(out, "  {}", if style.verbose { "output:" } else { "output (last lines):" });
            for line in tail {
                let _ = writeln!(out, "  | {line}");
            }
        }
        for change in &step.changes {
            let _ = writeln!(out, "  {change}");
        }
        for denied in &step.denied_requests {
            let _ = writeln!(out, "  network: refused {denied}");
        }
    }
    if !report.attempts.is_empty() {
        let _ = writeln!(out, "\nattempts:");
        for attempt in &report.attempts {
            let _ = writeln!(out, "  round {}: {}", attempt.round, attempt.gate_lines().join("; "));
            for failing in attempt.failing_lines() {
                let _ = writeln!(out, "    {failing}");
            }
            for retry in attempt.retry_lines() {
                let _ = writeln!(out, "    -> retry {retry}");
            }
            for line in attempt.feedback_lines() {
                let _ = writeln!(out, "       feedback {line}");
            }
            for line in attempt.withheld_lines() {
                let _ = writeln!(out, "       withheld {line}");
            }
        }
        let _ = writeln!(
            out,
            "  feedback level `{}`: at most {:.1} bits of holdout-dependent information reached stages in this run",
            report.feedback_level.as_str(),
            report.feedback_bits
        );
    }
    if let Some(escalation) = &report.escalation {
        let _ = writeln!(out, "\n{escalation}");
    }
    push_governance(&mut out, report);
    if let Some(termination) = report.termination {
        let _ = writeln!(out, "\ntermination: {}", termination.as_str());
    }
    let summary = summary_line(report);
    let summary = match report.status {
        RunStatus::Passed => style.paint("1;32", &summary),
        _ => style.paint("1;31", &summary),
    };
    let _ = writeln!(out, "\n{summary}");
    out
}

/// Approval gates and the decisions people recorded, one line each.
fn push_governance(out: &mut String, report: &RunReport) {
    if !report.approvals.is_empty() {
        let _ = writeln!(out, "\napprovals:");
        for gate in &report.approvals {
            let mut line = format!("  {} {}", gate.name, gate.status.as_str());
            if let Some(d) = &gate.decision {
                let _ = write!(line, " by {} on {}: {}", d.by, d.at, d.reason);
            } else if let Some(deadline) = &gate.deadline {
                let _ = write!(line, " (fails closed at {deadline})");
            }
            if let Some(note) = &gate.note {
                let _ = write!(line, "  {note}");
            }
            let _ = writeln!(out, "{line}");
        }
    }
    if !report.decisions.is_empty() {
        let _ = writeln!(out, "\ndecisions:");
        for d in &report.decisions {
            let what = if d.kind == crate::report::decisions::DecisionKind::Verdict {
                "result".to_string()
            } else {
                format!("`{}`", d.target)
            };
            let _ = writeln!(
                out,
                "  {} {what} {} by {} ({}) on {}: {}",
                d.kind.as_str(),
                d.word(),
                d.by,
                d.user,
                d.at,
                d.reason
            );
        }
    }
}

fn step_line(step: &StepReport, width: usize, style: Style) -> String {
    let dots = ".".repeat(width.saturating_sub(step.id.len() + 1));
    let detail = match step.status {
        _ if step.evaluation.is_some() => step.score().unwrap_or_default(),
        StepStatus::Failed if step.findings.is_empty() => step.reason.clone().unwrap_or_default(),
        StepStatus::Failed => plural(step.error_count(), "finding"),
        StepStatus::Passed if !step.findings.is_empty() => plural(step.findings.len(), "note"),
        StepStatus::Passed if !step.changes.is_empty() => plural(step.changes.len(), "change"),
        StepStatus::Passed if step.note.is_some() => step.note.clone().unwrap_or_default(),
        StepStatus::Passed => String::new(),
        StepStatus::Error | StepStatus::Skipped => step.reason.clone().unwrap_or_default(),
        StepStatus::Overridden => step.note.clone().unwrap_or_default(),
    };
    let time = match step.status {
        StepStatus::Skipped => String::new(),
        _ if step.remote.as_ref().is_some_and(|r| r.cached) => {
            format!("(cached (remote), took {})", duration(step.duration))
        }
        _ if step.cached => format!("(cached, took {})", duration(step.duration)),
        _ if step.remote.is_some() => format!("(remote, {})", duration(step.duration)),
        _ => format!("({})", duration(step.duration)),
    };
    let word = format!("{:<7}", step.status.as_str());
    let mut line = format!("{} {dots} {}", step.id, style.status(step.status, &word));
    let unjailed = if step.unjailed.is_some() { "UNJAILED".to_string() } else { String::new() };
    for part in [detail, unjailed, time] {
        if !part.is_empty() {
            line.push_str("  ");
            line.push_str(&part);
        }
    }
    line
}

fn finding_line(f: &FindingReport) -> String {
    let mut place = f.path.clone().unwrap_or_default();
    if let Some(line) = f.line {
        let _ = write!(place, ":{line}");
        if let Some(column) = f.column {
            let _ = write!(place, ":{column}");
        }
    }
    let severity = if f.severity == "error" { String::new() } else { format!("{}: ", f.severity) };
    if place.is_empty() {
        format!("{severity}{} {}", f.rule, f.message)
    } else {
        format!("{place}: {severity}{} {}", f.rule, f.message)
    }
}

/// The last lines of stderr (or of stdout, when stderr is empty) of a step
/// that failed or errored.
fn output_tail(step: &StepReport) -> Vec<&str> {
    if !matches!(step.status, StepStatus::Failed | StepStatus::Error) {
        return Vec::new();
    }
    let text = if step.stderr.trim().is_empty() { &step.stdout } else { &step.stderr };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(OUTPUT_TAIL_LINES)..].to_vec()
}

/// Every line a step printed, stdout then stderr (`-v`).
fn full_output(step: &StepReport) -> Vec<&str> {
    step.stdout.lines().chain(step.stderr.lines()).collect()
}

fn summary_line(report: &RunReport) -> String {
    let counts = report.step_counts();
    let status = match report.status {
        RunStatus::Interrupted => "interrupted (Ctrl-C)",
        other => other.as_str(),
    };
    format!("{status}: {counts} in {}", duration(report.duration))
}

/// `1 finding`, `3 findings`: a count and its noun, as every report writes them.
pub(crate) fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// `34 ms`, `1.25 s`: how every report writes times.
pub(crate) fn duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::StepKind;

    fn step(id: &str, status: StepStatus) -> StepReport {
        StepReport {
            status,
            duration: Duration::from_millis(34),
            ..StepReport::skipped(id, StepKind::Check, String::new())
        }
    }

    #[test]
    fn failed_step_shows_count_findings_and_summary() {
        let mut failed = step("no-stubs", StepStatus::Failed);
        failed.reason = None;
        failed.findings.push(FindingReport {
            rule: "forbid-pattern".into(),
            severity: "error".into(),
            message: "`panic!(` matches".into(),
            path: Some("src/a.rs".into()),
            line: Some(3),
            column: Some(5),
            produced_from: None,
            line_digest: None,
        });
        let report = RunReport::new(
            "p".into(),
            "r".into(),
            Duration::from_millis(40),
            vec![failed, step("ok", StepStatus::Passed)],
        );
        let text = render(&report, Style::default());
        assert!(text.starts_with("no-stubs ............... failed   1 finding  (34 ms)\n"), "{text}");
        assert!(text.contains("\nno-stubs:\n  src/a.rs:3:5: forbid-pattern `panic!(` matches\n"), "{text}");
        assert!(text.ends_with("failed: 1 passed, 1 failed in 40 ms\n"), "{text}");
    }

    #[test]
    fn a_cached_step_says_so_with_its_original_time() {
        let mut cached = step("no-stubs", StepStatus::Passed);
        cached.cached = true;
        let report = RunReport::new("p".into(), "r".into(), Duration::from_millis(2), vec![cached]);
        let text = render(&report, Style::default());
        assert!(text.starts_with("no-stubs ............... passed   (cached, took 34 ms)\n"), "{text}");
        assert!(text.ends_with("passed: 1 passed (1 from cache) in 2 ms\n"), "{text}");
    }

    #[test]
    fn colour_marks_status_words_and_quiet_drops_passing_steps() {
        let report = RunReport::new(
            "p".into(),
            "r".into(),
            Duration::from_millis(2),
            vec![step("ok", StepStatus::Passed), step("bad", StepStatus::Error)],
        );
        let coloured = render(&report, Style { color: true, ..Style::default() });
        assert!(coloured.contains("\x1b[32mpassed \x1b[0m"), "{coloured}");
        assert!(coloured.contains("\x1b[1;31merror  \x1b[0m"), "{coloured}");
        let quiet = render(&report, Style { quiet: true, ..Style::default() });
        assert!(!quiet.contains("ok ..."), "{quiet}");
        assert!(quiet.starts_with("bad ..."), "{quiet}");
        assert!(!render(&report, Style::default()).contains('\x1b'));
    }
}
