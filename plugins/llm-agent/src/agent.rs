//! The agent loop: open the conversation, POST it, run the tools the model
//! calls, append their results, and repeat until a reply calls no tool (the
//! run's note) or `max_turns` requests have been made (an error).
//!
//! The loop talks HTTP through the [`Transport`] trait (in [`crate::http`]), so the same code runs
//! over wasi:http in the component and over a scripted transport in the
//! host-side unit tests below.

use cleanroom_plugin_sdk::{one_line, Invocation};

use crate::chat::{self, Reply};
use crate::http::{self, Transport};
use crate::tools::{self, Sandbox};
use crate::{prompt, Config};

/// Characters of a failed response's body quoted in the error.
const BODY_EXCERPT: usize = 200;

/// Runs the agent for `invocation`, printing each transcript line (without
/// its `transcript ` prefix) through `log`.
///
/// # Errors
/// A bad `spec`, a failed request, an HTTP error status, a malformed reply,
/// or `max_turns` requests without a final reply.
pub fn run(
    invocation: &Invocation,
    config: &Config,
    api_key: Option<&str>,
    transport: &mut dyn Transport,
    log: &mut dyn FnMut(String),
) -> Result<String, String> {
    let sandbox = Sandbox::new(&invocation.mounts, config.max_file_bytes);
    if sandbox.mount_paths(true).is_empty() {
        return Err("this step has no writable mount: give it a `write` directory".to_string());
    }
    let specs = prompt::load_specs(&sandbox, &config.spec)?;
    let writable = files_below(&sandbox, true);
    let spec_paths: Vec<&str> = specs.iter().map(|(p, _)| p.as_str()).collect();
    let readable: Vec<(String, u64)> = files_below(&sandbox, false)
        .into_iter()
        .filter(|(path, _)| !spec_paths.contains(&path.as_str()) && !writable.iter().any(|(w, _)| w == path))
        .collect();

    let mut messages = vec![
        chat::message("system", &prompt::system(&sandbox, config.system.as_deref())),
        chat::message("user", &prompt::user(invocation.attempt, &invocation.feedback, &specs, &writable, &readable)),
    ];
    for message in &messages {
        log(chat::transcript_line(0, message));
    }

    let url = http::completions_url(&config.base_url);
    let mut headers = vec![
        ("Content-Type".to_string(), "application/json".to_string()),
        ("Accept".to_string(), "application/json".to_string()),
    ];
    if let Some(key) = api_key {
        headers.push(("Authorization".to_string(), format!("Bearer {key}")));
    }
    let tools = tools::definitions();

    for turn in 1..=config.max_turns {
        let body = chat::request_body(&config.model, config.temperature, None, &messages, &tools);
        let response = transport.post(&url, &headers, &body).map_err(|e| format!("request to {url} failed: {e}"))?;
        let excerpt = || one_line(&String::from_utf8_lossy(&response.body), BODY_EXCERPT);
        if response.status >= 400 {
            return Err(format!("{url} answered HTTP {}: {}", response.status, excerpt()));
        }
        let reply: Reply = chat::parse_reply(&response.body).map_err(|e| {
            format!("{url} answered HTTP {} with a malformed reply ({e}): {}", response.status, excerpt())
        })?;
        let assistant = chat::assistant_message(&reply);
        log(chat::transcript_line(turn, &assistant));
        messages.push(assistant);
        if reply.tool_calls.is_empty() {
            return Ok(chat::note(reply.content.as_deref()));
        }
        for call in &reply.tool_calls {
            let result = sandbox.call(&call.name, &call.arguments);
            let message = chat::tool_message(call, &result);
            log(chat::transcript_line(turn, &message));
            messages.push(message);
        }
    }
    Err(format!("gave up after {} turns without finishing", config.max_turns))
}

