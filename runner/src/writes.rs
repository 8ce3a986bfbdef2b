//! The workspace transaction: a step changes a private copy of its `write`
//! mounts, and the workspace changes only when the step succeeds. Staging,
//! commit and a cached result's replay all live here, whatever runs the step.
//!
//! [`stage`] copies each writable mount into a fresh temporary directory
//! (regular files and directories; symlinks, FIFOs, sockets and devices are
//! neither copied nor ever touched) and remembers what it copied.
//! [`Staged::commit`] applies the difference to the workspace in two
//! passes: the first reads every changed file and checks every change, the
//! second writes. Anything wrong (a FIFO, socket or device where a file
//! should be, a change under the run directory `.cleanroom/` or to a `.git`
//! the mount does not name) is refused in the first pass, so the workspace is then unchanged. New or changed files
//! are written to a temporary name and renamed over their destination, so
//! each file is either fully old or fully new even if the runner dies
//! mid-commit; files and directories the step deleted are removed. Dropping
//! a [`Staged`] without committing discards everything.
//!
//! Nothing a stage writes raises privileges: every committed, replayed or
//! cached file gets at most [`MAX_MODE`] (no setuid, setgid or sticky bit,
//! no group or other write), directories the commit creates likewise, and
//! staged copies never carry such bits into the jail.
//!
//! Both sides are read and written through cap-std `Dir`s, never ambient
//! paths: a symlink the step planted in its output cannot redirect the host
//! to a file outside the mount. Every file is opened with `O_NOFOLLOW` and
//! `O_NONBLOCK` and checked on the open handle (`fstat`) to be a regular
//! file, so a FIFO swapped in for a file can neither block the commit nor be
//! committed; and the commit has a deadline ([`COMMIT_DEADLINE`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Seek, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use cap_std::ambient_authority;
use cap_std::fs::{
    Dir, DirBuilder, DirBuilderExt, File, FileType, FileTypeExt, OpenOptions, OpenOptionsExt, PermissionsExt,
};
use nix::fcntl::OFlag;
use sha2::{Digest, Sha256};

use crate::manifest::GIT_DIR;
use crate::plan::mounts::RUN_DIR;
use crate::plan::Mount;

/// The most permission bits a committed, replayed or staged file (or a
/// directory the commit creates) may have: `rwxr-xr-x`. A stage must not
/// leave a setuid program for a later step (or the user) to run, nor a file
/// other users may change.
pub const MAX_MODE: u32 = 0o755;

/// How long a commit (or a cached replay) may take before it stops with an
/// error: it reads only regular files without blocking, so only a machine
/// in trouble, or a huge output, gets near it.
pub const COMMIT_DEADLINE: Duration = Duration::from_secs(60);

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
    /// The changes as a unified diff, for people reviewing them ([`diff`]);
    /// empty when nothing changed.
    pub diff: String,
}

impl Changes {
    /// The changes as a report lists them: written, then removed, then
    /// links not applied.
    pub fn list(&self) -> Vec<crate::report::Change> {
        use crate::report::Change;
        let written = self.written.iter().cloned().map(Change::Written);
        let removed = self.removed.iter().cloned().map(Change::Removed);
        let links = self.ignored_links.iter().cloned().map(Change::IgnoredLink);
        written.chain(removed).chain(links).collect()
    }
}

/// `mode` without anything above [`MAX_MODE`] (and without the file type).
pub fn safe_mode(mode: u32) -> u32 {
    mode & MAX_MODE
}

/// Copies every writable mount in `mounts` into a private directory.
///
/// # Errors
/// An I/O error naming the mount that could not be copied.
pub fn stage(mounts: &[Mount]) -> io::Result<Staged> {
    let mut staged = Staged::default();
    for mount in mounts.iter().filter(|m| m.writable) {
        let copy = crate::scratch::dir("stage-")?;
        let mut initial = BTreeMap::new();
        // A write directory that did not exist at planning time may exist
        // now (an earlier attempt of this stage created it): a retried
        // stage starts from what its previous attempt committed.
        if mount.exists || mount.host.is_dir() {
            let source = open(&mount.host)?;
            let target = open(copy.path())?;
            copy_tree(&source, &target, Path::new(""), &mut initial, mount.rel == ".", names_git(mount))
                .map_err(|e| io::Error::new(e.kind(), format!("cannot stage `{}`: {e}", mount.rel)))?;
        }
        staged.mounts.push(StagedMount { mount: mount.clone(), copy, initial });
    }
    Ok(staged)
}

