//! Parses unified diffs (`diff -u`, `git diff`) into per-file patches.
//!
//! Understood: `--- old` / `+++ new` headers (text after a tab, such as a
//! timestamp, is ignored; `/dev/null` marks creation or deletion), `@@ -l,s
//! +l,s @@` hunk headers (a missing `,s` means 1), hunk lines starting with
//! ` `, `-` or `+` (an empty line counts as an empty context line, as some
//! editors strip the space), and `\ No newline at end of file`. Anything
//! outside a file section (`diff --git`, `index`, commit messages) is skipped.
//!
//! Works on bytes, so files need not be UTF-8; file names must be.

/// One line of a hunk, with its line terminator (`\n`) unless the patch says
/// `\ No newline at end of file` after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HunkLine {
    /// Present before and after (` `).
    Context(Vec<u8>),
    /// Present only before (`-`).
    Remove(Vec<u8>),
    /// Present only after (`+`).
    Add(Vec<u8>),
}

impl HunkLine {
    fn text_mut(&mut self) -> &mut Vec<u8> {
        match self {
            HunkLine::Context(t) | HunkLine::Remove(t) | HunkLine::Add(t) => t,
        }
    }
}

/// One `@@` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    /// The stated first old line (1-based; for an empty old side, the line
    /// after which the new lines go, 0 meaning the start of the file).
    pub old_start: usize,
    /// The lines the file must contain here before the change.
    pub old: Vec<Vec<u8>>,
    /// The lines that replace them.
    pub new: Vec<Vec<u8>>,
}

/// The changes to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePatch {
    /// The `---` name as written, `None` for `/dev/null` (the file is created).
    pub old_name: Option<String>,
    /// The `+++` name as written, `None` for `/dev/null` (the file is deleted).
    pub new_name: Option<String>,
    /// The hunks, in order.
    pub hunks: Vec<Hunk>,
}

impl FilePatch {
    /// The name used in messages: the new name, or the old one for a deletion.
    pub fn display_name(&self) -> &str {
        self.new_name.as_deref().or(self.old_name.as_deref()).unwrap_or("/dev/null")
    }
}

const DEV_NULL: &str = "/dev/null";

/// Parses a whole patch.
///
/// # Errors
/// A one-line message naming the patch line (1-based) that is wrong, or
/// saying that the patch changes no file.
pub fn parse(patch: &[u8]) -> Result<Vec<FilePatch>, String> {
    let lines = split_lines(patch);
    let mut files = Vec::new();
    let mut at = 0;
    while at < lines.len() {
        if lines[at].starts_with(b"Binary files ") || lines[at].starts_with(b"GIT binary patch") {
            return Err(format!("patch line {} is a binary diff: only text diffs can be applied", at + 1));
        }
        let starts_file = lines[at].starts_with(b"--- ") && lines.get(at + 1).is_some_and(|l| l.starts_with(b"+++ "));
        if !starts_file {
            at += 1;
            continue;
        }
        let old_name = header_name(lines[at], at)?;
        let new_name = header_name(lines[at + 1], at + 1)?;
        if old_name.is_none() && new_name.is_none() {
            return Err(format!("patch lines {}-{} name `/dev/null` on both sides: name a file", at + 1, at + 2));
        }
        at += 2;
        let mut file = FilePatch { old_name, new_name, hunks: Vec::new() };
        while at < lines.len() && lines[at].starts_with(b"@@") {
            let hunk_number = file.hunks.len() + 1;
            let (hunk, next) = parse_hunk(&lines, at, hunk_number, file.display_name())?;
            file.hunks.push(hunk);
            at = next;
        }
        files.push(file);
    }
    if files.is_empty() {
        return Err("the patch changes no file: expected a unified diff with `---`, `+++` and `@@` lines".into());
    }
    Ok(files)
}

