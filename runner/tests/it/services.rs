//! Services and twins: the password-reset demo, fault injection, and the
//! errors a user can make declaring them.

use crate::{cleanroom, example_copy, Workspace};

fn scenario_runner() -> String {
    crate::repo().join("plugins/dist/scenario_runner.wasm").display().to_string()
}

/// Attempt 1 of the password-reset service has no rate limit and reusable
/// tokens: two scenarios fail, the stage is told which requests failed and
/// how (never a scenario's values, never what the service answered), and
/// attempt 2 passes every scenario, each against a fresh service and mail
/// twin.
#[test]
fn password_reset_demo_fails_attempt_1_then_passes_attempt_2() {
    let ws = example_copy("password-reset", |toml| toml);
    let ran = cleanroom(ws.path(), &["run", "--format", "json", "pipeline.toml"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let json = ran.json();
    let holdout = json["steps"].as_array().unwrap().iter().find(|s| s["id"] == "holdout").unwrap();
    assert_eq!(holdout["satisfaction"], 1.0);
    let scenarios = holdout["scenarios"].as_array().unwrap();
    assert!(scenarios.len() >= 6 && scenarios.iter().all(|s| s["runs"] == 3 && s["passes"] == 3), "{scenarios:?}");
    let attempts = json["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    let feedback: Vec<&str> = attempts[0]["feedback"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert_eq!(
        feedback,
        [
            "implement: scenario rate-limit: failed 3/3: request 4: expected status 429, got another",
            "implement: scenario token-single-use: failed 3/3: request 4: expected status 400, got another",
        ]
    );
    // The happy path read the reset token from the mail the twin received.
    let happy = scenarios.iter().find(|s| s["name"] == "happy-path").unwrap();
    assert!(happy["detail"].as_str().unwrap().contains("calls to twin `mail`: 1"), "{happy}");
}

/// A twin that answers every GET with `ok`.
const ECHO_TWIN: &str = "import http.server, os\n\
class H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        self.send_response(200)\n        self.send_header('content-length', '2')\n        self.end_headers()\n        self.wfile.write(b'ok')\n    def log_message(self, *a):\n        pass\n\
http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n";

/// A twin's faults are deterministic by seed: the same seed fails the same
/// requests in every scenario run; `error_rate = 1` fails all of them.
#[test]
fn twin_faults_repeat_by_seed() {
    let ws = Workspace::new();
    ws.file(
        "app/server.py",
        "import http.server, os, urllib.request\n\
         class H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        codes = []\n        for i in range(20):\n            try:\n                codes.append(str(urllib.request.urlopen(os.environ['TWIN_URL'] + '/x', timeout=5).status))\n            except urllib.error.HTTPError as e:\n                codes.append(str(e.code))\n        data = ','.join(codes).encode()\n        self.send_response(200)\n        self.send_header('content-length', str(len(data)))\n        self.end_headers()\n        self.wfile.write(data)\n    def log_message(self, *a):\n        pass\n\
         http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n",
    )
    .file(
        "twins/echo.py",
        ECHO_TWIN,
    )
    .file("scenarios/codes.toml", "[[requests]]\npath = '/'\nstatus = 200\n[[requests]]\ntwin_calls = { twin = 'echo', count = 20 }\n");
    let toml = |rate: f64| {
        format!(
            "[pipeline]\nname = \"f\"\n[plugins]\nrunner = {:?}\n[barrier]\nholdout = [\"scenarios\"]\n\
             [twin.echo]\norigin = \"https://echo.example\"\nrun = [\"python3\", \"twins/echo.py\"]\nread = [\"twins\"]\nport = 9100\nurl_env = \"TWIN_URL\"\n\
             faults = {{ error_rate = {rate}, seed = 7 }}\n\
             [service.api]\nrun = [\"python3\", \"app/server.py\"]\nread = [\"app\"]\nport = 8080\ntwins = [\"echo\"]\n\
             [evaluator.judge]\nplugin = \"runner\"\nread = [\"scenarios\"]\nservice = \"api\"\nrepeat = 2\ncache = false\nconfig = {{ scenarios = \"/scenarios\" }}\n",
            scenario_runner()
        )
    };
    let codes = |rate: f64| -> Vec<String> {
        let ran = ws.run(&toml(rate), &["run", "--format", "json"]);
        assert_eq!(ran.code, 0, "{ran:?}");
        // The detail has the service's answer: the twin's status codes.
        let detail = ran.json()["steps"][0]["scenarios"][0]["detail"].as_str().unwrap().to_string();
        detail.lines().filter(|l| l.starts_with("200,") || l.starts_with("503,")).map(str::to_string).collect()
    };
    let half = codes(0.5);
    assert!(!half.is_empty(), "control: the service reported its twin's answers");
    assert!(half[0].contains("503") && half[0].contains("200"), "{half:?}");
    assert_eq!(half, codes(0.5), "the same seed gave other faults");
    assert!(codes(1.0).iter().all(|l| !l.contains("200")), "error_rate = 1 let a request through");
}

/// Every mistake in a service or twin table is refused with where and what
/// to do, before anything runs.
#[test]
fn service_and_twin_mistakes_are_refused_with_where_and_what_to_do() {
    let ws = Workspace::new();
    ws.file("scenarios/s.toml", "").file("app/server.py", "print(1)").file("twins/t.py", "print(1)");
    let head = format!(
        "[pipeline]\nname = \"s\"\n[plugins]\nrunner = {:?}\n[stage.code]\nrun = [\"true\"]\nwrite = [\"gen\"]\n",
        scenario_runner()
    );
    let judge = "[evaluator.judge]\nplugin = \"runner\"\nneeds = [\"code\"]\nread = [\"scenarios\"]\nconfig = { scenarios = \"/scenarios\" }\n";
    let service = "[service.api]\nrun = [\"python3\", \"app/server.py\"]\nread = [\"app\"]\nport = 8080\n";
    let twin = "[twin.mail]\norigin = \"https://mail.example\"\nrun = [\"python3\", \"twins/t.py\"]\nread = [\"twins\"]\nport = 9000\nurl_env = \"MAIL_URL\"\n";
    let cases = [
        (service.to_string(), "service = \"apii\"\n", "did you mean `api`?"),
        (
            format!("{service}ready = {{ http = \"/h\", tcp = true }}\n"),
            "service = \"api\"\n",
            "`ready` must say exactly one way",
        ),
        (service.replace("port = 8080", "port = 0"), "service = \"api\"\n", "`port = 0`"),
        (format!("{service}twins = [\"mial\"]\n{twin}"), "service = \"api\"\n", "twin `mial` is not a [twin.*] table"),
        (
            format!("{service}twins = [\"mail\"]\n{}", twin.replace("port = 9000", "port = 8080")),
            "service = \"api\"\n",
            "the service's own port",
        ),
        (
            format!(
                "{service}twins = [\"mail\"]\n{}",
                twin.replace("read = [\"twins\"]", "read = [\"twins\", \"gen\"]")
            ),
            "service = \"api\"\n",
            "which a stage writes",
        ),
        (
            format!("{service}twins = [\"mail\"]\n{}", twin.replace("MAIL_URL", "MAIL URL")),
            "service = \"api\"\n",
            "is not an environment variable name",
        ),
        (
            format!("{service}twins = [\"mail\"]\n{twin}faults = {{ error_rate = 2.0 }}\n"),
            "service = \"api\"\n",
            "outside 0.0 to 1.0",
        ),
        (format!("{service}restart = \"sometimes\"\n"), "service = \"api\"\n", "unknown variant `sometimes`"),
    ];
    for (tables, evaluator_keys, expected) in &cases {
        let ran = ws.run(&format!("{head}{tables}{judge}{evaluator_keys}"), &["validate"]);
        assert_eq!(ran.code, 2, "{tables}: {ran:?}");
        assert!(ran.stderr.contains(expected), "{tables}: expected `{expected}` in:\n{}", ran.stderr);
        assert!(ran.stderr.contains("pipeline.toml:"), "no file:line:col: {}", ran.stderr);
    }
    // A check cannot name a service.
    let ran = ws.run(&format!("{head}{service}[check.c]\nrun = [\"true\"]\nservice = \"api\"\n"), &["validate"]);
    assert!(ran.code == 2 && ran.stderr.contains("CR009"), "{ran:?}");
    // The plan says what runs where.
    let dry =
        ws.run(&format!("{head}{service}twins = [\"mail\"]\n{twin}{judge}service = \"api\"\n"), &["run", "--dry-run"]);
    assert!(
        dry.stdout.contains("service: api (python3 app/server.py, jailed, port 8080 in its own network namespace"),
        "{dry:?}"
    );
    assert!(dry.stdout.contains("twins: mail as https://mail.example via $MAIL_URL"), "{dry:?}");
}

/// The first-party mail twin as a `wasi:http` component, in place of the
/// demo's Python twin: the runner serves it in-process, records the calls
/// the service makes to it, and the demo passes the same way.
#[test]
fn the_component_mail_twin_stands_in_for_the_python_one() {
    let ws = example_copy("password-reset", |toml| {
        toml.replace("run = [\"python3\", \"twins/mail.py\"]", "component = \"twins/mail_twin.wasm\"")
            .replace("ready = { http = \"/health\" }\nurl_env", "url_env")
    });
    fs_err::copy(crate::repo().join("plugins/dist/mail_twin.wasm"), ws.path().join("twins/mail_twin.wasm")).unwrap();
    let ran = cleanroom(ws.path(), &["run", "--format", "json", "pipeline.toml"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let json = ran.json();
    assert_eq!(json["attempts"].as_array().unwrap().len(), 2);
    let holdout = json["steps"].as_array().unwrap().iter().find(|s| s["id"] == "holdout").unwrap();
    let happy = holdout["scenarios"].as_array().unwrap().iter().find(|s| s["name"] == "happy-path").unwrap();
    assert!(happy["detail"].as_str().unwrap().contains("calls to twin `mail`: 1"), "{happy}");
}

/// A `wasi:http/proxy` component as the service itself: served in-process,
/// an instance per request, judged by HTTP scenarios.
#[test]
fn a_component_service_is_served_in_process() {
    let ws = Workspace::new();
    fs_err::create_dir_all(ws.path().join("build")).unwrap();
    fs_err::copy(crate::repo().join("plugins/dist/mail_twin.wasm"), ws.path().join("build/mail.wasm")).unwrap();
    ws.file(
        "scenarios/send.toml",
        "[[requests]]\nmethod = 'POST'\npath = '/send'\njson = { to = 'a@b.c', subject = 's', body = 'b' }\nstatus = 202\njson_subset = { accepted = true }\n\
         [[requests]]\nmethod = 'POST'\npath = '/send'\nbody = 'not json'\nstatus = 400\n\
         [[requests]]\npath = '/health'\nstatus = 200\nbody_contains = ['ok']\nheaders = { 'content-type' = 'text/plain' }\n",
    );
    let toml = format!(
        "[pipeline]\nname = \"c\"\n[plugins]\nrunner = {:?}\n[barrier]\nholdout = [\"scenarios\"]\n\
         [service.mail]\ncomponent = \"build/mail.wasm\"\n\
         [evaluator.judge]\nplugin = \"runner\"\nread = [\"scenarios\"]\nservice = \"mail\"\nrepeat = 3\nconfig = {{ scenarios = \"/scenarios\" }}\n",
        scenario_runner()
    );
    let ran = ws.run(&toml, &["run", "--format", "json"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let dry = ws.run(&toml, &["run", "--dry-run"]);
    assert!(dry.stdout.contains("service: mail (component build/mail.wasm, served in-process"), "{dry:?}");
    // A component service listens on no port and calls no twins.
    let ran = ws.run(
        &toml.replace("component = \"build/mail.wasm\"\n", "component = \"build/mail.wasm\"\nport = 80\n"),
        &["validate"],
    );
    assert!(ran.code == 2 && ran.stderr.contains("is a component, which listens on no port"), "{ran:?}");
}

/// Two evaluators share one service (`restart = "on-change"`) with a twin
/// and run at the same time: each scenario run resets the twins, so
/// without turns one evaluator's reset would wipe the call the other is
/// about to count. With turns every run sees exactly its own call.
#[test]
fn evaluators_sharing_a_service_take_turns_with_its_twins() {
    let ws = Workspace::new();
    ws.file(
        "app/server.py",
        "import http.server, os, time, urllib.request\n\
         class H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        time.sleep(0.05)\n        urllib.request.urlopen(os.environ['TWIN_URL'] + '/x', timeout=5).read()\n        self.send_response(200)\n        self.send_header('content-length', '2')\n        self.end_headers()\n        self.wfile.write(b'ok')\n    def log_message(self, *a):\n        pass\n\
         http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n",
    )
    .file(
        "twins/echo.py",
        ECHO_TWIN,
    )
    .file("scenarios/one-call.toml", "[[requests]]\npath = '/'\nstatus = 200\n[[requests]]\ntwin_calls = { twin = 'echo', count = 1 }\n");
    let evaluator = |id: &str| {
        format!(
            "[evaluator.{id}]\nplugin = \"runner\"\nread = [\"scenarios\"]\nservice = \"api\"\nrepeat = 6\ncache = false\nconfig = {{ scenarios = \"/scenarios\" }}\n"
        )
    };
    let toml = format!(
        "[pipeline]\nname = \"turns\"\n[plugins]\nrunner = {:?}\n[barrier]\nholdout = [\"scenarios\"]\n\
         [twin.echo]\norigin = \"https://echo.example\"\nrun = [\"python3\", \"twins/echo.py\"]\nread = [\"twins\"]\nport = 9100\nurl_env = \"TWIN_URL\"\n\
         [service.api]\nrun = [\"python3\", \"app/server.py\"]\nread = [\"app\"]\nport = 8080\ntwins = [\"echo\"]\nrestart = \"on-change\"\n\
         {}{}",
        scenario_runner(),
        evaluator("first"),
        evaluator("second")
    );
    let ran = ws.run(&toml, &["run", "--jobs", "2", "--format", "json"]);
    assert_eq!(ran.code, 0, "a run saw another's twin reset: {ran:?}");
    let steps = ran.json()["steps"].as_array().unwrap().clone();
    assert!(steps.iter().all(|s| s["scenarios"][0]["passes"] == 6), "{steps:?}");
}
