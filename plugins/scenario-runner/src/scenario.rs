//! Scenario files: finding them in the scenario directory and parsing one.
//!
//! Every `*.toml` file directly in the directory is one scenario, named by
//! its file stem (`rejects-zero.toml` is `rejects-zero`). Keys (unknown keys
//! are an error):
//! - `description` (string): what the scenario checks; shown to humans only.
//! - `args` (list of strings, default `[]`): the subject's arguments.
//! - `stdin` (string, default `""`): the subject's stdin.
//! - `exit_code` (integer, default 0): the expected exit code.
//! - `stdout` (string): the exact expected stdout.
//! - `stdout_contains` (list of strings): strings stdout must contain.
//! - `stdout_regex` (string): a `regex` crate pattern stdout must match
//!   somewhere (anchor it with `^`/`$`, `(?m)` or `\A`/`\z` as needed).
//! - `stderr_contains` (list of strings): strings stderr must contain.

use regex::Regex;
use serde::Deserialize;

use crate::judge::Expectations;

/// One scenario file's content.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    stdin: String,
    #[serde(default)]
    exit_code: u32,
    #[serde(default)]
    stdout: Option<String>,
    #[serde(default)]
    stdout_contains: Vec<String>,
    #[serde(default)]
    stdout_regex: Option<String>,
    #[serde(default)]
    stderr_contains: Vec<String>,
}

/// A parsed scenario: how to run the subject and what to expect.
#[derive(Debug)]
pub struct Scenario {
    /// What it checks, if the file says.
    pub description: Option<String>,
    /// The subject's arguments.
    pub args: Vec<String>,
    /// The subject's stdin.
    pub stdin: String,
    /// What the run must produce.
    pub expect: Expectations,
}

/// Parses a scenario file.
///
/// # Errors
/// The parser's message. It may quote the file, so it belongs in a verdict's
/// detail, never in its summary.
pub fn parse(text: &str) -> Result<Scenario, String> {
    let file: ScenarioFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let stdout_regex =
        file.stdout_regex.as_deref().map(Regex::new).transpose().map_err(|e| format!("invalid `stdout_regex`: {e}"))?;
    Ok(Scenario {
        description: file.description,
        args: file.args,
        stdin: file.stdin,
        expect: Expectations {
            exit_code: file.exit_code,
            stdout: file.stdout,
            stdout_contains: file.stdout_contains,
            stdout_regex,
            stderr_contains: file.stderr_contains,
        },
    })
}

/// The scenario names in `dir`, sorted.
///
/// # Errors
/// When `dir` cannot be listed, holds no `*.toml` file, or a file name is
/// not one line of UTF-8.
pub fn list(dir: &str) -> Result<Vec<String>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!("cannot read the scenario directory `{dir}`: {e}: check `scenarios` and the step's `read`")
    })?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read the scenario directory `{dir}`: {e}"))?;
        let path = entry.path();
        if path.extension().is_none_or(|ext| ext != "toml") || !path.is_file() {
            continue;
        }
        let stem = path.file_stem().and_then(|s| s.to_str());
        match stem {
            Some(name) if !name.is_empty() && !name.contains(char::is_control) => names.push(name.to_string()),
            _ => {
                let shown = path.display().to_string();
                return Err(format!("scenario file `{}` has an unusable name: rename it", shown.escape_debug()));
            }
        }
    }
    if names.is_empty() {
        return Err(format!("no scenarios in `{dir}`: add NAME.toml files"));
    }
    names.sort();
    Ok(names)
}

/// The file of scenario `name` in `dir`.
///
/// # Errors
/// When `name` could not have come from [`list`] (it has a `/`, say).
pub fn path(dir: &str, name: &str) -> Result<String, String> {
    if name.is_empty() || name.contains(['/', '\\']) || name == ".." || name.contains(char::is_control) {
        return Err(format!("unknown scenario `{}`: use a name from the scenario list", name.escape_debug()));
    }
    Ok(format!("{}/{name}.toml", dir.trim_end_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_defaults_and_all_keys() {
        let empty = parse("").unwrap();
        assert!(empty.args.is_empty() && empty.stdin.is_empty() && empty.expect.exit_code == 0);
        let full = parse(
            "description = 'd'\nargs = ['15']\nstdin = 'in'\nexit_code = 2\nstdout = 'o'\n\
             stdout_contains = ['a']\nstdout_regex = '^o$'\nstderr_contains = ['e']\n",
        )
        .unwrap();
        assert_eq!(full.args, vec!["15"]);
        assert_eq!(full.expect.exit_code, 2);
        assert!(full.expect.stdout_regex.is_some());
    }

    #[test]
    fn rejects_unknown_keys_bad_types_and_bad_patterns() {
        assert!(parse("stdout_contain = ['a']").unwrap_err().contains("stdout_contain"));
        assert!(parse("exit_code = -1").is_err());
        assert!(parse("args = '15'").is_err());
        assert!(parse("stdout_regex = '('").unwrap_err().contains("`stdout_regex`"));
    }

    #[test]
    fn lists_toml_files_sorted() {
        let dir = std::env::temp_dir().join(format!("scenario-runner-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("nested.toml")).unwrap();
        let dir_str = dir.to_str().unwrap().to_string();
        assert!(list(&dir_str).unwrap_err().starts_with("no scenarios in `"));
        for name in ["b.toml", "a.toml", "notes.md"] {
            std::fs::write(dir.join(name), "").unwrap();
        }
        let listed = list(&dir_str);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(listed.unwrap(), vec!["a", "b"]);
        assert!(list(&dir_str).unwrap_err().contains("cannot read the scenario directory"));
    }

    #[test]
    fn scenario_names_cannot_leave_the_directory() {
        assert_eq!(path("/scenarios/", "one").unwrap(), "/scenarios/one.toml");
        assert!(path("/scenarios", "../etc/x").is_err());
        assert!(path("/scenarios", "").is_err());
    }
}
