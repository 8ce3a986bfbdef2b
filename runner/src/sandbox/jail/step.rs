//! A native step's jail, built from its grant: the sandbox half of running
//! a `run = [...]` step.
//!
//! [`StepJail::build`] turns a step's [`Grant`] into a [`JailSpec`] and the
//! host resources the jail uses while the program runs: a private temporary
//! directory (`TMPDIR`), read-only empty stand-ins mounted over what the
//! program must not see (the run directory `.cleanroom/` under a mount of
//! the workspace root, a repository's `.git` under a read mount, credential
//! files under a granted tool directory), a
//! pids cgroup, and mount points for `write` directories that do not exist
//! yet (removed again unless the writes are committed). The environment is
//! exactly the grant's, plus `TMPDIR`, a stage's attempt and feedback, and
//! the secrets it is granted. The executor never assembles any of this.

use std::path::{Path, PathBuf};

use super::cgroup::Cgroup;
use super::{Bind, JailSpec};
use crate::plan::mounts::RUN_DIR;
use crate::plan::Grant;

/// What a native step runs and where its writes go.
#[derive(Debug)]
pub struct NativeStep<'a> {
    /// The program (absolute) and its arguments.
    pub program: &'a Path,
    /// Its arguments.
    pub args: &'a [String],
    /// Everything it may touch.
    pub grant: &'a Grant,
    /// The canonical workspace: the working directory.
    pub workspace: &'a Path,
    /// `(staged copy, workspace path)` of each write mount.
    pub staged: Vec<(PathBuf, PathBuf)>,
    /// A stage's attempt and retry feedback; `None` for checks and evaluators.
    pub stage: Option<(u32, &'a [String])>,
    /// The run's secret values (only the granted ones are passed).
    pub secrets: &'a crate::secrets::Secrets,
    /// `--allow-unjailed`.
    pub allow_unjailed: bool,
    /// What the program reads on stdin (a subject's input); `None` for
    /// `/dev/null`.
    pub stdin: Option<&'a [u8]>,
    /// Its persistent build directories, mounted writable over their
    /// workspace paths ([`crate::sandbox::build_dirs`]).
    pub build_dirs: &'a [crate::sandbox::build_dirs::BuildDir],
}

/// A built jail: its spec and the host resources that must live while the
/// program runs.
pub struct StepJail {
    /// What the jail helper is told.
    pub spec: JailSpec,
    temp: tempfile::TempDir,
    _views: tempfile::TempDir,
    _pids: Option<Cgroup>,
    memory: Option<Cgroup>,
    /// `write` directories created as mount points, to remove unless the
    /// writes are committed.
    mount_points: Vec<PathBuf>,
    /// Its build directories' private host paths, which the write quota
    /// leaves out: they hold a compiler's output, routinely gigabytes, and
    /// the cache's size cap bounds them after the run.
    build_dirs: Vec<PathBuf>,
}

impl StepJail {
    /// Builds the jail for `step`.
    ///
    /// # Errors
    /// Why a host resource could not be made (the step is then an error
    /// that is not the work's doing), or why a memory cap the grant asks
    /// for cannot be enforced here.
    pub fn build(step: NativeStep<'_>) -> Result<StepJail, String> {
        let grant = step.grant;
        let memory = match grant.native().and_then(|n| n.memory) {
            Some(bytes) => Some(Cgroup::memory(bytes).map_err(|reason| {
                format!("its memory cap of {} cannot be enforced: {reason}", crate::manifest::ByteSize(bytes))
            })?),
            None => None,
        };
        let temp = crate::scratch::dir("tmp-").map_err(|e| format!("could not create its temporary directory: {e}"))?;
        let views = empty_views().map_err(|e| format!("could not prepare its view of the host: {e}"))?;
        // A bind mount needs a mount point: create missing write directories
        // for the run, and remove them again unless the writes are committed.
        let mut mount_points = Vec::new();
        for mount in grant.mounts.iter().filter(|m| m.writable && !m.exists) {
            if let Err(e) = fs_err::create_dir_all(&mount.host) {
                remove_dirs(&mount_points);
                return Err(format!("could not create `{}`: {e}", mount.rel));
            }
            mount_points.push(mount.host.clone());
        }
        let mut spec = match Self::assemble(&step, temp.path(), views.path()) {
            Ok(spec) => spec,
            Err(e) => {
                remove_dirs(&mount_points);
                return Err(e);
            }
        };
        if let Some(input) = step.stdin {
            // Beside the stand-ins: outside everything the program may read
            // or write; the helper opens it before it confines itself.
            let file = views.path().join("stdin");
            if let Err(e) = fs_err::write(&file, input) {
                remove_dirs(&mount_points);
                return Err(format!("could not write its stdin: {e}"));
            }
            spec.stdin = Some(file);
        }
        let pids = Cgroup::pids(grant.limits.pids);
        spec.cgroups = pids.iter().chain(&memory).map(Cgroup::procs_file).collect();
        let build_dirs = step.build_dirs.iter().map(|d| d.private.clone()).collect();
        Ok(StepJail { spec, temp, _views: views, _pids: pids, memory, mount_points, build_dirs })
    }

