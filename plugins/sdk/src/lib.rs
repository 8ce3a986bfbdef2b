//! Helpers for writing Cleanroom plugins in Rust.
//!
//! The bindings themselves come from `wit_bindgen::generate!` in each plugin
//! (pointing at the repository's `wit/` directory and one world); this crate
//! holds what every plugin would otherwise write again:
//!
//! * [`parse_config`]: the step's `config` JSON into your own serde type, with
//!   an error message that says which key was wrong.
//! * [`Files`]: every regular file below the step's mounts, filtered by
//!   include/exclude globs written relative to the workspace root.
//! * [`line_col`]: a byte offset into a file as a 1-based line and column.
//!
//! ```ignore
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config { include: Vec<String> }
//! let config: Config = cleanroom_plugin_sdk::parse_config(&invocation.config)?;
//! let mounts: Vec<String> = invocation.mounts.iter().map(|m| m.path.clone()).collect();
//! for file in cleanroom_plugin_sdk::Files::new(&config.include, &[])?.walk(&mounts) {
//!     // file.guest is "/src/main.rs", file.rel is "src/main.rs"
//! }
//! ```
#![deny(missing_docs)]

use std::collections::BTreeSet;
use std::path::Path;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::de::DeserializeOwned;

/// Parses the step's `config` JSON into `T`.
///
/// Derive `Deserialize` with `#[serde(deny_unknown_fields)]` on `T` so that
/// a misspelt key is an error the user sees, not a setting silently ignored.
///
/// # Errors
/// A one-line message naming the problem, e.g.
/// ``invalid config: unknown field `pattern`, expected `patterns` at line 1 column 11``.
pub fn parse_config<T: DeserializeOwned>(json: &str) -> Result<T, String> {
    serde_json::from_str(json).map_err(|e| format!("invalid config: {e}"))
}

/// A regular file found below a mount.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileEntry {
    /// The path the plugin opens, e.g. `/src/main.rs`.
    pub guest: String,
    /// The same path relative to the workspace root, e.g. `src/main.rs`.
    /// Globs match against this form.
    pub rel: String,
}

/// Selects files by include and exclude globs.
///
/// Globs use `globset` syntax (`**/*.rs`, `docs/*.md`, `{a,b}/**`) and match
/// the workspace-relative path (`src/main.rs`, no leading slash). An empty
/// include list selects every file.
pub struct Files {
    include: Option<GlobSet>,
    exclude: GlobSet,
}

impl Files {
    /// Builds a selector.
    ///
    /// # Errors
    /// A one-line message naming the first glob that does not parse.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, String> {
        let include = if include.is_empty() { None } else { Some(glob_set(include)?) };
        Ok(Files { include, exclude: glob_set(exclude)? })
    }

    /// Whether a workspace-relative path is selected.
    pub fn matches(&self, rel: &str) -> bool {
        self.include.as_ref().is_none_or(|set| set.is_match(rel)) && !self.exclude.is_match(rel)
    }

    /// Every selected regular file below `mounts` (guest paths such as `/src`
    /// or `/`), sorted and without duplicates when mounts nest.
    ///
    /// Symbolic links are not followed: inside the sandbox a link that leaves
    /// the mount cannot be opened anyway, and following links inside it would
    /// report the same file twice. Unreadable directories are skipped.
    pub fn walk(&self, mounts: &[String]) -> Vec<FileEntry> {
        let mut found = BTreeSet::new();
        for mount in mounts {
            walk_dir(Path::new(mount), &mut |guest| {
                let rel = guest.trim_start_matches('/').to_string();
                if self.matches(&rel) {
                    found.insert(FileEntry { guest: guest.to_string(), rel });
                }
            });
        }
        found.into_iter().collect()
    }
}

fn glob_set(globs: &[String]) -> Result<GlobSet, String> {
    let mut builder = GlobSetBuilder::new();
    for glob in globs {
        builder.add(Glob::new(glob).map_err(|e| format!("invalid glob `{glob}`: {e}"))?);
    }
    builder.build().map_err(|e| format!("invalid globs: {e}"))
}

fn walk_dir(dir: &Path, visit: &mut dyn FnMut(&str)) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            walk_dir(&path, visit);
        } else if kind.is_file() {
            if let Some(path) = path.to_str() {
                visit(path);
            }
        }
    }
}

/// Bytes read before deciding a file is binary, as grep does.
const SNIFF: usize = 32 << 10;

/// The contents of the file at `path` if it is text, `None` if it cannot be
/// read or is binary (contains a NUL byte). A file with a NUL in its first
/// 32 KiB is not read further, so scanning a tree of libraries and images
/// costs little more than scanning its sources.
pub fn read_text(path: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut text = Vec::new();
    (&mut file).take(SNIFF as u64).read_to_end(&mut text).ok()?;
    if text.contains(&0) {
        return None;
    }
    if text.len() == SNIFF {
        let start = text.len();
        file.read_to_end(&mut text).ok()?;
        if text[start..].contains(&0) {
            return None;
        }
    }
    Some(text)
}

/// Converts a byte offset in `text` into a 1-based (line, column), counting
/// columns in characters (invalid UTF-8 counts one column per byte).
pub fn line_col(text: &[u8], offset: usize) -> (u32, u32) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    (to_u32(line), to_u32(column))
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Cuts `text` to at most `max` characters on one line, for messages.
pub fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let flat = flat.trim();
    if flat.chars().count() <= max {
        flat.to_string()
    } else {
        let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one_in_characters() {
        let text = "ab\nçd todo\n".as_bytes();
        let offset = text.windows(4).position(|w| w == b"todo").unwrap();
        assert_eq!(line_col(text, offset), (2, 4));
        assert_eq!(line_col(text, 0), (1, 1));
    }

    #[test]
    fn empty_include_selects_everything_but_excludes() {
        let files = Files::new(&[], &["target/**".to_string()]).unwrap();
        assert!(files.matches("src/main.rs"));
        assert!(!files.matches("target/debug/x"));
    }

    #[test]
    fn bad_glob_names_the_glob() {
        let err = Files::new(&["src/[".to_string()], &[]).err().unwrap();
        assert!(err.contains("`src/[`"), "{err}");
    }

    #[test]
    fn read_text_returns_text_whole_and_skips_binary_wherever_the_nul_is() {
        let dir = std::env::temp_dir().join(format!("sdk-read-text-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            path.display().to_string()
        };
        let long_text = "line\n".repeat(20_000);
        assert_eq!(read_text(&write("text", long_text.as_bytes())).unwrap(), long_text.as_bytes());
        assert_eq!(read_text(&write("early", b"ELF\0rest")), None);
        let mut late = long_text.clone().into_bytes();
        late.push(0);
        assert_eq!(read_text(&write("late", &late)), None);
        assert_eq!(read_text(&dir.join("missing").display().to_string()), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_line_flattens_and_cuts() {
        assert_eq!(one_line("a\nb", 10), "a b");
        assert_eq!(one_line("abcdef", 4), "abc…");
    }
}
