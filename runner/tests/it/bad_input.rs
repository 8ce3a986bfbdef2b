//! Every bad input is refused before anything runs: exit code 2, and a
//! message with a stable code, the place (file:line:col where TOML gives
//! it) and what to do.

use crate::{cleanroom, component, Ran, Workspace};

/// Runs `pipeline` with both `validate` and `run`; both must refuse it the
/// same way. Returns the `run` result.
fn refused(ws: &Workspace, pipeline: &str) -> Ran {
    let validated = ws.run(pipeline, &["validate"]);
    let ran = ws.run(pipeline, &["run"]);
    assert_eq!(validated.code, 2, "{validated:?}");
    assert_eq!(ran.code, 2, "{ran:?}");
    assert_eq!(validated.stderr, ran.stderr);
    assert!(ran.stdout.is_empty(), "nothing may run: {ran:?}");
    assert!(ran.stderr.contains("  hint: "), "{ran:?}");
    ran
}

fn assert_says(ran: &Ran, code: &str, location: &str, message: &str) {
    assert!(ran.stderr.contains(&format!("error[{code}]: ")), "{ran:?}");
    assert!(ran.stderr.contains(&format!("  --> {location}")), "{ran:?}");
    assert!(ran.stderr.contains(message), "{ran:?}");
}

fn with_noop(steps: &str) -> String {
    format!("[pipeline]\nname = \"t\"\n\n[plugins]\nnoop = {:?}\n\n{steps}", component("guest:noop"))
}

#[test]
fn malformed_toml_names_line_and_column() {
    let ws = Workspace::new();
    let ran = refused(&ws, "[pipeline]\nname = \"t\"\n[check.a\nplugin = \"x\"\n");
    assert_says(&ran, "CR002", "pipeline.toml:3:", "");
}

#[test]
fn unknown_key_suggests_the_intended_one() {
    let ws = Workspace::new();
    let ran = refused(&ws, &with_noop("[check.a]\nplugin = \"noop\"\nreads = [\".\"]\n"));
    assert_says(&ran, "CR002", "pipeline.toml:9:1", "unknown field `reads`");
    assert!(ran.stderr.contains("hint: did you mean `read`?"), "{ran:?}");
}

#[test]
fn unknown_plugin_is_named_with_a_suggestion() {
    let ws = Workspace::new();
    let ran = refused(&ws, &with_noop("[check.a]\nplugin = \"nop\"\n"));
    assert_says(&ran, "CR003", "pipeline.toml:8:10", "step `a` uses plugin `nop`, which [plugins] does not define");
    assert!(ran.stderr.contains("did you mean `noop`?"), "{ran:?}");
}

#[test]
fn unknown_needs_id_is_named() {
    let ws = Workspace::new();
    let ran = refused(
        &ws,
        &with_noop("[check.build]\nplugin = \"noop\"\n[check.lint]\nplugin = \"noop\"\nneeds = [\"biuld\"]\n"),
    );
    assert_says(&ran, "CR004", "pipeline.toml:11:10", "step `lint` needs `biuld`, which is not a step");
    assert!(ran.stderr.contains("did you mean `build`?"), "{ran:?}");
}

#[test]
fn dependency_cycle_is_printed_along_its_path() {
    let ws = Workspace::new();
    let ran = refused(
        &ws,
        &with_noop("[check.a]\nplugin = \"noop\"\nneeds = [\"b\"]\n[check.b]\nplugin = \"noop\"\nneeds = [\"a\"]\n"),
    );
    assert_says(&ran, "CR005", "pipeline.toml:7:8", "the steps' `needs` form a cycle: a -> b -> a");
}

#[test]
fn duplicate_id_across_kinds_is_refused() {
    let ws = Workspace::new();
    let ran = refused(&ws, &with_noop("[check.same]\nplugin = \"noop\"\n[evaluator.same]\nplugin = \"noop\"\n"));
    assert_says(&ran, "CR006", "pipeline.toml:9:12", "step id `same` is used by both a check and an evaluator");
}

#[test]
fn missing_mount_is_refused() {
    let ws = Workspace::new();
    let ran = refused(&ws, &with_noop("[check.a]\nplugin = \"noop\"\nread = [\"src\"]\n"));
    assert_says(&ran, "CR008", "pipeline.toml:9:9", "step `a`: mount `src` does not exist in the workspace");
}

#[test]
fn absolute_mount_is_refused() {
    let ws = Workspace::new();
    let ran = refused(&ws, &with_noop("[check.a]\nplugin = \"noop\"\nread = [\"/etc\"]\n"));
    assert_says(&ran, "CR007", "pipeline.toml:9:9", "mount `/etc` is absolute");
}

