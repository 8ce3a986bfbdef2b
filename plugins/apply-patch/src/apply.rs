//! Applies parsed patches to file contents in memory.
//!
//! A hunk applies only where its old lines match the file exactly (line
//! terminators included, so `\ No newline at end of file` is honoured). It is
//! looked for at its stated line first, corrected by how far earlier hunks
//! moved, then at growing distances from there (nearest first, later before
//! earlier), never before the end of the previous hunk. There is no fuzz:
//! context that does not match is an error.
//!
//! Nothing touches the disk here: [`plan`] reads originals through a callback
//! and returns the final content of every file it changed.

use std::collections::BTreeMap;

use crate::diff::{FilePatch, Hunk};

/// What the patch does to one file, after all its sections are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Write this content.
    Write(Vec<u8>),
    /// Delete the file.
    Delete,
}

/// How many files the patch created, deleted and changed otherwise.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Files created.
    pub created: usize,
    /// Files deleted.
    pub deleted: usize,
    /// Files changed in place.
    pub modified: usize,
}

impl Stats {
    /// E.g. `2 files changed, 1 created`.
    pub fn describe(&self) -> String {
        let total = self.created + self.deleted + self.modified;
        let mut text = format!("{total} file{} changed", if total == 1 { "" } else { "s" });
        if self.created > 0 {
            text.push_str(&format!(", {} created", self.created));
        }
        if self.deleted > 0 {
            text.push_str(&format!(", {} deleted", self.deleted));
        }
        text
    }
}

/// The final state of every file the patch touched, keyed by relative path.
pub type Plan = BTreeMap<String, Change>;

/// Reads an original file by relative path: `Ok(None)` when it does not exist.
pub type ReadFile<'a> = dyn FnMut(&str) -> Result<Option<Vec<u8>>, String> + 'a;

/// Applies `files` (from [`crate::diff::parse`]) to originals read through `read`.
///
/// # Errors
/// A one-line message naming the file and, for a context mismatch, the hunk.
pub fn plan(files: &[FilePatch], strip: usize, read: &mut ReadFile<'_>) -> Result<(Plan, Stats), String> {
    let mut current: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    let mut stats = Stats::default();
    for file in files {
        let path = target_path(file, strip)?;
        let before = match current.get(&path) {
            Some(known) => known.clone(),
            None => read(&path)?,
        };
        let after = apply_file(file, &path, before)?;
        match (file.old_name.is_none(), file.new_name.is_none()) {
            (true, _) => stats.created += 1,
            (_, true) => stats.deleted += 1,
            _ => stats.modified += 1,
        }
        current.insert(path, after);
    }
    let plan =
        current.into_iter().map(|(path, content)| (path, content.map_or(Change::Delete, Change::Write))).collect();
    Ok((plan, stats))
}

/// The relative path a file section changes: its new name (its old name for
/// a deletion) with `strip` leading components removed.
fn target_path(file: &FilePatch, strip: usize) -> Result<String, String> {
    let old = file.old_name.as_deref().map(|n| strip_path(n, strip)).transpose()?;
    let new = file.new_name.as_deref().map(|n| strip_path(n, strip)).transpose()?;
    match (old, new) {
        (Some(old), Some(new)) if old != new => Err(format!(
            "the patch renames `{old}` to `{new}`: renames are not supported, use a deletion and a creation"
        )),
        (_, Some(path)) | (Some(path), None) => Ok(path),
        (None, None) => Err("a file section names `/dev/null` on both sides".into()),
    }
}

/// Removes `strip` leading components (like `patch -p`), then checks that
/// what is left is a relative path that stays below the target directory.
pub fn strip_path(name: &str, strip: usize) -> Result<String, String> {
    let mut rest = name;
    for _ in 0..strip {
        let Some((_, after)) = rest.split_once('/') else {
            return Err(format!("`{name}` has fewer than {strip} leading components to strip: lower `strip`"));
        };
        rest = after.trim_start_matches('/');
    }
    if rest.starts_with('/') {
        return Err(format!("`{rest}` (from `{name}`) is absolute: patch paths must be relative, raise `strip`"));
    }
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.contains(&"..") {
        return Err(format!("`{rest}` (from `{name}`) contains `..`: patch paths must stay inside `target`"));
    }
    if parts.is_empty() {
        return Err(format!("`{name}` names no file after stripping {strip} components: lower `strip`"));
    }
    Ok(parts.join("/"))
}

/// Applies one file section to the file's content (`None`: it does not exist).
fn apply_file(file: &FilePatch, path: &str, before: Option<Vec<u8>>) -> Result<Option<Vec<u8>>, String> {
    let creates = file.old_name.is_none();
    let deletes = file.new_name.is_none();
    let content = match (before, creates) {
        (Some(_), true) => return Err(format!("`{path}` already exists: the patch creates it")),
        (None, true) => Vec::new(),
        (None, false) => {
            return Err(format!("`{path}` does not exist: the patch changes it (a new file needs `--- /dev/null`)"))
        }
        (Some(content), false) => content,
    };
    if file.hunks.is_empty() && !creates && !deletes {
        return Err(format!("the patch section for `{path}` has no hunks: add `@@` hunks or remove the section"));
    }
    let mut lines = split_keep_newlines(&content);
    apply_hunks(&mut lines, &file.hunks, path)?;
    if deletes {
        if !file.hunks.is_empty() && !lines.is_empty() {
            return Err(format!("the patch deletes `{path}` but the file has lines the patch does not remove"));
        }
        return Ok(None);
    }
    Ok(Some(lines.concat()))
}

