//! The HTML report: one run, or a workspace's whole history, as one page.
//!
//! [`render`] draws one run; [`history`] draws every recorded run of a
//! workspace and how its evaluators agree with people. Each is a single
//! self-contained page to open in a browser, attach to a ticket or archive
//! next to the run.
//!
//! A page loads nothing and runs nothing: its CSS is inline, its charts are
//! inline SVG, collapsible parts are `<details>`, and a
//! `Content-Security-Policy` meta refuses every other source, so the page
//! reads the same offline, years later, and even a rendering mistake cannot
//! fetch or execute anything. Every text a step, plugin, program or person
//! chose (output, file names, findings, feedback, decisions) reaches the
//! page through one function, `escape`.
//!
//! Like the terminal report ([`super::human`]), the page names a holdout
//! scenario and shows its summary only where the scenario failed, or its
//! runs or judges disagreed; a scenario's `detail` is never shown. Passing
//! scenarios are counted, not named.
//!
//! Sections carry stable ids and `data-*` attributes (`#run-status`,
//! `#steps tr[data-step]`, `#rounds`, `#satisfaction-chart`, `#scenarios`,
//! `#changes`, `#decisions`; `#history`, `#agreement`) so a browser test can
//! check the rendered page, not its markup.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::{self, Write};
use std::time::Duration;

use crate::plan::StepKind;
use crate::report::agreement::{Rate, Stats};
use crate::report::decisions::{ApprovalReport, Decision};
use crate::report::events::{Event, RecordedRun, Retrying};
use crate::report::human::{duration, plural, MAX_FINDINGS_SHOWN};
use crate::report::{
    AttemptReport, Change, EvaluationReport, FindingReport, RunReport, ScenarioReport, StepReport, StepStatus,
};

/// The page's policy: nothing but its own inline styles (and `data:`
/// images, of which it has none) may load.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/// Lines of each output stream kept under a step (the last ones).
const OUTPUT_TAIL_LINES: usize = 200;

/// Colours of chart series, in turn.
const PALETTE: [&str; 8] = ["#0969da", "#bf3989", "#1a7f37", "#bc4c00", "#8250df", "#0a7e8c", "#cf222e", "#57606a"];

/// The page's whole style sheet.
const STYLE: &str = "
:root{--ok:#1a7f37;--bad:#cf222e;--skip:#6e7781;--warn:#9a6700;--wait:#0969da;--line:#d0d7de;--soft:#f6f8fa;--ink:#1f2328}
*{box-sizing:border-box}
section{content-visibility:auto;contain-intrinsic-size:auto 1200px}
body{font:14px/1.45 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;color:var(--ink);background:#fff;margin:0 auto;max-width:1280px;padding:1rem 1.5rem 3rem}
h1{font-size:1.45rem;margin:.3rem 0 .6rem}
h2{font-size:1.15rem;margin:2rem 0 .6rem;padding-bottom:.25rem;border-bottom:1px solid var(--line)}
h3{font-size:1rem;margin:1rem 0 .4rem}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
pre{background:var(--soft);border:1px solid var(--line);border-radius:6px;padding:.5rem .7rem;margin:.4rem 0;overflow:auto;white-space:pre-wrap;overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%;margin:.4rem 0}
th,td{border-bottom:1px solid var(--line);padding:.3rem .55rem;text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:600}
caption{text-align:left;font-weight:600;padding:.3rem 0}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.scroll{overflow-x:auto}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:.5rem 0}
dt{color:var(--skip)}dd{margin:0}
.badge{display:inline-block;white-space:nowrap;padding:0 .5rem;border:1px solid currentColor;border-radius:1rem;font-size:.85em;font-weight:600}
.mark{font-size:.8em;color:var(--skip);border:1px dashed currentColor;border-radius:4px;padding:0 .3rem;margin-left:.4rem}
.mark.unjailed{color:var(--bad)}
.status-passed,.status-approved,.status-accepted,.yes,.all{color:var(--ok)}
.status-failed,.status-error,.status-rejected,.status-expired,.none{color:var(--bad)}
.status-skipped,.status-unfinished,.status-interrupted,.empty,.note,.no{color:var(--skip)}
.status-overridden,.some{color:var(--warn)}
.status-awaiting-approval,.status-awaiting{color:var(--wait)}
tr.more>td{background:#fcfcfd;padding-left:1.5rem}
ul{margin:.3rem 0;padding-left:1.3rem}
details{margin:.3rem 0}summary{cursor:pointer;color:var(--skip)}
.round,.stage{border-left:3px solid var(--line);padding-left:.8rem;margin:1rem 0}
.withheld li{color:var(--warn)}
.diff .add{color:#116329;background:#dafbe1}.diff .del{color:#82071e;background:#ffebe9}
.diff .hunk{color:#0550ae}.diff .file{font-weight:700}
td.why{min-width:12rem}th.num,.num.rate{white-space:normal}
svg.chart{max-width:100%;height:auto;font:12px system-ui,sans-serif}
svg .grid{stroke:#e6e8eb}svg .axis{stroke:#8c959f}svg .tick{fill:#57606a}svg .axis-label{fill:#1f2328;font-weight:600}
";

/// Text made inert for HTML; see [`escape`].
struct Escaped<'a>(&'a str);

/// `text` made inert in element content and in quoted attribute values:
/// `&`, `<`, `>`, `"` and `'` become character references, and every
/// character that could hide or reorder text (C0 and C1 controls other
/// than newline and tab, bidirectional overrides and isolates) becomes
/// visible `\u{..}` text, as [`super::escape_controls`] does for terminals.
/// The one way text from a report, an event or a person reaches a page.
fn escape(text: &str) -> Escaped<'_> {
    Escaped(text)
}

/// Whether `c` is drawn as `\u{..}` rather than as itself.
fn hidden(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Bytes, not chars: every character to replace is ASCII or starts
        // with one of three lead bytes, so most text is copied in one piece.
        let text = self.0;
        let bytes = text.as_bytes();
        let (mut start, mut at) = (0, 0);
        while let Some(&byte) = bytes.get(at) {
            let entity = match byte {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                b'\'' => "&#39;",
                b'\n' | b'\t' => {
                    at += 1;
                    continue;
                }
                // C0 controls and DEL; lead bytes of C1 controls (U+0080..),
                // U+061C and the U+200E.. / U+202A.. / U+2066.. marks.
                0..=0x1f | 0x7f | 0xc2 | 0xd8 | 0xe2 => "",
                _ => {
                    at += 1;
                    continue;
                }
            };
            let hidden_char = if entity.is_empty() {
                match text.get(at..).and_then(|rest| rest.chars().next()) {
                    Some(c) if hidden(c) => Some(c),
                    _ => {
                        at += 1;
                        continue;
                    }
                }
            } else {
                None
            };
            f.write_str(text.get(start..at).unwrap_or_default())?;
            if let Some(c) = hidden_char {
                write!(f, "\\u{{{:x}}}", u32::from(c))?;
                at += c.len_utf8();
            } else {
                f.write_str(entity)?;
                at += 1;
            }
            start = at;
        }
        f.write_str(text.get(start..).unwrap_or_default())
    }
}

/// `word` reduced to what a CSS class name may hold (`a-z`, `0-9`, `-`),
/// for status words that come from a journal rather than from an enum.
fn class_word(word: &str) -> String {
    word.chars()
        .filter_map(|c| {
            let c = c.to_ascii_lowercase();
            (c.is_ascii_alphanumeric() || c == '-').then_some(c)
        })
        .collect()
}

/// `passes` of `runs` as a whole percentage, `–` when nothing ran.
fn percent(passes: u32, runs: u32) -> String {
    if runs == 0 {
        "–".to_string()
    } else {
        format!("{:.0}%", ScenarioReport::share(passes, runs) * 100.0)
    }
}

/// The document's head and the opening `<body>`.
fn page_start(out: &mut String, title: &str, page: &str) {
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <meta name=\"generator\" content=\"cleanroom\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body data-page=\"{page}\">",
        escape(title)
    );
}

/// The closing of the document.
fn page_end(out: &mut String) {
    out.push_str(
        "<footer><p class=\"note\">Written by cleanroom. This page loads nothing and runs no script.</p></footer>\n</body>\n</html>\n",
    );
}

/// What a run's events say, indexed once so that each section looks things
/// up instead of scanning every event.
struct Index<'a> {
    /// Each step's report per round, from `step_finished` (the latest event
    /// for a step and round wins, as on resume).
    steps: HashMap<&'a str, BTreeMap<u32, &'a StepReport>>,
    /// Gate decisions per round, in the order first decided.
    gates: BTreeMap<u32, Vec<GateEvent<'a>>>,
    /// The stages sent back after each round.
    retries: BTreeMap<u32, &'a BTreeMap<String, Retrying>>,
}

/// A `gate_decision` event's fields.
struct GateEvent<'a> {
    gate: &'a str,
    status: StepStatus,
    reason: &'a str,
    retry: Option<&'a str>,
}

