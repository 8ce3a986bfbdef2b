//! The network capability and secrets: `allow_hosts`, `allow_private`,
//! `secrets`, `secret_headers`, against a real HTTP server on loopback.

use std::ffi::OsStr;
use std::path::Path;

use crate::http_server::{Response, Server};
use crate::{cleanroom_with_env, component, test_cache, Ran, Workspace};

const SECRET: &str = "sk-test-7f3a9c1e5b";

fn echo_server() -> Server {
    Server::start(|request| {
        if request.path == "/big" {
            return Response { status: 200, content_type: "text/plain", body: vec![b'x'; 17 << 20] };
        }
        Response::text(200, format!("path={} auth={}", request.path, request.header("authorization").unwrap_or("-")))
    })
}

fn run_with_secret(ws: &Workspace, args: &[&str]) -> Ran {
    let mut all = args.to_vec();
    all.push("pipeline.toml");
    cleanroom_with_env(ws.path(), &all, &[("MY_KEY", OsStr::new(SECRET))])
}

fn pipeline(steps: &str) -> String {
    format!(
        "[pipeline]\nname = \"net\"\n[plugins]\nfetch = {:?}\n[secrets]\nKEY = {{ env = \"MY_KEY\" }}\n{steps}",
        component("guest:http_fetch")
    )
}

/// Runs one `http_fetch` check `id` allowed to reach `origin` (private
/// addresses included) that fetches `url`; returns the run and the step's report.
fn fetch_once(id: &str, origin: &str, url: &str) -> (Ran, serde_json::Value) {
    let ws = Workspace::new();
    ws.file(
        "pipeline.toml",
        &pipeline(&format!(
            "[check.{id}]\nplugin = \"fetch\"\nallow_hosts = [\"{origin}\"]\nallow_private = true\nconfig = {{ url = \"{url}\" }}\n"
        )),
    );
    let ran = run_with_secret(&ws, &["run", "--format", "json"]);
    let report = step(&ran.json(), id).clone();
    (ran, report)
}

fn step<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap()
}

/// Allowed requests reach the server with the host-injected header; a port
/// or host outside `allow_hosts`, and loopback without `allow_private`, are
/// refused before anything is sent, and each refusal is in the report and
/// the journal.
#[test]
fn only_allowed_origins_are_reached_and_refusals_are_recorded() {
    let server = echo_server();
    let origin = server.origin();
    let ws = Workspace::new();
    ws.file(
        "pipeline.toml",
        &pipeline(&format!(
            "[check.allowed]\nplugin = \"fetch\"\nallow_hosts = [\"{origin}\"]\nallow_private = true\n\
             secret_headers = [{{ secret = \"KEY\", host = \"{origin}\", header = \"Authorization\", prefix = \"Bearer \" }}]\n\
             config = {{ url = \"{origin}/hello\", header = \"authorization: guest-chosen\" }}\n\
             [check.other-port]\nplugin = \"fetch\"\nallow_hosts = [\"{origin}\"]\nallow_private = true\n\
             config = {{ url = \"http://127.0.0.1:{}/x\" }}\n\
             [check.other-host]\nplugin = \"fetch\"\nallow_hosts = [\"{origin}\"]\nallow_private = true\n\
             config = {{ url = \"http://localhost:{}/x\" }}\n\
             [check.loopback]\nplugin = \"fetch\"\nallow_hosts = [\"http://localhost:{}\"]\n\
             config = {{ url = \"http://localhost:{}/x\" }}\n",
            server.port() + 1,
            server.port(),
            server.port(),
            server.port(),
        )),
    );
    let ran = run_with_secret(&ws, &["run", "--format", "json"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    let report = ran.json();
    let allowed = step(&report, "allowed");
    assert_eq!(allowed["status"], "passed", "{ran:?}");
    // The header the guest set was replaced by the host's.
    assert_eq!(allowed["findings"][0]["message"], "status 200: path=/hello auth=Bearer [secret KEY]", "{ran:?}");
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "only the allowed request was sent: {requests:?}");
    assert_eq!(requests[0].header("authorization"), Some(format!("Bearer {SECRET}").as_str()));

    for (id, why) in [
        ("other-port", "not in `allow_hosts`"),
        ("other-host", "not in `allow_hosts`"),
        ("loopback", "resolves to 127.0.0.1, a loopback, private or link-local address"),
    ] {
        let s = step(&report, id);
        assert_eq!(s["status"], "error", "{id}: {ran:?}");
        assert!(s["reason"].as_str().unwrap().contains("HttpRequestDenied"), "{id}: {s}");
        let denied = s["denied_requests"][0].as_str().unwrap();
        assert!(denied.contains(why), "{id}: {denied}");
    }
    let journal = journal_text(ws.path());
    assert!(journal.contains("resolves to 127.0.0.1"), "refusals are journaled");
}

/// A response larger than the cap is cut: the guest gets an error, not 17 MiB.
#[test]
fn responses_over_the_size_cap_are_cut() {
    let server = echo_server();
    let origin = server.origin();
    let (ran, big) = fetch_once("big", &origin, &format!("{origin}/big"));
    assert_eq!(big["status"], "error", "{ran:?}");
    assert!(big["reason"].as_str().unwrap().contains("reading the body failed after"), "{big}");
}

/// What is refused before anything runs, with where and what to do.
#[test]
fn bad_network_and_secret_settings_are_refused_with_positions() {
    let ws = Workspace::new();
    let cases = [
        ("[check.c]\nplugin = \"fetch\"\nconfig = { url = \"http://x\" }\n", "CR014", "has no `allow_hosts`"),
        ("[check.c]\nplugin = \"fetch\"\nallow_hosts = [\"api.example.com\"]\n", "CR028", "has no scheme"),
        ("[check.c]\nplugin = \"fetch\"\nallow_hosts = [\"https://x.com/v1\"]\n", "CR028", "origin only"),
        ("[check.c]\nplugin = \"fetch\"\nallow_hosts = [\"https://x.com\"]\nsecrets = [\"KYE\"]\n", "CR027", "did you mean `KEY`?"),
        (
            "[check.c]\nplugin = \"fetch\"\nallow_hosts = [\"https://x.com\"]\nsecret_headers = [{ secret = \"KEY\", host = \"https://y.com\", header = \"Authorization\" }]\n",
            "CR028",
            "not in its `allow_hosts`",
        ),
        ("[check.c]\nrun = [\"true\"]\nallow_hosts = [\"https://x.com\"]\n", "CR009", "applies only to plugin steps"),
        ("[check.c]\nplugin = \"fetch\"\nallow_private = true\n", "CR009", "without `allow_hosts`"),
    ];
    for (steps, code, says) in cases {
        let ran = ws.run(&pipeline(steps), &["validate"]);
        assert_eq!(ran.code, 2, "{steps}: {ran:?}");
        assert!(ran.stderr.contains(&format!("error[{code}]")) && ran.stderr.contains(says), "{steps}: {ran:?}");
        assert!(ran.stderr.contains("--> pipeline.toml:"), "a position: {ran:?}");
    }
    // A secret whose variable is unset refuses the run, naming the variable.
    let ran = ws.run(&pipeline("[check.c]\nplugin = \"fetch\"\nallow_hosts = [\"https://x.com\"]\nsecrets = [\"KEY\"]\nconfig = { url = \"https://x.com\" }\n"), &["run"]);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("error[CR027]: secret `KEY`: environment variable `MY_KEY` is not set"), "{ran:?}");
    // A secret no step of this run is granted is not read at all.
    let ran = ws.run(&pipeline("[check.c]\nrun = [\"true\"]\n"), &["run"]);
    assert_eq!(ran.code, 0, "{ran:?}");
}

