//! Toolchains, plan half: `toolchain = "rust" | "python" | "node"` on a
//! `run` step grants what that language's tools need, sets their
//! variables, and names the toolchain for cache keys, so a pipeline needs
//! no hand plumbing (`CARGO_HOME` overrides, `sh -c` for `$TMPDIR`, a
//! venv's base interpreter in `tools`).
//!
//! Each toolchain is found the way its own tools find it, once, when the
//! plan is made (it runs the host's `rustc`, `python` or `node` once for
//! its version), and becomes plain data on the grant:
//!
//! - **rust**: the toolchain `rustc --print sysroot` names in the workspace
//!   (so `rust-toolchain.toml` is honoured; rustup's proxies are not
//!   needed in the jail), read-only, first on `PATH`; `CARGO_HOME`'s
//!   registry and git caches read-only, for offline builds;
//!   `CARGO_HOME`, and `CARGO_NET_OFFLINE=true` unless the step has the
//!   network. The key: `rustc -vV` and the digests of `rustc` and `cargo`.
//! - **python**: the virtualenv (`$VIRTUAL_ENV`, else the workspace's
//!   `.venv` or `venv`), and the installation its interpreter is based on,
//!   read-only; `VIRTUAL_ENV`, its `bin` first on `PATH`,
//!   `PYTHONDONTWRITEBYTECODE=1`. Without a virtualenv, the `python3` on
//!   the runner's `PATH`. The key: the version, the interpreter's digest
//!   and the installed distributions.
//! - **node**: the `node` on the runner's `PATH` and its installation,
//!   read-only; the workspace's `node_modules/.bin` first on `PATH`. The
//!   key: `node --version` and the binary's digest.
//!
//! The toolchain's paths are the step's `tools` like any other (the barrier,
//! the jail and credential hiding treat them alike), but the cache key
//! names the toolchain by its version and binaries' digests instead of
//! walking its files ([`Toolchain::binaries`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::diag::Code;
use crate::plan::command::Refusal;

/// The toolchain a step asked for, found on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Toolchain {
    /// `rust`, `python` or `node`.
    pub name: String,
    /// What its tools say of their version (`rustc -vV`, ...).
    pub version: String,
    /// Host paths the step may read and execute (added to its `tools`).
    pub paths: Vec<PathBuf>,
    /// The binaries whose digests stand for the toolchain in cache keys.
    pub binaries: Vec<PathBuf>,
    /// Variables it sets (the step's own `env` wins).
    pub env: BTreeMap<String, String>,
    /// Directories to put first on `PATH`, in order.
    pub path_first: Vec<PathBuf>,
    /// Host directories the jail covers with an empty one, because the
    /// tools would look there first and find what they may not run: cargo
    /// runs `$CARGO_HOME/bin/cargo-clippy` (a rustup proxy) before the
    /// toolchain's own on `PATH`.
    #[serde(default)]
    pub shadowed: Vec<PathBuf>,
}

/// The toolchain names, for messages.
pub const NAMES: &[&str] = &["rust", "python", "node"];

/// Finds toolchain `name` for a step in `workspace`; `network` is whether
/// the step may use the network.
///
/// # Errors
/// `CR017` for an unknown name; `CR018` when the toolchain is not installed
/// here, saying what to install.
pub fn resolve(name: &str, workspace: &Path, home: Option<&Path>, network: bool) -> Result<Toolchain, Refusal> {
    match name {
        "rust" => rust(workspace, home, network),
        "python" => python(workspace),
        "node" => node(workspace),
        other => Err((
            Code::CR017,
            format!("`toolchain = \"{other}\"` is not a toolchain Cleanroom knows"),
            format!(
                "write one of {}, or grant the program's directories with `tools` and set `env` yourself",
                NAMES.join(", ")
            ),
        )),
    }
}

