//! Attacks on the barrier's channels: the program under test or a holdout
//! reader sending bytes to a stage, taint, time separation, deadlines.
//!
//! The program under test here is real: Rust source compiled by `rustc` for
//! `wasm32-wasip2` into a `wasi:cli` command, judged by the first-party
//! `scenario-runner` evaluator, with the `feedback_recorder` stage writing
//! down every feedback line it is told. What the stage recorded is what an
//! attacker learned.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cleanroom::{RunOptions, RunReport, StepStatus};
use sandbox_tests::{cleanroom_binary, guest, step, Workspace};

use super::{case, refused, Case};

/// A first-party plugin built by `scripts/build-plugins`.
pub(super) fn plugin(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist").join(format!("{name}.wasm"));
    assert!(path.is_file(), "{} is missing: run scripts/build-plugins first", path.display());
    path
}

/// Compiles `source` (a Rust program) into the workspace at `rel` as a
/// `wasi:cli` command component.
fn compile_subject(ws: &Workspace, rel: &str, source: &str) {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main.rs");
    fs_err::write(&main, source).unwrap();
    let out = ws.root().join(rel);
    fs_err::create_dir_all(out.parent().unwrap()).unwrap();
    let built = std::process::Command::new("rustc")
        .args(["--edition", "2021", "--target", "wasm32-wasip2", "-C", "opt-level=1", "-o"])
        .arg(&out)
        .arg(&main)
        .output()
        .expect("rustc runs");
    assert!(built.status.success(), "the subject did not compile: {}", String::from_utf8_lossy(&built.stderr));
}

/// Writes `body` below a `[plugins]` table naming `recorder` (the
/// feedback-recording stage), `fixed` (fixed verdicts) and `runner`
/// (scenario-runner), validates and runs it.
pub(super) fn run(ws: &Workspace, body: &str) -> RunReport {
    let toml = format!(
        "[pipeline]\nname = \"leaks\"\n\n[plugins]\nrecorder = {:?}\nfixed = {:?}\nrunner = {:?}\nnoop = {:?}\nprobe = {:?}\n\n{body}",
        guest("feedback_recorder").display().to_string(),
        guest("fixed_verdicts").display().to_string(),
        plugin("scenario_runner").display().to_string(),
        guest("noop").display().to_string(),
        guest("service_probe").display().to_string(),
    );
    run_pipeline(ws, &toml)
}

/// Writes `toml` as the workspace's pipeline, validates and runs it (no
/// result cache, the built jail helper).
pub(super) fn run_pipeline(ws: &Workspace, toml: &str) -> RunReport {
    let pipeline = ws.root().join("pipeline.toml");
    fs_err::write(&pipeline, toml).unwrap();
    let plan =
        cleanroom::Plan::load(&pipeline).unwrap_or_else(|d| panic!("pipeline did not validate:\n{}", d.render()));
    let options = RunOptions { jobs: 2, jail_helper: cleanroom_binary(), cache: false, ..RunOptions::default() };
    cleanroom::run(&plan, &options).unwrap_or_else(|d| panic!("pipeline did not load:\n{}", d.render()))
}

/// A stage that records its feedback, judged by scenario-runner against
/// `scenarios/` with `build/app.wasm` as the subject; `extra` goes into the
/// evaluator's table.
fn judged_pipeline(extra: &str) -> String {
    format!(
        "[barrier]\nholdout = [\"scenarios\"]\n\n[stage.code]\nplugin = \"recorder\"\nwrite = [\"out\"]\n\n\
         [evaluator.judge]\nplugin = \"runner\"\nneeds = [\"code\"]\nread = [\"scenarios\"]\nsubject = \"build/app.wasm\"\n\
         retry = \"code\"\nmax_iterations = 2\nconfig = {{ scenarios = \"/scenarios\" }}\n{extra}\n"
    )
}

