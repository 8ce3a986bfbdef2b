//! Attacks by the program under test when it is a native program: a
//! `[subject.ID]` with `run = [...]`, started in a fresh kernel jail for
//! every call by a holdout evaluator (the first-party `scenario-runner`).
//! The cheating program is a real Python script; it wants its scenario to
//! pass, and tries to read the scenarios, to phone out, to outlive its
//! call, to keep state between calls, and to exhaust the machine.

use std::net::TcpListener;

use sandbox_tests::{step, Workspace};

use super::leaks::{recorded, run};
use super::{case, refused, Case};

/// A pipeline whose stage records its feedback, judged by scenario-runner
/// against `scenarios/` with the native subject `app` (`python3
/// work/cheat.py`, reading `work/`); `subject_extra` goes into
/// `[subject.app]`, `judge_extra` into the evaluator's table.
fn pipeline(subject_extra: &str, judge_extra: &str) -> String {
    format!(
        "[barrier]\nholdout = [\"scenarios\"]\n\n[stage.code]\nplugin = \"recorder\"\nwrite = [\"out\"]\n\n\
         [subject.app]\nrun = [\"python3\", \"work/cheat.py\"]\nread = [\"work\"]\n{subject_extra}\n\n\
         [evaluator.judge]\nplugin = \"runner\"\nneeds = [\"code\"]\nread = [\"scenarios\"]\nsubject = \"app\"\n\
         retry = \"code\"\nmax_iterations = 2\nconfig = {{ scenarios = \"/scenarios\" }}\n{judge_extra}\n"
    )
}

/// A workspace with one holdout scenario whose expected output is the
/// secret, and `cheat` as `work/cheat.py`.
fn cheating_workspace(cheat: &str) -> Workspace {
    let ws = Workspace::new();
    ws.file("scenarios/guess.toml", "stdout = \"the answer is 42\\n\"\n").file("work/cheat.py", cheat).dir("out");
    ws
}

/// Looks for the scenario everywhere a program might, and prints what a
/// file there expects (the only way to pass without knowing the answer).
const HOLDOUT_READER: &str = r#"
import os, re, sys
found = None
tried = []
cwd = os.getcwd()
for root in ["scenarios", os.path.join(cwd, "scenarios"), "/proc/self/cwd/scenarios", "../scenarios",
             os.path.join(cwd, "work", "..", "scenarios")]:
    try:
        for name in os.listdir(root):
            with open(os.path.join(root, name)) as f:
                m = re.search(r'stdout = "(.*)\\n"', f.read())
                if m:
                    found = m.group(1)
    except OSError as e:
        tried.append(f"{root}: {e.strerror}")
try:
    with open(os.path.join(cwd, "scenarios", "guess.toml")) as f:
        found = re.search(r'stdout = "(.*)\\n"', f.read()).group(1)
except OSError as e:
    tried.append(f"direct: {e.strerror}")
print("cheat tried: " + "; ".join(tried), file=sys.stderr)
print(found if found is not None else "no idea")
"#;

