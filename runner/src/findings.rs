//! Findings from a native tool's own output: the step key `findings`.
//!
//! A `run` step's `findings = "sarif"` (or `"junit"`, `"cargo-json"`,
//! `"checkstyle"`, or `{ regex = '...' }`) parses the tool's output into
//! findings with path, line, column, rule and severity, so reports and SARIF
//! point at the code, not at the pipeline. Parsing is pure: bytes in,
//! [`Parsed`] findings out. Paths come out workspace-relative, or not at all
//! (a path outside the workspace moves into the message), whatever the tool
//! wrote; no input makes a parser panic, and at most [`MAX_FINDINGS`] come
//! out of one parse.

use std::collections::HashSet;
use std::path::Path;

use serde_json::Value;

/// The most findings one parse returns; past it one `findings-truncated`
/// finding says the rest were dropped, so a runaway tool cannot flood a report.
pub const MAX_FINDINGS: usize = 10_000;

/// The most characters of a finding's message; longer ones are cut and end in `…`.
const MAX_MESSAGE_CHARS: usize = 500;

/// The named groups a `{ regex = '...' }` pattern may use.
const REGEX_GROUPS: [&str; 6] = ["path", "line", "column", "rule", "severity", "message"];

/// How a `run` step's output becomes findings: the step key `findings`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// SARIF 2.1.0, as clippy-sarif, semgrep, CodeQL and many linters write it.
    Sarif,
    /// JUnit XML: each failing or erroring test case is a finding.
    Junit,
    /// `cargo ... --message-format=json` lines, and libtest's JSON events.
    CargoJson,
    /// Checkstyle XML, as checkstyle and `eslint -f checkstyle` write it.
    Checkstyle,
    /// `{ regex = '...' }`, applied per line: named groups `path`, `line`,
    /// `column`, `rule`, `severity`, `message` (`message` or `path` required).
    Regex(String),
}

impl Format {
    /// Parses the manifest value: "sarif" | "junit" | "cargo-json" | "checkstyle"
    /// (the regex form goes through [`Format::regex`]).
    ///
    /// # Errors
    /// A sentence naming the unknown value and listing what is accepted.
    pub fn named(name: &str) -> Result<Format, String> {
        match name {
            "sarif" => Ok(Format::Sarif),
            "junit" => Ok(Format::Junit),
            "cargo-json" => Ok(Format::CargoJson),
            "checkstyle" => Ok(Format::Checkstyle),
            "regex" => Err("`findings = \"regex\"` needs its pattern: write `findings = { regex = '...' }`".into()),
            other => Err(format!(
                "unknown findings format `{other}`: expected \"sarif\", \"junit\", \"cargo-json\", \"checkstyle\" \
                 or `{{ regex = '...' }}`"
            )),
        }
    }

    /// A `{ regex = "..." }` format, checked now so a bad pattern is refused
    /// when the pipeline loads rather than when the tool has run.
    ///
    /// # Errors
    /// The pattern does not compile, uses a group other than `path`, `line`,
    /// `column`, `rule`, `severity` and `message`, or has neither a `message`
    /// nor a `path` group.
    pub fn regex(pattern: &str) -> Result<Format, String> {
        compile(pattern).map(|_| Format::Regex(pattern.to_owned()))
    }

    /// The format's name: "sarif", "junit", "cargo-json", "checkstyle" or "regex".
    pub fn as_str(&self) -> &'static str {
        match self {
            Format::Sarif => "sarif",
            Format::Junit => "junit",
            Format::CargoJson => "cargo-json",
            Format::Checkstyle => "checkstyle",
            Format::Regex(_) => "regex",
        }
    }
}

/// One finding a tool reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The tool's rule id, or the format's default (`rustc`, `junit-failure`, `regex`, ...).
    pub rule: String,
    /// How bad it is.
    pub severity: Severity,
    /// One line: newlines collapsed to spaces, trimmed, at most 500 characters.
    pub message: String,
    /// Workspace-relative, `/`-separated, normalised; `None` when the tool
    /// gave none or it lies outside the workspace (then the message starts
    /// with the path as the tool wrote it).
    pub path: Option<String>,
    /// 1-based line, if the tool gave a usable one.
    pub line: Option<u32>,
    /// 1-based column, if the tool gave a usable one.
    pub column: Option<u32>,
}

/// A finding's severity, the three levels reports and SARIF share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Worth knowing; not a problem by itself.
    Info,
    /// A problem that need not fail the step.
    Warning,
    /// A problem.
    Error,
}

impl Severity {
    /// "info", "warning" or "error", as reports spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// Parses `output` (the tool's stdout, or the file it wrote) in `format`.
///
/// `workspace` is the absolute workspace directory as the tool saw it:
/// absolute paths under it become relative, `file://` URIs included.
///
/// # Errors
/// A sentence naming the format and what did not parse, e.g. "not SARIF:
/// expected a JSON object with `runs`: ... at line 3 column 5". cargo-json
/// and regex never fail on their input (lines that do not parse are skipped);
/// regex fails only on a pattern that does not compile.
pub fn parse(format: &Format, output: &[u8], workspace: &Path) -> Result<Vec<Parsed>, String> {
    let output = output.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(output);
    let mut sink = Sink { workspace, found: Vec::new(), seen: None, full: false };
    match format {
        Format::Sarif => sarif(structured(output, "SARIF")?, &mut sink)?,
        Format::Junit => junit(&xml(output, "JUnit XML")?, &mut sink)?,
        Format::Checkstyle => checkstyle(&xml(output, "Checkstyle XML")?, &mut sink)?,
        Format::CargoJson => {
            sink.seen = Some(HashSet::new());
            cargo_json(output, &mut sink);
        }
        Format::Regex(pattern) => regex_lines(&compile(pattern)?, output, &mut sink),
    }
    Ok(sink.found)
}

/// `output`, refused when empty: a structured format always writes a
/// document, so nothing at all means the tool did not get that far.
fn structured<'a>(output: &'a [u8], name: &str) -> Result<&'a [u8], String> {
    if output.trim_ascii().is_empty() {
        return Err(format!("not {name}: the output is empty"));
    }
    Ok(output)
}

