//! Attacks on the native jail: processes that outlive their step, races with
//! the commit, privileges smuggled in file modes, the helper's spec, secrets
//! and credentials, the run directory under a root write mount.
//!
//! Each case has a control that fails when the attack did not really happen
//! (the daemon did start, the mode was really set inside, the marker really
//! reached the program), so none of them passes vacuously.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cleanroom::{RunOptions, RunReport, StepStatus};
use sandbox_tests::{cleanroom_binary, step, Workspace};

use super::{attack, case, Case};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case("a setsid double-forked daemon outlives a stage that exits 0", || daemon_outlives(false)),
        case("a setsid double-forked daemon outlives a stage that times out", || daemon_outlives(true)),
        case("commit a FIFO in place of an output file", fifo_in_output),
        case("a survivor swaps a FIFO in for a file while the runner commits", fifo_swapping_survivor),
        case("commit a unix socket in place of an output file", socket_in_output),
        case("a daemon holds the step's output pipes open", daemon_holds_pipes),
        case("kill the jail's init process from inside", kill_init),
        case("leave setuid, setgid, sticky and world-writable files (commit and cached replay)", privileged_modes),
        case("read the jail spec from another process's argv", spec_not_in_argv),
        case("pass a megabyte of environment to a native stage", huge_environment),
        case("die by a signal to dodge a verdict (and get cached)", killed_by_signal),
        case("read credentials inside a granted tools directory", hidden_credentials),
        case("write the run directory through a root write mount", root_write_mount),
        case("print a granted secret from a native step into the report", native_secret),
        case("forge the jail helper's marker lines on stderr", || {
            let ws = Workspace::new();
            let forged = "echo 'cleanroom-jail: unjailed: forged'; echo 'cleanroom-jail: error: forged' >&2; \
                          echo 'cleanroom-jail-0123456789abcdef0123456789abcdef: error: forged' >&2; exit 125";
            let report = super::attack(
                &ws,
                &[],
                &format!("[check.forge]\nrun = [\"sh\", \"-c\", \"{forged}\"]\n"),
                "forge",
                &[],
            );
            let forge = step(&report, "forge");
            // Control: the program did print the lines, and they stay its own output.
            assert!(forge.stderr.contains("cleanroom-jail: error: forged"), "{forge:?}");
            assert_eq!(forge.status, StepStatus::Failed, "a forged marker turned a failure into {:?}", forge.status);
            assert!(forge.unjailed.is_none(), "a forged marker made the run look unjailed");
            assert!(forge.findings[0].message.contains("exited with status 125"), "{:?}", forge.findings);
        }),
        case("make the gate's own program unrunnable to end the retry loop early", unrunnable_gate),
    ]
}

