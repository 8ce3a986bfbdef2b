//! Native `run` steps in the kernel jail: real programs, real kernel.
//! Each attack has a control (the same step with the access granted) so the
//! test proves the probe could have succeeded.

use std::io::ErrorKind;
use std::net::TcpListener;

use crate::{cleanroom, repo, Ran, Workspace};

fn run_json(ws: &Workspace, steps: &str) -> (Ran, serde_json::Value) {
    let ran = ws.run(&format!("[pipeline]\nname = \"native\"\n\n{steps}"), &["run", "--format", "json"]);
    let json = ran.json();
    (ran, json)
}

fn step<'j>(json: &'j serde_json::Value, id: &str) -> &'j serde_json::Value {
    json["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("no step {id}: {json:#}"))
}

/// A jailed program cannot read a path outside its mounts.
#[test]
fn jailed_program_cannot_read_ungranted_paths() {
    let ws = Workspace::new();
    ws.file("granted/ok.txt", "visible").file("secret.txt", "TOPSECRET");
    let (ran, json) = run_json(
        &ws,
        "[check.control]\nrun = [\"cat\", \"granted/ok.txt\"]\nread = [\"granted\"]\n\n\
         [check.peek]\nrun = [\"cat\", \"secret.txt\"]\nread = [\"granted\"]\n\n\
         [check.peek-absolute]\nrun = [\"cat\", \"/etc/hostname\"]\n",
    );
    assert_eq!(ran.code, 1, "{ran:?}");
    assert_eq!(step(&json, "control")["status"], "passed", "{ran:?}");
    assert_eq!(step(&json, "control")["stdout"], "visible");
    for id in ["peek", "peek-absolute"] {
        let s = step(&json, id);
        assert_eq!(s["status"], "failed", "{ran:?}");
        let message = s["findings"][0]["message"].as_str().unwrap();
        assert!(message.contains("exited with status 1") && message.contains("Permission denied"), "{message}");
    }
    assert!(!ran.stdout.contains("TOPSECRET"), "{ran:?}");
}

/// A read-only mount stays unchanged whatever the program tries.
#[test]
fn jailed_program_cannot_write_a_read_only_mount() {
    let ws = Workspace::new();
    ws.file("data/file.txt", "original");
    let (ran, json) = run_json(
        &ws,
        "[check.overwrite]\nrun = [\"sh\", \"-c\", \"echo changed > data/file.txt\"]\nread = [\"data\"]\n\n\
         [check.truncate]\nrun = [\"truncate\", \"-s\", \"0\", \"data/file.txt\"]\nread = [\"data\"]\n\n\
         [check.remove]\nrun = [\"rm\", \"-f\", \"data/file.txt\"]\nread = [\"data\"]\n\n\
         [check.create]\nrun = [\"touch\", \"data/new.txt\"]\nread = [\"data\"]\n",
    );
    assert_eq!(ran.code, 1, "{ran:?}");
    for id in ["overwrite", "truncate", "remove", "create"] {
        assert_eq!(step(&json, id)["status"], "failed", "{id}: {ran:?}");
    }
    assert_eq!(fs_err::read_to_string(ws.path().join("data/file.txt")).unwrap(), "original");
    assert!(!ws.path().join("data/new.txt").exists());
}

/// Without `network = true` a program cannot reach even a listener on
/// 127.0.0.1; with it, it can (the control).
#[test]
fn jailed_program_cannot_connect_to_loopback_without_network() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let ws = Workspace::new();
    let dial = format!("run = [\"bash\", \"-c\", \"echo hello > /dev/tcp/127.0.0.1/{port}\"]\n");
    let (ran, json) = run_json(&ws, &format!("[check.dial]\n{dial}"));
    assert_eq!(step(&json, "dial")["status"], "failed", "{ran:?}");
    let accepted = listener.accept();
    assert!(matches!(&accepted, Err(e) if e.kind() == ErrorKind::WouldBlock), "a connection arrived: {accepted:?}");

    let (ran, json) = run_json(&ws, &format!("[check.dial-allowed]\n{dial}network = true\n"));
    assert_eq!(step(&json, "dial-allowed")["status"], "passed", "control: {ran:?}");
    assert!(listener.accept().is_ok(), "the control connection must arrive");
}