impl<'a> Index<'a> {
    /// Reads `events` once.
    fn new(events: &'a [Event]) -> Self {
        let mut index = Index { steps: HashMap::new(), gates: BTreeMap::new(), retries: BTreeMap::new() };
        let mut gate_at: HashMap<(u32, &'a str), usize> = HashMap::new();
        for event in events {
            match event {
                Event::StepFinished { step, round, report, .. } => {
                    index.steps.entry(step.as_str()).or_default().insert(*round, &**report);
                }
                Event::GateDecision { gate, round, status, reason, retry } => {
                    let decided = GateEvent { gate, status: *status, reason, retry: retry.as_deref() };
                    let list = index.gates.entry(*round).or_default();
                    match gate_at.entry((*round, gate.as_str())) {
                        Entry::Occupied(at) => {
                            if let Some(slot) = list.get_mut(*at.get()) {
                                *slot = decided;
                            }
                        }
                        Entry::Vacant(at) => {
                            at.insert(list.len());
                            list.push(decided);
                        }
                    }
                }
                Event::RoundFinished { round, retries } => {
                    index.retries.insert(*round, retries);
                }
                _ => {}
            }
        }
        index
    }

    /// `step`'s reports per round from its events, else its final report
    /// (with no round).
    fn reports<'s>(&self, step: &'s StepReport) -> Vec<(Option<u32>, &'s StepReport)>
    where
        'a: 's,
    {
        match self.steps.get(step.id.as_str()) {
            Some(rounds) if !rounds.is_empty() => {
                rounds.iter().map(|(round, report)| (Some(*round), *report)).collect()
            }
            _ => vec![(None, step)],
        }
    }

    /// An evaluator's results per round: from its `step_finished` events,
    /// else its final report (as one point, at the round it ran in).
    fn evaluations<'s>(&self, step: &'s StepReport) -> Vec<(u32, &'s EvaluationReport)>
    where
        'a: 's,
    {
        let mut found: Vec<(u32, &'s EvaluationReport)> = Vec::new();
        if let Some(rounds) = self.steps.get(step.id.as_str()) {
            found.extend(rounds.iter().filter_map(|(round, &report)| report.evaluation.as_ref().map(|e| (*round, e))));
        }
        if found.is_empty() {
            if let Some(evaluation) = &step.evaluation {
                found.push((step.attempt, evaluation));
            }
        }
        found
    }
}

/// Whether `step` is an evaluator (or reported like one).
fn is_evaluator(step: &StepReport) -> bool {
    step.kind == StepKind::Evaluator || step.evaluation.is_some()
}

/// One run as a self-contained page.
///
/// The page shows the run's header (status, termination, time, feedback),
/// every step, every round's gate decisions and feedback, each evaluator's
/// satisfaction per round as a chart, per-scenario pass rates, each
/// stage's changes and diffs, and the human decisions.
///
/// `events` are the run's journal events (empty when only the report is
/// at hand): they give the per-round views; without them the page shows
/// the final step reports alone.
#[must_use]
pub fn render(report: &RunReport, events: &[Event]) -> String {
    let report = report.escaped();
    let index = Index::new(events);
    let mut out = String::with_capacity(32 * 1024 + report.steps.len() * 1024);
    let title = format!("{} · {} · run {}", report.status.as_str(), report.pipeline, report.run_id);
    page_start(&mut out, &title, "run");
    header(&mut out, &report);
    steps(&mut out, &report);
    rounds(&mut out, &report, &index);
    satisfaction_chart(&mut out, &report, &index);
    scenarios(&mut out, &report, &index);
    changes(&mut out, &report, &index);
    decisions(&mut out, &report);
    page_end(&mut out);
    out
}

/// The run's name, status and how it ended.
fn header(out: &mut String, report: &RunReport) {
    let status = report.status.as_str();
    let pipeline = escape(&report.pipeline);
    let run_id = escape(&report.run_id);
    let _ = writeln!(
        out,
        "<header id=\"run\" data-pipeline=\"{pipeline}\" data-run-id=\"{run_id}\" data-status=\"{status}\">\n\
         <h1>{pipeline} <span id=\"run-status\" class=\"badge status-{status}\" data-status=\"{status}\">{status}</span></h1>\n\
         <dl class=\"facts\">\n<dt>run</dt><dd id=\"run-id\"><code>{run_id}</code></dd>"
    );
    let file = report.plan.pipeline_file.display().to_string();
    if !file.is_empty() {
        let _ = writeln!(out, "<dt>pipeline file</dt><dd><code>{}</code></dd>", escape(&file));
    }
    match report.termination {
        Some(termination) => {
            let word = termination.as_str();
            let _ = writeln!(out, "<dt>termination</dt><dd id=\"termination\" data-termination=\"{word}\">{word}</dd>");
        }
        None => out.push_str("<dt>termination</dt><dd id=\"termination\" class=\"note\">not recorded</dd>\n"),
    }
    let _ = writeln!(
        out,
        "<dt>duration</dt><dd id=\"duration\" data-ms=\"{}\">{}</dd>",
        report.duration.as_millis(),
        duration(report.duration)
    );
    let _ = writeln!(out, "<dt>steps</dt><dd id=\"step-counts\">{}</dd>", escape(&report.step_counts()));
    let level = report.feedback_level.as_str();
    let _ = writeln!(
        out,
        "<dt>feedback</dt><dd id=\"feedback\" data-level=\"{level}\" data-bits=\"{bits:.1}\">level <code>{level}</code>: \
         at most {bits:.1} bits of holdout-dependent information reached stages in this run</dd>\n</dl>",
        bits = report.feedback_bits
    );
    if let Some(escalation) = &report.escalation {
        let _ = writeln!(out, "<pre id=\"escalation\" class=\"escalation\">{}</pre>", escape(escalation));
    }
    out.push_str("</header>\n");
}

/// The steps table: one row per step, then a row with its findings and
/// output when it has any.
fn steps(out: &mut String, report: &RunReport) {
    out.push_str(
        "<section class=\"steps\">\n<h2>Steps</h2>\n<div class=\"scroll\"><table id=\"steps\">\n<thead><tr><th>step</th><th>kind</th>\
         <th>status</th><th class=\"num\">attempt</th><th class=\"num\">time</th><th>result</th></tr></thead>\n<tbody>\n",
    );
    for step in &report.steps {
        step_row(out, step);
        step_more(out, step);
    }
    out.push_str("</tbody>\n</table></div>\n</section>\n");
}

/// What the result column says, as the terminal report's step line does:
/// an evaluator's score, a count of findings, notes or changes, a note or
/// a reason.
fn step_detail(step: &StepReport) -> String {
    if let Some(score) = step.score() {
        return score;
    }
    match step.status {
        StepStatus::Passed => {
            if !step.findings.is_empty() {
                plural(step.findings.len(), "note")
            } else if !step.changes.is_empty() {
                plural(step.changes.len(), "change")
            } else {
                step.note.clone().unwrap_or_default()
            }
        }
        StepStatus::Failed | StepStatus::Overridden if !step.findings.is_empty() => {
            plural(step.error_count(), "finding")
        }
        _ => step.reason.clone().unwrap_or_default(),
    }
}

/// One step's row.
fn step_row(out: &mut String, step: &StepReport) {
    let id = escape(&step.id);
    let status = step.status.as_str();
    let kind = step.kind.as_str();
    let time = if step.status == StepStatus::Skipped { String::new() } else { duration(step.duration) };
    let _ = write!(
        out,
        "<tr data-step=\"{id}\" data-status=\"{status}\" data-kind=\"{kind}\" data-cached=\"{cached}\">\
         <td><code>{id}</code></td><td>{kind}</td><td><span class=\"badge status-{status}\">{status}</span></td>\
         <td class=\"num\">{attempt}</td><td class=\"num\" data-ms=\"{ms}\">{time}</td><td class=\"result\">{detail}",
        cached = step.cached,
        attempt = step.attempt,
        ms = step.duration.as_millis(),
        detail = escape(&step_detail(step)),
    );
    if let Some(remote) = &step.remote {
        let word = if remote.cached { "cached (remote)" } else { "remote" };
        let _ = write!(
            out,
            "<span class=\"mark remote\" title=\"action {} worker {}\">{word}</span>",
            escape(&remote.action),
            escape(&remote.worker)
        );
    } else if step.cached {
        out.push_str("<span class=\"mark cached\">cached</span>");
    }
    if step.unjailed.is_some() {
        out.push_str("<span class=\"mark unjailed\">UNJAILED</span>");
    }
    out.push_str("</td></tr>\n");
}

/// The row under a step with its findings (at most
/// [`MAX_FINDINGS_SHOWN`]), refused requests and, for a step that did not
/// pass, its output, when it has any.
fn step_more(out: &mut String, step: &StepReport) {
    // As the terminal report: the output of a step that did not pass (a
    // passing step's is in `--format json`), so a large run stays a page a
    // browser lays out in well under a second.
    let failing = matches!(step.status, StepStatus::Failed | StepStatus::Error | StepStatus::Overridden);
    let has_output =
        failing && (!step.stdout.trim().is_empty() || !step.stderr.trim().is_empty() || step.output_dropped_bytes > 0);
    if step.findings.is_empty() && step.denied_requests.is_empty() && step.unjailed.is_none() && !has_output {
        return;
    }
    let _ = write!(out, "<tr class=\"more\" data-step-detail=\"{}\"><td colspan=\"6\">", escape(&step.id));
    if let Some(why) = &step.unjailed {
        let _ = writeln!(out, "<p class=\"unjailed\">ran without the kernel jail: {}</p>", escape(why));
    }
    if !step.findings.is_empty() {
        let _ = writeln!(out, "<ul class=\"findings\" data-count=\"{}\">", step.findings.len());
        for found in step.findings.iter().take(MAX_FINDINGS_SHOWN) {
            finding(out, found);
        }
        if step.findings.len() > MAX_FINDINGS_SHOWN {
            let _ = writeln!(
                out,
                "<li class=\"more-findings note\">and {} more (all of them with --format json)</li>",
                step.findings.len() - MAX_FINDINGS_SHOWN
            );
        }
        out.push_str("</ul>\n");
    }
    if !step.denied_requests.is_empty() {
        out.push_str("<ul class=\"denied\">\n");
        for denied in &step.denied_requests {
            let _ = writeln!(out, "<li>network: refused {}</li>", escape(denied));
        }
        out.push_str("</ul>\n");
    }
    if has_output {
        output(out, step);
    }
    out.push_str("</td></tr>\n");
}

/// One finding, `path:line:col: severity rule message` as the terminal
/// report writes it.
fn finding(out: &mut String, found: &FindingReport) {
    let mut place = found.path.clone().unwrap_or_default();
    if let Some(line) = found.line {
        let _ = write!(place, ":{line}");
        if let Some(column) = found.column {
            let _ = write!(place, ":{column}");
        }
    }
    let class = match found.severity.as_str() {
        "error" => "error",
        "warning" => "warning",
        "info" => "info",
        _ => "other",
    };
    let _ = write!(
        out,
        "<li class=\"finding sev-{class}\" data-severity=\"{}\" data-rule=\"{}\">",
        escape(&found.severity),
        escape(&found.rule)
    );
    if !place.is_empty() {
        let _ = write!(out, "<code class=\"place\">{}</code>: ", escape(&place));
    }
    if found.severity != "error" {
        let _ = write!(out, "<span class=\"severity\">{}</span>: ", escape(&found.severity));
    }
    let _ = writeln!(out, "<code class=\"rule\">{}</code> {}</li>", escape(&found.rule), escape(&found.message));
}

/// `text` without trailing newlines, cut to its last `max_lines` lines, and
/// how many lines were cut.
fn tail(text: &str, max_lines: usize) -> (&str, usize) {
    let text = text.trim_end_matches('\n');
    let mut seen = 0;
    for (at, _) in text.rmatch_indices('\n') {
        seen += 1;
        if seen == max_lines {
            let cut = text.get(..=at).map_or(0, |head| head.matches('\n').count());
            return (text.get(at + 1..).unwrap_or_default(), cut);
        }
    }
    (text, 0)
}

/// A step's stdout and stderr (their last lines), collapsed.
fn output(out: &mut String, step: &StepReport) {
    out.push_str("<details class=\"output\"><summary>output");
    if step.output_dropped_bytes > 0 {
        let _ = write!(out, " ({} bytes dropped past the cap)", step.output_dropped_bytes);
    }
    out.push_str("</summary>\n");
    for (name, text) in [("stdout", step.stdout.as_str()), ("stderr", step.stderr.as_str())] {
        if text.trim().is_empty() {
            continue;
        }
        let (shown, cut) = tail(text, OUTPUT_TAIL_LINES);
        let _ = write!(out, "<pre class=\"{name}\" data-stream=\"{name}\">");
        if cut > 0 {
            let _ = writeln!(out, "<span class=\"note\">… {cut} earlier lines of {name} not shown</span>");
        }
        let _ = writeln!(out, "{}</pre>", escape(shown));
    }
    out.push_str("</details>\n");
}

/// Every round: its gate decisions, failing scenarios and the stages sent
/// back with their feedback. From the report's attempts, else from the
/// events.
fn rounds(out: &mut String, report: &RunReport, index: &Index<'_>) {
    if !report.attempts.is_empty() {
        let _ = writeln!(
            out,
            "<section id=\"rounds\" data-rounds=\"{}\" data-source=\"report\">\n<h2>Rounds</h2>",
            report.attempts.len()
        );
        for attempt in &report.attempts {
            attempt_round(out, attempt);
        }
    } else if !index.gates.is_empty() || !index.retries.is_empty() {
        let numbers: BTreeSet<u32> = index.gates.keys().chain(index.retries.keys()).copied().collect();
        let _ = writeln!(
            out,
            "<section id=\"rounds\" data-rounds=\"{}\" data-source=\"events\">\n<h2>Rounds</h2>",
            numbers.len()
        );
        for round in numbers {
            event_round(out, round, index);
        }
    } else {
        out.push_str(
            "<section id=\"rounds\" data-rounds=\"0\">\n<h2>Rounds</h2>\n\
             <p class=\"empty\">No gate sent a stage back: the run had one round.</p>\n",
        );
    }
    out.push_str("</section>\n");
}

/// The opening of round `round`'s block.
fn round_start(out: &mut String, round: u32, bits: f64) {
    let _ =
        writeln!(out, "<div class=\"round\" data-round=\"{round}\" data-bits=\"{bits:.1}\">\n<h3>Round {round}</h3>");
}

/// A table of gate decisions, from `(gate, status, reason, stage sent back)`.
fn gate_table<'g>(out: &mut String, gates: impl Iterator<Item = (&'g str, StepStatus, &'g str, Option<&'g str>)>) {
    let mut gates = gates.peekable();
    if gates.peek().is_none() {
        return;
    }
    out.push_str(
        "<table class=\"gates\">\n<thead><tr><th>gate</th><th>status</th><th>reason</th><th>sent back</th></tr></thead>\n<tbody>\n",
    );
    for (gate, status, reason, retry) in gates {
        let gate = escape(gate);
        let status = status.as_str();
        let _ = write!(
            out,
            "<tr data-gate=\"{gate}\" data-status=\"{status}\"><td><code>{gate}</code></td>\
             <td><span class=\"badge status-{status}\">{status}</span></td><td>{}</td><td>",
            escape(reason)
        );
        if let Some(stage) = retry {
            let _ = write!(out, "<code>{}</code>", escape(stage));
        }
        out.push_str("</td></tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
}

/// A stage sent back: its next attempt, the feedback lines it got and the
/// lines withheld from it.
fn retry_block(out: &mut String, stage: &str, attempt: u32, feedback: &[String], bits: f64, withheld: &[String]) {
    let stage = escape(stage);
    let _ = writeln!(
        out,
        "<div class=\"retry\" data-stage=\"{stage}\" data-attempt=\"{attempt}\" data-bits=\"{bits:.1}\">\n\
         <p>→ retry <code>{stage}</code>: attempt {attempt} with {lines} \
         (at most {bits:.1} bits of holdout-dependent information)</p>",
        lines = plural(feedback.len(), "feedback line"),
    );
    if !feedback.is_empty() {
        out.push_str("<ul class=\"feedback\">\n");
        for line in feedback {
            let _ = writeln!(out, "<li>{}</li>", escape(line));
        }
        out.push_str("</ul>\n");
    }
    if !withheld.is_empty() {
        out.push_str("<ul class=\"withheld\">\n");
        for line in withheld {
            let _ = writeln!(out, "<li>withheld: {}</li>", escape(line));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</div>\n");
}

/// One round from the report's attempts.
fn attempt_round(out: &mut String, attempt: &AttemptReport) {
    round_start(out, attempt.round, attempt.feedback_bits);
    gate_table(
        out,
        attempt.decisions.iter().map(|d| (d.gate.as_str(), d.status, d.reason.as_str(), d.retry.as_deref())),
    );
    if !attempt.failing_scenarios.is_empty() {
        out.push_str("<ul class=\"failing\">\n");
        for failing in &attempt.failing_scenarios {
            let _ = writeln!(
                out,
                "<li data-gate=\"{gate}\" data-scenario=\"{name}\"><code>{gate}</code>: {name}  {passes}/{runs} passed  {summary}</li>",
                gate = escape(&failing.gate),
                name = escape(&failing.scenario),
                passes = failing.passes,
                runs = failing.runs,
                summary = escape(&failing.summary),
            );
        }
        out.push_str("</ul>\n");
    }
    for retried in &attempt.retried {
        retry_block(out, &retried.stage, retried.attempt, &retried.feedback, retried.feedback_bits, &retried.withheld);
    }
    out.push_str("</div>\n");
}

/// One round from the events.
fn event_round(out: &mut String, round: u32, index: &Index<'_>) {
    let retries = index.retries.get(&round).copied();
    let bits = retries.map_or(0.0, |stages| stages.values().map(|retrying| retrying.feedback_bits).sum());
    round_start(out, round, bits);
    if let Some(gates) = index.gates.get(&round) {
        gate_table(out, gates.iter().map(|g| (g.gate, g.status, g.reason, g.retry)));
    }
    for (stage, retrying) in retries.into_iter().flatten() {
        retry_block(out, stage, retrying.attempt, &retrying.feedback, retrying.feedback_bits, &retrying.withheld);
    }
    out.push_str("</div>\n");
}

/// A point of a chart: `y` (0..1) at `x`, with its tooltip.
struct Point {
    x: u32,
    y: f64,
    title: String,
}

/// A series of a chart, with its dashed threshold if it has one.
struct Line {
    label: String,
    points: Vec<Point>,
    threshold: Option<f64>,
}

/// `y` within 0..1 (NaN as 0).
fn unit(y: f64) -> f64 {
    if y.is_nan() {
        0.0
    } else {
        y.clamp(0.0, 1.0)
    }
}

/// Chart geometry, in SVG user units.
const CHART_WIDTH: f64 = 720.0;
const CHART_LEFT: f64 = 56.0;
const CHART_RIGHT: f64 = 24.0;
const CHART_TOP: f64 = 16.0;
const PLOT_HEIGHT: f64 = 220.0;
/// Room under the plot for tick labels and the axis label.
const CHART_AXIS: f64 = 48.0;
const LEGEND_ROW: f64 = 18.0;
const PLOT_WIDTH: f64 = CHART_WIDTH - CHART_LEFT - CHART_RIGHT;
const PLOT_BOTTOM: f64 = CHART_TOP + PLOT_HEIGHT;

/// Where a chart's x values go.
struct Frame {
    min_x: u32,
    max_x: u32,
}

impl Frame {
    /// The horizontal position of `x` (the middle when all x are one).
    fn x(&self, x: u32) -> f64 {
        let span = self.max_x.saturating_sub(self.min_x);
        if span == 0 {
            CHART_LEFT + PLOT_WIDTH / 2.0
        } else {
            CHART_LEFT + f64::from(x.saturating_sub(self.min_x)) / f64::from(span) * PLOT_WIDTH
        }
    }

    /// The vertical position of `y` (0..1, 1 at the top).
    fn y(y: f64) -> f64 {
        CHART_TOP + (1.0 - unit(y)) * PLOT_HEIGHT
    }
}

/// An inline SVG line chart of `lines` (y = 0..1), with gridlines, axis
/// labels and a legend; `data-points` counts every point. Nothing when
/// `lines` has no point.
fn svg_chart(out: &mut String, id: &str, x_label: &str, caption: &str, lines: &[Line]) {
    let mut range: Option<(u32, u32)> = None;
    for point in lines.iter().flat_map(|l| &l.points) {
        range = Some(range.map_or((point.x, point.x), |(lo, hi)| (lo.min(point.x), hi.max(point.x))));
    }
    let Some((min_x, max_x)) = range else { return };
    let frame = Frame { min_x, max_x };
    let total: usize = lines.iter().map(|l| l.points.len()).sum();
    let rows = f64::from(u32::try_from(lines.len()).unwrap_or(u32::MAX));
    let height = PLOT_BOTTOM + CHART_AXIS + LEGEND_ROW * rows + 8.0;
    let id = escape(id);
    let _ = writeln!(
        out,
        "<svg id=\"{id}\" class=\"chart\" role=\"img\" aria-labelledby=\"{id}-title\" viewBox=\"0 0 {CHART_WIDTH} {height}\" \
         width=\"{CHART_WIDTH}\" height=\"{height}\" data-points=\"{total}\" data-series=\"{}\">\n<title id=\"{id}-title\">{}</title>",
        lines.len(),
        escape(caption)
    );
    chart_axes(out, &frame, x_label);
    for (i, line) in lines.iter().enumerate() {
        chart_series(out, &frame, line, PALETTE[i % PALETTE.len()]);
    }
    out.push_str("<g class=\"legend\">\n");
    let mut y = PLOT_BOTTOM + CHART_AXIS + 4.0;
    for (i, line) in lines.iter().enumerate() {
        let _ = writeln!(
            out,
            "<rect x=\"{CHART_LEFT}\" y=\"{y:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            PALETTE[i % PALETTE.len()],
            CHART_LEFT + 18.0,
            y + 10.5,
            escape(&line.label)
        );
        y += LEGEND_ROW;
    }
    out.push_str("</g>\n</svg>\n");
}

/// Gridlines at every quarter, both axes, tick labels (at most about a
/// dozen on x) and the axis labels.
fn chart_axes(out: &mut String, frame: &Frame, x_label: &str) {
    let right = CHART_LEFT + PLOT_WIDTH;
    for quarter in 0..=4u32 {
        let value = f64::from(quarter) / 4.0;
        let y = Frame::y(value);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{CHART_LEFT}\" y1=\"{y:.1}\" x2=\"{right:.1}\" y2=\"{y:.1}\"/>\
             <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{value:.2}</text>",
            CHART_LEFT - 6.0,
            y + 4.0,
        );
    }
    let _ = writeln!(
        out,
        "<line class=\"axis\" x1=\"{CHART_LEFT}\" y1=\"{CHART_TOP}\" x2=\"{CHART_LEFT}\" y2=\"{PLOT_BOTTOM}\"/>\
         <line class=\"axis\" x1=\"{CHART_LEFT}\" y1=\"{PLOT_BOTTOM}\" x2=\"{right:.1}\" y2=\"{PLOT_BOTTOM}\"/>"
    );
    let span = frame.max_x.saturating_sub(frame.min_x);
    let step = usize::try_from(span.div_ceil(12).max(1)).unwrap_or(1);
    for x in (frame.min_x..=frame.max_x).step_by(step) {
        let _ = writeln!(
            out,
            "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{x}</text>",
            frame.x(x),
            PLOT_BOTTOM + 16.0
        );
    }
    let _ = writeln!(
        out,
        "<text class=\"axis-label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
         <text class=\"axis-label\" transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\">satisfaction</text>",
        CHART_LEFT + PLOT_WIDTH / 2.0,
        PLOT_BOTTOM + 36.0,
        escape(x_label),
        CHART_TOP + PLOT_HEIGHT / 2.0
    );
}

/// One series: its dashed threshold, its line, and a circle with a
/// tooltip per point.
fn chart_series(out: &mut String, frame: &Frame, line: &Line, colour: &str) {
    let label = escape(&line.label);
    let _ = writeln!(out, "<g class=\"series\" data-series=\"{label}\" data-points=\"{}\">", line.points.len());
    if let Some(threshold) = line.threshold {
        let y = Frame::y(threshold);
        let _ = writeln!(
            out,
            "<line class=\"threshold\" x1=\"{CHART_LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{colour}\" \
             stroke-dasharray=\"6 4\" data-threshold=\"{threshold:.2}\"><title>{label}: threshold {threshold:.2}</title></line>",
            CHART_LEFT + PLOT_WIDTH
        );
    }
    let _ = write!(out, "<polyline fill=\"none\" stroke-width=\"2\" stroke=\"{colour}\" points=\"");
    for point in &line.points {
        let _ = write!(out, "{:.1},{:.1} ", frame.x(point.x), Frame::y(point.y));
    }
    out.push_str("\"/>\n");
    // A long series is a line: a marker per point would crowd the chart
    // and cost the browser more than the rest of the page.
    if line.points.len() > MARKED_POINTS {
        if let Some(last) = line.points.last() {
            let _ = writeln!(out, "<title>{label}: {} points, last {}</title>", line.points.len(), escape(&last.title));
        }
        out.push_str("</g>\n");
        return;
    }
    for point in &line.points {
        let _ = writeln!(
            out,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{colour}\" data-x=\"{}\" data-y=\"{:.4}\"><title>{}</title></circle>",
            frame.x(point.x),
            Frame::y(point.y),
            point.x,
            unit(point.y),
            escape(&point.title)
        );
    }
    out.push_str("</g>\n");
}

/// Series longer than this are drawn without a marker per point.
const MARKED_POINTS: usize = 25;

/// Each evaluator's satisfaction per round, as a chart.
fn satisfaction_chart(out: &mut String, report: &RunReport, index: &Index<'_>) {
    out.push_str("<section id=\"satisfaction\">\n<h2>Satisfaction per round</h2>\n");
    let mut lines = Vec::new();
    for step in report.steps.iter().filter(|s| is_evaluator(s)) {
        let evaluations = index.evaluations(step);
        let Some(&(_, last)) = evaluations.last() else { continue };
        let points = evaluations
            .iter()
            .map(|&(round, e)| Point {
                x: round,
                y: e.satisfaction,
                title: format!(
                    "{} round {round}: satisfaction {:.2} ({}/{}), threshold {:.2}",
                    step.id,
                    e.satisfaction,
                    e.passed_count(),
                    e.scenarios.len(),
                    e.threshold
                ),
            })
            .collect();
        lines.push(Line { label: step.id.clone(), points, threshold: Some(last.threshold) });
    }
    if lines.is_empty() {
        out.push_str("<p class=\"empty\">No evaluator ran.</p>\n");
    } else {
        svg_chart(out, "satisfaction-chart", "round", "Each evaluator's satisfaction per round", &lines);
        out.push_str("<p class=\"note\">Dashed lines: each evaluator's threshold.</p>\n");
    }
    out.push_str("</section>\n");
}

/// A scenario across rounds: `(passes, runs)` per round, and its latest
/// report that the terminal report would show (failed, or its runs or
/// judges disagreed), if any.
struct ScenarioRow<'a> {
    name: &'a str,
    cells: BTreeMap<u32, (u32, u32)>,
    shown: Option<&'a ScenarioReport>,
}

/// Whether the terminal report shows `scenario` (and so may this page).
fn shown(scenario: &ScenarioReport) -> bool {
    !scenario.passed || !scenario.noise().is_empty()
}

/// Per evaluator, each shown scenario's passes per round and in total.
fn scenarios(out: &mut String, report: &RunReport, index: &Index<'_>) {
    out.push_str(
        "<section id=\"scenarios\">\n<h2>Scenario pass rates</h2>\n<p class=\"note\">As in the terminal report, only \
         scenarios that failed, or whose runs or judges disagreed, are named; the others are counted.</p>\n",
    );
    let mut any = false;
    for step in report.steps.iter().filter(|s| is_evaluator(s)) {
        let rounds = index.evaluations(step);
        if rounds.is_empty() {
            continue;
        }
        any = true;
        scenario_table(out, &step.id, &rounds);
    }
    if !any {
        out.push_str("<p class=\"empty\">No evaluator ran.</p>\n");
    }
    out.push_str("</section>\n");
}

/// One evaluator's scenarios (rows) by round (columns).
fn scenario_table(out: &mut String, evaluator: &str, rounds: &[(u32, &EvaluationReport)]) {
    let mut rows: Vec<ScenarioRow<'_>> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    for &(round, evaluation) in rounds {
        for scenario in &evaluation.scenarios {
            let i = *at.entry(scenario.name.as_str()).or_insert_with(|| {
                rows.push(ScenarioRow { name: &scenario.name, cells: BTreeMap::new(), shown: None });
                rows.len() - 1
            });
            if let Some(row) = rows.get_mut(i) {
                row.cells.insert(round, (scenario.passes, scenario.runs));
                if shown(scenario) {
                    row.shown = Some(scenario);
                }
            }
        }
    }
    let id = escape(evaluator);
    let _ = write!(
        out,
        "<div class=\"scroll\"><table class=\"scenario-rates\" data-evaluator=\"{id}\">\n<caption><code>{id}</code></caption>\n\
         <thead><tr><th>scenario</th>"
    );
    // Past SCENARIO_ROUNDS rounds, the earlier ones share one column (the
    // total still counts them): a table a person can read, and a page a
    // browser lays out quickly.
    let (folded, rounds) = rounds.split_at(rounds.len().saturating_sub(SCENARIO_ROUNDS));
    if let (Some((first, _)), Some((last, _))) = (folded.first(), folded.last()) {
        let _ = write!(out, "<th class=\"num\" data-rounds=\"{first}-{last}\">rounds {first}–{last}</th>");
    }
    for (round, _) in rounds {
        let _ = write!(out, "<th class=\"num\" data-round=\"{round}\">round {round}</th>");
    }
    out.push_str("<th class=\"num\">total</th><th>summary</th></tr></thead>\n<tbody>\n");
    let mut unnamed = 0usize;
    for row in &rows {
        let Some(latest) = row.shown else {
            unnamed += 1;
            continue;
        };
        let (mut passes, mut runs) = (0u32, 0u32);
        for &(p, r) in row.cells.values() {
            passes = passes.saturating_add(p);
            runs = runs.saturating_add(r);
        }
        let name = escape(row.name);
        let _ = write!(
            out,
            "<tr data-scenario=\"{name}\" data-passes=\"{passes}\" data-runs=\"{runs}\"><td><code>{name}</code></td>"
        );
        if !folded.is_empty() {
            let (mut p, mut r) = (0u32, 0u32);
            for (round, _) in folded {
                if let Some(&(fp, fr)) = row.cells.get(round) {
                    p = p.saturating_add(fp);
                    r = r.saturating_add(fr);
                }
            }
            let _ = write!(out, "<td class=\"num {}\">{p}/{r}</td>", pass_class(p, r));
        }
        for (round, _) in rounds {
            match row.cells.get(round) {
                Some(&(p, r)) => {
                    let _ = write!(out, "<td class=\"num {}\" data-round=\"{round}\">{p}/{r}</td>", pass_class(p, r));
                }
                None => {
                    let _ = write!(out, "<td class=\"num note\" data-round=\"{round}\">–</td>");
                }
            }
        }
        let noise = latest.noise();
        let _ = write!(
            out,
            "<td class=\"num total\">{} ({passes}/{runs})</td><td>{}",
            percent(passes, runs),
            escape(&latest.summary)
        );
        if !noise.is_empty() {
            let _ = write!(out, " <span class=\"note\">[{}]</span>", escape(&noise));
        }
        out.push_str("</td></tr>\n");
    }
    if unnamed > 0 {
        let _ = writeln!(
            out,
            "<tr class=\"unnamed\" data-unnamed=\"{unnamed}\"><td colspan=\"{}\" class=\"note\">{} passed in every round \
             they ran, their runs agreeing (not named, as in the terminal report)</td></tr>",
            rounds.len() + 3 + usize::from(!folded.is_empty()),
            plural(unnamed, "more scenario")
        );
    }
    out.push_str("</tbody>\n</table></div>\n");
}

/// Rounds a scenario table shows one by one; earlier rounds share a column.
const SCENARIO_ROUNDS: usize = 12;
/// A stage's latest attempts whose diffs are shown; earlier attempts list
/// their changes only.
const DIFFED_ATTEMPTS: usize = 10;

/// `all`, `none` or `some`: how many of `runs` runs passed, as a class.
fn pass_class(passes: u32, runs: u32) -> &'static str {
    if passes == runs {
        "all"
    } else if passes == 0 {
        "none"
    } else {
        "some"
    }
}