    fn assemble(step: &NativeStep<'_>, temp: &Path, views: &Path) -> Result<JailSpec, String> {
        let grant = step.grant;
        let native = grant.native().ok_or("a plugin's grant was given to the jail (internal error)")?;
        // `$TMPDIR`, `$HOME` and the step's other variables in its `env`
        // values, now that its temporary directory exists.
        let expanded = crate::plan::command::expand_all(&native.env, &temp.display().to_string())?;
        let mut env: Vec<(String, String)> = expanded.into_iter().collect();
        if !native.env.contains_key("TMPDIR") {
            env.push(("TMPDIR".into(), temp.display().to_string()));
        }
        if let Some((attempt, feedback)) = step.stage {
            env.push(("CLEANROOM_ATTEMPT".into(), attempt.to_string()));
            env.extend(feedback_env(feedback, temp).map_err(|e| format!("could not write its feedback file: {e}"))?);
        }
        for name in &grant.secret_env {
            let value =
                step.secrets.value(name).ok_or_else(|| format!("secret `{name}` was not read (internal error)"))?;
            env.push((name.clone(), value.to_string()));
        }
        // A mount of the workspace root must not show the run directory: an
        // empty read-only directory is mounted over it inside the jail. A
        // writable root mount is a staged copy, which gets an empty mount
        // point for it (the commit accepts nothing else there).
        let run_dir = step.workspace.join(RUN_DIR);
        let shadow = (grant.mounts.iter().any(|m| m.rel == ".") && run_dir.is_dir()).then(|| Bind {
            staged: views.join("dir"),
            target: run_dir,
            read_only: true,
        });
        let mut binds: Vec<Bind> = Vec::new();
        for (copy, target) in &step.staged {
            if shadow.is_some() && target == step.workspace {
                fs_err::create_dir(copy.join(RUN_DIR))
                    .map_err(|e| format!("could not prepare its view of the workspace: {e}"))?;
            }
            binds.push(Bind { staged: copy.clone(), target: target.clone(), read_only: false });
        }
        binds.extend(step.build_dirs.iter().map(|dir| Bind {
            staged: dir.private.clone(),
            target: dir.target.clone(),
            read_only: false,
        }));
        binds.extend(shadow);
        let reads = grant.mounts.iter().filter(|m| !m.writable).map(|m| m.host.clone());
        Ok(JailSpec {
            program: step.program.to_path_buf(),
            args: step.args.to_vec(),
            env,
            cwd: step.workspace.to_path_buf(),
            read: reads.chain(native.tools.iter().cloned()).collect(),
            write: grant
                .mounts
                .iter()
                .filter(|m| m.writable)
                .map(|m| m.host.clone())
                .chain(step.build_dirs.iter().map(|dir| dir.target.clone()))
                .chain([temp.to_path_buf()])
                .collect(),
            binds,
            network: native.network,
            allow_unjailed: step.allow_unjailed,
            max_file_size: grant.limits.max_write,
            cgroups: Vec::new(),
            stdin: None,
            relay: None,
            hide: hidden_credentials(&native.tools)
                .into_iter()
                .chain(git_dirs(&grant.mounts))
                .chain(native.toolchain.iter().flat_map(|t| t.shadowed.iter().cloned()))
                .collect(),
            empty: Some(views.to_path_buf()),
            // Chosen by `jail::run` for each run.
            nonce: String::new(),
        })
    }

    /// The program's private temporary directory (`TMPDIR`), alive as long
    /// as the jail: where it may leave a findings report.
    pub fn temp_dir(&self) -> &Path {
        self.temp.path()
    }

    /// Every directory the program may write, which the write quota sums:
    /// its staged copies and its temporary directory.
    pub fn quota_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> =
            self.spec.binds.iter().filter(|b| !b.read_only).map(|b| b.staged.clone()).collect();
        dirs.retain(|d| !self.build_dirs.contains(d));
        dirs.push(self.temp.path().to_path_buf());
        dirs
    }

    /// Whether the kernel killed the program (or one of its processes) for
    /// going past its memory cap.
    pub fn out_of_memory(&self) -> bool {
        self.memory.as_ref().is_some_and(Cgroup::oom_killed)
    }

    /// Removes the (empty) mount points made for missing write directories:
    /// call it unless the writes were committed.
    pub fn remove_mount_points(&self) {
        remove_dirs(&self.mount_points);
    }
}

