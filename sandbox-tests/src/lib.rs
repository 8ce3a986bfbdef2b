//! Harness for the attack suite: a throwaway workspace, a pipeline written
//! into it, and a real run through the `cleanroom` library with real
//! components built from `guests/` by `scripts/build-plugins`.
//!
//! Each hostile guest is one behaviour, named for what it tries; [`GUESTS`]
//! lists them all, and `every_guest_is_attacked_by_a_test` fails when a guest
//! directory exists that is not listed (so a new guest cannot go untested).

use std::path::{Path, PathBuf};

pub mod reapi;

use cleanroom::{RunOptions, RunReport, StepReport};

/// Every guest in `guests/` (crates that build a component), each used by a test.
pub const GUESTS: &[&str] = &[
    "env_probe",
    "feedback_recorder",
    "file_flood",
    "fixed_verdicts",
    "foreign_import",
    "hostcall_flood",
    "http_fetch",
    "http_probe",
    "link_probe",
    "memory_bomb",
    "noop",
    "noop_stage",
    "output_flood",
    "read_probe",
    "service_probe",
    "socket_probe",
    "spin_forever",
    "stack_overflow",
    "twin_caller",
    "write_probe",
    "write_then_fail",
];

/// The `cleanroom` binary built beside this test (it is the jail helper for
/// native steps, and the CLI for fault tests).
///
/// # Panics
/// When it has not been built, with the command that builds it.
pub fn cleanroom_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let binary = dir.join("cleanroom");
    assert!(binary.is_file(), "{} is missing: run `cargo build --bin cleanroom` first", binary.display());
    binary
}

/// The built component for guest `name`.
///
/// # Panics
/// When it has not been built, with the command that builds it.
pub fn guest(name: &str) -> PathBuf {
    assert!(GUESTS.contains(&name), "guest `{name}` is not listed in GUESTS");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist").join(format!("{name}.wasm"));
    assert!(path.is_file(), "{} is missing: run scripts/build-plugins first", path.display());
    path
}

/// A temporary workspace holding a pipeline and whatever files a test adds.
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Workspace {
    /// An empty workspace.
    pub fn new() -> Self {
        Workspace { dir: tempfile::tempdir().expect("create a temp dir") }
    }

    /// Its root (canonical, so tests can compare host paths).
    pub fn root(&self) -> PathBuf {
        fs_err::canonicalize(self.dir.path()).expect("canonical temp dir")
    }

    /// Writes `contents` to the workspace-relative `rel`, creating parents.
    pub fn file(&self, rel: &str, contents: &str) -> &Self {
        let path = self.root().join(rel);
        fs_err::create_dir_all(path.parent().expect("a parent")).expect("create parents");
        fs_err::write(&path, contents).expect("write file");
        self
    }

    /// Creates the workspace-relative directory `rel`.
    pub fn dir(&self, rel: &str) -> &Self {
        fs_err::create_dir_all(self.root().join(rel)).expect("create dir");
        self
    }

    /// Reads the workspace-relative `rel`.
    pub fn read(&self, rel: &str) -> String {
        fs_err::read_to_string(self.root().join(rel)).expect("read file")
    }

    /// Writes `pipeline.toml` with a `[plugins]` table pointing at `guests`
    /// (plugin name = guest name) followed by `steps`, and validates it.
    pub fn plan(&self, guests: &[&str], steps: &str) -> Result<cleanroom::Plan, cleanroom::diag::Diagnostics> {
        let mut toml = String::from("[pipeline]\nname = \"attack\"\n\n[plugins]\n");
        for name in guests {
            toml.push_str(&format!("{name} = {:?}\n", guest(name).display().to_string()));
        }
        toml.push('\n');
        toml.push_str(steps);
        let pipeline = self.root().join("pipeline.toml");
        fs_err::write(&pipeline, toml).expect("write pipeline");
        cleanroom::Plan::load(&pipeline)
    }

    /// Every file, directory and link under the root (but `.cleanroom/` and
    /// `pipeline.toml`), with contents, for byte-for-byte comparisons.
    pub fn snapshot(&self) -> std::collections::BTreeMap<String, String> {
        let mut out = std::collections::BTreeMap::new();
        snapshot_into(&self.root(), "", &mut out);
        out
    }

    /// Writes `pipeline.toml` with a `[plugins]` table pointing at `guests`
    /// (plugin name = guest name) followed by `steps`, and runs it.
    ///
    /// # Panics
    /// When the pipeline does not validate: attacks must be run, not refused.
    pub fn run(&self, guests: &[&str], steps: &str) -> RunReport {
        let plan = self.plan(guests, steps).unwrap_or_else(|d| panic!("pipeline did not validate:\n{d}"));
        // Every attack runs for real: no result is ever taken from the cache.
        let options = RunOptions { jobs: 2, jail_helper: cleanroom_binary(), cache: false, ..RunOptions::default() };
        cleanroom::run(&plan, &options).unwrap_or_else(|d| panic!("pipeline did not load:\n{d}"))
    }
}

fn snapshot_into(dir: &Path, rel: &str, out: &mut std::collections::BTreeMap<String, String>) {
    let Ok(entries) = fs_err::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if rel.is_empty() && (name == ".cleanroom" || name == "pipeline.toml") {
            continue;
        }
        let path = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        let meta = fs_err::symlink_metadata(entry.path()).expect("metadata");
        if meta.file_type().is_symlink() {
            out.insert(path, format!("link -> {}", fs_err::read_link(entry.path()).expect("link").display()));
        } else if meta.is_dir() {
            out.insert(path.clone(), "dir".into());
            snapshot_into(&entry.path(), &path, out);
        } else {
            out.insert(path, String::from_utf8_lossy(&fs_err::read(entry.path()).expect("read")).into_owned());
        }
    }
}

/// The report of step `id`.
///
/// # Panics
/// When there is no such step.
pub fn step<'r>(report: &'r RunReport, id: &str) -> &'r StepReport {
    report.steps.iter().find(|s| s.id == id).unwrap_or_else(|| panic!("no step `{id}` in {report:#?}"))
}

/// `(rule, message)` of every finding of step `id`, for readable assertions.
pub fn findings(report: &RunReport, id: &str) -> Vec<(String, String)> {
    step(report, id).findings.iter().map(|f| (f.rule.clone(), f.message.clone())).collect()
}
