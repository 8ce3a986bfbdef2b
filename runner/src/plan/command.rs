//! Native command steps (`run = [...]`): the program, its tools, its environment.
//!
//! A command's environment is built here, completely: the step's `env`
//! table, plus `PATH` (the `bin` directories of its `tools`, then
//! [`DEFAULT_PATH`]) and `HOME` (the runner's home directory path, so tools
//! find `~/.rustup` and the like when granted), unless the step sets them.
//! `TMPDIR` is added per run by the jail. Nothing else from the runner's
//! environment is passed on. Well-known credential files under granted
//! tools are hidden from the program ([`HIDDEN_CREDENTIALS`]).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::diag::Code;

/// The directories searched for programs after the `tools` bin directories.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Credential files and directories, relative to `$HOME`, that a native
/// step never sees through a granted `tools` path: granting `~/.cargo` for
/// `cargo` must not hand over the registry token in
/// `~/.cargo/credentials.toml`, nor `~/.config` the GitHub CLI's token.
/// Inside the jail each one that exists under a granted tools path (without
/// being a tools entry itself) is covered with an empty read-only stand-in
/// before Landlock applies; granting the path itself, e.g.
/// `tools = ["~/.ssh"]`, is the explicit way to hand one over.
pub const HIDDEN_CREDENTIALS: &[&str] = &[
    ".cargo/credentials",
    ".cargo/credentials.toml",
    ".ssh",
    ".aws",
    ".docker/config.json",
    ".netrc",
    ".config/gh",
    ".npmrc",
    ".pypirc",
];

/// A refusal: code, message, hint.
pub type Refusal = (Code, String, String);

/// Expands and checks one `tools` entry: absolute, or `~/...` under the
/// runner's home directory, and existing.
///
/// # Errors
/// `CR007` for a relative path, `CR008` for a missing one.
pub fn tool_path(raw: &str, home: Option<&Path>) -> Result<PathBuf, Refusal> {
    let expanded = match (raw.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => home.join(rest),
        (Some(_), None) => {
            return Err((
                Code::CR008,
                format!("tool path `{raw}` uses `~`, but HOME is not set"),
                "write an absolute path".into(),
            ))
        }
        (None, _) if raw == "~" => {
            return Err((
                Code::CR007,
                "tool path `~` would grant the whole home directory".into(),
                "name the directories the program needs, e.g. `~/.rustup`".into(),
            ))
        }
        (None, _) => PathBuf::from(raw),
    };
    if !expanded.is_absolute() {
        return Err((
            Code::CR007,
            format!("tool path `{raw}` is relative: tools are host paths outside the workspace"),
            "write an absolute path or one starting with `~/`; workspace paths belong in `read`".into(),
        ));
    }
    match fs_err::canonicalize(&expanded) {
        // `~/`, `~/.`, `/` or `/root/..`: however it is spelt, a path that
        // holds the home directory grants all of it.
        Ok(path)
            if home.and_then(|h| fs_err::canonicalize(h).ok()).is_some_and(|h| h.starts_with(&path))
                || path == Path::new("/") =>
        {
            Err((
                Code::CR007,
                format!("tool path `{raw}` would grant the whole home directory (or more): it is {}", path.display()),
                "name the directories the program needs, e.g. `~/.rustup`".into(),
            ))
        }
        Ok(path) => Ok(path),
        Err(_) => Err((
            Code::CR008,
            format!("tool path `{raw}` does not exist on this machine ({})", expanded.display()),
            "install the tool, or remove it from `tools`".into(),
        )),
    }
}

