//! `llm-judge`: a Cleanroom evaluator whose holdout scenarios are written in
//! plain English, judged by a model that drives the program under test.
//!
//! Scenarios are Markdown `## Scenario: <name>` sections with
//! Given/When/Then lines ([`scenarios`]), read from the step's `read`
//! mounts. For each run of a scenario the judge ([`judge`]) drives the
//! step's subject or service through tools, and finishes with a verdict; a
//! council of models may vote on the evidence. The model endpoint is any
//! OpenAI-compatible chat-completions API, reached through wasi:http (the
//! host checks `allow_hosts`, may add the key itself, and enforces
//! `max_requests`).
//!
//! Config (the step's `config` table; unknown keys are an error):
//! - `base_url` (required): e.g. `"https://api.openai.com/v1"`.
//! - `model` (required): the model that drives the program and, without
//!   `judges`, gives the verdict.
//! - `judges` (default none): a council of models; each reviews the
//!   driver's evidence and votes; the run passes when more than half pass
//!   it (a tie fails).
//! - `temperature` (default 0), `seed` (default none; run N of a scenario
//!   sends `seed + N - 1`, so repeats are different draws).
//! - `max_turns` (default 12): requests the driver may make per run; a
//!   driver with no verdict by then makes the run an error, never a pass.
//! - `max_requests` (optional): requests the whole step may make, every run
//!   of every scenario together; enforced by the host before each request
//!   leaves. Past it the step is an error and the run stops (`budget`).
//! - `rubric` (optional): extra instructions for every judge.
//! - `scenarios` (optional): a guest path (directory or file) to read
//!   scenarios from; default every read mount.
//! - `api_key_env` (optional): an environment variable (a granted secret)
//!   holding the key, sent as `Authorization: Bearer`. Prefer the host
//!   adding it (`secret_headers`): then the judge never holds it.
//! - `cache` (default true): remember each run's verdict in the runner's
//!   verdict cache, keyed by the scenario's text, the models, the rubric,
//!   the sampling settings and the prompts' version (the host adds the
//!   plugin's digest, the judged program's digest and the run index). A run
//!   that could not be judged is never remembered.
//!
//! A run the judge cannot judge (the endpoint fails, no verdict in
//! `max_turns`) is given up (`judging.give-up`): the step is an error, and
//! no stage is retried for it.

pub mod judge;
pub mod scenarios;

use cleanroom_plugin_sdk::evaluator::{Guest, Invocation, Verdict};
use serde::Deserialize;

/// The step's `config`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The API root, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// The driving model.
    pub model: String,
    /// The council (empty: the driver's verdict stands).
    #[serde(default)]
    pub judges: Vec<String>,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: f64,
    /// The seed of run 1 of each scenario.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Requests the driver may make per run.
    #[serde(default = "default_max_turns")]
    pub max_turns: u32,
    /// Enforced by the host; read here only so the key is known.
    #[serde(default)]
    pub max_requests: Option<u32>,
    /// Extra instructions for every judge.
    #[serde(default)]
    pub rubric: Option<String>,
    /// Where the scenarios are (a guest path).
    #[serde(default)]
    pub scenarios: Option<String>,
    /// The environment variable holding the API key, if the guest sends it.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Whether verdicts are remembered in the verdict cache.
    #[serde(default = "default_cache")]
    pub cache: bool,
}

fn default_max_turns() -> u32 {
    12
}

fn default_cache() -> bool {
    true
}

/// Parses and checks the step's config JSON.
///
/// # Errors
/// Unknown or missing keys, or values that cannot work.
pub fn parse_config(json: &str) -> Result<Config, String> {
    let config: Config = cleanroom_plugin_sdk::parse_config(json)?;
    llm_chat::http::Url::parse(&llm_chat::http::completions_url(&config.base_url))
        .map_err(|e| format!("config `base_url`: {e}"))?;
    if config.model.trim().is_empty() {
        return Err("config `model` is empty: name the model that drives the program".to_string());
    }
    if let Some(empty) = config.judges.iter().position(|j| j.trim().is_empty()) {
        return Err(format!("config `judges` entry {} is empty: name a model", empty + 1));
    }
    if config.max_turns == 0 {
        return Err("config `max_turns` is 0: allow the driver at least one request".to_string());
    }
    if config.max_requests == Some(0) {
        return Err("config `max_requests` is 0: allow at least one request".to_string());
    }
    if !config.temperature.is_finite() || config.temperature < 0.0 {
        return Err(format!("config `temperature` {} is not a non-negative number", config.temperature));
    }
    Ok(config)
}

/// What a remembered verdict depends on inside the plugin: the prompts'
/// version, the scenario's name and text, and every judging setting. The
/// host completes it with the plugin's digest, the judged program's digest
/// and the run index.
pub fn cache_key(config: &Config, scenario: &scenarios::Scenario) -> String {
    serde_json::json!({
        "prompts": judge::PROMPT_VERSION,
        "scenario": scenario.name,
        "text": scenario.text,
        "base_url": config.base_url,
        "model": config.model,
        "judges": config.judges,
        "temperature": config.temperature,
        "seed": config.seed,
        "max_turns": config.max_turns,
        "rubric": config.rubric,
    })
    .to_string()
}

