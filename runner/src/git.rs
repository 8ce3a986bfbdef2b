//! Git, the host half of running on some files: which files are staged or
//! changed between two refs (`run --staged`, `--from-ref`), and the hooks
//! `cleanroom install` writes.
//!
//! The runner asks the `git` on its `PATH`, in the workspace, with the
//! caller's environment (so a hook's `GIT_INDEX_FILE`, as in `git commit -a`,
//! is honoured) and with `core.fsmonitor` off, so asking never runs a
//! program the repository's configuration names. Paths come back
//! NUL-separated and workspace-relative (`--relative`), deleted files left
//! out. Steps never see `.git` ([`crate::manifest::GIT_DIR`]); only the
//! runner reads it, here.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::diag::{Code, Diagnostic, Diagnostics};

/// Which files a run is about, as the command line said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSelection {
    /// `--files F...`: as given (relative to the current directory).
    Files(Vec<String>),
    /// `--staged`: what the next commit would contain.
    Staged,
    /// `--from-ref A [--to-ref B]`: what changed between A's and B's
    /// common ancestor and B (`git diff A...B`); B defaults to `HEAD`.
    Changed {
        /// The older end.
        from: String,
        /// The newer end.
        to: String,
    },
}

impl FileSelection {
    /// The selected files, workspace-relative.
    ///
    /// # Errors
    /// `CR035` when git cannot answer (not a repository, an unknown ref,
    /// no `git`).
    pub fn files(&self, workspace: &Path) -> Result<Vec<String>, Diagnostics> {
        match self {
            FileSelection::Files(paths) => {
                let cwd = std::env::current_dir().unwrap_or_else(|_| workspace.to_path_buf());
                Ok(crate::plan::files::relative_to_workspace(paths, &cwd, workspace))
            }
            FileSelection::Staged => names(workspace, &["diff", "--cached"]),
            FileSelection::Changed { from, to } => {
                for name in [from, to] {
                    if name.starts_with('-') {
                        return Err(Diagnostic::new(Code::CR035, format!("`{name}` is not a git ref"))
                            .hint("name a commit, branch or tag, e.g. `--from-ref origin/main`")
                            .into());
                    }
                }
                names(workspace, &["diff", &format!("{from}...{to}")])
            }
        }
    }
}

/// Runs `git ARGS` in `dir`; its stdout.
fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "core.fsmonitor=false", "-c", "core.quotePath=false"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        let said = said.lines().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim().to_string();
        return Err(format!("`git {}` failed: {said}", args.join(" ")));
    }
    Ok(output.stdout)
}

/// The files `git DIFF_ARGS --name-only` lists, workspace-relative.
fn names(workspace: &Path, diff_args: &[&str]) -> Result<Vec<String>, Diagnostics> {
    let mut args = diff_args.to_vec();
    args.extend(["--name-only", "-z", "--no-renames", "--diff-filter=d", "--relative", "--"]);
    let stdout = git(workspace, &args).map_err(|reason| {
        Diagnostics::from(Diagnostic::new(Code::CR035, format!("cannot tell which files to run on: {reason}")).hint(
            "run inside a git repository, check the ref names (`git log --oneline`), or name the files with `--files`",
        ))
    })?;
    Ok(stdout
        .split(|&b| b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect())
}

/// Those of `files` (workspace-relative) that also have changes not
/// staged: a hook checks the working tree, so these are checked as they
/// are there, not as they will be committed.
pub fn unstaged_among(workspace: &Path, files: &[String]) -> Vec<String> {
    let Ok(changed) = names(workspace, &["diff"]) else { return Vec::new() };
    files.iter().filter(|f| changed.contains(f)).cloned().collect()
}

/// The hooks `cleanroom install` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Hook {
    /// Before each commit: the pipeline on the staged files.
    PreCommit,
    /// Before each push: the pipeline on what the push sends.
    PrePush,
}

impl Hook {
    /// The hook's file name.
    pub fn name(self) -> &'static str {
        match self {
            Hook::PreCommit => "pre-commit",
            Hook::PrePush => "pre-push",
        }
    }
}

/// The line that marks a hook as Cleanroom's.
const MARK: &str = "# cleanroom-hook: written by `cleanroom install`";

/// Where `hook` lives for the repository holding `dir` (honouring
/// `core.hooksPath` and worktrees), and the repository's top directory.
fn hook_path(dir: &Path, hook: Hook) -> Result<(PathBuf, PathBuf), String> {
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).trim().to_string();
    let top = PathBuf::from(text(git(dir, &["rev-parse", "--show-toplevel"])?));
    let path = PathBuf::from(text(git(dir, &["rev-parse", "--git-path", &format!("hooks/{}", hook.name())])?));
    Ok((top.clone(), if path.is_absolute() { path } else { dir.join(path) }))
}

