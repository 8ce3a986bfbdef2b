//! The README's quick start for an existing repository, end to end:
//! `cleanroom init && cleanroom install` in a real Rust crate (made with
//! `cargo new`) and a real Python package (its own virtualenv, pytest
//! installed offline from the wheels `scripts/install-test-tools`
//! downloads), then real `git commit`s through the installed hook: a good
//! change is committed, a broken test is refused with its finding at the
//! code, a change no check is about runs only the checks that are, and an
//! unchanged rerun comes from the cache.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sandbox_tests::cleanroom_binary;

/// `program ARGS` in `dir`, blind to the user's git configuration, with a
/// private Cleanroom cache and an identity for commits.
fn command(program: impl AsRef<std::ffi::OsStr>, dir: &Path, cache: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_NAME", "dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.com")
        .env("CLEANROOM_CACHE_DIR", cache)
        .env_remove("CLEANROOM")
        .env_remove("GIT_DIR")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("VIRTUAL_ENV");
    command
}

fn run(mut command: Command) -> Output {
    command.output().expect("the program starts")
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn ok(output: Output, what: &str) -> Output {
    assert!(output.status.success(), "{what} failed:\n{}", text(&output));
    output
}

/// A project directory with a private cache beside it.
struct Project {
    _dir: tempfile::TempDir,
    root: PathBuf,
    cache: PathBuf,
}

impl Project {
    fn new(name: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let root = fs_err::canonicalize(dir.path()).unwrap().join(name);
        let cache = dir.path().join("cache");
        Project { _dir: dir, root, cache }
    }

    fn git(&self, args: &[&str]) -> Output {
        let mut git = command("git", &self.root, &self.cache);
        git.args(args);
        run(git)
    }

    fn cleanroom(&self, args: &[&str]) -> Output {
        let mut cleanroom = command(cleanroom_binary(), &self.root, &self.cache);
        cleanroom.args(args);
        run(cleanroom)
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.root.join(rel);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, text).unwrap();
    }

    /// `init && install`, then the first commit of everything.
    fn quick_start(&self) -> String {
        let init = ok(self.cleanroom(&["init"]), "cleanroom init");
        assert!(String::from_utf8_lossy(&init.stdout).contains("cleanroom install"), "{}", text(&init));
        ok(self.cleanroom(&["install"]), "cleanroom install");
        let hook = fs_err::read_to_string(self.root.join(".git/hooks/pre-commit")).unwrap();
        assert!(hook.contains("run --staged"), "{hook}");
        ok(self.git(&["add", "-A"]), "git add");
        let first = ok(self.git(&["commit", "-qm", "first"]), "the first commit");
        let runs = fs_err::read_dir(self.root.join(".cleanroom/runs")).map(|d| d.count()).unwrap_or(0);
        assert!(runs >= 1, "the hook did not run:\n{}", text(&first));
        fs_err::read_to_string(self.root.join("cleanroom.toml")).unwrap()
    }

    /// Commits what is staged; the output, and whether git took it.
    fn commit(&self, message: &str) -> (bool, String) {
        let out = self.git(&["commit", "-qam", message]);
        (out.status.success(), text(&out))
    }

    fn last_commit(&self) -> String {
        String::from_utf8_lossy(&self.git(&["log", "-1", "--format=%s"]).stdout).trim().to_string()
    }
}

const LIB_RS: &str = "/// Adds.\npub fn add(left: u64, right: u64) -> u64 {\n    left + right\n}\n\n\
#[cfg(test)]\nmod tests {\n    use super::*;\n\n    #[test]\n    fn adds() {\n        assert_eq!(add(2, 2), 4);\n    }\n}\n";