/// Each stage's changes and diff, per round when events tell them.
fn changes(out: &mut String, report: &RunReport, index: &Index<'_>) {
    out.push_str("<section id=\"changes\">\n<h2>Stage changes</h2>\n");
    let mut any = false;
    for step in report.steps.iter().filter(|s| s.kind == StepKind::Stage) {
        any = true;
        let id = escape(&step.id);
        let status = step.status.as_str();
        let _ = writeln!(
            out,
            "<div class=\"stage\" data-stage=\"{id}\" data-status=\"{status}\">\n\
             <h3><code>{id}</code> <span class=\"badge status-{status}\">{status}</span></h3>"
        );
        let reports = index.reports(step);
        let (earlier, latest) = reports.split_at(reports.len().saturating_sub(DIFFED_ATTEMPTS));
        earlier_attempts(out, earlier);
        for (i, (round, stage)) in latest.iter().enumerate() {
            stage_attempt(out, *round, stage, i + 1 == latest.len());
        }
        out.push_str("</div>\n");
    }
    if !any {
        out.push_str("<p class=\"empty\">No stage in this run.</p>\n");
    }
    out.push_str("</section>\n");
}

/// A stage's attempts before its latest [`DIFFED_ATTEMPTS`], one line each
/// (round, attempt, status, changes), folded: the run's journal keeps their diffs.
fn earlier_attempts(out: &mut String, earlier: &[(Option<u32>, &StepReport)]) {
    if earlier.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "<details class=\"earlier\" data-attempts=\"{}\"><summary>{} before these (their diffs are in the run's journal)</summary><pre class=\"earlier\">",
        earlier.len(),
        plural(earlier.len(), "attempt")
    );
    for (round, stage) in earlier {
        if let Some(round) = round {
            let _ = write!(out, "round {round}, ");
        }
        let changes: Vec<String> = stage.changes.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "attempt {}: {}  {}",
            stage.attempt,
            stage.status.as_str(),
            escape(&if changes.is_empty() { "no changes".to_string() } else { changes.join(", ") })
        );
    }
    out.push_str("</pre></details>\n");
}

