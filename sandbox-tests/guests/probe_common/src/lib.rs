//! What the probe guests share: their config (a list of targets to try) and
//! how they report one attempt. Each probe maps the outcome into its own
//! bindings' `Finding` with [`Attempt`].

use cleanroom_plugin_sdk::{one_line, parse_config};

/// `{ paths = [...] }`: the targets to try (paths, or addresses for sockets).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Targets to try, in order.
    pub paths: Vec<String>,
}

/// Parses the probe config.
pub fn targets(config_json: &str) -> Result<Vec<String>, String> {
    parse_config::<Config>(config_json).map(|c| c.paths)
}

/// One attempt: `succeeded` or `denied`, with a one-line message. Probes
/// report every attempt as an error finding, as an attacker's failed step
/// would; the rule tells whether the sandbox held.
pub struct Attempt {
    /// True when the attempt worked.
    pub succeeded: bool,
    /// `succeeded` or `denied`.
    pub rule: &'static str,
    /// `<what> `<target>`: <detail or error>`.
    pub message: String,
}

impl Attempt {
    /// Describes trying `what` on `target` with `result`.
    pub fn new(target: &str, what: &str, result: Result<String, std::io::Error>) -> Attempt {
        let (succeeded, detail) = match result {
            Ok(detail) => (true, detail),
            Err(e) => (false, e.to_string()),
        };
        Attempt {
            succeeded,
            rule: if succeeded { "succeeded" } else { "denied" },
            message: one_line(&format!("{what} `{target}`: {detail}"), 190),
        }
    }
}

/// Defines `fn verdict(target, what, result) -> Finding` in a probe, mapping
/// an [`Attempt`] into the probe's own generated `Finding` type (each guest
/// has its own bindings, so the function cannot live here).
#[macro_export]
macro_rules! define_verdict {
    () => {
        fn verdict(target: &str, what: &str, result: Result<String, std::io::Error>) -> Finding {
            let attempt = $crate::Attempt::new(target, what, result);
            Finding {
                rule: attempt.rule.into(),
                severity: cleanroom::plugin::types::Severity::Error,
                message: attempt.message,
                path: None,
                line: None,
                column: None,
            }
        }
    };
}
