//! {{name}}: a Cleanroom check plugin.
//!
//! It reads every file in the step's mounts and reports each line that
//! contains one of the configured words as an `error` finding, so the step
//! fails while any is left. Config (the step's `config` table):
//!
//! ```toml
//! config = { words = ["FIXME", "XXX"] }   # optional; default ["FIXME"]
//! ```
//!
//! The host calls `check` once per step run with an `Invocation`: the step
//! id, the config as JSON text and the mounts. The plugin sees only those
//! mounts, at their guest paths (`read = ["."]` appears as `/`,
//! `read = ["src"]` as `/src`), and nothing else: no network, no environment
//! variables, no clock beyond WASI's. Anything it prints is captured into the
//! report.

use cleanroom_plugin_sdk::check::{Finding, Guest, Invocation};
use cleanroom_plugin_sdk::{line_col, read_text, Files};
use serde::Deserialize;

/// The rule every finding carries: users filter reports on it.
const RULE: &str = "{{name}}";

/// The step's `config` table. `deny_unknown_fields` turns a misspelt key
/// into an error the user sees instead of a setting silently ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The words to look for.
    #[serde(default = "default_words")]
    words: Vec<String>,
}

fn default_words() -> Vec<String> {
    vec!["FIXME".to_string()]
}

/// The plugin: a type implementing the `check` world's `Guest` trait,
/// exported with `export_check!` at the bottom of this file.
struct Check;

impl Guest for Check {
    /// Returning `Ok(findings)` reports them (any `error` finding fails the
    /// step); returning `Err(message)` makes the step an `error`: use it for
    /// bad config, never for findings.
    fn check(invocation: Invocation) -> Result<Vec<Finding>, String> {
        let config: Config = invocation.parse_config()?;
        if config.words.is_empty() || config.words.iter().any(String::is_empty) {
            return Err("invalid config: `words` must be a non-empty list of non-empty strings".into());
        }

        let mut findings = Vec::new();
        // Every regular file below the mounts; `Files::new(include, exclude)`
        // takes globs over workspace-relative paths, e.g. `["**/*.rs"]`.
        for file in Files::new(&[], &[])?.walk(&invocation.mount_paths()) {
            // `read_text` skips binary files (a NUL byte) and unreadable ones.
            let Some(bytes) = read_text(&file.guest) else { continue };
            let Ok(text) = std::str::from_utf8(&bytes) else { continue };
            let mut line_start = 0; // byte offset of the current line
            for line in text.split_inclusive('\n') {
                for word in &config.words {
                    if let Some(at) = line.find(word.as_str()) {
                        // 1-based line and column (in characters).
                        let (line_no, column) = line_col(&bytes, line_start + at);
                        let message = format!("`{word}` left in the file: resolve it or remove it");
                        // The guest path (`/src/a.rs`); reports show `src/a.rs`.
                        findings.push(Finding::error(RULE, message).at(&file.guest, line_no, column));
                    }
                }
                line_start += line.len();
            }
        }
        Ok(findings)
    }
}

cleanroom_plugin_sdk::export_check!(Check);
