//! Attacks on the judge's definition: journals, resume, caches, and the
//! files no stage may write.
//!
//! The attacker here can write anywhere in the workspace between runs (the
//! coding stage, or a program it left behind), including `.cleanroom/`,
//! and can point the runner's cache at the workspace; it wants a failing
//! gate reported passed. Each case first shows the mechanism it attacks is
//! live (an untouched journal resumes, a cache entry is used), then that
//! the forged or planted one is refused or never used.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cleanroom::{RunOptions, RunReport, StepStatus};
use sandbox_tests::{cleanroom_binary, guest, step, Workspace};

use super::{case, output_text as text, Case};

/// Sets environment variables for one case and restores them when dropped
/// (also when the case panics): the cases share one process.
struct EnvGuard(Vec<(&'static str, Option<OsString>)>);

impl EnvGuard {
    fn set(vars: &[(&'static str, &Path)]) -> EnvGuard {
        let saved = vars.iter().map(|(name, _)| (*name, std::env::var_os(name))).collect();
        for (name, value) in vars {
            std::env::set_var(name, value);
        }
        EnvGuard(saved)
    }
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        for (name, value) in &self.0 {
            match value {
                Some(value) => std::env::set_var(name, value),
                None => std::env::remove_var(name),
            }
        }
    }
}

/// A gate that fails (the answer is wrong) beside a slow step that keeps
/// the run going long enough to be killed; a plugin step for plugin drift.
const GATED: &str = "[pipeline]\nname = \"trust\"\n[plugins]\nprobe = \"plug/probe.wasm\"\n\
    [check.gate]\nrun = [\"sh\", \"-c\", \"grep -q right answer/value\"]\nread = [\"answer\"]\n\
    [check.slow]\nrun = [\"sh\", \"-c\", \"sleep $(cat delay/seconds)\"]\nread = [\"delay\"]\ntimeout = \"2m\"\n\
    [check.plugged]\nplugin = \"probe\"\n";

fn gated_workspace(delay: &str) -> Workspace {
    let ws = Workspace::new();
    ws.file("pipeline.toml", GATED).file("answer/value", "wrong").file("delay/seconds", delay).dir("plug");
    fs_err::copy(guest("noop"), ws.root().join("plug/probe.wasm")).unwrap();
    ws
}

/// `cleanroom ARGS` in the workspace.
fn cli(ws: &Workspace, args: &[&str]) -> Output {
    Command::new(cleanroom_binary()).args(args).current_dir(ws.root()).output().unwrap()
}

/// `run --resume` through the library: the report, or the rendered refusal.
fn resume(ws: &Workspace) -> Result<RunReport, String> {
    let plan = cleanroom::Plan::load(&ws.root().join("pipeline.toml")).map_err(|d| d.render())?;
    let options = RunOptions { jobs: 2, jail_helper: cleanroom_binary(), resume: true, ..RunOptions::default() };
    cleanroom::run(&plan, &options).map_err(|d| d.render())
}

/// The newest run directory.
fn newest_run(ws: &Workspace) -> Option<PathBuf> {
    fs_err::read_dir(ws.root().join(".cleanroom/runs")).ok()?.filter_map(|e| e.ok()).map(|e| e.path()).max()
}

/// Starts the gated pipeline, kills the runner (SIGKILL) once the gate's
/// failure is in the journal, and lets the slow step be quick on resume.
/// Returns the journal.
fn interrupted_run(ws: &Workspace) -> PathBuf {
    let mut child =
        Command::new(cleanroom_binary()).args(["run", "pipeline.toml"]).current_dir(ws.root()).spawn().unwrap();
    let started = Instant::now();
    let events = loop {
        if let Some(events) = newest_run(ws).map(|run| run.join("events.jsonl")) {
            let journal = fs_err::read_to_string(&events).unwrap_or_default();
            if journal.contains("\"type\":\"step_finished\",\"data\":{\"step\":\"gate\"")
                && journal.contains("\"step\":\"plugged\"")
            {
                break events;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the gate never finished");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    fs_err::write(ws.root().join("delay/seconds"), "0").unwrap();
    events
}

/// The control every journal case ends with: the untouched journal
/// resumes, and the honest gate fails.
fn untouched_resumes(ws: &Workspace, events: &Path, original: &str) {
    fs_err::write(events, original).unwrap();
    let report = resume(ws).unwrap_or_else(|e| panic!("the untouched journal did not resume:\n{e}"));
    assert_eq!(step(&report, "gate").status, StepStatus::Failed);
    assert_eq!(step(&report, "slow").status, StepStatus::Passed);
    assert_eq!(report.status, "failed");
}

/// The line of `journal` holding the gate's result.
fn gate_line(journal: &str) -> &str {
    journal.lines().find(|l| l.starts_with("{\"type\":\"step_finished\",\"data\":{\"step\":\"gate\"")).unwrap()
}

/// A journal attack: `forge` rewrites an interrupted run's journal;
/// `--resume` must refuse it (CR031, naming the run), then the untouched
/// journal must resume.
fn forged_journal(name: &str, forge: fn(&str) -> String) -> Case {
    case(name, move || {
        let ws = gated_workspace("30");
        let events = interrupted_run(&ws);
        let original = fs_err::read_to_string(&events).unwrap();
        assert!(gate_line(&original).contains("\"status\":\"failed\""), "the gate did not fail: {original}");
        let forged = forge(&original);
        assert_ne!(forged, original, "the forgery changed nothing");
        fs_err::write(&events, &forged).unwrap();
        let run_id = events.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
        // Through the command line: exit 2, the code, the run, the line.
        let ran = cli(&ws, &["run", "--resume", "pipeline.toml"]);
        let out = text(&ran);
        assert_eq!(ran.status.code(), Some(2), "{out}");
        assert!(out.contains("error[CR031]") && out.contains(&run_id) && out.contains("--resume"), "{out}");
        assert!(!String::from_utf8_lossy(&ran.stdout).contains("passed"), "{out}");
        // And through the library.
        let refusal = resume(&ws).expect_err("the forged journal was resumed");
        assert!(refusal.contains("error[CR031]"), "{refusal}");
        assert_eq!(fs_err::read_to_string(&events).unwrap(), forged, "the refusal changed the journal");
        untouched_resumes(&ws, &events, &original);
    })
}

/// The gate's result line with every `failed` turned `passed`.
fn flip_gate(journal: &str) -> String {
    let line = gate_line(journal);
    journal.replace(line, &line.replace("\"failed\"", "\"passed\""))
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        forged_journal("flip a failed gate to passed in an unfinished journal", flip_gate),
        forged_journal("flip a failed gate and strip the line's mac", |journal| {
            // The forged line without its mac, as if the format had none.
            let line = gate_line(journal);
            let bare = format!("{}}}", &line[..line.rfind(",\"mac\":").unwrap()]);
            journal.replace(line, &bare.replace("\"failed\"", "\"passed\""))
        }),
        forged_journal("append forged step, round and run_finished lines to a journal", |journal| {
            let mac = gate_line(journal).rsplit(",\"mac\":").next().unwrap().to_string();
            let passed = gate_line(journal).replace("\"failed\"", "\"passed\"");
            format!(
                "{journal}{passed}\n{{\"type\":\"round_finished\",\"data\":{{\"round\":1,\"retries\":{{}}}},\"mac\":{mac}\n\
                 {{\"type\":\"run_finished\",\"data\":{{\"status\":\"passed\",\"escalated\":false}},\"mac\":\"{}\"}}\n",
                "0".repeat(64)
            )
        }),
        forged_journal("delete a line from the middle of a journal", |journal| {
            let started = journal.lines().find(|l| l.contains("\"type\":\"step_started\"")).unwrap();
            journal.replacen(&format!("{started}\n"), "", 1)
        }),
        forged_journal("reorder two lines of a journal", |journal| {
            let lines: Vec<&str> = journal.lines().collect();
            let mut swapped = lines.clone();
            swapped.swap(1, 2);
            swapped.iter().map(|l| format!("{l}\n")).collect()
        }),
        case("edit a finished journal back to unfinished and passed", || {
            let ws = gated_workspace("0");
            let ran = cli(&ws, &["run", "pipeline.toml"]);
            assert_eq!(ran.status.code(), Some(1), "{}", text(&ran));
            let events = newest_run(&ws).unwrap().join("events.jsonl");
            let original = fs_err::read_to_string(&events).unwrap();
            // Control: the finished run is not resumable.
            let refusal = resume(&ws).expect_err("a finished run was resumed");
            assert!(refusal.contains("error[CR022]"), "{refusal}");
            // Drop `run_finished` (and the round), pass the gate.
            let kept: String = flip_gate(&original)
                .lines()
                .filter(|l| !l.contains("\"type\":\"run_finished\""))
                .map(|l| format!("{l}\n"))
                .collect();
            fs_err::write(&events, kept).unwrap();
            let ran = cli(&ws, &["run", "--resume", "pipeline.toml"]);
            assert_eq!(ran.status.code(), Some(2), "{}", text(&ran));
            assert!(text(&ran).contains("error[CR031]"), "{}", text(&ran));
        }),
        case("plant a fake later run directory that says every step passed", || {
            let ws = gated_workspace("30");
            let events = interrupted_run(&ws);
            let original = fs_err::read_to_string(&events).unwrap();
            let real_id = events.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
            // A later id, the real journal with the gate passed, and a copy
            // of the real one verbatim.
            for (id, journal) in [
                ("9999999999999-0000001", flip_gate(&original).replace(&real_id, "9999999999999-0000001")),
                ("9999999999998-0000001", original.clone()),
            ] {
                let dir = ws.root().join(".cleanroom/runs").join(id);
                fs_err::create_dir_all(&dir).unwrap();
                fs_err::write(dir.join("events.jsonl"), journal).unwrap();
                fs_err::write(dir.join("report.json"), "{\"status\":\"passed\"}").unwrap();
            }
            // The fake runs are never considered: the real one resumes.
            let report = resume(&ws).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(report.run_id, real_id);
            assert_eq!(step(&report, "gate").status, StepStatus::Failed);
            // Now nothing is unfinished; the fakes still are not resumed.
            let ran = cli(&ws, &["run", "--resume", "pipeline.toml"]);
            assert_eq!(ran.status.code(), Some(2), "{}", text(&ran));
            assert!(text(&ran).contains("error[CR022]"), "{}", text(&ran));
        }),
        case("replace the real run directory with a symlink to a forged one", || {
            let ws = gated_workspace("30");
            let events = interrupted_run(&ws);
            let run = events.parent().unwrap().to_path_buf();
            let elsewhere = ws.root().join("forged-run");
            fs_err::rename(&run, &elsewhere).unwrap();
            let flipped = flip_gate(&fs_err::read_to_string(elsewhere.join("events.jsonl")).unwrap());
            fs_err::write(elsewhere.join("events.jsonl"), flipped).unwrap();
            std::os::unix::fs::symlink(&elsewhere, &run).unwrap();
            let refusal = resume(&ws).expect_err("a symlinked run directory was resumed");
            assert!(refusal.contains("error[CR031]") && refusal.contains("not a directory"), "{refusal}");
            // A FIFO for the events file: refused, never blocks.
            fs_err::remove_file(&run).unwrap();
            fs_err::create_dir(&run).unwrap();
            assert!(Command::new("mkfifo").arg(run.join("events.jsonl")).status().unwrap().success());
            let refusal = resume(&ws).expect_err("a FIFO journal was resumed");
            assert!(refusal.contains("error[CR031]") && refusal.contains("not a regular file"), "{refusal}");
        }),
        case("resume after the pipeline file, a plugin or the configuration changed", || {
            let ws = gated_workspace("30");
            let events = interrupted_run(&ws);
            let original = fs_err::read_to_string(&events).unwrap();
            let refused = |args: &[&str], what: &str| {
                let ran = cli(&ws, args);
                let out = text(&ran);
                assert_eq!(ran.status.code(), Some(2), "{out}");
                assert!(out.contains("error[CR032]") && out.contains(what), "{out}");
            };
            // The gate rewritten to pass.
            let pipeline = ws.read("pipeline.toml");
            ws.file("pipeline.toml", &pipeline.replace("grep -q right", "grep -q wrong"));
            refused(&["run", "--resume", "pipeline.toml"], "the pipeline file");
            // Only a comment added.
            ws.file("pipeline.toml", &format!("{pipeline}# nothing\n"));
            refused(&["run", "--resume", "pipeline.toml"], "the pipeline file");
            ws.file("pipeline.toml", &pipeline);
            // The plugin replaced by another of the same world.
            let plugin = ws.root().join("plug/probe.wasm");
            fs_err::copy(guest("read_probe"), &plugin).unwrap();
            refused(&["run", "--resume", "pipeline.toml"], "plugin `probe` changed");
            fs_err::copy(guest("noop"), &plugin).unwrap();
            // The same file, another plan: the gate left out.
            refused(&["run", "--resume", "--skip", "gate", "pipeline.toml"], "configuration changed");
            untouched_resumes(&ws, &events, &original);
        }),
        case("plant another plugin's precompiled code under a pinned plugin's name", compile_cache_plant),
        case("plant a passing result for a failing check in the result cache", result_cache_plant),
        case("point the cache or the state directory into the workspace or a tools path", placement),
        case("rewrite a past run's report, or plant a newer run, so `cleanroom report` shows it passed", past_report),
    ]
}

/// Every `.cwasm` in `dir`.
fn cwasm_files(dir: &Path) -> Vec<PathBuf> {
    fs_err::read_dir(dir)
        .map(|entries| {
            entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "cwasm")).collect()
        })
        .unwrap_or_default()
}

fn compile_cache_plant() {
    let cache = tempfile::tempdir().unwrap();
    let _env = EnvGuard::set(&[("CLEANROOM_CACHE_DIR", cache.path())]);
    let ws = Workspace::new();
    let steps = "[check.probe]\nplugin = \"read_probe\"\nread = []\nconfig = { paths = [\"/nowhere\"] }\n\
        [check.bystander]\nplugin = \"noop\"\n";
    let plan = ws.plan(&["read_probe", "noop"], steps).unwrap();
    let named = |plugin: &str| {
        let sha = &plan.plugins[plugin].sha256;
        cwasm_files(cache.path())
            .into_iter()
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(sha.as_str()))
    };
    let first = ws.run(&["read_probe", "noop"], steps);
    assert_eq!(step(&first, "probe").status, StepStatus::Failed, "the probe is meant to fail");
    let (probe, noop) = (named("read_probe").expect("probe compiled"), named("noop").expect("noop compiled"));
    // Control: a second run loads the entries the runner wrote, unchanged.
    let stored = fs_err::read(&probe).unwrap();
    ws.run(&["read_probe", "noop"], steps);
    assert_eq!(fs_err::read(&probe).unwrap(), stored, "the runner's own entry was not used");
    // The noop's code (which passes) under the probe's name; then garbage.
    let noop_code = fs_err::read(&noop).unwrap();
    for planted in [noop_code.clone(), noop_code[32..].to_vec(), b"\x7fELF garbage".repeat(100)] {
        fs_err::write(&probe, &planted).unwrap();
        let report = ws.run(&["read_probe", "noop"], steps);
        let probe_step = step(&report, "probe");
        assert_eq!(probe_step.status, StepStatus::Failed, "the planted code ran: {probe_step:?}");
        assert!(!probe_step.findings.is_empty(), "the probe's own findings are missing");
        assert_eq!(step(&report, "bystander").status, StepStatus::Passed);
        assert_ne!(fs_err::read(&probe).unwrap(), planted, "the planted file was kept");
    }
}

/// The result-cache entry holding `id`'s report.
fn entry_of(results: &Path, id: &str) -> Option<PathBuf> {
    let needle = format!("\"id\":\"{id}\"");
    fs_err::read_dir(results)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| fs_err::read_to_string(p).is_ok_and(|t| t.contains(&needle)))
}

fn result_cache_plant() {
    let cache = tempfile::tempdir().unwrap();
    let _env = EnvGuard::set(&[("CLEANROOM_CACHE_DIR", cache.path())]);
    let ws = Workspace::new();
    ws.file("answer/value", "wrong");
    let steps = "[check.gate]\nrun = [\"sh\", \"-c\", \"grep -q right answer/value\"]\nread = [\"answer\"]\n\
        [check.bystander]\nrun = [\"true\"]\n";
    let plan = ws.plan(&[], steps).unwrap();
    let options = RunOptions { jobs: 2, jail_helper: cleanroom_binary(), cache: true, ..RunOptions::default() };
    let run = || cleanroom::run(&plan, &options).unwrap_or_else(|d| panic!("{d}"));
    let first = run();
    assert_eq!(step(&first, "gate").status, StepStatus::Failed);
    // Control: the runner's own entry answers the next run.
    let second = run();
    assert!(step(&second, "gate").cached, "the result cache is not in use");
    let results = cache.path().join("results");
    let gate = entry_of(&results, "gate").expect("the gate's entry");
    let bystander = entry_of(&results, "bystander").expect("the bystander's entry");
    let honest = fs_err::read_to_string(&gate).unwrap();
    let json = honest.split_once('\n').map_or(honest.as_str(), |(_, json)| json).to_string();
    let plants = [
        ("edited to passed", honest.replace("\"failed\"", "\"passed\"")),
        ("without its tag", json.replace("\"failed\"", "\"passed\"")),
        ("the bystander's passed entry", fs_err::read_to_string(&bystander).unwrap()),
    ];
    for (what, planted) in plants {
        fs_err::write(&gate, &planted).unwrap();
        let report = run();
        let gate_step = step(&report, "gate");
        assert_eq!(gate_step.status, StepStatus::Failed, "{what}: the planted result was used");
        assert!(!gate_step.cached, "{what}: answered from the cache");
        assert_eq!(report.status, "failed");
    }
}

fn placement() {
    let ws = Workspace::new();
    let outside = tempfile::tempdir().unwrap();
    let tools = outside.path().join("toolchain");
    fs_err::create_dir_all(tools.join("bin")).unwrap();
    let steps = format!("[check.c]\nrun = [\"true\"]\ntools = [{:?}]\n", tools.display().to_string());
    let plan = ws.plan(&[], &steps).unwrap();
    let run = || {
        let options = RunOptions { jobs: 1, jail_helper: cleanroom_binary(), ..RunOptions::default() };
        cleanroom::run(&plan, &options).map_err(|d| d.render())
    };
    // Control: private directories outside the workspace and the tools.
    {
        let _env = EnvGuard::set(&[
            ("CLEANROOM_CACHE_DIR", &outside.path().join("cache")),
            ("CLEANROOM_STATE_DIR", &outside.path().join("state")),
        ]);
        assert_eq!(run().unwrap().status, "passed");
    }
    let link = outside.path().join("link");
    std::os::unix::fs::symlink(ws.root(), &link).unwrap();
    let before = ws.snapshot();
    for (var, dir, code) in [
        ("CLEANROOM_CACHE_DIR", ws.root().join(".cache"), "CR030"),
        ("CLEANROOM_CACHE_DIR", link.join("cache"), "CR030"),
        ("CLEANROOM_CACHE_DIR", tools.join("cache"), "CR030"),
        ("CLEANROOM_STATE_DIR", ws.root().join("state"), "CR029"),
        ("CLEANROOM_STATE_DIR", ws.root().join(".cleanroom/state"), "CR029"),
        ("CLEANROOM_STATE_DIR", tools.join("state"), "CR029"),
    ] {
        let _env = EnvGuard::set(&[
            ("CLEANROOM_CACHE_DIR", &outside.path().join("cache")),
            ("CLEANROOM_STATE_DIR", &outside.path().join("state")),
            (var, &dir),
        ]);
        let refusal = run().expect_err("the run started");
        assert!(refusal.contains(&format!("error[{code}]")) && refusal.contains("hint:"), "{refusal}");
        let ran = cli(&ws, &["run", "pipeline.toml"]);
        assert_eq!(ran.status.code(), Some(2), "{}", text(&ran));
        assert!(text(&ran).contains(&format!("error[{code}]")), "{}", text(&ran));
        assert!(!dir.exists(), "{} was created", dir.display());
    }
    assert_eq!(before, ws.snapshot(), "the workspace changed");
    assert!(fs_err::read_dir(ws.root().join(".cleanroom/runs")).map_or(0, |d| d.count()) <= 1, "a refused run ran");
}

/// `cleanroom report` prints only what the run wrote and its authenticated
/// journal vouches for.
fn past_report() {
    let ws = gated_workspace("0");
    let ran = cli(&ws, &["run", "--format", "json", "pipeline.toml"]);
    assert_eq!(ran.status.code(), Some(1), "{}", text(&ran));
    // Control: the report command prints the real (failed) run.
    let shown = cli(&ws, &["report", "--format", "json"]);
    assert_eq!(shown.stdout, ran.stdout, "control: the report command did not print the run\n{}", text(&shown));
    let run = newest_run(&ws).unwrap();
    let report = run.join("report.json");
    let original = fs_err::read_to_string(&report).unwrap();
    let passed = original.replace("\"failed\"", "\"passed\"");
    // 1. The report edited to say passed.
    fs_err::write(&report, &passed).unwrap();
    let edited = cli(&ws, &["report"]);
    assert_eq!(edited.status.code(), Some(2), "an edited report was shown\n{}", text(&edited));
    // 2. The journal's recorded digest changed to match the forged report.
    use sha2::Digest;
    let forged_sha = sha2::Sha256::digest(passed.as_bytes()).iter().map(|b| format!("{b:02x}")).collect::<String>();
    let real_sha = sha2::Sha256::digest(original.as_bytes()).iter().map(|b| format!("{b:02x}")).collect::<String>();
    let events = run.join("events.jsonl");
    let journal = fs_err::read_to_string(&events).unwrap();
    assert!(journal.contains(&real_sha), "control: the journal records the report's digest");
    fs_err::write(&events, journal.replace(&real_sha, &forged_sha)).unwrap();
    let both = cli(&ws, &["report"]);
    assert_eq!(both.status.code(), Some(2), "a forged report with a matching digest was shown\n{}", text(&both));
    assert!(String::from_utf8_lossy(&both.stderr).contains("CR033"), "{}", text(&both));
    // 3. A newer run directory planted whole, with an unauthenticated journal.
    let planted = ws.root().join(".cleanroom/runs/9999999999999-9999999");
    fs_err::create_dir_all(&planted).unwrap();
    fs_err::write(planted.join("report.json"), &passed).unwrap();
    let line = format!("{{\"type\":\"run_finished\",\"data\":{{\"status\":\"passed\",\"escalated\":false,\"report_sha256\":\"{forged_sha}\"}}}}\n");
    fs_err::write(planted.join("events.jsonl"), line).unwrap();
    let latest = cli(&ws, &["report"]);
    assert_eq!(latest.status.code(), Some(2), "a planted run was shown\n{}", text(&latest));
    for out in [&edited, &both, &latest] {
        assert!(!String::from_utf8_lossy(&out.stdout).contains("passed"), "{}", text(out));
    }
}