fn remove_dirs(dirs: &[PathBuf]) {
    for dir in dirs.iter().rev() {
        let _ = fs_err::remove_dir(dir);
    }
}

/// The longest `CLEANROOM_FEEDBACK` value: the kernel refuses any one
/// environment string (`NAME=value` and its NUL) over 128 KiB
/// (`MAX_ARG_STRLEN`) with E2BIG; this leaves room for the name.
const FEEDBACK_ENV_MAX: usize = 128 * 1024 - 64;

/// `CLEANROOM_FEEDBACK` (the feedback lines, as many whole lines as fit in
/// [`FEEDBACK_ENV_MAX`]) and `CLEANROOM_FEEDBACK_FILE` (a file in the
/// step's temp dir holding all of them), so thousands of lines still reach
/// the stage and never stop it from starting.
fn feedback_env(feedback: &[String], temp: &Path) -> std::io::Result<Vec<(String, String)>> {
    let all = feedback.join("\n");
    let file = temp.join("cleanroom-feedback.txt");
    fs_err::write(&file, &all)?;
    let mut shown = String::new();
    for line in feedback {
        if shown.len() + line.len() + 1 > FEEDBACK_ENV_MAX {
            break;
        }
        if !shown.is_empty() {
            shown.push('\n');
        }
        shown.push_str(line);
    }
    Ok(vec![("CLEANROOM_FEEDBACK".into(), shown), ("CLEANROOM_FEEDBACK_FILE".into(), file.display().to_string())])
}

/// A private directory holding an empty file `file` and an empty directory
/// `dir`, read-only, for the jail to mount over what must look empty.
fn empty_views() -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let views = crate::scratch::dir("view-")?;
    fs_err::write(views.path().join("file"), "")?;
    fs_err::create_dir(views.path().join("dir"))?;
    fs_err::set_permissions(views.path().join("file"), std::fs::Permissions::from_mode(0o444))?;
    fs_err::set_permissions(views.path().join("dir"), std::fs::Permissions::from_mode(0o555))?;
    Ok(views)
}

/// The repository's `.git` directly under each read directory mount, which
/// the program does not see ([`crate::manifest::GIT_DIR`]); a write mount's
/// staged copy leaves it out already.
fn git_dirs(mounts: &[crate::plan::Mount]) -> Vec<PathBuf> {
    mounts
        .iter()
        .filter(|m| m.is_dir && !m.writable)
        .map(|m| m.host.join(crate::manifest::GIT_DIR))
        .filter(|git| fs_err::symlink_metadata(git).is_ok_and(|m| !m.is_symlink()))
        .collect()
}

/// The well-known credential files ([`crate::plan::command::HIDDEN_CREDENTIALS`],
/// under `$HOME`) that exist and lie inside a granted tools path without
/// being one: the jail covers them with an empty stand-in. Canonical paths,
/// so a link inside a tool directory hides what it points at.
fn hidden_credentials(tools: &[PathBuf]) -> Vec<PathBuf> {
    let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from) else {
        return Vec::new();
    };
    let mut hidden = Vec::new();
    for rel in crate::plan::command::HIDDEN_CREDENTIALS {
        let Ok(path) = fs_err::canonicalize(home.join(rel)) else { continue };
        let granted_itself = tools.contains(&path);
        let under_a_tool = tools.iter().any(|t| path.starts_with(t));
        if under_a_tool && !granted_itself && !hidden.contains(&path) {
            hidden.push(path);
        }
    }
    hidden
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_of_feedback_lines_fit_the_environment_and_the_file_has_them_all() {
        let temp = tempfile::tempdir().unwrap();
        let lines: Vec<String> =
            (0..5000).map(|i| format!("scenario s{i:04}: failed 1/1: the answer was not 42")).collect();
        let env = feedback_env(&lines, temp.path()).unwrap();
        let shown = &env.iter().find(|(k, _)| k == "CLEANROOM_FEEDBACK").unwrap().1;
        assert!(shown.len() <= FEEDBACK_ENV_MAX, "{} bytes would hit E2BIG", shown.len());
        assert!(shown.starts_with("scenario s0000:") && shown.lines().all(|l| l.ends_with("42")), "whole lines only");
        let file = &env.iter().find(|(k, _)| k == "CLEANROOM_FEEDBACK_FILE").unwrap().1;
        assert_eq!(fs_err::read_to_string(file).unwrap(), lines.join("\n"));
        let few = feedback_env(&lines[..2], temp.path()).unwrap();
        assert_eq!(few[0].1, lines[..2].join("\n"), "short feedback is passed whole");
    }
}
