//! Attacks across machines: a stage run on a remote worker, and results
//! planted in or tampered with in the shared REAPI service.
//!
//! The coding stage wants the holdout or a passing gate. On a worker it is
//! in the same jail as here, with only its own inputs materialised; in the
//! service, anything it (or a hostile cache writer) plants must not widen
//! what a result may do: no write outside the stage's own write mounts, no
//! blob believed that is not what its digest says.

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use cleanroom::remote::action::{digest_of, StepAction};
use cleanroom::remote::{CacheMode, Client, RemoteSettings};
use cleanroom::{RunOptions, RunReport, StepReport, StepStatus};
use sandbox_tests::reapi::{service, Worker};
use sandbox_tests::{cleanroom_binary, step, Workspace};

use super::{case, Case};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case("a stage on a remote worker reads the holdout by path and by search", remote_stage_reads_holdout),
        case("a planted remote result writes outside the stage's write mount", planted_result_writes_outside),
        case("a tampered report blob in the CAS turns a failed check passed", tampered_report_blob),
        case("a peer without the team's seal plants a passing verdict", unsealed_verdict_planted),
        case("a worker without the team's seal reports a passing verdict", unsealed_worker),
    ]
}

fn nonce() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{t}-{}", std::process::id())
}

fn settings(cache: CacheMode, execute: bool) -> RemoteSettings {
    RemoteSettings {
        endpoint: service().endpoint.clone(),
        instance: String::new(),
        cache,
        execute,
        token: None,
        seal: None,
    }
}