/// One attempt of a stage: its changes and its diff, collapsed unless it
/// is the latest.
fn stage_attempt(out: &mut String, round: Option<u32>, stage: &StepReport, open: bool) {
    let status = stage.status.as_str();
    out.push_str("<details class=\"attempt\"");
    if let Some(round) = round {
        let _ = write!(out, " data-round=\"{round}\"");
    }
    let _ = write!(out, " data-attempt=\"{}\" data-status=\"{status}\"", stage.attempt);
    if open {
        out.push_str(" open");
    }
    out.push_str("><summary>");
    if let Some(round) = round {
        let _ = write!(out, "round {round}, ");
    }
    let _ = writeln!(out, "attempt {}: {status}, {}</summary>", stage.attempt, plural(stage.changes.len(), "change"));
    if !stage.changes.is_empty() {
        out.push_str("<ul class=\"change-list\">\n");
        for change in &stage.changes {
            let class = match change {
                Change::Written(_) => "written",
                Change::Removed(_) => "removed",
                Change::IgnoredLink(_) => "link",
            };
            let _ = writeln!(out, "<li class=\"{class}\"><code>{}</code></li>", escape(&change.to_string()));
        }
        out.push_str("</ul>\n");
    }
    match &stage.diff {
        Some(diff) if !diff.is_empty() => diff_block(out, diff),
        _ if stage.changes.is_empty() => out.push_str("<p class=\"empty\">No changes.</p>\n"),
        _ => {}
    }
    out.push_str("</details>\n");
}

