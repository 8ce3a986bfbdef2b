//! The `search` capability: a regex search of a step's mounts that the host
//! runs natively for a check (`cleanroom:plugin/search`, since `0.1.3`).
//!
//! A check that looks for text (`forbid-pattern`) would otherwise read every
//! file through WASI and match it inside WebAssembly, several times slower
//! than `rg`. Here the host walks the step's mounts in parallel (`ignore`)
//! and matches with ripgrep's searcher, and the guest gets only the matches.
//!
//! It sees what WASI shows the plugin, and no more:
//!
//! * only the grant's mounts: each directory mount is walked from its host
//!   path with every ignore rule off (WASI shows ignored and hidden files
//!   too); a single-file mount is its one file;
//! * every file is opened through a `cap_std` [`Dir`] of its mount, without
//!   following a symlink in its last component, so a path cannot resolve
//!   outside the mount, as with WASI's preopens; the walk follows no
//!   symlink and searches none, so a link (even one inside the mount) is
//!   never searched;
//! * the run directory (`.cleanroom`) and every directory named `.git`
//!   are skipped with all below them, as are anything that is not a
//!   regular file, files that cannot be read and binary files (a NUL byte
//!   anywhere, as the SDK's `read_text` decides).
//!
//! Matching keeps the semantics `forbid-pattern` had inside WebAssembly:
//! each pattern is a `regex::bytes::Regex` over a file's whole contents, so
//! `^` is the start of the file unless the pattern says `(?m)`, and a
//! pattern may match across lines. Each file goes through two passes:
//!
//! 1. ripgrep's [`Searcher`] with one [`RegexMatcher`] for all the patterns
//!    asks "does anything match?", streaming the file and giving up at the
//!    first NUL byte. Most files stop here. This pass is skipped when a
//!    pattern can match the empty string: the searcher never reports an
//!    empty match at the very end of a file (nor anything in an empty
//!    file), where the `regex` crate does (`\A\z`, `$`).
//! 2. A file that matched is read whole; if it holds no NUL byte, every
//!    pattern's `find_iter` gives the exact matches, with 1-based lines and
//!    columns counted in characters as the SDK's `line_col` counts them.
//!
//! Results are sorted by (guest path, offset, pattern) and cut at the
//! query's `max-matches`: the threads keep the smallest matches seen so far
//! in one bounded heap, so which thread finished first never changes the
//! answer, and a file whose path sorts after a full heap's last match is
//! not searched at all.
//!
//! The search runs on tokio's blocking pool. It stops at the step's
//! deadline (`search: out of time`), and when the guest's call is dropped
//! (the step's backstop timeout), so it never outlives its step.

use std::collections::{BinaryHeap, HashSet};
use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};
use globset::{GlobSet, GlobSetBuilder};
use grep_regex::{RegexMatcher, RegexMatcherBuilder};
use grep_searcher::{BinaryDetection, Searcher, SearcherBuilder, Sink, SinkMatch};
use ignore::{WalkBuilder, WalkState};

use super::bindings::check::cleanroom::plugin::search::Host;
/// A query and one match, as the WIT `search` interface has them.
pub use super::bindings::check::cleanroom::plugin::search::{Match, Query};
use super::StepState;
use crate::plan::Mount;

/// Patterns one query may hold.
pub const MAX_PATTERNS: usize = 256;
/// Bytes one pattern may have.
pub const MAX_PATTERN_LEN: usize = 4096;
/// Globs one `include` or `exclude` list may hold.
pub const MAX_GLOBS: usize = 256;
/// Bytes one glob may have.
pub const MAX_GLOB_LEN: usize = 4096;
/// Matches one call returns at most (and what `max-matches = 0` means).
pub const MAX_MATCHES: u32 = 100_000;
/// Bytes of matched text a match carries at most.
pub const MAX_TEXT: usize = 200;
/// The error when the step's deadline passes during a search.
pub const OUT_OF_TIME: &str = "search: out of time";