#[test]
fn mount_escaping_with_dotdot_is_refused() {
    let ws = Workspace::new();
    ws.file("src/x", "");
    let ran = refused(&ws, &with_noop("[check.a]\nplugin = \"noop\"\nread = [\"src/../..\"]\n"));
    assert_says(&ran, "CR007", "pipeline.toml:9:9", "mount `src/../..` escapes the workspace through `..`");
}

#[test]
fn mount_escaping_through_a_symlink_is_refused() {
    let ws = Workspace::new();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), ws.path().join("elsewhere")).unwrap();
    let ran = refused(&ws, &with_noop("[check.a]\nplugin = \"noop\"\nread = [\"elsewhere\"]\n"));
    assert_says(
        &ran,
        "CR007",
        "pipeline.toml:9:9",
        "mount `elsewhere` resolves outside the workspace through a symlink",
    );
}

#[test]
fn write_on_a_check_is_refused() {
    let ws = Workspace::new();
    ws.file("out/x", "");
    let ran = refused(&ws, &with_noop("[check.a]\nplugin = \"noop\"\nwrite = [\"out\"]\n"));
    assert_says(&ran, "CR009", "pipeline.toml:9:10", "check `a` asks for `write`, but only stages may write");
}

#[test]
fn file_that_is_not_wasm_is_refused() {
    let ws = Workspace::new();
    ws.file("fake.wasm", "this is not wasm");
    let ran = refused(&ws, "[pipeline]\nname = \"t\"\n[plugins]\nfake = \"fake.wasm\"\n[check.a]\nplugin = \"fake\"\n");
    assert_says(&ran, "CR011", "pipeline.toml:4:8", "plugin `fake`: `");
    assert!(ran.stderr.contains("is not a WebAssembly component"), "{ran:?}");
}

#[test]
fn core_module_is_refused_as_not_a_component() {
    let ws = Workspace::new();
    fs_err::write(ws.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let ran = refused(&ws, "[pipeline]\nname = \"t\"\n[plugins]\ncore = \"core.wasm\"\n[check.a]\nplugin = \"core\"\n");
    assert_says(&ran, "CR011", "pipeline.toml:4:8", "is a core WebAssembly module, not a component");
    assert!(ran.stderr.contains("wasm32-wasip2"), "{ran:?}");
}

#[test]
fn truncated_component_is_refused() {
    let ws = Workspace::new();
    let bytes = fs_err::read(component("guest:noop")).unwrap();
    fs_err::write(ws.path().join("cut.wasm"), &bytes[..bytes.len() / 2]).unwrap();
    let ran = refused(&ws, "[pipeline]\nname = \"t\"\n[plugins]\ncut = \"cut.wasm\"\n[check.a]\nplugin = \"cut\"\n");
    assert_says(&ran, "CR011", "pipeline.toml:4:7", "is not a WebAssembly component");
}

#[test]
fn missing_plugin_file_says_how_to_build_it() {
    let ws = Workspace::new();
    let ran =
        refused(&ws, "[pipeline]\nname = \"t\"\n[plugins]\ngone = \"dist/gone.wasm\"\n[check.a]\nplugin = \"gone\"\n");
    assert_says(&ran, "CR010", "pipeline.toml:4:8", "cannot read plugin file");
    assert!(ran.stderr.contains("scripts/build-plugins"), "{ran:?}");
}

#[test]
fn plugin_of_another_world_says_which_world_it_has() {
    let ws = Workspace::new();
    let pipeline = format!(
        "[pipeline]\nname = \"t\"\n[plugins]\ns = {:?}\n[check.a]\nplugin = \"s\"\n",
        component("guest:noop_stage")
    );
    let ran = refused(&ws, &pipeline);
    assert_says(
        &ran,
        "CR012",
        "pipeline.toml:6:10",
        "step `a` is a check and needs a plugin exporting the `check` world, but plugin `s` exports the `stage` world",
    );
}

#[test]
fn sha256_mismatch_shows_both_digests() {
    let ws = Workspace::new();
    let pipeline = format!(
        "[pipeline]\nname = \"t\"\n[plugins]\nnoop = {{ path = {:?}, sha256 = \"{}\" }}\n[check.a]\nplugin = \"noop\"\n",
        component("guest:noop"),
        "0".repeat(64)
    );
    let ran = refused(&ws, &pipeline);
    assert_says(&ran, "CR013", "pipeline.toml:4:8", &format!("the pipeline expects {}", "0".repeat(64)));
}

#[test]
fn matching_sha256_pin_is_accepted() {
    let ws = Workspace::new();
    let path = component("guest:noop");
    let digest = {
        use std::process::Command;
        let out = Command::new("sha256sum").arg(&path).output().unwrap();
        String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
    };
    let pipeline = format!("[pipeline]\nname = \"t\"\n[plugins]\nnoop = {{ path = {path:?}, sha256 = \"{digest}\" }}\n[check.a]\nplugin = \"noop\"\n");
    let ran = ws.run(&pipeline, &["run"]);
    assert_eq!(ran.code, 0, "{ran:?}");
}

#[test]
fn bad_duration_and_size_point_at_the_value() {
    let ws = Workspace::new();
    let ran = refused(&ws, &with_noop("[check.a]\nplugin = \"noop\"\ntimeout = \"30 secs\"\n"));
    assert_says(&ran, "CR002", "pipeline.toml:9:11", "invalid duration `30 secs`");
    let ran = refused(&ws, &with_noop("[check.a]\nplugin = \"noop\"\nmemory = \"lots\"\n"));
    assert_says(&ran, "CR002", "pipeline.toml:9:10", "invalid size `lots`");
}

#[test]
fn several_problems_are_all_reported_at_once() {
    let ws = Workspace::new();
    let ran = refused(&ws, &with_noop("[check.a]\nplugin = \"nope\"\nread = [\"missing\"]\nneeds = [\"ghost\"]\n"));
    for code in ["CR003", "CR008", "CR004"] {
        assert!(ran.stderr.contains(&format!("error[{code}]")), "{code}: {ran:?}");
    }
    assert!(ran.stderr.contains("3 errors; nothing was run"), "{ran:?}");
}

#[test]
fn missing_pipeline_file_and_bad_flags_exit_2() {
    let ws = Workspace::new();
    let ran = cleanroom(ws.path(), &["run", "nowhere.toml"]);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("error[CR001]: cannot read the pipeline file"), "{ran:?}");
    let ran = cleanroom(ws.path(), &["run", "--jobs", "0", "x.toml"]);
    assert_eq!(ran.code, 2, "{ran:?}");
    let ran = cleanroom(ws.path(), &["frobnicate"]);
    assert_eq!(ran.code, 2, "{ran:?}");
}