/// A unified diff, each line in a span classed for colour: `add` (`+`),
/// `del` (`-`), `hunk` (`@@`), `file` (the `---`/`+++` header pair and
/// `diff ` lines), `ctx` otherwise.
fn diff_block(out: &mut String, diff: &str) {
    out.push_str("<pre class=\"diff\">");
    let mut lines = diff.lines().peekable();
    let mut header_next = false;
    while let Some(line) = lines.next() {
        let class = if header_next {
            header_next = false;
            "file"
        } else if line.starts_with("--- ") && lines.peek().is_some_and(|next| next.starts_with("+++ ")) {
            header_next = true;
            "file"
        } else if line.starts_with("diff ") {
            "file"
        } else if line.starts_with("@@") {
            "hunk"
        } else if line.starts_with('+') {
            "add"
        } else if line.starts_with('-') {
            "del"
        } else {
            "ctx"
        };
        let _ = writeln!(out, "<span class=\"{class}\">{}</span>", escape(line));
    }
    out.push_str("</pre>\n");
}

/// The approval gates and every human decision.
fn decisions(out: &mut String, report: &RunReport) {
    out.push_str("<section id=\"decisions\">\n<h2>Human decisions</h2>\n");
    if report.approvals.is_empty() && report.decisions.is_empty() {
        out.push_str("<p class=\"empty\">No approval gates and no human decisions.</p>\n");
    }
    if !report.approvals.is_empty() {
        out.push_str(
            "<div class=\"scroll\"><table id=\"approvals\">\n<caption>Approval gates</caption>\n<thead><tr><th>approval</th>\
             <th>status</th><th>needs</th><th>approvers</th><th>requested</th><th>deadline</th><th>decision</th>\
             <th>note</th></tr></thead>\n<tbody>\n",
        );
        for approval in &report.approvals {
            approval_row(out, approval);
        }
        out.push_str("</tbody>\n</table></div>\n");
    }
    if !report.decisions.is_empty() {
        out.push_str(
            "<div class=\"scroll\"><table id=\"decision-log\">\n<caption>Decisions, in the order they were made</caption>\n\
             <thead><tr><th>kind</th><th>target</th><th>decision</th><th>by</th><th>account</th><th>at</th>\
             <th>reason</th></tr></thead>\n<tbody>\n",
        );
        for decision in &report.decisions {
            decision_row(out, decision);
        }
        out.push_str("</tbody>\n</table></div>\n");
    }
    out.push_str("</section>\n");
}