/// A subject that sends its hidden input back every way it can: on stdout
/// and stderr, and as its exit code (four bytes of it).
const ECHOING_SUBJECT: &str = r#"
use std::io::Read;
fn main() {
    let mut input = std::env::args().nth(1).unwrap_or_default().into_bytes();
    let mut stdin = Vec::new();
    std::io::stdin().read_to_end(&mut stdin).unwrap();
    input.extend(stdin);
    println!("{}", String::from_utf8_lossy(&input));
    eprintln!("{}", String::from_utf8_lossy(&input));
    input.resize(4, 0);
    let code = u32::from_le_bytes([input[0], input[1], input[2], input[3]]) & 0x7fff_ffff;
    std::process::exit(code as i32);
}
"#;

/// A subject that fails in a way of the scenario's choosing, carrying the
/// hidden input in everything wasmtime or the runtime might print.
const FAILING_SUBJECT: &str = r#"
fn main() {
    let how = std::env::args().nth(1).unwrap_or_default();
    let secret = std::env::args().nth(2).unwrap_or_default();
    match how.as_str() {
        "panic" => panic!("leaking {secret}"),
        "oom" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop { hoard.push(vec![secret.len() as u8; 64 << 20]); }
        }
        "spin" => { let mut n = 0u64; loop { n = n.wrapping_add(secret.len() as u64); if n == 1 { println!(); } } }
        _ => println!("{secret}"),
    }
}
"#;

pub(super) fn recorded(ws: &Workspace, attempt: u32) -> String {
    ws.read(&format!("out/attempt-{attempt}.txt"))
}

