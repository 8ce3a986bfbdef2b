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

/// Read+execute paths every program gets: the system's programs, libraries
/// and the few files of `/etc` that dynamic linking, users and time zones need.
pub const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/ssl/certs",
    "/etc/ca-certificates",
    "/dev/zero",
    "/dev/urandom",
    "/dev/random",
];

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

/// The complete environment of a command step (without `TMPDIR`): `PATH`
/// (a toolchain's directories, then the `tools` bin directories, then
/// [`DEFAULT_PATH`]), `HOME`, the toolchain's variables, then the step's
/// own `env`, which wins.
pub fn environment(
    tools: &[PathBuf],
    granted: &BTreeMap<String, String>,
    home: Option<&Path>,
    toolchain: Option<&super::toolchain::Toolchain>,
) -> BTreeMap<String, String> {
    let first = toolchain.iter().flat_map(|t| t.path_first.iter()).map(|dir| dir.display().to_string());
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
    path.splice(0..0, first);
    path.dedup();
    path.push(DEFAULT_PATH.to_string());
    let mut env = BTreeMap::new();
    env.insert("PATH".to_string(), path.join(":"));
    if let Some(home) = home {
        env.insert("HOME".to_string(), home.display().to_string());
    }
    if let Some(toolchain) = toolchain {
        env.extend(toolchain.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    env.extend(granted.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// `value` with `$NAME`, `${NAME}` replaced by `lookup(NAME)` and `$$` by
/// `$`: how a step's `env` values refer to `$TMPDIR`, `$HOME` and the
/// step's other variables (never the runner's own environment).
///
/// # Errors
/// The first name `lookup` does not know, or a `${` without its `}`.
pub fn expand(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced.find('}').ok_or_else(|| format!("`${{` without `}}` in `{value}`"))?;
            (&braced[..end], &braced[end + 1..])
        } else {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        if name.is_empty() {
            out.push('$');
            continue;
        }
        out.push_str(&lookup(name).ok_or_else(|| format!("`${name}` is not a variable of the step"))?);
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

/// Expands every value of `env` against `env` itself plus `TMPDIR`
/// (`tmpdir`), values referring to the others as written: what the jail
/// gives the program.
///
/// # Errors
/// As [`expand`], naming the variable.
pub fn expand_all(env: &BTreeMap<String, String>, tmpdir: &str) -> Result<BTreeMap<String, String>, String> {
    let lookup = |name: &str| match name {
        "TMPDIR" => Some(env.get("TMPDIR").cloned().unwrap_or_else(|| tmpdir.to_string())),
        _ => env.get(name).cloned(),
    };
    env.iter().map(|(k, v)| Ok((k.clone(), expand(v, &lookup).map_err(|e| format!("`env.{k}`: {e}"))?))).collect()
}

/// The interpreter a script's `#!` line names, when `program` is a script:
/// `(interpreter, via_env)`, where `via_env` is set for `#!/usr/bin/env NAME`
/// (the interpreter is then `NAME`, searched on the step's `PATH`).
fn interpreter(program: &Path) -> Option<(String, bool)> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = fs_err::File::open(program).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = String::from_utf8_lossy(line.split(|&b| b == b'\n').next()?).into_owned();
    let mut words = line.split_whitespace();
    let first = words.next()?.to_string();
    if Path::new(&first).file_name().is_some_and(|n| n == "env") {
        let name = words.find(|w| !w.starts_with('-'))?;
        return Some((name.to_string(), true));
    }
    Some((first, false))
}

/// Whether `path` is readable in the jail: under a system path or a tool.
fn readable_in_jail(path: &Path, tools: &[PathBuf]) -> bool {
    let path = fs_err::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    SYSTEM_READ.iter().map(Path::new).chain(tools.iter().map(PathBuf::as_path)).any(|root| path.starts_with(root))
}

/// Checks that the jail can run `program` (found on `path_var`): the program
/// itself, and a script's interpreter, must be readable there.
///
/// # Errors
/// `CR018` naming the program or interpreter and the `tools` entry to add.
pub fn check_runnable(program: &Path, path_var: &str, tools: &[PathBuf], workspace: &Path) -> Result<(), Refusal> {
    let add = |path: &Path| {
        let dir = path.parent().unwrap_or(path);
        let dir = if dir.ends_with("bin") { dir.parent().unwrap_or(dir) } else { dir };
        format!("add `tools = [\"{}\"]` to the step (or `toolchain = ...`)", dir.display())
    };
    if !program.starts_with(workspace) && !readable_in_jail(program, tools) {
        return Err((
            Code::CR018,
            format!("program `{}` is outside every path the jail lets the step read", program.display()),
            add(program),
        ));
    }
    let Some((interpreter, via_env)) = interpreter(program) else { return Ok(()) };
    let found = if via_env { search(&interpreter, path_var) } else { Some(PathBuf::from(&interpreter)) };
    let Some(found) = found.filter(|p| is_executable(p)) else {
        let elsewhere = std::env::var("PATH").ok().and_then(|host| search(&interpreter, &host));
        return Err((
            Code::CR018,
            format!("program `{}` is a script for `{interpreter}`, which the step cannot find", program.display()),
            match elsewhere {
                Some(host) => add(&host),
                None => format!("install `{interpreter}`, or add its directory to `tools`"),
            },
        ));
    };
    if !found.starts_with(workspace) && !readable_in_jail(&found, tools) {
        return Err((
            Code::CR018,
            format!(
                "program `{}` is a script for `{}`, which the jail does not let the step read",
                program.display(),
                found.display()
            ),
            add(&fs_err::canonicalize(&found).unwrap_or(found)),
        ));
    }
    Ok(())
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

/// The executable `name` in the first directory of `path_var` (a `PATH`
/// value) that has one.
pub(crate) fn search(name: &str, path_var: &str) -> Option<PathBuf> {
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
        let env = environment(std::slice::from_ref(&tool), &BTreeMap::new(), Some(home.path()), None);
        assert_eq!(env["PATH"], format!("{}:{DEFAULT_PATH}", tool.join("bin").display()));
        assert_eq!(env["HOME"], home.path().display().to_string());
        assert_eq!(env.len(), 2, "nothing else is passed on: {env:?}");
        let granted = BTreeMap::from([("PATH".to_string(), "/x".to_string())]);
        assert_eq!(environment(&[], &granted, None, None)["PATH"], "/x");
    }

    #[test]
    fn env_values_expand_the_steps_own_variables_only() {
        let env = BTreeMap::from([
            ("HOME".to_string(), "/home/u".to_string()),
            ("CACHE".to_string(), "$TMPDIR/cache".to_string()),
            ("CFG".to_string(), "${HOME}/cfg:$$5".to_string()),
        ]);
        let expanded = expand_all(&env, "/tmp/step").unwrap();
        assert_eq!(expanded["CACHE"], "/tmp/step/cache");
        assert_eq!(expanded["CFG"], "/home/u/cfg:$5");
        let runner_var = BTreeMap::from([("X".to_string(), "$PATH:$USER".to_string())]);
        assert!(expand_all(&runner_var, "/t").unwrap_err().contains("not a variable of the step"));
        let open = BTreeMap::from([("X".to_string(), "${HOME".to_string())]);
        assert!(expand_all(&open, "/t").is_err());
    }

    #[test]
    fn a_script_whose_interpreter_the_jail_cannot_read_names_the_tools_entry() {
        let ws = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let interp = outside.path().join("bin/mypython");
        fs_err::create_dir_all(interp.parent().unwrap()).unwrap();
        fs_err::write(&interp, "").unwrap();
        fs_err::set_permissions(&interp, std::fs::Permissions::from_mode(0o755)).unwrap();
        let script = ws.path().join("check.py");
        fs_err::write(&script, format!("#!{}\nprint(1)\n", interp.display())).unwrap();
        let (code, message, hint) = check_runnable(&script, DEFAULT_PATH, &[], ws.path()).unwrap_err();
        assert_eq!(code, Code::CR018);
        assert!(message.contains("mypython"), "{message}");
        assert!(hint.contains(&format!("tools = [\"{}\"]", outside.path().display())), "{hint}");
        let granted = [fs_err::canonicalize(outside.path()).unwrap()];
        assert!(check_runnable(&script, DEFAULT_PATH, &granted, ws.path()).is_ok());
        let via_env = ws.path().join("check2.py");
        fs_err::write(&via_env, "#!/usr/bin/env no-such-interpreter-here\n").unwrap();
        let (_, message, _) = check_runnable(&via_env, DEFAULT_PATH, &[], ws.path()).unwrap_err();
        assert!(message.contains("no-such-interpreter-here"), "{message}");
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