impl Host for StepState {
    async fn search(&mut self, query: Query) -> Result<Vec<Match>, String> {
        let mounts = Arc::clone(&self.mounts);
        let deadline = self.deadline;
        // If the guest's call is dropped (the step's backstop timeout), the
        // guard tells the walk to stop, so it does not outlive its step.
        let stop = StopOnDrop::default();
        let flag = Arc::clone(&stop.0);
        let task = tokio::task::spawn_blocking(move || run(&mounts, &query, deadline, &flag));
        let result = match task.await {
            Ok(result) => result,
            Err(e) => {
                tracing::warn!("the search task failed: {e}");
                Err("search: the host could not search".to_string())
            }
        };
        drop(stop);
        result
    }
}

/// Sets its flag when dropped.
#[derive(Default)]
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `query` over `mounts` (see the module docs), giving up at
/// `deadline` or as soon as `stop` is set.
///
/// # Errors
/// What is wrong with the query (the texts the WIT `search` function
/// documents), or [`OUT_OF_TIME`].
pub fn run(mounts: &[Mount], query: &Query, deadline: Instant, stop: &AtomicBool) -> Result<Vec<Match>, String> {
    let compiled = Compiled::new(query)?;
    if compiled.each.is_empty() {
        return Ok(Vec::new());
    }
    let search = Search {
        compiled: &compiled,
        deadline,
        stop,
        out_of_time: AtomicBool::new(false),
        seen: Mutex::new(HashSet::new()),
        best: Mutex::new(BinaryHeap::new()),
    };
    for mount in mounts {
        if search.stopped() {
            break;
        }
        search.mount(mount);
    }
    // Set only when the walk was cut short (or never started).
    if search.out_of_time.load(Ordering::Relaxed) {
        return Err(OUT_OF_TIME.to_string());
    }
    let best = search.best.into_inner().unwrap_or_else(PoisonError::into_inner);
    Ok(best.into_sorted_vec().into_iter().map(Hit::into_match).collect())
}

/// A query, checked and compiled.
struct Compiled {
    /// All the patterns as one matcher, for the "anything here?" pass;
    /// `None` when a pattern can match the empty string (or the combined
    /// matcher could not be built): then every file is read whole.
    any: Option<RegexMatcher>,
    /// Each pattern on its own, for the exact matches.
    each: Vec<regex::bytes::Regex>,
    /// `include`; `None` selects every file.
    include: Option<GlobSet>,
    exclude: GlobSet,
    /// `max-matches`, resolved: 1 up to [`MAX_MATCHES`].
    cap: usize,
}

impl Compiled {
    fn new(query: &Query) -> Result<Compiled, String> {
        if query.patterns.len() > MAX_PATTERNS {
            return Err(format!("too many patterns: {} (at most {MAX_PATTERNS})", query.patterns.len()));
        }
        if let Some((index, long)) = query.patterns.iter().enumerate().find(|(_, p)| p.len() > MAX_PATTERN_LEN) {
            return Err(format!("pattern {index} is longer than {MAX_PATTERN_LEN} bytes ({} bytes)", long.len()));
        }
        let sources: Vec<String> =
            query.patterns.iter().map(|p| if query.literal { regex::escape(p) } else { p.clone() }).collect();
        let mut each = Vec::with_capacity(sources.len());
        for source in &sources {
            // The same error text `forbid-pattern` gave when it compiled
            // the patterns itself.
            let regex = regex::bytes::RegexBuilder::new(source)
                .case_insensitive(query.case_insensitive)
                .build()
                .map_err(|e| format!("invalid pattern: {e}"))?;
            each.push(regex);
        }
        let include = if query.include.is_empty() { None } else { Some(glob_set(&query.include)?) };
        let exclude = glob_set(&query.exclude)?;
        let any = if sources.iter().any(|s| may_match_empty(s, query.case_insensitive)) {
            None
        } else {
            RegexMatcherBuilder::new().case_insensitive(query.case_insensitive).build_many(sources.as_slice()).ok()
        };
        let cap = match query.max_matches {
            0 => MAX_MATCHES,
            n => n.min(MAX_MATCHES),
        };
        Ok(Compiled { any, each, include, exclude, cap: cap as usize })
    }

