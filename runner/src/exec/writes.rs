//! Transactional writes: a step changes a private copy of its `write`
//! mounts, and the workspace changes only when the step succeeds.
//!
//! [`stage`] copies each writable mount into a fresh temporary directory
//! (regular files and directories; symlinks are neither copied nor ever
//! touched) and remembers what it copied. [`Staged::commit`] applies the
//! difference to the workspace: new or changed files are written to a
//! temporary name beside their destination and renamed over it, so each file
//! is either fully old or fully new even if the runner dies mid-commit; files
//! and directories the step deleted are removed. Dropping a [`Staged`]
//! without committing discards everything.
//!
//! Both sides are read and written through cap-std `Dir`s, never ambient
//! paths: a symlink the step planted in its output cannot redirect the host
//! to a file outside the mount.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, PermissionsExt};
use sha2::{Digest, Sha256};

use crate::plan::mounts::RUN_DIR;
use crate::plan::Mount;

/// What a staged file looked like when it was copied, to detect changes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir,
    File { sha256: [u8; 32], mode: u32 },
}

/// One writable mount and its private copy.
#[derive(Debug)]
struct StagedMount {
    mount: Mount,
    copy: tempfile::TempDir,
    initial: BTreeMap<PathBuf, Entry>,
}

/// The private copies of a step's writable mounts.
#[derive(Debug, Default)]
pub struct Staged {
    mounts: Vec<StagedMount>,
}

/// What a commit changed, as workspace-relative paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Files created or rewritten.
    pub written: Vec<String>,
    /// Files and directories removed.
    pub removed: Vec<String>,
    /// Symlinks the step created, which are not applied.
    pub ignored_links: Vec<String>,
}

/// Copies every writable mount in `mounts` into a private directory.
///
/// # Errors
/// An I/O error naming the mount that could not be copied.
pub fn stage(mounts: &[Mount]) -> io::Result<Staged> {
    let mut staged = Staged::default();
    for mount in mounts.iter().filter(|m| m.writable) {
        let copy = tempfile::Builder::new().prefix("cleanroom-stage-").tempdir()?;
        let mut initial = BTreeMap::new();
        // A write directory that did not exist at planning time may exist
        // now (an earlier attempt of this stage created it): a retried
        // stage starts from what its previous attempt committed.
        if mount.exists || mount.host.is_dir() {
            let source = open(&mount.host)?;
            let target = open(copy.path())?;
            copy_tree(&source, &target, Path::new(""), &mut initial, mount.rel == ".")
                .map_err(|e| io::Error::new(e.kind(), format!("cannot stage `{}`: {e}", mount.rel)))?;
        }
        staged.mounts.push(StagedMount { mount: mount.clone(), copy, initial });
    }
    Ok(staged)
}

impl Staged {
    /// `(private copy, workspace path)` for each staged mount, for the jail
    /// to mount the copy where the program expects the workspace path.
    pub fn binds(&self) -> Vec<(PathBuf, PathBuf)> {
        self.mounts.iter().map(|m| (m.copy.path().to_path_buf(), m.mount.host.clone())).collect()
    }