/// The files below the writable mounts (`writable`) or below every mount.
fn files_below(sandbox: &Sandbox, writable: bool) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> =
        sandbox.mount_paths(writable).into_iter().flat_map(|mount| sandbox.files_below(mount)).collect();
    files.sort();
    files.dedup();
    files
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use cleanroom_plugin_sdk::Mount;
    use serde_json::{json, Value};

    use super::*;
    use crate::http::HttpResponse;
    use crate::tools::tests::Tree;

    /// One POST: URL, headers, body.
    type Sent = (String, Vec<(String, String)>, Value);

    /// Answers each POST with the next scripted response and keeps what
    /// was sent.
    struct Scripted {
        responses: VecDeque<HttpResponse>,
        sent: Vec<Sent>,
    }

    impl Scripted {
        fn new(bodies: Vec<(u16, Value)>) -> Self {
            let responses =
                bodies.into_iter().map(|(status, body)| HttpResponse { status, body: body.to_string().into_bytes() });
            Scripted { responses: responses.collect(), sent: Vec::new() }
        }
    }

    impl Transport for Scripted {
        fn post(&mut self, url: &str, headers: &[(String, String)], body: &[u8]) -> Result<HttpResponse, String> {
            self.sent.push((url.to_string(), headers.to_vec(), serde_json::from_slice(body).unwrap()));
            self.responses.pop_front().ok_or_else(|| "connection refused".to_string())
        }
    }

    fn tool_reply(calls: &[(&str, Value)]) -> (u16, Value) {
        let calls: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, (name, args))| json!({"id": format!("call_{i}"), "type": "function", "function": {"name": name, "arguments": args.to_string()}}))
            .collect();
        (
            200,
            json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": calls}, "finish_reason": "tool_calls"}]}),
        )
    }

    fn final_reply(text: &str) -> (u16, Value) {
        (
            200,
            json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}),
        )
    }

    fn config(tree: &Tree, extra: Value) -> Config {
        let mut config =
            json!({"base_url": "http://127.0.0.1:9/v1/", "model": "test-model", "spec": [tree.path("specs")]});
        config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        crate::parse_config(&config.to_string()).unwrap()
    }

    fn invocation(tree: &Tree, attempt: u32, feedback: &[&str]) -> Invocation {
        let mount = |rel: &str, writable| Mount { path: tree.path(rel), writable };
        Invocation {
            step: "implement".into(),
            config: "{}".into(),
            mounts: vec![mount("specs", false), mount("src", false), mount("work", true)],
            attempt,
            feedback: feedback.iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn a_whole_run_writes_files_through_tools_and_returns_the_note() {
        let tree = Tree::new("agent-run");
        std::fs::write(tree.path("specs/task.md"), "Print hello.").unwrap();
        std::fs::write(tree.path("src/main.rs"), "fn main() {}\n").unwrap();
        let main = tree.path("work/main.rs");
        let mut transport = Scripted::new(vec![
            tool_reply(&[("read_file", json!({"path": tree.path("src/main.rs")}))]),
            tool_reply(&[
                ("write_file", json!({"path": main, "content": "fn main() {}\n"})),
                ("write_file", json!({"path": tree.path("src/main.rs"), "content": "hacked"})),
            ]),
            tool_reply(&[(
                "apply_patch",
                json!({"patch": format!("--- {main}\n+++ {main}\n@@ -1 +1 @@\n-fn main() {{}}\n+fn main() {{ println!(\"hello\"); }}\n")}),
            )]),
            final_reply("Implemented hello.\nIt prints hello."),
        ]);
        let mut lines = Vec::new();
        let note =
            run(&invocation(&tree, 1, &[]), &config(&tree, json!({})), Some("sk-test"), &mut transport, &mut |l| {
                lines.push(l)
            });
        assert_eq!(note, Ok("Implemented hello.".to_string()));
        assert_eq!(std::fs::read_to_string(&main).unwrap(), "fn main() { println!(\"hello\"); }\n");
        assert_eq!(std::fs::read_to_string(tree.path("src/main.rs")).unwrap(), "fn main() {}\n", "read-only stays");

        // Four requests to {base_url}/chat/completions with the key.
        assert_eq!(transport.sent.len(), 4);
        let (url, headers, first) = &transport.sent[0];
        assert_eq!(url, "http://127.0.0.1:9/v1/chat/completions");
        assert!(headers.contains(&("Authorization".to_string(), "Bearer sk-test".to_string())));
        assert_eq!(first["model"], "test-model");
        assert_eq!(first["temperature"], 0.0);
        assert_eq!(first["tools"].as_array().unwrap().len(), 4);
        let user = first["messages"][1]["content"].as_str().unwrap();
        assert!(user.starts_with("This is attempt 1.\n") && user.contains("Print hello."), "{user}");
        assert!(user.contains(&format!("{} (13 bytes)", tree.path("src/main.rs"))), "{user}");
        // The last request carries the whole conversation: the tool results
        // answer their calls by id, and the refused write says why.
        let messages = transport.sent[3].2["messages"].as_array().unwrap().clone();
        let roles: Vec<&str> = messages.iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool", "assistant", "tool", "tool", "assistant", "tool"]);
        assert_eq!(messages[3]["content"], "fn main() {}\n");
        assert_eq!(messages[5]["tool_call_id"], "call_0");
        assert!(messages[6]["content"].as_str().unwrap().starts_with("error: "), "{}", messages[6]);
        assert!(messages[8]["content"].as_str().unwrap().starts_with("patched "));

        // One transcript line per message exchanged, the final one included.
        assert_eq!(lines.len(), 10);
        let last: Value = serde_json::from_str(&lines[9]).unwrap();
        assert_eq!((last["turn"].as_u64(), last["role"].as_str()), (Some(4), Some("assistant")));
    }

    #[test]
    fn a_retry_tells_the_model_what_failed_and_no_key_means_no_header() {
        let tree = Tree::new("agent-retry");
        std::fs::write(tree.path("work/main.rs"), "old").unwrap();
        let mut transport = Scripted::new(vec![final_reply("Fixed it.")]);
        let invocation = invocation(&tree, 2, &["holdout: rejects-zero failed", "holdout: one failed"]);
        let config = config(&tree, json!({"system": "Write Rust.", "temperature": 0.5}));
        assert_eq!(run(&invocation, &config, None, &mut transport, &mut |_| {}), Ok("Fixed it.".into()));
        let (_, headers, body) = &transport.sent[0];
        assert!(headers.iter().all(|(name, _)| name != "Authorization"));
        assert_eq!(body["temperature"], 0.5);
        assert!(body["messages"][0]["content"].as_str().unwrap().ends_with("Additional instructions:\nWrite Rust."));
        let user = body["messages"][1]["content"].as_str().unwrap();
        assert!(user.starts_with(
            "This is attempt 2.\n\nThe previous attempt failed these checks:\n- holdout: rejects-zero failed\n- holdout: one failed\n"
        ));
        assert!(
            user.contains(&format!("# Files you can write\n\n{} (3 bytes)\n", tree.path("work/main.rs"))),
            "{user}"
        );
    }

    #[test]
    fn too_many_turns_is_an_error() {
        let tree = Tree::new("agent-turns");
        let list = || tool_reply(&[("list_files", json!({"path": tree.path("work")}))]);
        let mut transport = Scripted::new(vec![list(), list(), list()]);
        let result =
            run(&invocation(&tree, 1, &[]), &config(&tree, json!({"max_turns": 2})), None, &mut transport, &mut |_| {});
        assert_eq!(result, Err("gave up after 2 turns without finishing".to_string()));
        assert_eq!(transport.sent.len(), 2);
    }

    #[test]
    fn http_errors_and_malformed_replies_quote_status_and_body() {
        let tree = Tree::new("agent-errors");
        let url = "http://127.0.0.1:9/v1/chat/completions";
        let long_error = json!({"error": {"message": "x".repeat(500)}});
        let mut transport = Scripted::new(vec![(401, long_error)]);
        let err =
            run(&invocation(&tree, 1, &[]), &config(&tree, json!({})), None, &mut transport, &mut |_| {}).unwrap_err();
        assert!(err.starts_with(&format!("{url} answered HTTP 401: {{\"error\"")), "{err}");
        assert!(err.chars().count() < 200 + url.len() + 30, "{err}");

        let mut transport = Scripted::new(vec![(200, json!({"unexpected": true}))]);
        let err =
            run(&invocation(&tree, 1, &[]), &config(&tree, json!({})), None, &mut transport, &mut |_| {}).unwrap_err();
        assert_eq!(
            err,
            format!("{url} answered HTTP 200 with a malformed reply (no choices[0].message): {{\"unexpected\":true}}")
        );

        let mut transport = Scripted::new(vec![]);
        let err =
            run(&invocation(&tree, 1, &[]), &config(&tree, json!({})), None, &mut transport, &mut |_| {}).unwrap_err();
        assert_eq!(err, format!("request to {url} failed: connection refused"));
    }

    #[test]
    fn bad_spec_and_no_writable_mount_fail_before_any_request() {
        let tree = Tree::new("agent-bad");
        let mut transport = Scripted::new(vec![]);
        let config = config(&tree, json!({"spec": ["/etc/passwd"]}));
        let err = run(&invocation(&tree, 1, &[]), &config, None, &mut transport, &mut |_| {}).unwrap_err();
        assert!(err.starts_with("config `spec`: `/etc/passwd` is outside"), "{err}");
        let mut read_only = invocation(&tree, 1, &[]);
        read_only.mounts.retain(|m| !m.writable);
        let err = run(&read_only, &config, None, &mut transport, &mut |_| {}).unwrap_err();
        assert!(err.contains("no writable mount"));
        assert!(transport.sent.is_empty());
    }
}