/// Runs `steps` in `ws` against the service; `cache` turns the local and
/// remote result caches on.
fn run_remote(ws: &Workspace, steps: &str, remote: RemoteSettings, cache: bool) -> RunReport {
    let mut plan = ws.plan(&[], steps).unwrap_or_else(|d| panic!("pipeline did not validate:\n{d}"));
    plan.remote = Some(remote);
    let options = RunOptions { jobs: 2, jail_helper: cleanroom_binary(), cache, ..RunOptions::default() };
    cleanroom::run(&plan, &options).unwrap_or_else(|d| panic!("pipeline did not load:\n{d}"))
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

fn remote_stage_reads_holdout() {
    let marker = format!("HOLDOUT-{}", nonce());
    let ws = Workspace::new();
    ws.file("scenarios/secret.md", &marker).file("src/a.txt", "a");
    let holdout = ws.root().join("scenarios/secret.md").display().to_string();
    // The stage tries the client's absolute path, a relative escape, and a
    // search of everything it can see; the judge reading the holdout runs
    // first on the pool, so the holdout is in the service's CAS by then.
    let steps = format!(
        r#"[barrier]
holdout = ["scenarios"]

[check.judge]
run = ["/bin/sh", "-c", "cat scenarios/secret.md > /dev/null"]
read = ["scenarios"]

[stage.thief]
needs = ["judge"]
run = ["/bin/sh", "-c", "cat {holdout} ../scenarios/secret.md scenarios/secret.md > out/stolen.txt 2>&1; grep -rsl {marker} / >> out/stolen.txt 2>&1; for f in $(grep -rsl {marker} / 2>/dev/null); do cat $f >> out/stolen.txt; done; true"]
read = ["src"]
write = ["out"]
timeout = "2m"
"#
    );
    let workers = [Worker::start(1, &[]), Worker::start(1, &[])];
    let report = run_remote(&ws, &steps, settings(CacheMode::Off, true), false);
    let thief = step(&report, "thief");
    assert!(thief.remote.is_some(), "the stage did not run remotely: {thief:?}");
    let stolen = ws.read("out/stolen.txt");
    assert!(!stolen.contains(&marker), "the stage read the holdout on a worker:\n{stolen}");
    drop(workers);
}

/// A stage report that says it passed and wrote `out/made.txt`.
fn passed_stage(id: &str) -> StepReport {
    let mut report = StepReport::skipped(id, cleanroom::plan::StepKind::Stage, String::new());
    report.status = StepStatus::Passed;
    report.reason = None;
    report
}

fn planted_result_writes_outside() {
    let ws = Workspace::new();
    ws.file("src/a.txt", &nonce());
    let steps = r#"[stage.make]
run = ["/bin/sh", "-c", "echo made > out/made.txt"]
read = ["src"]
write = ["out"]
"#;
    // The action the runner will look up, planted before it runs: a
    // "passed" result whose files land on a read mount and outside the
    // workspace.
    let plan = ws.plan(&[], steps).unwrap();
    let digester = cleanroom::cache::digest::Digester::cold(&plan.workspace);
    let action = StepAction::build(&plan.plugins, &plan.steps[0], &plan.workspace, (1, &[]), &digester).unwrap();
    let report = serde_json::to_vec(&passed_stage("make")).unwrap();
    let evil = b"planted".to_vec();
    let outputs = [
        ("report.json", report.clone()),
        ("written/src/a.txt", evil.clone()),
        ("written/../../planted.txt", evil.clone()),
    ];
    block_on(async {
        let client = Client::connect(&service().endpoint, "", None).await.unwrap();
        client.upload_bytes(vec![report.clone(), evil.clone()]).await.unwrap();
        let result = re::ActionResult {
            output_files: outputs
                .iter()
                .map(|(path, bytes)| re::OutputFile {
                    path: path.to_string(),
                    digest: Some(digest_of(bytes)),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        client.update_action_result(&action.digest, result).await.unwrap();
    });
    let before = ws.read("src/a.txt");
    let report = run_remote(&ws, steps, settings(CacheMode::ReadWrite, false), true);
    let make = step(&report, "make");
    assert!(make.remote.is_none() && !make.cached, "the planted result was used: {make:?}");
    assert_eq!(ws.read("src/a.txt"), before, "a read mount was overwritten");
    assert_eq!(ws.read("out/made.txt"), "made\n", "the stage did not run itself");
    assert!(!ws.root().join("../planted.txt").exists(), "a file landed outside the workspace");
}

fn tampered_report_blob() {
    let ws = Workspace::new();
    ws.file("src/notes.txt", &format!("TODO {}\n", nonce()));
    // `plan()` opens the [plugins] table: the first line lands in it.
    let forbid = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist/forbid_pattern.wasm");
    let steps = format!(
        "forbid = {:?}\n\n[check.tampered-gate]\nplugin = \"forbid\"\nread = [\"src\"]\nconfig = {{ patterns = [\"TODO\"] }}\n",
        forbid.display().to_string()
    );
    let first = run_remote(&ws, &steps, settings(CacheMode::ReadWrite, false), true);
    assert_eq!(step(&first, "tampered-gate").status, StepStatus::Failed);
    // The attacker flips the stored report's verdict in the service's disk.
    let plan = ws.plan(&[], &steps).unwrap();
    let digester = cleanroom::cache::digest::Digester::cold(&plan.workspace);
    let action = StepAction::build(&plan.plugins, &plan.steps[0], &plan.workspace, (1, &[]), &digester).unwrap();
    let result = block_on(async {
        let client = Client::connect(&service().endpoint, "", None).await.unwrap();
        client.get_action_result(&action.digest).await.unwrap().expect("the result was stored")
    });
    let report = result.output_files.iter().find(|f| f.path == "report.json").unwrap();
    let file = service().blob_file(&report.digest.as_ref().unwrap().hash);
    let text = fs_err::read_to_string(&file).unwrap();
    assert!(text.contains("\"failed\""));
    fs_err::write(&file, text.replacen("\"failed\"", "\"passed\"", 1)).unwrap();
    // A fresh checkout (no local cache entry) asks the service.
    let other = Workspace::new();
    other.file("src/notes.txt", &ws.read("src/notes.txt"));
    let again = run_remote(&other, &steps, settings(CacheMode::ReadWrite, false), true);
    let gate = step(&again, "tampered-gate");
    assert_eq!(gate.status, StepStatus::Failed, "the tampered blob was believed: {gate:?}");
    assert!(gate.remote.is_none(), "the tampered result was used");
}

/// A failing gate in a pipeline whose results are sealed with a team key
/// read from `key_file`.
fn sealed_gate(key_file: &std::path::Path) -> String {
    let forbid = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist/forbid_pattern.wasm");
    format!(
        "forbid = {:?}\n\n[secrets]\nTEAM = {{ file = {:?} }}\n\n[check.sealed-gate]\nplugin = \"forbid\"\nread = [\"src\"]\nconfig = {{ patterns = [\"TODO\"] }}\n",
        forbid.display().to_string(),
        key_file.display().to_string()
    )
}

fn sealed(cache: CacheMode, execute: bool) -> RemoteSettings {
    RemoteSettings { seal: Some("TEAM".into()), ..settings(cache, execute) }
}

/// A "passed" check result for `action`, filed by a peer that may write
/// the action cache, sealed with `key` if given.
fn plant_pass(action: &StepAction, key: Option<&[u8]>) {
    let report = passed_stage("sealed-gate");
    let sealing = cleanroom::remote::Sealing { action: &action.digest, key };
    let secrets = cleanroom::secrets::Secrets::default();
    let (result, blobs) = cleanroom::remote::result_of(&report, &[], &secrets, "planter", &sealing).unwrap();
    block_on(async {
        let client = Client::connect(&service().endpoint, "", None).await.unwrap();
        client.upload_bytes(blobs).await.unwrap();
        client.update_action_result(&action.digest, result).await.unwrap();
    });
}

fn unsealed_verdict_planted() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("team.key");
    fs_err::write(&key_file, format!("team-key-{}", nonce())).unwrap();
    let steps = sealed_gate(&key_file);
    // The mechanism is live: a sealed result filed by one checkout answers another.
    let first = Workspace::new();
    first.file("src/notes.txt", &format!("TODO {}\n", nonce()));
    let report = run_remote(&first, &steps, sealed(CacheMode::ReadWrite, false), true);
    assert_eq!(step(&report, "sealed-gate").status, StepStatus::Failed);
    let second = Workspace::new();
    second.file("src/notes.txt", &first.read("src/notes.txt"));
    let report = run_remote(&second, &steps, sealed(CacheMode::Read, false), true);
    assert!(step(&report, "sealed-gate").remote.as_ref().is_some_and(|r| r.cached), "a sealed result was not used");
    // A peer plants a pass, unsealed and then sealed with another key.
    for key in [None, Some(&b"not-the-team-key"[..])] {
        let ws = Workspace::new();
        ws.file("src/notes.txt", &format!("TODO {}\n", nonce()));
        let plan = ws.plan(&[], &steps).unwrap();
        let digester = cleanroom::cache::digest::Digester::cold(&plan.workspace);
        let action = StepAction::build(&plan.plugins, &plan.steps[0], &plan.workspace, (1, &[]), &digester).unwrap();
        plant_pass(&action, key);
        let report = run_remote(&ws, &steps, sealed(CacheMode::Read, false), true);
        let gate = step(&report, "sealed-gate");
        assert_eq!(gate.status, StepStatus::Failed, "a planted verdict was believed: {gate:?}");
        assert!(gate.remote.is_none());
    }
}

fn unsealed_worker() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("team.key");
    fs_err::write(&key_file, format!("team-key-{}", nonce())).unwrap();
    // A tool only this worker offers, so the action goes to it: it holds
    // no key, as a stage posing as a worker would not.
    let tool = tempfile::tempdir().unwrap();
    let steps = format!(
        "[secrets]\nTEAM = {{ file = {:?} }}\n\n[check.sealed-gate]\nrun = [\"/bin/sh\", \"-c\", \"exit 0\"]\ntools = [{:?}]\n",
        key_file.display().to_string(),
        tool.path().display().to_string()
    );
    let worker = Worker::start(1, &[tool.path()]);
    let ws = Workspace::new();
    let report = run_remote(&ws, &steps, sealed(CacheMode::Off, true), false);
    let gate = step(&report, "sealed-gate");
    assert_eq!(gate.status, StepStatus::Error, "an unsealed worker's result was believed: {gate:?}");
    assert!(gate.reason.as_deref().unwrap_or_default().contains("not sealed"), "{gate:?}");
    drop(worker);
}