/// How deeply elements may nest in a report: real ones nest a few levels;
/// the XML parser recurses per level, so a hostile document nested
/// thousands deep would otherwise overflow the runner's stack.
const MAX_XML_DEPTH: usize = 256;

/// `output` as XML text, refused when empty or nested deeper than
/// [`MAX_XML_DEPTH`] (counted over tags, comments and all: generous, never
/// lower than the real depth).
fn xml(output: &[u8], name: &str) -> Result<String, String> {
    let text = String::from_utf8_lossy(structured(output, name)?).into_owned();
    let (mut depth, mut deepest) = (0usize, 0usize);
    let bytes = text.as_bytes();
    for (i, window) in bytes.windows(2).enumerate() {
        match window {
            [b'<', b'/'] => depth = depth.saturating_sub(1),
            [b'<', next] if next.is_ascii_alphabetic() || *next == b'_' => {
                let end = bytes[i..].iter().position(|&b| b == b'>').map(|p| i + p);
                if end.is_none_or(|end| end == 0 || bytes[end - 1] != b'/') {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
            }
            _ => {}
        }
    }
    if deepest > MAX_XML_DEPTH {
        return Err(format!("not {name}: elements nest more than {MAX_XML_DEPTH} deep"));
    }
    Ok(text)
}

/// What makes two findings the same: rule, path, line, column, message.
type Key = (String, Option<String>, Option<u32>, Option<u32>, String);

/// Collects findings: places paths, tidies messages, de-duplicates when
/// asked, and stops at [`MAX_FINDINGS`].
struct Sink<'w> {
    workspace: &'w Path,
    found: Vec<Parsed>,
    /// `Some` when identical findings are dropped (cargo repeats a warning per target).
    seen: Option<HashSet<Key>>,
    full: bool,
}

impl Sink<'_> {
    fn add(
        &mut self,
        rule: &str,
        severity: Severity,
        message: &str,
        path: Option<&str>,
        line: Option<u32>,
        column: Option<u32>,
    ) {
        if self.full {
            return;
        }
        let (path, message) = match path.map(|raw| (raw.trim(), place(raw, self.workspace))) {
            Some((_, Place::Inside(path))) => (Some(path), one_line(message)),
            Some((raw, Place::Outside)) => (None, one_line(&format!("{raw}: {message}"))),
            _ => (None, one_line(message)),
        };
        let finding = Parsed { rule: one_line(rule), severity, message, path, line, column };
        if let Some(seen) = &mut self.seen {
            let key = (finding.rule.clone(), finding.path.clone(), line, column, finding.message.clone());
            if !seen.insert(key) {
                return;
            }
        }
        if self.found.len() >= MAX_FINDINGS {
            self.full = true;
            self.found.push(Parsed {
                rule: "findings-truncated".into(),
                severity: Severity::Info,
                message: format!("more findings than {MAX_FINDINGS}; the rest were dropped"),
                path: None,
                line: None,
                column: None,
            });
            return;
        }
        self.found.push(finding);
    }
}

/// Where a tool's path lies, as far as the workspace is concerned.
#[derive(Debug, PartialEq, Eq)]
enum Place {
    /// Workspace-relative, normalised.
    Inside(String),
    /// Outside the workspace: absolute elsewhere, or climbing out with `..`.
    Outside,
    /// No path at all (empty, or the workspace itself).
    Nowhere,
}

/// Places `raw` (a path or `file://` URI) relative to `workspace`, lexically:
/// the files need not exist here, the tool saw them elsewhere.
fn place(raw: &str, workspace: &Path) -> Place {
    let raw = raw.trim();
    let raw = match raw.strip_prefix("file://") {
        Some(rest) if rest.starts_with('/') => rest,
        // `file://host/path`: the host is not part of the path.
        Some(rest) => rest.find('/').and_then(|at| rest.get(at..)).unwrap_or(""),
        None => raw.strip_prefix("file:").unwrap_or(raw),
    };
    if raw.is_empty() {
        return Place::Nowhere;
    }
    let Some(parts) = components(raw) else { return Place::Outside };
    let rest = if raw.starts_with('/') {
        let root = workspace.to_string_lossy();
        let base = components(&root).unwrap_or_default();
        if parts.len() < base.len() || parts.iter().zip(&base).any(|(a, b)| a != b) {
            return Place::Outside;
        }
        parts.get(base.len()..).unwrap_or_default()
    } else {
        parts.as_slice()
    };
    if rest.is_empty() {
        Place::Nowhere
    } else {
        Place::Inside(rest.join("/"))
    }
}

/// `raw`'s components with `.` dropped and `..` applied; `None` when a
/// relative path climbs above its start (an absolute one stops at `/`).
fn components(raw: &str) -> Option<Vec<&str>> {
    let absolute = raw.starts_with('/');
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() && !absolute {
                    return None;
                }
            }
            _ => parts.push(part),
        }
    }
    Some(parts)
}

/// `text` as one line: lines trimmed and joined with spaces, control
/// characters blanked, cut to [`MAX_MESSAGE_CHARS`] with a closing `…`.
fn one_line(text: &str) -> String {
    let joined: String = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if joined.chars().count() <= MAX_MESSAGE_CHARS {
        return joined;
    }
    let cut = joined.char_indices().nth(MAX_MESSAGE_CHARS - 1).map_or(joined.len(), |(at, _)| at);
    let mut short = joined.get(..cut).unwrap_or_default().to_owned();
    short.push('…');
    short
}