    /// Applies the private copies' changes to the workspace.
    ///
    /// # Errors
    /// An I/O error naming the file that could not be written; files already
    /// committed stay committed, each one whole.
    ///
    /// Each new file is first written whole to `scratch` (the run's
    /// `.cleanroom/tmp/`) and then renamed into place, so a crash leaves no
    /// half-written file in the workspace, only a stray temporary file in the
    /// run directory. Where `scratch` is on another filesystem, the
    /// temporary file is written beside its destination instead.
    pub fn commit(self, scratch: &Path) -> io::Result<Changes> {
        let mut changes = Changes::default();
        fs_err::create_dir_all(scratch)?;
        let scratch = open(scratch)?;
        for staged in &self.mounts {
            fs_err::create_dir_all(&staged.mount.host)?;
            let workspace = open(&staged.mount.host)?;
            let copy = open(staged.copy.path())?;
            let prefix = if staged.mount.rel == "." { String::new() } else { format!("{}/", staged.mount.rel) };
            let mut seen = BTreeSet::new();
            let target = Target { workspace: &workspace, scratch: &scratch };
            apply_tree(&copy, &target, Path::new(""), &staged.initial, &mut seen, &prefix, &mut changes)?;
            // Deepest first, so a removed directory's files are counted before it.
            for (path, entry) in staged.initial.iter().rev() {
                if seen.contains(path) {
                    continue;
                }
                let removed = match entry {
                    Entry::Dir => workspace.remove_dir_all(path),
                    Entry::File { .. } => workspace.remove_file(path),
                };
                match removed {
                    Ok(()) => changes.removed.push(format!("{prefix}{}", path.display())),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        changes.written.sort();
        changes.removed.sort();
        changes.ignored_links.sort();
        Ok(changes)
    }
}

/// A file a stage wrote, as the result cache keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// Workspace-relative path.
    pub path: String,
    /// The whole contents.
    pub bytes: Vec<u8>,
    /// Unix permission bits.
    pub mode: u32,
}

/// Workspace path `rel` relative to the write mount `mount`, if inside it.
fn inside<'a>(mount: &Mount, rel: &'a str) -> Option<&'a str> {
    let inner = if mount.rel == "." { Some(rel) } else { rel.strip_prefix(mount.rel.as_str())?.strip_prefix('/') };
    inner.filter(|i| !i.is_empty())
}

/// The staged mount (and the path inside it) holding workspace path `rel`.
fn mount_of<'a, 'r>(mounts: &'a [StagedMount], rel: &'r str) -> io::Result<(&'a StagedMount, &'r str)> {
    mounts
        .iter()
        .find_map(|m| inside(&m.mount, rel).map(|i| (m, i)))
        .ok_or_else(|| io::Error::other(format!("`{rel}` is in none of the step's write mounts")))
}

/// Reads back the files a committed stage wrote (`changes.written`), through
/// the write mounts' directories: a path that is not a regular file inside
/// one of them is an error, never followed.
///
/// # Errors
/// The first file that cannot be read that way.
pub fn read_written(mounts: &[Mount], written: &[String]) -> io::Result<Vec<WrittenFile>> {
    let mut files = Vec::new();
    for rel in written {
        let mount = mounts.iter().filter(|m| m.writable).find_map(|m| inside(m, rel).map(|i| (m, i)));
        let Some((mount, inner)) = mount else {
            return Err(io::Error::other(format!("`{rel}` is in none of the step's write mounts")));
        };
        let dir = open(&mount.host)?;
        let meta = dir.symlink_metadata(inner)?;
        if !meta.is_file() {
            return Err(io::Error::other(format!("`{rel}` is not a regular file")));
        }
        files.push(WrittenFile { path: rel.clone(), bytes: dir.read(inner)?, mode: meta.permissions().mode() });
    }
    Ok(files)
}

/// Makes the workspace what a cached stage left it: stages the write mounts,
/// writes `files` and removes `removed` in the private copies, and commits
/// them like any stage's writes (each file whole, or not at all).
///
/// # Errors
/// An I/O error; the workspace is then as it was, or has some files whole.
pub fn replay(mounts: &[Mount], files: &[WrittenFile], removed: &[String], scratch: &Path) -> io::Result<Changes> {
    let staged = stage(mounts)?;
    for rel in removed {
        let (mount, inner) = mount_of(&staged.mounts, rel)?;
        let copy = open(mount.copy.path())?;
        match copy.symlink_metadata(inner) {
            Ok(meta) if meta.is_dir() => copy.remove_dir_all(inner)?,
            Ok(_) => copy.remove_file(inner)?,
            Err(_) => {}
        }
    }
    for file in files {
        let (mount, inner) = mount_of(&staged.mounts, &file.path)?;
        let copy = open(mount.copy.path())?;
        if let Some(parent) = Path::new(inner).parent().filter(|p| !p.as_os_str().is_empty()) {
            copy.create_dir_all(parent)?;
        }
        copy.write(inner, &file.bytes)?;
        copy.set_permissions(inner, cap_std::fs::Permissions::from_mode(file.mode))?;
    }
    staged.commit(scratch)
}