/// `items` as code, comma-separated, or `none_word` when there are none.
fn code_list(out: &mut String, items: &[String], none_word: &str) {
    if items.is_empty() {
        let _ = write!(out, "<span class=\"note\">{none_word}</span>");
    }
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "<code>{}</code>", escape(item));
    }
}

/// One approval gate's row.
fn approval_row(out: &mut String, approval: &ApprovalReport) {
    let name = escape(&approval.name);
    let status = approval.status.as_str();
    let _ = write!(
        out,
        "<tr data-approval=\"{name}\" data-status=\"{status}\"><td><code>{name}</code></td>\
         <td><span class=\"badge status-{status}\">{status}</span></td><td>"
    );
    code_list(out, &approval.needs, "nothing");
    out.push_str("</td><td>");
    code_list(out, &approval.approvers, "anyone");
    let _ = write!(
        out,
        "</td><td><time>{}</time></td><td><time>{}</time></td><td class=\"decision\">",
        escape(approval.requested_at.as_deref().unwrap_or_default()),
        escape(approval.deadline.as_deref().unwrap_or_default())
    );
    if let Some(decision) = &approval.decision {
        let _ = write!(
            out,
            "<span class=\"status-{word}\">{word}</span> by <span class=\"by\">{}</span> at <time>{}</time>",
            escape(&decision.by),
            escape(&decision.at),
            word = decision.word()
        );
        if !decision.reason.is_empty() {
            let _ = write!(out, ": <span class=\"reason\">{}</span>", escape(&decision.reason));
        }
    }
    let _ = writeln!(out, "</td><td>{}</td></tr>", escape(approval.note.as_deref().unwrap_or_default()));
}

/// One human decision's row.
fn decision_row(out: &mut String, decision: &Decision) {
    let kind = decision.kind.as_str();
    let word = decision.word();
    let target = escape(&decision.target);
    let _ = writeln!(
        out,
        "<tr data-decision=\"{kind}\" data-word=\"{word}\" data-target=\"{target}\" data-accepted=\"{accepted}\">\
         <td>{kind}</td><td><code>{target}</code></td><td><span class=\"badge status-{word}\">{word}</span></td>\
         <td class=\"by\">{by}</td><td class=\"user\">{user}</td><td><time>{at}</time></td><td class=\"reason\">{reason}</td></tr>",
        accepted = decision.accepted,
        by = escape(&decision.by),
        user = escape(&decision.user),
        at = escape(&decision.at),
        reason = escape(&decision.reason),
    );
}

/// A recorded run, as the history lists it.
struct RunSummary<'a> {
    run_id: &'a str,
    pipeline: &'a str,
    /// The report's status word, else one derived from the events.
    status: &'a str,
    duration: Option<Duration>,
    /// Each evaluator's final satisfaction, in plan order (id order when
    /// told by events alone).
    satisfaction: Vec<(&'a str, f64)>,
}

impl<'a> RunSummary<'a> {
    /// What `run`'s report says, else what its events say: `awaiting-approval`
    /// or `interrupted` when it stopped so, the `run_finished` status when it
    /// finished without a readable report, `unfinished` otherwise.
    fn of(run: &'a RecordedRun) -> Self {
        if let Some(report) = &run.report {
            return RunSummary {
                run_id: &run.run_id,
                pipeline: &report.pipeline,
                status: report.status.as_str(),
                duration: Some(report.duration),
                satisfaction: report
                    .steps
                    .iter()
                    .filter_map(|s| s.evaluation.as_ref().map(|e| (s.id.as_str(), e.satisfaction)))
                    .collect(),
            };
        }
        let mut pipeline = "";
        let mut status = "unfinished";
        let mut last: BTreeMap<&'a str, f64> = BTreeMap::new();
        for event in &run.events {
            match event {
                Event::RunStarted { pipeline: name, .. } => {
                    pipeline = name;
                    status = "unfinished";
                }
                Event::StepStarted { .. } => status = "unfinished",
                Event::StepFinished { step, report, .. } => {
                    status = "unfinished";
                    if let Some(evaluation) = &report.evaluation {
                        last.insert(step, evaluation.satisfaction);
                    }
                }
                Event::RunFinished { status: word, .. } => status = word,
                Event::RunAwaiting { .. } => status = "awaiting-approval",
                Event::RunInterrupted { .. } => status = "interrupted",
                _ => {}
            }
        }
        RunSummary { run_id: &run.run_id, pipeline, status, duration: None, satisfaction: last.into_iter().collect() }
    }
}

