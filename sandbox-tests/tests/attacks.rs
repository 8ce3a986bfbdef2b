//! Attacks that must stay contained. Each test runs a hostile guest through a
//! real pipeline and checks that the attack failed, that the step is
//! reported as it should be, and that the rest of the run still finished.

use std::io::ErrorKind;
use std::net::TcpListener;

use cleanroom::StepStatus;
use sandbox_tests::{findings, step, Workspace, GUESTS};

/// Every finding of `id` is `denied`, except those whose message starts with
/// one of `allowed` (controls proving the probe can succeed at all).
fn assert_only_controls_succeeded(report: &cleanroom::RunReport, id: &str, allowed: &[&str]) {
    let all = findings(report, id);
    assert!(!all.is_empty(), "probe `{id}` reported nothing: {report:#?}");
    for (rule, message) in &all {
        let is_control = allowed.iter().any(|a| message.starts_with(a));
        let expected = if is_control { "succeeded" } else { "denied" };
        assert_eq!(rule, expected, "{message}");
    }
    for control in allowed {
        assert!(all.iter().any(|(_, m)| m.starts_with(control)), "control `{control}` was not tried");
    }
}

#[test]
fn ungranted_paths_and_symlinks_out_of_a_mount_cannot_be_read() {
    let ws = Workspace::new();
    ws.file("granted/visible.txt", "visible").file("secret/key.txt", "TOPSECRET");
    let root = ws.root();
    let link = |target: &str, name: &str| std::os::unix::fs::symlink(target, root.join("granted").join(name)).unwrap();
    link("../secret", "link-relative");
    link(&root.join("secret/key.txt").display().to_string(), "link-absolute");
    link("nowhere", "link-dangling");
    link("chain-2", "chain-1");
    link("../secret/key.txt", "chain-2");
    let host_secret = root.join("secret/key.txt").display().to_string();

    let targets = [
        "/granted/visible.txt",
        "/secret/key.txt",
        "/secret",
        "/",
        "/pipeline.toml",
        "/granted/../secret/key.txt",
        "/../secret/key.txt",
        "../secret/key.txt",
        "secret/key.txt",
        "/granted/link-relative/key.txt",
        "/granted/link-relative/",
        "/granted/link-absolute",
        "/granted/link-dangling",
        "/granted/chain-1",
        "/granted/visible.txt/",
        "/etc/passwd",
        "/proc/self/environ",
        "/dev/zero",
        host_secret.as_str(),
    ];
    let report = ws.run(
        &["read_probe"],
        &format!("[check.snoop]\nplugin = \"read_probe\"\nread = [\"granted\"]\nconfig = {{ paths = {targets:?} }}\n"),
    );
    assert_only_controls_succeeded(&report, "snoop", &["read `/granted/visible.txt`: read 7 bytes"]);
    let everything = format!("{report:?}");
    assert!(!everything.contains("TOPSECRET"), "secret leaked: {everything}");
}

#[test]
fn read_only_mount_cannot_be_written_truncated_or_removed() {
    let ws = Workspace::new();
    ws.file("data/file.txt", "original").file("data/nested/deep.txt", "deep");
    let report = ws.run(
        &["write_probe"],
        "[check.vandal]\nplugin = \"write_probe\"\nread = [\"data\"]\n\
         config = { paths = [\"/data/file.txt\", \"/data/nested\", \"/data\", \"/data/new.txt\", \"/data/../pipeline.toml\"] }\n",
    );
    assert_only_controls_succeeded(&report, "vandal", &[]);
    assert_eq!(ws.read("data/file.txt"), "original");
    assert_eq!(ws.read("data/nested/deep.txt"), "deep");
    assert!(!ws.root().join("data/new.txt").exists());
    assert!(!ws.root().join("data/planted-by-probe").exists());
    assert!(!ws.root().join("data/nested/planted-by-probe").exists());
    assert!(ws.read("pipeline.toml").starts_with("[pipeline]"));
}