/// One change the commit will make, checked before any is made.
#[derive(Debug)]
enum Op {
    /// Create a directory (removing a file of that name first).
    MakeDir(PathBuf),
    /// Write a changed file from the copy (removing a directory of that name
    /// first when `was_dir`).
    Write { path: PathBuf, sha256: [u8; 32], mode: u32, was_dir: bool },
    /// Remove what the step deleted.
    Remove { path: PathBuf, dir: bool },
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
    /// An I/O error naming the file at fault. A refused change (a FIFO,
    /// socket or device in the output, a change under `.cleanroom/`) or
    /// an unreadable file is found before anything is written, and then
    /// nothing is committed; a failure while writing leaves the files
    /// already committed, each one whole.
    ///
    /// Each new file is first written whole to `scratch` (the run's
    /// `.cleanroom/tmp/`) and then renamed into place, so a crash leaves no
    /// half-written file in the workspace, only a stray temporary file in the
    /// run directory. Where `scratch` is on another filesystem, the
    /// temporary file is written beside its destination instead.
    pub fn commit(self, scratch: &Path) -> io::Result<Changes> {
        let deadline = Instant::now() + COMMIT_DEADLINE;
        let mut changes = Changes::default();
        // First pass: read and check everything, write nothing.
        let mut plans = Vec::with_capacity(self.mounts.len());
        for staged in &self.mounts {
            let ops = plan_mount(staged, deadline, &mut changes)
                .map_err(|e| io::Error::new(e.kind(), format!("{e}; nothing was committed")))?;
            plans.push(ops);
        }
        changes.diff = diff(&self.mounts, &plans);
        // Second pass: write.
        fs_err::create_dir_all(scratch)?;
        let scratch = open(scratch)?;
        for (staged, ops) in self.mounts.iter().zip(plans) {
            make_write_dir(&staged.mount.host)?;
            let workspace = open(&staged.mount.host)?;
            let copy = open(staged.copy.path())?;
            let target = Target { workspace: &workspace, scratch: &scratch };
            let prefix = prefix_of(&staged.mount);
            for op in ops {
                past(deadline, &prefix)?;
                match op {
                    Op::MakeDir(path) => {
                        replace_non_dir(&workspace, &path)?;
                        create_dirs(&workspace, &path)?;
                    }
                    Op::Write { path, sha256, mode, was_dir } => {
                        if was_dir {
                            workspace.remove_dir_all(&path)?;
                        }
                        let shown = format!("{prefix}{}", path.display());
                        let (mut source, _) = open_regular(&copy, &path, &shown)?;
                        target.replace(&path, &mut source, &shown, sha256, mode, deadline)?;
                    }
                    Op::Remove { path, dir } => {
                        let removed = if dir { workspace.remove_dir_all(&path) } else { workspace.remove_file(&path) };
                        match removed {
                            Ok(()) => {}
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                                let shown = format!("{prefix}{}", path.display());
                                changes.removed.retain(|r| *r != shown);
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
        }
        changes.written.sort();
        changes.removed.sort();
        changes.ignored_links.sort();
        Ok(changes)
    }
}

/// `out/` for a mount of `out`, nothing for the workspace root.
fn prefix_of(mount: &Mount) -> String {
    if mount.rel == "." {
        String::new()
    } else {
        format!("{}/", mount.rel)
    }
}

/// The first pass of a commit for one mount: what to do, in order, with
/// every file read and checked; `changes` records it.
fn plan_mount(staged: &StagedMount, deadline: Instant, changes: &mut Changes) -> io::Result<Vec<Op>> {
    refuse_run_dir_mount(&staged.mount)?;
    let copy = open(staged.copy.path())?;
    let prefix = prefix_of(&staged.mount);
    let mut walk = Walk {
        initial: &staged.initial,
        seen: BTreeSet::new(),
        prefix: &prefix,
        is_root_mount: staged.mount.rel == ".",
        in_run_dir: staged.mount.rel.split('/').next() == Some(RUN_DIR),
        names_git: names_git(&staged.mount),
        deadline,
        ops: Vec::new(),
    };
    walk.tree(&copy, Path::new(""), changes)?;
    // Deepest first, so a removed directory's files are counted before it.
    for (path, entry) in staged.initial.iter().rev() {
        if walk.seen.contains(path) {
            continue;
        }
        changes.removed.push(format!("{prefix}{}", path.display()));
        walk.ops.push(Op::Remove { path: path.clone(), dir: *entry == Entry::Dir });
    }
    Ok(walk.ops)
}

/// Largest file shown in a diff; a larger one is named only.
const DIFF_FILE_CAP: u64 = 256 * 1024;
/// Largest diff kept for one commit; past it the rest is cut, saying so.
const DIFF_CAP: usize = 512 * 1024;

/// The planned changes as a unified diff: each file written or removed
/// against what the workspace holds now (before the commit). Binary files
/// (a NUL byte or not UTF-8) and files over [`DIFF_FILE_CAP`] are named, not
/// shown. Reading goes through the same `Dir` handles as the commit; a file
/// that cannot be read is named, and never stops the commit.
fn diff(mounts: &[StagedMount], plans: &[Vec<Op>]) -> String {
    let mut out = String::new();
    for (staged, ops) in mounts.iter().zip(plans) {
        let prefix = prefix_of(&staged.mount);
        let workspace = open(&staged.mount.host).ok();
        let copy = open(staged.copy.path()).ok();
        for op in ops {
            if out.len() > DIFF_CAP {
                out.push_str("... (diff cut at 512 KiB)\n");
                return out;
            }
            let (path, new) = match op {
                Op::Write { path, .. } => (path, copy.as_ref().map(|c| text_of(c, path))),
                Op::Remove { path, dir: false } => (path, Some(Text::Absent)),
                _ => continue,
            };
            let shown = format!("{prefix}{}", path.display());
            let old = workspace.as_ref().map_or(Text::Absent, |w| text_of(w, path));
            push_file_diff(&mut out, &shown, &old, &new.unwrap_or(Text::Unreadable));
        }
    }
    out
}

/// A file's contents as a diff shows them.
enum Text {
    Absent,
    Lines(String),
    Binary,
    TooLarge(u64),
    Unreadable,
}

fn text_of(dir: &Dir, path: &Path) -> Text {
    let Ok(meta) = dir.symlink_metadata(path) else { return Text::Absent };
    if !meta.is_file() {
        return Text::Absent;
    }
    if meta.len() > DIFF_FILE_CAP {
        return Text::TooLarge(meta.len());
    }
    match dir.read(path) {
        Ok(bytes) if bytes.contains(&0) => Text::Binary,
        Ok(bytes) => String::from_utf8(bytes).map_or(Text::Binary, Text::Lines),
        Err(_) => Text::Unreadable,
    }
}

fn push_file_diff(out: &mut String, shown: &str, old: &Text, new: &Text) {
    use std::fmt::Write;
    let (from, to) = match (old, new) {
        (Text::Absent, _) => ("/dev/null".to_string(), format!("b/{shown}")),
        (_, Text::Absent) => (format!("a/{shown}"), "/dev/null".to_string()),
        _ => (format!("a/{shown}"), format!("b/{shown}")),
    };
    let lines = |t: &Text| match t {
        Text::Absent => Some(String::new()),
        Text::Lines(text) => Some(text.clone()),
        _ => None,
    };
    match (lines(old), lines(new)) {
        (Some(old), Some(new)) => {
            let unified = similar::TextDiff::from_lines(&old, &new)
                .unified_diff()
                .context_radius(3)
                .header(&from, &to)
                .to_string();
            out.push_str(&unified);
            if !unified.ends_with('\n') && !unified.is_empty() {
                out.push('\n');
            }
        }
        _ => {
            let why = [old, new]
                .into_iter()
                .find_map(|t| match t {
                    Text::Binary => Some("binary".to_string()),
                    Text::TooLarge(n) => Some(format!("{n} bytes, over the diff's 256 KiB per file")),
                    Text::Unreadable => Some("unreadable".to_string()),
                    _ => None,
                })
                .unwrap_or_default();
            let _ = writeln!(out, "--- {from}\n+++ {to}\n(file not shown: {why})");
        }
    }
}

/// A mount whose host directory lies in the workspace's run directory
/// (however it is spelt or linked) is never written.
fn refuse_run_dir_mount(mount: &Mount) -> io::Result<()> {
    let depth = Path::new(&mount.rel).components().filter(|c| matches!(c, Component::Normal(_))).count();
    let Some(workspace) = mount.host.ancestors().nth(depth) else { return Ok(()) };
    let run_dir = workspace.join(RUN_DIR);
    let (Ok(host), Ok(run_dir)) = (fs_err::canonicalize(&mount.host), fs_err::canonicalize(&run_dir)) else {
        return Ok(());
    };
    if host.starts_with(&run_dir) {
        return Err(io::Error::other(format!(
            "`{}` resolves into the run directory `{RUN_DIR}/`, which no step may change",
            mount.rel
        )));
    }
    Ok(())
}

/// The first pass's walk over one private copy.
struct Walk<'a> {
    initial: &'a BTreeMap<PathBuf, Entry>,
    seen: BTreeSet<PathBuf>,
    prefix: &'a str,
    /// The mount is the workspace root, whose `.cleanroom` is the run directory.
    is_root_mount: bool,
    /// The mount itself is inside the run directory.
    in_run_dir: bool,
    /// The mount is (or is inside) a `.git`, which it may then change.
    names_git: bool,
    deadline: Instant,
    ops: Vec<Op>,
}

impl Walk<'_> {
    fn tree(&mut self, copy: &Dir, rel: &Path, changes: &mut Changes) -> io::Result<()> {
        for entry in copy.entries()? {
            let entry = entry?;
            let name = entry.file_name();
            let path = rel.join(&name);
            let shown = format!("{}{}", self.prefix, path.display());
            past(self.deadline, &shown)?;
            let kind = entry.file_type()?;
            let under_run_dir =
                self.in_run_dir || (self.is_root_mount && rel.as_os_str().is_empty() && name == RUN_DIR);
            if under_run_dir {
                // The empty mount point the jail shadows the run directory
                // with is all a root mount may hold there.
                let empty_mount_point = !self.in_run_dir
                    && kind.is_dir()
                    && copy.read_dir(&name).map(|mut e| e.next().is_none()).unwrap_or(false);
                if empty_mount_point {
                    continue;
                }
                return Err(io::Error::other(format!(
                    "`{shown}` is in the run directory `{RUN_DIR}/`, which no step may change"
                )));
            }
            if name == GIT_DIR && !self.names_git {
                // Staging left it out, so the step made it: hooks or a
                // config here would run code outside every jail.
                return Err(io::Error::other(format!(
                    "`{shown}` is git's directory, which no step may change unless its mount names it"
                )));
            }
            if kind.is_dir() {
                if self.initial.get(&path) != Some(&Entry::Dir) {
                    self.ops.push(Op::MakeDir(path.clone()));
                }
                self.seen.insert(path.clone());
                let sub = open_subdir(copy, Path::new(&name))?;
                self.tree(&sub, &path, changes)?;
            } else if kind.is_file() {
                self.seen.insert(path.clone());
                let (mut file, meta) = open_regular(copy, Path::new(&name), &shown)?;
                let sha256 = hash(&mut file, &shown, self.deadline)?;
                let mode = safe_mode(meta.permissions().mode());
                let now = Entry::File { sha256, mode };
                let before = self.initial.get(&path);
                if before == Some(&now) {
                    continue;
                }
                self.ops.push(Op::Write { path: path.clone(), sha256, mode, was_dir: before == Some(&Entry::Dir) });
                changes.written.push(shown);
            } else if kind.is_symlink() {
                changes.ignored_links.push(shown);
            } else {
                return Err(not_regular(&shown, kind));
            }
        }
        Ok(())
    }
}

/// `` `out/x` is a FIFO, not a regular file ``.
fn not_regular(shown: &str, kind: FileType) -> io::Error {
    let what = if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_symlink() {
        "a symlink"
    } else {
        "not a file"
    };
    io::Error::other(format!("`{shown}` is {what}, not a regular file"))
}

/// Opens `path` in `dir` for reading without following a symlink in its
/// last component and without blocking (a FIFO opens at once), and checks
/// on the open handle that it is a regular file.
fn open_regular(dir: &Dir, path: &Path, shown: &str) -> io::Result<(File, cap_std::fs::Metadata)> {
    let mut options = OpenOptions::new();
    options.read(true).custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY).bits());
    let file = match dir.open_with(path, &options) {
        Ok(file) => file,
        // A socket cannot be opened at all; a symlink is refused by O_NOFOLLOW.
        Err(e) => {
            return Err(match dir.symlink_metadata(path) {
                Ok(meta) if !meta.is_file() => not_regular(shown, meta.file_type()),
                _ => io::Error::new(e.kind(), format!("cannot read `{shown}`: {e}")),
            })
        }
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(shown, meta.file_type()));
    }
    Ok((file, meta))
}

