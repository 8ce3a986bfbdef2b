//! The unified-diff applier behind the agent's `apply_patch` tool.
//!
//! Models write diffs by hand, so this parser is deliberately forgiving where
//! forgiving cannot change the result, and strict where it could:
//!
//! * The line counts in `@@ -l,s +l,s @@` headers are ignored (models often
//!   get them wrong): a hunk runs until the next `@@`, file header or
//!   `diff ` line. The start line is only a hint: a hunk applies where its
//!   old lines occur, the occurrence nearest the hint winning. A bare `@@`
//!   (no numbers) is accepted.
//! * Old lines must match the file exactly, or else line for line once
//!   trailing whitespace is ignored (the new lines are still written as the
//!   patch gives them). Context is never fuzzy otherwise.
//! * An empty line inside a hunk is an empty context line (some editors
//!   strip the leading space); empty lines ending a hunk are dropped, which
//!   cannot change what the hunk does.
//! * Any other line inside a hunk is an error, so a malformed diff is never
//!   half-applied.
//!
//! Creation (`--- /dev/null`), deletion (`+++ /dev/null`), several files and
//! hunks, and `\ No newline at end of file` are supported; renames are not.
//! This module only computes new contents; the `tools` module decides which
//! paths may be touched and writes the results.

/// One line of a hunk, with its `\n` unless `\ No newline at end of file`
/// follows it in the patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// ` `: in the file before and after.
    Context(String),
    /// `-`: in the file only before.
    Remove(String),
    /// `+`: in the file only after.
    Add(String),
}

impl Line {
    fn text_mut(&mut self) -> &mut String {
        match self {
            Line::Context(t) | Line::Remove(t) | Line::Add(t) => t,
        }
    }
}

/// One `@@` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    /// The old start line from the header, if it had one.
    pub old_start: Option<usize>,
    /// The hunk's lines, in order.
    pub lines: Vec<Line>,
}

/// The changes to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDiff {
    /// The `---` name (timestamps cut), `None` for `/dev/null`.
    pub old: Option<String>,
    /// The `+++` name (timestamps cut), `None` for `/dev/null`.
    pub new: Option<String>,
    /// The hunks, in order.
    pub hunks: Vec<Hunk>,
}

impl FileDiff {
    /// The file this diff changes, with git's `a/`/`b/` prefixes removed
    /// when the headers use them: `--- a/work/x.rs` / `+++ b/work/x.rs`
    /// gives `work/x.rs`.
    ///
    /// # Errors
    /// When the old and new names differ (a rename).
    pub fn target(&self) -> Result<String, String> {
        let git = self.old.as_deref().is_none_or(|n| n.starts_with("a/"))
            && self.new.as_deref().is_none_or(|n| n.starts_with("b/"));
        let strip = |name: &str| if git { name[2..].to_string() } else { name.to_string() };
        match (self.old.as_deref().map(strip), self.new.as_deref().map(strip)) {
            (Some(old), Some(new)) if old != new => {
                Err(format!("`{old}` -> `{new}` is a rename, which apply_patch does not do: write the new file"))
            }
            (_, Some(name)) | (Some(name), None) => Ok(name),
            (None, None) => Err("a file diff names /dev/null on both sides".to_string()),
        }
    }
}