#[test]
fn single_file_mount_hides_its_siblings() {
    let ws = Workspace::new();
    ws.file("config/app.toml", "x = 1").file("config/secret.env", "TOKEN=TOPSECRET");
    let report = ws.run(
        &["read_probe"],
        "[check.peek]\nplugin = \"read_probe\"\nread = [\"config/app.toml\"]\n\
         config = { paths = [\"/config/app.toml\", \"/config/secret.env\", \"/config/../config/secret.env\"] }\n",
    );
    assert_only_controls_succeeded(&report, "peek", &["read `/config/app.toml`: read 5 bytes"]);
    assert!(!format!("{report:?}").contains("TOPSECRET"));
}

#[test]
fn host_environment_variables_and_arguments_are_invisible() {
    // SAFETY of intent: the variable is set before the run starts any thread
    // that reads the environment; the point is that the guest cannot see it.
    std::env::set_var("CLEANROOM_TEST_SECRET", "hunter2");
    let ws = Workspace::new();
    let report = ws.run(&["env_probe"], "[check.env]\nplugin = \"env_probe\"\n");
    assert_eq!(step(&report, "env").status, StepStatus::Passed, "{:?}", findings(&report, "env"));
    assert!(findings(&report, "env").is_empty());
}

#[test]
fn sockets_are_denied_even_to_loopback() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let ws = Workspace::new();
    let report = ws.run(
        &["socket_probe"],
        &format!("[check.dial]\nplugin = \"socket_probe\"\nconfig = {{ paths = [{addr:?}] }}\n"),
    );
    assert_only_controls_succeeded(&report, "dial", &[]);
    let accepted = listener.accept();
    assert!(matches!(&accepted, Err(e) if e.kind() == ErrorKind::WouldBlock), "a connection arrived: {accepted:?}");
}

#[test]
fn infinite_loop_is_stopped_at_its_deadline_while_other_steps_finish() {
    let ws = Workspace::new();
    let report = ws.run(
        &["spin_forever", "noop"],
        "[check.spin]\nplugin = \"spin_forever\"\ntimeout = \"1s\"\n\n\
         [check.sibling]\nplugin = \"noop\"\n\n\
         [check.after-spin]\nplugin = \"noop\"\nneeds = [\"spin\"]\n\n\
         [check.after-after]\nplugin = \"noop\"\nneeds = [\"after-spin\"]\n",
    );
    let spin = step(&report, "spin");
    assert_eq!(spin.status, StepStatus::Error);
    assert_eq!(spin.reason.as_deref(), Some("timed out after 1s"));
    assert_eq!(step(&report, "sibling").status, StepStatus::Passed);
    let after = step(&report, "after-spin");
    assert_eq!(after.status, StepStatus::Skipped);
    assert_eq!(after.reason.as_deref(), Some("needs `spin`, which did not pass"));
    assert_eq!(step(&report, "after-after").reason.as_deref(), Some("needs `after-spin`, which was skipped"));
    assert!(!report.passed());
}

#[test]
fn memory_bomb_is_stopped_at_its_cap() {
    let ws = Workspace::new();
    let report = ws.run(
        &["memory_bomb", "noop"],
        "[check.bomb]\nplugin = \"memory_bomb\"\nmemory = \"64MiB\"\n\n[check.sibling]\nplugin = \"noop\"\n",
    );
    let bomb = step(&report, "bomb");
    assert_eq!(bomb.status, StepStatus::Error);
    assert_eq!(bomb.reason.as_deref(), Some("exceeded its memory limit of 64MiB"));
    assert_eq!(step(&report, "sibling").status, StepStatus::Passed);
}

#[test]
fn output_flood_is_truncated_not_fatal() {
    let ws = Workspace::new();
    let report = ws.run(&["output_flood"], "[check.flood]\nplugin = \"output_flood\"\n");
    let flood = step(&report, "flood");
    assert_eq!(flood.status, StepStatus::Passed, "{:?}", flood.reason);
    assert_eq!(flood.stdout.len(), 1 << 20);
    assert_eq!(flood.stderr.len(), 1 << 20);
    assert_eq!(flood.output_dropped_bytes, 2 * ((8 << 20) - (1 << 20)));
}

