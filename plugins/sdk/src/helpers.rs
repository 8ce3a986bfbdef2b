//! Conveniences on the generated contract types: parsing the step's config,
//! the mounts as guest paths, building findings and verdicts, reading a
//! subject's output as text.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;

use crate::evaluator::subject::Output;
use crate::types::{Finding, Invocation, Mount, Severity, Verdict};

/// Parses the step's `config` JSON into `T`.
///
/// Derive `Deserialize` with `#[serde(deny_unknown_fields)]` on `T` so that
/// a misspelt key is an error the user sees, not a setting silently ignored.
/// [`Invocation::parse_config`] does the same from the invocation.
///
/// # Errors
/// A one-line message naming the problem, e.g.
/// ``invalid config: unknown field `pattern`, expected `patterns` at line 1 column 11``.
pub fn parse_config<T: DeserializeOwned>(json: &str) -> Result<T, String> {
    serde_json::from_str(json).map_err(|e| format!("invalid config: {e}"))
}

impl Invocation {
    /// Parses this step's `config` into `T`; see [`parse_config`].
    ///
    /// ```
    /// # use cleanroom_plugin_sdk::Invocation;
    /// #[derive(serde::Deserialize)]
    /// #[serde(deny_unknown_fields)]
    /// struct Config {
    ///     #[serde(default)]
    ///     words: Vec<String>,
    /// }
    /// # let invocation = Invocation { step: "s".into(), config: r#"{"words":["FIXME"]}"#.into(),
    /// #     mounts: vec![], attempt: 1, feedback: vec![] };
    /// let config: Config = invocation.parse_config()?;
    /// assert_eq!(config.words, ["FIXME"]);
    /// # Ok::<(), String>(())
    /// ```
    ///
    /// # Errors
    /// A one-line message naming the problem; return it as the plugin's
    /// `Err` so the step is reported as `error` with that message.
    pub fn parse_config<T: DeserializeOwned>(&self) -> Result<T, String> {
        parse_config(&self.config)
    }

    /// The guest paths of every mount (`/src`, `/` for the workspace root),
    /// in the pipeline's order: what [`Files::walk`](crate::Files::walk) takes.
    pub fn mount_paths(&self) -> Vec<String> {
        self.mounts.iter().map(|m| m.path.clone()).collect()
    }

    /// The mounts the step may write below (stages only), in order.
    pub fn writable_mounts(&self) -> impl Iterator<Item = &Mount> {
        self.mounts.iter().filter(|m| m.writable)
    }
}

impl Severity {
    /// The name used in pipelines and reports: `error`, `warning` or `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

impl FromStr for Severity {
    type Err = String;

    /// Parses `error`, `warning` or `info`, e.g. from a plugin's config.
    ///
    /// ```
    /// use cleanroom_plugin_sdk::Severity;
    /// assert_eq!("warning".parse::<Severity>(), Ok(Severity::Warning));
    /// assert_eq!("fatal".parse::<Severity>().unwrap_err(), "invalid severity `fatal`: use error, warning or info");
    /// ```
    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "error" => Ok(Severity::Error),
            "warning" => Ok(Severity::Warning),
            "info" => Ok(Severity::Info),
            other => Err(format!("invalid severity `{other}`: use error, warning or info")),
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Finding {
    /// A finding of `severity` from `rule` (short, stable, kebab-case), about
    /// no file in particular; add one with [`Finding::at`] or
    /// [`Finding::at_file`].
    pub fn new(severity: Severity, rule: impl Into<String>, message: impl Into<String>) -> Self {
        Finding { rule: rule.into(), severity, message: message.into(), path: None, line: None, column: None }
    }

    /// An `error` finding: it fails the check.
    ///
    /// ```
    /// use cleanroom_plugin_sdk::{Finding, Severity};
    /// let finding = Finding::error("no-fixme", "FIXME left in the code").at("/src/a.rs", 3, 7);
    /// assert_eq!(finding.severity, Severity::Error);
    /// assert_eq!((finding.path.as_deref(), finding.line, finding.column), (Some("/src/a.rs"), Some(3), Some(7)));
    /// ```
    pub fn error(rule: impl Into<String>, message: impl Into<String>) -> Self {
        Finding::new(Severity::Error, rule, message)
    }

    /// A `warning` finding: reported, but the check still passes.
    pub fn warning(rule: impl Into<String>, message: impl Into<String>) -> Self {
        Finding::new(Severity::Warning, rule, message)
    }

    /// An `info` finding: reported, but the check still passes.
    pub fn info(rule: impl Into<String>, message: impl Into<String>) -> Self {
        Finding::new(Severity::Info, rule, message)
    }

    /// Places the finding at a 1-based `line` and `column` (in characters,
    /// as [`line_col`](crate::line_col) counts them) of the file at the guest
    /// path `path` (`/src/a.rs`; reports show it as `src/a.rs`).
    pub fn at(self, path: impl Into<String>, line: u32, column: u32) -> Self {
        Finding { path: Some(path.into()), line: Some(line), column: Some(column), ..self }
    }

    /// Places the finding at a 1-based `line` of the file at `path`, column
    /// unknown.
    pub fn at_line(self, path: impl Into<String>, line: u32) -> Self {
        Finding { path: Some(path.into()), line: Some(line), column: None, ..self }
    }

    /// Places the finding on the file at the guest path `path` as a whole.
    pub fn at_file(self, path: impl Into<String>) -> Self {
        Finding { path: Some(path.into()), line: None, column: None, ..self }
    }
}

impl Verdict {
    /// A passing verdict with a one-line `summary`.
    pub fn pass(summary: impl Into<String>) -> Self {
        Verdict { passed: true, summary: summary.into(), detail: String::new() }
    }