/// The program sees exactly the granted variables plus PATH, HOME and TMPDIR;
/// a secret in the runner's environment stays out.
#[test]
fn jailed_program_sees_only_granted_environment() {
    let ws = Workspace::new();
    ws.file("pipeline.toml", "[pipeline]\nname = \"env\"\n[check.env]\nrun = [\"env\"]\nenv = { GRANTED = \"yes\" }\n");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cleanroom"))
        .args(["run", "--format", "json", "pipeline.toml"])
        .current_dir(ws.path())
        .env("CLEANROOM_TEST_SECRET", "hunter2")
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let stdout = json["steps"][0]["stdout"].as_str().unwrap();
    let mut names: Vec<&str> = stdout.lines().filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
    names.sort();
    assert_eq!(names, ["GRANTED", "HOME", "PATH", "TMPDIR"], "{stdout}");
    assert!(stdout.contains("GRANTED=yes\n"), "{stdout}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("hunter2"));
}

/// At its deadline the program and its children are killed and the step is
/// an error; children left behind by a program that exits are killed too.
#[test]
fn timeout_kills_the_program_and_its_children() {
    // The program runs in a PID namespace, so the pids it could print are
    // not the host's: each child sleeps under a unique name instead.
    let tag = std::process::id();
    let ws = Workspace::new();
    let (ran, json) = run_json(
        &ws,
        &format!(
            "[check.hang]\nrun = [\"sh\", \"-c\", \"sleep 307.{tag} & echo started; sleep 308\"]\ntimeout = \"1s\"\n\n\
             [check.leave-child]\nrun = [\"sh\", \"-c\", \"sleep 309.{tag} & echo started\"]\n"
        ),
    );
    assert_eq!(ran.code, 1, "{ran:?}");
    let hang = step(&json, "hang");
    assert_eq!(hang["status"], "error");
    assert_eq!(hang["reason"], "timed out after 1s");
    assert_eq!(step(&json, "leave-child")["status"], "passed");
    for (id, name) in [("hang", format!("sleep 307.{tag}")), ("leave-child", format!("sleep 309.{tag}"))] {
        assert_eq!(step(&json, id)["stdout"], "started\n", "the child of `{id}` never started");
        let left = std::process::Command::new("pgrep").args(["-f", &name]).output().unwrap();
        assert!(left.stdout.is_empty(), "the child of `{id}` is still running");
    }
}

/// A stage that fails after writing leaves the workspace byte-for-byte as it
/// was; the same stage succeeding commits exactly its changes.
#[test]
fn failed_stage_leaves_the_workspace_unchanged_and_success_commits() {
    let script = "echo new > out/a.txt; rm out/b.txt; mkdir -p out/sub; echo c > out/sub/c.txt";
    let ws = Workspace::new();
    ws.file("out/a.txt", "old\n").file("out/b.txt", "b\n");
    let (ran, json) =
        run_json(&ws, &format!("[stage.fail]\nrun = [\"sh\", \"-c\", \"{script}; exit 3\"]\nwrite = [\"out\"]\n"));
    assert_eq!(ran.code, 1, "{ran:?}");
    assert_eq!(step(&json, "fail")["status"], "failed");
    assert_eq!(fs_err::read_to_string(ws.path().join("out/a.txt")).unwrap(), "old\n");
    assert_eq!(fs_err::read_to_string(ws.path().join("out/b.txt")).unwrap(), "b\n");
    assert!(!ws.path().join("out/sub").exists());

    let (ran, json) =
        run_json(&ws, &format!("[stage.succeed]\nrun = [\"sh\", \"-c\", \"{script}\"]\nwrite = [\"out\"]\n"));
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(step(&json, "succeed")["changes"], serde_json::json!(["+ out/a.txt", "+ out/sub/c.txt", "- out/b.txt"]));
    assert_eq!(fs_err::read_to_string(ws.path().join("out/a.txt")).unwrap(), "new\n");
    assert!(!ws.path().join("out/b.txt").exists());
}

/// A write directory that does not exist is created only if the stage succeeds.
#[test]
fn missing_write_directory_appears_only_on_success() {
    let ws = Workspace::new();
    let (_, json) =
        run_json(&ws, "[stage.fail]\nrun = [\"sh\", \"-c\", \"echo x > build/x; exit 1\"]\nwrite = [\"build\"]\n");
    assert_eq!(step(&json, "fail")["status"], "failed");
    assert!(!ws.path().join("build").exists(), "a failed stage left `build/` behind");
    let (_, json) = run_json(&ws, "[stage.ok]\nrun = [\"sh\", \"-c\", \"echo x > build/x\"]\nwrite = [\"build\"]\n");
    assert_eq!(step(&json, "ok")["status"], "passed");
    assert_eq!(fs_err::read_to_string(ws.path().join("build/x")).unwrap(), "x\n");
}

/// A program that is not on the step's PATH is refused before anything
/// runs, with a hint naming where it is on this machine.
#[test]
fn program_outside_the_jail_path_is_refused_with_a_hint() {
    let ws = Workspace::new();
    let ran = ws.run("[pipeline]\nname = \"p\"\n[check.c]\nrun = [\"cargo\", \"--version\"]\n", &["validate"]);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("error[CR018]: step `c`: program `cargo` is not on the step's PATH"), "{ran:?}");
    assert!(ran.stderr.contains("add `") && ran.stderr.contains("` to `tools`"), "{ran:?}");
}