/// A 1-based line or column from text; 0, negative, huge or not a number is `None`.
fn count(text: &str) -> Option<u32> {
    text.trim().parse::<u32>().ok().filter(|&n| n > 0)
}

/// The non-empty string at `pointer` in `value`.
fn str_at<'v>(value: &'v Value, pointer: &str) -> Option<&'v str> {
    value.pointer(pointer).and_then(Value::as_str).filter(|s| !s.trim().is_empty())
}

/// The 1-based number at `pointer` in `value` (0, negative, fractional or past `u32` is `None`).
fn number_at(value: &Value, pointer: &str) -> Option<u32> {
    value.pointer(pointer).and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok()).filter(|&n| n > 0)
}

/// SARIF 2.1.0: every `runs[].results[]`.
fn sarif(output: &[u8], sink: &mut Sink) -> Result<(), String> {
    let log: Value =
        serde_json::from_slice(output).map_err(|e| format!("not SARIF: expected a JSON object with `runs`: {e}"))?;
    let Some(runs) = log.get("runs").and_then(Value::as_array) else {
        return Err("not SARIF: expected a JSON object with a `runs` array".into());
    };
    for run in runs {
        let driver = run.pointer("/tool/driver");
        let tool = driver.and_then(|d| str_at(d, "/name")).unwrap_or("sarif");
        let rules =
            driver.and_then(|d| d.get("rules")).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let bases = run.get("originalUriBaseIds");
        for result in run.get("results").and_then(Value::as_array).into_iter().flatten() {
            if sink.full {
                return Ok(());
            }
            if !result.is_object() {
                continue;
            }
            let id = str_at(result, "/ruleId").or_else(|| str_at(result, "/rule/id"));
            let index = result.get("ruleIndex").or_else(|| result.pointer("/rule/index")).and_then(Value::as_u64);
            let descriptor = index
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| rules.get(i))
                .or_else(|| id.and_then(|id| rules.iter().find(|r| r.get("id").and_then(Value::as_str) == Some(id))));
            let rule = id.or_else(|| descriptor.and_then(|d| str_at(d, "/id"))).unwrap_or(tool);
            let level =
                str_at(result, "/level").or_else(|| descriptor.and_then(|d| str_at(d, "/defaultConfiguration/level")));
            let severity = match level {
                Some("error") => Severity::Error,
                Some("note" | "none") => Severity::Info,
                _ => Severity::Warning,
            };
            let message =
                str_at(result, "/message/text").or_else(|| str_at(result, "/message/markdown")).unwrap_or(rule);
            let physical = result
                .get("locations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find_map(|location| location.get("physicalLocation"));
            let path = physical.and_then(|p| p.get("artifactLocation")).and_then(|a| artifact_path(a, bases));
            let line = physical.and_then(|p| number_at(p, "/region/startLine"));
            let column = physical.and_then(|p| number_at(p, "/region/startColumn"));
            sink.add(rule, severity, message, path.as_deref(), line, column);
        }
    }
    Ok(())
}

/// A SARIF `artifactLocation`'s path: its `uri`, put under its `uriBaseId`'s
/// uri from `originalUriBaseIds` when relative (a base the log does not
/// define leaves it relative to the workspace), then percent-decoded.
fn artifact_path(location: &Value, bases: Option<&Value>) -> Option<String> {
    let mut uri = str_at(location, "/uri")?.to_owned();
    let mut base_id = str_at(location, "/uriBaseId");
    // Bases may name bases; a cycle among them ends here.
    for _ in 0..8 {
        let Some(id) = base_id else { break };
        if uri.starts_with('/') || uri.starts_with("file:") {
            break;
        }
        let Some(base) = bases.and_then(|b| b.get(id)) else { break };
        let Some(base_uri) = str_at(base, "/uri") else { break };
        let joint = if base_uri.ends_with('/') { "" } else { "/" };
        uri = format!("{base_uri}{joint}{uri}");
        base_id = str_at(base, "/uriBaseId");
    }
    Some(percent_decode(&uri))
}

