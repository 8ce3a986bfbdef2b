//! `llm-judge` against a scripted model on loopback, judging the real
//! password-reset service (in its jail) and its real mail twin: the model
//! drives the service through the judge's tools, and its verdicts gate the
//! loop. Also: a council with a dissenting judge, the verdict cache, the
//! request budget, and what the model and the stage may never see.

use serde_json::{json, Value};

use crate::http_server::Request;
use crate::mock_llm::{messages, MockLlm, Reply};
use crate::{cleanroom, example_copy, repo, Workspace};

/// The password-reset workspace with `pipelines/password-reset-english.toml`
/// pointed at `llm` (no key), each scenario run `repeat` times, and
/// `edit` applied to the pipeline text.
fn english(llm: &MockLlm, repeat: u32, edit: impl Fn(String) -> String) -> Workspace {
    let ws = example_copy("password-reset", |toml| toml);
    let toml = fs_err::read_to_string(repo().join("pipelines/password-reset-english.toml")).unwrap();
    let dist = repo().join("plugins/dist").display().to_string();
    let toml = toml
        .replace("workspace = \"password-reset\"", "")
        .replace("../plugins/dist", &dist)
        .replace("[secrets]\nAPI_KEY = { env = \"OPENAI_API_KEY\" }\n", "")
        .replace(
            "secret_headers = [{ secret = \"API_KEY\", host = \"https://api.openai.com\", header = \"Authorization\", prefix = \"Bearer \" }]\n",
            "allow_private = true\n",
        )
        .replace("https://api.openai.com/v1", &llm.base_url())
        .replace("model = \"gpt-4.1\"", "model = \"driver\"")
        .replace("\"https://api.openai.com\"", &format!("\"{}\"", llm.origin()))
        .replace("repeat = 3\nrequire = 2", &format!("repeat = {repeat}\nrequire = {repeat}"));
    ws.file("pipeline.toml", &edit(toml));
    ws
}

/// The JSON between a tool result's data markers.
fn data(content: &str) -> Value {
    let inner = content.lines().nth(1).unwrap_or_default();
    serde_json::from_str(inner).unwrap_or(Value::Null)
}

fn request(method: &str, path: &str, body: Value) -> Reply {
    Reply::tool(
        "http_request",
        json!({"method": method, "path": path, "headers": {"content-type": "application/json"}, "body": body.to_string()}),
    )
}

fn verdict(passed: bool, summary: &str) -> Reply {
    Reply::tool("verdict", json!({"passed": passed, "summary": summary, "detail": "scripted judge"}))
}

/// A model that tests the three English scenarios the way a careful tester
/// would, deciding by what the service and the twin actually did; a
/// council member named `dissent` fails everything, any other passes it.
fn tester(request_: &Request) -> Reply {
    let messages = messages(request_);
    let model = serde_json::from_slice::<Value>(&request_.body).unwrap()["model"].as_str().unwrap_or("").to_string();
    if model != "driver" {
        return if model == "dissent" { verdict(false, "not convinced") } else { verdict(true, "looks right") };
    }
    let scenario = messages[1]["content"].as_str().unwrap_or("").to_string();
    let results: Vec<Value> =
        messages.iter().filter(|m| m["role"] == "tool").map(|m| data(m["content"].as_str().unwrap_or(""))).collect();
    let forgot = |email: &str| request("POST", "/auth/forgot-password", json!({"email": email}));
    let mails = || Reply::tool("twin_calls", json!({"twin": "mail"}));
    if scenario.contains("## Scenario: reset mail") {
        return match results.len() {
            0 => forgot("alice@test.com"),
            1 => mails(),
            _ => {
                let ok = results[0]["status"] == 200 && results[1].as_array().map_or(0, Vec::len) == 1;
                verdict(ok, if ok { "one mail with a link" } else { "no single reset mail was sent" })
            }
        };
    }
    if scenario.contains("## Scenario: link used twice") {
        let token = || {
            let body = results[1][0]["body"].as_str().unwrap_or("").to_string();
            let start = body.find("token=").map_or(body.len(), |i| i + 6);
            body[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || "-_".contains(*c)).collect::<String>()
        };
        return match results.len() {
            0 => forgot("alice@test.com"),
            1 => mails(),
            2 => request("POST", "/auth/reset-password", json!({"token": token(), "password": "NewPass-123"})),
            3 => request("POST", "/auth/reset-password", json!({"token": token(), "password": "Other-Pass-456"})),
            4 => request("POST", "/auth/login", json!({"email": "alice@test.com", "password": "NewPass-123"})),
            _ => {
                let ok = results[3]["status"] == 400 && results[4]["status"] == 200;
                verdict(ok, if ok { "refused the reuse" } else { "a token worked a second time" })
            }
        };
    }
    match results.len() {
        0 => forgot("nobody@test.com"),
        1 => mails(),
        _ => {
            let ok = results[0]["status"] == 200 && results[1].as_array().is_some_and(Vec::is_empty);
            verdict(
                ok,
                if ok { "same answer, no mail" } else { "the answer or the mails differ for an unknown address" },
            )
        }
    }
}