/// Runs `program args` in `dir` with the runner's environment; its trimmed
/// stdout, or why not.
fn ask(program: &Path, args: &[&str], dir: &Path) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", program.display()))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "`{} {}` failed: {}",
            program.display(),
            args.join(" "),
            said.lines().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// `name` on the runner's `PATH`, as found there (a rustup proxy must
/// keep its name to know what it stands for).
fn on_runner_path(name: &str) -> Option<PathBuf> {
    crate::plan::command::search(name, &std::env::var("PATH").ok()?)
}

fn missing(toolchain: &str, what: String, install: &str) -> Refusal {
    (Code::CR018, format!("`toolchain = \"{toolchain}\"`: {what}"), install.to_string())
}

fn rust(workspace: &Path, home: Option<&Path>, network: bool) -> Result<Toolchain, Refusal> {
    let install = "install Rust with rustup (https://rustup.rs), or run the step without `toolchain`";
    let rustc = on_runner_path("rustc")
        .ok_or_else(|| missing("rust", "`rustc` is not on the runner's PATH".into(), install))?;
    let sysroot = ask(&rustc, &["--print", "sysroot"], workspace).map_err(|e| missing("rust", e, install))?;
    let sysroot = fs_err::canonicalize(&sysroot)
        .map_err(|e| missing("rust", format!("its sysroot `{sysroot}` cannot be read: {e}"), install))?;
    let bin = sysroot.join("bin");
    let version = ask(&bin.join("rustc"), &["-vV"], workspace).map_err(|e| missing("rust", e, install))?;
    let cargo_home = std::env::var_os("CARGO_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home.map(|h| h.join(".cargo")))
        .ok_or_else(|| missing("rust", "neither CARGO_HOME nor HOME is set".into(), "set HOME"))?;
    let mut paths = vec![sysroot.clone()];
    // The caches an offline build reads, and cargo's own configuration;
    // never `credentials.toml` or `bin` (other installed programs).
    for cached in ["registry", "git", "config.toml", "config"] {
        let path = cargo_home.join(cached);
        if let Ok(path) = fs_err::canonicalize(&path) {
            paths.push(path);
        }
    }
    let mut env = BTreeMap::from([("CARGO_HOME".to_string(), cargo_home.display().to_string())]);
    env.insert("RUSTC".into(), bin.join("rustc").display().to_string());
    if !network {
        env.insert("CARGO_NET_OFFLINE".into(), "true".into());
    }
    let binaries: Vec<PathBuf> = ["rustc", "cargo"].iter().map(|b| bin.join(b)).filter(|b| b.is_file()).collect();
    let shadowed = fs_err::canonicalize(cargo_home.join("bin")).into_iter().collect();
    Ok(Toolchain { name: "rust".into(), version, paths, binaries, env, path_first: vec![bin], shadowed })
}

/// The virtualenv a step in `workspace` uses, if any.
fn virtualenv(workspace: &Path) -> Option<PathBuf> {
    let from_env = std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty()).map(PathBuf::from);
    from_env
        .into_iter()
        .chain([workspace.join(".venv"), workspace.join("venv")])
        .find(|dir| dir.join("pyvenv.cfg").is_file())
        .and_then(|dir| fs_err::canonicalize(dir).ok())
}