/// Stops with an error once `deadline` has passed.
fn past(deadline: Instant, at: &str) -> io::Result<()> {
    if Instant::now() > deadline {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the commit took longer than {} s (at `{at}`)", COMMIT_DEADLINE.as_secs()),
        ));
    }
    Ok(())
}

/// The sha256 of what is left to read in `file`, copying it to `sink`.
fn copy_hashing(file: &mut File, sink: &mut dyn Write, shown: &str, deadline: Instant) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 16];
    loop {
        past(deadline, shown)?;
        let n = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("cannot read `{shown}`: {e}"))),
        };
        hasher.update(&buffer[..n]);
        sink.write_all(&buffer[..n])?;
    }
    Ok(hasher.finalize().into())
}

fn hash(file: &mut File, shown: &str, deadline: Instant) -> io::Result<[u8; 32]> {
    copy_hashing(file, &mut io::sink(), shown, deadline)
}

/// A file a stage wrote, as the result cache keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// Workspace-relative path.
    pub path: String,
    /// The whole contents.
    pub bytes: Vec<u8>,
    /// Unix permission bits (at most [`MAX_MODE`]).
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
/// one of them is an error, never followed or waited on.
///
/// # Errors
/// The first file that cannot be read that way.
pub fn read_written(mounts: &[Mount], written: &[String]) -> io::Result<Vec<WrittenFile>> {
    let deadline = Instant::now() + COMMIT_DEADLINE;
    let mut files = Vec::new();
    for rel in written {
        let mount = mounts.iter().filter(|m| m.writable).find_map(|m| inside(m, rel).map(|i| (m, i)));
        let Some((mount, inner)) = mount else {
            return Err(io::Error::other(format!("`{rel}` is in none of the step's write mounts")));
        };
        let dir = open(&mount.host)?;
        let (mut file, meta) = open_regular(&dir, Path::new(inner), rel)?;
        let mut bytes = Vec::new();
        copy_hashing(&mut file, &mut bytes, rel, deadline)?;
        files.push(WrittenFile { path: rel.clone(), bytes, mode: safe_mode(meta.permissions().mode()) });
    }
    Ok(files)
}