/// The example pipeline builds a wasm32-wasip2 program with the real rustc
/// inside the jail and checks the artifact with WebAssembly checks.
#[test]
fn native_build_example_compiles_with_rustc_in_the_jail() {
    let ran = cleanroom(&repo(), &["run", "pipelines/native-build.toml", "--format", "json"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let json = ran.json();
    assert_eq!(step(&json, "build")["status"], "passed");
    assert_eq!(step(&json, "artifact")["status"], "passed");
    let wasm = fs_err::read(repo().join("pipelines/native/build/app.wasm")).unwrap();
    assert!(wasm.starts_with(b"\0asm"), "not WebAssembly");
}

/// When the kernel refuses the jail (here: user namespaces are capped at 0
/// inside a namespace of the test's own), the step is an error that says
/// why; `--allow-unjailed` runs it anyway with Landlock still applied,
/// marks it and warns.
#[test]
fn jail_fails_closed_when_the_kernel_refuses_namespaces() {
    let ws = Workspace::new();
    ws.file("secret.txt", "TOPSECRET").file(
        "pipeline.toml",
        "[pipeline]\nname = \"p\"\n[check.hello]\nrun = [\"echo\", \"hi\"]\n[check.peek]\nrun = [\"cat\", \"secret.txt\"]\n",
    );
    let run = |extra: &str| {
        let script = format!(
            "echo 0 > /proc/sys/user/max_user_namespaces && exec {} run --format json {extra} pipeline.toml",
            env!("CARGO_BIN_EXE_cleanroom")
        );
        let output = std::process::Command::new("unshare")
            .args(["--user", "--map-root-user", "sh", "-c", &script])
            .current_dir(ws.path())
            .output()
            .expect("run unshare (util-linux)");
        let json: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stderr)));
        (output.status.code(), json, String::from_utf8_lossy(&output.stderr).into_owned())
    };

    let (code, json, _) = run("");
    assert_eq!(code, Some(1));
    let hello = step(&json, "hello");
    assert_eq!(hello["status"], "error");
    let reason = hello["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("could not be jailed, so it did not run: cannot create user, mount and network namespaces"),
        "{reason}"
    );
    assert_eq!(hello["stdout"], "", "the program must not have run");

    let (code, json, stderr) = run("--allow-unjailed");
    assert_eq!(code, Some(1), "peek must still fail: Landlock applies without namespaces");
    assert_eq!(step(&json, "hello")["status"], "passed");
    assert!(step(&json, "hello")["unjailed"].as_str().unwrap().contains("namespaces"));
    assert_eq!(step(&json, "peek")["status"], "failed");
    assert!(stderr.contains("warning: step `hello` ran WITHOUT the kernel jail"), "{stderr}");
}

/// `memory` on a native step caps its whole process tree: a child that
/// grows past the cap is killed and the step fails saying so; the same
/// program under the cap (the control) passes.
#[test]
fn a_native_step_s_memory_cap_covers_its_children() {
    let ws = Workspace::new();
    let hog =
        |mib: u32| format!("[\"sh\", \"-c\", \"python3 -c 'x = bytearray({mib} * 1024 * 1024); print(len(x))'\"]");
    let (ran, json) = run_json(
        &ws,
        &format!(
            "[check.control]\nrun = {}\nmemory = \"256MiB\"\n\n[check.hog]\nrun = {}\nmemory = \"64MiB\"\n",
            hog(16),
            hog(512)
        ),
    );
    assert_eq!(step(&json, "control")["status"], "passed", "{ran:?}");
    let hog = step(&json, "hog");
    assert_eq!(hog["status"], "failed", "{ran:?}");
    assert!(hog["reason"].as_str().unwrap().contains("ran out of memory (its `memory` cap of 64MiB)"), "{hog}");
    let dry = ws.run(
        "[pipeline]\nname = \"native\"\n\n[check.hog]\nrun = [\"true\"]\nmemory = \"64MiB\"\n",
        &["run", "--dry-run"],
    );
    assert!(dry.stdout.contains("memory 64MiB (cgroup)"), "{dry:?}");
}