    /// Whether the workspace-relative path `rel` is one of the query's files.
    fn selects(&self, rel: &str) -> bool {
        self.include.as_ref().is_none_or(|set| set.is_match(rel)) && !self.exclude.is_match(rel)
    }

    /// Every match in `text` (the whole file at guest path `path`), sorted
    /// by (offset, pattern), at most `cap` of them.
    fn hits(&self, text: &[u8], path: &str) -> Vec<Hit> {
        let cap = self.cap;
        // (start, pattern, end); each pattern's own first `cap` are enough,
        // and the list is cut back whenever it grows past twice the cap.
        let mut found: Vec<(usize, usize, usize)> = Vec::new();
        for (index, regex) in self.each.iter().enumerate() {
            found.extend(regex.find_iter(text).take(cap).map(|m| (m.start(), index, m.end())));
            if found.len() > 2 * cap {
                found.sort_unstable();
                found.truncate(cap);
            }
        }
        found.sort_unstable();
        found.truncate(cap);
        let mut position = Position::new(text);
        found
            .into_iter()
            .map(|(start, index, end)| {
                let (line, column) = position.at(start);
                Hit {
                    path: path.to_string(),
                    offset: start,
                    pattern: to_u32(index),
                    line,
                    column,
                    text: excerpt(text, start, end),
                }
            })
            .collect()
    }
}

/// The globs of `include` or `exclude`, with the semantics of a step's own
/// `include` ([`crate::plan::files`]).
fn glob_set(globs: &[String]) -> Result<GlobSet, String> {
    if globs.len() > MAX_GLOBS {
        return Err(format!("too many globs: {} (at most {MAX_GLOBS})", globs.len()));
    }
    let mut set = GlobSetBuilder::new();
    for glob in globs {
        if glob.len() > MAX_GLOB_LEN {
            let start: String = glob.chars().take(40).collect();
            return Err(format!("glob `{start}…` is longer than {MAX_GLOB_LEN} bytes ({} bytes)", glob.len()));
        }
        set.add(crate::plan::files::glob(glob).map_err(|e| format!("invalid glob `{glob}`: {}", e.kind()))?);
    }
    set.build().map_err(|e| format!("invalid globs: {e}"))
}

/// Whether `source` can match the empty string (or cannot be analysed:
/// then assume it can).
fn may_match_empty(source: &str, case_insensitive: bool) -> bool {
    regex_syntax::ParserBuilder::new()
        .utf8(false)
        .case_insensitive(case_insensitive)
        .build()
        .parse(source)
        .map_or(true, |hir| hir.properties().minimum_len() == Some(0))
}

/// One match, ordered as the answer is: by path, offset, then pattern.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Hit {
    path: String,
    offset: usize,
    pattern: u32,
    line: u32,
    column: u32,
    text: String,
}

impl Hit {
    fn into_match(self) -> Match {
        Match { path: self.path, line: self.line, column: self.column, pattern: self.pattern, text: self.text }
    }
}

/// One search in progress, shared by the walking threads.
struct Search<'a> {
    compiled: &'a Compiled,
    deadline: Instant,
    /// Set when the guest's call went away.
    stop: &'a AtomicBool,
    /// Set once the deadline passed or `stop` was seen.
    out_of_time: AtomicBool,
    /// Guest paths already claimed by a thread (mounts can nest).
    seen: Mutex<HashSet<String>>,
    /// The smallest matches so far, at most `cap` (a max-heap: its top is
    /// the first to go).
    best: Mutex<BinaryHeap<Hit>>,
}

