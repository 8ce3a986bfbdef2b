//! What judging real programs costs, side by side with running them bare,
//! in one run:
//!
//! 1. a native subject call (a fresh kernel jail per call, stdin in, output
//!    captured) against fork+exec of the same program;
//! 2. a service's start to ready (jail, network namespace, relay, readiness
//!    polling) against starting the same program bare and polling its port;
//! 3. one request to a service through the runner (the relay connects in
//!    the service's namespace and passes the socket back) against the same
//!    request on a direct loopback connection;
//! 4. a call from a service to its twin through the runner (recorded, then
//!    forwarded) against the same call made directly;
//! 5. requests per second to a `wasi:http` component service served
//!    in-process (the first-party mail twin), one at a time.
//!
//! Run: `cargo bench -p cleanroom --bench services` (`SERVICES_ITERATIONS`
//! sets the request count, default 2000). Needs `python3`.

#![expect(clippy::print_stdout, reason = "a benchmark prints its table on stdout")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cleanroom::plan::services::{Faults, Ready};
use cleanroom::plan::{Grant, Limits, Mount, NativeGrant, Reach};
use cleanroom::sandbox::service::{RunningService, ServiceSpec, TwinSpec};
use cleanroom::sandbox::{NativeProgram, SubjectRunner};

/// A small HTTP server: `GET /` answers `ok`; `GET /loop?n=N` calls
/// `$TWIN_URL` N times and answers the microseconds per call.
const SERVER: &str = r#"
import http.server, os, time, urllib.request
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/loop"):
            n = int(self.path.split("=")[1])
            started = time.perf_counter()
            for _ in range(n):
                urllib.request.urlopen(os.environ["TWIN_URL"] + "/", timeout=5).read()
            data = str((time.perf_counter() - started) / n * 1e6).encode()
        else:
            data = b"ok"
        self.send_response(200)
        self.send_header("content-length", str(len(data)))
        self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