#[test]
fn loop_control_keys_are_checked_where_they_are_written() {
    let ws = Workspace::new();
    let gate = "[stage.code]\nplugin = \"noop\"\n[evaluator.judge]\nplugin = \"noop\"\nneeds = [\"code\"]\n";
    // pipeline.toml: the `[plugins]` table ends on line 5; the gate's
    // extra keys start on line 12.
    let without_retry = refused(&ws, &with_noop(&format!("{gate}stop_on_plateau = 2\n")));
    assert_says(&without_retry, "CR020", "pipeline.toml:12:", "step `judge` sets `stop_on_plateau` without `retry`");
    let zero = refused(&ws, &with_noop(&format!("{gate}retry = \"code\"\nstop_on_plateau = 0\n")));
    assert_says(&zero, "CR020", "pipeline.toml:13:", "step `judge` sets `stop_on_plateau = 0`");
    let on_a_stage = refused(&ws, &with_noop("[stage.code]\nplugin = \"noop\"\nstop_on_plateau = 2\n"));
    assert_says(&on_a_stage, "CR020", "pipeline.toml:9:", "step `code` sets `stop_on_plateau` without `retry`");
    let budget_without_hosts = refused(&ws, &with_noop("[check.a]\nplugin = \"noop\"\nmax_requests = 3\n"));
    assert_says(
        &budget_without_hosts,
        "CR009",
        "pipeline.toml:9:",
        "step `a` sets `max_requests` without `allow_hosts`",
    );
    let zero_budget = refused(
        &ws,
        &with_noop("[check.a]\nplugin = \"noop\"\nallow_hosts = [\"https://api.example.com\"]\nconfig = { max_requests = 0 }\n"),
    );
    assert_says(&zero_budget, "CR009", "pipeline.toml:10:", "step `a` sets `max_requests = 0`");
    let on_a_program = refused(&ws, &with_noop("[check.a]\nrun = [\"true\"]\nmax_requests = 3\n"));
    assert_says(
        &on_a_program,
        "CR009",
        "pipeline.toml:9:",
        "step `a` sets `max_requests`, which applies only to plugin steps",
    );
    let duration = refused(&ws, "[pipeline]\nname = \"t\"\nmax_duration = \"0s\"\n");
    assert_says(&duration, "CR002", "pipeline.toml:3:16", "invalid duration `0s`: must be greater than zero");
}

