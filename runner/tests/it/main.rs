//! Integration tests: the real `cleanroom` binary on real components built
//! from source (`scripts/build-plugins`), in throwaway workspaces.

mod agent;
mod bad_input;
mod cache;
mod cli;
mod factory;
mod governance;
mod http_server;
mod judge;
mod layout;
mod mock_llm;
mod native;
mod network;
mod oci;
mod polyglot;
mod results;
mod run;
mod services;
mod subjects;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A built component: first-party plugins by name (`forbid_pattern`), test
/// guests with a `guest:` prefix (`guest:noop`).
pub fn component(name: &str) -> String {
    let path = match name.strip_prefix("guest:") {
        Some(guest) => repo().join("sandbox-tests/dist").join(format!("{guest}.wasm")),
        None => repo().join("plugins/dist").join(format!("{name}.wasm")),
    };
    assert!(path.is_file(), "{} is missing: run scripts/build-plugins first", path.display());
    path.display().to_string()
}

/// What one run of the binary did.
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    fn from(output: Output) -> Ran {
        Ran {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Parses stdout as the JSON report.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", self.stdout))
    }
}

impl std::fmt::Debug for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// The cache directory of this test process: compiled plugins are shared by
/// its tests, and nothing cached by an earlier `cargo test` is seen. It is
/// scratch space of this process ([`cleanroom::scratch`]), so the first
/// runner started after this process ends removes it.
pub fn test_cache() -> PathBuf {
    static CACHE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| cleanroom::scratch::dir("it-cache-").expect("make the test cache")).path().to_path_buf()
}

/// Runs `cleanroom ARGS` in `cwd` with a clean environment plus `PATH`,
/// `HOME` (which `~/` in `tools` needs) and this process's cache directory.
pub fn cleanroom(cwd: &Path, args: &[&str]) -> Ran {
    cleanroom_with_env(cwd, args, &[])
}

/// As [`cleanroom`], with `extra` variables set as well.
pub fn cleanroom_with_env(cwd: &Path, args: &[&str], extra: &[(&str, &std::ffi::OsStr)]) -> Ran {
    let output = Command::new(env!("CARGO_BIN_EXE_cleanroom"))
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .env("CLEANROOM_CACHE_DIR", test_cache())
        .envs(extra.iter().copied())
        .output()
        .expect("run cleanroom");
    Ran::from(output)
}

/// A copy of the example workspace `pipelines/<name>/` with
/// `pipelines/<name>.toml` adapted to it as `pipeline.toml` (plugin paths
/// made absolute, generated directories left out, `edit` applied).
pub fn example_copy(name: &str, edit: impl Fn(String) -> String) -> Workspace {
    let ws = Workspace::new();
    let from = repo().join("pipelines").join(name);
    let status = Command::new("cp").arg("-r").arg(from.join(".")).arg(ws.path()).status().unwrap();
    assert!(status.success());
    for generated in ["work", "build", ".cleanroom"] {
        let _ = fs_err::remove_dir_all(ws.path().join(generated));
    }
    let toml = fs_err::read_to_string(repo().join("pipelines").join(format!("{name}.toml"))).unwrap();
    let dist = repo().join("plugins/dist").display().to_string();
    let toml = toml.replace(&format!("workspace = \"{name}\""), "").replace("../plugins/dist", &dist);
    ws.file("pipeline.toml", &edit(toml));
    ws
}

/// A throwaway workspace.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Default for Workspace {
    fn default() -> Self {
        Workspace { dir: tempfile::tempdir().unwrap() }
    }
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace::default()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, rel: &str, contents: &str) -> &Self {
        let path = self.path().join(rel);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, contents).unwrap();
        self
    }

    /// Writes `pipeline.toml` and runs `cleanroom ARGS pipeline.toml` in the workspace.
    pub fn run(&self, pipeline: &str, args: &[&str]) -> Ran {
        self.file("pipeline.toml", pipeline);
        let mut all: Vec<&str> = args.to_vec();
        all.push("pipeline.toml");
        cleanroom(self.path(), &all)
    }
}

/// Every file under `dir`, recursively (directories walked, not listed).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}
