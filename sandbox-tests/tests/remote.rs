//! Remote cache and remote execution against a real REAPI service
//! (BuildGrid on loopback, `scripts/buildgrid`) with real `cleanroom
//! worker` processes: the same pipeline gives the same reports locally,
//! from the remote cache in another checkout, and on a pool of workers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cleanroom::StepStatus;
use sandbox_tests::reapi::{comparable, run_cli, service, Worker};
use sandbox_tests::Workspace;

fn plugin(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist").join(format!("{name}.wasm"));
    assert!(path.is_file(), "{} is missing: run scripts/build-plugins first", path.display());
    path.display().to_string()
}

/// A fresh value, so this test's actions are its own in a shared service.
fn nonce() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{t}-{}", std::process::id())
}

/// A pipeline with plugin checks (one failing), a jailed native stage that
/// writes a file, and a check of what it wrote.
fn factory_workspace(nonce: &str) -> Workspace {
    let ws = Workspace::new();
    ws.file("src/input.txt", &format!("input {nonce}\n"));
    ws.file("src/notes.txt", "TODO: finish\n");
    let pipeline = format!(
        r#"[pipeline]
name = "remote"

[plugins]
forbid = "{forbid}"
required = "{required}"

[check.clean-input]
plugin = "forbid"
read = ["src/input.txt"]
config = {{ patterns = ["TODO"] }}

[check.no-todo]
plugin = "forbid"
read = ["src"]
config = {{ patterns = ["TODO"] }}

[stage.double]
needs = ["clean-input"]
run = ["/bin/sh", "-c", "cat src/input.txt src/input.txt > out/doubled.txt"]
read = ["src"]
write = ["out"]

[check.made]
needs = ["double"]
plugin = "required"
read = ["out"]
config = {{ paths = ["out/doubled.txt"] }}
"#,
        forbid = plugin("forbid_pattern"),
        required = plugin("required_files"),
    );
    ws.file("pipeline.toml", &pipeline);
    ws
}

/// A copy of `ws` at another path, without what runs made.
fn checkout(ws: &Workspace) -> Workspace {
    let other = Workspace::new();
    for rel in ["pipeline.toml", "src/input.txt", "src/notes.txt"] {
        other.file(rel, &ws.read(rel));
    }
    other
}

/// A workspace with a fresh `src/input.txt` and one native check `id`
/// running `script` that needs a tool only the returned directory is: only
/// a worker offering it leases the action, so no other test's worker does.
/// `head` goes before the step (e.g. `[secrets]`), `keys` into it.
fn tool_workspace(head: &str, id: &str, script: &str, keys: &str) -> (Workspace, tempfile::TempDir) {
    let tool = tempfile::tempdir().unwrap();
    let ws = Workspace::new();
    ws.file("src/input.txt", &nonce());
    let tools = format!("tools = [{:?}]", tool.path().display().to_string());
    ws.file(
        "pipeline.toml",
        &format!(
            "[pipeline]\nname = \"{id}\"\n\n{head}[check.{id}]\nrun = [\"/bin/sh\", \"-c\", {script:?}]\nread = [\"src\"]\n{tools}\n{keys}"
        ),
    );
    (ws, tool)
}

fn pipeline(ws: &Workspace) -> PathBuf {
    ws.root().join("pipeline.toml")
}

#[test]
fn a_second_checkout_on_another_path_is_answered_from_the_remote_cache_with_the_same_reports() {
    let endpoint = &service().endpoint;
    let first = factory_workspace(&nonce());
    let caches = tempfile::tempdir().unwrap();
    let ran = run_cli(&pipeline(&first), &["--remote", endpoint], &caches.path().join("a"), &[]);
    let report = ran.report.clone().unwrap_or_else(|| panic!("no report: {ran:?}"));
    assert_eq!(ran.code, 1, "no-todo fails: {ran:?}");
    assert!(report.steps.iter().all(|s| !s.cached && s.remote.is_none()), "the first run ran everything");

    let second = checkout(&first);
    assert_ne!(first.root(), second.root());
    let again = run_cli(&pipeline(&second), &["--remote", endpoint], &caches.path().join("b"), &[]);
    let hit = again.report.clone().unwrap_or_else(|| panic!("no report: {again:?}"));
    for step in &hit.steps {
        let origin = step.remote.as_ref().unwrap_or_else(|| panic!("`{}` was not from the remote cache", step.id));
        assert!(step.cached && origin.cached && !origin.action.is_empty(), "{step:?}");
    }
    assert_eq!(comparable(&report), comparable(&hit), "a remote hit reports what the run reported");
    assert_eq!(second.read("out/doubled.txt"), first.read("out/doubled.txt"), "the stage's file was restored");
    assert_eq!(again.code, 1, "a failed check is reused as failed");
}