/// Makes the workspace what a cached stage left it: stages the write mounts,
/// writes `files` and removes `removed` in the private copies, and commits
/// them like any stage's writes (each file whole, or not at all; modes at
/// most [`MAX_MODE`], whatever the cache entry says).
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
            create_dirs(&copy, parent)?;
        }
        copy.write(inner, &file.bytes)?;
        copy.set_permissions(inner, cap_std::fs::Permissions::from_mode(safe_mode(file.mode)))?;
    }
    staged.commit(scratch)
}

/// Whether `mount` is a `.git` or inside one: the explicit way to let a step
/// see or change git's files.
fn names_git(mount: &Mount) -> bool {
    crate::plan::mounts::names_git(Path::new(&mount.rel))
}

fn open(path: &Path) -> io::Result<Dir> {
    Dir::open_ambient_dir(path, ambient_authority())
}

/// Opens the directory `name` in `dir`, never through a symlink.
fn open_subdir(dir: &Dir, name: &Path) -> io::Result<Dir> {
    let mut options = OpenOptions::new();
    options.read(true).custom_flags((OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW).bits());
    Ok(Dir::from_std_file(dir.open_with(name, &options)?.into_std()))
}

/// Creates a write mount's host directory (and missing parents), each
/// `rwxr-xr-x` at most.
fn make_write_dir(host: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(MAX_MODE)
        .create(host)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create `{}`: {e}", host.display())))
}