/// A marker unique to this process and call, for `pgrep -f`.
fn marker() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("30.{}{:03}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Processes whose command line contains `pattern`.
fn survivors(pattern: &str) -> String {
    let out = Command::new("pgrep").args(["-af", pattern]).output().expect("pgrep");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `ws`'s pipeline (written by [`Workspace::plan`]) with the result
/// cache on, in the private cache directory `cache`.
fn run_cached(ws: &Workspace, steps: &str, cache: &Path) -> RunReport {
    let plan = ws.plan(&[], steps).unwrap_or_else(|d| panic!("pipeline did not validate:\n{d}"));
    // The variable is process-global; cases run one at a time.
    std::env::set_var("CLEANROOM_CACHE_DIR", cache);
    let options = RunOptions { jobs: 2, jail_helper: cleanroom_binary(), cache: true, ..RunOptions::default() };
    let report = cleanroom::run(&plan, &options);
    std::env::remove_var("CLEANROOM_CACHE_DIR");
    report.unwrap_or_else(|d| panic!("pipeline did not load:\n{d}"))
}

fn daemon_outlives(times_out: bool) {
    let ws = Workspace::new();
    ws.dir("out");
    let marker = marker();
    // The daemon says it is up (stdout and a file), lets go of the step's
    // pipes, and sleeps under a unique name; the program waits for it.
    let daemon = format!("echo daemon-up; echo up > out/daemon; exec >/dev/null 2>&1 </dev/null; exec sleep {marker}");
    let tail = if times_out { "sleep 100" } else { "exit 0" };
    let script = format!(
        "(setsid sh -c '{daemon}' &) ; i=0; while [ ! -s out/daemon ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; {tail}"
    );
    let steps = format!(
        "[stage.spawn]\nrun = [\"sh\", \"-c\", {script:?}]\nwrite = [\"out\"]\ntimeout = \"{}\"\n",
        if times_out { "3s" } else { "30s" }
    );
    let report = if times_out { attack(&ws, &[], &steps, "spawn", &[]) } else { ws.run(&[], &steps) };
    // No sleep: dead when the run returns, not soon after.
    let left = survivors(&marker);
    let spawn = step(&report, "spawn");
    assert!(spawn.stdout.contains("daemon-up"), "control: the daemon never started: {spawn:?}");
    if times_out {
        assert_eq!(spawn.reason.as_deref(), Some("timed out after 3s"));
    } else {
        assert_eq!(spawn.status, StepStatus::Passed, "{:?}", spawn.reason);
        assert_eq!(ws.read("out/daemon"), "up\n", "control: the daemon's write was committed");
    }
    assert!(left.is_empty(), "processes outlived the step: {left}");
}

fn fifo_in_output() {
    let ws = Workspace::new();
    ws.file("out/x", "original");
    let started = Instant::now();
    let report = attack(
        &ws,
        &[],
        "[stage.fifo]\nrun = [\"sh\", \"-c\", \"echo new > out/y; rm out/x; mkfifo out/x && test -p out/x && echo made-fifo\"]\nwrite = [\"out\"]\n",
        "fifo",
        &[],
    );
    let fifo = step(&report, "fifo");
    assert!(fifo.stdout.contains("made-fifo"), "control: no FIFO was made: {fifo:?}");
    assert_eq!(fifo.status, StepStatus::Error);
    let reason = fifo.reason.clone().unwrap_or_default();
    assert!(reason.contains("`out/x` is a FIFO, not a regular file; nothing was committed"), "{reason}");
    assert!(started.elapsed() < Duration::from_secs(30), "the commit blocked");
    assert!(!ws.root().join("out/y").exists(), "part of the refused commit was applied");
}

fn fifo_swapping_survivor() {
    let ws = Workspace::new();
    ws.file("out/x", "original");
    let marker = marker();
    // The survivor flips out/x between a file and a FIFO as fast as it can
    // and would block any reader of the FIFO; the program exits 0 at once.
    let survivor = format!(
        "echo flipper-up; exec >/dev/null 2>&1; while :; do rm -f out/x; mkfifo out/x; rm -f out/x; echo f > out/x; done & exec sleep {marker}"
    );
    let script = format!("(setsid sh -c '{survivor}' &); sleep 0.5; exit 0");
    let started = Instant::now();
    let report = ws.run(&[], &format!("[stage.swap]\nrun = [\"sh\", \"-c\", {script:?}]\nwrite = [\"out\"]\n"));
    let left = survivors(&marker);
    let swap = step(&report, "swap");
    assert!(swap.stdout.contains("flipper-up"), "control: the survivor never started: {swap:?}");
    assert!(started.elapsed() < Duration::from_secs(60), "the run did not return in time");
    assert!(left.is_empty(), "processes outlived the step: {left}");
    let meta = fs_err::symlink_metadata(ws.root().join("out/x"));
    match swap.status {
        // Whatever state the survivor died in: a regular file, or a refusal.
        // (Absent is fine: the survivor had just removed it, a deletion.)
        StepStatus::Passed => assert!(meta.is_err() || meta.is_ok_and(|m| m.is_file()), "a non-file was committed"),
        _ => {
            let reason = swap.reason.clone().unwrap_or_default();
            assert!(reason.contains("nothing was committed"), "{reason}");
            assert_eq!(ws.read("out/x"), "original");
        }
    }
}

fn socket_in_output() {
    if !Path::new("/usr/bin/python3").exists() {
        println!("           (skipped: no /usr/bin/python3 to bind a unix socket)");
        return;
    }
    let ws = Workspace::new();
    ws.file("out/x", "original");
    let report = attack(
        &ws,
        &[],
        "[stage.sock]\nrun = [\"python3\", \"-c\", \"import socket, os; os.remove('out/x'); socket.socket(socket.AF_UNIX).bind('out/x'); print('bound')\"]\nwrite = [\"out\"]\n",
        "sock",
        &[],
    );
    let sock = step(&report, "sock");
    assert!(sock.stdout.contains("bound"), "control: no socket was bound: {sock:?}");
    let reason = sock.reason.clone().unwrap_or_default();
    assert!(reason.contains("`out/x` is a socket, not a regular file; nothing was committed"), "{reason}");
}

fn daemon_holds_pipes() {
    let ws = Workspace::new();
    let marker = marker();
    // The daemon keeps the step's stdout and stderr open and never exits.
    let script = format!("(setsid sh -c 'echo holder-up; exec sleep {marker}' &); sleep 0.3; exit 0");
    let started = Instant::now();
    let report = ws.run(&[], &format!("[check.hold]\nrun = [\"sh\", \"-c\", {script:?}]\ntimeout = \"60s\"\n"));
    let left = survivors(&marker);
    let hold = step(&report, "hold");
    assert!(hold.stdout.contains("holder-up"), "control: the daemon never started: {hold:?}");
    assert_eq!(hold.status, StepStatus::Passed, "{:?}", hold.reason);
    assert!(started.elapsed() < Duration::from_secs(10), "the run waited for the daemon's pipes");
    assert!(left.is_empty(), "processes outlived the step: {left}");
}

fn kill_init() {
    let ws = Workspace::new();
    let marker = marker();
    // Killing init would take the namespace down, and with it the
    // supervision; the kernel protects an init from its own namespace.
    let script = format!("sleep {marker} & kill -9 1; kill -9 -1; sleep 0.2; echo still-here");
    let report = ws.run(&[], &format!("[check.regicide]\nrun = [\"sh\", \"-c\", {script:?}]\n"));
    let regicide = step(&report, "regicide");
    assert!(regicide.stdout.contains("still-here"), "the program did not survive its own attack: {regicide:?}");
    assert_eq!(regicide.status, StepStatus::Passed, "{:?}", regicide.reason);
    let left = survivors(&marker);
    assert!(left.is_empty(), "processes outlived the step: {left}");
}

/// Mode bits of workspace path `rel`.
fn mode(ws: &Workspace, rel: &str) -> u32 {
    fs_err::metadata(ws.root().join(rel)).unwrap().permissions().mode() & 0o7777
}

fn privileged_modes() {
    let cache = tempfile::tempdir().unwrap();
    let ws = Workspace::new();
    ws.dir("out");
    let steps = "[stage.modes]\nrun = [\"sh\", \"-c\", \"echo a > out/suid; chmod 6755 out/suid; echo b > out/sticky; chmod 1777 out/sticky; \
                 echo c > out/open; chmod 0666 out/open; mkdir -m 0777 out/d; echo d > out/d/f; stat -c '%a %n' out/suid out/sticky out/open out/d\"]\nwrite = [\"out\"]\n";
    let first = run_cached(&ws, steps, cache.path());
    let modes = step(&first, "modes");
    assert_eq!(modes.status, StepStatus::Passed, "{:?}", modes.reason);
    assert!(
        modes.stdout.contains("6755 out/suid") && modes.stdout.contains("1777 out/sticky"),
        "control: the modes were not set inside: {}",
        modes.stdout
    );
    let check = |ws: &Workspace| {
        for rel in ["out/suid", "out/sticky", "out/open", "out/d/f", "out/d"] {
            let bits = mode(ws, rel);
            assert_eq!(bits & !0o755, 0, "`{rel}` was committed with mode {bits:o}");
        }
        assert_eq!(mode(ws, "out/suid"), 0o755);
    };
    check(&ws);
    // Reset the workspace and replay the cached result. (A cache entry
    // edited to hold other modes is refused by the cache's own integrity
    // check; `writes::replay` masks modes anyway, see its unit tests.)
    fs_err::remove_dir_all(ws.root().join("out")).unwrap();
    ws.dir("out");
    let second = run_cached(&ws, steps, cache.path());
    assert!(step(&second, "modes").cached, "control: the second run was not a cached replay");
    assert_eq!(ws.read("out/suid"), "a\n", "control: the replay wrote the files");
    check(&ws);
}

fn spec_not_in_argv() {
    let ws = Workspace::new();
    let secret_marker = format!("FEEDBACK-MARKER-{}", marker());
    let sleeper = marker();
    let steps = format!(
        "[check.slow]\nrun = [\"sleep\", \"{sleeper}\"]\nenv = {{ MARK = \"{secret_marker}\" }}\ntimeout = \"3s\"\n"
    );
    let mut seen_program = false;
    let mut leaked = Vec::new();
    std::thread::scope(|scope| {
        let run = scope.spawn(|| ws.run(&[], &steps));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !run.is_finished() && Instant::now() < deadline {
            for entry in fs_err::read_dir("/proc").unwrap().flatten() {
                let dir = entry.path();
                let Ok(cmdline) = fs_err::read(dir.join("cmdline")) else { continue };
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                if cmdline.contains(&secret_marker) {
                    leaked.push(cmdline.clone());
                }
                if cmdline.contains(&sleeper) {
                    let environ = fs_err::read(dir.join("environ")).unwrap_or_default();
                    seen_program |= String::from_utf8_lossy(&environ).contains(&secret_marker);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let report = run.join().unwrap();
        assert_eq!(step(&report, "slow").reason.as_deref(), Some("timed out after 3s"));
    });
    assert!(seen_program, "control: the program never ran with the marker in its environment");
    assert!(leaked.is_empty(), "the spec is on a command line: {leaked:?}");
}

fn huge_environment() {
    let ws = Workspace::new();
    // Ten variables of 100 kB (one string may not pass 128 KiB) and one
    // just under that: over a megabyte that once went on the helper's argv.
    let mut env = String::new();
    for i in 0..10 {
        env.push_str(&format!("BIG{i} = \"{}\", ", "x".repeat(100_000)));
    }
    // As long as CLEANROOM_FEEDBACK may get (a name of the same length).
    env.push_str(&format!("CLEANROOM_FEEDBAXX = \"{}\"", "y".repeat(128 * 1024 - 64)));
    let report = ws.run(
        &[],
        &format!("[stage.big]\nrun = [\"sh\", \"-c\", \"echo ${{#BIG0}} ${{#BIG9}} ${{#CLEANROOM_FEEDBAXX}}\"]\nenv = {{ {env} }}\n"),
    );
    let big = step(&report, "big");
    assert_eq!(big.status, StepStatus::Passed, "{:?}", big.reason);
    assert_eq!(big.stdout.trim(), format!("100000 100000 {}", 128 * 1024 - 64));
}

fn killed_by_signal() {
    let cache = tempfile::tempdir().unwrap();
    let ws = Workspace::new();
    let steps = "[check.suicide]\nrun = [\"sh\", \"-c\", \"echo about-to-die; kill -9 $$; echo survived\"]\n";
    for round in 0..2 {
        let report = run_cached(&ws, steps, cache.path());
        let suicide = step(&report, "suicide");
        assert!(suicide.stdout.contains("about-to-die"), "control: the program did not run: {suicide:?}");
        assert_eq!(suicide.status, StepStatus::Error, "round {round}");
        let reason = suicide.reason.clone().unwrap_or_default();
        assert!(reason.contains("was killed by signal 9"), "{reason}");
        assert!(!suicide.cached, "round {round}: a signal death was taken from the cache");
    }
}

fn hidden_credentials() {
    let home = tempfile::tempdir().unwrap();
    let home_path = fs_err::canonicalize(home.path()).unwrap();
    let put = |rel: &str, text: &str| {
        let path = home_path.join(rel);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(&path, text).unwrap();
    };
    put(".cargo/bin/mytool", "#!/bin/sh\necho tool-ran\n");
    fs_err::set_permissions(home_path.join(".cargo/bin/mytool"), std::fs::Permissions::from_mode(0o755)).unwrap();
    put(".cargo/config.toml", "visible-config");
    put(".cargo/credentials.toml", "token = \"CARGO-TOKEN-SECRET\"");
    put(".cargo/credentials", "CARGO-OLD-TOKEN-SECRET");
    put(".config/gh/hosts.yml", "oauth_token: GH-TOKEN-SECRET");
    put(".config/other/settings", "visible-settings");
    assert!(fs_err::read_to_string(home_path.join(".cargo/credentials.toml")).unwrap().contains("SECRET"));
    let saved = std::env::var_os("HOME");
    std::env::set_var("HOME", &home_path);
    let ws = Workspace::new();
    let script = "mytool; cat ~/.cargo/config.toml; echo; cat ~/.config/other/settings; echo; \
                  cat ~/.cargo/credentials.toml ~/.cargo/credentials ~/.config/gh/hosts.yml; ls -a ~/.config/gh; \
                  echo x > ~/.cargo/credentials.toml; true";
    let report = ws.run(
        &[],
        &format!("[check.creds]\nrun = [\"sh\", \"-c\", {script:?}]\ntools = [\"~/.cargo\", \"~/.config\"]\n"),
    );
    match saved {
        Some(home) => std::env::set_var("HOME", home),
        None => std::env::remove_var("HOME"),
    }
    let creds = step(&report, "creds");
    assert_eq!(creds.status, StepStatus::Passed, "{:?} {}", creds.reason, creds.stderr);
    assert!(
        creds.stdout.contains("tool-ran")
            && creds.stdout.contains("visible-config")
            && creds.stdout.contains("visible-settings"),
        "control: the granted tools were not usable: {creds:?}"
    );
    assert!(!format!("{report:?}").contains("TOKEN-SECRET"), "a credential leaked: {creds:?}");
    assert!(fs_err::read_to_string(home_path.join(".cargo/credentials.toml")).unwrap().contains("CARGO-TOKEN-SECRET"));
}

fn root_write_mount() {
    let root = tempfile::tempdir().unwrap();
    let root = fs_err::canonicalize(root.path()).unwrap();
    let ws = root.join("ws");
    fs_err::create_dir_all(ws.join(".cleanroom/runs/old")).unwrap();
    fs_err::write(ws.join(".cleanroom/runs/old/report.json"), "old").unwrap();
    fs_err::write(ws.join("keep.txt"), "keep").unwrap();
    let script = "echo made > made.txt; \
        mkdir -p x && cd x/.. && echo evil > .cleanroom/runs/evil; \
        echo evil > ./.cleanroom/evil; echo evil > x/../.cleanroom/evil2; \
        rm -rf .cleanroom/runs; mv .cleanroom gone; rmdir .cleanroom; \
        ln -s .cleanroom link; echo evil > link/evil3; \
        ls -a .cleanroom; true";
    let toml = format!(
        "[pipeline]\nname = \"root\"\nworkspace = \"ws\"\n[stage.all]\nrun = [\"sh\", \"-c\", {script:?}]\nwrite = [\".\"]\n"
    );
    let pipeline = root.join("pipeline.toml");
    fs_err::write(&pipeline, toml).unwrap();
    let plan = cleanroom::Plan::load(&pipeline).unwrap_or_else(|d| panic!("{d}"));
    let options = RunOptions { jobs: 2, jail_helper: cleanroom_binary(), cache: false, ..RunOptions::default() };
    let report = cleanroom::run(&plan, &options).unwrap_or_else(|d| panic!("{d}"));
    let all = step(&report, "all");
    assert_eq!(all.status, StepStatus::Passed, "a root write mount cannot start: {:?} {}", all.reason, all.stderr);
    assert_eq!(fs_err::read_to_string(ws.join("made.txt")).unwrap(), "made\n", "control: the stage wrote nothing");
    assert_eq!(fs_err::read_to_string(ws.join(".cleanroom/runs/old/report.json")).unwrap(), "old");
    let mut evil = Vec::new();
    let mut stack = vec![ws.join(".cleanroom")];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("evil")) {
                evil.push(path);
            }
        }
    }
    assert!(evil.is_empty(), "the stage wrote the run directory: {evil:?}");
    assert!(!ws.join("gone").exists(), "the run directory was moved");
    assert!(all.changes.iter().all(|c| !c.to_string().contains(".cleanroom")), "{:?}", all.changes);
}

fn native_secret() {
    let value = "sk-native-0123456789abcdef";
    std::env::set_var("CLEANROOM_JAIL_KEY", value);
    let ws = Workspace::new();
    let report = attack(
        &ws,
        &[],
        "[secrets]\nKEY = { env = \"CLEANROOM_JAIL_KEY\" }\n\
         [check.leak]\nrun = [\"sh\", \"-c\", \"[ \\\"$KEY\\\" = sk-native-0123456789abcdef ] && echo has-key; echo \\\"$KEY\\\"; echo \\\"key=$KEY\\\" >&2; exit 1\"]\nsecrets = [\"KEY\"]\n",
        "leak",
        &[],
    );
    std::env::remove_var("CLEANROOM_JAIL_KEY");
    let leak = step(&report, "leak");
    assert!(leak.stdout.contains("has-key"), "control: the secret did not reach the program: {leak:?}");
    assert!(leak.stdout.contains("[secret KEY]"), "the printed secret was not scrubbed: {}", leak.stdout);
    assert!(!format!("{report:?}").contains(value), "the report holds the secret");
}

/// A stage that breaks its gate's program (an infrastructure error, which
/// stops the loop at once) gets a failed run, never a pass; an honest
/// failure of the same gate is retried.
fn unrunnable_gate() {
    let pipeline = |stage: &str| {
        format!(
            "[stage.code]\nrun = [\"sh\", \"-c\", \"{stage}\"]\nwrite = [\"bin\"]\n\
             [check.gate]\nrun = [\"bin/gate.sh\"]\nread = [\"bin\"]\nneeds = [\"code\"]\nretry = \"code\"\nmax_iterations = 3\n"
        )
    };
    // Control: a gate that fails honestly sends the stage back.
    let ws = Workspace::new();
    ws.file("bin/gate.sh", "#!/bin/sh\nexit 1\n");
    set_executable(&ws.root().join("bin/gate.sh"));
    let honest = ws.run(&[], &pipeline("true"));
    assert_eq!(step(&honest, "code").attempt, 3, "control: the honest failure was not retried");
    assert!(honest.escalation.as_deref().unwrap_or_default().contains("retries are used up"));
    // The attack: the stage makes the gate's program unrunnable.
    let ws = Workspace::new();
    ws.file("bin/gate.sh", "#!/bin/sh\nexit 1\n");
    set_executable(&ws.root().join("bin/gate.sh"));
    let broken = ws.run(&[], &pipeline("chmod -x bin/gate.sh; printf 'not a program' > bin/gate.sh"));
    let gate = step(&broken, "gate");
    assert_eq!(broken.status, "failed", "breaking the gate made the run pass");
    assert_ne!(gate.status, StepStatus::Passed);
    // The jail could not execute it: not the work being judged, so the
    // loop stopped at once, and said so.
    assert!(gate.status == StepStatus::Error && gate.infrastructure, "{gate:?}");
    assert!(broken.escalation.as_deref().unwrap_or_default().contains("not the stage's work"), "{broken:?}");
    assert_eq!(step(&broken, "code").attempt, 1);
}

fn set_executable(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