impl Search<'_> {
    /// Whether to stop: the deadline passed or the caller went away.
    fn stopped(&self) -> bool {
        if self.out_of_time.load(Ordering::Relaxed) {
            return true;
        }
        if self.stop.load(Ordering::Relaxed) || Instant::now() >= self.deadline {
            self.out_of_time.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Searches what one mount shows.
    fn mount(&self, mount: &Mount) {
        if !mount.is_dir {
            // A file granted by name: its parent directory is not part of
            // the mount, only the one entry in it is opened.
            let (Some(parent), Some(name)) = (mount.host.parent(), mount.host.file_name()) else { return };
            let Ok(dir) = Dir::open_ambient_dir(parent, ambient_authority()) else { return };
            self.file(&mut searcher(), &dir, Path::new(name), &mount.guest);
            return;
        }
        let Ok(dir) = Dir::open_ambient_dir(&mount.host, ambient_authority()) else { return };
        let dir = &dir;
        let run_dir = format!("/{}", crate::plan::mounts::RUN_DIR);
        let run_dir = run_dir.as_str();
        let mut walk = WalkBuilder::new(&mount.host);
        // WASI shows ignored and hidden files: so does the search.
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(8);
        walk.standard_filters(false).follow_links(false).threads(threads);
        walk.build_parallel().run(|| {
            let mut searcher = searcher();
            Box::new(move |entry: Result<ignore::DirEntry, ignore::Error>| {
                if self.stopped() {
                    return WalkState::Quit;
                }
                let Ok(entry) = entry else { return WalkState::Continue };
                let Some(kind) = entry.file_type() else { return WalkState::Continue };
                let Ok(inner) = entry.path().strip_prefix(&mount.host) else { return WalkState::Continue };
                // A plugin cannot name a path that is not UTF-8.
                let Some(inner) = inner.to_str() else { return WalkState::Skip };
                let guest = guest_path(&mount.guest, inner);
                if kind.is_dir() {
                    let hidden = guest == run_dir || entry.file_name() == OsStr::new(crate::manifest::GIT_DIR);
                    return if hidden { WalkState::Skip } else { WalkState::Continue };
                }
                // Symlinks (not followed), sockets, FIFOs, devices: never.
                if kind.is_file() {
                    self.file(&mut searcher, dir, Path::new(inner), &guest);
                }
                WalkState::Continue
            })
        });
    }

    /// Searches the file at `open` in `dir`, which the plugin sees at
    /// `guest`, if the query selects it.
    fn file(&self, searcher: &mut Searcher, dir: &Dir, open: &Path, guest: &str) {
        let rel = guest.strip_prefix('/').unwrap_or(guest);
        if !self.compiled.selects(rel) || self.past_cap(guest) || !self.claim(guest) {
            return;
        }
        let Some(mut file) = open_regular(dir, open) else { return };
        if let Some(any) = &self.compiled.any {
            let mut found = AnyMatch(false);
            if searcher.search_file(any, &file, &mut found).is_err() || !found.0 {
                return;
            }
            if file.seek(SeekFrom::Start(0)).is_err() {
                return;
            }
        }
        let mut text = Vec::new();
        if file.read_to_end(&mut text).is_err() || text.contains(&0) {
            return;
        }
        self.keep(self.compiled.hits(&text, guest));
    }

    /// Whether the heap is full of matches in paths before `guest`: then
    /// nothing in `guest` can make it in.
    fn past_cap(&self, guest: &str) -> bool {
        let best = self.best.lock().unwrap_or_else(PoisonError::into_inner);
        best.len() >= self.compiled.cap && best.peek().is_some_and(|last| last.path.as_str() < guest)
    }

    /// Claims `guest` for this thread; false when another mount already
    /// showed the same path.
    fn claim(&self, guest: &str) -> bool {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).insert(guest.to_string())
    }

    /// Adds one file's hits (sorted) to the smallest kept so far.
    fn keep(&self, hits: Vec<Hit>) {
        if hits.is_empty() {
            return;
        }
        let cap = self.compiled.cap;
        let mut best = self.best.lock().unwrap_or_else(PoisonError::into_inner);
        for hit in hits {
            if best.len() < cap {
                best.push(hit);
            } else if best.peek().is_some_and(|last| hit < *last) {
                best.pop();
                best.push(hit);
            } else {
                // The file's hits ascend: the rest are later still.
                break;
            }
        }
    }
}