fn python(workspace: &Path) -> Result<Toolchain, Refusal> {
    let install = "create a virtualenv in the workspace (`python3 -m venv .venv`), or install python3";
    let venv = virtualenv(workspace);
    let interpreter = match &venv {
        Some(venv) => venv.join("bin/python"),
        None => on_runner_path("python3")
            .ok_or_else(|| missing("python", "no virtualenv and no `python3` on the runner's PATH".into(), install))?,
    };
    // One question answers where everything is: the interpreter itself
    // knows its base installation, whatever a shim or symlink says.
    const SCRIPT: &str =
        "import sys; print(sys.base_prefix); print(sys.prefix); print(sys.executable); print(sys.version)";
    let said = ask(&interpreter, &["-c", SCRIPT], workspace).map_err(|e| missing("python", e, install))?;
    let mut lines = said.lines();
    let (Some(base), Some(prefix), Some(executable), version) =
        (lines.next(), lines.next(), lines.next(), lines.collect::<Vec<_>>().join(" "))
    else {
        return Err(missing("python", format!("`{}` did not say where it lives", interpreter.display()), install));
    };
    let mut paths = Vec::new();
    for dir in [base, prefix] {
        if let Ok(dir) = fs_err::canonicalize(dir) {
            if !paths.contains(&dir) {
                paths.push(dir);
            }
        }
    }
    let executable = fs_err::canonicalize(executable).unwrap_or_else(|_| PathBuf::from(executable));
    let mut env = BTreeMap::from([("PYTHONDONTWRITEBYTECODE".to_string(), "1".to_string())]);
    let mut path_first = Vec::new();
    let mut version = format!("python {version}");
    if let Some(venv) = &venv {
        env.insert("VIRTUAL_ENV".into(), venv.display().to_string());
        path_first.push(venv.join("bin"));
        version.push_str(&format!("\ndistributions: {}", distributions(venv).join(" ")));
    }
    Ok(Toolchain {
        name: "python".into(),
        version,
        paths,
        binaries: vec![executable],
        env,
        path_first,
        shadowed: Vec::new(),
    })
}

/// The `NAME-VERSION.dist-info` directories of a virtualenv: what is installed.
fn distributions(venv: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for lib in ["lib", "lib64"] {
        let Ok(pythons) = fs_err::read_dir(venv.join(lib)) else { continue };
        for python in pythons.flatten() {
            let Ok(entries) = fs_err::read_dir(python.path().join("site-packages")) else { continue };
            found.extend(
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".dist-info")),
            );
        }
    }
    found.sort();
    found.dedup();
    found
}

fn node(workspace: &Path) -> Result<Toolchain, Refusal> {
    let install = "install Node.js (its `node` must be on the runner's PATH)";
    let node = on_runner_path("node")
        .and_then(|p| fs_err::canonicalize(p).ok())
        .ok_or_else(|| missing("node", "`node` is not on the runner's PATH".into(), install))?;
    let version = ask(&node, &["--version"], workspace).map_err(|e| missing("node", e, install))?;
    let bin = node.parent().unwrap_or(Path::new("/")).to_path_buf();
    // `/usr/bin/node`'s installation is the system's (readable anyway);
    // a private one (`~/.nvm/versions/node/v22/bin/node`) is its prefix.
    let prefix = bin.parent().filter(|p| *p != Path::new("/usr") && *p != Path::new("/")).map(Path::to_path_buf);
    let mut path_first = vec![workspace.join("node_modules/.bin")];
    path_first.push(bin);
    Ok(Toolchain {
        name: "node".into(),
        version: format!("node {version}"),
        paths: prefix.into_iter().collect(),
        binaries: vec![node],
        env: BTreeMap::from([("NODE_ENV".to_string(), "test".to_string())]),
        path_first,
        shadowed: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_toolchain_names_the_known_ones() {
        let (code, message, hint) = resolve("cobol", Path::new("/"), None, false).unwrap_err();
        assert_eq!(code, Code::CR017);
        assert!(message.contains("cobol") && hint.contains("rust, python, node"), "{message} {hint}");
    }

    #[test]
    fn rust_is_found_through_its_sysroot_when_installed() {
        let Some(_) = on_runner_path("rustc") else { return };
        let ws = tempfile::tempdir().unwrap();
        let rust = resolve("rust", ws.path(), std::env::var_os("HOME").map(PathBuf::from).as_deref(), false).unwrap();
        assert!(rust.version.contains("rustc "), "{}", rust.version);
        assert!(rust.path_first[0].join("cargo").is_file());
        assert_eq!(rust.env["CARGO_NET_OFFLINE"], "true");
        assert!(rust.paths.iter().all(|p| !p.ends_with("credentials.toml") && !p.ends_with("bin")));
    }
}