/// The complete environment of a command step (without `TMPDIR`).
pub fn environment(
    tools: &[PathBuf],
    granted: &BTreeMap<String, String>,
    home: Option<&Path>,
) -> BTreeMap<String, String> {
    let mut path: Vec<String> = tools
        .iter()
        .filter_map(|tool| {
            if tool.file_name().is_some_and(|name| name == "bin") {
                Some(tool.clone())
            } else {
                Some(tool.join("bin")).filter(|bin| bin.is_dir())
            }
        })
        .map(|dir| dir.display().to_string())
        .collect();
    path.push(DEFAULT_PATH.to_string());
    let mut env = BTreeMap::new();
    env.insert("PATH".to_string(), path.join(":"));
    if let Some(home) = home {
        env.insert("HOME".to_string(), home.display().to_string());
    }
    env.extend(granted.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// Checks an environment variable name.
///
/// # Errors
/// A message when the name is empty or contains `=` or NUL.
pub fn check_env_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains(['=', '\0']) {
        Err(format!("`{name}` is not a valid environment variable name"))
    } else {
        Ok(())
    }
}

/// Finds the program `name` as the jail will: a path containing `/` is taken
/// as is (relative to the workspace), a bare name is searched in `path_var`.
///
/// # Errors
/// `CR018` naming the directories searched, with a hint when the runner's
/// own `PATH` has the program elsewhere.
pub fn find_program(name: &str, path_var: &str, workspace: &Path) -> Result<PathBuf, Refusal> {
    if name.is_empty() {
        return Err((
            Code::CR017,
            "`run` starts with an empty program name".into(),
            "write the program first, e.g. `run = [\"cargo\", \"test\"]`".into(),
        ));
    }
    if name.contains('/') {
        let path = workspace.join(name);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err((
                Code::CR018,
                format!("program `{name}` is not an executable file"),
                "check the path; it is relative to the workspace".into(),
            ))
        };
    }
    if let Some(found) = search(name, path_var) {
        return Ok(found);
    }
    let hint = match std::env::var("PATH").ok().and_then(|host_path| search(name, &host_path)) {
        Some(elsewhere) => format!(
            "on this machine it is {}: add `{}` to `tools`",
            elsewhere.display(),
            elsewhere.parent().map(|p| p.display().to_string()).unwrap_or_default()
        ),
        None => "install it, or add the directory that holds it to `tools`".to_string(),
    };
    Err((Code::CR018, format!("program `{name}` is not on the step's PATH ({path_var})"), hint))
}

fn search(name: &str, path_var: &str) -> Option<PathBuf> {
    path_var.split(':').filter(|dir| !dir.is_empty()).map(|dir| Path::new(dir).join(name)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    fs_err::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What `--dry-run` says of a native program's tools and environment
/// (variable names only).
pub fn describe(grant: &crate::plan::Grant) -> Vec<String> {
    let mut lines: Vec<String> = grant.tools().iter().map(|t| format!("tool: {}", t.display())).collect();
    if let Some(native) = grant.native().filter(|n| !n.env.is_empty()) {
        let names: Vec<&str> = native.env.keys().map(String::as_str).collect();
        lines.push(format!("env: {}", names.join(", ")));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_expand_home_and_must_be_absolute_and_exist() {
        let home = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(home.path().join(".tool/bin")).unwrap();
        let expanded = tool_path("~/.tool", Some(home.path())).unwrap();
        assert!(expanded.ends_with(".tool"));
        assert_eq!(tool_path("relative/dir", Some(home.path())).unwrap_err().0, Code::CR007);
        assert_eq!(tool_path("~/.missing", Some(home.path())).unwrap_err().0, Code::CR008);
        assert_eq!(tool_path("~", Some(home.path())).unwrap_err().0, Code::CR007);
    }

    #[test]
    fn no_spelling_of_the_home_directory_or_root_is_a_tool_path() {
        let home = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(home.path().join(".tool")).unwrap();
        let parent = home.path().parent().unwrap().display().to_string();
        for raw in ["~/", "~/.", "~/.tool/..", "/", parent.as_str()] {
            let refusal = tool_path(raw, Some(home.path())).unwrap_err();
            assert_eq!(refusal.0, Code::CR007, "{raw}");
            assert!(refusal.1.contains("whole home directory"), "{raw}: {}", refusal.1);
        }
    }

    #[test]
    fn path_lists_tool_bins_first_and_step_env_overrides() {
        let home = tempfile::tempdir().unwrap();
        let tool = home.path().join("t");
        fs_err::create_dir_all(tool.join("bin")).unwrap();
        let env = environment(std::slice::from_ref(&tool), &BTreeMap::new(), Some(home.path()));
        assert_eq!(env["PATH"], format!("{}:{DEFAULT_PATH}", tool.join("bin").display()));
        assert_eq!(env["HOME"], home.path().display().to_string());
        assert_eq!(env.len(), 2, "nothing else is passed on: {env:?}");
        let granted = BTreeMap::from([("PATH".to_string(), "/x".to_string())]);
        assert_eq!(environment(&[], &granted, None)["PATH"], "/x");
    }

    #[test]
    fn programs_are_found_on_the_jail_path_only() {
        let ws = tempfile::tempdir().unwrap();
        assert_eq!(find_program("sh", DEFAULT_PATH, ws.path()).unwrap().file_name().unwrap(), "sh");
        let (code, message, _) = find_program("no-such-program-here", "/nowhere", ws.path()).unwrap_err();
        assert_eq!(code, Code::CR018);
        assert!(message.contains("(/nowhere)"), "{message}");
    }
}