/// A searcher for the "anything here?" pass. Multi-line, so a pattern that
/// can match a line break is run over the whole file (`^` is then its
/// start, as the exact pass has it); no BOM sniffing, so the bytes are the
/// bytes the plugin would read; line numbers are not needed.
fn searcher() -> Searcher {
    SearcherBuilder::new()
        .binary_detection(BinaryDetection::quit(b'\0'))
        .multi_line(true)
        .line_number(false)
        .bom_sniffing(false)
        .build()
}

/// Notes that something matched, and stops the search there.
struct AnyMatch(bool);

impl Sink for AnyMatch {
    type Error = std::io::Error;

    fn matched(&mut self, _: &Searcher, _: &SinkMatch<'_>) -> Result<bool, std::io::Error> {
        self.0 = true;
        Ok(false)
    }
}

/// Opens `path` in `dir` for reading without following a symlink in its
/// last component (nor leaving `dir` on the way) and without blocking; the
/// file, if it is a regular one.
fn open_regular(dir: &Dir, path: &Path) -> Option<std::fs::File> {
    let mut options = OpenOptions::new();
    options.read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY);
    let file = dir.open_with(path, &options).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    Some(file.into_std())
}

/// The guest path of `inner` (relative to the mount, `""` for the mount
/// itself) under the mount at guest path `mount`.
fn guest_path(mount: &str, inner: &str) -> String {
    if inner.is_empty() {
        mount.to_string()
    } else if mount == "/" {
        format!("/{inner}")
    } else {
        format!("{mount}/{inner}")
    }
}

/// 1-based (line, column) of ascending offsets in one text, counted as the
/// SDK's `line_col` counts them (columns in characters of the line before
/// the offset, invalid UTF-8 decoded lossily), without rescanning the text
/// for every offset.
struct Position<'t> {
    text: &'t [u8],
    /// Line number (1-based) at `scanned`.
    line: usize,
    /// Where that line starts.
    line_start: usize,
    /// How far line breaks have been counted.
    scanned: usize,
    /// How far in the line characters have been counted, and how many.
    counted_to: usize,
    columns: usize,
}

impl<'t> Position<'t> {
    fn new(text: &'t [u8]) -> Position<'t> {
        Position { text, line: 1, line_start: 0, scanned: 0, counted_to: 0, columns: 0 }
    }

    fn at(&mut self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.text.len());
        if offset < self.scanned {
            // Not ascending after all: count from the start.
            *self = Position::new(self.text);
        }
        let text = self.text;
        for (i, &byte) in text[self.scanned..offset].iter().enumerate() {
            if byte == b'\n' {
                self.line += 1;
                self.line_start = self.scanned + i + 1;
            }
        }
        self.scanned = offset;
        // Characters counted so far still count when the count stopped on
        // this line, at a byte that starts a character (or an invalid
        // sequence): lossy decoding then splits there anyway.
        let resumable = self.counted_to >= self.line_start
            && self.counted_to <= offset
            && text.get(self.counted_to).is_none_or(|&b| !is_continuation(b));
        if !resumable {
            self.counted_to = self.line_start;
            self.columns = 0;
        }
        self.columns += String::from_utf8_lossy(&text[self.counted_to..offset]).chars().count();
        self.counted_to = offset;
        (to_u32(self.line), to_u32(self.columns + 1))
    }
}