fn holdout(report: &Value) -> &Value {
    report["steps"].as_array().unwrap().iter().find(|s| s["id"] == "holdout").unwrap()
}

/// Attempt 1 of the service accepts a reset token twice: the judge finds
/// it by driving the service, `implement` is told in one line that never
/// quotes the scenario, and attempt 2 passes. No request to the model
/// carries a source file, and the scenario text never reaches the stage.
#[test]
fn the_judge_drives_the_service_and_twin_and_its_verdicts_gate_the_loop() {
    let llm = MockLlm::start_with(tester);
    let ws = english(&llm, 1, |toml| toml);
    let ran = cleanroom(ws.path(), &["run", "--format", "json", "pipeline.toml"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let report = ran.json();
    assert_eq!(report["termination"], "passed");
    let attempts = report["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    let feedback: Vec<&str> = attempts[0]["feedback"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert_eq!(feedback, ["implement: scenario link used twice: failed 1/1: a token worked a second time"]);
    // The judge's evidence is for humans: the detail of the failing run
    // (round 1) is in the journal; the final report shows the passing one.
    let scenarios = holdout(&report)["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 3);
    assert!(scenarios.iter().all(|s| s["passed"] == true), "{scenarios:?}");
    let twice = scenarios.iter().find(|s| s["name"] == "link used twice").unwrap();
    assert!(twice["detail"].as_str().unwrap().contains("evidence:\n1. http_request"), "{twice}");
    // The model never saw a source file of the workspace.
    let requests = llm.requests();
    assert!(requests.len() >= 2 * 3 * 3, "{} requests", requests.len());
    for file in ["work/server.py", "src/server.py", "specs/password-reset.md"] {
        let text = fs_err::read_to_string(ws.path().join(file)).unwrap();
        for line in text.lines().map(str::trim).filter(|l| l.len() >= 24) {
            let escaped = serde_json::to_string(line).unwrap();
            for request in &requests {
                assert!(!request.raw().contains(escaped.trim_matches('"')), "`{line}` of {file} reached the model");
            }
        }
    }
    // No line of the English holdout reached the stage's feedback.
    let holdout_text = fs_err::read_to_string(ws.path().join("scenarios-en/password-reset.md")).unwrap();
    for line in holdout_text.lines().map(str::trim).filter(|l| l.len() >= 12 && !l.starts_with("## Scenario")) {
        for sent in &feedback {
            assert!(!sent.contains(line), "holdout line `{line}` reached the stage");
        }
    }
}

/// Three judges review the driver's evidence; one always dissents. The
/// majority decides, and the report shows how often the judges disagreed.
#[test]
fn a_council_with_one_dissenting_judge_passes_by_majority_and_shows_its_split() {
    let llm = MockLlm::start_with(tester);
    let ws = english(&llm, 1, |toml| {
        toml.replace("seed = 1\n", "seed = 1\njudges = [\"careful\", \"dissent\", \"thorough\"]\n")
            .replace("max_iterations = 4", "max_iterations = 1")
    });
    let ran = cleanroom(ws.path(), &["run", "--format", "json", "pipeline.toml"]);
    let report = ran.json();
    let scenarios = holdout(&report)["scenarios"].as_array().unwrap().clone();
    // Attempt 1 only: the council (2 of 3 pass everything) passes all three,
    // even the scenario the driver saw fail: the driver does not vote.
    assert!(scenarios.iter().all(|s| s["passed"] == true), "{scenarios:?}");
    for scenario in &scenarios {
        assert_eq!(scenario["judge_disagreement"], 1.0, "{scenario}");
        assert!(scenario["detail"].as_str().unwrap().starts_with("council: 2 of 3 judges passed it"), "{scenario}");
    }
    let reviews = llm.requests().iter().filter(|r| r.raw().contains("\"model\":\"dissent\"")).count();
    assert_eq!(reviews, 3, "one review per scenario run");
    let human = cleanroom(ws.path(), &["report", "--format", "human"]);
    assert!(human.stdout.contains("judges disagree 100%"), "{human:?}");
}

/// An unchanged rerun is answered by the verdict cache without a request
/// to the model; a changed rubric misses it.
#[test]
fn the_verdict_cache_answers_an_unchanged_rerun_and_a_changed_rubric_misses_it() {
    let llm = MockLlm::start_with(tester);
    // `cache = false` keeps the step's result cache out of it: every run
    // of every scenario asks the judge, which asks its verdict cache.
    let ws = english(&llm, 2, |toml| toml.replace("stop_on_plateau = 2\n", "stop_on_plateau = 2\ncache = false\n"));
    let first = cleanroom(ws.path(), &["run", "--format", "json", "pipeline.toml"]);
    assert_eq!(first.code, 0, "{first:?}");
    let asked = llm.requests().len();
    let second = cleanroom(ws.path(), &["run", "--format", "json", "pipeline.toml"]);
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(llm.requests().len(), asked, "the rerun asked the model nothing");
    let scenarios = holdout(&second.json())["scenarios"].as_array().unwrap().clone();
    assert!(scenarios.iter().all(|s| s["cached_runs"] == 2), "{scenarios:?}");
    let pipeline = fs_err::read_to_string(ws.path().join("pipeline.toml")).unwrap();
    ws.file("pipeline.toml", &pipeline.replace("rubric = \"", "rubric = \"Be strict. "));
    let third = cleanroom(ws.path(), &["run", "--format", "json", "pipeline.toml"]);
    assert_eq!(third.code, 0, "{third:?}");
    assert!(llm.requests().len() > asked, "a changed rubric asks again");
}

/// A judge that never gives a verdict is stopped by the step's request
/// budget, checked before each request leaves: exactly `max_requests`
/// requests reach the model, the step is an error, never a pass, and the
/// run ends with `termination: budget`.
#[test]
fn the_request_budget_stops_a_judge_that_loops() {
    let llm = MockLlm::start_with(|_| Reply::tool("twin_calls", json!({"twin": "mail"})));
    let ws = english(&llm, 1, |toml| {
        toml.replace("max_requests = 150", "max_requests = 5").replace("max_turns = 16", "max_turns = 50")
    });
    let ran = cleanroom(ws.path(), &["run", "--format", "json", "pipeline.toml"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    let report = ran.json();
    assert_eq!(report["termination"], "budget");
    assert_eq!(llm.requests().len(), 5, "never one past the budget");
    let step = holdout(&report);
    assert_eq!(step["status"], "error");
    assert_eq!(step["budget_exhausted"], "max_requests = 5");
    assert!(step["reason"].as_str().unwrap().contains("ran out of its request budget"), "{step}");
    assert!(report["escalation"].as_str().unwrap().contains("`holdout` ran out of its budget"), "{report}");
    assert_eq!(report["attempts"].as_array().map_or(0, Vec::len), 0, "no retry was spent");
}

/// A judge that gives no verdict within `max_turns` makes the run an error (the
/// loop stops: no stage attempt is spent), never a failed verdict fed
/// back to the stage.
#[test]
fn a_judge_that_gives_no_verdict_is_an_error_not_a_verdict() {
    let llm = MockLlm::start_with(|_| Reply::text("I will not use tools."));
    let ws = english(&llm, 1, |toml| toml.replace("max_turns = 16", "max_turns = 2"));
    let ran = cleanroom(ws.path(), &["run", "--format", "json", "pipeline.toml"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    let report = ran.json();
    assert_eq!(report["termination"], "error");
    let step = holdout(&report);
    assert_eq!(step["status"], "error");
    assert!(step["reason"].as_str().unwrap().contains("gave no verdict in 2 turns"), "{step}");
    assert!(report["attempts"].as_array().is_none_or(Vec::is_empty), "no stage attempt was spent");
}

/// A judge that always fails `unknown address` the same way, whatever the
/// program does; the others it judges as [`tester`] does.
fn stubborn(request_: &Request) -> Reply {
    let scenario = messages(request_).get(1).and_then(|m| m["content"].as_str()).unwrap_or("").to_string();
    if scenario.contains("## Scenario: unknown address") {
        return verdict(false, "the answer for an unknown address differs");
    }
    tester(request_)
}

/// The English loop with a stage that stops improving after attempt 2:
/// satisfaction by round 0.33, 0.67, 0.67, 0.67. With `stop_on_plateau =
/// 2` the loop stops after round 4 (`plateau`); without it, the same
/// feedback reaches the stage a third time in round 4
/// (`repeating-failure`). Either way attempts are left.
#[test]
fn plateau_and_repeating_failure_stop_the_english_loop_at_the_right_round() {
    let patches = "patches = [\"/attempts/attempt-1.diff\", \"/attempts/attempt-2.diff\", \"/attempts/attempt-2.diff\", \"/attempts/attempt-2.diff\", \"/attempts/attempt-2.diff\", \"/attempts/attempt-2.diff\"]";
    let more = |toml: String| {
        toml.replace("max_iterations = 4", "max_iterations = 6")
            .replace("patches = [\"/attempts/attempt-1.diff\", \"/attempts/attempt-2.diff\"]", patches)
    };
    for (plateau, termination) in [(true, "plateau"), (false, "repeating-failure")] {
        let llm = MockLlm::start_with(stubborn);
        let ws = english(&llm, 1, |toml| {
            let toml = more(toml);
            if plateau {
                toml
            } else {
                toml.replace("stop_on_plateau = 2\n", "")
            }
        });
        let ran = cleanroom(ws.path(), &["run", "--format", "json", "pipeline.toml"]);
        assert_eq!(ran.code, 1, "{ran:?}");
        let report = ran.json();
        assert_eq!(report["termination"], termination, "{}", report["escalation"]);
        assert_eq!(report["attempts"].as_array().unwrap().len(), 4, "{}", report["escalation"]);
        let implement = report["steps"].as_array().unwrap().iter().find(|s| s["id"] == "implement").unwrap();
        assert_eq!(implement["attempt"], 4);
        let escalation = report["escalation"].as_str().unwrap();
        assert!(escalation.contains("scenario unknown address: 0/1 runs passed"), "{escalation}");
        assert!(escalation.contains("round 4: holdout: failed, satisfaction 0.67 (2/3) < 1.00"), "{escalation}");
    }
}
