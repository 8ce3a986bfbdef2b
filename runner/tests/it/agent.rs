//! The `llm-agent` stage in the factory loop, against a scripted model on
//! loopback: the agent edits files through its tools, the holdout evaluator
//! fails attempt 1, the one-line feedback reaches the model on attempt 2,
//! attempt 2 passes, and no byte of the holdout scenarios reaches the model.

use std::ffi::OsStr;

use serde_json::json;

use crate::mock_llm::{messages, MockLlm, Reply};
use crate::{cleanroom_with_env, example_copy};

/// Fails `rejects-zero` and `rejects-word`: no argument check.
const WRONG: &str = "fn main() {\n    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(15);\n    for i in 1..=n {\n        match (i % 3, i % 5) {\n            (0, 0) => println!(\"FizzBuzz\"),\n            (0, _) => println!(\"Fizz\"),\n            (_, 0) => println!(\"Buzz\"),\n            _ => println!(\"{i}\"),\n        }\n    }\n}\n";

/// The argument check, as a patch on WRONG (exercises `apply_patch`).
const FIX: &str = "--- a/work/main.rs\n+++ b/work/main.rs\n@@ -1,2 +1,9 @@\n fn main() {\n-    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(15);\n+    let n: u64 = match std::env::args().nth(1) {\n+        None => 15,\n+        Some(a) => match a.parse::<u64>() {\n+            Ok(n) if n > 0 => n,\n+            _ => { eprintln!(\"error: N must be a positive integer\"); std::process::exit(1) }\n+        },\n+    };\n     for i in 1..=n {\n";

const KEY: &str = "sk-agent-test-4d2c9e71";

/// The agent example pointed at `llm` (a loopback endpoint), with `edit`
/// applied to its pipeline.
fn agent_workspace(llm: &MockLlm, edit: impl Fn(String) -> String) -> crate::Workspace {
    let (base_url, origin) = (llm.base_url(), llm.origin());
    example_copy("agent", |toml| {
        edit(
            toml.replace("https://api.openai.com/v1", &base_url)
                .replace("\"https://api.openai.com\"", &format!("\"{origin}\""))
                .replace("allow_hosts = [", "allow_private = true\nallow_hosts = ["),
        )
    })
}

/// Runs the agent example's pipeline with the API key set.
fn run_agent(ws: &crate::Workspace) -> crate::Ran {
    cleanroom_with_env(ws.path(), &["run", "--format", "json", "pipeline.toml"], &[("OPENAI_API_KEY", OsStr::new(KEY))])
}

#[test]
fn the_agent_fails_then_passes_on_feedback_and_never_sees_the_holdout() {
    // The model: on a first request of an attempt, write (attempt 1) or
    // patch (attempt 2, recognised by the feedback in its prompt); after
    // a tool result, read the file back once, then finish.
    let llm = MockLlm::start_with(|request| {
        let messages = messages(request);
        let prompt: String =
            messages.iter().filter(|m| m["role"] == "user").map(|m| m["content"].to_string()).collect();
        let tool_results = messages.iter().filter(|m| m["role"] == "tool").count();
        let retry = prompt.contains("rejects-zero");
        match (retry, tool_results) {
            (false, 0) => Reply::tool("write_file", json!({"path": "/work/main.rs", "content": WRONG})),
            (true, 0) => Reply::tool("apply_patch", json!({"patch": FIX})),
            (_, 1) => Reply::tool("read_file", json!({"path": "/work/main.rs"})),
            _ => Reply::text("Wrote /work/main.rs as the spec says."),
        }
    });
    let ws = agent_workspace(&llm, |toml| toml);
    let ran = run_agent(&ws);
    assert_eq!(ran.code, 0, "{ran:?}");
    let report = ran.json();
    let implement = &report["steps"][0];
    assert_eq!(implement["id"], "implement");
    assert_eq!(implement["attempt"], 2, "{ran:?}");
    assert!(implement["stdout"].as_str().unwrap().contains("transcript "), "the transcript is kept: {implement}");
    let round1 = &report["attempts"][0];
    assert!(round1["gates"].to_string().contains("holdout: failed"), "{round1}");
    let feedback: Vec<String> = round1["feedback"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().trim_start_matches("implement: ").to_string())
        .collect();
    assert_eq!(feedback.len(), 2, "{round1}");

    let requests = llm.requests();
    assert!(requests.len() >= 6, "two attempts of three requests: {}", requests.len());
    // The host added the key; the agent never held it.
    for request in &requests {
        assert_eq!(request.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    }
    assert!(!implement.to_string().contains(KEY));
    // Every feedback line reached the model on attempt 2 ...
    let retry_prompt = requests.iter().map(|r| r.raw()).find(|raw| raw.contains("rejects-zero")).expect("a retry");
    for line in &feedback {
        let quoted = serde_json::to_string(line).unwrap();
        assert!(retry_prompt.contains(quoted.trim_matches('"')), "feedback `{line}` did not reach the model");
    }
    // ... and nothing of the holdout scenarios ever did.
    for entry in fs_err::read_dir(ws.path().join("scenarios")).unwrap() {
        let text = fs_err::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines().map(str::trim).filter(|l| l.len() >= 12 && !l.starts_with('#')) {
            for request in &requests {
                let raw = request.raw();
                let escaped = serde_json::to_string(line).unwrap();
                assert!(
                    !raw.contains(line) && !raw.contains(escaped.trim_matches('"')),
                    "holdout line `{line}` reached the model"
                );
            }
        }
    }
    // The journal keeps the transcript.
    let journal = fs_err::read_dir(ws.path().join(".cleanroom/runs"))
        .unwrap()
        .map(|e| fs_err::read_to_string(e.unwrap().path().join("events.jsonl")).unwrap())
        .collect::<String>();
    assert!(journal.contains("transcript "), "the journal keeps the transcript");
    assert!(!journal.contains(KEY));
}

/// `max_requests` in the agent's config is the host's budget: an agent
/// that keeps calling tools is stopped at the request past it, which never
/// leaves; the stage is an error (its writes are not committed, no gate
/// runs) and the run ends with `termination: budget`.
#[test]
fn the_request_budget_stops_an_agent_that_never_finishes() {
    let llm = MockLlm::start_with(|_| Reply::tool("write_file", json!({"path": "/work/main.rs", "content": WRONG})));
    let ws = agent_workspace(&llm, |toml| toml.replace("max_turns = 20", "max_turns = 20\nmax_requests = 3"));
    let ran = run_agent(&ws);
    assert_eq!(ran.code, 1, "{ran:?}");
    let report = ran.json();
    assert_eq!(report["termination"], "budget", "{report}");
    assert_eq!(llm.requests().len(), 3, "never one past the budget");
    let implement = &report["steps"][0];
    assert_eq!(
        (implement["status"].as_str(), implement["budget_exhausted"].as_str()),
        (Some("error"), Some("max_requests = 3"))
    );
    assert!(implement["changes"].as_array().unwrap().is_empty(), "{implement}");
    assert!(!ws.path().join("work/main.rs").exists(), "the stage's writes were committed");
}