/// `%XX` escapes decoded (malformed ones kept as written; invalid UTF-8 replaced).
fn percent_decode(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        let hex = tail.get(..2).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        match hex.and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(decoded) if byte == b'%' => {
                out.push(decoded);
                rest = tail.get(2..).unwrap_or_default();
            }
            _ => {
                out.push(byte);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An attribute's trimmed value, if present and not blank.
fn attr<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
    node.attribute(name).map(str::trim).filter(|value| !value.is_empty())
}

/// JUnit XML: each `<testcase>` with a `<failure>` or `<error>` child.
fn junit(text: &str, sink: &mut Sink) -> Result<(), String> {
    let document = roxmltree::Document::parse(text).map_err(|e| format!("not JUnit XML: {e}"))?;
    let root = document.root_element();
    if !root.has_tag_name("testsuites") && !root.has_tag_name("testsuite") {
        return Err(format!(
            "not JUnit XML: expected a `<testsuites>` or `<testsuite>` root element, found `<{}>`",
            root.tag_name().name()
        ));
    }
    for case in root.descendants().filter(|node| node.has_tag_name("testcase")) {
        if sink.full {
            break;
        }
        let Some(problem) = case.children().find(|n| n.has_tag_name("failure") || n.has_tag_name("error")) else {
            continue;
        };
        let (rule, fallback) =
            if problem.has_tag_name("failure") { ("junit-failure", "failed") } else { ("junit-error", "errored") };
        let label = match (attr(case, "classname"), attr(case, "name")) {
            (Some(class), Some(name)) => format!("{class}.{name}"),
            (Some(one), None) | (None, Some(one)) => one.to_owned(),
            (None, None) => "test".to_owned(),
        };
        let first_line = || {
            problem
                .descendants()
                .filter(|node| node.is_text())
                .filter_map(|node| node.text())
                .flat_map(str::lines)
                .map(str::trim)
                .find(|line| !line.is_empty())
        };
        let detail = attr(problem, "message").or_else(first_line).unwrap_or(fallback);
        let mut line = attr(case, "line").and_then(count);
        let mut file = attr(case, "file").map(str::to_owned);
        if file.is_none() {
            // pytest's default report has no `file`: its classname is the
            // module (`tests.test_calc`), and its traceback names the line
            // (`tests/test_calc.py:5: AssertionError`).
            file = attr(case, "classname").and_then(|class| python_module(class, sink.workspace));
            let text: String = problem.descendants().filter_map(|n| n.text()).collect();
            line = file.as_deref().and_then(|file| traceback_line(&text, file));
        }
        sink.add(rule, Severity::Error, &format!("{label}: {detail}"), file.as_deref(), line, None);
    }
    Ok(())
}

/// The workspace file of Python module `class` (`tests.test_calc` ->
/// `tests/test_calc.py`; `tests.test_calc.TestAdd` too), if there is one.
fn python_module(class: &str, workspace: &Path) -> Option<String> {
    let parts: Vec<&str> = class.split('.').collect();
    (1..=parts.len()).rev().map(|n| format!("{}.py", parts[..n].join("/"))).find(|rel| workspace.join(rel).is_file())
}

/// The last line number a traceback gives for `file` (`file:LINE: ...`).
fn traceback_line(text: &str, file: &str) -> Option<u32> {
    text.lines()
        .rev()
        .filter_map(|l| l.trim().strip_prefix(file)?.strip_prefix(':')?.split(':').next()?.parse::<u32>().ok())
        .find(|&n| n > 0)
}

/// Checkstyle XML: each `<file name>`'s `<error>` elements.
fn checkstyle(text: &str, sink: &mut Sink) -> Result<(), String> {
    let document = roxmltree::Document::parse(text).map_err(|e| format!("not Checkstyle XML: {e}"))?;
    let root = document.root_element();
    if !root.has_tag_name("checkstyle") {
        return Err(format!(
            "not Checkstyle XML: expected a `<checkstyle>` root element, found `<{}>`",
            root.tag_name().name()
        ));
    }
    for file in root.children().filter(|node| node.has_tag_name("file")) {
        for error in file.children().filter(|node| node.has_tag_name("error")) {
            if sink.full {
                return Ok(());
            }
            let severity = match attr(error, "severity") {
                Some(level) if level.eq_ignore_ascii_case("warning") => Severity::Warning,
                Some(level) if level.eq_ignore_ascii_case("info") || level.eq_ignore_ascii_case("ignore") => {
                    Severity::Info
                }
                _ => Severity::Error,
            };
            let rule = attr(error, "source").unwrap_or("checkstyle");
            let message = attr(error, "message").unwrap_or(rule);
            let line = attr(error, "line").and_then(count);
            let column = attr(error, "column").and_then(count);
            sink.add(rule, severity, message, attr(file, "name"), line, column);
        }
    }
    Ok(())
}

/// cargo's JSON lines: `compiler-message`s and libtest's failed tests;
/// anything else (other reasons, cargo's plain text) is skipped.
fn cargo_json(output: &[u8], sink: &mut Sink) {
    let lines: Vec<&[u8]> = output.split(|&byte| byte == b'\n').collect();
    for (i, line) in lines.iter().enumerate() {
        if sink.full {
            break;
        }
        let Ok(value) = serde_json::from_slice::<Value>(line.trim_ascii()) else {
            // Stable `cargo test` prints its test binaries' text between
            // the JSON: a failing test is a `thread 'NAME' panicked at` line.
            let text = String::from_utf8_lossy(line);
            // Newer toolchains put the thread's number between: `thread 'NAME' (5) panicked at`.
            let thread = text.trim().strip_prefix("thread '").and_then(|t| t.split_once('\''));
            if let Some(name) = thread.filter(|(_, rest)| rest.contains(" panicked at ")) {
                let rest = lines.get(i + 1..).unwrap_or_default().iter().take(4);
                let stdout: Vec<String> = std::iter::once(text.to_string())
                    .chain(rest.map(|l| String::from_utf8_lossy(l).into_owned()))
                    .collect();
                let event = serde_json::json!({ "name": name.0, "stdout": stdout.join("\n") });
                failed_test(&event, sink);
            }
            continue;
        };
        if value.get("reason").and_then(Value::as_str) == Some("compiler-message") {
            if let Some(message) = value.get("message") {
                compiler_message(message, sink);
            }
        } else if value.get("type").and_then(Value::as_str) == Some("test")
            && value.get("event").and_then(Value::as_str) == Some("failed")
        {
            failed_test(&value, sink);
        }
    }
}

/// One rustc diagnostic; notes, helps and the closing summaries are not findings.
fn compiler_message(message: &Value, sink: &mut Sink) {
    let level = message.get("level").and_then(Value::as_str).unwrap_or("error");
    if matches!(level, "note" | "help" | "failure-note") {
        return;
    }
    let Some(text) = str_at(message, "/message") else { return };
    let spans = message.get("spans").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let summary = text.starts_with("aborting due to")
        || (text.ends_with(" emitted") && (text.contains("warning") || text.contains("error")));
    if spans.is_empty() && summary {
        return;
    }
    let severity = if level.starts_with("error") {
        Severity::Error
    } else if level == "warning" {
        Severity::Warning
    } else {
        Severity::Info
    };
    let span = spans
        .iter()
        .find(|span| span.get("is_primary").and_then(Value::as_bool) == Some(true))
        .or_else(|| spans.first());
    let rule = str_at(message, "/code/code").unwrap_or("rustc");
    let path = span.and_then(|s| str_at(s, "/file_name"));
    let line = span.and_then(|s| number_at(s, "/line_start"));
    let column = span.and_then(|s| number_at(s, "/column_start"));
    sink.add(rule, severity, text, path, line, column);
}

/// A libtest `{"type":"test","event":"failed"}` event, placed where it panicked.
fn failed_test(event: &Value, sink: &mut Sink) {
    let name = str_at(event, "/name").unwrap_or("?");
    let stdout = str_at(event, "/stdout").unwrap_or_default();
    let mut message = format!("test {name} failed");
    let mut lines = stdout.lines().map(str::trim);
    let mut at = None;
    if let Some(panic) = lines.by_ref().find(|line| line.contains("panicked at")) {
        message.push_str(": ");
        message.push_str(panic);
        // Since Rust 1.73 the panic message follows on the next line.
        if panic.ends_with(':') {
            if let Some(next) = lines.find(|line| !line.is_empty()) {
                message.push(' ');
                message.push_str(next);
            }
        }
        at = panic_location(panic);
    }
    let (path, line, column) = at.map_or((None, None, None), |(path, line, column)| (Some(path), line, column));
    sink.add("test-failed", Severity::Error, &message, path, line, column);
}

/// `FILE:LINE:COL` from a `panicked at` line: right after it (Rust 1.73 on),
/// or its last word (`panicked at 'msg', FILE:LINE:COL` before).
fn panic_location(text: &str) -> Option<(&str, Option<u32>, Option<u32>)> {
    let (_, after) = text.split_once("panicked at ")?;
    let words = [after.split_whitespace().next(), after.split_whitespace().last()];
    words.into_iter().flatten().find_map(|word| {
        let mut parts = word.trim_end_matches([':', ',']).rsplitn(3, ':');
        let column = parts.next()?.parse::<u32>().ok()?;
        let line = parts.next()?.parse::<u32>().ok()?;
        let file = parts.next().filter(|file| !file.is_empty())?;
        Some((file, Some(line).filter(|&n| n > 0), Some(column).filter(|&n| n > 0)))
    })
}

/// Compiles a findings regex and checks its groups.
fn compile(pattern: &str) -> Result<regex::Regex, String> {
    let regex = regex::Regex::new(pattern).map_err(|e| format!("the findings regex does not compile: {e}"))?;
    let names: Vec<&str> = regex.capture_names().flatten().collect();
    let allowed = "`path`, `line`, `column`, `rule`, `severity` and `message`";
    if let Some(unknown) = names.iter().copied().find(|name| !REGEX_GROUPS.contains(name)) {
        return Err(format!("the findings regex has a group `{unknown}` the runner does not know: it reads {allowed}"));
    }
    if !names.contains(&"message") && !names.contains(&"path") {
        return Err(format!(
            "the findings regex has neither a `message` nor a `path` group, so a match would say nothing: \
             it reads {allowed}"
        ));
    }
    Ok(regex)
}

/// A matched group's trimmed text, if it took part and is not blank.
fn group<'h>(captures: &regex::Captures<'h>, name: &str) -> Option<&'h str> {
    captures.name(name).map(|m| m.as_str().trim()).filter(|text| !text.is_empty())
}