#[test]
fn init_and_install_guard_a_real_crate_through_git_commit() {
    let project = Project::new("demo");
    let cache = project.cache.clone();
    let mut new = command("cargo", project.root.parent().unwrap(), &cache);
    new.args(["new", "--quiet", "--lib", "--vcs", "git", "--name", "demo"]).arg(&project.root);
    ok(run(new), "cargo new");
    project.write("src/lib.rs", LIB_RS);
    project.write("README.md", "# demo\n");
    let pipeline = project.quick_start();
    for check in ["cargo-fmt", "cargo-clippy", "cargo-test", "toolchain = \"rust\"", "cache_dirs = [\"target\"]"] {
        assert!(pipeline.contains(check), "init wrote no `{check}`:\n{pipeline}");
    }
    assert!(project.root.join("Cargo.lock").is_file(), "init did not lock the crate");
    assert_eq!(project.last_commit(), "first");

    // A broken test is refused, with the failure located at the code.
    project.write("src/lib.rs", &LIB_RS.replace("left + right", "left + right + 1"));
    let (taken, out) = project.commit("broken");
    assert!(!taken, "the hook let a failing test through:\n{out}");
    assert!(out.contains("cargo-test") && out.contains("src/lib.rs:"), "no finding at the code:\n{out}");
    assert_eq!(project.last_commit(), "first");

    // Fixed, it goes in; a README-only change runs no Rust check.
    project.write("src/lib.rs", LIB_RS);
    project.write("README.md", "# demo\n\nNow documented.\n");
    let (taken, out) = project.commit("docs");
    assert!(taken, "a good change was refused:\n{out}");
    assert!(out.contains("not run") && out.contains("cargo-test"), "a README change ran the Rust checks:\n{out}");
    assert_eq!(project.last_commit(), "docs");

    // Nothing changed: every check comes from the cache.
    ok(project.cleanroom(&["run"]), "the first full run");
    let again = ok(project.cleanroom(&["run", "--format", "json"]), "the rerun");
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    let steps = report["steps"].as_array().unwrap();
    assert!(steps.len() >= 6, "{report}");
    assert!(steps.iter().all(|s| s["cached"] == true), "an unchanged rerun ran steps again:\n{}", text(&again));
}

#[test]
fn init_and_install_guard_a_real_python_package_through_git_commit() {
    let wheels = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/wheels");
    assert!(wheels.is_dir(), "run scripts/install-test-tools first (it downloads pytest's wheels)");
    let project = Project::new("calc");
    fs_err::create_dir_all(&project.root).unwrap();
    ok(project.git(&["init", "-q"]), "git init");
    project.write(
        "pyproject.toml",
        "[project]\nname = \"calc\"\nversion = \"0.1.0\"\n\n[tool.pytest.ini_options]\npythonpath = [\"src\"]\n",
    );
    project.write("src/calc/__init__.py", "def add(a, b):\n    return a + b\n");
    project.write("tests/test_calc.py", "from calc import add\n\n\ndef test_add():\n    assert add(2, 2) == 4\n");
    project.write(".gitignore", ".venv/\n");
    let mut venv = command("python3", &project.root, &project.cache);
    venv.args(["-m", "venv", ".venv"]);
    ok(run(venv), "python3 -m venv");
    let mut pip = command(project.root.join(".venv/bin/pip"), &project.root, &project.cache);
    pip.args(["install", "--quiet", "--disable-pip-version-check", "--no-index", "--find-links"])
        .arg(&wheels)
        .arg("pytest");
    ok(run(pip), "pip install pytest (offline)");
    let pipeline = project.quick_start();
    assert!(pipeline.contains("[check.pytest]") && pipeline.contains("toolchain = \"python\""), "{pipeline}");

    project.write("src/calc/__init__.py", "def add(a, b):\n    return a - b\n");
    let (taken, out) = project.commit("broken");
    assert!(!taken, "the hook let a failing test through:\n{out}");
    assert!(out.contains("pytest") && out.contains("tests/test_calc.py"), "no finding at the test:\n{out}");

    project.write("src/calc/__init__.py", "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n");
    let (taken, out) = project.commit("fixed");
    assert!(taken, "a good change was refused:\n{out}");
    assert_eq!(project.last_commit(), "fixed");
}