/// Run a pipeline that hands a known secret to a guest (as an environment
/// variable it prints, and as a header the host injects), in every report
/// format; then search everything the run wrote and printed for it.
#[test]
fn a_secret_never_appears_in_anything_the_run_wrote_or_printed() {
    let server = echo_server();
    let origin = server.origin();
    let ws = Workspace::new();
    ws.file("src/a.txt", "hello");
    ws.file(
        "pipeline.toml",
        &pipeline(&format!(
            "[check.uses-key]\nplugin = \"fetch\"\nallow_hosts = [\"{origin}\"]\nallow_private = true\nsecrets = [\"KEY\"]\n\
             secret_headers = [{{ secret = \"KEY\", host = \"{origin}\", header = \"Authorization\", prefix = \"Bearer \" }}]\n\
             config = {{ url = \"{origin}/k\", print_env = \"KEY\" }}\n\
             [check.fails-with-key]\nplugin = \"fetch\"\nallow_hosts = [\"{origin}\"]\nallow_private = true\nsecrets = [\"KEY\"]\n\
             config = {{ url = \"{origin}/nope\", print_env = \"KEY\", method = \"PUT\", header = \"bad header\" }}\n"
        )),
    );
    let mut printed = String::new();
    for format in ["human", "json", "jsonl", "junit", "sarif"] {
        for extra in [&["-v"][..], &[][..]] {
            let mut args: Vec<&str> = extra.to_vec();
            args.extend(["run", "--no-cache", "--format", format]);
            let ran = run_with_secret(&ws, &args);
            printed.push_str(&ran.stdout);
            printed.push_str(&ran.stderr);
        }
    }
    let cached = run_with_secret(&ws, &["run"]);
    printed.push_str(&cached.stdout);
    assert!(printed.contains("KEY=[secret KEY]"), "the guest printed it and the runner scrubbed it: {printed}");
    assert!(server.requests().iter().any(|r| r.raw().contains(SECRET)), "the secret was really used");
    assert!(!printed.contains(SECRET), "printed: {printed}");
    for root in [ws.path().to_path_buf(), test_cache()] {
        for file in files_below(&root) {
            let bytes = fs_err::read(&file).unwrap();
            let found = bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes());
            assert!(!found, "{} holds the secret", file.display());
        }
    }
}

fn journal_text(workspace: &Path) -> String {
    files_below(&workspace.join(".cleanroom/runs")).iter().map(|f| fs_err::read_to_string(f).unwrap()).collect()
}

fn files_below(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs_err::read_dir(&d) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.is_file() {
                out.push(path);
            }
        }
    }
    out
}

/// TLS is verified: a server whose certificate no public root signed gets a
/// handshake the runner aborts, and the guest a TLS error, never a response.
#[test]
fn https_to_a_server_with_an_untrusted_certificate_is_refused() {
    use std::sync::{Arc, Mutex};
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&handshakes);
    std::thread::spawn(move || {
        if let Some(Ok(mut tcp)) = listener.incoming().next() {
            let mut tls = rustls::ServerConnection::new(Arc::new(config)).unwrap();
            let result = tls.complete_io(&mut tcp);
            seen.lock().unwrap().push(format!("{result:?}"));
        }
    });
    let origin = format!("https://127.0.0.1:{port}");
    let (ran, tls) = fetch_once("tls", &origin, &format!("{origin}/"));
    assert_eq!(tls["status"], "error", "{ran:?}");
    assert!(tls["reason"].as_str().unwrap().contains("TlsProtocolError"), "{tls}");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let handshakes = handshakes.lock().unwrap();
    assert_eq!(handshakes.len(), 1, "the runner reached the server");
    assert!(handshakes[0].starts_with("Err("), "the handshake did not complete: {handshakes:?}");
}