/// Splits on `\n`, dropping the empty piece after a final newline.
fn split_lines(patch: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = patch.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// The file name in a `--- ` or `+++ ` line: up to a tab, trailing spaces
/// and `\r` removed; `None` for `/dev/null`.
fn header_name(line: &[u8], index: usize) -> Result<Option<String>, String> {
    let rest = &line[4..];
    let name = rest.split(|&b| b == b'\t').next().unwrap_or(rest);
    let name = std::str::from_utf8(name)
        .map_err(|_| format!("patch line {}: the file name is not UTF-8: rename the file", index + 1))?
        .trim_end();
    if name.is_empty() {
        return Err(format!("patch line {}: the file name is empty", index + 1));
    }
    if name.starts_with('"') {
        return Err(format!("patch line {}: quoted file names are not supported: rename the file", index + 1));
    }
    Ok((name != DEV_NULL).then(|| name.to_string()))
}

/// Parses the hunk whose header is at `lines[at]`; returns it and the index
/// of the line after it. The header's line counts decide where it ends, so a
/// removed line that happens to start with `-- ` is not taken for a header.
fn parse_hunk(lines: &[&[u8]], at: usize, number: usize, file: &str) -> Result<(Hunk, usize), String> {
    let (old_start, old_len, new_len) = parse_hunk_header(lines[at]).ok_or_else(|| {
        format!("hunk {number} of `{file}` has a malformed header at patch line {}: expected `@@ -l,s +l,s @@`", at + 1)
    })?;
    let mut body: Vec<HunkLine> = Vec::new();
    let (mut old_seen, mut new_seen) = (0, 0);
    let mut next = at + 1;
    while old_seen < old_len || new_seen < new_len {
        let Some(line) = lines.get(next) else {
            return Err(format!(
                "hunk {number} of `{file}` is truncated: its header promises {old_len} old and {new_len} new lines"
            ));
        };
        let mut text = line.get(1..).unwrap_or_default().to_vec();
        text.push(b'\n');
        let parsed = match line.first() {
            None => HunkLine::Context(b"\n".to_vec()),
            Some(b' ') => HunkLine::Context(text),
            Some(b'-') => HunkLine::Remove(text),
            Some(b'+') => HunkLine::Add(text),
            Some(b'\\') => {
                mark_no_newline(&mut body, number, file, next)?;
                next += 1;
                continue;
            }
            Some(_) => {
                return Err(format!(
                    "hunk {number} of `{file}` is malformed at patch line {}: lines must start with ' ', '-' or '+'",
                    next + 1
                ))
            }
        };
        match parsed {
            HunkLine::Context(_) => (old_seen, new_seen) = (old_seen + 1, new_seen + 1),
            HunkLine::Remove(_) => old_seen += 1,
            HunkLine::Add(_) => new_seen += 1,
        }
        if old_seen > old_len || new_seen > new_len {
            return Err(format!(
                "hunk {number} of `{file}` has more lines than its header says (patch line {}): fix the counts",
                next + 1
            ));
        }
        body.push(parsed);
        next += 1;
    }
    // `\ No newline at end of file` follows the line it is about, which may be the hunk's last.
    if lines.get(next).is_some_and(|l| l.starts_with(b"\\")) {
        mark_no_newline(&mut body, number, file, next)?;
        next += 1;
    }
    Ok((split_sides(old_start, body), next))
}

fn mark_no_newline(body: &mut [HunkLine], number: usize, file: &str, index: usize) -> Result<(), String> {
    let Some(last) = body.last_mut() else {
        return Err(format!(
            "hunk {number} of `{file}`: `\\ No newline at end of file` at patch line {} follows no line",
            index + 1
        ));
    };
    if last.text_mut().pop() != Some(b'\n') {
        return Err(format!("hunk {number} of `{file}`: repeated `\\` line at patch line {}", index + 1));
    }
    Ok(())
}

fn split_sides(old_start: usize, body: Vec<HunkLine>) -> Hunk {
    let mut hunk = Hunk { old_start, old: Vec::new(), new: Vec::new() };
    for line in body {
        match line {
            HunkLine::Context(t) => {
                hunk.old.push(t.clone());
                hunk.new.push(t);
            }
            HunkLine::Remove(t) => hunk.old.push(t),
            HunkLine::Add(t) => hunk.new.push(t),
        }
    }
    hunk
}

/// `@@ -l[,s] +l[,s] @@ anything` into (old start, old length, new length).
fn parse_hunk_header(line: &[u8]) -> Option<(usize, usize, usize)> {
    let line = std::str::from_utf8(line).ok()?;
    let rest = line.strip_prefix("@@ -")?;
    let (ranges, _) = rest.split_once(" @@")?;
    let (old, new) = ranges.split_once(" +")?;
    let (old_start, old_len) = parse_range(old)?;
    let (_, new_len) = parse_range(new)?;
    Some((old_start, old_len, new_len))
}

fn parse_range(range: &str) -> Option<(usize, usize)> {
    match range.split_once(',') {
        Some((start, len)) => Some((start.parse().ok()?, len.parse().ok()?)),
        None => Some((range.parse().ok()?, 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn parses_headers_hunks_and_skips_preamble() {
        let patch = "diff --git a/x b/x\nindex 1..2 100644\n--- a/x\t2024-01-01 00:00:00\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n";
        let files = parse(patch.as_bytes()).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].old_name.as_deref(), Some("a/x"));
        assert_eq!(files[0].new_name.as_deref(), Some("b/x"));
        assert_eq!(
            files[0].hunks,
            vec![Hunk { old_start: 1, old: vec![b("a\n"), b("b\n")], new: vec![b("a\n"), b("c\n")] }]
        );
    }

    #[test]
    fn counts_decide_where_a_hunk_ends() {
        // The removed line `-- x` must not be mistaken for a `--- ` header.
        let patch = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n--- x\n+++ y\n";
        let files = parse(patch.as_bytes()).unwrap();
        assert_eq!(files[0].hunks[0].old, vec![b("-- x\n")]);
        assert_eq!(files[0].hunks[0].new, vec![b("++ y\n")]);
    }

    #[test]
    fn no_newline_marker_strips_the_terminator_of_the_line_before() {
        let patch =
            "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old\n\\ No newline at end of file\n+new\n\\ No newline at end of file\n";
        let hunk = &parse(patch.as_bytes()).unwrap()[0].hunks[0];
        assert_eq!(hunk.old, vec![b("old")]);
        assert_eq!(hunk.new, vec![b("new")]);
    }

    #[test]
    fn dev_null_marks_creation_and_deletion() {
        let patch = "--- /dev/null\n+++ b/new\n@@ -0,0 +1 @@\n+hi\n--- a/gone\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n";
        let files = parse(patch.as_bytes()).unwrap();
        assert_eq!(files[0].old_name, None);
        assert_eq!(files[1].new_name, None);
        assert_eq!(files[1].display_name(), "a/gone");
    }

    #[test]
    fn truncated_hunk_is_an_error() {
        let err = parse(b"--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n").unwrap_err();
        assert!(err.contains("hunk 1 of `b/x` is truncated"), "{err}");
    }

    #[test]
    fn text_without_diff_is_an_error() {
        let err = parse(b"just some text\n").unwrap_err();
        assert!(err.contains("changes no file"), "{err}");
    }
}
