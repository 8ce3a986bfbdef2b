//! JUnit XML (`--format junit`), the test report every CI system renders.
//!
//! There is no official schema; this follows the common Ant/Jenkins shape:
//! `<testsuites>` holding one `<testsuite>` with a `<testcase>` per step
//! (classname `<pipeline>.<kind>`), then one `<testsuite>` per evaluator with
//! a `<testcase>` per scenario (classname `<pipeline>.<evaluator>`). A failed
//! step or scenario has `<failure>`, an errored step `<error>`, a skipped one
//! `<skipped>`; captured output goes to `<system-out>` / `<system-err>`.

use std::fmt::Write;
use std::time::Duration;

use crate::report::{RunReport, StepReport, StepStatus};

/// One `<testcase>` before it is written.
struct Case<'a> {
    name: String,
    classname: String,
    time: Duration,
    /// `failure`, `error` or `skipped`, with its message and body.
    outcome: Option<(&'static str, String, String)>,
    stdout: &'a str,
    stderr: &'a str,
}

/// Renders `report` as a JUnit XML document.
pub fn render(report: &RunReport) -> String {
    let mut suites: Vec<(String, Vec<Case<'_>>)> = Vec::new();
    let steps = report.steps.iter().map(|step| step_case(&report.pipeline, step)).collect();
    suites.push((report.pipeline.clone(), steps));
    for step in &report.steps {
        let Some(evaluation) = &step.evaluation else { continue };
        let classname = format!("{}.{}", report.pipeline, step.id);
        let cases = evaluation
            .scenarios
            .iter()
            .map(|s| Case {
                name: s.name.clone(),
                classname: classname.clone(),
                time: Duration::ZERO,
                outcome: (!s.passed).then(|| {
                    let noise = s.noise();
                    let noise = if noise.is_empty() { noise } else { format!(" [{noise}]") };
                    let message = format!("{}/{} runs passed: {}{noise}", s.passes, s.runs, s.summary);
                    ("failure", message, s.detail.clone())
                }),
                stdout: "",
                stderr: "",
            })
            .collect();
        suites.push((format!("{}.{}", report.pipeline, step.id), cases));
    }

    let all: Vec<&Case<'_>> = suites.iter().flat_map(|(_, cases)| cases).collect();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    // The XSD allows no `skipped` count on <testsuites>, only on each suite.
    let totals = counts(&all);
    let totals = totals.split(" skipped=").next().unwrap_or_default();
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" {totals} time=\"{:.3}\">",
        escape(&format!("cleanroom {}", report.pipeline)),
        report.duration.as_secs_f64()
    );
    for (name, cases) in &suites {
        let refs: Vec<&Case<'_>> = cases.iter().collect();
        let time: Duration = cases.iter().map(|c| c.time).sum();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" {} time=\"{:.3}\">",
            escape(name),
            counts(&refs),
            time.as_secs_f64()
        );
        if let Some(termination) = report.termination {
            let _ = writeln!(
                out,
                "    <properties><property name=\"cleanroom.termination\" value=\"{}\"/></properties>",
                termination.as_str()
            );
        }
        for case in cases {
            write_case(&mut out, case);
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

fn step_case<'a>(pipeline: &str, step: &'a StepReport) -> Case<'a> {
    let message = step.score().or_else(|| step.reason.clone()).unwrap_or_else(|| match step.error_count() {
        1 => "1 finding".to_string(),
        n => format!("{n} findings"),
    });
    let body: Vec<String> = step
        .findings
        .iter()
        .map(|f| {
            let place = [f.path.clone(), f.line.map(|l| l.to_string()), f.column.map(|c| c.to_string())]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(":");
            format!("{place}: {} {} {}", f.severity, f.rule, f.message).trim_start_matches(": ").to_string()
        })
        .collect();
    let outcome = match step.status {
        StepStatus::Passed => None,
        // A person accepted the failure: not a failure for JUnit consumers,
        // and the note (in `system-out`) says who and why.
        StepStatus::Overridden => None,
        StepStatus::Failed => Some(("failure", message, body.join("\n"))),
        StepStatus::Error => Some(("error", message, body.join("\n"))),
        StepStatus::Skipped => Some(("skipped", message, String::new())),
    };
    Case {
        name: step.id.clone(),
        classname: format!("{pipeline}.{}", step.kind),
        time: step.duration,
        outcome,
        stdout: &step.stdout,
        stderr: &step.stderr,
    }
}

fn counts(cases: &[&Case<'_>]) -> String {
    let count = |kind: &str| cases.iter().filter(|c| c.outcome.as_ref().is_some_and(|o| o.0 == kind)).count();
    format!(
        "tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\"",
        cases.len(),
        count("failure"),
        count("error"),
        count("skipped")
    )
}

fn write_case(out: &mut String, case: &Case<'_>) {
    let _ = write!(
        out,
        "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\"",
        escape(&case.name),
        escape(&case.classname),
        case.time.as_secs_f64()
    );
    if case.outcome.is_none() && case.stdout.is_empty() && case.stderr.is_empty() {
        out.push_str("/>\n");
        return;
    }
    out.push_str(">\n");
    match &case.outcome {
        Some(("skipped", message, _)) => {
            let _ = writeln!(out, "      <skipped message=\"{}\"/>", escape(message));
        }
        Some((kind, message, body)) => {
            let _ = writeln!(
                out,
                "      <{kind} message=\"{}\" type=\"{kind}\">{}</{kind}>",
                escape(message),
                escape(body)
            );
        }
        None => {}
    }
    if !case.stdout.is_empty() {
        let _ = writeln!(out, "      <system-out>{}</system-out>", escape(case.stdout));
    }
    if !case.stderr.is_empty() {
        let _ = writeln!(out, "      <system-err>{}</system-err>", escape(case.stderr));
    }
    out.push_str("    </testcase>\n");
}

/// Escapes text for XML attributes and content, dropping characters XML 1.0
/// cannot carry at all (control characters other than tab and newlines):
/// plugin output is arbitrary.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || matches!(c, '\u{FFFE}' | '\u{FFFF}') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escape_keeps_xml_well_formed_for_any_plugin_output() {
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(escape("bell\u{7}\ttab"), "bell\u{FFFD}\ttab");
    }
}