/// The hook script: runs `cleanroom` (the binary installing it, else the
/// one on `PATH`) on `pipeline` (relative to the repository's top, where
/// git runs hooks), after a hook it replaced (kept as `NAME.legacy`).
fn script(hook: Hook, pipeline: &str, exe: &Path) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let (exe, pipeline) = (quote(&exe.display().to_string()), quote(pipeline));
    let head = format!(
        "#!/bin/sh\n{MARK}\n# Runs the Cleanroom pipeline before git goes on; `git {} --no-verify` skips it once,\n\
         # `cleanroom install --uninstall` removes it.\n\
         [ -n \"${{CLEANROOM:-}}\" ] || CLEANROOM={exe}\n\
         [ -x \"$CLEANROOM\" ] || CLEANROOM=\"$(command -v cleanroom)\" || {{\n\
         \x20   echo 'cleanroom: not found (set CLEANROOM or put it on PATH)' >&2; exit 1; }}\n\
         PIPELINE={pipeline}\n\
         legacy=\"$0.legacy\"\n",
        if hook == Hook::PreCommit { "commit" } else { "push" }
    );
    let body = match hook {
        Hook::PreCommit => "if [ -x \"$legacy\" ]; then \"$legacy\" \"$@\" || exit $?; fi\n\
             exec \"$CLEANROOM\" run --staged \"$PIPELINE\"\n"
            .to_string(),
        Hook::PrePush => "input=$(cat)\n\
             if [ -x \"$legacy\" ]; then printf '%s\\n' \"$input\" | \"$legacy\" \"$@\" || exit $?; fi\n\
             status=0\n\
             printf '%s\\n' \"$input\" | {\n\
             while read -r local_ref local_sha remote_ref remote_sha; do\n\
             \x20   [ -n \"$local_sha\" ] || continue\n\
             \x20   case \"$local_sha\" in *[!0]*) ;; *) continue ;; esac  # a deletion sends nothing\n\
             \x20   case \"$remote_sha\" in\n\
             \x20       *[!0]*) \"$CLEANROOM\" run --from-ref \"$remote_sha\" --to-ref \"$local_sha\" \"$PIPELINE\" </dev/null || status=1 ;;\n\
             \x20       *) \"$CLEANROOM\" run \"$PIPELINE\" </dev/null || status=1 ;;  # a new branch: everything\n\
             \x20   esac\n\
             done\n\
             exit $status\n\
             }\n"
            .to_string(),
    };
    head + &body
}

/// What `install` did to one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The hook file.
    pub path: PathBuf,
    /// A hook that was there before and now runs first, if any.
    pub kept: Option<PathBuf>,
}

fn install_error(message: String, hint: &str) -> Diagnostics {
    Diagnostic::new(Code::CR035, message).hint(hint).into()
}

/// Writes `hook` for the repository holding `pipeline`'s directory, running
/// `exe` on it. A hook Cleanroom wrote is replaced; another one is refused
/// unless `force`, which keeps it as `NAME.legacy` and runs it first.
///
/// # Errors
/// `CR035` when the directory is not in a git repository, or a hook exists
/// (without `force`) or cannot be written.
pub fn install(pipeline: &Path, hook: Hook, exe: &Path, force: bool) -> Result<Installed, Diagnostics> {
    let pipeline = fs_err::canonicalize(pipeline).map_err(|e| {
        install_error(format!("cannot read `{}`: {e}", pipeline.display()), "run `cleanroom init` first")
    })?;
    let dir = pipeline.parent().unwrap_or(Path::new("/")).to_path_buf();
    let (top, path) = hook_path(&dir, hook)
        .map_err(|reason| install_error(reason, "run `git init` first: hooks belong to a git repository"))?;
    let top = fs_err::canonicalize(&top).unwrap_or(top);
    let rel = pipeline.strip_prefix(&top).map_or_else(|_| pipeline.display().to_string(), |r| r.display().to_string());
    let mut kept = None;
    let ours = match fs_err::read_to_string(&path) {
        Ok(existing) => existing.contains(MARK),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    };
    if !ours {
        if !force {
            return Err(install_error(
                format!("`{}` exists and is not Cleanroom's", path.display()),
                "rerun with --force to keep it as a `.legacy` hook that runs first, or remove it",
            ));
        }
        let legacy = path.with_file_name(format!("{}.legacy", hook.name()));
        fs_err::rename(&path, &legacy).map_err(|e| install_error(e.to_string(), "check the hooks directory"))?;
        kept = Some(legacy);
    }
    crate::authoring::write_file(&path, script(hook, &rel, exe).as_bytes(), true)?;
    Ok(Installed { path, kept })
}

/// Removes `hook` if Cleanroom wrote it, putting back the hook it kept;
/// the hook file when one was removed.
///
/// # Errors
/// `CR035` when the directory is not in a git repository or the hook
/// cannot be removed.
pub fn uninstall(dir: &Path, hook: Hook) -> Result<Option<PathBuf>, Diagnostics> {
    let (_, path) = hook_path(dir, hook).map_err(|reason| install_error(reason, "run it inside the repository"))?;
    match fs_err::read_to_string(&path) {
        Ok(text) if text.contains(MARK) => {
            fs_err::remove_file(&path).map_err(|e| install_error(e.to_string(), "remove it by hand"))?;
            let legacy = path.with_file_name(format!("{}.legacy", hook.name()));
            if legacy.exists() {
                fs_err::rename(&legacy, &path).map_err(|e| install_error(e.to_string(), "rename it by hand"))?;
            }
            Ok(Some(path))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_scripts_quote_paths_and_are_marked() {
        let text = script(Hook::PreCommit, "it's/cleanroom.toml", Path::new("/opt/clean room/cleanroom"));
        assert!(text.starts_with("#!/bin/sh\n") && text.contains(MARK));
        assert!(text.contains(r"PIPELINE='it'\''s/cleanroom.toml'"), "{text}");
        assert!(text.contains("'/opt/clean room/cleanroom'"));
        assert!(text.contains("run --staged"));
        assert!(script(Hook::PrePush, "cleanroom.toml", Path::new("/x")).contains("--from-ref"));
    }
}