fn open(path: &Path) -> io::Result<Dir> {
    Dir::open_ambient_dir(path, ambient_authority())
}

/// Copies `source` into `target`; at the workspace root (`is_root`) the run
/// directory is left out.
fn copy_tree(
    source: &Dir,
    target: &Dir,
    rel: &Path,
    initial: &mut BTreeMap<PathBuf, Entry>,
    is_root: bool,
) -> io::Result<()> {
    for entry in source.entries()? {
        let entry = entry?;
        let name = entry.file_name();
        if is_root && rel.as_os_str().is_empty() && name == RUN_DIR {
            continue;
        }
        let path = rel.join(&name);
        let kind = entry.file_type()?;
        if kind.is_dir() {
            target.create_dir(&name)?;
            initial.insert(path.clone(), Entry::Dir);
            copy_tree(&source.open_dir(&name)?, &target.open_dir(&name)?, &path, initial, false)?;
        } else if kind.is_file() {
            let bytes = source.read(&name)?;
            let mode = source.symlink_metadata(&name)?.permissions().mode();
            target.write(&name, &bytes)?;
            target.set_permissions(&name, cap_std::fs::Permissions::from_mode(mode))?;
            initial.insert(path, Entry::File { sha256: Sha256::digest(&bytes).into(), mode });
        }
    }
    Ok(())
}

/// Where committed files go, and where their temporaries are written.
struct Target<'d> {
    workspace: &'d Dir,
    scratch: &'d Dir,
}

impl Target<'_> {
    /// Writes `bytes` with `mode` to `path` atomically.
    fn replace(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temporary = format!("commit-{}-{n}", std::process::id());
        self.scratch.write(&temporary, bytes)?;
        self.scratch.set_permissions(&temporary, cap_std::fs::Permissions::from_mode(mode))?;
        match self.scratch.rename(&temporary, self.workspace, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                let _ = self.scratch.remove_file(&temporary);
                let beside = temporary_name(path);
                self.workspace.write(&beside, bytes)?;
                self.workspace.set_permissions(&beside, cap_std::fs::Permissions::from_mode(mode))?;
                self.workspace.rename(&beside, self.workspace, path)
            }
            Err(e) => {
                let _ = self.scratch.remove_file(&temporary);
                Err(e)
            }
        }
    }
}

fn apply_tree(
    copy: &Dir,
    target: &Target,
    rel: &Path,
    initial: &BTreeMap<PathBuf, Entry>,
    seen: &mut BTreeSet<PathBuf>,
    prefix: &str,
    changes: &mut Changes,
) -> io::Result<()> {
    for entry in copy.entries()? {
        let entry = entry?;
        let name = entry.file_name();
        let path = rel.join(&name);
        let kind = entry.file_type()?;
        let workspace = target.workspace;
        if kind.is_dir() {
            if initial.get(&path) != Some(&Entry::Dir) {
                replace_non_dir(workspace, &path)?;
                workspace.create_dir_all(&path)?;
            }
            seen.insert(path.clone());
            apply_tree(&copy.open_dir(&name)?, target, &path, initial, seen, prefix, changes)?;
        } else if kind.is_file() {
            seen.insert(path.clone());
            let bytes = copy.read(&name)?;
            let mode = copy.symlink_metadata(&name)?.permissions().mode();
            let now = Entry::File { sha256: Sha256::digest(&bytes).into(), mode };
            if initial.get(&path) == Some(&now) {
                continue;
            }
            if initial.get(&path) == Some(&Entry::Dir) {
                workspace.remove_dir_all(&path)?;
            }
            target.replace(&path, &bytes, mode)?;
            changes.written.push(format!("{prefix}{}", path.display()));
        } else {
            changes.ignored_links.push(format!("{prefix}{}", path.display()));
        }
    }
    Ok(())
}

