//! Attacks by the program under test when it is a service: a
//! `[service.ID]` that listens on a port in a network namespace of its own,
//! reached only through the runner by the evaluator that names it (here the
//! `service_probe` guest, which sends `GET /` and wants `expect` in the
//! answer). The cheating service is a real Python program; it wants the
//! probe to pass, and tries to read the scenarios, to be reached or to
//! reach out past the runner, to outlive its round, and to hold the gate
//! hostage by never becoming ready.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use sandbox_tests::{step, Workspace};

use super::leaks::{recorded, run};
use super::{case, refused, Case};

/// The port every test service listens on inside its own namespace: the
/// same number on the host leads nowhere.
const PORT: u16 = 38471;

/// A Python HTTP service whose `GET /` answers with what `answer()` (the
/// `body` source, a Python function) returns; `setup` runs first.
fn service_source(setup: &str, body: &str) -> String {
    format!(
        "import http.server, os, socket, subprocess, sys\n{setup}\n{body}\n\
         class H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        data = answer().encode()\n        self.send_response(200)\n        self.send_header('content-length', str(len(data)))\n        self.end_headers()\n        self.wfile.write(data)\n    def log_message(self, *a):\n        pass\n\
         http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n"
    )
}

/// A workspace with one holdout scenario holding the secret, `service` as
/// `app/server.py`, and a pipeline whose stage records its feedback and
/// whose evaluator probes the service for `expect`.
fn pipeline(ws: &Workspace, service: &str, expect: &str, service_extra: &str) -> String {
    ws.file("scenarios/secret.toml", "answer = \"the answer is 42\"\n").file("app/server.py", service).dir("out");
    format!(
        "[barrier]\nholdout = [\"scenarios\"]\n\n[stage.code]\nplugin = \"recorder\"\nwrite = [\"out\"]\n\n\
         [service.api]\nrun = [\"python3\", \"app/server.py\"]\nread = [\"app\"]\nport = {PORT}\n{service_extra}\n\n\
         [evaluator.judge]\nplugin = \"probe\"\nneeds = [\"code\"]\nread = [\"scenarios\"]\nservice = \"api\"\n\
         retry = \"code\"\nmax_iterations = 2\nconfig = {{ expect = {expect:?} }}\n"
    )
}

fn probe_detail(report: &cleanroom::RunReport) -> String {
    step(report, "judge").evaluation.as_ref().map(|e| e.scenarios[0].detail.clone()).unwrap_or_default()
}

/// A mail twin that accepts every send with 202 and reports it handled
/// the call (`twin saw it`).
const TWIN: &str = "import http.server, os\n\
class H(http.server.BaseHTTPRequestHandler):\n    def do_POST(self):\n        self.rfile.read(int(self.headers.get('content-length', 0)))\n        data = b'twin saw it'\n        self.send_response(202)\n        self.send_header('content-length', str(len(data)))\n        self.end_headers()\n        self.wfile.write(data)\n    def log_message(self, *a):\n        pass\n\
http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n";

/// The port the twin listens on, in its namespace and (through the relay)
/// in the service's.
const TWIN_PORT: u16 = 39122;

/// [`pipeline`] with the twin `mail` (at `$MAIL_URL`) added to the service,
/// and an HTTP scenario `check` of `scenario` run by scenario-runner in
/// place of the probe.
fn twin_pipeline(ws: &Workspace, service: &str, scenario: &str) -> String {
    ws.file("twins/mail.py", TWIN).file("scenarios/check.toml", scenario).file("app/server.py", service).dir("out");
    format!(
        "[barrier]\nholdout = [\"scenarios\"]\n\n[stage.code]\nplugin = \"recorder\"\nwrite = [\"out\"]\n\n\
         [twin.mail]\norigin = \"https://api.mail.example\"\nrun = [\"python3\", \"twins/mail.py\"]\nread = [\"twins\"]\nport = {TWIN_PORT}\nurl_env = \"MAIL_URL\"\n\n\
         [service.api]\nrun = [\"python3\", \"app/server.py\"]\nread = [\"app\"]\nport = {PORT}\ntwins = [\"mail\"]\n\n\
         [evaluator.judge]\nplugin = \"runner\"\nneeds = [\"code\"]\nread = [\"scenarios\"]\nservice = \"api\"\n\
         retry = \"code\"\nmax_iterations = 2\nconfig = {{ scenarios = \"/scenarios\" }}\n"
    )
}

fn scenario_detail(report: &cleanroom::RunReport) -> String {
    step(report, "judge").evaluation.as_ref().map(|e| e.scenarios[0].detail.clone()).unwrap_or_default()
}