/// Parses a whole patch.
///
/// # Errors
/// A one-line message naming the 1-based patch line that is wrong, or saying
/// that the patch has no file header.
pub fn parse(patch: &str) -> Result<Vec<FileDiff>, String> {
    let lines: Vec<&str> = patch.split('\n').collect();
    let is_file_header =
        |at: usize| lines[at].starts_with("--- ") && lines.get(at + 1).is_some_and(|l| l.starts_with("+++ "));
    let mut files = Vec::new();
    let mut at = 0;
    while at < lines.len() {
        if !is_file_header(at) {
            at += 1; // `diff --git`, `index`, prose around the diff
            continue;
        }
        let (old, new) = (header_name(lines[at]), header_name(lines[at + 1]));
        let header_line = at + 1;
        at += 2;
        let mut hunks = Vec::new();
        while at < lines.len() && lines[at].starts_with("@@") {
            let old_start = hunk_start(lines[at]);
            at += 1;
            let mut body: Vec<Line> = Vec::new();
            let mut trailing_bare = 0;
            while at < lines.len()
                && !lines[at].starts_with("@@")
                && !is_file_header(at)
                && !lines[at].starts_with("diff ")
            {
                let line = lines[at];
                let text = |rest: &str| format!("{rest}\n");
                match line.chars().next() {
                    None => body.push(Line::Context("\n".to_string())),
                    Some(' ') => body.push(Line::Context(text(&line[1..]))),
                    Some('-') => body.push(Line::Remove(text(&line[1..]))),
                    Some('+') => body.push(Line::Add(text(&line[1..]))),
                    Some('\\') => {
                        if let Some(last) = body.last_mut() {
                            last.text_mut().pop();
                        }
                    }
                    Some(_) => {
                        return Err(format!(
                            "patch line {} is not a diff line: start context lines with a space, removed lines \
                             with `-` and added lines with `+`",
                            at + 1
                        ))
                    }
                }
                trailing_bare = if line.is_empty() { trailing_bare + 1 } else { 0 };
                at += 1;
            }
            body.truncate(body.len() - trailing_bare);
            if body.iter().any(|l| !matches!(l, Line::Context(_))) {
                hunks.push(Hunk { old_start, lines: body });
            }
        }
        if hunks.is_empty() {
            return Err(format!(
                "patch line {header_line}: the file header is not followed by a hunk that changes anything"
            ));
        }
        files.push(FileDiff { old, new, hunks });
    }
    if files.is_empty() {
        return Err("the patch has no `--- old` / `+++ new` file header: write a unified diff".to_string());
    }
    Ok(files)
}

/// The name in a `--- ` or `+++ ` line: text after a tab (a timestamp) is
/// cut; `/dev/null` is `None`.
fn header_name(line: &str) -> Option<String> {
    let name = line[4..].split('\t').next().unwrap_or("").trim();
    (name != "/dev/null").then(|| name.to_string())
}

/// The old start line of `@@ -12,5 +12,6 @@`, if the header has one.
fn hunk_start(line: &str) -> Option<usize> {
    let old = line.split_whitespace().find_map(|word| word.strip_prefix('-'))?;
    old.split(',').next()?.parse().ok()
}

/// Applies `hunks` to `content` (the empty string for a file being created)
/// and returns the new contents.
///
/// # Errors
/// Names the first hunk (1-based) whose old lines are not in the file.
pub fn apply(content: &str, hunks: &[Hunk]) -> Result<String, String> {
    let lines: Vec<&str> = content.split_inclusive('\n').collect();
    let mut out = String::with_capacity(content.len());
    let mut pos = 0;
    for (number, hunk) in hunks.iter().enumerate() {
        let old: Vec<&str> = hunk
            .lines
            .iter()
            .filter_map(|l| match l {
                Line::Context(t) | Line::Remove(t) => Some(t.as_str()),
                Line::Add(_) => None,
            })
            .collect();
        // `-l,s` names the first old line; with no old lines it names the
        // line the new ones follow.
        let hint = hunk.old_start.map(|start| if old.is_empty() { start } else { start.saturating_sub(1) });
        let at = find(&lines, &old, pos, hint, |a, b| a == b)
            .or_else(|| find(&lines, &old, pos, hint, |a, b| a.trim_end() == b.trim_end()))
            .ok_or_else(|| {
                let first =
                    old.first().map_or(String::new(), |l| format!(" (its first old line is `{}`)", l.trim_end()));
                format!("hunk {} does not match the file{first}: read the file again and diff against it", number + 1)
            })?;
        out.extend(lines[pos..at].iter().copied());
        let has_new = hunk.lines.iter().any(|l| !matches!(l, Line::Remove(_)));
        if has_new && !out.is_empty() && !out.ends_with('\n') {
            out.push('\n'); // lines added after a last line that had no newline
        }
        for line in &hunk.lines {
            if let Line::Context(t) | Line::Add(t) = line {
                out.push_str(t);
            }
        }
        pos = at + old.len();
    }
    out.extend(lines[pos..].iter().copied());
    Ok(out)
}