/// Every recorded run (newest first) and the agreement figures, as one page.
///
/// It lists each run with its status, time and each evaluator's final
/// satisfaction, charts satisfaction over the runs, and shows how each
/// evaluator's verdicts agree with people's (`stats`).
///
/// A rate over too few decisions shows as "not yet known", never as 0 %.
#[must_use]
pub fn history(runs: &[RecordedRun], stats: &Stats) -> String {
    let mut order: Vec<&RecordedRun> = runs.iter().collect();
    order.sort_by(|a, b| b.run_id.as_str().cmp(a.run_id.as_str()));
    let summaries: Vec<RunSummary<'_>> = order.iter().copied().map(RunSummary::of).collect();
    let mut out = String::with_capacity(16 * 1024 + summaries.len() * 512);
    page_start(&mut out, "cleanroom · run history", "history");
    let _ = write!(
        out,
        "<header id=\"overview\" data-runs=\"{}\">\n<h1>Run history</h1>\n<p>{}, newest first; {} read for the agreement figures",
        summaries.len(),
        plural(summaries.len(), "recorded run"),
        stats.runs
    );
    if let Some(since) = &stats.since {
        let _ = write!(out, " (runs since <time>{}</time>)", escape(since));
    }
    out.push_str(".</p>\n");
    if !stats.unreadable.is_empty() {
        out.push_str("<p class=\"note\">Left out because their journal did not verify:</p>\n<ul id=\"unreadable\">\n");
        for why in &stats.unreadable {
            let _ = writeln!(out, "<li>{}</li>", escape(why));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</header>\n");
    history_table(&mut out, &summaries);
    history_chart(&mut out, &summaries);
    agreement(&mut out, stats);
    page_end(&mut out);
    out
}

/// The runs table.
fn history_table(out: &mut String, summaries: &[RunSummary<'_>]) {
    out.push_str(
        "<section class=\"runs\">\n<h2>Runs</h2>\n<div class=\"scroll\"><table id=\"history\">\n<thead><tr><th>run</th>\
         <th>pipeline</th><th>status</th><th class=\"num\">time</th><th>final satisfaction</th></tr></thead>\n<tbody>\n",
    );
    if summaries.is_empty() {
        out.push_str("<tr class=\"empty\"><td colspan=\"5\">No recorded runs.</td></tr>\n");
    }
    for run in summaries {
        let run_id = escape(run.run_id);
        let pipeline = escape(run.pipeline);
        let status = escape(run.status);
        let _ = write!(
            out,
            "<tr data-run=\"{run_id}\" data-status=\"{status}\" data-pipeline=\"{pipeline}\"><td><code>{run_id}</code></td>\
             <td>{pipeline}{shown}</td><td><span class=\"badge status-{class}\">{status}</span></td><td class=\"num\">{time}</td><td>",
            shown = if run.pipeline.is_empty() { "<span class=\"note\">unknown</span>" } else { "" },
            class = class_word(run.status),
            time = run.duration.map_or_else(String::new, duration),
        );
        for (i, (evaluator, satisfaction)) in run.satisfaction.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let evaluator = escape(evaluator);
            let _ = write!(
                out,
                "<span class=\"sat\" data-for=\"{evaluator}\" data-value=\"{satisfaction:.4}\"><code>{evaluator}</code> {satisfaction:.2}</span>"
            );
        }
        out.push_str("</td></tr>\n");
    }
    out.push_str("</tbody>\n</table></div>\n</section>\n");
}

/// Each evaluator's final satisfaction over the runs, oldest first.
fn history_chart(out: &mut String, summaries: &[RunSummary<'_>]) {
    out.push_str("<section class=\"trend\">\n<h2>Satisfaction over runs</h2>\n");
    let pipelines: BTreeSet<&str> = summaries.iter().map(|s| s.pipeline).collect();
    let mut series: BTreeMap<(&str, &str), Vec<Point>> = BTreeMap::new();
    for (i, run) in summaries.iter().rev().enumerate() {
        let x = u32::try_from(i + 1).unwrap_or(u32::MAX);
        for &(evaluator, satisfaction) in &run.satisfaction {
            series.entry((run.pipeline, evaluator)).or_default().push(Point {
                x,
                y: satisfaction,
                title: format!("{evaluator} in run {}: satisfaction {satisfaction:.2}", run.run_id),
            });
        }
    }
    let lines: Vec<Line> = series
        .into_iter()
        .map(|((pipeline, evaluator), points)| Line {
            label: match (pipelines.len() > 1, pipeline.is_empty()) {
                (false, _) => evaluator.to_string(),
                (true, false) => format!("{pipeline}: {evaluator}"),
                (true, true) => format!("(unknown pipeline): {evaluator}"),
            },
            points,
            threshold: None,
        })
        .collect();
    if lines.is_empty() {
        out.push_str("<p class=\"empty\">No evaluator has judged a recorded run yet.</p>\n");
    } else {
        svg_chart(out, "history-chart", "run (oldest first)", "Each evaluator's final satisfaction per run", &lines);
    }
    out.push_str("</section>\n");
}

/// `count of of` as a percentage, or "not yet known" while too few
/// decisions count (never 0 %).
fn rate_cell(out: &mut String, rate: &Rate) {
    let _ = write!(
        out,
        "<td class=\"num rate\" data-known=\"{}\" data-count=\"{}\" data-of=\"{}\">",
        rate.value.is_some(),
        rate.count,
        rate.of
    );
    match rate.value {
        Some(value) => {
            let _ = write!(out, "{:.1}% ({} of {})", value * 100.0, rate.count, rate.of);
        }
        None => {
            let _ = write!(out, "<span class=\"note\">not yet known ({} of {})</span>", rate.count, rate.of);
        }
    }
    out.push_str("</td>");
}

/// An optional figure, or "not yet known".
fn known(value: Option<f64>, as_percent: bool) -> String {
    match value {
        Some(v) if as_percent => format!("{:.1}%", v * 100.0),
        Some(v) => format!("{v:.2}"),
        None => "not yet known".to_string(),
    }
}

/// The agreement figures table.
fn agreement(out: &mut String, stats: &Stats) {
    let t = &stats.thresholds;
    let _ = writeln!(
        out,
        "<section class=\"agreement\">\n<h2>Agreement with people</h2>\n<p class=\"note\">An evaluator may merge on its \
         own word when its false-pass rate is below {:.1}% and its override rate below {:.1}%, each over at least {} \
         decisions.</p>\n<div class=\"scroll\"><table id=\"agreement\" data-runs=\"{}\">\n<thead><tr><th>pipeline</th>\
         <th>evaluator</th><th class=\"num\">runs</th><th class=\"num\">pass rate</th><th class=\"num\">mean satisfaction</th>\
         <th class=\"num\">override rate</th><th class=\"num\">false-pass rate</th><th class=\"num\">false-fail rate</th>\
         <th class=\"num\">kappa</th><th class=\"num\">comparable</th><th>auto-merge</th><th class=\"why\">why</th></tr></thead>\n<tbody>",
        t.max_false_pass * 100.0,
        t.max_override_rate * 100.0,
        t.min_decisions,
        stats.runs
    );
    if stats.evaluators.is_empty() {
        out.push_str("<tr class=\"empty\"><td colspan=\"12\">No evaluator has judged a recorded run yet.</td></tr>\n");
    }
    for e in &stats.evaluators {
        let evaluator = escape(&e.evaluator);
        let pipeline = escape(&e.pipeline);
        let _ = write!(
            out,
            "<tr data-evaluator=\"{evaluator}\" data-pipeline=\"{pipeline}\" data-eligible=\"{eligible}\"><td>{pipeline}</td>\
             <td><code>{evaluator}</code></td><td class=\"num\">{runs}</td><td class=\"num\">{pass}</td><td class=\"num\">{mean}</td>",
            eligible = e.auto_merge_eligible,
            runs = e.runs,
            pass = known(e.pass_rate, true),
            mean = known(e.mean_satisfaction, false),
        );
        rate_cell(out, &e.override_rate);
        rate_cell(out, &e.false_pass_rate);
        rate_cell(out, &e.false_fail_rate);
        let kappa = match e.kappa {
            Some(k) => format!("{k:.2}"),
            None if e.kappa_undefined => "undefined (each side always gave one answer)".to_string(),
            None => "not yet known".to_string(),
        };
        let (class, word) = if e.auto_merge_eligible { ("yes", "eligible") } else { ("no", "not eligible") };
        let _ = writeln!(
            out,
            "<td class=\"num\">{kappa}</td><td class=\"num\">{}</td><td><span class=\"badge {class}\">{word}</span></td><td class=\"why\">{}</td></tr>",
            e.comparable,
            escape(&e.auto_merge_reason)
        );
    }
    out.push_str("</tbody>\n</table></div>\n</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::governance::stats::{EvaluatorStats, Thresholds};
    use crate::governance::{ApprovalStatus, DecisionKind};
    use crate::report::{GateScore, Retried};

    const SCRIPT: &str = "<script>alert(1)</script>";
    const IMG: &str = "\"><img src=x onerror=alert(2)>";

    fn scenario(name: &str, passes: u32, runs: u32, summary: &str) -> ScenarioReport {
        ScenarioReport {
            name: name.into(),
            runs,
            passes,
            passed: passes == runs,
            summary: summary.into(),
            detail: "DETAIL-NEVER-SHOWN".into(),
            pass_rate: ScenarioReport::share(passes, runs),
            run_disagreement: ScenarioReport::pairwise_disagreement(passes, runs),
            judge_disagreement: None,
            cached_runs: 0,
        }
    }

    fn evaluator(id: &str, round: u32, satisfaction: f64, scenarios: Vec<ScenarioReport>) -> StepReport {
        StepReport {
            status: if satisfaction >= 0.9 { StepStatus::Passed } else { StepStatus::Failed },
            attempt: round,
            duration: Duration::from_millis(1500),
            evaluation: Some(EvaluationReport { satisfaction, threshold: 0.9, scenarios }),
            ..StepReport::skipped(id, StepKind::Evaluator, String::new())
        }
    }

    fn step(id: &str, kind: StepKind, status: StepStatus) -> StepReport {
        StepReport { status, duration: Duration::from_millis(34), ..StepReport::skipped(id, kind, String::new()) }
    }

    fn finished(round: u32, report: StepReport) -> Event {
        Event::StepFinished {
            step: report.id.clone(),
            round,
            status: report.status,
            inputs: BTreeMap::new(),
            report: Box::new(report),
        }
    }

    fn run(steps: Vec<StepReport>) -> RunReport {
        RunReport::new("pipe".into(), "0000000000001-0000001".into(), Duration::from_millis(2500), steps)
    }

    fn decision(kind: DecisionKind, target: &str, accepted: bool) -> Decision {
        Decision {
            kind,
            target: target.into(),
            accepted,
            by: "Ada Lovelace".into(),
            reason: "flaky judge, checked by hand".into(),
            at: "2026-11-27T21:30:00Z".into(),
            user: "ada".into(),
            artifacts: BTreeMap::new(),
            report_sha256: None,
        }
    }

    fn assert_self_contained(page: &str) {
        for forbidden in ["http://", "https://", "<link", "<script", "<img", "<iframe", "@import", "url("] {
            assert!(!page.contains(forbidden), "page contains `{forbidden}`");
        }
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<meta charset=\"utf-8\">"));
        assert!(page.contains("<meta name=\"viewport\""));
        assert!(page.contains("<title>"));
        assert!(page.contains(&format!("content=\"{CSP}\"")));
        assert!(page.trim_end().ends_with("</html>"));
    }

    #[test]
    fn escape_replaces_markup_and_makes_hidden_characters_visible() {
        let text = "a&b<c>d\"e'f\tg\nh\u{0}\u{7f}\u{85}\u{61c}\u{200e}\u{202e}\u{2069}é→€ok";
        assert_eq!(
            escape(text).to_string(),
            "a&amp;b&lt;c&gt;d&quot;e&#39;f\tg\nh\\u{0}\\u{7f}\\u{85}\\u{61c}\\u{200e}\\u{202e}\\u{2069}é→€ok"
        );
        assert_eq!(escape("").to_string(), "");
        assert_eq!(escape("plain").to_string(), "plain");
    }

    #[test]
    fn hostile_text_appears_only_escaped() {
        let mut check = step("lint", StepKind::Check, StepStatus::Failed);
        check.stdout = format!("line one\n{SCRIPT}\n{IMG}\n");
        check.stderr = "\u{1b}[2Jcleared\u{202e}reversed".into();
        check.findings.push(FindingReport {
            rule: "r".into(),
            severity: "error".into(),
            message: format!("bad {SCRIPT}"),
            path: Some(format!("src/{IMG}.rs")),
            line: Some(3),
            column: None,
            produced_from: None,
            line_digest: None,
        });
        let judge = evaluator("judge", 1, 0.5, vec![scenario(SCRIPT, 1, 3, IMG), scenario("ok", 3, 3, "fine")]);
        let mut stage = step("write", StepKind::Stage, StepStatus::Passed);
        stage.changes.push(Change::Written(format!("{SCRIPT}.rs")));
        stage.diff = Some(format!("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-{IMG}\n+{SCRIPT}\n"));
        let mut report = run(vec![check, stage, judge]);
        report.pipeline = IMG.into();
        report.escalation = Some(format!("retries ran out\n{SCRIPT}"));
        let mut attempt = AttemptReport::new(1);
        attempt.decisions.push(GateScore {
            gate: "judge".into(),
            status: StepStatus::Failed,
            reason: IMG.into(),
            retry: Some("write".into()),
        });
        attempt.retried.push(Retried {
            stage: "write".into(),
            attempt: 2,
            feedback: vec![format!("judge: {SCRIPT}")],
            feedback_bits: 1.5,
            withheld: vec![IMG.into()],
        });
        report.attempts.push(attempt);
        report.decisions.push(Decision {
            reason: SCRIPT.into(),
            by: IMG.into(),
            ..decision(DecisionKind::Verdict, "r", true)
        });

        let page = render(&report, &[]);
        assert_self_contained(&page);
        assert!(!page.contains(SCRIPT) && !page.contains("<img"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"));
        assert!(page.contains("\\u{1b}[2Jcleared\\u{202e}reversed"), "controls are made visible");
        assert!(!page.contains('\u{1b}') && !page.contains('\u{202e}'));
        assert!(page.contains("<li>judge: &lt;script&gt;"), "feedback lines are list items");
        assert!(page.contains("<span class=\"add\">+&lt;script&gt;"), "diff lines are classed");
        assert!(page.contains("<span class=\"del\">-&quot;&gt;"));
        assert!(page.contains("<span class=\"hunk\">@@ -1 +1 @@</span>"));
        assert!(!page.contains("DETAIL-NEVER-SHOWN"), "a scenario's detail is never shown");
    }

    #[test]
    fn only_scenarios_the_terminal_report_shows_are_named() {
        let judge = evaluator(
            "judge",
            1,
            0.5,
            vec![
                scenario("fails-sometimes", 1, 3, "summary of a failure"),
                scenario("secret-passing", 3, 3, "zz-passing-summary"),
            ],
        );
        let page = render(&run(vec![judge]), &[]);
        assert!(page.contains("data-scenario=\"fails-sometimes\""));
        assert!(page.contains("summary of a failure"));
        assert!(!page.contains("secret-passing") && !page.contains("zz-passing-summary"), "{page}");
        assert!(page.contains("data-unnamed=\"1\""));
    }

    #[test]
    fn an_evaluator_over_three_rounds_plots_three_points_and_per_round_rates() {
        let rounds = [(1, 0.25, 1), (2, 0.5, 2), (3, 1.0, 3)];
        let events: Vec<Event> = rounds
            .iter()
            .map(|&(round, satisfaction, passes)| {
                finished(
                    round,
                    evaluator("judge", round, satisfaction, vec![scenario("login", passes, 3, "no session")]),
                )
            })
            .collect();
        let report = run(vec![evaluator("judge", 3, 1.0, vec![scenario("login", 3, 3, "ok")])]);
        let page = render(&report, &events);
        assert_self_contained(&page);
        assert!(page.contains("id=\"satisfaction-chart\""));
        assert!(page.contains("data-points=\"3\""), "{page}");
        assert_eq!(page.matches("<circle").count(), 3);
        assert!(page.contains("stroke-dasharray"), "threshold line");
        assert!(page.contains("<td class=\"num some\" data-round=\"1\">1/3</td>"), "{page}");
        assert!(page.contains("data-round=\"3\">3/3</td>"));
        assert!(page.contains("67% (6/9)"), "total over rounds: {page}");

        let single = render(&report, &[]);
        assert!(single.contains("data-points=\"1\""), "without events, the final report is one point");
    }

    #[test]
    fn an_overridden_step_shows_as_overridden() {
        let mut gate = step("tests", StepKind::Check, StepStatus::Overridden);
        gate.reason = Some("`cargo test` exited with status 1".into());
        let report = run(vec![step("fmt", StepKind::Check, StepStatus::Passed), gate]);
        let page = render(&report, &[]);
        assert!(page.contains("<tr data-step=\"tests\" data-status=\"overridden\""), "{page}");
        assert!(
            page.contains("id=\"run-status\" class=\"badge status-overridden\" data-status=\"overridden\">overridden<")
        );
    }

    #[test]
    fn decisions_and_approvals_show_who_and_why() {
        let mut report = run(vec![step("build", StepKind::Check, StepStatus::Passed)]);
        let approve = decision(DecisionKind::Approval, "release", true);
        report.approvals.push(ApprovalReport {
            name: "release".into(),
            needs: vec!["build".into()],
            approvers: vec![],
            status: ApprovalStatus::Approved,
            requested_at: Some("2026-11-27T21:00:00Z".into()),
            deadline: None,
            decision: Some(approve.clone()),
            note: None,
        });
        report.decisions.push(approve);
        report.decisions.push(decision(DecisionKind::Override, "tests", true));
        let page = render(&report, &[]);
        assert!(page.contains("<tr data-approval=\"release\" data-status=\"approved\""));
        assert!(page.contains("<tr data-decision=\"approval\" data-word=\"approved\""));
        assert!(page.contains("<tr data-decision=\"override\" data-word=\"overridden\""));
        assert!(page.contains("<td class=\"by\">Ada Lovelace</td>"));
        assert!(page.contains("flaky judge, checked by hand"));
        assert!(page.contains("anyone"), "no approvers means anyone may decide");
    }

    #[test]
    fn rounds_come_from_events_when_the_report_has_no_attempts() {
        let mut retries = BTreeMap::new();
        retries.insert(
            "write".to_string(),
            Retrying { attempt: 2, feedback: vec!["judge: login failed".into()], feedback_bits: 2.0, withheld: vec![] },
        );
        let events = vec![
            Event::GateDecision {
                gate: "judge".into(),
                round: 1,
                status: StepStatus::Failed,
                reason: "satisfaction 0.50 (1/2) < 0.90".into(),
                retry: Some("write".into()),
            },
            Event::RoundFinished { round: 1, retries },
        ];
        let page = render(&run(vec![]), &events);
        assert!(page.contains("data-source=\"events\""));
        assert!(page.contains("<tr data-gate=\"judge\" data-status=\"failed\""));
        assert!(page.contains("<div class=\"retry\" data-stage=\"write\" data-attempt=\"2\" data-bits=\"2.0\">"));
        assert!(page.contains("<li>judge: login failed</li>"));
    }

    #[test]
    fn five_hundred_steps_over_fifty_rounds_render() {
        let mut steps = Vec::new();
        for i in 0..500 {
            let id = format!("step-{i}");
            steps.push(match i % 3 {
                0 => step(&id, StepKind::Check, StepStatus::Passed),
                1 => {
                    let mut stage = step(&id, StepKind::Stage, StepStatus::Passed);
                    stage.changes.push(Change::Written(format!("src/{i}.rs")));
                    stage.diff = Some(format!("--- a/src/{i}.rs\n+++ b/src/{i}.rs\n@@ -1 +1 @@\n-old\n+new\n"));
                    stage
                }
                _ => evaluator(&id, 50, 0.5, vec![scenario("a", 1, 2, "half"), scenario("b", 2, 2, "ok")]),
            });
        }
        let mut events = Vec::new();
        for round in 1..=50 {
            for s in &steps {
                events.push(finished(round, s.clone()));
            }
        }
        let mut report = run(steps);
        for round in 1..=50 {
            let mut attempt = AttemptReport::new(round);
            for s in report.steps.iter().filter(|s| s.kind == StepKind::Evaluator) {
                attempt.decisions.push(GateScore {
                    gate: s.id.clone(),
                    status: StepStatus::Failed,
                    reason: s.score().unwrap_or_default(),
                    retry: None,
                });
            }
            report.attempts.push(attempt);
        }
        let page = render(&report, &events);
        assert_eq!(page.matches("<tr data-step=\"").count(), 500);
        // 166 evaluators of 50 rounds each: lines, no marker per point.
        assert_eq!(page.matches("<polyline").count(), 166);
        assert_eq!(page.matches("<circle").count(), 0);
        assert_self_contained(&page);
    }

    fn evaluator_stats(evaluator: &str) -> EvaluatorStats {
        EvaluatorStats {
            pipeline: "pipe".into(),
            evaluator: evaluator.into(),
            runs: 3,
            pass_rate: Some(2.0 / 3.0),
            mean_satisfaction: Some(0.8),
            override_rate: Rate { count: 0, of: 3, value: None },
            false_pass_rate: Rate { count: 1, of: 2, value: None },
            false_fail_rate: Rate { count: 3, of: 12, value: Some(0.25) },
            kappa: None,
            kappa_undefined: false,
            comparable: 2,
            auto_merge_eligible: false,
            auto_merge_reason: "too few decisions".into(),
        }
    }

    #[test]
    fn history_lists_runs_newest_first_and_unknown_rates_as_not_yet_known() {
        let older = RecordedRun {
            run_id: "0000000000001-0000001".into(),
            events: vec![],
            report: Some(run(vec![evaluator("judge", 1, 0.5, vec![scenario("s", 1, 2, "x")])])),
        };
        let newer = RecordedRun {
            run_id: "0000000000002-0000001".into(),
            events: vec![
                Event::RunStarted {
                    run_id: "0000000000002-0000001".into(),
                    steps: vec!["judge".into()],
                    pipeline: "pipe".into(),
                    pipeline_file: "cleanroom.toml".into(),
                    pipeline_sha256: String::new(),
                    plugins: BTreeMap::new(),
                    config_sha256: String::new(),
                },
                finished(1, evaluator("judge", 1, 0.75, vec![])),
                Event::RunAwaiting { waiting: vec!["release".into()], report_sha256: String::new(), report: None },
            ],
            report: None,
        };
        let stats = Stats {
            runs: 2,
            unreadable: vec![format!("run x: {SCRIPT}")],
            since: None,
            thresholds: Thresholds::default(),
            evaluators: vec![evaluator_stats("judge")],
        };
        let page = history(&[older, newer], &stats);
        assert_self_contained(&page);
        let newer_at = page.find("data-run=\"0000000000002-0000001\"");
        let older_at = page.find("data-run=\"0000000000001-0000001\"");
        assert!(newer_at.is_some() && older_at.is_some() && newer_at < older_at, "newest first");
        assert!(page.contains("data-status=\"awaiting-approval\""));
        assert!(page.contains("id=\"history-chart\"") && page.contains("data-points=\"2\""));
        assert!(page.contains("<tr data-evaluator=\"judge\""));
        assert!(page.contains("not yet known (0 of 3)"));
        assert!(page.contains("not yet known (1 of 2)"));
        assert!(page.contains("25.0% (3 of 12)"));
        assert!(!page.contains("0.0% (0 of 3)"), "an unknown rate is never 0 %");
        assert!(page.contains("&lt;script&gt;"));
    }

    #[test]
    fn a_run_without_report_or_end_is_unfinished() {
        let recorded = RecordedRun { run_id: "r".into(), events: vec![], report: None };
        let stats =
            Stats { runs: 0, unreadable: vec![], since: None, thresholds: Thresholds::default(), evaluators: vec![] };
        let page = history(&[recorded], &stats);
        assert!(page.contains("<tr data-run=\"r\" data-status=\"unfinished\""));
        assert!(!page.contains("data-evaluator="));
    }
}