pub(super) fn cases() -> Vec<Case> {
    vec![
        case("a native subject reads the holdout scenarios to pass them", || {
            let ws = cheating_workspace(HOLDOUT_READER);
            let report = run(&ws, &pipeline("", ""));
            let judge = step(&report, "judge");
            let scenario = &judge.evaluation.as_ref().unwrap().scenarios[0];
            assert!(!scenario.passed, "the subject read the holdout and passed: {scenario:?}");
            // Control: it ran, tried every path, and was refused each time.
            assert!(scenario.detail.contains("cheat tried: scenarios: Permission denied"), "{}", scenario.detail);
            assert!(scenario.detail.contains("stdout:\nno idea"), "{}", scenario.detail);
            assert_eq!(
                recorded(&ws, 2),
                "scenario guess: failed 1/1: stdout differs from the expected output at line 1\n"
            );
        }),
        case("a native subject phones out to a listener on the host", || {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let port = listener.local_addr().unwrap().port();
            let cheat = format!(
                "import socket, sys\ntry:\n    s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    s.sendall(b'hello')\n    print('connected')\nexcept OSError as e:\n    print('refused:', e.strerror or e)\n"
            );
            let ws = cheating_workspace(&cheat);
            let report = run(&ws, &pipeline("", ""));
            let scenario = &step(&report, "judge").evaluation.as_ref().unwrap().scenarios[0];
            assert!(scenario.detail.contains("refused:"), "the subject reached the host: {}", scenario.detail);
            assert!(listener.accept().is_err(), "a connection reached the host's listener");
        }),
        case("a native subject leaves a daemon behind to outlive its call", || {
            let marker = format!("cleanroom-daemon-{}", std::process::id());
            let cheat = format!(
                "import os, subprocess, sys\nif os.fork() == 0:\n    os.setsid()\n    subprocess.Popen(['sleep', '300', '{marker}'], start_new_session=True)\n    os._exit(0)\nsubprocess.Popen(['bash', '-c', 'exec -a {marker} sleep 300'], start_new_session=True)\nos.wait()\nprint('spawned')\n"
            );
            let ws = cheating_workspace(&cheat);
            let report = run(&ws, &pipeline("", "repeat = 2\nrequire = 1\n"));
            let scenario = &step(&report, "judge").evaluation.as_ref().unwrap().scenarios[0];
            assert!(scenario.detail.contains("spawned"), "control: the daemons were started: {}", scenario.detail);
            let survivors: Vec<String> = fs_err::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| fs_err::read(e.path().join("cmdline")).ok())
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .filter(|c| c.contains(&marker))
                .collect();
            assert!(survivors.is_empty(), "processes outlived the call: {survivors:?}");
        }),
        case("a native subject keeps state between calls and writes the workspace", || {
            let cheat = "import os, sys\nstate = [os.path.join(os.environ.get('TMPDIR', '/tmp'), 'seen'), '/tmp/cleanroom-seen', 'work/seen', '/dev/shm/cleanroom-seen']\n\
                         stale = [p for p in state if os.path.exists(p)]\n\
                         for p in state:\n    try:\n        open(p, 'w').write('x')\n    except OSError:\n        pass\n\
                         print('stale' if stale else 'fresh')\n";
            let ws = cheating_workspace(cheat);
            ws.file("scenarios/guess.toml", "stdout = \"fresh\\n\"\n");
            let before = ws.snapshot();
            let report = run(&ws, &pipeline("", "repeat = 3\n"));
            let scenario = &step(&report, "judge").evaluation.as_ref().unwrap().scenarios[0];
            assert_eq!((scenario.passes, scenario.runs), (3, 3), "a call saw what an earlier one left: {scenario:?}");
            let mut after = ws.snapshot();
            after.retain(|path, _| !path.starts_with("out"));
            let mut before = before;
            before.retain(|path, _| !path.starts_with("out"));
            assert_eq!(before, after, "the subject changed the workspace");
            assert!(
                !std::path::Path::new("/tmp/cleanroom-seen").exists()
                    && !std::path::Path::new("/dev/shm/cleanroom-seen").exists()
            );
        }),
        case("a native subject hoards memory past its cap", || {
            let cheat = "hoard = []\nwhile True:\n    hoard.append(bytearray(16 << 20))\n";
            let ws = cheating_workspace(cheat);
            let report = run(&ws, &pipeline("memory = \"64MiB\"\n", ""));
            let scenario = &step(&report, "judge").evaluation.as_ref().unwrap().scenarios[0];
            assert!(!scenario.passed);
            assert_eq!(recorded(&ws, 2), "scenario guess: failed 1/1: the subject ran out of memory\n");
            assert!(scenario.detail.contains("memory cap of 64MiB"), "{}", scenario.detail);
        }),
        case("a native subject forks without end", || {
            let marker = format!("cleanroom-forked-{}", std::process::id());
            let cheat = format!(
                "import os\nforked = 0\nfor _ in range(200):\n    try:\n        if os.fork() == 0:\n            os.execvp('sleep', ['sleep', '60', '{marker}'])\n        forked += 1\n    except OSError:\n        break\nprint('forked', forked)\n"
            );
            let ws = cheating_workspace(&cheat);
            let report = run(&ws, &pipeline("pids = 16\n", ""));
            let scenario = &step(&report, "judge").evaluation.as_ref().unwrap().scenarios[0];
            let forked: u32 = scenario
                .detail
                .split("forked ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("control: the subject did not say how often it forked: {}", scenario.detail));
            assert!(forked < 16, "the subject started {forked} processes under `pids = 16`");
            let survivors = fs_err::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| fs_err::read(e.path().join("cmdline")).ok())
                .filter(|c| String::from_utf8_lossy(c).contains(&marker))
                .count();
            assert_eq!(survivors, 0, "forked processes outlived the call");
        }),
        case("a subject reads the private source", || {
            let ws = Workspace::new();
            ws.file("scenarios/s.toml", "x = 1").file("src/app.py", "print(1)");
            refused(
                &ws,
                &["fixed_verdicts"],
                "[barrier]\nholdout = [\"scenarios\"]\nprivate = [\"src\"]\n[subject.app]\nrun = [\"python3\", \"src/app.py\"]\nread = [\"src\"]\n\
                 [evaluator.judge]\nplugin = \"fixed_verdicts\"\nread = [\"scenarios\"]\nsubject = \"app\"\n",
                "CR019",
                "`src` is private",
            );
        }),
        case("a subject is given the holdout to read, or as a tool", || {
            let ws = Workspace::new();
            ws.file("scenarios/s.toml", "x = 1").file("app.py", "print(1)");
            let scenarios = ws.root().join("scenarios").display().to_string();
            refused(
                &ws,
                &["fixed_verdicts"],
                &format!(
                    "[barrier]\nholdout = [\"scenarios\"]\n[subject.app]\nrun = [\"python3\", \"app.py\"]\nread = [\"app.py\", \"scenarios\"]\ntools = [{scenarios:?}]\n\
                     [evaluator.judge]\nplugin = \"fixed_verdicts\"\nread = [\"scenarios\"]\nsubject = \"app\"\n"
                ),
                "CR019",
                "tool path",
            );
        }),
        case("a script is named as a component subject", || {
            let ws = Workspace::new();
            ws.file("scenarios/s.toml", "x = 1").file("app/wc.py", "print(1)");
            refused(
                &ws,
                &["fixed_verdicts"],
                "[evaluator.judge]\nplugin = \"fixed_verdicts\"\nread = [\"scenarios\"]\nsubject = \"app/wc.py\"\n",
                "CR021",
                "`app/wc.py` is not a WebAssembly component",
            );
        }),
    ]
}