#[test]
fn plugin_of_the_wrong_world_is_refused_before_anything_runs() {
    let ws = Workspace::new();
    let pipeline = ws.root().join("pipeline.toml");
    let stage = sandbox_tests::guest("noop_stage");
    fs_err::write(
        &pipeline,
        format!(
            "[pipeline]\nname = \"x\"\n[plugins]\ns = {:?}\n[check.c]\nplugin = \"s\"\n",
            stage.display().to_string()
        ),
    )
    .unwrap();
    let diags = cleanroom::load_plan(&pipeline).unwrap_err();
    let text = diags.render();
    assert!(text.contains("error[CR012]"), "{text}");
    assert!(text.contains("exports the `stage` world"), "{text}");
}

/// A retried stage is told exactly one summary line per failing scenario:
/// not the verdict detail, not the evaluator's output, and not a summary
/// that quotes a holdout file (the `smuggle` scenario tries).
#[test]
fn stage_receives_exactly_the_feedback_summaries() {
    let ws = Workspace::new();
    ws.file("scenarios/secret.toml", "expected = \"the answer is 42\"\n").dir("out");
    let report = ws.run(
        &["feedback_recorder", "fixed_verdicts"],
        "[barrier]\nholdout = [\"scenarios\"]\n\n\
         [stage.record]\nplugin = \"feedback_recorder\"\nwrite = [\"out\"]\n\n\
         [evaluator.judge]\nplugin = \"fixed_verdicts\"\nneeds = [\"record\"]\nread = [\"scenarios\"]\nretry = \"record\"\n\
         config = { quote = \"/scenarios/secret.toml\" }\n",
    );
    assert!(report.passed(), "{report:#?}");
    assert_eq!(ws.read("out/attempt-1.txt"), "");
    assert_eq!(
        ws.read("out/attempt-2.txt"),
        "scenario alpha: failed 1/1: alpha is wrong\n\
         scenario smuggle: failed 1/1: (withheld: it quoted holdout content)\n"
    );
    assert_eq!(report.attempts.len(), 2);
}

/// A stage that writes and then fails (error, trap, timeout) leaves its
/// write mount byte-for-byte as it was; the same stage succeeding commits.
#[test]
fn failed_stage_writes_nothing_to_the_workspace() {
    for how in ["error", "panic", "spin"] {
        let ws = Workspace::new();
        ws.file("out/keep.txt", "original").file("out/gone.txt", "still here");
        let report = ws.run(
            &["write_then_fail"],
            &format!("[stage.write]\nplugin = \"write_then_fail\"\nwrite = [\"out\"]\ntimeout = \"1s\"\nconfig = {{ how = \"{how}\" }}\n"),
        );
        let status = step(&report, "write").status;
        assert!(matches!(status, StepStatus::Failed | StepStatus::Error), "{how}: {status:?}");
        assert_eq!(ws.read("out/keep.txt"), "original", "{how}");
        assert_eq!(ws.read("out/gone.txt"), "still here", "{how}");
        assert!(!ws.root().join("out/new.txt").exists(), "{how}");
    }
    let ws = Workspace::new();
    ws.file("out/keep.txt", "original").file("out/gone.txt", "still here");
    let report = ws.run(
        &["write_then_fail"],
        "[stage.write]\nplugin = \"write_then_fail\"\nwrite = [\"out\"]\nconfig = { how = \"succeed\" }\n",
    );
    assert_eq!(step(&report, "write").changes, ["+ out/keep.txt", "+ out/new.txt", "- out/gone.txt"]);
    assert_eq!(ws.read("out/keep.txt"), "overwritten");
    assert!(!ws.root().join("out/gone.txt").exists());
}

#[test]
fn every_guest_is_attacked_by_a_test() {
    let source = include_str!("attacks.rs");
    let listed_after = source.split("fn every_guest_is_attacked_by_a_test").next().unwrap();
    for name in GUESTS {
        assert!(listed_after.contains(&format!("\"{name}\"")), "guest `{name}` has no test in attacks.rs");
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
