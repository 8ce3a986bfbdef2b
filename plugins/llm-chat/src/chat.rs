//! The OpenAI chat-completions wire format: the request body, the reply's
//! assistant message and tool calls, the messages appended to the
//! conversation, and the transcript lines printed for the run's journal.

use cleanroom_plugin_sdk::one_line;
use serde_json::{json, Value};

/// Characters of a message's content kept in a transcript line.
const TRANSCRIPT_CONTENT: usize = 2000;
/// Characters of a tool call's arguments kept in a transcript line.
const TRANSCRIPT_ARGUMENTS: usize = 2000;

/// One function call the model asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// The id the tool result must quote (`call_...`).
    pub id: String,
    /// The function's name.
    pub name: String,
    /// Its arguments, as JSON text.
    pub arguments: String,
}

/// The assistant's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Its text, if any.
    pub content: Option<String>,
    /// The tools it calls; none means it has finished.
    pub tool_calls: Vec<ToolCall>,
}

/// The JSON body of one chat-completions request; `seed` is sent when
/// given (servers that support it sample reproducibly).
pub fn request_body(model: &str, temperature: f64, seed: Option<i64>, messages: &[Value], tools: &Value) -> Vec<u8> {
    let mut body = json!({
        "model": model,
        "messages": messages,
        "tools": tools,
        "temperature": temperature,
    });
    if let Some(seed) = seed {
        body["seed"] = json!(seed);
    }
    body.to_string().into_bytes()
}

/// Reads `choices[0].message` of a chat-completions response.
///
/// Accepts what compatible servers vary on: `content` as a string, `null`
/// or a list of text parts; `arguments` as JSON text or as an object; a
/// missing call id (one is made up).
///
/// # Errors
/// When the body is not JSON or has no `choices[0].message` (an `error`
/// object in the body is quoted).
pub fn parse_reply(body: &[u8]) -> Result<Reply, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let Some(message) = value.pointer("/choices/0/message") else {
        if let Some(error) = value.get("error") {
            let text = error.get("message").and_then(Value::as_str).map_or_else(|| error.to_string(), str::to_string);
            return Err(format!("an error instead of a reply: {}", one_line(&text, 150)));
        }
        return Err("no choices[0].message".to_string());
    };
    let content = match message.get("content") {
        Some(Value::String(text)) => Some(text.clone()),
        Some(Value::Array(parts)) => Some(parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect()),
        _ => None,
    };
    let mut tool_calls = Vec::new();
    for (index, call) in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let function = call.get("function").ok_or("a tool call has no `function`")?;
        let name = function.get("name").and_then(Value::as_str).ok_or("a tool call has no function name")?;
        let arguments = match function.get("arguments") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Null) | None => "{}".to_string(),
            Some(other) => other.to_string(),
        };
        let id = call.get("id").and_then(Value::as_str).map_or_else(|| format!("call_{index}"), str::to_string);
        tool_calls.push(ToolCall { id, name: name.to_string(), arguments });
    }
    Ok(Reply { content, tool_calls })
}

/// A `system` or `user` message.
pub fn message(role: &str, content: &str) -> Value {
    json!({"role": role, "content": content})
}

/// The assistant message to append to the conversation for `reply`.
pub fn assistant_message(reply: &Reply) -> Value {
    let mut message = json!({"role": "assistant", "content": reply.content});
    if !reply.tool_calls.is_empty() {
        let calls: Vec<Value> = reply
            .tool_calls
            .iter()
            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
            .collect();
        message["tool_calls"] = Value::Array(calls);
    }
    message
}

/// The `tool` message carrying one call's result.
pub fn tool_message(call: &ToolCall, result: &str) -> Value {
    json!({"role": "tool", "tool_call_id": call.id, "content": result})
}

/// The transcript line for one message (without the `transcript ` prefix):
/// the turn, role, content cut at 2000 characters and, for an assistant,
/// its tool calls with their arguments cut at 2000.
pub fn transcript_line(turn: u32, message: &Value) -> String {
    let mut line = json!({"turn": turn, "role": message["role"]});
    if let Some(content) = message["content"].as_str() {
        line["content"] = Value::String(cut(content, TRANSCRIPT_CONTENT));
    }
    if let Some(id) = message.get("tool_call_id") {
        line["tool_call_id"] = id.clone();
    }
    if let Some(calls) = message["tool_calls"].as_array() {
        let calls: Vec<Value> = calls
            .iter()
            .map(|c| {
                let arguments = c["function"]["arguments"].as_str().unwrap_or("");
                json!({"id": c["id"], "name": c["function"]["name"], "arguments": cut(arguments, TRANSCRIPT_ARGUMENTS)})
            })
            .collect();
        line["tool_calls"] = Value::Array(calls);
    }
    line.to_string()
}

