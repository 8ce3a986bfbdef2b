//! User-facing diagnostics: what went wrong, where, and what to do.
//!
//! Every error a user can cause (a bad pipeline file, a bad plugin, a bad
//! flag) becomes a [`Diagnostic`] with a stable code. Validation collects all
//! of them before stopping ([`Diagnostics`]), and the CLI renders them with
//! [`Diagnostic::render`] and exits with code 2. Codes never change meaning;
//! `docs/errors.md` lists them.

use std::fmt;
use std::path::{Path, PathBuf};

/// A stable diagnostic code. The number never changes meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Code {
    /// The pipeline file cannot be read.
    CR001,
    /// The pipeline file is not valid TOML, or does not have the expected shape
    /// (unknown key, wrong type, bad duration or size).
    CR002,
    /// A step names a plugin that `[plugins]` does not define.
    CR003,
    /// A step's `needs` names a step that does not exist.
    CR004,
    /// The steps' `needs` form a cycle.
    CR005,
    /// Two steps share an id.
    CR006,
    /// A mount path is absolute, escapes the workspace, or names the run directory.
    CR007,
    /// A mount path does not exist.
    CR008,
    /// A step asks for a capability its kind may not have (e.g. `write` on a check).
    CR009,
    /// A plugin file cannot be read.
    CR010,
    /// A plugin file is not a WebAssembly component, or wasmtime rejects it.
    CR011,
    /// A plugin does not export the world its step kind needs.
    CR012,
    /// A plugin's sha256 does not match its pin.
    CR013,
    /// A plugin imports an interface the host does not provide.
    CR014,
    /// The workspace directory does not exist or cannot be used.
    CR015,
    /// Retired: stage and evaluator plugins were not supported before 0.1.
    CR016,
    /// A step's table is incomplete or self-contradictory.
    CR017,
    /// A `run` step's program cannot be found.
    CR018,
    /// A grant crosses the `[barrier]`: a stage or subject sees holdout
    /// paths, or an evaluator sees private ones; a holdout reader reads or
    /// runs a path a stage writes; or a stage may write the judge's
    /// definition (pipeline, lock, plugin files, the runner's directories).
    CR019,
    /// A `retry` is invalid: unknown or not a stage, or not upstream of the gate.
    CR020,
    /// An evaluator's `repeat`, `require`, `threshold` or `subject` is invalid.
    CR021,
    /// The run record (`.cleanroom/runs/`) cannot be written, or `--resume`
    /// finds no unfinished run.
    CR022,
    /// Two steps that may run at the same time touch the same path, and at
    /// least one of them writes it.
    CR023,
    /// `run --only` or `--skip` names a step that does not exist.
    CR024,
    /// `run --locked`: a plugin differs from `cleanroom.lock`, or the lock
    /// file is missing or unreadable.
    CR025,
    /// A command-line input other than the pipeline is unusable: a plugin
    /// file for `plugin inspect`/`plugin test`, a test case, a directory
    /// `init` or `plugin new` would write into.
    CR026,
    /// A secret is badly declared, not declared, or cannot be read when
    /// the run starts.
    CR027,
    /// An `allow_hosts` or `secret_headers` entry is malformed.
    CR028,
    /// The runner's state directory (its per-user key) is unusable: it
    /// lies inside the workspace or under a path a step is granted, is not
    /// private, or the key cannot be read or created.
    CR029,
    /// The cache directory lies inside the workspace or under a path a
    /// step is granted.
    CR030,
    /// `run --resume`: a run's journal fails verification (edited, forged,
    /// cut short, written with another key), or its directory or events
    /// file is not a real one.
    CR031,
    /// `run --resume`: the pipeline file, a plugin or the configuration
    /// changed since the run started.
    CR032,
    /// `cleanroom report`: the run does not exist, has no report yet, or its
    /// report or journal is not what the runner wrote.
    CR033,
    /// `[remote]` or `--remote` is unusable: a malformed endpoint or cache
    /// mode, a token naming no `[secrets]` entry, or a service that cannot
    /// be reached when the run starts (`cleanroom worker` alike).
    CR034,
    /// `run --staged` or `--from-ref`: git cannot say which files (not a
    /// repository, an unknown ref); or `cleanroom install` cannot write a
    /// hook (not a repository, another tool's hook in the way).
    CR035,
    /// An `[approval.NAME]` gate is badly declared (no or unknown `needs`,
    /// a name a step has, a `reason` other than `required`/`optional`), a
    /// step `needs` an approval, or an `auto_merge_*` threshold is out of range.
    CR036,
    /// `cleanroom approve`/`reject`/`override`/`verdict` cannot record the
    /// decision: no such run, approval or step; the run is not waiting for
    /// it (or is running); the person is not an approver; no reason; the
    /// approval expired.
    CR037,
    /// A plugin shared through an OCI registry cannot be had: a malformed
    /// reference or `[registries]` entry, a registry that cannot be reached
    /// or refuses, or one that returns bytes other than the digests say
    /// (`plugin push`/`pull`/`inspect` alike).
    CR038,
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Where a diagnostic points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A position in a file, 1-based.
    File { path: PathBuf, line: usize, column: usize },
    /// A file as a whole.
    Path(PathBuf),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File { path, line, column } => {
                write!(f, "{}:{line}:{column}", path.display())
            }
            Location::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