fn is_continuation(byte: u8) -> bool {
    byte & 0xC0 == 0x80
}

/// The matched text `text[start..end]`: at most [`MAX_TEXT`] bytes, not
/// cutting a character in two, invalid UTF-8 replaced.
fn excerpt(text: &[u8], start: usize, end: usize) -> String {
    let mut cut = end.min(start + MAX_TEXT);
    if cut < end {
        // Back to the start of the character the cut would split.
        for _ in 0..3 {
            if cut > start && is_continuation(text[cut]) {
                cut -= 1;
            }
        }
    }
    let mut out = String::from_utf8_lossy(&text[start..cut]).into_owned();
    // Replacement characters take three bytes where the bad byte took one.
    if out.len() > MAX_TEXT {
        let mut at = MAX_TEXT;
        while !out.is_char_boundary(at) {
            at -= 1;
        }
        out.truncate(at);
    }
    out
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;

    /// A workspace in a temporary directory.
    struct Tree {
        _dir: tempfile::TempDir,
        root: PathBuf,
    }

    impl Tree {
        fn new() -> Tree {
            let dir = tempfile::tempdir().unwrap();
            let root = fs_err::canonicalize(dir.path()).unwrap();
            Tree { _dir: dir, root }
        }

        fn file(&self, rel: &str, contents: &[u8]) -> &Tree {
            let path = self.root.join(rel);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            fs_err::write(path, contents).unwrap();
            self
        }

        /// A read mount of `rel` (`.` for the root), as the plan makes it.
        fn mount(&self, rel: &str) -> Mount {
            let host = if rel == "." { self.root.clone() } else { self.root.join(rel) };
            let guest = if rel == "." { "/".to_string() } else { format!("/{rel}") };
            Mount { rel: rel.to_string(), is_dir: host.is_dir(), host, guest, writable: false, exists: true }
        }
    }

    fn query(patterns: &[&str]) -> Query {
        Query {
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
            literal: false,
            case_insensitive: false,
            include: Vec::new(),
            exclude: Vec::new(),
            max_matches: 0,
        }
    }

    fn search(mounts: &[Mount], query: &Query) -> Result<Vec<Match>, String> {
        run(mounts, query, Instant::now() + Duration::from_secs(60), &AtomicBool::new(false))
    }

    /// `path:line:column #pattern text` for each match.
    fn found(mounts: &[Mount], query: &Query) -> Vec<String> {
        search(mounts, query)
            .unwrap()
            .into_iter()
            .map(|m| format!("{}:{}:{} #{} {}", m.path, m.line, m.column, m.pattern, m.text))
            .collect()
    }

    #[test]
    fn every_match_of_every_pattern_with_its_line_and_column_in_order() {
        let tree = Tree::new();
        // Not the self-check's forbidden macros: this file is searched by it.
        tree.file("src/b.rs", "fn b() {\n    stub!()\n}\n".as_bytes())
            .file("src/a.rs", "ça stub!() FIXME stub!()\n".as_bytes())
            .file("src/clean.rs", b"fn clean() {}\n");
        let mounts = [tree.mount("src")];
        assert_eq!(
            found(&mounts, &query(&["stub!\\(", "FIXME", "st"])),
            [
                "/src/a.rs:1:4 #0 stub!(",
                "/src/a.rs:1:4 #2 st",
                "/src/a.rs:1:12 #1 FIXME",
                "/src/a.rs:1:18 #0 stub!(",
                "/src/a.rs:1:18 #2 st",
                "/src/b.rs:2:5 #0 stub!(",
                "/src/b.rs:2:5 #2 st",
            ]
        );
    }

    #[test]
    fn patterns_see_the_whole_file_as_the_regex_crate_does() {
        let tree = Tree::new();
        tree.file("a.txt", b"todo first\ntodo second\nend\n").file("empty.txt", b"");
        let mounts = [tree.mount(".")];
        // `^` is the start of the file unless `(?m)`.
        assert_eq!(found(&mounts, &query(&["^todo"])), ["/a.txt:1:1 #0 todo"]);
        assert_eq!(found(&mounts, &query(&["(?m)^todo"])), ["/a.txt:1:1 #0 todo", "/a.txt:2:1 #0 todo"]);
        // Across lines.
        assert_eq!(found(&mounts, &query(&["first\\ntodo"])), ["/a.txt:1:6 #0 first\ntodo"]);
        // Empty matches the line-by-line searcher would not report.
        assert_eq!(found(&mounts, &query(&["\\A\\z"])), ["/empty.txt:1:1 #0 "]);
        assert_eq!(found(&mounts, &query(&["$"])), ["/a.txt:4:1 #0 ", "/empty.txt:1:1 #0 "]);
    }

    #[test]
    fn literal_and_case_insensitive_queries() {
        let tree = Tree::new();
        tree.file("a.txt", b"a.b axb TODO\n");
        let mounts = [tree.mount(".")];
        let mut literal = query(&["a.b"]);
        literal.literal = true;
        assert_eq!(found(&mounts, &literal), ["/a.txt:1:1 #0 a.b"]);
        let mut any_case = query(&["todo"]);
        any_case.case_insensitive = true;
        assert_eq!(found(&mounts, &any_case), ["/a.txt:1:9 #0 TODO"]);
        assert!(found(&mounts, &query(&["todo"])).is_empty());
    }

    #[test]
    fn include_and_exclude_globs_match_workspace_relative_paths() {
        let tree = Tree::new();
        tree.file("src/a.rs", b"x")
            .file("src/deep/b.rs", b"x")
            .file("src/skip/c.rs", b"x")
            .file("notes.txt", b"x")
            .file("src/d.py", b"x");
        let mounts = [tree.mount(".")];
        let mut rust = query(&["x"]);
        rust.include = vec!["*.rs".into()];
        rust.exclude = vec!["src/skip/**".into()];
        assert_eq!(found(&mounts, &rust), ["/src/a.rs:1:1 #0 x", "/src/deep/b.rs:1:1 #0 x"]);
        let mut rooted = query(&["x"]);
        rooted.include = vec!["src/*.rs".into()];
        assert_eq!(found(&mounts, &rooted), ["/src/a.rs:1:1 #0 x"], "`*` does not cross `/`");
        let mut bad = query(&["x"]);
        bad.exclude = vec!["src/[".into()];
        let err = search(&mounts, &bad).unwrap_err();
        assert!(err.starts_with("invalid glob `src/[`"), "{err}");
    }

    #[test]
    fn symlinks_are_not_followed_out_of_the_mount_or_in_it() {
        let tree = Tree::new();
        let outside = Tree::new();
        outside.file("secret.rs", b"todo");
        tree.file("src/a.rs", b"todo");
        std::os::unix::fs::symlink(outside.root.join("secret.rs"), tree.root.join("src/link.rs")).unwrap();
        std::os::unix::fs::symlink(&outside.root, tree.root.join("src/dir")).unwrap();
        std::os::unix::fs::symlink(tree.root.join("src/a.rs"), tree.root.join("src/inside.rs")).unwrap();
        assert_eq!(found(&[tree.mount("src")], &query(&["todo"])), ["/src/a.rs:1:1 #0 todo"]);
    }

    #[test]
    fn git_directories_the_run_directory_and_binary_files_are_skipped() {
        let tree = Tree::new();
        let mut late = b"todo".to_vec();
        late.extend(vec![b'x'; 100_000]);
        late.push(0);
        tree.file(".git/config", b"todo")
            .file("sub/.git/HEAD", b"todo")
            .file(".cleanroom/runs/x", b"todo")
            .file("bin/late.dat", &late)
            .file("bin/early.dat", b"\0todo")
            .file("a.txt", b"todo\n");
        assert_eq!(found(&[tree.mount(".")], &query(&["todo"])), ["/a.txt:1:1 #0 todo"]);
        // Also when the pattern can match empty (no first pass): `todo`, and
        // the empty match at the end of a.txt, nothing from the others.
        assert_eq!(found(&[tree.mount(".")], &query(&["todo|x*\\z"])).len(), 2);
    }

    #[test]
    fn a_bad_pattern_is_an_error_with_the_regex_message() {
        let tree = Tree::new();
        let err = search(&[tree.mount(".")], &query(&["ok", "unclosed("])).unwrap_err();
        assert!(err.starts_with("invalid pattern: "), "{err}");
        assert!(err.contains("unclosed group"), "{err}");
        let many: Vec<String> = (0..=MAX_PATTERNS).map(|i| i.to_string()).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(search(&[tree.mount(".")], &query(&many)).unwrap_err().starts_with("too many patterns"));
        let long = "x".repeat(MAX_PATTERN_LEN + 1);
        assert!(search(&[tree.mount(".")], &query(&[long.as_str()])).unwrap_err().starts_with("pattern 0 is longer"));
    }

    #[test]
    fn max_matches_keeps_the_first_in_order() {
        let tree = Tree::new();
        for name in ["c", "a", "e", "b", "d"] {
            tree.file(&format!("{name}.txt"), b"x x\n");
        }
        let mut first = query(&["x"]);
        first.max_matches = 3;
        let mounts = [tree.mount(".")];
        for _ in 0..5 {
            assert_eq!(found(&mounts, &first), ["/a.txt:1:1 #0 x", "/a.txt:1:3 #0 x", "/b.txt:1:1 #0 x"]);
        }
    }

    #[test]
    fn nested_and_single_file_mounts_search_each_path_once() {
        let tree = Tree::new();
        tree.file("src/a.rs", b"x").file("notes.txt", b"x").file("other.txt", b"x");
        let mounts = [tree.mount("src"), tree.mount("."), tree.mount("notes.txt")];
        let all = ["/notes.txt:1:1 #0 x", "/other.txt:1:1 #0 x", "/src/a.rs:1:1 #0 x"];
        assert_eq!(found(&mounts, &query(&["x"])), all);
        // A file mount shows that file and not its siblings.
        assert_eq!(found(&[tree.mount("notes.txt")], &query(&["x"])), ["/notes.txt:1:1 #0 x"]);
    }

    #[test]
    fn it_stops_at_the_deadline() {
        let tree = Tree::new();
        tree.file("a.txt", b"x");
        let past = Instant::now() - Duration::from_millis(1);
        let err = run(&[tree.mount(".")], &query(&["x"]), past, &AtomicBool::new(false)).unwrap_err();
        assert_eq!(err, OUT_OF_TIME);
        let stopped = AtomicBool::new(true);
        let later = Instant::now() + Duration::from_secs(60);
        assert_eq!(run(&[tree.mount(".")], &query(&["x"]), later, &stopped).unwrap_err(), OUT_OF_TIME);
    }

    #[test]
    fn columns_count_characters_and_texts_are_cut_at_200_bytes() {
        // é, an emoji, x; then a, b, an invalid byte, x.
        let text = b"\xC3\xA9\xF0\x9F\x98\x80x\nab\xFFx";
        let mut position = Position::new(text);
        let first_x = text.iter().position(|&b| b == b'x').unwrap();
        let second_x = text.iter().rposition(|&b| b == b'x').unwrap();
        assert_eq!(position.at(0), (1, 1));
        assert_eq!(position.at(first_x), (1, 3));
        assert_eq!(position.at(second_x), (2, 4));
        let long = "é".repeat(150);
        let cut = excerpt(long.as_bytes(), 0, long.len());
        assert_eq!(cut, "é".repeat(100));
        let invalid = vec![0xFF; 300];
        assert!(excerpt(&invalid, 0, 300).len() <= MAX_TEXT);
    }
}
