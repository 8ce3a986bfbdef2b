//! `forbid-pattern`: reports every match of forbidden regular expressions.
//!
//! Config (the step's `config` table):
//! - `patterns` (required): regexes (Rust `regex` syntax), e.g. `['todo!\(', 'unimplemented!\(']`.
//! - `include` / `exclude`: globs over workspace-relative paths; default: every file in the mounts.
//!   Written as a step's own `include`: `*.rs` matches at any depth, `src/**/*.py` from the
//!   workspace root, and `*` does not cross a `/`.
//! - `rule`: the rule id findings carry; default `forbid-pattern`.
//! - `message`: what a match means, e.g. `stub left in code`; default: names the pattern.
//! - `severity`: `error` (default), `warning` or `info`.
//!
//! One finding per match, with line and column. Each pattern is matched
//! against a file's whole contents (`^` is the start of the file unless the
//! pattern says `(?m)`). Files containing a NUL byte are treated as binary
//! and skipped.
//!
//! The host does the searching (the contract's `search` interface, natively
//! and in parallel, over exactly the files the step's mounts show); the
//! plugin turns its matches into findings.

use cleanroom_plugin_sdk::check::{Finding, Guest, Invocation, Severity};
use cleanroom_plugin_sdk::one_line;
use cleanroom_plugin_sdk::search::Query;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    patterns: Vec<String>,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    severity: Option<String>,
}

struct ForbidPattern;

impl Guest for ForbidPattern {
    fn check(invocation: Invocation) -> Result<Vec<Finding>, String> {
        let config: Config = invocation.parse_config()?;
        if config.patterns.is_empty() {
            return Err("config `patterns` is empty: list at least one regex".into());
        }
        let severity = config.severity.as_deref().map_or(Ok(Severity::Error), str::parse)?;
        let rule = config.rule.unwrap_or_else(|| "forbid-pattern".to_string());
        // A bad pattern comes back as `invalid pattern: <the regex error>`,
        // a bad glob as `invalid glob ...`: returned as they are.
        let matches = Query::new(config.patterns.iter().map(String::as_str))
            .include(config.include)
            .exclude(config.exclude)
            .run()?;

        let findings = matches
            .into_iter()
            .map(|m| {
                let matched = one_line(&m.text, 60);
                let pattern = config.patterns.get(m.pattern as usize).map_or("?", String::as_str);
                let message = match &config.message {
                    Some(what) => format!("{what}: `{matched}` (pattern `{pattern}`)"),
                    None => format!("`{matched}` matches forbidden pattern `{pattern}`"),
                };
                Finding::new(severity, &rule, message).at(m.path, m.line, m.column)
            })
            .collect();
        Ok(findings)
    }
}

cleanroom_plugin_sdk::export_check!(ForbidPattern);
