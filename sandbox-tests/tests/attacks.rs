//! The attack suite: hostile plugins and programs run through real
//! pipelines. Every attack must stay contained.
//!
//! Run: `cargo test -p sandbox-tests --test attacks` (part of
//! `scripts/test`). It prints one line per attack and closes with
//! `N attacks, N contained, 0 escaped`; it fails when any attack escapes.
//! An argument filters attacks by name.
//!
//! Each case asserts four things, through [`attack`]: the attack is
//! contained, the attacking step is reported `failed` or `error` with a
//! reason, a bystander step in the same run still passes, and the workspace
//! is byte-for-byte intact outside what the step was allowed to change.
//! Attacks that validation refuses assert the refusal instead.
#![expect(clippy::print_stdout, reason = "a test harness reports on stdout")]

use std::io::ErrorKind;
use std::net::TcpListener;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;
use std::time::{Duration, Instant};

use cleanroom::{RunReport, StepStatus};
use sandbox_tests::{cleanroom_binary, findings, step, Workspace, GUESTS};

// Attacks on the clean room's newer promises, one file per area (each
// exports `cases()`); they share the helpers below.
#[path = "attacks/git.rs"]
mod git;
#[path = "attacks/governance.rs"]
mod governance;
#[path = "attacks/jail.rs"]
mod jail;
#[path = "attacks/judge.rs"]
mod judge;
#[path = "attacks/leaks.rs"]
mod leaks;
#[path = "attacks/registry.rs"]
mod registry;
#[path = "attacks/remote.rs"]
mod remote;
#[path = "attacks/search.rs"]
mod search;
#[path = "attacks/services.rs"]
mod services;
#[path = "attacks/subjects.rs"]
mod subjects;
#[path = "attacks/trust.rs"]
mod trust;

/// One attack: a name and a function that panics if it escaped.
struct Case {
    name: String,
    run: Box<dyn Fn()>,
}

fn case(name: &str, run: impl Fn() + 'static) -> Case {
    Case { name: name.to_string(), run: Box::new(run) }
}

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let cases: Vec<Case> =
        cases().into_iter().filter(|c| filter.as_ref().is_none_or(|f| c.name.contains(f.as_str()))).collect();
    std::panic::set_hook(Box::new(|_| {}));
    let (mut contained, mut escaped) = (0, 0);
    for case in &cases {
        let started = Instant::now();
        match catch_unwind(AssertUnwindSafe(|| (case.run)())) {
            Ok(()) => {
                contained += 1;
                println!("contained  {}  ({} ms)", case.name, started.elapsed().as_millis());
            }
            Err(panic) => {
                escaped += 1;
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                println!("ESCAPED    {}\n           {}", case.name, message.replace('\n', "\n           "));
            }
        }
    }
    println!("{} attacks, {contained} contained, {escaped} escaped", cases.len());
    if escaped > 0 || cases.is_empty() {
        std::process::exit(1);
    }
}

/// Runs `steps` (plus a bystander check) in `ws`, and checks the four
/// things every attack must leave true; `may_change` lists workspace paths
/// the attacking step was allowed to change. Returns the report.
fn attack(ws: &Workspace, guests: &[&str], steps: &str, attacker: &str, may_change: &[&str]) -> RunReport {
    let before = ws.snapshot();
    let mut guests = guests.to_vec();
    guests.push("noop");
    let report = ws.run(&guests, &format!("{steps}\n[check.bystander]\nplugin = \"noop\"\n"));
    assert_contained(&report, attacker);
    let mut after = ws.snapshot();
    let mut before = before;
    for allowed in may_change {
        before.retain(|path, _| !path.starts_with(allowed));
        after.retain(|path, _| !path.starts_with(allowed));
    }
    assert_eq!(before, after, "the workspace changed");
    report
}

/// The attacking step failed or errored, saying why, and the bystander
/// beside it still passed.
fn assert_contained(report: &RunReport, attacker: &str) {
    let attacking = step(report, attacker);
    assert!(
        matches!(attacking.status, StepStatus::Failed | StepStatus::Error),
        "the attacking step was reported {:?}",
        attacking.status
    );
    assert!(attacking.reason.is_some() || !attacking.findings.is_empty(), "the attacking step has no reason");
    assert_eq!(step(report, "bystander").status, StepStatus::Passed, "the bystander did not finish");
}