/// Where `old` occurs in `lines` at or after `from`, nearest to `hint`
/// (the first occurrence without one).
fn find(
    lines: &[&str],
    old: &[&str],
    from: usize,
    hint: Option<usize>,
    same: impl Fn(&str, &str) -> bool,
) -> Option<usize> {
    if lines.len() < old.len() {
        return None;
    }
    let last = lines.len() - old.len();
    if from > last {
        return None;
    }
    let matches_at = |at: usize| old.iter().zip(&lines[at..]).all(|(a, b)| same(a, b));
    if old.is_empty() {
        return Some(hint.unwrap_or(last).clamp(from, last));
    }
    let hint = hint.unwrap_or(from).clamp(from, last);
    // Look outwards from the hint, before it first on a tie.
    (0..=last - from).find_map(|distance| {
        let before = hint.checked_sub(distance).filter(|&at| at >= from && matches_at(at));
        before.or_else(|| Some(hint + distance).filter(|&at| at <= last && matches_at(at)))
    })
}

/// `+added -removed` for a summary.
pub fn counts(diff: &FileDiff) -> (usize, usize) {
    let lines = diff.hunks.iter().flat_map(|h| &h.lines);
    lines.fold((0, 0), |(add, remove), line| match line {
        Line::Add(_) => (add + 1, remove),
        Line::Remove(_) => (add, remove + 1),
        Line::Context(_) => (add, remove),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply_one(content: &str, patch: &str) -> Result<String, String> {
        let files = parse(patch)?;
        assert_eq!(files.len(), 1);
        apply(content, &files[0].hunks)
    }

    const MAIN: &str = "fn main() {\n    // To be implemented.\n}\n";

    #[test]
    fn git_diff_with_wrong_counts_applies() {
        let patch =
            "diff --git a/work/main.rs b/work/main.rs\nindex 1..2 100644\n--- a/work/main.rs\n+++ b/work/main.rs\n\
                     @@ -1,99 +1,1 @@\n fn main() {\n-    // To be implemented.\n+    println!(\"hi\");\n }\n";
        let files = parse(patch).unwrap();
        assert_eq!(files[0].target().unwrap(), "work/main.rs");
        assert_eq!(apply(MAIN, &files[0].hunks).unwrap(), "fn main() {\n    println!(\"hi\");\n}\n");
        assert_eq!(counts(&files[0]), (1, 1));
    }

    #[test]
    fn hunks_apply_at_an_offset_nearest_the_hint_and_in_order() {
        let content = "a\nx\nb\nx\nc\nx\nd\n";
        // The hint says line 6; the `x` nearest it (line 6) is replaced.
        assert_eq!(apply_one(content, "--- f\n+++ f\n@@ -6 +6 @@\n-x\n+Y\n").unwrap(), "a\nx\nb\nx\nc\nY\nd\n");
        // No numbers: the first match; two hunks apply in order.
        let two = "--- f\n+++ f\n@@\n-x\n+1\n@@\n-x\n+2\n";
        assert_eq!(apply_one(content, two).unwrap(), "a\n1\nb\n2\nc\nx\nd\n");
    }

    #[test]
    fn mismatch_is_an_error_naming_the_hunk() {
        let err = apply_one(MAIN, "--- f\n+++ f\n@@ -1 +1 @@\n-fn mian() {\n+fn main() {\n").unwrap_err();
        assert_eq!(err, "hunk 1 does not match the file (its first old line is `fn mian() {`): read the file again and diff against it");
    }

    #[test]
    fn trailing_whitespace_differences_still_match() {
        let patch = "--- f\n+++ f\n@@ -2 +2 @@\n-    // To be implemented.   \n+    run();\n";
        assert_eq!(apply_one(MAIN, patch).unwrap(), "fn main() {\n    run();\n}\n");
        let crlf = "a\r\nb\r\n";
        assert_eq!(apply_one(crlf, "--- f\n+++ f\n@@\n-a\n+A\n").unwrap(), "A\nb\r\n");
    }

    #[test]
    fn stripped_blank_context_lines_and_trailing_blank_lines() {
        let content = "a\n\nb\n";
        // The blank context line lost its space; the patch ends in blank lines.
        assert_eq!(apply_one(content, "--- f\n+++ f\n@@ -1,3 +1,3 @@\n a\n\n-b\n+B\n\n\n").unwrap(), "a\n\nB\n");
    }

    #[test]
    fn create_and_delete() {
        let files = parse("--- /dev/null\n+++ b/work/new.rs\n@@ -0,0 +1,2 @@\n+one\n+two\n").unwrap();
        assert_eq!(files[0].old, None);
        assert_eq!(files[0].target().unwrap(), "work/new.rs");
        assert_eq!(apply("", &files[0].hunks).unwrap(), "one\ntwo\n");
        let files = parse("--- a/work/old.rs\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-one\n-two\n").unwrap();
        assert_eq!((files[0].new.clone(), files[0].target().unwrap()), (None, "work/old.rs".to_string()));
        assert_eq!(apply("one\ntwo\n", &files[0].hunks).unwrap(), "");
    }

    #[test]
    fn no_newline_markers() {
        // Adding a newline to a last line that had none.
        let patch = "--- f\n+++ f\n@@ -1 +1 @@\n-end\n\\ No newline at end of file\n+end\n";
        assert_eq!(apply_one("start\nend", patch).unwrap(), "start\nend\n");
        // Appending after a last line without newline (not in the hunk).
        assert_eq!(apply_one("a", "--- f\n+++ f\n@@ -1,0 +2 @@\n+b\n").unwrap(), "a\nb\n");
        // Creating a file without a final newline.
        let files = parse("--- /dev/null\n+++ f\n@@ -0,0 +1 @@\n+x\n\\ No newline at end of file\n").unwrap();
        assert_eq!(apply("", &files[0].hunks).unwrap(), "x");
    }

    #[test]
    fn several_files_timestamps_and_plain_names() {
        let patch = "--- work/a.txt\t2024-01-01 00:00:00\n+++ work/a.txt\t2024-01-02 00:00:00\n@@ -1 +1 @@\n-a\n+A\n\
                     --- /work/b.txt\n+++ /work/b.txt\n@@ -1 +1 @@\n-b\n+B\n";
        let files = parse(patch).unwrap();
        let targets: Vec<String> = files.iter().map(|f| f.target().unwrap()).collect();
        assert_eq!(targets, ["work/a.txt", "/work/b.txt"]);
    }

    #[test]
    fn malformed_patches_are_rejected_whole() {
        assert!(parse("just some prose\n").unwrap_err().contains("no `--- old` / `+++ new` file header"));
        let err = parse("--- f\n+++ f\n@@ -1 +1 @@\n a\nb without prefix\n-c\n").unwrap_err();
        assert!(err.starts_with("patch line 5 is not a diff line"), "{err}");
        assert!(parse("--- f\n+++ f\n").unwrap_err().contains("not followed by a hunk"));
        assert!(parse("--- f\n+++ f\n@@ -1 +1 @@\n a\n").unwrap_err().contains("not followed by a hunk that changes"));
        let rename = parse("--- a/x\n+++ b/y\n@@\n-1\n+2\n").unwrap();
        assert!(rename[0].target().unwrap_err().contains("rename"));
    }

    #[test]
    fn a_removed_line_that_looks_like_a_header_stays_a_removed_line() {
        // `--- x` without a following `+++` line is the removal of `-- x`.
        let patch = "--- f\n+++ f\n@@ -1,2 +1 @@\n--- x\n keep\n";
        assert_eq!(apply_one("-- x\nkeep\n", patch).unwrap(), "keep\n");
    }
}
