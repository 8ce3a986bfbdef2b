//! Finding and reading the files a step was granted: [`Files`] walks the
//! mounts with include/exclude globs, [`read_text`] reads a file unless it is
//! binary.

use std::collections::BTreeSet;
use std::path::Path;

use globset::{Glob, GlobSet, GlobSetBuilder};

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
///
/// ```
/// use cleanroom_plugin_sdk::Files;
/// let files = Files::new(&["**/*.rs".to_string()], &["target/**".to_string()]).unwrap();
/// assert!(files.matches("src/main.rs"));
/// assert!(!files.matches("target/debug/build.rs"));
/// // In a plugin: for file in files.walk(&invocation.mount_paths()) { ... }
/// ```
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
    /// or `/`, e.g. from [`Invocation::mount_paths`](crate::Invocation::mount_paths)),
    /// sorted and without duplicates when mounts nest.
    ///
    /// Symbolic links are not followed: inside the sandbox a link that leaves
    /// the mount cannot be opened anyway, and following links inside it would
    /// report the same file twice. Unreadable directories are skipped.
    pub fn walk<S: AsRef<str>>(&self, mounts: &[S]) -> Vec<FileEntry> {
        let mut found = BTreeSet::new();
        for mount in mounts {
            walk_dir(Path::new(mount.as_ref()), &mut |guest| {
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

/// Visits every regular file under `dir`; a mount that is itself a file
/// (a step narrowed to some files: `run --staged`) is visited as one.
fn walk_dir(dir: &Path, visit: &mut dyn FnMut(&str)) {
    if std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_file()) {
        if let Some(path) = dir.to_str() {
            visit(path);
        }
        return;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("sdk-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn write(&self, rel: &str, bytes: &[u8]) -> String {
            let path = self.0.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
            path.display().to_string()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn walk_filters_sorts_and_dedups_nested_mounts() {
        let dir = TempDir::new("walk");
        dir.write("src/b.rs", b"");
        dir.write("src/a.rs", b"");
        dir.write("src/notes.md", b"");
        dir.write("src/deep/c.rs", b"");
        let root = dir.0.display().to_string();
        let files = Files::new(&["**/*.rs".to_string()], &["**/deep/**".to_string()]).unwrap();
        // The outer mount and a nested one: each file is reported once.
        let found = files.walk(&[root.clone(), format!("{root}/src")]);
        let names: Vec<&str> = found.iter().map(|f| f.guest.rsplit('/').next().unwrap()).collect();
        assert_eq!(names, ["a.rs", "b.rs"]);
        assert_eq!(found[0].rel, found[0].guest.trim_start_matches('/'));
    }

    #[test]
    fn a_mount_that_is_a_file_is_walked_as_that_file() {
        let dir = TempDir::new("file-mount");
        let file = dir.write("big.bin", b"x");
        let found = Files::new(&[], &[]).unwrap().walk(std::slice::from_ref(&file));
        assert_eq!(found.iter().map(|f| f.guest.as_str()).collect::<Vec<_>>(), [file.as_str()]);
    }

    #[test]
    fn read_text_returns_text_whole_and_skips_binary_wherever_the_nul_is() {
        let dir = TempDir::new("read-text");
        let long_text = "line\n".repeat(20_000);
        assert_eq!(read_text(&dir.write("text", long_text.as_bytes())).unwrap(), long_text.as_bytes());
        assert_eq!(read_text(&dir.write("early", b"ELF\0rest")), None);
        let mut late = long_text.clone().into_bytes();
        late.push(0);
        assert_eq!(read_text(&dir.write("late", &late)), None);
        assert_eq!(read_text(&dir.0.join("missing").display().to_string()), None);
    }
}