/// `text` cut to `max` characters, the cut marked with `…`.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// The stage's note from the final reply: its first non-blank line, at
/// most 200 characters.
pub fn note(content: Option<&str>) -> String {
    let first = content.unwrap_or("").lines().map(str::trim).find(|l| !l.is_empty());
    match first {
        Some(line) => one_line(line, 200),
        None => "the agent finished without a message".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOOL_REPLY: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,
        "message":{"role":"assistant","content":null,"tool_calls":[
          {"id":"call_a","type":"function","function":{"name":"read_file","arguments":"{\"path\":\"/src/main.rs\"}"}},
          {"type":"function","function":{"name":"list_files","arguments":{"path":"/work"}}}]},
        "finish_reason":"tool_calls"}]}"#;

    #[test]
    fn tool_calls_are_parsed_with_string_or_object_arguments() {
        let reply = parse_reply(TOOL_REPLY.as_bytes()).unwrap();
        assert_eq!(reply.content, None);
        assert_eq!(
            reply.tool_calls,
            [
                ToolCall {
                    id: "call_a".into(),
                    name: "read_file".into(),
                    arguments: r#"{"path":"/src/main.rs"}"#.into()
                },
                ToolCall { id: "call_1".into(), name: "list_files".into(), arguments: r#"{"path":"/work"}"#.into() },
            ]
        );
        // Appended back as the API expects it.
        let message = assistant_message(&reply);
        assert_eq!(message["tool_calls"][0]["function"]["arguments"], r#"{"path":"/src/main.rs"}"#);
        assert_eq!(message["tool_calls"][1]["type"], "function");
        assert!(message["content"].is_null());
    }

    #[test]
    fn final_replies_and_content_parts() {
        let reply =
            parse_reply(br#"{"choices":[{"message":{"role":"assistant","content":"Done.\nDetails"}}]}"#).unwrap();
        assert_eq!((reply.content.as_deref(), reply.tool_calls.len()), (Some("Done.\nDetails"), 0));
        assert!(assistant_message(&reply).get("tool_calls").is_none());
        let parts = br#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}"#;
        assert_eq!(parse_reply(parts).unwrap().content.as_deref(), Some("ab"));
    }

    #[test]
    fn malformed_replies_are_errors() {
        assert!(parse_reply(b"<html>").unwrap_err().starts_with("not JSON"));
        assert_eq!(parse_reply(br#"{"choices":[]}"#).unwrap_err(), "no choices[0].message");
        let error = br#"{"error":{"message":"model not found","type":"invalid_request_error"}}"#;
        assert_eq!(parse_reply(error).unwrap_err(), "an error instead of a reply: model not found");
        let nameless = br#"{"choices":[{"message":{"tool_calls":[{"id":"x","function":{}}]}}]}"#;
        assert_eq!(parse_reply(nameless).unwrap_err(), "a tool call has no function name");
    }

    #[test]
    fn request_body_is_a_chat_completion_request() {
        let body = request_body("gpt-x", 0.0, None, &[message("user", "hi")], &json!([]));
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            json!({"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}], "tools": [], "temperature": 0.0})
        );
        let seeded: Value = serde_json::from_slice(&request_body("m", 0.5, Some(7), &[], &json!([]))).unwrap();
        assert_eq!(seeded["seed"], 7);
    }

    #[test]
    fn transcript_lines_cut_content_and_arguments() {
        let long = "x".repeat(2500);
        let line: Value = serde_json::from_str(&transcript_line(1, &message("user", &long))).unwrap();
        assert_eq!(line["content"].as_str().unwrap().chars().count(), 2001);
        assert_eq!(line["role"], "user");
        let reply = Reply {
            content: None,
            tool_calls: vec![ToolCall { id: "c".into(), name: "write_file".into(), arguments: long.clone() }],
        };
        let line: Value = serde_json::from_str(&transcript_line(2, &assistant_message(&reply))).unwrap();
        assert_eq!(line["tool_calls"][0]["name"], "write_file");
        assert!(line["tool_calls"][0]["arguments"].as_str().unwrap().ends_with("x…"));
        assert!(line.get("content").is_none());
        let tool: Value = serde_json::from_str(&transcript_line(2, &tool_message(&reply.tool_calls[0], "ok"))).unwrap();
        assert_eq!(tool, json!({"turn": 2, "role": "tool", "tool_call_id": "c", "content": "ok"}));
    }

    #[test]
    fn note_is_the_first_line() {
        assert_eq!(note(Some("\n  Implemented fizzbuzz.  \nMore.")), "Implemented fizzbuzz.");
        assert_eq!(note(Some(&"y".repeat(300))).chars().count(), 200);
        assert_eq!(note(None), "the agent finished without a message");
    }
}
