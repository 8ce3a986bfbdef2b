//! An evaluator that judges its step's service: scenario `probe` sends
//! `GET <path>` (config `path`, default `/`) and passes when the answer is
//! 200 with a body containing config `expect`. The detail has the status and
//! body; the summary only fixed words.

wit_bindgen::generate!({ path: "../../../wit", world: "evaluator" });

use cleanroom::plugin::service::{send, Request};
use cleanroom_plugin_sdk::parse_config;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    path: Option<String>,
    expect: String,
}

struct ServiceProbe;

impl Guest for ServiceProbe {
    fn scenarios(_: Invocation) -> Result<Vec<String>, String> {
        Ok(vec!["probe".into()])
    }

    fn evaluate(_: String, invocation: Invocation) -> Verdict {
        let config: Config = match parse_config(&invocation.config) {
            Ok(config) => config,
            Err(e) => return Verdict { passed: false, summary: e, detail: String::new() },
        };
        let path = config.path.unwrap_or_else(|| "/".into());
        let request = Request { method: "GET".into(), path, headers: vec![], body: vec![] };
        match send(&request) {
            Ok(response) => {
                let body = String::from_utf8_lossy(&response.body).into_owned();
                let passed = response.status == 200 && body.contains(&config.expect);
                let summary = if passed { "the service answered" } else { "the service answered otherwise" };
                Verdict { passed, summary: summary.into(), detail: format!("status {}\n{body}", response.status) }
            }
            Err(e) => Verdict { passed: false, summary: "the request failed".into(), detail: e },
        }
    }
}

export!(ServiceProbe);