/// One problem, with enough context to fix it without reading the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Stable code, e.g. `CR004`.
    pub code: Code,
    /// What is wrong: lowercase, no trailing period, names in backticks.
    pub message: String,
    /// Where, when known.
    pub location: Option<Location>,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A diagnostic with no location or hint yet.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Diagnostic { code, message: message.into(), location: None, hint: None }
    }

    /// Points the diagnostic at a position in `file`.
    pub fn at(mut self, location: Location) -> Self {
        self.location = Some(location);
        self
    }

    /// Adds what the user should do.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The text shown to the user:
    ///
    /// ```text
    /// error[CR004]: step `lint` needs `biuld`, which is not a step
    ///   --> pipelines/self-check.toml:12:10
    ///   hint: did you mean `build`?
    /// ```
    pub fn render(&self) -> String {
        let mut out = format!("error[{}]: {}\n", self.code, self.message);
        if let Some(location) = &self.location {
            out.push_str(&format!("  --> {location}\n"));
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!("  hint: {hint}\n"));
        }
        out
    }
}

/// All the diagnostics one validation pass found, in source order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Records one more problem.
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was recorded, else all of it.
    pub fn into_result<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    /// Every diagnostic rendered, followed by a count line when there are several.
    pub fn render(&self) -> String {
        let mut out: String = self.0.iter().map(Diagnostic::render).collect::<Vec<_>>().join("\n");
        if self.0.len() > 1 {
            out.push_str(&format!("\n{} errors; nothing was run\n", self.0.len()));
        }
        out
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(diagnostic: Diagnostic) -> Self {
        Diagnostics(vec![diagnostic])
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for Diagnostics {}

/// Maps byte offsets in one source file to 1-based line and column
/// (columns in characters), for pointing diagnostics at TOML spans.
#[derive(Debug, Clone)]
pub struct SourceMap {
    path: PathBuf,
    text: String,
    /// Byte offset of the start of each line, for a binary search per
    /// lookup (validation locates every step; a scan from the start each
    /// time made a 10,000-step pipeline quadratic).
    line_starts: Vec<usize>,
}

impl SourceMap {
    /// Remembers `text` as the contents of `path` (shown as given).
    pub fn new(path: &Path, text: &str) -> Self {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        SourceMap { path: path.to_path_buf(), text: text.to_string(), line_starts }
    }

    /// The file these spans belong to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// sha256 (hex) of the text: what the plan was made from, whatever the
    /// file holds later.
    pub fn sha256(&self) -> String {
        crate::plugin::hex(&<sha2::Sha256 as sha2::Digest>::digest(self.text.as_bytes()))
    }

    /// The location of byte `offset`.
    pub fn locate(&self, offset: usize) -> Location {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self.line_starts[line - 1];
        let column = self.text[line_start..offset].chars().count() + 1;
        Location::File { path: self.path.clone(), line, column }
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// The candidate closest to `word` by edit distance, if it is close enough to
/// be a likely typo (for "did you mean" hints).
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|&(d, c)| d <= 2.max(c.len() / 3) && d < c.len().max(word.len()))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + cost);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_counts_lines_and_characters_from_one() {
        let map = SourceMap::new(Path::new("p.toml"), "a = 1\nbé = 2\n");
        assert_eq!(map.locate(0).to_string(), "p.toml:1:1");
        let offset = "a = 1\nbé = ".len();
        assert_eq!(map.locate(offset).to_string(), "p.toml:2:6");
    }

    #[test]
    fn suggest_finds_typos_but_not_strangers() {
        assert_eq!(suggest("biuld", ["build", "lint"]), Some("build"));
        assert_eq!(suggest("zzzz", ["build", "lint"]), None);
    }

    #[test]
    fn render_shows_code_location_and_hint() {
        let d = Diagnostic::new(Code::CR004, "step `a` needs `b`, which is not a step")
            .at(Location::File { path: "p.toml".into(), line: 3, column: 9 })
            .hint("did you mean `c`?");
        assert_eq!(
            d.render(),
            "error[CR004]: step `a` needs `b`, which is not a step\n  --> p.toml:3:9\n  hint: did you mean `c`?\n"
        );
    }
}