/// Every scenario the step can read, from `config.scenarios` or, without
/// it, from every read mount.
///
/// # Errors
/// A file that cannot be read, or what [`scenarios::collect`] refuses.
pub fn load_scenarios(config: &Config, invocation: &Invocation) -> Result<Vec<scenarios::Scenario>, String> {
    let roots = match &config.scenarios {
        Some(path) => vec![path.clone()],
        None => invocation.mounts.iter().filter(|m| !m.writable).map(|m| m.path.clone()).collect(),
    };
    let mut files = Vec::new();
    for root in &roots {
        let meta = std::fs::metadata(root).map_err(|e| format!("config `scenarios`: `{root}`: {e}"))?;
        let found: Vec<String> = if meta.is_file() {
            vec![root.clone()]
        } else {
            cleanroom_plugin_sdk::Files::new(&[], &[])?
                .walk(&[root])
                .into_iter()
                .map(|f| f.guest)
                .filter(|p| p.ends_with(".md"))
                .collect()
        };
        for file in found {
            let text = std::fs::read_to_string(&file).map_err(|e| format!("`{file}` cannot be read: {e}"))?;
            files.push((file, text));
        }
    }
    files.sort();
    files.dedup();
    scenarios::collect(&files)
}

struct LlmJudge;

impl Guest for LlmJudge {
    fn scenarios(invocation: Invocation) -> Result<Vec<String>, String> {
        let config = parse_config(&invocation.config)?;
        llm_chat::api_key(config.api_key_env.as_deref())?;
        Ok(load_scenarios(&config, &invocation)?.into_iter().map(|s| s.name).collect())
    }

    fn evaluate(name: String, invocation: Invocation) -> Verdict {
        match run(&name, &invocation) {
            Ok(verdict) => verdict,
            Err(reason) => {
                host::give_up(&reason);
                Verdict::fail("the judge could not judge this run")
            }
        }
    }
}

/// Judges this run of scenario `name`, from the verdict cache when it
/// remembers one.
fn run(name: &str, invocation: &Invocation) -> Result<Verdict, String> {
    let config = parse_config(&invocation.config)?;
    let key = llm_chat::api_key(config.api_key_env.as_deref())?;
    let scenario = load_scenarios(&config, invocation)?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| format!("no scenario is named `{name}` any more"))?;
    let cache_key = config.cache.then(|| cache_key(&config, &scenario));
    if let Some(remembered) = cache_key.as_deref().and_then(host::recall) {
        return Ok(remembered);
    }
    let decision = host::judge(&scenario, &config, key)?;
    let verdict = Verdict { passed: decision.passed, summary: decision.summary, detail: decision.detail };
    if let Some(cache_key) = &cache_key {
        host::remember(cache_key, &verdict);
    }
    Ok(verdict)
}

/// What the component does through the host's imports; on the host (unit
/// tests) there is no host to ask.
#[cfg(target_arch = "wasm32")]
mod host {
    use cleanroom_plugin_sdk::evaluator::{judging, service, subject, Verdict};

    use crate::judge::{self, Decision, Exchange, Program, Reach, RunOutput, Tools};
    use crate::scenarios::Scenario;
    use crate::Config;

    pub fn give_up(reason: &str) {
        judging::give_up(reason);
    }

    pub fn recall(key: &str) -> Option<Verdict> {
        judging::recall(key)
    }

    pub fn remember(key: &str, verdict: &Verdict) {
        judging::remember(key, verdict);
    }

    /// Judges the scenario through the host's subject and service.
    pub fn judge(scenario: &Scenario, config: &Config, key: Option<String>) -> Result<Decision, String> {
        let target = judging::target();
        let reach = Reach { subject: target.subject, service: target.service, twins: target.twins };
        let mut transport = Keyed { inner: llm_chat::http::WasiHttp, key };
        let mut program = HostProgram;
        let mut counter = 0u64;
        let mut nonce = || {
            counter += 1;
            crate::nonce(counter)
        };
        let mut log = |line: String| println!("transcript {line}");
        let tools = Tools { transport: &mut transport, program: &mut program, nonce: &mut nonce, log: &mut log };
        let decision = judge::judge(scenario, config, &reach, judging::run_index(), tools)?;
        if !decision.votes.is_empty() {
            judging::votes(&decision.votes);
        }
        Ok(decision)
    }

    /// The wasi:http transport, adding the key when the guest holds one.
    struct Keyed {
        inner: llm_chat::http::WasiHttp,
        key: Option<String>,
    }