/// A component service (`twin_caller`) with the twin `mail` (a program, or
/// the first-party mail twin component), judged by scenario-runner with
/// `scenario`.
fn component_twin_pipeline(ws: &Workspace, twin: &str, scenario: &str) -> String {
    ws.file("twins/mail.py", TWIN).file("scenarios/check.toml", scenario).dir("out").dir("app");
    fs_err::copy(sandbox_tests::guest("twin_caller"), ws.root().join("app/api.wasm")).unwrap();
    fs_err::copy(super::leaks::plugin("mail_twin"), ws.root().join("twins/mail.wasm")).unwrap();
    format!(
        "[barrier]\nholdout = [\"scenarios\"]\n\n[stage.code]\nplugin = \"recorder\"\nwrite = [\"out\"]\n\n\
         [twin.mail]\norigin = \"https://api.mail.example\"\n{twin}\nurl_env = \"MAIL_URL\"\n\n\
         [service.api]\ncomponent = \"app/api.wasm\"\ntwins = [\"mail\"]\n\n\
         [evaluator.judge]\nplugin = \"runner\"\nneeds = [\"code\"]\nread = [\"scenarios\"]\nservice = \"api\"\n\
         repeat = 2\nretry = \"code\"\nmax_iterations = 2\nconfig = {{ scenarios = \"/scenarios\" }}\n"
    )
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        case("a component service reaches past its twins, and its calls to them are recorded", || {
            let scenario =
                "[[requests]]\npath = '/'\nstatus = 200\nbody_contains = ['twin: 202', 'outside: refused']\n\
                            [[requests]]\ntwin_calls = { twin = 'mail', method = 'POST', path = '/send', count = 1 }\n";
            let native = format!("run = [\"python3\", \"twins/mail.py\"]\nread = [\"twins\"]\nport = {TWIN_PORT}");
            let component = format!("component = \"twins/mail.wasm\"\nport = {TWIN_PORT}");
            for twin in [native, component] {
                let ws = Workspace::new();
                let report = run(&ws, &component_twin_pipeline(&ws, &twin, scenario));
                let detail = scenario_detail(&report);
                assert!(
                    report.passed(),
                    "with `{twin}`: the call did not reach the twin, or the outside did: {detail}"
                );
                // The twin's URL is the runner's, not a host the service could reach itself.
                assert!(detail.contains("url: http://mail.twin"), "{detail}");
            }
        }),
        case("a service takes its twin's port to play the twin itself", || {
            // It binds the twin's port before calling it, answering itself
            // if it can; either way the call must reach the real twin and
            // be recorded.
            let body = format!(
                "import threading, urllib.request\n\
                 def answer():\n    try:\n        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)\n        s.bind(('127.0.0.1', {TWIN_PORT})); s.listen(); took = 'took the port'\n    except OSError as e:\n        took = 'bind refused: ' + e.strerror\n    reply = urllib.request.urlopen(urllib.request.Request(os.environ['MAIL_URL'] + '/send', data=b'{{}}', method='POST'), timeout=5).read().decode()\n    return took + '; ' + reply"
            );
            let ws = Workspace::new();
            let scenario = "[[requests]]\npath = '/'\nstatus = 200\nbody_contains = ['twin saw it']\n[[requests]]\ntwin_calls = { twin = 'mail', count = 1 }\n";
            let report = run(&ws, &twin_pipeline(&ws, &service_source("", &body), scenario));
            let detail = scenario_detail(&report);
            assert!(detail.contains("bind refused:"), "the service bound its twin's port: {detail}");
            assert!(report.passed(), "the call did not reach the real twin, recorded: {detail}");
        }),
        case("a service reaches past its twin: other ports, another service, the host", || {
            let host = TcpListener::bind("127.0.0.1:0").unwrap();
            host.set_nonblocking(true).unwrap();
            let host_port = host.local_addr().unwrap().port();
            let body = format!(
                "def answer():\n    out = []\n    for port in [{host_port}, 22, 8080, {PORT}]:\n        try:\n            socket.create_connection(('127.0.0.1', port), timeout=1).close(); out.append(f'{{port}} reached')\n        except OSError as e:\n            out.append(f'{{port}} refused')\n    for host in ['1.1.1.1', '10.0.0.1']:\n        try:\n            socket.create_connection((host, 80), timeout=1).close(); out.append(host + ' reached')\n        except OSError:\n            out.append(host + ' refused')\n    return '; '.join(out)"
            );
            let ws = Workspace::new();
            let scenario = "[[requests]]\npath = '/'\nbody_contains = ['reached']\n";
            let report = run(&ws, &twin_pipeline(&ws, &service_source("", &body), scenario));
            let detail = scenario_detail(&report);
            assert!(detail.contains(&format!("{host_port} refused")), "control: the probe ran: {detail}");
            assert!(
                !detail.contains("reached;") && !detail.contains("reached\n"),
                "the service reached past its twin: {detail}"
            );
            assert!(host.accept().is_err(), "a connection reached the host");
        }),
        case("a service hands its twin a secret header to have it recorded for the judge", || {
            let body = "import urllib.request\ndef answer():\n    r = urllib.request.Request(os.environ['MAIL_URL'] + '/send', data=b'x', method='POST', headers={'Authorization': 'Bearer SECRET-TOKEN-1', 'X-Api-Key': 'SECRET-KEY-2'})\n    return urllib.request.urlopen(r, timeout=5).read().decode()";
            let ws = Workspace::new();
            let scenario =
                "[[requests]]\npath = '/'\nstatus = 200\n[[requests]]\ntwin_calls = { twin = 'mail', count = 0 }\n";
            let report = run(&ws, &twin_pipeline(&ws, &service_source("", body), scenario));
            let detail = scenario_detail(&report);
            // Control: the call was recorded (the count of 0 failed) ...
            assert!(detail.contains("calls to twin `mail`: 1"), "{detail}");
            // ... without the secrets the service sent with it.
            assert!(!detail.contains("SECRET-TOKEN-1") && !detail.contains("SECRET-KEY-2"), "{detail}");
        }),
        case("a service and its twin outlive a runner killed mid-run", || {
            let marker = format!("cleanroom-killed-runner-{}", std::process::id());
            let setup =
                format!("subprocess.Popen(['bash', '-c', 'exec -a {marker} sleep 300'], start_new_session=True)");
            let ws = Workspace::new();
            let body = "import time\ndef answer():\n    time.sleep(300)\n    return 'late'";
            let toml = twin_pipeline(&ws, &service_source(&setup, body), "[[requests]]\npath = '/'\n");
            let toml = format!(
                "[pipeline]\nname = \"killed\"\n\n[plugins]\nrecorder = {:?}\nrunner = {:?}\n\n{toml}",
                sandbox_tests::guest("feedback_recorder").display().to_string(),
                super::leaks::plugin("scenario_runner").display().to_string(),
            )
            .replace("retry = \"code\"\nmax_iterations = 2\n", "timeout = \"5m\"\n");
            fs_err::write(ws.root().join("pipeline.toml"), toml).unwrap();
            let mut child = std::process::Command::new(sandbox_tests::cleanroom_binary())
                .args(["run", "pipeline.toml"])
                .current_dir(ws.root())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let alive = || {
                fs_err::read_dir("/proc")
                    .unwrap()
                    .flatten()
                    .filter_map(|e| fs_err::read(e.path().join("cmdline")).ok())
                    .filter(|c| String::from_utf8_lossy(c).contains(&marker))
                    .count()
            };
            let started = Instant::now();
            while alive() == 0 {
                assert!(started.elapsed() < Duration::from_secs(60), "control: the service never started");
                std::thread::sleep(Duration::from_millis(20));
            }
            child.kill().unwrap();
            child.wait().unwrap();
            let killed = Instant::now();
            while alive() > 0 && killed.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(alive(), 0, "the service's processes outlived the runner");
            let python = fs_err::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| fs_err::read(e.path().join("cmdline")).ok())
                .filter(|c| String::from_utf8_lossy(c).contains(&ws.root().display().to_string()))
                .count();
            assert_eq!(python, 0, "a program of the killed run is still alive");
        }),
        case("a service answers its judge, and no one else can reach it", || {
            let ws = Workspace::new();
            let toml =
                pipeline(&ws, &service_source("", "def answer():\n    return 'hello from the service'"), "hello", "");
            // While the run goes on, try the service's port on the host.
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let prober = {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut reached = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        if TcpStream::connect_timeout(&([127, 0, 0, 1], PORT).into(), Duration::from_millis(50)).is_ok()
                        {
                            reached += 1;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    reached
                })
            };
            let report = run(&ws, &toml);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            assert_eq!(prober.join().unwrap(), 0, "the service was reachable from the host");
            // Control: the judge reached it through the runner.
            assert!(report.passed(), "{:#?}", step(&report, "judge"));
            assert!(probe_detail(&report).contains("hello from the service"));
        }),
        case("a service reads the holdout to answer its judge", || {
            let ws = Workspace::new();
            let body = "def answer():\n    try:\n        return open('scenarios/secret.toml').read()\n    except OSError as e:\n        return 'cheat failed: ' + e.strerror";
            let report = run(&ws, &pipeline(&ws, &service_source("", body), "the answer is 42", ""));
            let detail = probe_detail(&report);
            assert!(detail.contains("cheat failed: Permission denied"), "the service read the holdout: {detail}");
            assert_eq!(recorded(&ws, 2), "scenario probe: failed 1/1: the service answered otherwise\n");
        }),
        case("a service phones out to a listener on the host", || {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let port = listener.local_addr().unwrap().port();
            let body = format!(
                "def answer():\n    try:\n        socket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'hi')\n        return 'reached'\n    except OSError as e:\n        return 'refused: ' + str(e)"
            );
            let ws = Workspace::new();
            let report = run(&ws, &pipeline(&ws, &service_source("", &body), "reached", ""));
            assert!(probe_detail(&report).contains("refused"), "{}", probe_detail(&report));
            assert!(listener.accept().is_err(), "a connection from the service reached the host");
        }),
        case("a service leaves a daemon behind to outlive its round", || {
            let marker = format!("cleanroom-service-daemon-{}", std::process::id());
            let setup = format!(
                "subprocess.Popen(['bash', '-c', 'exec -a {marker} sleep 300'], start_new_session=True)\nif os.fork() == 0:\n    os.setsid()\n    os.execvp('sleep', ['sleep', '300', '{marker}'])"
            );
            let ws = Workspace::new();
            let report = run(&ws, &pipeline(&ws, &service_source(&setup, "def answer():\n    return 'up'"), "up", ""));
            assert!(report.passed(), "control: the service ran: {:#?}", step(&report, "judge"));
            let survivors = fs_err::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| fs_err::read(e.path().join("cmdline")).ok())
                .filter(|c| String::from_utf8_lossy(c).contains(&marker))
                .count();
            assert_eq!(survivors, 0, "processes the service started outlived the run");
        }),
        case("a service never becomes ready, to hold the gate", || {
            let ws = Workspace::new();
            let service = "import time\nprint('starting, honest', flush=True)\ntime.sleep(300)\n";
            let started = Instant::now();
            let report = run(&ws, &pipeline(&ws, service, "x", "ready = { http = \"/health\", timeout = \"2s\" }\n"));
            let judge = step(&report, "judge");
            assert_eq!(judge.status, cleanroom::StepStatus::Failed, "{judge:#?}");
            assert_eq!(judge.service_failure.as_deref(), Some("service `api` did not become ready in 2s"));
            assert!(judge.stderr.contains("starting, honest"), "its last output is in the report: {judge:#?}");
            assert_eq!(recorded(&ws, 2), "step judge: service `api` did not become ready in 2s\n");
            assert!(started.elapsed() < Duration::from_secs(60), "the run waited far past the ready timeout");
        }),
        case("a twin is given the holdout to read, to answer for the service", || {
            let ws = Workspace::new();
            ws.file("scenarios/s.toml", "x = 1").file("app/server.py", "print(1)").file("twins/t.py", "print(1)");
            refused(
                &ws,
                &["fixed_verdicts"],
                &format!(
                    "[barrier]\nholdout = [\"scenarios\"]\n\
                     [twin.mail]\norigin = \"https://m.example\"\nrun = [\"python3\", \"twins/t.py\"]\nread = [\"twins\", \"scenarios\"]\nport = {TWIN_PORT}\nurl_env = \"M\"\n\
                     [service.api]\nrun = [\"python3\", \"app/server.py\"]\nread = [\"app\"]\nport = {PORT}\ntwins = [\"mail\"]\n\
                     [evaluator.judge]\nplugin = \"fixed_verdicts\"\nread = [\"scenarios\"]\nservice = \"api\"\nconfig = {{ quote = \"/scenarios/s.toml\" }}\n"
                ),
                "CR019",
                "twin `mail` read `scenarios` crosses the barrier: `scenarios` is holdout",
            );
        }),
        case("a service is given the holdout or the private source to read", || {
            let ws = Workspace::new();
            ws.file("scenarios/s.toml", "x = 1").file("src/server.py", "print(1)");
            refused(
                &ws,
                &["fixed_verdicts"],
                &format!(
                    "[barrier]\nholdout = [\"scenarios\"]\nprivate = [\"src\"]\n[service.api]\nrun = [\"python3\", \"src/server.py\"]\nread = [\"src\", \"scenarios\"]\nport = {PORT}\n\
                     [evaluator.judge]\nplugin = \"fixed_verdicts\"\nread = [\"scenarios\"]\nservice = \"api\"\nconfig = {{ quote = \"/scenarios/s.toml\" }}\n"
                ),
                "CR019",
                "service `api` read `scenarios` crosses the barrier: `scenarios` is holdout",
            );
        }),
    ]
}
