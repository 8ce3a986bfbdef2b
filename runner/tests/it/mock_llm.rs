//! A scripted OpenAI-compatible chat-completions server for the `llm-agent`
//! tests, on the shared loopback server ([`crate::http_server`]).
//!
//! [`MockLlm::start_with`] answers every `POST /v1/chat/completions` with
//! the [`Reply`] a closure picks from the request; every request is
//! recorded ([`MockLlm::requests`]). Replies are chat-completion objects:
//! `choices[0].message` with `role`, `content` and, for tool calls,
//! `tool_calls[{id, type: "function", function: {name, arguments}}]`, plus
//! `finish_reason` (`tool_calls` or `stop`). Other paths get 404.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

use crate::http_server::{Request, Response, Server};

/// What the mock answers one chat-completions request with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// An assistant message calling these tools: `(name, arguments as JSON text)`.
    ToolCalls(Vec<(String, String)>),
    /// A final assistant message with this content and no tool call.
    Final(String),
}

impl Reply {
    /// One tool call with JSON arguments.
    pub fn tool(name: &str, arguments: Value) -> Reply {
        Reply::ToolCalls(vec![(name.to_string(), arguments.to_string())])
    }

    /// A final assistant message.
    pub fn text(content: &str) -> Reply {
        Reply::Final(content.to_string())
    }
}

/// The chat request's `messages` (empty when there are none).
pub fn messages(request: &Request) -> Vec<Value> {
    serde_json::from_slice::<Value>(&request.body)
        .ok()
        .and_then(|v| v.get("messages").and_then(Value::as_array).cloned())
        .unwrap_or_default()
}

/// A running mock; dropping it stops the server.
pub struct MockLlm {
    server: Server,
}

impl MockLlm {
    /// Answers each chat-completions request with `script(request)`.
    pub fn start_with(script: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> MockLlm {
        let number = AtomicUsize::new(0);
        let server = Server::start(move |request| {
            if request.method != "POST" || request.path != "/v1/chat/completions" {
                return Response::text(
                    404,
                    format!("mock LLM serves POST /v1/chat/completions, not {} {}", request.method, request.path),
                );
            }
            let n = number.fetch_add(1, Ordering::SeqCst) + 1;
            let (message, finish) = match script(request) {
                Reply::ToolCalls(calls) => {
                    let calls: Vec<Value> = calls
                        .iter()
                        .enumerate()
                        .map(|(i, (name, arguments))| {
                            json!({"id": format!("call_{n}_{i}"), "type": "function", "function": {"name": name, "arguments": arguments}})
                        })
                        .collect();
                    (json!({"role": "assistant", "content": null, "tool_calls": calls}), "tool_calls")
                }
                Reply::Final(content) => (json!({"role": "assistant", "content": content}), "stop"),
            };
            let body = json!({
                "id": format!("chatcmpl-mock-{n}"),
                "object": "chat.completion",
                "created": 0,
                "model": "mock",
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            });
            Response { status: 200, content_type: "application/json", body: body.to_string().into_bytes() }
        });
        MockLlm { server }
    }

    /// `http://127.0.0.1:PORT/v1`, the `base_url` to configure.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.origin())
    }

    /// `http://127.0.0.1:PORT`, the `allow_hosts` entry.
    pub fn origin(&self) -> String {
        self.server.origin()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }
}
