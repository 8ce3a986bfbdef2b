//! The REAPI service the remote tests run against: BuildGrid on loopback
//! with a private PostgreSQL (`scripts/buildgrid`), and `cleanroom worker`
//! processes serving it.
//!
//! `scripts/test` starts one service for the whole test run and names it in
//! `CLEANROOM_TEST_REAPI` (its directory in `CLEANROOM_TEST_REAPI_DIR`, where
//! tests reach into its CAS to tamper with it). Without them, the first test
//! that needs the service starts one for this process, stopped when the
//! process exits.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cleanroom::RunReport;

/// A running REAPI service.
#[derive(Debug)]
pub struct Service {
    /// `grpc://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The directory `scripts/buildgrid start` made (its CAS is `cas/`).
    pub dir: PathBuf,
}

impl Service {
    /// The file holding blob `hash` in BuildGrid's disk storage.
    pub fn blob_file(&self, hash: &str) -> PathBuf {
        self.dir.join("cas/cas/objects").join(&hash[..2]).join(&hash[2..])
    }

    /// Every blob file the service holds.
    pub fn blob_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut stack = vec![self.dir.join("cas")];
        while let Some(dir) = stack.pop() {
            for entry in fs_err::read_dir(&dir).into_iter().flatten().flatten() {
                if entry.path().is_dir() {
                    stack.push(entry.path());
                } else {
                    files.push(entry.path());
                }
            }
        }
        files
    }
}

/// The service, started on first use.
///
/// # Panics
/// When it cannot be started, with the script's output.
pub fn service() -> &'static Service {
    static SERVICE: OnceLock<Service> = OnceLock::new();
    SERVICE.get_or_init(|| {
        if let (Ok(endpoint), Ok(dir)) =
            (std::env::var("CLEANROOM_TEST_REAPI"), std::env::var("CLEANROOM_TEST_REAPI_DIR"))
        {
            return Service { endpoint, dir: PathBuf::from(dir) };
        }
        let dir = std::env::temp_dir().join(format!("cleanroom-buildgrid-{}", std::process::id()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/buildgrid");
        let output = Command::new(script)
            .arg("start")
            .arg(&dir)
            .arg("--watch")
            .arg(std::process::id().to_string())
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/buildgrid");
        assert!(output.status.success(), "scripts/buildgrid start failed");
        let endpoint = String::from_utf8_lossy(&output.stdout).trim().to_string();
        Service { endpoint, dir }
    })
}

/// A `cleanroom worker` process, stopped (SIGTERM, then waited for) when dropped.
pub struct Worker {
    child: Option<Child>,
    /// Where it materialises actions.
    pub work_dir: tempfile::TempDir,
}

impl Worker {
    /// Starts a worker of `jobs` sessions offering `tools`.
    ///
    /// # Panics
    /// When the binary cannot be started.
    pub fn start(jobs: u16, tools: &[&Path]) -> Worker {
        Worker::start_sealed(jobs, tools, None)
    }

    /// [`Worker::start`], sealing results with the key `seal` (`--seal-env`).
    ///
    /// # Panics
    /// When the binary cannot be started.
    pub fn start_sealed(jobs: u16, tools: &[&Path], seal: Option<&str>) -> Worker {
        let work_dir = tempfile::tempdir().expect("a worker directory");
        let mut command = Command::new(crate::cleanroom_binary());
        command
            .args(["worker", "--remote", &service().endpoint, "--jobs", &jobs.to_string()])
            .arg("--work-dir")
            .arg(work_dir.path().join("actions"))
            .env("CLEANROOM_CACHE_DIR", work_dir.path().join("cache"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for tool in tools {
            command.arg("--tool").arg(tool);
        }
        if let Some(seal) = seal {
            command.args(["--seal-env", "CLEANROOM_TEST_SEAL"]).env("CLEANROOM_TEST_SEAL", seal);
        }
        let child = command.spawn().expect("start cleanroom worker");
        Worker { child: Some(child), work_dir }
    }

    /// Whether it has an action materialised right now (it is running one).
    pub fn is_running_an_action(&self) -> bool {
        fs_err::read_dir(self.work_dir.path().join("actions")).is_ok_and(|mut d| d.next().is_some())
    }

    /// Waits up to `limit` until it runs an action.
    pub fn wait_for_an_action(&self, limit: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            if self.is_running_an_action() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Kills it at once (SIGKILL): no goodbye to the service.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What one `cleanroom run --format json` did.
#[derive(Debug)]
pub struct CliRun {
    /// Exit code.
    pub code: i32,
    /// The report, when it printed one.
    pub report: Option<RunReport>,
    /// What it said on stderr.
    pub stderr: String,
}

/// Runs `cleanroom run --format json ARGS PIPELINE` with its own cache
/// directory `cache` (a result cache no other run shares).
///
/// # Panics
/// When the binary cannot be started.
pub fn run_cli(pipeline: &Path, args: &[&str], cache: &Path, env: &[(&str, &str)]) -> CliRun {
    let output = Command::new(crate::cleanroom_binary())
        .arg("run")
        .args(["--format", "json"])
        .args(args)
        .arg(pipeline)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .env("CLEANROOM_CACHE_DIR", cache)
        .envs(env.iter().copied())
        .output()
        .expect("run cleanroom");
    CliRun {
        code: output.status.code().unwrap_or(-1),
        report: serde_json::from_slice(&output.stdout).ok(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A report's steps and rounds, with what may differ between runs of the
/// same work taken out: times, cache and remote markers, run ids.
pub fn comparable(report: &RunReport) -> serde_json::Value {
    let mut value = serde_json::json!({ "steps": report.steps, "rounds": report.attempts, "status": report.status });
    strip(&mut value);
    value
}

fn strip(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for key in ["duration_ms", "cached", "remote", "run_id", "started"] {
                map.remove(key);
            }
            map.values_mut().for_each(strip);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
        _ => {}
    }
}