/// A finished process's exit code and output, for a failure message.
fn output_text(output: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every finding of `id` is ruled `denied`.
fn all_denied(report: &RunReport, id: &str) {
    let all = findings(report, id);
    assert!(!all.is_empty(), "the probe reported nothing");
    for (rule, message) in all {
        assert_eq!(rule, "denied", "{message}");
    }
}

/// A workspace with a readable `granted/` directory, a `secret/` it must
/// never read, and symlinks out of `granted/`.
fn secret_workspace() -> Workspace {
    let ws = Workspace::new();
    ws.file("granted/visible.txt", "visible").file("secret/key.txt", "TOPSECRET").file("config/app.toml", "x = 1");
    ws.file("config/secret.env", "TOKEN=TOPSECRET")
        .dir(".cleanroom/runs/old")
        .file(".cleanroom/runs/old/report.json", "TOPSECRET");
    let root = ws.root();
    let link = |target: &str, name: &str| std::os::unix::fs::symlink(target, root.join("granted").join(name)).unwrap();
    link("../secret", "link-relative");
    link("../secret/key.txt", "link-file");
    link(&root.join("secret/key.txt").display().to_string(), "link-absolute");
    link("nowhere", "link-dangling");
    link("chain-2", "chain-1");
    link("../secret/key.txt", "chain-2");
    ws
}

/// A read attack: `read_probe` reading `targets` with `read` granted.
fn read_attack(name: &str, read: &'static str, targets: &'static [&'static str]) -> Case {
    case(name, move || {
        let ws = secret_workspace();
        let host_secret = ws.root().join("secret/key.txt").display().to_string();
        let targets: Vec<String> =
            targets.iter().map(|t| if *t == "HOST-SECRET" { host_secret.clone() } else { t.to_string() }).collect();
        let report = attack(
            &ws,
            &["read_probe"],
            &format!("[check.snoop]\nplugin = \"read_probe\"\nread = [{read}]\nconfig = {{ paths = {targets:?} }}\n"),
            "snoop",
            &[],
        );
        all_denied(&report, "snoop");
        assert!(!format!("{report:?}").contains("TOPSECRET"), "the secret leaked");
    })
}

/// A write attack on a read-only mount with `write_probe`.
fn write_attack(name: &str, targets: &'static [&'static str]) -> Case {
    case(name, move || {
        let ws = Workspace::new();
        ws.file("data/file.txt", "original").file("data/nested/deep.txt", "deep");
        let report = attack(
            &ws,
            &["write_probe"],
            &format!(
                "[check.vandal]\nplugin = \"write_probe\"\nread = [\"data\"]\nconfig = {{ paths = {targets:?} }}\n"
            ),
            "vandal",
            &[],
        );
        all_denied(&report, "vandal");
    })
}

/// Validation must refuse `steps` with `code` and `message`, before running.
fn refused(ws: &Workspace, guests: &[&str], steps: &str, code: &str, message: &str) {
    let before = ws.snapshot();
    let diags = ws.plan(guests, steps).expect_err("the pipeline was accepted");
    let text = diags.render();
    assert!(text.contains(&format!("error[{code}]")) && text.contains(message), "{text}");
    assert_eq!(before, ws.snapshot(), "validation changed the workspace");
}

fn barrier_workspace() -> Workspace {
    let ws = Workspace::new();
    ws.file("scenarios/s.toml", "expected = \"the answer is 42\"")
        .file("src/main.rs", "fn main() {}")
        .file("build/app.wasm", "");
    ws
}

const BARRIER: &str = "[barrier]\nholdout = [\"scenarios\"]\nprivate = [\"src\"]\n";

fn cases() -> Vec<Case> {
    let mut all = base_cases();
    all.extend(leaks::cases());
    all.extend(jail::cases());
    all.extend(trust::cases());
    all.extend(subjects::cases());
    all.extend(services::cases());
    all.extend(judge::cases());
    all.extend(remote::cases());
    all.extend(git::cases());
    all.extend(search::cases());
    all.extend(governance::cases());
    all.extend(registry::cases());
    all
}

fn base_cases() -> Vec<Case> {
    vec![
        // --- Paths -----------------------------------------------------
        read_attack("read an ungranted file by absolute path", "\"granted\"", &["/secret/key.txt"]),
        read_attack("list an ungranted directory", "\"granted\"", &["/secret"]),
        read_attack("list the root above the mounts", "\"granted\"", &["/"]),
        read_attack("climb out of a mount with ..", "\"granted\"", &["/granted/../secret/key.txt"]),
        read_attack("climb above the root with ..", "\"granted\"", &["/../secret/key.txt", "/../../etc/passwd"]),
        read_attack(
            "use a relative path with no working directory",
            "\"granted\"",
            &["../secret/key.txt", "secret/key.txt"],
        ),
        read_attack("follow a relative symlink out of the mount", "\"granted\"", &["/granted/link-relative/key.txt"]),
        read_attack(
            "follow a symlink with a trailing slash",
            "\"granted\"",
            &["/granted/link-relative/", "/granted/link-file/"],
        ),
        read_attack("follow an absolute symlink", "\"granted\"", &["/granted/link-absolute"]),
        read_attack("follow a dangling symlink", "\"granted\"", &["/granted/link-dangling"]),
        read_attack("follow a chain of symlinks out", "\"granted\"", &["/granted/chain-1"]),
        read_attack("read the secret by its host path", "\"granted\"", &["HOST-SECRET"]),
        read_attack("read /proc", "\"granted\"", &["/proc/self/environ", "/proc/self/mounts", "/proc/1/cmdline"]),
        read_attack("read /dev and /etc", "\"granted\"", &["/dev/zero", "/dev/null", "/etc/passwd"]),
        read_attack(
            "read a sibling of a single-file mount",
            "\"config/app.toml\"",
            &["/config/secret.env", "/config/../config/secret.env"],
        ),
        read_attack(
            "read the run directory through a root mount",
            "\".\"",
            &["/.cleanroom/runs/old/report.json", "/.cleanroom/runs"],
        ),
        case("read through a symlink a host thread swaps", || {
            let ws = secret_workspace();
            let root = ws.root();
            let swap = root.join("granted/swap");
            std::os::unix::fs::symlink("visible.txt", &swap).unwrap();
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flipper = {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut outward = false;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let temporary = swap.with_file_name("swap.tmp");
                        let target = if outward { "../secret/key.txt" } else { "visible.txt" };
                        let _ = std::os::unix::fs::symlink(target, &temporary);
                        let _ = std::fs::rename(&temporary, &swap);
                        outward = !outward;
                    }
                })
            };
            let targets = vec!["/granted/swap"; 3000];
            let report = ws.run(
                &["read_probe"],
                &format!(
                    "[check.race]\nplugin = \"read_probe\"\nread = [\"granted\"]\nconfig = {{ paths = {targets:?} }}\n"
                ),
            );
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            flipper.join().unwrap();
            assert_eq!(step(&report, "race").findings.len(), 3000);
            assert!(!format!("{report:?}").contains("TOPSECRET"), "the swapped symlink leaked the secret");
        }),
        write_attack("overwrite, truncate and remove a read-only file", &["/data/file.txt"]),
        write_attack("create a file in a read-only directory", &["/data", "/data/new.txt"]),
        write_attack("remove a read-only directory tree", &["/data/nested"]),
        write_attack("write where nothing is mounted", &["/new.txt", "/data/../escape.txt"]),
        case("hard-link or rename a read-only file into a writable mount", || {
            let ws = Workspace::new();
            ws.file("ro/file.txt", "original").dir("rw");
            let report = attack(
                &ws,
                &["link_probe"],
                "[stage.smuggle]\nplugin = \"link_probe\"\nread = [\"ro\"]\nwrite = [\"rw\"]\n\
                 config = { paths = [\"/ro/file.txt->/rw/link.txt\"] }\n",
                "smuggle",
                &[],
            );
            let reason = step(&report, "smuggle").reason.clone().unwrap_or_default();
            assert!(!reason.contains("succeeded:"), "{reason}");
            assert_eq!(ws.read("ro/file.txt"), "original");
        }),
        case("plant a symlink in a stage's output for the host to follow", || {
            let ws = Workspace::new();
            ws.file("out/keep.txt", "keep");
            let report = ws.run(
                &["noop"],
                "[stage.plant]\nrun = [\"sh\", \"-c\", \"ln -s /etc/passwd out/passwd && ln -s ../secret out/up\"]\nwrite = [\"out\"]\n\
                 [check.bystander]\nplugin = \"noop\"\n",
            );
            let plant = step(&report, "plant");
            assert_eq!(plant.changes, ["! out/passwd (symlink, not applied)", "! out/up (symlink, not applied)"]);
            assert!(fs_err::symlink_metadata(ws.root().join("out/passwd")).is_err(), "the link reached the workspace");
            assert_eq!(step(&report, "bystander").status, StepStatus::Passed);
        }),
        // --- Barrier ---------------------------------------------------
        case("stage mounts the holdout through the workspace root", || {
            refused(
                &barrier_workspace(),
                &["noop_stage"],
                &format!("{BARRIER}[stage.s]\nplugin = \"noop_stage\"\nread = [\".\"]\n"),
                "CR019",
                "`scenarios` is holdout",
            );
        }),
        case("command stage reads the holdout", || {
            refused(
                &barrier_workspace(),
                &[],
                &format!("{BARRIER}[stage.s]\nrun = [\"cat\", \"scenarios/s.toml\"]\nread = [\"scenarios\"]\n"),
                "CR019",
                "mount `scenarios` crosses the barrier",
            );
        }),
        case("stage reaches the holdout through a symlink", || {
            let ws = barrier_workspace();
            std::os::unix::fs::symlink("scenarios", ws.root().join("docs")).unwrap();
            refused(
                &ws,
                &["noop_stage"],
                &format!("{BARRIER}[stage.s]\nplugin = \"noop_stage\"\nread = [\"docs\"]\n"),
                "CR019",
                "`scenarios` is holdout",
            );
        }),
        case("subject reads the holdout", || {
            refused(
                &barrier_workspace(),
                &["fixed_verdicts"],
                &format!("{BARRIER}[evaluator.e]\nplugin = \"fixed_verdicts\"\nsubject = \"build/app.wasm\"\nsubject_read = [\"scenarios\"]\n"),
                "CR019",
                "subject_read `scenarios` crosses the barrier",
            );
        }),
        case("evaluator reads private source", || {
            refused(
                &barrier_workspace(),
                &["fixed_verdicts"],
                &format!("{BARRIER}[evaluator.e]\nplugin = \"fixed_verdicts\"\nread = [\"src\"]\n"),
                "CR019",
                "`src` is private",
            );
        }),
        case("smuggle scenario text back through feedback", || {
            let ws = Workspace::new();
            ws.file("scenarios/secret.toml", "expected = \"the answer is 42\"\n").dir("out");
            let report = ws.run(
                &["feedback_recorder", "fixed_verdicts"],
                "[barrier]\nholdout = [\"scenarios\"]\n\n[stage.record]\nplugin = \"feedback_recorder\"\nwrite = [\"out\"]\n\n\
                 [evaluator.judge]\nplugin = \"fixed_verdicts\"\nneeds = [\"record\"]\nread = [\"scenarios\"]\nretry = \"record\"\n\
                 config = { quote = \"/scenarios/secret.toml\" }\n",
            );
            assert!(report.passed(), "{report:#?}");
            assert_eq!(
                ws.read("out/attempt-2.txt"),
                "scenario alpha: failed 1/1: alpha is wrong\nscenario smuggle: failed 1/1: (withheld: it quoted holdout content)\n",
                "the stage was told more than one summary line per failure"
            );
        }),
        // --- Resources -------------------------------------------------
        case("spin forever", || {
            let ws = Workspace::new();
            let report = attack(
                &ws,
                &["spin_forever"],
                "[check.spin]\nplugin = \"spin_forever\"\ntimeout = \"1s\"\n",
                "spin",
                &[],
            );
            assert_eq!(step(&report, "spin").reason.as_deref(), Some("timed out after 1s"));
        }),
        case("grow memory without end", || {
            let ws = Workspace::new();
            let report = attack(
                &ws,
                &["memory_bomb"],
                "[check.bomb]\nplugin = \"memory_bomb\"\nmemory = \"64MiB\"\n",
                "bomb",
                &[],
            );
            assert_eq!(step(&report, "bomb").reason.as_deref(), Some("exceeded its memory limit of 64MiB"));
        }),
        case("recurse until the stack overflows", || {
            let ws = Workspace::new();
            let report = attack(&ws, &["stack_overflow"], "[check.deep]\nplugin = \"stack_overflow\"\n", "deep", &[]);
            // A Rust guest's shadow stack lives in linear memory, so running
            // off its end is an out-of-bounds trap rather than wasm's own
            // stack-overflow trap; either way the guest dies alone.
            let reason = step(&report, "deep").reason.clone().unwrap_or_default();
            assert!(reason == "crashed: stack overflow" || reason.contains("out of bounds memory access"), "{reason}");
        }),
        case("flood stdout and stderr (truncated, never fatal)", || {
            let ws = Workspace::new();
            let report = ws.run(&["output_flood"], "[check.flood]\nplugin = \"output_flood\"\n");
            let flood = step(&report, "flood");
            assert_eq!(flood.status, StepStatus::Passed, "{:?}", flood.reason);
            assert_eq!((flood.stdout.len(), flood.stderr.len()), (1 << 20, 1 << 20));
            assert_eq!(flood.output_dropped_bytes, 2 * ((8 << 20) - (1 << 20)));
        }),
        case("hand the host 64 MiB in one call", || {
            let ws = Workspace::new();
            ws.dir("out");
            let report = attack(
                &ws,
                &["hostcall_flood"],
                "[stage.flood]\nplugin = \"hostcall_flood\"\nwrite = [\"out\"]\n",
                "flood",
                &[],
            );
            let reason = step(&report, "flood").reason.clone().unwrap_or_default();
            assert!(
                reason.contains("fuel allocated for hostcalls has been exhausted"),
                "the host call was not refused: {reason}"
            );
        }),
        case("write, then fail, trap or time out (plugin stage)", || {
            for how in ["error", "panic", "spin"] {
                let ws = Workspace::new();
                ws.file("out/keep.txt", "original").file("out/gone.txt", "still here");
                attack(
                    &ws,
                    &["write_then_fail"],
                    &format!("[stage.write]\nplugin = \"write_then_fail\"\nwrite = [\"out\"]\ntimeout = \"1s\"\nconfig = {{ how = \"{how}\" }}\n"),
                    "write",
                    &[],
                );
            }
        }),
        case("write one huge file (plugin)", || {
            let ws = Workspace::new();
            ws.dir("out");
            let report = attack(&ws, &["file_flood"], "[stage.fill]\nplugin = \"file_flood\"\nwrite = [\"out\"]\nmax_write = \"64MiB\"\nconfig = { mode = \"big\" }\n", "fill", &[]);
            assert!(
                step(&report, "fill")
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with("exceeded its write quota of 64MiB")),
                "{:?}",
                step(&report, "fill").reason
            );
        }),
        case("create files without end (plugin)", || {
            let ws = Workspace::new();
            ws.dir("out");
            let report = attack(&ws, &["file_flood"], "[stage.fill]\nplugin = \"file_flood\"\nwrite = [\"out\"]\nmax_write = \"16MiB\"\nconfig = { mode = \"many\" }\n", "fill", &[]);
            assert!(
                step(&report, "fill")
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with("exceeded its write quota of 16MiB")),
                "{:?}",
                step(&report, "fill").reason
            );
        }),
        case("write one huge file (native program)", || {
            let ws = Workspace::new();
            ws.dir("out");
            attack(
                &ws,
                &[],
                "[stage.fill]\nrun = [\"sh\", \"-c\", \"head -c 200000000 /dev/zero > out/big\"]\nwrite = [\"out\"]\nmax_write = \"16MiB\"\n",
                "fill",
                &[],
            );
            assert!(!ws.root().join("out/big").exists());
        }),
        case("create files without end (native program)", || {
            let ws = Workspace::new();
            let report = attack(
                &ws,
                &[],
                "[stage.fill]\nrun = [\"sh\", \"-c\", \"i=0; while :; do : > $TMPDIR/f$i; i=$((i+1)); done\"]\nmax_write = \"8MiB\"\ntimeout = \"60s\"\n",
                "fill",
                &[],
            );
            assert!(
                step(&report, "fill")
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with("exceeded its write quota of 8MiB")),
                "{:?}",
                step(&report, "fill").reason
            );
        }),
        case("fork bomb (native program)", || {
            if !pids_controller_available() {
                println!("           (skipped: no pids controller here; only the deadline bounds a fork bomb)");
                return;
            }
            let ws = Workspace::new();
            // The bomb runs in a child; the program itself then execs a
            // sleep, which needs no fork, so it is alive at the deadline
            // however fast the bomb exhausts the limit. The odd duration is
            // the marker that finds leftovers of this run.
            let marker = format!("sleep 30.{}", std::process::id());
            let report = attack(
                &ws,
                &[],
                &format!("[check.bomb]\nrun = [\"sh\", \"-c\", \"b() {{ b & b & }}; b & exec {marker}\"]\ntimeout = \"3s\"\npids = 64\n"),
                "bomb",
                &[],
            );
            assert_eq!(step(&report, "bomb").reason.as_deref(), Some("timed out after 3s"));
            std::thread::sleep(Duration::from_millis(200));
            let left = Command::new("pgrep").args(["-f", &marker]).output().unwrap();
            assert!(left.stdout.is_empty(), "processes outlived the step: {}", String::from_utf8_lossy(&left.stdout));
        }),
        // --- Capabilities ----------------------------------------------
        case("read the host environment (plugin)", || {
            std::env::set_var("CLEANROOM_TEST_SECRET", "hunter2");
            let ws = Workspace::new();
            let report = attack(&ws, &["env_probe"], "[check.env]\nplugin = \"env_probe\"\n", "env", &[]);
            all_denied(&report, "env");
        }),
        case("read the host environment (native program)", || {
            std::env::set_var("CLEANROOM_TEST_SECRET", "hunter2");
            let ws = Workspace::new();
            let report = attack(&ws, &[], "[check.env]\nrun = [\"sh\", \"-c\", \"env; exit 1\"]\n", "env", &[]);
            assert!(!step(&report, "env").stdout.contains("hunter2"), "the program saw the runner's environment");
        }),
        case("open a socket to loopback (plugin)", || {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let ws = Workspace::new();
            let report = attack(
                &ws,
                &["socket_probe"],
                &format!("[check.dial]\nplugin = \"socket_probe\"\nconfig = {{ paths = [{addr:?}] }}\n"),
                "dial",
                &[],
            );
            all_denied(&report, "dial");
            assert!(matches!(listener.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock), "a connection arrived");
        }),
        case("open a socket to loopback (native program)", || {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let port = listener.local_addr().unwrap().port();
            let ws = Workspace::new();
            attack(
                &ws,
                &[],
                &format!("[check.dial]\nrun = [\"bash\", \"-c\", \"echo hi > /dev/tcp/127.0.0.1/{port}\"]\n"),
                "dial",
                &[],
            );
            assert!(matches!(listener.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock), "a connection arrived");
        }),
        case("send an HTTP request to an origin outside allow_hosts", || {
            let (listener, port) = silent_listener();
            let ws = Workspace::new();
            let report = attack(
                &ws,
                &["http_fetch"],
                &format!(
                    "[check.exfil]\nplugin = \"http_fetch\"\nallow_hosts = [\"http://127.0.0.1:{}\"]\nallow_private = true\n\
                     config = {{ url = \"http://127.0.0.1:{port}/steal?data=x\" }}\n",
                    port + 1
                ),
                "exfil",
                &[],
            );
            assert!(step(&report, "exfil").denied_requests[0].contains("not in `allow_hosts`"));
            no_connection(&listener);
        }),
        case("reach loopback through an allowed host name (no allow_private)", || {
            let (listener, port) = silent_listener();
            let ws = Workspace::new();
            let report = attack(
                &ws,
                &["http_fetch"],
                &format!(
                    "[check.rebind]\nplugin = \"http_fetch\"\nallow_hosts = [\"http://localhost:{port}\"]\n\
                     config = {{ url = \"http://localhost:{port}/\" }}\n"
                ),
                "rebind",
                &[],
            );
            let denied = &step(&report, "rebind").denied_requests;
            assert!(denied.iter().any(|d| d.contains("loopback, private or link-local")), "{denied:?}");
            no_connection(&listener);
        }),
        case("reach the cloud metadata address 169.254.169.254", || {
            let ws = Workspace::new();
            let report = attack(
                &ws,
                &["http_fetch"],
                "[check.metadata]\nplugin = \"http_fetch\"\nallow_hosts = [\"http://169.254.169.254\"]\n\
                 config = { url = \"http://169.254.169.254/latest/meta-data/\" }\n",
                "metadata",
                &[],
            );
            let denied = &step(&report, "metadata").denied_requests;
            assert!(denied.iter().any(|d| d.contains("resolves to 169.254.169.254")), "{denied:?}");
        }),
        case("read a secret the step was not granted", || {
            std::env::set_var("CLEANROOM_ATTACK_KEY", "sk-not-yours-0123456789");
            let ws = Workspace::new();
            let report = attack(
                &ws,
                &["env_probe"],
                "[secrets]\nKEY = { env = \"CLEANROOM_ATTACK_KEY\" }\n[check.env]\nplugin = \"env_probe\"\n",
                "env",
                &[],
            );
            all_denied(&report, "env");
        }),
        case("print a granted secret into the report", || {
            std::env::set_var("CLEANROOM_ATTACK_KEY", "sk-granted-0123456789");
            let ws = Workspace::new();
            let report = attack(
                &ws,
                &["env_probe"],
                "[secrets]\nKEY = { env = \"CLEANROOM_ATTACK_KEY\" }\n[check.env]\nplugin = \"env_probe\"\nsecrets = [\"KEY\"]\n",
                "env",
                &[],
            );
            let seen: Vec<String> = findings(&report, "env").into_iter().map(|(_, m)| m).collect();
            assert!(seen.iter().any(|m| m.contains("KEY=[secret KEY]")), "the probe saw its secret: {seen:?}");
            assert!(!format!("{report:?}").contains("sk-granted-0123456789"), "the report holds the secret");
        }),
        case("load a file that is not a component", || {
            let ws = Workspace::new();
            ws.file("evil.wasm", "\0asm but not really");
            let diags = cleanroom_plan(
                &ws,
                "[pipeline]\nname = \"x\"\n[plugins]\nevil = \"evil.wasm\"\n[check.c]\nplugin = \"evil\"\n",
            );
            assert!(diags.contains("error[CR011]") && diags.contains("is not a WebAssembly component"), "{diags}");
        }),
        case("load a truncated component", || {
            let ws = Workspace::new();
            let bytes = fs_err::read(sandbox_tests::guest("noop")).unwrap();
            fs_err::write(ws.root().join("cut.wasm"), &bytes[..bytes.len() * 2 / 3]).unwrap();
            let diags = cleanroom_plan(
                &ws,
                "[pipeline]\nname = \"x\"\n[plugins]\ncut = \"cut.wasm\"\n[check.c]\nplugin = \"cut\"\n",
            );
            assert!(diags.contains("error[CR011]"), "{diags}");
        }),
        case("load a plugin of another world", || {
            refused(
                &Workspace::new(),
                &["noop_stage"],
                "[check.c]\nplugin = \"noop_stage\"\n",
                "CR012",
                "exports the `stage` world",
            );
        }),
        case("load a component that imports wasi:http on a step without allow_hosts", || {
            refused(
                &Workspace::new(),
                &["http_probe"],
                "[check.c]\nplugin = \"http_probe\"\n",
                "CR014",
                "wasi:http/outgoing-handler",
            );
        }),
        case("load a component that imports an interface the host does not provide", || {
            refused(
                &Workspace::new(),
                &["foreign_import"],
                "[check.c]\nplugin = \"foreign_import\"\n",
                "CR014",
                "evil:probe/dial",
            );
        }),
        case("nest the config ten thousand levels deep", || {
            let ws = Workspace::new();
            let deep = format!("{}1{}", "{a=".repeat(10_000), "}".repeat(10_000));
            let diags = cleanroom_plan(
                &ws,
                &format!("[pipeline]\nname = \"x\"\n[check.c]\nrun = [\"true\"]\nconfig = {deep}\n"),
            );
            assert!(diags.contains("error[CR002]") && diags.contains("recursion"), "{diags}");
        }),
        case("pass a 16 MiB config (accepted, never fatal)", || {
            let ws = Workspace::new();
            let big = "x".repeat(16 << 20);
            let report = attack(
                &ws,
                &["write_probe"],
                &format!("[check.big]\nplugin = \"write_probe\"\nread = []\nconfig = {{ paths = [\"/nowhere\"], padding = \"{big}\" }}\n"),
                "big",
                &[],
            );
            let reason = step(&report, "big").reason.clone().unwrap_or_default();
            assert!(reason.contains("unknown field `padding`"), "{reason}");
        }),
        // --- Concurrency -----------------------------------------------
        case("two concurrent stages write the same directory", || {
            let ws = Workspace::new();
            ws.dir("out");
            refused(
                &ws,
                &[],
                "[stage.a]\nrun = [\"true\"]\nwrite = [\"out\"]\n[stage.b]\nrun = [\"true\"]\nwrite = [\"out\"]\n",
                "CR023",
                "may run at the same time",
            );
        }),
        case("a reader runs while a writer changes its input", || {
            let ws = Workspace::new();
            ws.file("out/x", "x");
            refused(
                &ws,
                &["noop"],
                "[stage.a]\nrun = [\"true\"]\nwrite = [\"out\"]\n[check.b]\nplugin = \"noop\"\nread = [\"out/x\"]\n",
                "CR023",
                "`a` writes `out` and `b` reads `out/x`",
            );
        }),
        // --- Faults ----------------------------------------------------
        case("SIGKILL the runner while a stage's writes are committed", sigkill_during_commit),
        case(
            "plant the runner's scratch directory to collect staged copies or to have the sweep delete",
            plant_scratch,
        ),
        case("every guest is attacked by a case", every_guest_is_attacked),
    ]
}