/// A regex format: one finding per matching line.
fn regex_lines(regex: &regex::Regex, output: &[u8], sink: &mut Sink) {
    let text = String::from_utf8_lossy(output);
    for line in text.lines() {
        if sink.full {
            break;
        }
        let Some(captures) = regex.captures(line) else { continue };
        let severity = group(&captures, "severity").map_or(Severity::Error, |word| {
            let word = word.to_ascii_lowercase();
            match word.as_str() {
                "error" | "err" | "fatal" => Severity::Error,
                "warning" | "warn" => Severity::Warning,
                _ => Severity::Info,
            }
        });
        sink.add(
            group(&captures, "rule").unwrap_or("regex"),
            severity,
            group(&captures, "message").unwrap_or(line),
            group(&captures, "path"),
            group(&captures, "line").and_then(count),
            group(&captures, "column").and_then(count),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GCC: &str = r"^(?P<path>[^:]+):(?P<line>\d+):(?P<column>\d+): (?P<severity>\w+): (?P<message>.*)$";

    fn ws() -> &'static Path {
        Path::new("/work/ws")
    }

    /// Each finding as `severity rule path:line:column message`, `-` for what is absent.
    fn render(parsed: Result<Vec<Parsed>, String>) -> Vec<String> {
        let or_dash = |n: Option<u32>| n.map_or("-".to_owned(), |n| n.to_string());
        let parsed = parsed.unwrap_or_else(|e| panic!("{e}"));
        parsed
            .iter()
            .map(|f| {
                let path = f.path.as_deref().unwrap_or("-");
                let (severity, line, column) = (f.severity.as_str(), or_dash(f.line), or_dash(f.column));
                format!("{severity} {} {path}:{line}:{column} {}", f.rule, f.message)
            })
            .collect()
    }

    #[test]
    fn sarif_results_resolve_uri_bases_and_default_levels() {
        let log = r#"{
  "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
  "version": "2.1.0",
  "runs": [
    {
      "tool": { "driver": { "name": "clippy", "informationUri": "https://rust-lang.github.io/rust-clippy/",
        "rules": [
          { "id": "clippy::unwrap_used", "defaultConfiguration": { "level": "error" }, "shortDescription": { "text": "unwrap" } },
          { "id": "clippy::needless_return", "defaultConfiguration": { "level": "note" } }
        ] } },
      "originalUriBaseIds": { "%SRCROOT%": { "uri": "file:///work/ws/" } },
      "results": [
        { "ruleId": "clippy::unwrap_used", "ruleIndex": 0,
          "message": { "text": "used `unwrap()` on a `Result` value\nif this value is an `Err`, it will panic" },
          "locations": [ { "physicalLocation": { "artifactLocation": { "uri": "src/main.rs", "uriBaseId": "%SRCROOT%" },
            "region": { "startLine": 12, "startColumn": 5, "endLine": 12, "endColumn": 20 } } } ] },
        { "ruleId": "clippy::needless_return", "level": "warning", "message": { "text": "unneeded `return` statement" },
          "locations": [ { "physicalLocation": { "artifactLocation": { "uri": "file:///work/ws/src/my%20lib.rs" },
            "region": { "startLine": 3 } } } ] },
        { "ruleId": "clippy::needless_return", "message": { "markdown": "remove `return`" },
          "locations": [ { "physicalLocation": { "artifactLocation": { "uri": "./src/../src/b.rs" } } } ] }
      ]
    },
    { "tool": { "driver": { "name": "semgrep" } },
      "results": [ { "message": { "text": "hardcoded secret" },
        "locations": [ { "physicalLocation": { "artifactLocation": { "uri": "config/app.py", "uriBaseId": "%SRCROOT%" },
          "region": { "startLine": 0, "startColumn": 7 } } } ] } ] }
  ]
}"#;
        assert_eq!(
            render(parse(&Format::Sarif, log.as_bytes(), ws())),
            [
                "error clippy::unwrap_used src/main.rs:12:5 used `unwrap()` on a `Result` value if this value is an `Err`, it will panic",
                "warning clippy::needless_return src/my lib.rs:3:- unneeded `return` statement",
                "info clippy::needless_return src/b.rs:-:- remove `return`",
                "warning semgrep config/app.py:-:7 hardcoded secret",
            ]
        );
    }

    #[test]
    fn junit_failures_and_errors_are_findings_but_skips_and_passes_are_not() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="2" skipped="1" tests="5" time="0.031" timestamp="2024-05-02T10:11:12.345678" hostname="ci">
<testcase classname="tests.test_x" name="test_add" file="tests/test_x.py" line="3" time="0.001"><failure message="assert 1 == 2">def test_add():
&gt;       assert 1 == 2
E       assert 1 == 2

tests/test_x.py:4: AssertionError</failure></testcase>
<testcase classname="tests.test_x" name="test_ok" file="tests/test_x.py" line="6" time="0.000" />
<testcase classname="tests.test_x" name="test_later" file="tests/test_x.py" line="9" time="0.000"><skipped type="pytest.skip" message="not yet">tests/test_x.py:10: not yet</skipped></testcase>
<testcase classname="tests.test_db" name="test_connect" time="0.002"><error message="failed on setup with &quot;ConnectionRefusedError&quot;">conn = connect()</error></testcase>
<testcase name="bare"><failure><![CDATA[

  first real line
second]]></failure></testcase>
</testsuite></testsuites>"#;
        assert_eq!(
            render(parse(&Format::Junit, xml.as_bytes(), ws())),
            [
                "error junit-failure tests/test_x.py:3:- tests.test_x.test_add: assert 1 == 2",
                "error junit-error -:-:- tests.test_db.test_connect: failed on setup with \"ConnectionRefusedError\"",
                "error junit-failure -:-:- bare: first real line",
            ]
        );
        let passing = r#"<testsuite name="x" tests="1"><testcase classname="a" name="b"/></testsuite>"#;
        assert!(render(parse(&Format::Junit, passing.as_bytes(), ws())).is_empty());
    }

    #[test]
    fn cargo_json_keeps_diagnostics_and_failed_tests_and_skips_the_rest() {
        let target = r#""target":{"kind":["lib"],"crate_types":["lib"],"name":"demo","src_path":"/work/ws/src/lib.rs","edition":"2021","doc":true,"doctest":true,"test":true}"#;
        let warning = format!(
            r#"{{"reason":"compiler-message","package_id":"path+file:///work/ws#demo@0.1.0","manifest_path":"/work/ws/Cargo.toml",{target},"message":{{"rendered":"warning: used `unwrap()` on an `Option` value\n --> src/lib.rs:4:5\n","$message_type":"diagnostic","children":[{{"children":[],"code":null,"level":"help","message":"for further information visit https://rust-lang.github.io/rust-clippy/master/index.html#unwrap_used","rendered":null,"spans":[]}}],"code":{{"code":"clippy::unwrap_used","explanation":null}},"level":"warning","message":"used `unwrap()` on an `Option` value","spans":[{{"byte_end":80,"byte_start":70,"column_end":15,"column_start":5,"expansion":null,"file_name":"src/lib.rs","is_primary":true,"label":null,"line_end":4,"line_start":4,"suggested_replacement":null,"suggestion_applicability":null,"text":[]}}]}}}}"#
        );
        let lines = [
            "   Compiling demo v0.1.0 (/work/ws)".to_owned(),
            format!(r#"{{"reason":"compiler-artifact","package_id":"path+file:///work/ws#demo@0.1.0","manifest_path":"/work/ws/Cargo.toml",{target},"profile":{{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":false}},"features":[],"filenames":["/work/ws/target/debug/libdemo.rlib"],"executable":null,"fresh":false}}"#),
            warning.clone(),
            warning,
            format!(r#"{{"reason":"compiler-message","package_id":"path+file:///work/ws#demo@0.1.0",{target},"message":{{"rendered":"error[E0308]: mismatched types\n","$message_type":"diagnostic","children":[],"code":{{"code":"E0308","explanation":"Expected type did not match the received type.\n"}},"level":"error","message":"mismatched types","spans":[{{"byte_end":150,"byte_start":147,"column_end":15,"column_start":12,"expansion":null,"file_name":"src/lib.rs","is_primary":false,"label":"expected due to this","line_end":8,"line_start":8,"suggested_replacement":null,"suggestion_applicability":null,"text":[]}},{{"byte_end":170,"byte_start":165,"column_end":10,"column_start":5,"expansion":null,"file_name":"src/lib.rs","is_primary":true,"label":"expected `u32`, found `&str`","line_end":9,"line_start":9,"suggested_replacement":null,"suggestion_applicability":null,"text":[]}}]}}}}"#),
            format!(r#"{{"reason":"compiler-message",{target},"message":{{"rendered":"error: aborting due to 1 previous error\n\n","$message_type":"diagnostic","children":[],"code":null,"level":"error","message":"aborting due to 1 previous error","spans":[]}}}}"#),
            format!(r#"{{"reason":"compiler-message",{target},"message":{{"rendered":"warning: 1 warning emitted\n\n","$message_type":"diagnostic","children":[],"code":null,"level":"warning","message":"1 warning emitted","spans":[]}}}}"#),
            r#"{"reason":"build-finished","success":false}"#.to_owned(),
            r#"{ "type": "suite", "event": "started", "test_count": 2 }"#.to_owned(),
            r#"{ "type": "test", "event": "ok", "name": "tests::subtracts" }"#.to_owned(),
            r#"{ "type": "test", "name": "tests::adds", "event": "failed", "stdout": "\nthread 'tests::adds' panicked at src/lib.rs:12:9:\nassertion `left == right` failed\n  left: 3\n right: 4\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n" }"#.to_owned(),
        ];
        assert_eq!(
            render(parse(&Format::CargoJson, lines.join("\n").as_bytes(), ws())),
            [
                "warning clippy::unwrap_used src/lib.rs:4:5 used `unwrap()` on an `Option` value",
                "error E0308 src/lib.rs:9:5 mismatched types",
                "error test-failed src/lib.rs:12:9 test tests::adds failed: thread 'tests::adds' panicked at src/lib.rs:12:9: assertion `left == right` failed",
            ]
        );
        let plain = "running 1 test\ntest tests::it_works ... FAILED\n\nfailures:\n\n---- tests::it_works stdout ----\n\n\
                     thread 'tests::it_works' (5) panicked at src/lib.rs:11:9:\nassertion `left == right` failed\n  left: 5\n";
        assert_eq!(
            render(parse(&Format::CargoJson, plain.as_bytes(), ws())),
            ["error test-failed src/lib.rs:11:9 test tests::it_works failed: thread 'tests::it_works' (5) panicked at src/lib.rs:11:9: assertion `left == right` failed"]
        );
        let before_1_73 = "thread 'main' panicked at 'boom', src/main.rs:3:5";
        assert_eq!(panic_location(before_1_73), Some(("src/main.rs", Some(3), Some(5))));
    }

    #[test]
    fn checkstyle_errors_keep_their_source_and_severity() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><checkstyle version="4.3"><file name="/work/ws/web/app.js"><error line="3" column="7" severity="error" message="&apos;x&apos; is assigned a value but never used. (no-unused-vars)" source="eslint.rules.no-unused-vars" /><error line="10" column="1" severity="warning" message="Unexpected console statement. (no-console)" source="eslint.rules.no-console" /></file><file name="/work/ws/web/ok.js"></file><file name="web/lib.js"><error line="1" severity="info" message="Note"/></file></checkstyle>"#;
        assert_eq!(
            render(parse(&Format::Checkstyle, xml.as_bytes(), ws())),
            [
                "error eslint.rules.no-unused-vars web/app.js:3:7 'x' is assigned a value but never used. (no-unused-vars)",
                "warning eslint.rules.no-console web/app.js:10:1 Unexpected console statement. (no-console)",
                "info checkstyle web/lib.js:1:- Note",
            ]
        );
    }

    #[test]
    fn regex_reads_gcc_lines_and_moves_paths_outside_the_workspace_into_the_message() {
        let output = "src/main.c: In function 'main':\nsrc/main.c:12:5: error: expected ';' before 'return'\r\n\
                      src/main.c:3:10: warning: unused variable 'x' [-Wunused-variable]\n\
                      /usr/include/stdio.h:27:2: note: declared here\ncompilation terminated.\n";
        assert_eq!(
            render(parse(&Format::regex(GCC).unwrap(), output.as_bytes(), ws())),
            [
                "error regex src/main.c:12:5 expected ';' before 'return'",
                "warning regex src/main.c:3:10 unused variable 'x' [-Wunused-variable]",
                "info regex -:27:2 /usr/include/stdio.h: declared here",
            ]
        );
        let unformatted = Format::regex(r"^(?P<path>\S+) is not formatted$").unwrap();
        assert_eq!(
            render(parse(&unformatted, b"src/a.rs is not formatted\n", ws())),
            ["error regex src/a.rs:-:- src/a.rs is not formatted"]
        );
    }

    #[test]
    fn paths_become_workspace_relative_or_outside() {
        assert_eq!(place("/work/ws/src/a.rs", ws()), Place::Inside("src/a.rs".into()));
        assert_eq!(place("file:///work/ws/./src//b.rs", ws()), Place::Inside("src/b.rs".into()));
        assert_eq!(place("file://localhost/work/ws/c.rs", ws()), Place::Inside("c.rs".into()));
        assert_eq!(place("./src/../lib/d.rs", ws()), Place::Inside("lib/d.rs".into()));
        assert_eq!(place("/work/ws/../ws/e.rs", ws()), Place::Inside("e.rs".into()));
        assert_eq!(place("/work/wsx/f.rs", ws()), Place::Outside);
        assert_eq!(place("src/../../g.rs", ws()), Place::Outside);
        assert_eq!(place("/work/ws", ws()), Place::Nowhere);
        assert_eq!(place(" ", ws()), Place::Nowhere);
    }

    #[test]
    fn bad_input_is_an_error_naming_the_format() {
        let sarif = parse(&Format::Sarif, b"{\n  \"version\": \"2.1.0\",\n  \"runs\": [\n    oops", ws()).unwrap_err();
        assert!(sarif.starts_with("not SARIF: expected a JSON object with `runs`: ") && sarif.contains("line 4"));
        let no_runs = parse(&Format::Sarif, br#"{"version":"2.1.0"}"#, ws()).unwrap_err();
        assert!(no_runs.starts_with("not SARIF") && no_runs.contains("`runs`"), "{no_runs}");
        assert_eq!(parse(&Format::Sarif, b" \n", ws()).unwrap_err(), "not SARIF: the output is empty");
        let junit = parse(&Format::Junit, b"FAILED tests/test_x.py::test_add - assert 1 == 2", ws()).unwrap_err();
        assert!(junit.starts_with("not JUnit XML: "), "{junit}");
        let checkstyle = parse(&Format::Checkstyle, b"<testsuites/>", ws()).unwrap_err();
        assert!(checkstyle.starts_with("not Checkstyle XML") && checkstyle.contains("<testsuites>"), "{checkstyle}");
        let group = Format::regex(r"(?P<file>[^:]+): (?P<message>.*)").unwrap_err();
        assert!(group.contains("regex") && group.contains("`file`") && group.contains("`path`"), "{group}");
        assert!(Format::regex(r"(?P<line>\d+)").unwrap_err().contains("neither"));
        assert!(Format::regex("(").unwrap_err().contains("does not compile"));
        assert!(Format::named("sarif2").unwrap_err().contains("\"cargo-json\""));
        assert!(Format::named("regex").is_err());
        for name in ["sarif", "junit", "cargo-json", "checkstyle"] {
            assert_eq!(Format::named(name).map(|f| f.as_str()), Ok(name));
        }
        assert_eq!(Format::regex(GCC).map(|f| f.as_str()), Ok("regex"));
    }

    #[test]
    fn hostile_input_never_panics_and_drops_what_does_not_fit() {
        let sarif = serde_json::json!({ "runs": [
            { "tool": { "driver": { "rules": "nope" } },
              "originalUriBaseIds": { "%A%": { "uri": "a/", "uriBaseId": "%B%" }, "%B%": { "uri": "b", "uriBaseId": "%A%" } },
              "results": [
                { "ruleId": 5, "level": ["error"], "message": { "text": "x\n".repeat(2000) },
                  "locations": [ { "physicalLocation": { "artifactLocation": { "uri": "../../etc/passwd" },
                    "region": { "startLine": 99_999_999_999_u64, "startColumn": -3 } } } ] },
                { "ruleId": "loop", "message": { "text": "m" },
                  "locations": [ { "physicalLocation": { "artifactLocation": { "uri": "x.rs", "uriBaseId": "%A%" } } } ] },
                { "locations": "nope", "message": 7 }, 7, null ] },
            { "results": {} }, "run" ] });
        let parsed = render(parse(&Format::Sarif, sarif.to_string().as_bytes(), ws()));
        let [long, looped, bare] = parsed.as_slice() else { panic!("{parsed:?}") };
        assert!(long.starts_with("warning sarif -:-:- ../../etc/passwd: x x") && long.ends_with("x x…"), "{long}");
        assert_eq!(long.chars().count(), "warning sarif -:-:- ".len() + MAX_MESSAGE_CHARS);
        assert_eq!(
            (looped.as_str(), bare.as_str()),
            ("warning loop b/a/b/a/b/a/b/a/x.rs:-:- m", "warning sarif -:-:- sarif")
        );

        let cargo = b"{\"reason\":\"compiler-message\",\"message\":null}\n\xff\xfe{\n[1,2]\n{{{{\n\
                      {\"reason\":\"compiler-message\",\"message\":{\"level\":7,\"message\":\"m\",\"spans\":\"x\"}}\n";
        assert_eq!(render(parse(&Format::CargoJson, cargo, ws())), ["error rustc -:-:- m"]);
        let gcc = Format::regex(GCC).unwrap();
        let weird = b"a.c:99999999999:0: error: x\n\xff:1:1: warn: y";
        assert_eq!(render(parse(&gcc, weird, ws())), ["error regex a.c:-:- x", "warning regex \u{FFFD}:1:1 y"]);
        let deep = format!("<testsuites>{}{}</testsuites>", "<a>".repeat(20_000), "</a>".repeat(20_000));
        let refused = parse(&Format::Junit, deep.as_bytes(), ws()).unwrap_err();
        assert!(refused.contains("nest more than"), "{refused}");

        let many: String = (0..MAX_FINDINGS + 50).map(|i| format!("src/a.rs:{i}:1: warning: boom {i}\n")).collect();
        let capped = render(parse(&gcc, many.as_bytes(), ws()));
        assert_eq!(capped.len(), MAX_FINDINGS + 1);
        let dropped = format!("info findings-truncated -:-:- more findings than {MAX_FINDINGS}; the rest were dropped");
        assert_eq!(capped.last(), Some(&dropped));
    }
}