/// Where a directory is about to be created, removes a file of that name.
fn replace_non_dir(workspace: &Dir, path: &Path) -> io::Result<()> {
    match workspace.symlink_metadata(path) {
        Ok(meta) if !meta.is_dir() => workspace.remove_file(path),
        _ => Ok(()),
    }
}

/// `dir/.name.cleanroom-tmp`: beside the destination, for the same-filesystem rename.
fn temporary_name(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.cleanroom-tmp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(host: &Path, exists: bool) -> Mount {
        Mount {
            rel: "out".into(),
            host: host.to_path_buf(),
            guest: "/out".into(),
            writable: true,
            is_dir: true,
            exists,
        }
    }

    #[test]
    fn commit_writes_changes_and_removes_deletions_only() {
        let ws = tempfile::tempdir().unwrap();
        let out = ws.path().join("out");
        fs_err::create_dir_all(out.join("keep")).unwrap();
        fs_err::write(out.join("same.txt"), "same").unwrap();
        fs_err::write(out.join("edit.txt"), "old").unwrap();
        fs_err::write(out.join("gone.txt"), "bye").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", out.join("link")).unwrap();
        let staged = stage(&[mount(&out, true)]).unwrap();
        let (copy, _) = staged.binds()[0].clone();
        assert!(
            !copy.join("link").exists() && fs_err::symlink_metadata(copy.join("link")).is_err(),
            "links are not staged"
        );
        fs_err::write(copy.join("edit.txt"), "new").unwrap();
        fs_err::remove_file(copy.join("gone.txt")).unwrap();
        fs_err::write(copy.join("keep/new.txt"), "fresh").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", copy.join("planted")).unwrap();
        let changes = staged.commit(&ws.path().join(".cleanroom/tmp")).unwrap();
        assert_eq!(changes.written, ["out/edit.txt", "out/keep/new.txt"]);
        assert_eq!(changes.removed, ["out/gone.txt"]);
        assert_eq!(changes.ignored_links, ["out/planted"]);
        assert_eq!(fs_err::read_to_string(out.join("edit.txt")).unwrap(), "new");
        assert_eq!(fs_err::read_to_string(out.join("same.txt")).unwrap(), "same");
        assert!(fs_err::symlink_metadata(out.join("link")).unwrap().file_type().is_symlink(), "untouched");
        assert!(fs_err::symlink_metadata(out.join("planted")).is_err(), "planted links are not applied");
    }

    #[test]
    fn dropping_without_commit_changes_nothing() {
        let ws = tempfile::tempdir().unwrap();
        let out = ws.path().join("out");
        fs_err::create_dir_all(&out).unwrap();
        fs_err::write(out.join("a.txt"), "a").unwrap();
        let staged = stage(&[mount(&out, true)]).unwrap();
        let (copy, _) = staged.binds()[0].clone();
        fs_err::write(copy.join("a.txt"), "changed").unwrap();
        drop(staged);
        assert_eq!(fs_err::read_to_string(out.join("a.txt")).unwrap(), "a");
        assert!(!copy.exists());
    }

    #[test]
    fn missing_write_directory_is_created_at_commit() {
        let ws = tempfile::tempdir().unwrap();
        let out = ws.path().join("out");
        let staged = stage(&[mount(&out, false)]).unwrap();
        fs_err::write(staged.binds()[0].0.join("app.wasm"), "bytes").unwrap();
        assert_eq!(staged.commit(&ws.path().join(".cleanroom/tmp")).unwrap().written, ["out/app.wasm"]);
        assert_eq!(fs_err::read_to_string(out.join("app.wasm")).unwrap(), "bytes");
    }
}
