//! `cleanroom init [DIR]`: a starter pipeline for a project.
//!
//! Writes `DIR/cleanroom.toml` with checks that suit any repository (no
//! merge-conflict markers, no private keys, no huge files, the project's
//! README and licence stay present) and vendors the three first-party
//! check plugins it uses into `DIR/cleanroom-plugins/`, pinned by sha256 in
//! the pipeline. A Rust crate (`Cargo.toml`) also gets `cargo fmt`,
//! `clippy` and `test` as jailed native checks with `toolchain = "rust"`
//! and a persistent `target/`; a Python package (`pyproject.toml`,
//! `setup.py` or `setup.cfg`) gets its tests (pytest when its virtualenv
//! has it, else unittest) with `toolchain = "python"`. Every check says
//! which files it is about (`include`), so the pre-commit hook `cleanroom
//! install` writes runs only what a commit touches. A crate without
//! `Cargo.lock` gets one (`cargo generate-lockfile --offline`): a check
//! cannot write the workspace. The result runs at once (`cleanroom run`)
//! and is meant to be committed and edited. Nothing else is overwritten.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::embedded;
use crate::diag::{Code, Diagnostic, Diagnostics, Location};

/// Where `init` puts the plugins it vendors, relative to the project.
pub const PLUGIN_DIR: &str = "cleanroom-plugins";

/// The pipeline file `init` writes and `run` reads by default.
pub const PIPELINE_FILE: &str = "cleanroom.toml";

/// Directories no starter check should read through.
const EXCLUDED: &[&str] =
    &[".git/**", "target/**", "node_modules/**", ".venv/**", "__pycache__/**", "dist/**", "build/**"];

/// Writes the starter pipeline and plugins into `dir`; returns the files written.
///
/// # Errors
/// `CR026` when `cleanroom.toml` already exists, the build has no bundled
/// plugins, or a file cannot be written.
pub fn init(dir: &Path) -> Result<Vec<PathBuf>, Diagnostics> {
    let pipeline = dir.join(PIPELINE_FILE);
    if pipeline.exists() {
        return Err(Diagnostic::new(Code::CR026, format!("`{}` already exists", pipeline.display()))
            .at(Location::Path(pipeline))
            .hint("edit it, or remove it to start over")
            .into());
    }
    if !dir.is_dir() {
        return Err(Diagnostic::new(Code::CR026, format!("`{}` is not a directory", dir.display()))
            .hint("create it first, or run `cleanroom init` inside the project")
            .into());
    }
    if embedded::BUNDLED_PLUGINS.is_empty() {
        return Err(Diagnostic::new(Code::CR026, "this build of cleanroom has no bundled plugins")
            .hint("run scripts/build-plugins, then rebuild cleanroom (cargo build --release)")
            .into());
    }
    let mut written = Vec::new();
    let mut pins = Vec::new();
    for (file, bytes) in embedded::BUNDLED_PLUGINS {
        let path = dir.join(PLUGIN_DIR).join(file);
        super::write_file(&path, bytes, false)?;
        written.push(path);
        pins.push((
            file.trim_end_matches(".wasm").replace('_', "-"),
            *file,
            crate::plugin::hex(&Sha256::digest(bytes)),
        ));
    }
    let text = starter(dir, &pins);
    super::write_file(&pipeline, text.as_bytes(), false)?;
    written.push(pipeline);
    written.extend(lock_crate(dir));
    written.extend(ignore_run_dir(dir)?);
    Ok(written)
}

/// Adds `.cleanroom/` (runs, journals, the digest memo) to `dir`'s
/// `.gitignore`, creating it, unless a line already ignores it; the file
/// when it was changed.
///
/// # Errors
/// `CR026` when the file cannot be read or written.
fn ignore_run_dir(dir: &Path) -> Result<Option<PathBuf>, Diagnostics> {
    let file = dir.join(".gitignore");
    let text = match fs_err::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(Diagnostic::new(Code::CR026, format!("cannot read `{}`: {e}", file.display()))
                .at(Location::Path(file))
                .hint("fix its permissions, or add `.cleanroom/` to it by hand")
                .into())
        }
    };
    let run_dir = crate::manifest::RUN_DIR;
    let ignored = text.lines().map(str::trim).any(|line| {
        let line = line.strip_prefix('/').unwrap_or(line);
        line.strip_suffix('/').unwrap_or(line) == run_dir
    });
    if ignored {
        return Ok(None);
    }
    let separator = if text.is_empty() || text.ends_with('\n') { "" } else { "\n" };
    let updated = format!("{text}{separator}# Cleanroom's runs, journals and digest memo\n{run_dir}/\n");
    super::write_file(&file, updated.as_bytes(), false)?;
    Ok(Some(file))
}