#[test]
fn a_read_only_client_looks_up_but_never_files_results() {
    let endpoint = &service().endpoint;
    let ws = factory_workspace(&nonce());
    let caches = tempfile::tempdir().unwrap();
    let args = ["--remote", endpoint.as_str(), "--remote-cache", "read"];
    let first = run_cli(&pipeline(&ws), &args, &caches.path().join("a"), &[]);
    assert!(first.report.is_some(), "{first:?}");
    let other = checkout(&ws);
    let second = run_cli(&pipeline(&other), &args, &caches.path().join("b"), &[]);
    let report = second.report.unwrap_or_else(|| panic!("{}", second.stderr));
    assert!(report.steps.iter().all(|s| !s.cached), "a read-only client stored results: {report:?}");
}

#[test]
fn remote_execution_on_two_workers_gives_the_same_reports_as_a_local_run() {
    let endpoint = &service().endpoint;
    let id = nonce();
    let local = factory_workspace(&id);
    let caches = tempfile::tempdir().unwrap();
    let here = run_cli(&pipeline(&local), &[], &caches.path().join("local"), &[]);
    let here = here.report.unwrap_or_else(|| panic!("{}", here.stderr));

    let workers = [Worker::start(1, &[]), Worker::start(1, &[])];
    let remote = checkout(&local);
    let args = ["--remote", endpoint.as_str(), "--remote-exec", "--remote-cache", "off"];
    let ran = run_cli(&pipeline(&remote), &args, &caches.path().join("remote"), &[]);
    let there = ran.report.clone().unwrap_or_else(|| panic!("no report: {ran:?}"));
    for step in &there.steps {
        let origin = step.remote.as_ref().unwrap_or_else(|| panic!("`{}` ran here: {ran:?}", step.id));
        assert!(!origin.cached && !step.cached, "{step:?}");
        assert!(origin.worker.starts_with("cleanroom-"), "the worker is named: {origin:?}");
    }
    assert_eq!(comparable(&here), comparable(&there), "the pool reports what this machine reports");
    assert_eq!(remote.read("out/doubled.txt"), local.read("out/doubled.txt"), "the stage's file came back");
    drop(workers);
}

#[test]
fn a_worker_killed_mid_action_leaves_the_run_to_retry_it_on_another() {
    let endpoint = service().endpoint.clone();
    let (ws, tool) = tool_workspace("", "slow", "sleep 2; cat src/input.txt", "");
    let mut first = Worker::start(1, &[tool.path()]);
    let caches = tempfile::tempdir().unwrap();
    let cache = caches.path().to_path_buf();
    let path = pipeline(&ws);
    let run = std::thread::spawn(move || {
        run_cli(&path, &["--remote", &endpoint, "--remote-exec", "--remote-cache", "off"], &cache, &[])
    });
    assert!(first.wait_for_an_action(Duration::from_secs(60)), "the first worker never got the action");
    first.kill_hard();
    let second = Worker::start(1, &[tool.path()]);
    let ran = run.join().unwrap();
    let report = ran.report.clone().unwrap_or_else(|| panic!("no report: {ran:?}"));
    let slow = &report.steps[0];
    assert_eq!(slow.status, StepStatus::Passed, "{ran:?}");
    let worker = &slow.remote.as_ref().expect("ran remotely").worker;
    assert!(worker.contains(&format!("-{}-", second.pid().unwrap())), "ran on {worker}, not the second worker");
}