/// Creates `path` in `dir` and any missing parents, each `rwxr-xr-x` at
/// most (the umask may take more away).
fn create_dirs(dir: &Dir, path: &Path) -> io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.mode(MAX_MODE);
    let mut so_far = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => so_far.push(name),
            Component::RootDir | Component::CurDir => continue,
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::other(format!("`{}` is not a plain path", path.display())))
            }
        }
        match dir.create_dir_with(&so_far, &builder) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.symlink_metadata(&so_far)?.is_dir() => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // A symlink to a directory (the workspace may hold one on
                // the way to a write mount): cap-std follows it only inside.
                if !dir.metadata(&so_far)?.is_dir() {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Copies `source` into `target`; at the workspace root (`is_root`) the run
/// directory is left out, and so is every `.git` unless the mount names one
/// (`keep_git`). Only regular files (opened without following or
/// blocking) and directories are copied; modes lose anything above
/// [`MAX_MODE`].
fn copy_tree(
    source: &Dir,
    target: &Dir,
    rel: &Path,
    initial: &mut BTreeMap<PathBuf, Entry>,
    is_root: bool,
    keep_git: bool,
) -> io::Result<()> {
    let far = Instant::now() + Duration::from_secs(24 * 3600);
    for entry in source.entries()? {
        let entry = entry?;
        let name = entry.file_name();
        if (is_root && rel.as_os_str().is_empty() && name == RUN_DIR) || (name == GIT_DIR && !keep_git) {
            continue;
        }
        let path = rel.join(&name);
        let kind = entry.file_type()?;
        if kind.is_dir() {
            target.create_dir(&name)?;
            initial.insert(path.clone(), Entry::Dir);
            let sub = open_subdir(source, Path::new(&name))?;
            copy_tree(&sub, &target.open_dir(&name)?, &path, initial, false, keep_git)?;
        } else if kind.is_file() {
            let shown = path.display().to_string();
            let Ok((mut file, meta)) = open_regular(source, Path::new(&name), &shown) else {
                // Swapped for something else since it was listed: not copied.
                continue;
            };
            let mode = safe_mode(meta.permissions().mode());
            let mut options = OpenOptions::new();
            options.write(true).create_new(true).mode(0o600);
            let mut copy = target.open_with(&name, &options)?;
            let sha256 = copy_hashing(&mut file, &mut copy, &shown, far)?;
            target.set_permissions(&name, cap_std::fs::Permissions::from_mode(mode))?;
            initial.insert(path, Entry::File { sha256, mode });
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
    /// Writes what is left in `source` with `mode` to `path` atomically,
    /// checking it is still what the first pass read (`sha256`).
    fn replace(
        &self,
        path: &Path,
        source: &mut File,
        shown: &str,
        sha256: [u8; 32],
        mode: u32,
        deadline: Instant,
    ) -> io::Result<()> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temporary = PathBuf::from(format!("commit-{}-{n}", std::process::id()));
        let write_to = |dir: &Dir, name: &Path, source: &mut File| -> io::Result<()> {
            let mut options = OpenOptions::new();
            options.write(true).create(true).truncate(true).mode(0o600);
            let mut file = dir.open_with(name, &options)?;
            let written = copy_hashing(source, &mut file, shown, deadline);
            match written {
                Ok(digest) if digest == sha256 => {}
                Ok(_) => {
                    let _ = dir.remove_file(name);
                    return Err(io::Error::other(format!("`{shown}` changed while it was committed")));
                }
                Err(e) => {
                    let _ = dir.remove_file(name);
                    return Err(e);
                }
            }
            dir.set_permissions(name, cap_std::fs::Permissions::from_mode(safe_mode(mode)))
        };
        write_to(self.scratch, &temporary, source)?;
        match self.scratch.rename(&temporary, self.workspace, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                let _ = self.scratch.remove_file(&temporary);
                let beside = temporary_name(path);
                source.rewind()?;
                write_to(self.workspace, &beside, source)?;
                self.workspace.rename(&beside, self.workspace, path)
            }
            Err(e) => {
                let _ = self.scratch.remove_file(&temporary);
                Err(e)
            }
        }
    }
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

    #[test]
    fn a_fifo_in_the_output_is_refused_before_anything_is_written() {
        let ws = tempfile::tempdir().unwrap();
        let out = ws.path().join("out");
        fs_err::create_dir_all(&out).unwrap();
        fs_err::write(out.join("a.txt"), "a").unwrap();
        let staged = stage(&[mount(&out, true)]).unwrap();
        let (copy, _) = staged.binds()[0].clone();
        fs_err::write(copy.join("a.txt"), "changed").unwrap();
        fs_err::write(copy.join("new.txt"), "new").unwrap();
        nix::unistd::mkfifo(&copy.join("zz-pipe"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let error = staged.commit(&ws.path().join(".cleanroom/tmp")).unwrap_err().to_string();
        assert!(error.contains("`out/zz-pipe` is a FIFO, not a regular file; nothing was committed"), "{error}");
        assert_eq!(fs_err::read_to_string(out.join("a.txt")).unwrap(), "a");
        assert!(!out.join("new.txt").exists());
    }

    #[test]
    fn modes_are_capped_on_stage_commit_and_replay() {
        use std::os::unix::fs::PermissionsExt as _;
        let ws = tempfile::tempdir().unwrap();
        let out = ws.path().join("out");
        fs_err::create_dir_all(&out).unwrap();
        fs_err::write(out.join("old-suid"), "x").unwrap();
        fs_err::set_permissions(out.join("old-suid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        let staged = stage(&[mount(&out, true)]).unwrap();
        let (copy, _) = staged.binds()[0].clone();
        let mode_of = |p: &Path| fs_err::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode_of(&copy.join("old-suid")), 0o755, "the staged copy carries no setuid bit");
        for (name, mode) in [("suid", 0o6755), ("sticky", 0o1777), ("open", 0o666)] {
            fs_err::write(copy.join(name), name).unwrap();
            fs_err::set_permissions(copy.join(name), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        fs_err::create_dir(copy.join("d")).unwrap();
        fs_err::write(copy.join("d/f"), "f").unwrap();
        staged.commit(&ws.path().join(".cleanroom/tmp")).unwrap();
        assert_eq!(mode_of(&out.join("suid")), 0o755);
        assert_eq!(mode_of(&out.join("sticky")), 0o755);
        assert_eq!(mode_of(&out.join("open")), 0o644);
        assert_eq!(mode_of(&out.join("d")) & !0o755, 0);
        let read = read_written(&[mount(&out, true)], &["out/suid".to_string()]).unwrap();
        assert_eq!(read[0].mode, 0o755, "the cache never stores a setuid mode");
        let poisoned = [WrittenFile { path: "out/replayed".into(), bytes: b"r".to_vec(), mode: 0o7777 }];
        replay(&[mount(&out, true)], &poisoned, &[], &ws.path().join(".cleanroom/tmp")).unwrap();
        assert_eq!(mode_of(&out.join("replayed")), 0o755);
    }

    #[test]
    fn a_root_mount_never_commits_into_the_run_directory() {
        let ws = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(ws.path().join(".cleanroom/runs")).unwrap();
        fs_err::write(ws.path().join("a.txt"), "a").unwrap();
        let root = Mount { rel: ".".into(), ..mount(ws.path(), true) };
        // The empty mount point the jail shadows is accepted.
        let staged = stage(std::slice::from_ref(&root)).unwrap();
        let (copy, _) = staged.binds()[0].clone();
        fs_err::create_dir(copy.join(RUN_DIR)).unwrap();
        fs_err::write(copy.join("a.txt"), "b").unwrap();
        assert_eq!(staged.commit(&ws.path().join(".cleanroom/tmp")).unwrap().written, ["a.txt"]);
        // Anything in it is refused, and nothing else is committed.
        let staged = stage(std::slice::from_ref(&root)).unwrap();
        let (copy, _) = staged.binds()[0].clone();
        fs_err::create_dir_all(copy.join(".cleanroom/runs")).unwrap();
        fs_err::write(copy.join(".cleanroom/runs/evil"), "evil").unwrap();
        fs_err::write(copy.join("a.txt"), "c").unwrap();
        let error = staged.commit(&ws.path().join(".cleanroom/tmp")).unwrap_err().to_string();
        assert!(error.contains("run directory") && error.contains("nothing was committed"), "{error}");
        assert!(!ws.path().join(".cleanroom/runs/evil").exists());
        assert_eq!(fs_err::read_to_string(ws.path().join("a.txt")).unwrap(), "b");
        // A mount that is (or links into) the run directory is refused too.
        let inside = Mount { rel: ".cleanroom/runs".into(), ..mount(&ws.path().join(".cleanroom/runs"), true) };
        let staged = stage(std::slice::from_ref(&inside)).unwrap();
        fs_err::write(staged.binds()[0].0.join("evil"), "evil").unwrap();
        assert!(staged.commit(&ws.path().join(".cleanroom/tmp")).is_err());
        assert!(!ws.path().join(".cleanroom/runs/evil").exists());
    }

    #[test]
    fn a_write_mount_neither_stages_nor_commits_git_unless_it_names_it() {
        let ws = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(ws.path().join(".git/hooks")).unwrap();
        fs_err::create_dir_all(ws.path().join("sub")).unwrap();
        fs_err::write(ws.path().join(".git/config"), "[core]").unwrap();
        let root = Mount { rel: ".".into(), ..mount(ws.path(), true) };
        let staged = stage(std::slice::from_ref(&root)).unwrap();
        let (copy, _) = staged.binds()[0].clone();
        assert!(!copy.join(".git").exists(), "the stage never sees git's directory");
        // Writing it back is refused, at the root and deeper (a nested repository).
        for planted in [".git/hooks/pre-commit", "sub/.git/hooks/pre-commit"] {
            let staged = stage(std::slice::from_ref(&root)).unwrap();
            let (copy, _) = staged.binds()[0].clone();
            fs_err::create_dir_all(copy.join(planted).parent().unwrap()).unwrap();
            fs_err::write(copy.join(planted), "#!/bin/sh\ncurl evil").unwrap();
            fs_err::write(copy.join("ok.txt"), "ok").unwrap();
            let error = staged.commit(&ws.path().join(".cleanroom/tmp")).unwrap_err().to_string();
            assert!(error.contains("git's directory") && error.contains("nothing was committed"), "{error}");
            assert!(!ws.path().join(planted).exists() && !ws.path().join("ok.txt").exists());
        }
        assert_eq!(fs_err::read_to_string(ws.path().join(".git/config")).unwrap(), "[core]", "untouched");
        // A mount naming it may change it.
        let git = Mount { rel: ".git".into(), ..mount(&ws.path().join(".git"), true) };
        let staged = stage(std::slice::from_ref(&git)).unwrap();
        fs_err::write(staged.binds()[0].0.join("description"), "named").unwrap();
        assert_eq!(staged.commit(&ws.path().join(".cleanroom/tmp")).unwrap().written, [".git/description"]);
    }
}