fn split_keep_newlines(content: &[u8]) -> Vec<Vec<u8>> {
    content.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

/// Applies hunks in order to `lines`.
fn apply_hunks(lines: &mut Vec<Vec<u8>>, hunks: &[Hunk], path: &str) -> Result<(), String> {
    // How far the file has moved from the stated line numbers: lines added
    // by earlier hunks, and the offset at which the last hunk was found.
    let mut shift: isize = 0;
    let mut floor = 0;
    for (index, hunk) in hunks.iter().enumerate() {
        if hunk.new.iter().rev().skip(1).any(|l| !l.ends_with(b"\n")) {
            return Err(format!(
                "hunk {} of `{path}` is malformed: only its last line may lack a newline: regenerate the patch",
                index + 1
            ));
        }
        let stated = if hunk.old.is_empty() { hunk.old_start } else { hunk.old_start.saturating_sub(1) };
        let expected = stated.saturating_add_signed(shift);
        // A new side ending without a newline can only go at the end of the file.
        let at_end = hunk.new.last().is_some_and(|l| !l.ends_with(b"\n"));
        let Some(at) = find(lines, &hunk.old, expected, floor, at_end) else {
            return Err(format!(
                "hunk {} of `{path}` does not apply (context not found near line {})",
                index + 1,
                hunk.old_start
            ));
        };
        lines.splice(at..at + hunk.old.len(), hunk.new.iter().cloned());
        // `at` already includes the earlier shift; the lengths add this hunk's.
        shift = to_isize(at) - to_isize(stated) + to_isize(hunk.new.len()) - to_isize(hunk.old.len());
        floor = at + hunk.new.len();
    }
    Ok(())
}

/// The position nearest `expected` (not before `floor`) where `old` matches;
/// with `at_end`, only a match that ends at the end of the file counts.
fn find(lines: &[Vec<u8>], old: &[Vec<u8>], expected: usize, floor: usize, at_end: bool) -> Option<usize> {
    let last = lines.len().checked_sub(old.len())?;
    if floor > last {
        return None;
    }
    let expected = expected.clamp(floor, last);
    let matches = |at: usize| (!at_end || at == last) && lines[at..at + old.len()] == *old;
    for distance in 0..=last - floor {
        if expected + distance <= last && matches(expected + distance) {
            return Some(expected + distance);
        }
        if distance > 0 && expected >= floor + distance && matches(expected - distance) {
            return Some(expected - distance);
        }
        if expected + distance > last && expected < floor + distance {
            break;
        }
    }
    None
}

fn to_isize(n: usize) -> isize {
    isize::try_from(n).unwrap_or(isize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::parse;

    /// Applies `patch` to `files` (path, content) with strip 1.
    fn run(files: &[(&str, &str)], patch: &str) -> Result<(Plan, Stats), String> {
        let files: BTreeMap<String, Vec<u8>> =
            files.iter().map(|(p, c)| (p.to_string(), c.as_bytes().to_vec())).collect();
        let parsed = parse(patch.as_bytes())?;
        plan(&parsed, 1, &mut |path| Ok(files.get(path).cloned()))
    }

    fn written(plan: &Plan, path: &str) -> String {
        match plan.get(path) {
            Some(Change::Write(c)) => String::from_utf8(c.clone()).unwrap(),
            other => panic!("`{path}` not written: {other:?}"),
        }
    }

    #[test]
    fn creates_a_file() {
        let (plan, stats) =
            run(&[], "--- /dev/null\n+++ b/src/new.rs\n@@ -0,0 +1,2 @@\n+fn a() {}\n+fn b() {}\n").unwrap();
        assert_eq!(written(&plan, "src/new.rs"), "fn a() {}\nfn b() {}\n");
        assert_eq!(stats, Stats { created: 1, deleted: 0, modified: 0 });
        assert_eq!(stats.describe(), "1 file changed, 1 created");
    }

    #[test]
    fn creating_an_existing_file_is_an_error() {
        let err = run(&[("x", "a\n")], "--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+a\n").unwrap_err();
        assert!(err.contains("`x` already exists"), "{err}");
    }

    #[test]
    fn modifies_at_an_offset() {
        // The hunk says line 2, but two lines were added above it since.
        let original = "new1\nnew2\none\ntwo\nthree\nfour\n";
        let patch = "--- a/f\n+++ b/f\n@@ -2,3 +2,3 @@\n two\n-three\n+THREE\n four\n";
        let (plan, stats) = run(&[("f", original)], patch).unwrap();
        assert_eq!(written(&plan, "f"), "new1\nnew2\none\ntwo\nTHREE\nfour\n");
        assert_eq!(stats.describe(), "1 file changed");
    }

    #[test]
    fn offset_search_prefers_the_nearest_match() {
        // `x` appears at lines 1 and 7; stated line 6 is nearest to 7.
        let original = "x\na\nb\nc\nd\ne\nx\nf\n";
        let (plan, _) = run(&[("f", original)], "--- a/f\n+++ b/f\n@@ -6 +6 @@\n-x\n+y\n").unwrap();
        assert_eq!(written(&plan, "f"), "x\na\nb\nc\nd\ne\ny\nf\n");
    }

    #[test]
    fn deletes_a_file() {
        let (plan, stats) =
            run(&[("old.txt", "a\nb\n")], "--- a/old.txt\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\n").unwrap();
        assert_eq!(plan.get("old.txt"), Some(&Change::Delete));
        assert_eq!(stats.describe(), "1 file changed, 1 deleted");
    }

    #[test]
    fn deleting_with_leftover_lines_is_an_error() {
        let err = run(&[("old.txt", "a\nb\n")], "--- a/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n").unwrap_err();
        assert!(err.contains("does not remove"), "{err}");
    }

    #[test]
    fn applies_several_hunks_and_files() {
        let original: String = (1..=20).map(|i| format!("{i}\n")).collect();
        let patch = "--- a/n\n+++ b/n\n@@ -2,3 +2,4 @@\n 2\n+2.5\n 3\n 4\n@@ -15,3 +16,2 @@\n 15\n-16\n 17\n\
                     --- /dev/null\n+++ b/m\n@@ -0,0 +1 @@\n+m\n";
        let (plan, stats) = run(&[("n", &original)], patch).unwrap();
        let expected: String = (1..=20)
            .filter(|&i| i != 16)
            .flat_map(|i| if i == 3 { vec!["2.5".to_string(), "3".into()] } else { vec![i.to_string()] })
            .map(|l| l + "\n")
            .collect();
        assert_eq!(written(&plan, "n"), expected);
        assert_eq!(written(&plan, "m"), "m\n");
        assert_eq!(stats.describe(), "2 files changed, 1 created");
    }

    #[test]
    fn context_mismatch_names_file_and_hunk() {
        let original = "a\nb\nc\nd\n";
        let patch = "--- a/src/main.rs\n+++ b/src/main.rs\n@@ -1 +1 @@\n-a\n+A\n@@ -40,2 +40,2 @@\n c\n-x\n+X\n";
        let err = run(&[("src/main.rs", original)], patch).unwrap_err();
        assert_eq!(err, "hunk 2 of `src/main.rs` does not apply (context not found near line 40)");
    }

    #[test]
    fn hunks_do_not_go_backwards() {
        // The second hunk's context only exists before the first hunk.
        let patch = "--- a/f\n+++ b/f\n@@ -3 +3 @@\n-c\n+C\n@@ -4 +4 @@\n-a\n+A\n";
        let err = run(&[("f", "a\nb\nc\nd\n")], patch).unwrap_err();
        assert!(err.starts_with("hunk 2 of `f` does not apply"), "{err}");
    }

    #[test]
    fn rejects_paths_that_leave_the_target() {
        let err = run(&[], "--- /dev/null\n+++ b/../escape\n@@ -0,0 +1 @@\n+x\n").unwrap_err();
        assert!(err.contains("contains `..`"), "{err}");
        assert!(strip_path("a/x/../../y", 1).unwrap_err().contains("`..`"));
        assert!(strip_path("/etc/passwd", 0).unwrap_err().contains("absolute"));
        assert_eq!(strip_path("a//src/./main.rs", 1).unwrap(), "src/main.rs");
        assert_eq!(strip_path("main.rs", 0).unwrap(), "main.rs");
        assert!(strip_path("main.rs", 1).unwrap_err().contains("lower `strip`"));
    }

    #[test]
    fn no_newline_at_end_of_file_is_honoured() {
        // Adds a final newline.
        let patch = "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n";
        let (plan, _) = run(&[("f", "a\nb")], patch).unwrap();
        assert_eq!(written(&plan, "f"), "a\nb\n");
        // Removes it.
        let patch = "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n+b\n\\ No newline at end of file\n";
        let (plan, _) = run(&[("f", "a\nb\n")], patch).unwrap();
        assert_eq!(written(&plan, "f"), "a\nb");
        // The old side says "no newline", but the file has one: no match.
        let patch = "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n";
        assert!(run(&[("f", "a\nb\n")], patch).unwrap_err().contains("does not apply"));
    }

    #[test]
    fn missing_file_and_renames_are_errors() {
        let err = run(&[], "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n").unwrap_err();
        assert!(err.contains("`f` does not exist"), "{err}");
        let err = run(&[("f", "a\n")], "--- a/f\n+++ b/g\n@@ -1 +1 @@\n-a\n+b\n").unwrap_err();
        assert!(err.contains("renames are not supported"), "{err}");
    }
}