#[test]
fn no_blob_the_service_holds_contains_a_secret() {
    let endpoint = &service().endpoint;
    let secret = format!("sk-remote-{}", nonce());
    let ws = Workspace::new();
    ws.file("src/input.txt", "x");
    ws.file(
        "pipeline.toml",
        r#"[pipeline]
name = "secrets"

[secrets]
TOKEN = { env = "REMOTE_TEST_TOKEN" }

[check.says-it]
run = ["/bin/sh", "-c", "echo token=$TOKEN; echo $TOKEN >&2"]
secrets = ["TOKEN"]

[stage.writes-it]
run = ["/bin/sh", "-c", "echo $TOKEN > out/token.txt"]
secrets = ["TOKEN"]
write = ["out"]

[check.after]
needs = ["writes-it"]
run = ["/bin/sh", "-c", "cat out/token.txt"]
read = ["out"]
"#,
    );
    let workers = [Worker::start(1, &[])];
    let caches = tempfile::tempdir().unwrap();
    for (n, args) in
        [vec!["--remote", endpoint.as_str()], vec!["--remote", endpoint, "--remote-exec"]].into_iter().enumerate()
    {
        let _ = fs_err::remove_dir_all(ws.root().join("out"));
        let ran = run_cli(&pipeline(&ws), &args, &caches.path().join(n.to_string()), &[("REMOTE_TEST_TOKEN", &secret)]);
        assert!(ran.report.is_some(), "{ran:?}");
        assert!(!ran.stderr.contains(&secret));
    }
    for file in service().blob_files() {
        let bytes = fs_err::read(&file).unwrap_or_default();
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{} holds the secret", file.display());
    }
    drop(workers);
}

#[test]
fn a_worker_refuses_a_step_asking_for_more_than_it_allows_and_the_run_says_why() {
    let endpoint = &service().endpoint;
    let (ws, tool) = tool_workspace("", "greedy", "cat src/input.txt", "memory = \"64GiB\"\n");
    let workers = [Worker::start(1, &[tool.path()])];
    let caches = tempfile::tempdir().unwrap();
    let ran = run_cli(&pipeline(&ws), &["--remote", endpoint, "--remote-exec"], caches.path(), &[]);
    let report = ran.report.clone().unwrap_or_else(|| panic!("no report: {ran:?}"));
    let greedy = &report.steps[0];
    assert_eq!(greedy.status, StepStatus::Error, "{ran:?}");
    let reason = greedy.reason.clone().unwrap_or_default();
    assert!(reason.contains("this worker allows at most") && reason.contains("--max-memory"), "{reason}");
    drop(workers);
}

/// A copy of the example `pipelines/NAME/` workspace with its pipeline
/// adapted to it (plugin paths absolute, generated directories left out).
fn example(name: &str) -> Workspace {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let ws = Workspace::new();
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(repo.join("pipelines").join(name).join("."))
        .arg(ws.root())
        .status()
        .unwrap();
    assert!(status.success());
    for generated in ["work", "build", ".cleanroom"] {
        let _ = fs_err::remove_dir_all(ws.root().join(generated));
    }
    let toml = fs_err::read_to_string(repo.join("pipelines").join(format!("{name}.toml"))).unwrap();
    let dist = repo.join("plugins/dist").canonicalize().unwrap().display().to_string();
    ws.file("pipeline.toml", &toml.replace(&format!("workspace = \"{name}\""), "").replace("../plugins/dist", &dist));
    ws
}

#[test]
fn the_factory_loop_on_the_pool_retries_and_judges_as_it_does_here() {
    let endpoint = &service().endpoint;
    let home = PathBuf::from(std::env::var("HOME").unwrap());
    let (rustup, cargo) = (home.join(".rustup"), home.join(".cargo/bin"));
    let local = example("factory");
    let caches = tempfile::tempdir().unwrap();
    let here = run_cli(&pipeline(&local), &["--no-cache"], &caches.path().join("local"), &[]);
    let here_report = here.report.clone().unwrap_or_else(|| panic!("no report: {here:?}"));
    assert!(here_report.attempts.len() > 1, "the example retries its stage: {here:?}");

    let workers = [Worker::start(1, &[&rustup, &cargo]), Worker::start(1, &[&rustup, &cargo])];
    let remote = example("factory");
    let args = ["--remote", endpoint.as_str(), "--remote-exec", "--remote-cache", "off"];
    let there = run_cli(&pipeline(&remote), &args, &caches.path().join("remote"), &[]);
    let there_report = there.report.clone().unwrap_or_else(|| panic!("no report: {there:?}"));
    assert_eq!(here.code, there.code, "{there:?}");
    assert!(there_report.steps.iter().all(|s| s.remote.is_some()), "every step ran on the pool: {there:?}");
    assert_eq!(comparable(&here_report), comparable(&there_report), "the same steps, rounds, retries and feedback");
    drop(workers);
}

