//! `forbid-pattern`: reports every match of forbidden regular expressions.
//!
//! Config (the step's `config` table):
//! - `patterns` (required): regexes (Rust `regex` syntax), e.g. `['todo!\(', 'unimplemented!\(']`.
//! - `include` / `exclude`: globs over workspace-relative paths; default: every file in the mounts.
//! - `rule`: the rule id findings carry; default `forbid-pattern`.
//! - `message`: what a match means, e.g. `stub left in code`; default: names the pattern.
//! - `severity`: `error` (default), `warning` or `info`.
//!
//! One finding per match, with line and column. Files containing a NUL byte
//! are treated as binary and skipped.

use cleanroom_plugin_sdk::check::{Finding, Guest, Invocation, Severity};
use cleanroom_plugin_sdk::{line_col, one_line, read_text, Files};
use regex::bytes::RegexSet;
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
        let set = RegexSet::new(&config.patterns).map_err(|e| format!("invalid pattern: {e}"))?;
        let regexes: Vec<regex::bytes::Regex> =
            set.patterns().iter().map(|p| regex::bytes::Regex::new(p).expect("compiled in the set already")).collect();
        let severity = config.severity.as_deref().map_or(Ok(Severity::Error), str::parse)?;
        let rule = config.rule.unwrap_or_else(|| "forbid-pattern".to_string());
        let files = Files::new(&config.include, &config.exclude)?;

        let mut findings = Vec::new();
        for file in files.walk(&invocation.mount_paths()) {
            let Some(text) = read_text(&file.guest) else { continue };
            if !set.is_match(&text) {
                continue;
            }
            let mut hits = Vec::new();
            for index in set.matches(&text).iter() {
                for m in regexes[index].find_iter(&text) {
                    hits.push((m.start(), index, m.as_bytes()));
                }
            }
            hits.sort_by_key(|&(start, index, _)| (start, index));
            for (start, index, matched) in hits {
                let (line, column) = line_col(&text, start);
                let matched = one_line(&String::from_utf8_lossy(matched), 60);
                let pattern = &config.patterns[index];
                let message = match &config.message {
                    Some(what) => format!("{what}: `{matched}` (pattern `{pattern}`)"),
                    None => format!("`{matched}` matches forbidden pattern `{pattern}`"),
                };
                findings.push(Finding::new(severity, &rule, message).at(&file.guest, line, column));
            }
        }
        Ok(findings)
    }
}

cleanroom_plugin_sdk::export_check!(ForbidPattern);
