//! What Cleanroom's model-driven plugins share: [`chat`], the OpenAI
//! chat-completions wire format (request bodies, replies and tool calls,
//! transcript lines), and [`http`], a synchronous HTTP client over
//! `wasi:http/outgoing-handler` behind a [`http::Transport`] trait, so the
//! plugins' loops run against a scripted transport in host tests.
//!
//! The host decides whether a request may leave at all (the step's
//! `allow_hosts`), may add the API key itself (`secret_headers`), and
//! counts requests against the step's `max_requests`.

pub mod chat;
pub mod http;

/// The API key from the environment variable `name` (a secret the step is
/// granted), trimmed, when a plugin's config names one.
///
/// # Errors
/// The variable is not set or empty: the message says how to grant it, or
/// to let the host add the key instead (`secret_headers`).
pub fn api_key(name: Option<&str>) -> Result<Option<String>, String> {
    let Some(name) = name else { return Ok(None) };
    match std::env::var(name) {
        Ok(key) if !key.trim().is_empty() => Ok(Some(key.trim().to_string())),
        _ => Err(format!(
            "config `api_key_env` names `{name}`, but that environment variable is not set in the step: \
             grant the secret to the step, or drop `api_key_env` to let the host add the key"
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn api_key_comes_from_the_named_variable() {
        assert_eq!(super::api_key(None), Ok(None));
        let unset = super::api_key(Some("LLM_CHAT_TEST_SURELY_UNSET")).unwrap_err();
        assert!(unset.contains("`LLM_CHAT_TEST_SURELY_UNSET`"), "{unset}");
        // PATH is set in any test environment; its value is returned trimmed.
        assert_eq!(
            super::api_key(Some("PATH")).unwrap().as_deref(),
            std::env::var("PATH").ok().as_deref().map(str::trim)
        );
    }
}