    /// A failing verdict with a one-line `summary`. The summary is what a
    /// retried stage is told: say what failed without quoting the scenario.
    pub fn fail(summary: impl Into<String>) -> Self {
        Verdict { passed: false, summary: summary.into(), detail: String::new() }
    }

    /// Adds the longer `detail` (expected and actual output, logs), which
    /// only humans see in reports.
    ///
    /// ```
    /// use cleanroom_plugin_sdk::Verdict;
    /// let verdict = Verdict::fail("stdout differs").with_detail("expected \"hello\\n\", got \"\"");
    /// assert!(!verdict.passed);
    /// ```
    pub fn with_detail(self, detail: impl Into<String>) -> Self {
        Verdict { detail: detail.into(), ..self }
    }
}

impl Output {
    /// The subject's stdout as text (invalid UTF-8 replaced by `�`).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The subject's stderr as text (invalid UTF-8 replaced by `�`).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(config: &str, mounts: &[(&str, bool)]) -> Invocation {
        Invocation {
            step: "step".into(),
            config: config.into(),
            mounts: mounts.iter().map(|&(path, writable)| Mount { path: path.into(), writable }).collect(),
            attempt: 1,
            feedback: Vec::new(),
        }
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Config {
        patterns: Vec<String>,
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = invocation(r#"{"pattern": []}"#, &[]).parse_config::<Config>().unwrap_err();
        assert!(err.starts_with("invalid config: unknown field `pattern`"), "{err}");
        assert_eq!(parse_config::<Config>(r#"{"patterns": ["x"]}"#).unwrap().patterns, ["x"]);
    }

    #[test]
    fn mounts_as_guest_paths() {
        let inv = invocation("{}", &[("/src", false), ("/", false), ("/out", true)]);
        assert_eq!(inv.mount_paths(), ["/src", "/", "/out"]);
        let writable: Vec<&str> = inv.writable_mounts().map(|m| m.path.as_str()).collect();
        assert_eq!(writable, ["/out"]);
    }

    #[test]
    fn findings_build_in_one_line() {
        let plain = Finding::warning("rule", "message");
        assert_eq!(plain, Finding::new(Severity::Warning, "rule", "message"));
        assert_eq!((plain.path.clone(), plain.line, plain.column), (None, None, None));
        let placed = Finding::info("r", "m").at("/a", 1, 2).at_line("/b", 3);
        assert_eq!((placed.path.as_deref(), placed.line, placed.column), (Some("/b"), Some(3), None));
        assert_eq!(placed.severity, Severity::Info);
        let file = Finding::error("r", "m").at("/a", 1, 2).at_file("/c");
        assert_eq!((file.path.as_deref(), file.line, file.column), (Some("/c"), None, None));
    }

    #[test]
    fn severities_round_trip_through_their_names() {
        for severity in [Severity::Error, Severity::Warning, Severity::Info] {
            assert_eq!(severity.to_string().parse::<Severity>(), Ok(severity));
        }
        assert_eq!("Error".parse::<Severity>().unwrap_err(), "invalid severity `Error`: use error, warning or info");
    }

    #[test]
    fn verdicts_and_output() {
        let verdict = Verdict::pass("ok").with_detail("long");
        assert_eq!(verdict, Verdict { passed: true, summary: "ok".into(), detail: "long".into() });
        assert!(!Verdict::fail("no").passed);
        let output = Output { exit_code: 0, stdout: b"hi\n".to_vec(), stderr: vec![0xff] };
        assert_eq!((output.stdout_text().as_str(), output.stderr_text().as_str()), ("hi\n", "\u{fffd}"));
    }
}