#[test]
fn blobs_larger_than_a_batch_go_through_bytestream_both_ways() {
    let endpoint = &service().endpoint;
    let ws = Workspace::new();
    // A 5 MB input (the client writes it with ByteStream) and a 6 MB output
    // (the worker writes it, the client reads it back).
    let line = format!("{}\n", nonce());
    ws.file("src/big.txt", &line.repeat(5_000_000 / line.len()));
    ws.file(
        "pipeline.toml",
        "[pipeline]\nname = \"big\"\n\n[stage.grow]\nrun = [\"/bin/sh\", \"-c\", \"cat src/big.txt src/big.txt | head -c 6000000 > out/bigger.txt\"]\nread = [\"src\"]\nwrite = [\"out\"]\n",
    );
    let workers = [Worker::start(1, &[])];
    let caches = tempfile::tempdir().unwrap();
    let ran = run_cli(&pipeline(&ws), &["--remote", endpoint, "--remote-exec"], &caches.path().join("a"), &[]);
    let report = ran.report.clone().unwrap_or_else(|| panic!("no report: {ran:?}"));
    assert_eq!(report.steps[0].status, StepStatus::Passed, "{ran:?}");
    assert!(report.steps[0].remote.is_some(), "{ran:?}");
    let bigger = ws.read("out/bigger.txt");
    assert_eq!(bigger.len(), 6_000_000);
    assert!(ws.read("src/big.txt").repeat(2).starts_with(&bigger));
    // And from the cache, in another checkout.
    let other = Workspace::new();
    other.file("src/big.txt", &ws.read("src/big.txt")).file("pipeline.toml", &ws.read("pipeline.toml"));
    let again = run_cli(&pipeline(&other), &["--remote", endpoint], &caches.path().join("b"), &[]);
    let hit = again.report.unwrap_or_else(|| panic!("{}", again.stderr));
    assert!(hit.steps[0].remote.as_ref().is_some_and(|r| r.cached), "{hit:?}");
    assert_eq!(other.read("out/bigger.txt"), bigger);
    drop(workers);
}

#[test]
fn a_sealed_pool_is_believed_by_clients_holding_the_team_key() {
    let endpoint = &service().endpoint;
    let key = format!("team-key-{}", nonce());
    let head =
        format!("[secrets]\nTEAM = {{ env = \"TEAM_KEY\" }}\n\n[remote]\nendpoint = {endpoint:?}\nseal = \"TEAM\"\n\n");
    let (ws, tool) = tool_workspace(&head, "c", "cat src/input.txt", "");
    let workers = [Worker::start_sealed(1, &[tool.path()], Some(&key))];
    let caches = tempfile::tempdir().unwrap();
    let ran = run_cli(&pipeline(&ws), &["--remote-exec"], &caches.path().join("a"), &[("TEAM_KEY", &key)]);
    let report = ran.report.clone().unwrap_or_else(|| panic!("no report: {ran:?}"));
    assert_eq!(report.steps[0].status, StepStatus::Passed, "{ran:?}");
    // The pool's sealed result answers another checkout from the cache.
    let other = Workspace::new();
    other.file("src/input.txt", &ws.read("src/input.txt")).file("pipeline.toml", &ws.read("pipeline.toml"));
    let again = run_cli(&pipeline(&other), &[], &caches.path().join("b"), &[("TEAM_KEY", &key)]);
    let hit = again.report.unwrap_or_else(|| panic!("{}", again.stderr));
    assert!(hit.steps[0].remote.as_ref().is_some_and(|r| r.cached), "{hit:?}");
    assert!(!again.stderr.contains(&key));
    drop(workers);
}

#[test]
fn a_step_no_worker_can_take_is_an_error_naming_the_tools_not_a_hang() {
    let endpoint = &service().endpoint;
    // No worker offers this tool, so the service never leases the action.
    let (ws, tool) = tool_workspace("", "orphan", "cat src/input.txt", "timeout = \"1s\"\n");
    let caches = tempfile::tempdir().unwrap();
    let ran = run_cli(&pipeline(&ws), &["--remote", endpoint, "--remote-exec"], caches.path(), &[]);
    let report = ran.report.clone().unwrap_or_else(|| panic!("no report: {ran:?}"));
    let orphan = &report.steps[0];
    assert_eq!(orphan.status, StepStatus::Error, "{ran:?}");
    let reason = orphan.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("no worker returned a result") && reason.contains(&tool.path().display().to_string()),
        "{reason}"
    );
}