#[test]
fn a_malformed_remote_table_names_the_bad_value() {
    let ws = Workspace::new();
    let base = "[pipeline]\nname = \"t\"\n\n[check.a]\nrun = [\"true\"]\n\n[remote]\n";
    let ran = refused(&ws, &format!("{base}endpoint = \"http://127.0.0.1:1\"\n"));
    assert_says(&ran, "CR034", "pipeline.toml:8:12", "is not a grpc:// or grpcs:// address");
    let ran = refused(&ws, &format!("{base}endpoint = \"grpc://127.0.0.1\"\n"));
    assert_says(&ran, "CR034", "pipeline.toml:8:12", "names no port");
    let ran = refused(&ws, &format!("{base}endpoint = \"grpc://127.0.0.1:1\"\ncache = \"write\"\n"));
    assert_says(&ran, "CR034", "pipeline.toml:9:9", "is not a remote cache mode");
    let ran = refused(&ws, &format!("{base}endpoint = \"grpc://127.0.0.1:1\"\ntoken = \"NOPE\"\n"));
    assert_says(&ran, "CR034", "pipeline.toml:9:9", "[remote] token `NOPE` is not a [secrets] entry");
    let ran = refused(&ws, &format!("{base}endpoint = \"grpc://127.0.0.1:1\"\nexecutes = true\n"));
    assert_says(&ran, "CR002", "pipeline.toml:9:1", "unknown field `executes`");
}

#[test]
fn remote_flags_without_a_service_or_an_unreachable_service_are_refused_before_anything_runs() {
    let ws = Workspace::new();
    let pipeline =
        "[pipeline]\nname = \"t\"\n\n[stage.s]\nrun = [\"/bin/sh\", \"-c\", \"echo x > out/x\"]\nwrite = [\"out\"]\n";
    let ran = ws.run(pipeline, &["run", "--remote-exec"]);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("error[CR034]: --remote-instance, --remote-cache and --remote-exec need a service"));
    let ran = ws.run(pipeline, &["run", "--remote", "grpc://127.0.0.1"]);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("names no port"), "{ran:?}");
    // Nothing listens on port 1: refused when the run starts, nothing run.
    let ran = ws.run(pipeline, &["run", "--remote", "grpc://127.0.0.1:1"]);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("error[CR034]: the remote service: cannot reach `grpc://127.0.0.1:1`"), "{ran:?}");
    assert!(!ws.path().join("out").exists(), "a step ran");
    let ran = crate::cleanroom(ws.path(), &["worker", "--remote", "grpc://127.0.0.1:1", "--work-dir", "w"]);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("error[CR034]: worker: cannot reach"), "{ran:?}");
}

/// A service that accepts connections and never says a word (hung, or not
/// a REAPI service) is waited for once, 30 s; then the run goes on without
/// it, every step run and recorded here, instead of hanging for good.
#[test]
fn a_remote_cache_that_never_answers_is_waited_for_once_and_the_run_goes_on_without_it() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("grpc://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        // Accepts, and keeps every connection open without answering.
        let held: Vec<_> = listener.incoming().flatten().collect();
        drop(held);
    });
    let ws = Workspace::new();
    ws.file(
        "pipeline.toml",
        &format!(
            "[pipeline]\nname = \"t\"\n[remote]\nendpoint = \"{endpoint}\"\n\
             [check.a]\nrun = [\"true\"]\n[check.b]\nrun = [\"true\"]\nneeds = [\"a\"]\n\
             [check.c]\nrun = [\"true\"]\nneeds = [\"b\"]\n"
        ),
    );
    let cache = crate::test_cache();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_cleanroom"))
        .args(["run", "--format", "json", "pipeline.toml"])
        .current_dir(ws.path())
        .env("CLEANROOM_CACHE_DIR", &cache)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let Ok(output) = finished.recv_timeout(std::time::Duration::from_secs(240)) else {
        let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
        panic!("the run was still waiting for the silent service after four minutes");
    };
    let ran = Ran::from(output.unwrap());
    assert_eq!(ran.code, 0, "{ran:?}");
    let statuses: Vec<String> =
        ran.json()["steps"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap().to_string()).collect();
    assert_eq!(statuses, ["passed", "passed", "passed"], "{ran:?}");
    assert_eq!(ran.stderr.matches("did not answer within 30 s").count(), 1, "{ran:?}");
    assert!(ran.stderr.contains("stopped answering earlier in this run"), "{ran:?}");
}