fn feedback_case(name: &str, level: &'static str, expected: &'static str) -> Case {
    case(name, move || {
        let ws = Workspace::new();
        ws.file("scenarios/secret.toml", "expected = \"the answer is 42\"\n").dir("out");
        let report = run(
            &ws,
            &format!(
                "[barrier]\nholdout = [\"scenarios\"]\nfeedback = \"{level}\"\n\n[stage.code]\nplugin = \"recorder\"\nwrite = [\"out\"]\n\n\
                 [evaluator.judge]\nplugin = \"fixed\"\nneeds = [\"code\"]\nread = [\"scenarios\"]\nretry = \"code\"\n\
                 config = {{ quote = \"/scenarios/secret.toml\" }}\n"
            ),
        );
        assert!(report.passed(), "{report:#?}");
        // Control: the evaluator did try to say more than the level allows.
        let judge = &report.attempts[0].failing_lines();
        assert!(judge.iter().any(|f| f.contains("alpha is wrong")), "{judge:?}");
        assert_eq!(recorded(&ws, 2), expected, "the stage was told more than `feedback = \"{level}\"` allows");
        assert!(report.feedback_bits > 0.0 && report.attempts[0].feedback_bits == report.feedback_bits);
    })
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        // --- A: bytes chosen by the program under test ----------------
        case("subject echoes its hidden input in its output and exit code", || {
            let ws = Workspace::new();
            ws.file("scenarios/hidden.toml", "args = [\"SECRET\"]\nstdin = \"xyz\"\nstdout = \"ok\\n\"\n").dir("out");
            compile_subject(&ws, "build/app.wasm", ECHOING_SUBJECT);
            let report = run(&ws, &judged_pipeline(""));
            // Control: the subject did send its input back...
            let detail = &step(&report, "judge").evaluation.as_ref().unwrap().scenarios[0].detail;
            assert!(detail.contains("SECRETxyz"), "{detail}");
            // ...and the stage was told only what was wrong.
            let told = recorded(&ws, 2);
            assert_eq!(told, "scenario hidden: failed 1/1: expected exit 0, got another (and 1 more failure)\n");
        }),
        case("subject fails in ways whose text it controls", || {
            let ws = Workspace::new();
            // (Scenario words under 6 characters: the quote scanner would
            // withhold a summary that shares a longer word with the holdout.)
            for how in ["panic", "oom", "spin"] {
                ws.file(&format!("scenarios/{how}.toml"), &format!("args = [\"{how}\", \"HIDDEN-{how}-7f3a\"]\n"));
            }
            ws.dir("out");
            compile_subject(&ws, "build/app.wasm", FAILING_SUBJECT);
            let report =
                run(&ws, &judged_pipeline("memory = \"128MiB\"\nsubject_timeout = \"1s\"\ntimeout = \"60s\"\n"));
            let told = recorded(&ws, 2);
            assert_eq!(
                told,
                "scenario oom: failed 1/1: the subject ran out of memory\n\
                 scenario panic: failed 1/1: the subject trapped\n\
                 scenario spin: failed 1/1: the subject timed out\n",
            );
            // Control: wasmtime's own words are kept, for humans only, in
            // the failing scenario's detail.
            let scenarios = &step(&report, "judge").evaluation.as_ref().unwrap().scenarios;
            let panic = scenarios.iter().find(|s| s.name == "panic").unwrap();
            assert!(panic.detail.contains("cleanroom: subject run trapped:"), "{}", panic.detail);
            assert!(!told.contains("HIDDEN"), "{told}");
        }),
        feedback_case(
            "holdout reader writes the holdout into summaries (feedback = names)",
            "names",
            "scenario alpha: failed 1/1\nscenario smuggle: failed 1/1\n",
        ),
        feedback_case(
            "holdout reader writes the holdout into summaries (feedback = count)",
            "count",
            "step judge: 2 scenarios failed\n",
        ),
        case("a native evaluator prints the holdout it read", || {
            let ws = Workspace::new();
            ws.file("scenarios/s.toml", "expected = \"the answer is 42\"\n").dir("out");
            let report = run(
                &ws,
                "[barrier]\nholdout = [\"scenarios\"]\n\n[stage.code]\nplugin = \"recorder\"\nwrite = [\"out\"]\n\n\
                 [evaluator.judge]\nrun = [\"sh\", \"-c\", \"cat scenarios/s.toml; cat scenarios/s.toml >&2; exit 3\"]\n\
                 needs = [\"code\"]\nread = [\"scenarios\"]\nretry = \"code\"\nmax_iterations = 2\n",
            );
            // Control: the program did print the scenario.
            assert!(step(&report, "judge").stdout.contains("the answer is 42"));
            assert_eq!(recorded(&ws, 2), "step judge: exited with status 3\n");
        }),
        // --- B: the program under test never runs with the holdout -----
        case("a native evaluator runs the built program beside the holdout", || {
            let ws = Workspace::new();
            ws.file("scenarios/s.toml", "x = 1").file("build/app", "#!/bin/sh\ncat scenarios/*\n");
            refused(
                &ws,
                &[],
                "[barrier]\nholdout = [\"scenarios\"]\n[stage.build]\nrun = [\"true\"]\nwrite = [\"build\"]\n\
                 [evaluator.judge]\nrun = [\"sh\", \"build/app\"]\nneeds = [\"build\"]\nread = [\"scenarios\", \"build\"]\n",
                "CR019",
                "its mount `build` is tainted: stage `build` writes `build`",
            );
        }),
        case("a native check reads the whole workspace, holdout and build output alike", || {
            let ws = Workspace::new();
            ws.file("scenarios/s.toml", "x = 1").dir("out");
            refused(
                &ws,
                &[],
                "[barrier]\nholdout = [\"scenarios\"]\n[stage.code]\nrun = [\"true\"]\nwrite = [\"out\"]\n\
                 [check.peek]\nrun = [\"true\"]\nneeds = [\"code\"]\nread = [\".\"]\n",
                "CR019",
                "step `peek` can read the holdout, and its mount `.` is tainted",
            );
        }),
        case("a native program is the holdout reader's executable", || {
            let ws = Workspace::new();
            ws.file("scenarios/s.toml", "x = 1").file("build/judge", "#!/bin/sh\nexit 0\n");
            let judge = ws.root().join("build/judge");
            fs_err::set_permissions(&judge, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
            refused(
                &ws,
                &[],
                "[barrier]\nholdout = [\"scenarios\"]\n[stage.build]\nrun = [\"true\"]\nwrite = [\"build\"]\n\
                 [evaluator.judge]\nrun = [\"build/judge\"]\nneeds = [\"build\"]\nread = [\"scenarios\"]\n",
                "CR019",
                "its program",
            );
        }),
        case("a holdout-reading plugin mounts what a stage wrote", || {
            let ws = Workspace::new();
            ws.file("scenarios/s.toml", "x = 1").dir("out");
            refused(
                &ws,
                &["fixed_verdicts", "noop_stage"],
                "[barrier]\nholdout = [\"scenarios\"]\n[stage.code]\nplugin = \"noop_stage\"\nwrite = [\"out\"]\n\
                 [evaluator.judge]\nplugin = \"fixed_verdicts\"\nneeds = [\"code\"]\nread = [\"scenarios\", \"out\"]\n\
                 config = { quote = \"/scenarios/s.toml\" }\n",
                "CR019",
                "its mount `out` is tainted",
            );
        }),
        case("a holdout reader takes the host's network to hand the holdout on", || {
            let ws = Workspace::new();
            ws.file("scenarios/s.toml", "x = 1").dir("out");
            refused(
                &ws,
                &[],
                "[barrier]\nholdout = [\"scenarios\"]\n[stage.code]\nrun = [\"true\"]\nwrite = [\"out\"]\nnetwork = true\n\
                 [evaluator.judge]\nrun = [\"true\"]\nneeds = [\"code\"]\nread = [\"scenarios\"]\nnetwork = true\n",
                "CR019",
                "can read the holdout and has the host's network",
            );
        }),
        case("a native evaluator asks to be scored k-of-n", || {
            let ws = Workspace::new();
            ws.file("scenarios/s.toml", "x = 1");
            refused(
                &ws,
                &[],
                "[evaluator.judge]\nrun = [\"true\"]\nread = [\"scenarios\"]\nrepeat = 3\nrequire = 2\n",
                "CR009",
                "runs a native program, which cannot score scenarios, but sets `repeat`",
            );
        }),
        // --- C: the judge's definition -------------------------------
        case("a stage writes over the pipeline file", || {
            let ws = Workspace::new();
            ws.file("src/lib.rs", "");
            refused(
                &ws,
                &["noop_stage"],
                "[stage.s]\nplugin = \"noop_stage\"\nwrite = [\".\"]\n",
                "CR019",
                "covers the pipeline file, which defines the judge",
            );
        }),
        case("a stage writes over a plugin file", || {
            let ws = Workspace::new();
            fs_err::create_dir_all(ws.root().join("plugins")).unwrap();
            fs_err::copy(guest("noop"), ws.root().join("plugins/noop.wasm")).unwrap();
            let pipeline = ws.root().join("pipeline.toml");
            fs_err::write(
                &pipeline,
                "[pipeline]\nname = \"x\"\n[plugins]\nnoop = \"plugins/noop.wasm\"\n\
                 [stage.s]\nrun = [\"true\"]\nwrite = [\"plugins\"]\n[check.c]\nplugin = \"noop\"\nneeds = [\"s\"]\n",
            )
            .unwrap();
            let text = cleanroom::Plan::load(&pipeline).map(|_| ()).expect_err("accepted").render();
            assert!(text.contains("covers the file of plugin `noop`"), "{text}");
        }),
        case("a stage writes over the runner's cache directory", || {
            let ws = Workspace::new();
            ws.dir("cache");
            let before = std::env::var_os("CLEANROOM_CACHE_DIR");
            std::env::set_var("CLEANROOM_CACHE_DIR", ws.root().join("cache"));
            let diags = ws.plan(&[], "[stage.s]\nrun = [\"true\"]\nwrite = [\"cache\"]\n").map(|_| ());
            match before {
                Some(dir) => std::env::set_var("CLEANROOM_CACHE_DIR", dir),
                None => std::env::remove_var("CLEANROOM_CACHE_DIR"),
            }
            let text = diags.expect_err("accepted").render();
            assert!(text.contains("covers the runner's cache directory"), "{text}");
        }),
        // --- G: deadlines bound steps --------------------------------
        case("an evaluator's subject spins in every scenario, past the step's timeout", || {
            let ws = Workspace::new();
            for i in 0..5 {
                ws.file(&format!("scenarios/s{i}.toml"), "args = [\"spin\", \"x\"]\n");
            }
            ws.dir("out");
            compile_subject(&ws, "build/app.wasm", FAILING_SUBJECT);
            let started = Instant::now();
            let report = run(
                &ws,
                "[evaluator.judge]\nplugin = \"runner\"\nread = [\"scenarios\"]\nsubject = \"build/app.wasm\"\n\
                 repeat = 3\ncache = false\ntimeout = \"2s\"\nsubject_timeout = \"2s\"\nconfig = { scenarios = \"/scenarios\" }\n\
                 [check.bystander]\nplugin = \"noop\"\n",
            );
            let judge = step(&report, "judge");
            assert_eq!(judge.status, StepStatus::Error);
            let reason = judge.reason.clone().unwrap_or_default();
            assert!(reason.starts_with("timed out after 2s (the whole evaluator step"), "{reason}");
            // 15 runs of 2 s each would take 30 s; the step's bound is 2 s.
            assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
            assert_eq!(step(&report, "bystander").status, StepStatus::Passed, "the bystander was starved");
        }),
        case("a subject's timeout longer than its evaluator's", || {
            refused(
                &Workspace::new(),
                &["fixed_verdicts"],
                "[evaluator.e]\nplugin = \"fixed_verdicts\"\nsubject = \"app.wasm\"\ntimeout = \"5s\"\nsubject_timeout = \"10s\"\n\
                 config = { quote = \"/x\" }\n",
                "CR021",
                "is longer than the step's `timeout`",
            );
        }),
        // --- H: time separation --------------------------------------
        case("a holdout reader runs while a stage runs", || {
            // Each step prints when it starts and ends; with two jobs and no
            // `needs` between them, only time separation keeps them apart.
            let clock = "date +%s%N; sleep 1; date +%s%N";
            let windows = |reader_reads: &str| {
                let ws = Workspace::new();
                ws.file("scenarios/s.toml", "x = 1").dir("out").dir("docs");
                let report = run(
                    &ws,
                    &format!(
                        "[barrier]\nholdout = [\"scenarios\"]\n[stage.code]\nrun = [\"sh\", \"-c\", \"{clock}\"]\nwrite = [\"out\"]\n\
                         [check.peek]\nrun = [\"sh\", \"-c\", \"{clock}\"]\nread = [\"{reader_reads}\"]\n"
                    ),
                );
                let window = |id: &str| -> (u128, u128) {
                    let out = &step(&report, id).stdout;
                    let times: Vec<u128> = out.lines().map(|l| l.trim().parse().unwrap()).collect();
                    (times[0], times[1])
                };
                (window("code"), window("peek"))
            };
            let overlap = |(a, b): ((u128, u128), (u128, u128))| a.0 < b.1 && b.0 < a.1;
            // Control: a step that cannot read the holdout may overlap.
            assert!(overlap(windows("docs")), "the control did not overlap: the case cannot fail");
            assert!(!overlap(windows("scenarios")), "the holdout reader ran while the stage ran");
        }),
        // --- I: what humans see ---------------------------------------
        case("file names and output with terminal escapes redraw the report", || {
            let ws = Workspace::new();
            ws.dir("out").file(
                "make.sh",
                "name=$(printf 'x\\033[2K\\r\\033[32mbystander ....... passed\\033[0m\\342\\200\\256')\n\
                 echo hi > \"out/$name\"\necho \"$name\"\nexit 1\n",
            );
            let report = run(&ws, "[stage.s]\nrun = [\"sh\", \"make.sh\"]\nread = [\"make.sh\"]\nwrite = [\"out\"]\n");
            // Control: the raw report holds the escapes (output, and the
            // failure's last line), as a committed file's name would.
            let raw = &step(&report, "s");
            assert!(raw.stdout.contains('\u{1b}') && raw.findings[0].message.contains('\u{1b}'), "{raw:?}");
            let text = cleanroom::report::human::render(&report, Default::default());
            for bad in ['\u{1b}', '\r', '\u{202e}'] {
                assert!(!text.contains(bad), "the report holds {bad:?}: {text}");
            }
            assert!(text.contains("\\u{1b}[2K"), "{text}");
        }),
    ]
}
