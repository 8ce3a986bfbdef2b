//! The host's regex search of the step's files (contract `0.1.3`, `check`
//! world only): [`search`] runs a [`Query`] and returns every [`Match`].
//!
//! Reading every file through WASI and matching it inside WebAssembly is
//! several times slower than `grep`; this asks the host to do the same work
//! natively, on several threads, with ripgrep's libraries. It searches
//! exactly the files the plugin could read itself (the step's mounts; never
//! the run directory, `.git`, symlinks or binary files), and matches each
//! pattern as `regex::bytes::Regex` would against a file's whole contents.
//! `wit/plugin.wit` (interface `search`) has the full rules.
//!
//! ```no_run
//! use cleanroom_plugin_sdk::check::Finding;
//! use cleanroom_plugin_sdk::search::Query;
//!
//! # fn check() -> Result<Vec<Finding>, String> {
//! let matches = Query::new(["FIXME", r"todo!\("]).include(["*.rs"]).exclude(["vendor/**"]).run()?;
//! let findings = matches
//!     .into_iter()
//!     .map(|m| Finding::error("no-fixme", format!("`{}` left in the code", m.text)).at(m.path, m.line, m.column))
//!     .collect();
//! # Ok(findings)
//! # }
//! ```
//!
//! A plugin that calls it imports `cleanroom:plugin/search@0.1.3`, so it
//! needs a runner that provides `0.1.3` or later; one that does not call it
//! does not import it.

/// Runs a query: `search(&query)`, or [`Query::run`]. The error says what is
/// wrong with the query; a bad pattern's starts with `invalid pattern: `,
/// like the error a check gives for one itself.
pub use crate::check::bindings::cleanroom::plugin::search::search;
/// One match: the file's guest `path`, 1-based `line` and `column` (in
/// characters, as [`line_col`](crate::line_col) counts them), the index of
/// the `pattern` that matched, and the matched `text` (at most 200 bytes).
pub use crate::check::bindings::cleanroom::plugin::search::Match;
/// What to look for and where: `patterns` (regexes, or plain strings when
/// `literal`), `case_insensitive`, `include` and `exclude` globs over
/// workspace-relative paths, and `max_matches` (0: the host's cap of
/// 100000). Build one with [`Query::new`].
pub use crate::check::bindings::cleanroom::plugin::search::Query;

impl Query {
    /// A query for `patterns` (Rust `regex` syntax) with the defaults: not
    /// literal, case-sensitive, every file, at most 100000 matches.
    ///
    /// ```
    /// use cleanroom_plugin_sdk::search::Query;
    /// let query = Query::new(["todo!\\("]).case_insensitive(true).max_matches(10);
    /// assert_eq!(query.patterns, ["todo!\\("]);
    /// assert!(query.case_insensitive && !query.literal && query.include.is_empty());
    /// assert_eq!(query.max_matches, 10);
    /// ```
    pub fn new<S: Into<String>>(patterns: impl IntoIterator<Item = S>) -> Query {
        Query {
            patterns: patterns.into_iter().map(Into::into).collect(),
            literal: false,
            case_insensitive: false,
            include: Vec::new(),
            exclude: Vec::new(),
            max_matches: 0,
        }
    }

    /// Whether the patterns are plain strings rather than regexes.
    pub fn literal(self, yes: bool) -> Query {
        Query { literal: yes, ..self }
    }

    /// Whether letters match in either case.
    pub fn case_insensitive(self, yes: bool) -> Query {
        Query { case_insensitive: yes, ..self }
    }

    /// Searches only files matching one of these globs, written as a step's
    /// `include` is: `*.rs` matches at any depth, `src/**/*.py` from the
    /// workspace root, and `*` does not cross a `/`.
    pub fn include<S: Into<String>>(self, globs: impl IntoIterator<Item = S>) -> Query {
        Query { include: globs.into_iter().map(Into::into).collect(), ..self }
    }

    /// Leaves out files matching one of these globs (written as for
    /// [`Query::include`]).
    pub fn exclude<S: Into<String>>(self, globs: impl IntoIterator<Item = S>) -> Query {
        Query { exclude: globs.into_iter().map(Into::into).collect(), ..self }
    }

    /// Stops after `max` matches (0: the host's cap, 100000); those kept are
    /// always the first in the order [`search`] returns them.
    pub fn max_matches(self, max: u32) -> Query {
        Query { max_matches: max, ..self }
    }

    /// Asks the host to run this query; see [`search`].
    ///
    /// # Errors
    /// What is wrong with the query (e.g. `invalid pattern: ...`), or
    /// `search: out of time`.
    pub fn run(&self) -> Result<Vec<Match>, String> {
        search(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sets_each_field() {
        let query = Query::new(["a", "b"])
            .literal(true)
            .case_insensitive(true)
            .include(["*.rs"])
            .exclude(vec![String::from("target/**")])
            .max_matches(3);
        assert_eq!(query.patterns, ["a", "b"]);
        assert!(query.literal && query.case_insensitive);
        assert_eq!(query.include, ["*.rs"]);
        assert_eq!(query.exclude, ["target/**"]);
        assert_eq!(query.max_matches, 3);
    }
}