fn cleanroom_plan(ws: &Workspace, toml: &str) -> String {
    let pipeline = ws.root().join("pipeline.toml");
    fs_err::write(&pipeline, toml).unwrap();
    match cleanroom::Plan::load(&pipeline) {
        Ok(_) => "accepted".into(),
        Err(diags) => diags.render(),
    }
}

/// Kills the runner while it applies 2000 changed files; every file must be
/// wholly old or wholly new, and `--resume` must finish the run.
fn sigkill_during_commit() {
    let ws = Workspace::new();
    for i in 0..2000 {
        ws.file(&format!("out/f{i:04}"), &format!("old {i}\n"));
    }
    let toml = "[pipeline]\nname = \"commit\"\n[stage.rewrite]\n\
        run = [\"sh\", \"-c\", \"for f in out/*; do echo \\\"new ${f#out/f}\\\" > $f; done\"]\nwrite = [\"out\"]\ntimeout = \"2m\"\n";
    ws.file("pipeline.toml", toml);
    let mut child =
        Command::new(cleanroom_binary()).args(["run", "pipeline.toml"]).current_dir(ws.root()).spawn().unwrap();
    let started = Instant::now();
    loop {
        let first = ws.read("out/f0000");
        if first.starts_with("new") || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (mut old, mut new) = (0, 0);
    for i in 0..2000 {
        let text = ws.read(&format!("out/f{i:04}"));
        if text == format!("old {i}\n") {
            old += 1;
        } else if text == format!("new {i:04}\n") {
            new += 1;
        } else {
            panic!("out/f{i:04} is half-written: {text:?}");
        }
    }
    let strays: Vec<String> = ws.snapshot().into_keys().filter(|p| p.contains("cleanroom-tmp")).collect();
    assert!(strays.is_empty(), "temporary files were left in the workspace: {strays:?}");
    let resumed = Command::new(cleanroom_binary())
        .args(["run", "--resume", "pipeline.toml"])
        .current_dir(ws.root())
        .output()
        .unwrap();
    assert_eq!(resumed.status.code(), Some(0), "{}", String::from_utf8_lossy(&resumed.stdout));
    for i in 0..2000 {
        assert_eq!(ws.read(&format!("out/f{i:04}")), format!("new {i:04}\n"));
    }
    println!("           (killed with {old} files old and {new} new)");
}

/// Another local user plants `$TMPDIR/cleanroom-<uid>`, the directory every
/// runner keeps its scratch space in and sweeps at start: as a symlink to a
/// directory of the victim's (for the sweep to empty it), as a directory the
/// attacker owns, and as a world-writable one (to read the staged copies of
/// a running stage). The runner uses and sweeps none of them, and the run
/// still works.
fn plant_scratch() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let uid = fs_err::metadata("/proc/self").unwrap().uid();
    for plant in ["symlink", "foreign owner", "world-writable"] {
        let tmp = tempfile::tempdir().unwrap();
        let planted = tmp.path().join(format!("cleanroom-{uid}"));
        // What the attacker hopes to see deleted, or filled with staged copies.
        let victim = tmp.path().join("victim");
        fs_err::create_dir_all(victim.join("precious/work")).unwrap();
        fs_err::write(victim.join("precious/work/notes"), "keep me").unwrap();
        match plant {
            "symlink" => std::os::unix::fs::symlink(&victim, &planted).unwrap(),
            _ => {
                fs_err::create_dir(&planted).unwrap();
                fs_err::create_dir_all(planted.join("4242-old/stage-x")).unwrap();
                if plant == "foreign owner" {
                    std::os::unix::fs::chown(&planted, Some(65534), Some(65534)).unwrap();
                } else {
                    fs_err::set_permissions(&planted, std::fs::Permissions::from_mode(0o777)).unwrap();
                }
            }
        }
        let before: Vec<_> = walk(tmp.path());
        let ws = Workspace::new();
        ws.file("out/kept", "old").file(
            "pipeline.toml",
            "[pipeline]\nname = \"plant\"\n[stage.write]\nrun = [\"sh\", \"-c\", \"echo new > out/kept\"]\nwrite = [\"out\"]\n\
             [check.read]\nrun = [\"cat\", \"out/kept\"]\nread = [\"out\"]\nneeds = [\"write\"]\n",
        );
        let ran = Command::new(cleanroom_binary())
            .args(["run", "pipeline.toml"])
            .current_dir(ws.root())
            .env("TMPDIR", tmp.path())
            .output()
            .unwrap();
        assert_eq!(ran.status.code(), Some(0), "{plant}: {}", output_text(&ran));
        assert_eq!(ws.read("out/kept"), "new\n", "{plant}: the stage's write was not committed");
        assert!(
            String::from_utf8_lossy(&ran.stderr)
                .contains("scratch directories go straight into the temporary directory"),
            "{plant}: the runner did not say why it left the planted directory alone: {}",
            output_text(&ran)
        );
        assert_eq!(walk(tmp.path()), before, "{plant}: the runner changed the planted directory or the victim's files");
    }
}