    impl llm_chat::http::Transport for Keyed {
        fn post(
            &mut self,
            url: &str,
            headers: &[(String, String)],
            body: &[u8],
        ) -> Result<llm_chat::http::HttpResponse, String> {
            let mut headers = headers.to_vec();
            if let Some(key) = &self.key {
                headers.push(("authorization".to_string(), format!("Bearer {key}")));
            }
            self.inner.post(url, &headers, body)
        }
    }

    struct HostProgram;

    impl Program for HostProgram {
        fn run(&mut self, args: &[String], stdin: &[u8]) -> Result<RunOutput, String> {
            subject::run(args, stdin).map(|o| RunOutput { exit_code: o.exit_code, stdout: o.stdout, stderr: o.stderr })
        }

        fn send(&mut self, request: Exchange) -> Result<Exchange, String> {
            let request = service::Request {
                method: request.method,
                path: request.path,
                headers: request.headers,
                body: request.body,
            };
            service::send(&request).map(|r| Exchange {
                status: r.status,
                headers: r.headers,
                body: r.body,
                ..Exchange::default()
            })
        }

        fn twin_calls(&mut self, twin: &str) -> Result<Vec<Exchange>, String> {
            service::twin_calls(twin).map(|calls| {
                calls
                    .into_iter()
                    .map(|c| Exchange { method: c.method, path: c.path, headers: c.headers, body: c.body, status: 0 })
                    .collect()
            })
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod host {
    use cleanroom_plugin_sdk::evaluator::Verdict;

    use crate::judge::Decision;
    use crate::scenarios::Scenario;
    use crate::Config;

    pub fn give_up(_reason: &str) {}

    pub fn recall(_key: &str) -> Option<Verdict> {
        None
    }

    pub fn remember(_key: &str, _verdict: &Verdict) {}

    pub fn judge(_scenario: &Scenario, _config: &Config, _key: Option<String>) -> Result<Decision, String> {
        Err("llm-judge talks HTTP through wasi:http: build it for wasm32-wasip2".to_string())
    }
}

/// A nonce no program output can predict: 128 bits from the process's
/// random hash keys (WASI's random source), mixed with `counter`.
pub fn nonce(counter: u64) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hex = String::new();
    for half in 0..2u64 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(counter);
        hasher.write_u64(half);
        hex.push_str(&format!("{:016x}", hasher.finish()));
    }
    hex
}

cleanroom_plugin_sdk::export_evaluator!(LlmJudge);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_errors() {
        let config = parse_config(r#"{"base_url": "http://127.0.0.1:9/v1", "model": "m"}"#).unwrap();
        assert_eq!((config.max_turns, config.temperature, config.cache), (12, 0.0, true));
        assert!(config.judges.is_empty() && config.seed.is_none() && config.rubric.is_none());
        let typo = parse_config(r#"{"base_url": "http://h/v1", "model": "m", "judge": ["a"]}"#).unwrap_err();
        assert!(typo.starts_with("invalid config: unknown field `judge`"), "{typo}");
        assert!(parse_config(r#"{"base_url": "http://h", "model": "m", "max_turns": 0}"#).is_err());
        assert!(parse_config(r#"{"base_url": "http://h", "model": "m", "judges": ["a", " "]}"#)
            .unwrap_err()
            .contains("entry 2"));
        assert!(parse_config(r#"{"base_url": "h/v1", "model": "m"}"#).unwrap_err().starts_with("config `base_url`"));
        assert!(parse_config(r#"{"base_url": "http://h", "model": "m", "temperature": -0.5}"#).is_err());
    }

    #[test]
    fn the_cache_key_changes_with_every_judging_setting() {
        let scenario = scenarios::parse("/s.md", "## Scenario: a\nThen b\n").unwrap().remove(0);
        let base = parse_config(r#"{"base_url": "http://h/v1", "model": "m"}"#).unwrap();
        let key = cache_key(&base, &scenario);
        let changed = [
            r#"{"base_url": "http://h/v1", "model": "m2"}"#,
            r#"{"base_url": "http://h/v1", "model": "m", "rubric": "be strict"}"#,
            r#"{"base_url": "http://h/v1", "model": "m", "judges": ["x"]}"#,
            r#"{"base_url": "http://h/v1", "model": "m", "temperature": 0.5}"#,
            r#"{"base_url": "http://h/v1", "model": "m", "seed": 1}"#,
        ];
        for json in changed {
            assert_ne!(cache_key(&parse_config(json).unwrap(), &scenario), key, "{json}");
        }
        let other = scenarios::parse("/s.md", "## Scenario: a\nThen c\n").unwrap().remove(0);
        assert_ne!(cache_key(&base, &other), key, "the scenario's text is in the key");
        // Settings that do not change a verdict do not change the key.
        let same =
            parse_config(r#"{"base_url": "http://h/v1", "model": "m", "cache": true, "max_requests": 9}"#).unwrap();
        assert_eq!(cache_key(&same, &scenario), key);
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(nonce(1), nonce(2));
        assert_eq!(nonce(1).len(), 32);
    }
}
