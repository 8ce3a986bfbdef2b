//! `llm-agent`: a Cleanroom stage that is an AI coding agent.
//!
//! It drives an OpenAI-compatible chat-completions endpoint over wasi:http
//! outgoing requests (the host links wasi:http only for steps that allow
//! hosts, checks every request against that allowlist, and may add the
//! `Authorization` header itself). The model changes files only through four
//! tools (`list_files`, `read_file`, `write_file`, `apply_patch`) confined to
//! the step's mounts: reads below any mount, writes only below the writable
//! ones. Stage writes are transactional, so an `Err` leaves the workspace as
//! it was.
//!
//! Config (the step's `config` table; unknown keys are an error):
//! - `base_url` (required): e.g. `"https://api.openai.com/v1"` or
//!   `"http://127.0.0.1:8080/v1"`; requests go to `{base_url}/chat/completions`.
//! - `model` (required): the model name sent with every request.
//! - `max_turns` (default 20): requests made at most; the run fails with
//!   `gave up after N turns without finishing` when the model is still
//!   calling tools after that many.
//! - `temperature` (default 0.0).
//! - `spec` (default none): guest paths of files or directories (inside the
//!   step's mounts) whose text goes into the first user message.
//! - `api_key_env` (optional): the environment variable holding the API key,
//!   sent as `Authorization: Bearer ...`. Without it no auth header is sent
//!   (the host injects one, or the endpoint needs none).
//! - `system` (optional): extra instructions appended to the system message.
//! - `max_file_bytes` (default 262144): the most of one file a tool read or a
//!   spec file puts in the conversation; longer files are cut, saying so.
//! - `max_requests` (optional): requests the step may make in one run, all
//!   turns together. The host enforces it before each request leaves (the
//!   step's own `max_requests` key, if set, wins); past it the stage is an
//!   error and the run stops with `termination: budget`.
//!
//! A run: the system message (role and rules) and a user message (the spec
//! files, the files under the writable mounts and the other readable files,
//! the attempt number and, on a retry, `The previous attempt failed these
//! checks:` with one line per failure) are POSTed with the tool definitions;
//! each tool call in the reply is run and answered with a `tool` message, and
//! the conversation is POSTed again, until a reply calls no tool. Its first
//! line (at most 200 characters) is the stage's note. An HTTP status of 400
//! or more, or a reply that is not a chat completion, fails the stage with
//! the status and at most 200 characters of the body.
//!
//! Every message exchanged is printed to stdout as one line, `transcript `
//! followed by JSON (`turn`, `role`, `content` cut at 2000 characters,
//! `tool_calls` with arguments cut at 2000, `tool_call_id`), for the run's
//! journal.

pub mod agent;
pub mod patch;
pub mod prompt;
pub mod tools;

use cleanroom_plugin_sdk::stage::{Guest, Invocation};
pub use llm_chat::{chat, http};
use serde::Deserialize;

/// The step's `config`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The API root, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// The model name.
    pub model: String,
    /// Requests made at most.
    #[serde(default = "default_max_turns")]
    pub max_turns: u32,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: f64,
    /// Guest paths of the spec files or directories.
    #[serde(default)]
    pub spec: Vec<String>,
    /// The environment variable holding the API key, if the guest sends it.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Extra instructions for the system message.
    #[serde(default)]
    pub system: Option<String>,
    /// The most bytes of one file put in the conversation.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: usize,
    /// Requests the step may make in one run. The host enforces it (it
    /// reads it from here when the step sets no `max_requests` key) and
    /// refuses the request past it; the agent then fails with that error.
    #[serde(default)]
    pub max_requests: Option<u32>,
}

fn default_max_turns() -> u32 {
    20
}

fn default_max_file_bytes() -> usize {
    256 << 10
}

/// Parses and checks the step's config JSON.
///
/// # Errors
/// Unknown or missing keys, or values that cannot work.
pub fn parse_config(json: &str) -> Result<Config, String> {
    let config: Config = cleanroom_plugin_sdk::parse_config(json)?;
    http::Url::parse(&http::completions_url(&config.base_url)).map_err(|e| format!("config `base_url`: {e}"))?;
    if config.model.trim().is_empty() {
        return Err("config `model` is empty: name the model to use".to_string());
    }
    if config.max_turns == 0 {
        return Err("config `max_turns` is 0: allow at least one request".to_string());
    }
    if config.max_file_bytes == 0 {
        return Err("config `max_file_bytes` is 0".to_string());
    }
    if !config.temperature.is_finite() || config.temperature < 0.0 {
        return Err(format!("config `temperature` {} is not a non-negative number", config.temperature));
    }
    Ok(config)
}

struct LlmAgent;

impl Guest for LlmAgent {
    fn run(invocation: Invocation) -> Result<String, String> {
        let config = parse_config(&invocation.config)?;
        let key = llm_chat::api_key(config.api_key_env.as_deref())?;
        #[cfg(target_arch = "wasm32")]
        {
            let mut transport = http::WasiHttp;
            agent::run(&invocation, &config, key.as_deref(), &mut transport, &mut |line| println!("transcript {line}"))
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = key;
            Err("llm-agent talks HTTP through wasi:http: build it for wasm32-wasip2".to_string())
        }
    }
}

cleanroom_plugin_sdk::export_stage!(LlmAgent);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_errors() {
        let config = parse_config(r#"{"base_url": "https://api.openai.com/v1", "model": "gpt-4.1"}"#).unwrap();
        assert_eq!((config.max_turns, config.temperature, config.max_file_bytes), (20, 0.0, 262144));
        assert!(config.spec.is_empty() && config.api_key_env.is_none() && config.system.is_none());
        let typo = parse_config(r#"{"base_url": "http://h/v1", "model": "m", "max_turn": 3}"#).unwrap_err();
        assert!(typo.starts_with("invalid config: unknown field `max_turn`"), "{typo}");
        assert!(parse_config(r#"{"model": "m"}"#).unwrap_err().contains("missing field `base_url`"));
        let scheme = parse_config(r#"{"base_url": "api.openai.com/v1", "model": "m"}"#).unwrap_err();
        assert!(scheme.starts_with("config `base_url`: "), "{scheme}");
        assert!(parse_config(r#"{"base_url": "http://h", "model": "m", "max_turns": 0}"#).is_err());
        assert!(parse_config(r#"{"base_url": "http://h", "model": " "}"#).is_err());
        assert!(parse_config(r#"{"base_url": "http://h", "model": "m", "temperature": -1}"#).is_err());
    }
}