fn main() {
    let iterations: usize = std::env::var("SERVICES_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let workspace = tempfile::tempdir().expect("temp dir");
    let ws = workspace.path().canonicalize().expect("canonical");
    fs_err::write(ws.join("server.py"), SERVER).expect("write server");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let helper = PathBuf::from(env!("CARGO_BIN_EXE_cleanroom"));
    // The python3 a jailed program finds on its default PATH, for both sides.
    let python = which("python3", cleanroom::plan::command::DEFAULT_PATH);

    let mut rows: Vec<(String, Stats, String, Stats)> = Vec::new();

    // 1. Subject calls.
    for (label, program, args) in [
        ("/bin/true", PathBuf::from("/bin/true"), vec![]),
        ("python3 -c pass", python.clone(), vec!["-c".to_string(), "pass".to_string()]),
        ("python3 -S -c pass", python.clone(), vec!["-S".to_string(), "-c".to_string(), "pass".to_string()]),
    ] {
        let calls = (iterations / 10).max(50);
        let runner = SubjectRunner::native(
            NativeProgram {
                helper: helper.clone(),
                program: program.clone(),
                args: args.clone(),
                workspace: ws.clone(),
            },
            native_grant(Vec::new(), Duration::from_secs(10)),
            Instant::now() + Duration::from_secs(3600),
        );
        let jailed = runtime.block_on(async {
            let mut samples = Vec::new();
            for _ in 0..calls {
                let started = Instant::now();
                let out = match Arc::clone(&runner).run(Vec::new(), b"input".to_vec()).await {
                    Ok(out) => out,
                    Err(e) => panic!("the subject did not run ({}): {:?}", e.as_str(), runner.take_log()),
                };
                samples.push(started.elapsed());
                assert_eq!(out.exit_code, 0);
            }
            Stats::of(samples)
        });
        let bare = Stats::of(
            (0..calls)
                .map(|_| {
                    let started = Instant::now();
                    let status = std::process::Command::new(&program).args(&args).status().expect("spawn");
                    assert!(status.success());
                    started.elapsed()
                })
                .collect(),
        );
        rows.push((format!("subject call, {label}, jailed"), jailed, format!("fork+exec {label}"), bare));
    }

    // 2. Start to ready.
    let starts = 20;
    let spec = |port: u16, env: BTreeMap<String, String>| ServiceSpec {
        name: "service `bench`".into(),
        helper: helper.clone(),
        program: python.clone(),
        args: vec!["server.py".into()],
        grant: {
            let mut grant = native_grant(vec![mount(&ws, "server.py")], Duration::from_secs(30));
            if let Some(native) = grant.native_mut() {
                native.env.extend(env);
            }
            grant
        },
        workspace: ws.clone(),
        port,
        ready: Ready { http: None, stdout: None, timeout: Duration::from_secs(30) },
        component: None,
    };
    let jailed_starts = runtime.block_on(async {
        let mut samples = Vec::new();
        for _ in 0..starts {
            let started = Instant::now();
            let service = RunningService::start(&spec(8080, BTreeMap::new()), &[]).await.expect("service starts");
            samples.push(started.elapsed());
            drop(service);
        }
        Stats::of(samples)
    });
    let bare_starts = Stats::of(
        (0..starts)
            .map(|_| {
                let port = free_port();
                let started = Instant::now();
                let mut child = bare_server(&python, &ws, port, None);
                wait_for_port(port);
                let took = started.elapsed();
                let _ = child.kill();
                let _ = child.wait();
                took
            })
            .collect(),
    );
    rows.push((
        "service start to ready, jailed (tcp readiness)".into(),
        jailed_starts,
        "bare start, polling the port".into(),
        bare_starts,
    ));

    // 3. Requests.
    let (through_runner, direct) = runtime.block_on(async {
        let service = RunningService::start(&spec(8080, BTreeMap::new()), &[]).await.expect("service starts");
        let request = || cleanroom::sandbox::bindings::evaluator::cleanroom::plugin::service::Request {
            method: "GET".into(),
            path: "/".into(),
            headers: Vec::new(),
            body: Vec::new(),
        };
        let mut samples = Vec::new();
        for _ in 0..iterations {
            let started = Instant::now();
            let response = service.send(request(), Instant::now() + Duration::from_secs(10)).await.expect("answer");
            samples.push(started.elapsed());
            assert_eq!(response.status, 200);
        }
        drop(service);
        let port = free_port();
        let mut child = bare_server(&python, &ws, port, None);
        wait_for_port(port);
        let mut direct = Vec::new();
        for _ in 0..iterations {
            let started = Instant::now();
            let body = raw_get(port, "/");
            direct.push(started.elapsed());
            assert!(body.ends_with("ok"));
        }
        let _ = child.kill();
        let _ = child.wait();
        (Stats::of(samples), Stats::of(direct))
    });
    rows.push((
        "request through the runner (relay, new connection)".into(),
        through_runner,
        "request on a direct loopback connection".into(),
        direct,
    ));

    // 4. Twin calls, timed inside the service (Python's own loop).
    let calls = (iterations / 4).max(100);
    let (via_runner, direct_twin) = runtime.block_on(async {
        let twin = TwinSpec {
            id: "twin".into(),
            origin: "https://twin.example".into(),
            url_env: "TWIN_URL".into(),
            faults: Faults { error_rate: 0.0, latency: Duration::ZERO, seed: 0 },
            server: spec(9000, BTreeMap::new()),
        };
        let env = BTreeMap::from([("TWIN_URL".to_string(), "http://127.0.0.1:9000".to_string())]);
        let service = RunningService::start(&spec(8080, env), &[twin]).await.expect("service starts");
        let response = service
            .send(
                cleanroom::sandbox::bindings::evaluator::cleanroom::plugin::service::Request {
                    method: "GET".into(),
                    path: format!("/loop?n={calls}"),
                    headers: Vec::new(),
                    body: Vec::new(),
                },
                Instant::now() + Duration::from_secs(600),
            )
            .await
            .expect("loop answers");
        let via_runner: f64 = String::from_utf8_lossy(&response.body).parse().expect("micros");
        drop(service);
        let twin_port = free_port();
        let mut twin = bare_server(&python, &ws, twin_port, None);
        wait_for_port(twin_port);
        let port = free_port();
        let mut server = bare_server(&python, &ws, port, Some(twin_port));
        wait_for_port(port);
        let direct: f64 =
            raw_get(port, &format!("/loop?n={calls}")).rsplit("\r\n").next().unwrap_or("0").parse().expect("micros");
        for child in [&mut twin, &mut server] {
            let _ = child.kill();
            let _ = child.wait();
        }
        (via_runner, direct)
    });

    // 5. Requests per second to an in-process component service (the
    //    first-party mail twin), one request at a time: one core's worth.
    let component_rps = runtime.block_on(async {
        let wasm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist/mail_twin.wasm");
        let capacity = cleanroom::sandbox::pool::Capacity::for_jobs(2, Limits::default().memory);
        let sandbox = cleanroom::sandbox::Sandbox::new(capacity).expect("engine");
        let grant = Grant::new(Vec::new(), Limits::default());
        let server =
            sandbox.load_proxy(&wasm, &grant).expect("build plugins/dist/mail_twin.wasm with scripts/build-plugins");
        let mut component = spec(0, BTreeMap::new());
        component.component = Some(server);
        let service = RunningService::start(&component, &[]).await.expect("served");
        let request = || cleanroom::sandbox::bindings::evaluator::cleanroom::plugin::service::Request {
            method: "POST".into(),
            path: "/send".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: br#"{"to":"a@b.c","subject":"s","body":"b"}"#.to_vec(),
        };
        for _ in 0..100 {
            service.send(request(), Instant::now() + Duration::from_secs(10)).await.expect("warm-up");
        }
        let n = iterations * 5;
        let started = Instant::now();
        for _ in 0..n {
            let response = service.send(request(), Instant::now() + Duration::from_secs(10)).await.expect("answer");
            assert_eq!(response.status, 202);
        }
        (n, n as f64 / started.elapsed().as_secs_f64())
    });

    println!("| measurement | samples | median | p90 | peer | peer median | this − peer (medians) | this / peer |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, stats, peer_name, peer) in &rows {
        println!(
            "| {name} | {} | {} | {} | {peer_name} | {} | {} | {:.2}x |",
            stats.n,
            us(stats.median),
            us(stats.p90),
            us(peer.median),
            us(stats.median.saturating_sub(peer.median)),
            stats.median.as_secs_f64() / peer.median.as_secs_f64()
        );
    }
    println!(
        "| twin call from the service, through the runner (recorded) | {calls} | {via_runner:.1} µs (mean) | | direct call | {direct_twin:.1} µs (mean) | {:.1} µs | {:.2}x |",
        via_runner - direct_twin,
        via_runner / direct_twin
    );
    println!(
        "\nIn-process component service (plugins/dist/mail_twin.wasm, `POST /send`, an instance per request, one at a time): {} requests, {:.0} requests/s",
        component_rps.0, component_rps.1
    );
}

fn native_grant(mounts: Vec<Mount>, timeout: Duration) -> Grant {
    let mut grant = Grant::new(mounts, Limits { timeout, ..Limits::default() });
    let home = std::env::var_os("HOME").map(PathBuf::from);
    grant.reach = Reach::Native(NativeGrant {
        env: cleanroom::plan::command::environment(&[], &BTreeMap::new(), home.as_deref(), None),
        ..NativeGrant::default()
    });
    grant
}

fn mount(ws: &Path, rel: &str) -> Mount {
    cleanroom::plan::mounts::resolve(ws, rel, false).expect("mount")
}

fn which(name: &str, path: &str) -> PathBuf {
    path.split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not on PATH"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn bare_server(python: &Path, ws: &Path, port: u16, twin: Option<u16>) -> std::process::Child {
    let mut command = std::process::Command::new(python);
    command.arg("server.py").current_dir(ws).env("PORT", port.to_string());
    if let Some(twin) = twin {
        command.env("TWIN_URL", format!("http://127.0.0.1:{twin}"));
    }
    command.spawn().expect("start the bare server")
}

fn wait_for_port(port: u16) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "the bare server never listened");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `GET path` on a new loopback connection; the whole answer.
fn raw_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(stream, "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    answer
}

struct Stats {
    n: usize,
    median: Duration,
    p90: Duration,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Stats {
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Stats { n: samples.len(), median: at(0.5), p90: at(0.9) }
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}