/// Generates `Cargo.lock` for a crate without one (offline, from the local
/// registry cache), so `cargo` can run read-only in the jail; the file
/// when one was written. Best effort: without it the checks say why.
fn lock_crate(dir: &Path) -> Option<PathBuf> {
    if !dir.join("Cargo.toml").is_file() || dir.join("Cargo.lock").exists() {
        return None;
    }
    let status = std::process::Command::new("cargo")
        .args(["generate-lockfile", "--offline", "--quiet"])
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .status()
        .ok()?;
    status.success().then(|| dir.join("Cargo.lock"))
}

/// The Python interpreter of `dir`'s virtualenv, when it has one.
fn project_python(dir: &Path) -> Option<PathBuf> {
    [".venv", "venv"].iter().map(|v| dir.join(v).join("bin/python")).find(|p| p.is_file())
}

/// The native checks for the languages `dir` is written in.
fn language_checks(dir: &Path) -> String {
    let mut text = String::new();
    if dir.join("Cargo.toml").is_file() {
        text.push_str(
            "\n# Rust: the toolchain `rustc` names here (rust-toolchain.toml honoured), read-only and offline\n\
             # (`cargo fetch` once for dependencies); target/ persists per check, private to it.\n\
             [check.cargo-fmt]\nrun = [\"cargo\", \"fmt\", \"--check\"]\ntoolchain = \"rust\"\nread = [\".\"]\n\
             include = [\"*.rs\"]\nwhole_tree = true\n\n\
             [check.cargo-clippy]\nrun = [\"cargo\", \"clippy\", \"--all-targets\", \"--message-format=json\", \"--\", \"-D\", \"warnings\"]\n\
             toolchain = \"rust\"\nread = [\".\"]\ncache_dirs = [\"target\"]\nfindings = \"cargo-json\"\n\
             include = [\"*.rs\", \"Cargo.toml\", \"Cargo.lock\"]\nwhole_tree = true\ntimeout = \"10m\"\n\n\
             [check.cargo-test]\nrun = [\"cargo\", \"test\", \"--message-format=json\"]\n\
             toolchain = \"rust\"\nread = [\".\"]\ncache_dirs = [\"target\"]\nfindings = \"cargo-json\"\n\
             include = [\"*.rs\", \"Cargo.toml\", \"Cargo.lock\"]\nwhole_tree = true\ntimeout = \"10m\"\n",
        );
    }
    let python = ["pyproject.toml", "setup.py", "setup.cfg"].iter().any(|f| dir.join(f).is_file());
    if python {
        let pytest = project_python(dir).is_some_and(|python| {
            std::process::Command::new(python)
                .args(["-c", "import pytest"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        text.push_str(
            "\n# Python: the project's virtualenv (.venv or venv) and the interpreter it is based on, read-only.\n",
        );
        if pytest {
            text.push_str(
                "[check.pytest]\nrun = [\"python\", \"-m\", \"pytest\", \"-q\", \"-p\", \"no:cacheprovider\"]\n\
                 toolchain = \"python\"\nread = [\".\"]\n\
                 env = { PYTEST_ADDOPTS = \"--junitxml=$TMPDIR/junit.xml\" }\n\
                 findings = { format = \"junit\", file = \"$TMPDIR/junit.xml\" }\n\
                 include = [\"*.py\", \"pyproject.toml\", \"setup.cfg\", \"setup.py\"]\nwhole_tree = true\ntimeout = \"10m\"\n",
            );
        } else {
            text.push_str(
                "[check.unittest]\nrun = [\"python3\", \"-m\", \"unittest\", \"discover\", \"-q\"]\n\
                 toolchain = \"python\"\nread = [\".\"]\n\
                 include = [\"*.py\", \"pyproject.toml\", \"setup.cfg\", \"setup.py\"]\nwhole_tree = true\ntimeout = \"10m\"\n",
            );
        }
    }
    text
}

/// The pipeline file a command reads when none is named: `cleanroom.toml`
/// in `cwd` or the nearest directory above it, not past the repository
/// root (the directory holding `.git`); `cleanroom.toml` (relative, for the
/// error naming it) when there is none.
pub fn find_pipeline(cwd: &Path) -> PathBuf {
    for dir in cwd.ancestors() {
        let candidate = dir.join(PIPELINE_FILE);
        if candidate.is_file() {
            return if dir == cwd { PathBuf::from(PIPELINE_FILE) } else { candidate };
        }
        if dir.join(".git").exists() {
            break;
        }
    }
    PathBuf::from(PIPELINE_FILE)
}

/// The starter pipeline's text: `pins` are (plugin name, file, sha256).
fn starter(dir: &Path, pins: &[(String, &str, String)]) -> String {
    let name = fs_err::canonicalize(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .map(|n| {
            n.chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c.to_ascii_lowercase() } else { '-' })
                .collect()
        })
        .filter(|n: &String| !n.is_empty())
        .unwrap_or_else(|| "project".to_string());
    let present: Vec<&str> = ["README.md", "README", "README.rst", "LICENSE", "LICENSE.md", "COPYING"]
        .into_iter()
        .filter(|f| dir.join(f).is_file())
        .collect();
    let exclude = format!(
        "[{}]",
        EXCLUDED.iter().chain([&"cleanroom-plugins/**"]).map(|g| format!("\"{g}\"")).collect::<Vec<_>>().join(", ")
    );
    let mut text = format!(
        "# A starter pipeline written by `cleanroom init`: edit it freely.\n\
         # Run it with `cleanroom run` (or `cleanroom run --dry-run` to see what each step may touch).\n\
         # Format: docs/pipeline.md in the Cleanroom repository; editors can validate it\n\
         # with schemas/pipeline.schema.json from there (`#:schema <path>` as the first line).\n\n\
         [pipeline]\nname = \"{name}\"\n\n\
         # The plugins below were vendored into {PLUGIN_DIR}/ and are pinned by sha256:\n\
         # a changed file is refused. Commit them with this file.\n[plugins]\n"
    );
    for (plugin, file, sha) in pins {
        text.push_str(&format!("{plugin} = {{ path = \"{PLUGIN_DIR}/{file}\", sha256 = \"{sha}\" }}\n"));
    }
    text.push_str(&format!(
        "\n# Every check reads the project read-only; none can write, see the environment or reach the network.\n\
         # `include`: what each check is about; `cleanroom install`'s pre-commit hook runs it on staged files only.\n\
         [check.no-conflict-markers]\nplugin = \"forbid-pattern\"\nread = [\".\"]\ninclude = [\"*\"]\nexclude = {exclude}\n\
         config = {{ patterns = ['(?m)^(<<<<<<<|>>>>>>>) '], rule = \"conflict-marker\", message = \"merge conflict marker\", exclude = {exclude} }}\n\n\
         [check.no-private-keys]\nplugin = \"forbid-pattern\"\nread = [\".\"]\ninclude = [\"*\"]\nexclude = {exclude}\n\
         config = {{ patterns = ['-----BEGIN ([A-Z]+ )?PRIVATE KEY-----'], rule = \"private-key\", message = \"a private key is committed\", exclude = {exclude} }}\n\n\
         [check.no-huge-files]\nplugin = \"max-file-size\"\nread = [\".\"]\ninclude = [\"*\"]\nexclude = {exclude}\n\
         config = {{ max = \"5MiB\", exclude = {exclude} }}\n"
    ));
    if !present.is_empty() {
        let paths: Vec<String> = present.iter().map(|p| format!("\"{p}\"")).collect();
        text.push_str(&format!(
            "\n[check.project-files]\nplugin = \"required-files\"\nread = [\".\"]\nconfig = {{ paths = [{}] }}\n",
            paths.join(", ")
        ));
    }
    text.push_str(&language_checks(dir));
    text
}