/// Every path under `dir` (not following symlinks), sorted.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in fs_err::read_dir(&at).unwrap().flatten() {
            let path = entry.path();
            out.push(path.strip_prefix(dir).unwrap().display().to_string());
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Every guest crate is listed in `GUESTS`, and every listed guest is used
/// by an attack in this file: a new hostile guest cannot go untested.
fn every_guest_is_attacked() {
    let source = [
        include_str!("attacks.rs"),
        include_str!("attacks/jail.rs"),
        include_str!("attacks/judge.rs"),
        include_str!("attacks/leaks.rs"),
        include_str!("attacks/services.rs"),
        include_str!("attacks/subjects.rs"),
        include_str!("attacks/trust.rs"),
    ]
    .concat();
    for name in GUESTS {
        assert!(source.contains(&format!("\"{name}\"")), "guest `{name}` is used by no attack");
    }
    let guests_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("guests");
    for entry in fs_err::read_dir(&guests_dir).unwrap() {
        let dir = entry.unwrap().path();
        let manifest = dir.join("Cargo.toml");
        if manifest.is_file() && fs_err::read_to_string(&manifest).unwrap().contains("cdylib") {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            assert!(GUESTS.contains(&name.as_str()), "guest `{name}` is not listed in GUESTS");
        }
    }
}

/// A loopback listener that must never see a connection, and its port.
fn silent_listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

fn no_connection(listener: &TcpListener) {
    assert!(matches!(listener.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock), "a connection arrived");
}

/// Whether this machine lets the runner create a pids-limited cgroup.
fn pids_controller_available() -> bool {
    let probe = format!("cleanroom-probe-{}", std::process::id());
    ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"].iter().any(|parent| {
        let dir = std::path::Path::new(parent).join(&probe);
        let ok = std::path::Path::new(parent).join("cgroup.procs").exists()
            && std::fs::create_dir(&dir).is_ok()
            && fs_err::write(dir.join("pids.max"), "64").is_ok();
        let _ = std::fs::remove_dir(&dir);
        ok
    })
}
