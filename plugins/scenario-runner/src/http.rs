//! HTTP scenarios: a scenario file with `[[requests]]` judges the step's
//! service (`service = "ID"` on the evaluator) instead of a subject.
//!
//! Each `[[requests]]` entry is a step, run in order; the first that fails
//! ends the scenario. A step either sends a request and checks the
//! response, or (with `twin_calls`) checks the calls the service made to
//! one of its twins during this scenario run. Keys (unknown keys are an
//! error):
//! - request: `method` (default `GET`), `path` (required, from `/`),
//!   `json` (a TOML value sent as JSON, with `content-type:
//!   application/json`) or `body` (text), `request_headers` (table);
//! - checks: `status`, `json_subset` (the response's JSON holds these
//!   keys and values, recursively; arrays must match whole), `body_contains`
//!   (strings), `body_regex`, `headers` (expected response headers; names
//!   are case-insensitive, values exact);
//! - `twin_calls = { twin = "mail", count = 1, method = "POST", path = "/send" }`:
//!   the calls to `twin` (filtered by `method` and `path` when given) number
//!   exactly `count` (when given);
//! - `capture = { name = "..." }`: after a request, a JSON pointer into
//!   the response (`/token`); after `twin_calls`, a regex whose first group
//!   is taken from the body of the last matching call. Later steps use the
//!   value as `{name}` in `path`, `body`, `request_headers` values and the
//!   strings of `json`.
//!
//! Summaries say which step failed and how, in the runner's and this
//! plugin's words only: never a scenario's values (paths, bodies, expected
//! strings, twin names) and never anything the service sent (its status,
//! its body, the calls it made). The detail, for humans, has the whole
//! exchange.

use std::collections::BTreeMap;

use cleanroom_plugin_sdk::evaluator::service::{self, Request};
use regex::Regex;
use serde::Deserialize;

use crate::judge::clip;

/// An HTTP scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpScenario {
    #[serde(default)]
    pub description: Option<String>,
    pub requests: Vec<Step>,
}

/// One `[[requests]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    method: Option<String>,
    path: Option<String>,
    json: Option<toml::Value>,
    body: Option<String>,
    #[serde(default)]
    request_headers: BTreeMap<String, String>,
    status: Option<u16>,
    json_subset: Option<toml::Value>,
    #[serde(default)]
    body_contains: Vec<String>,
    body_regex: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    twin_calls: Option<TwinCalls>,
    #[serde(default)]
    capture: BTreeMap<String, String>,
}

/// `twin_calls = { ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwinCalls {
    twin: String,
    count: Option<u32>,
    method: Option<String>,
    path: Option<String>,
}

/// Parses an HTTP scenario and checks what can be checked before it runs.
///
/// # Errors
/// The parser's message (it may quote the file: for the detail only).
pub fn parse(text: &str) -> Result<HttpScenario, String> {
    let scenario: HttpScenario = toml::from_str(text).map_err(|e| e.to_string())?;
    if scenario.requests.is_empty() {
        return Err("`requests` is empty: add at least one [[requests]]".into());
    }
    for (i, step) in scenario.requests.iter().enumerate() {
        let n = i + 1;
        match (&step.twin_calls, &step.path) {
            (Some(_), Some(_)) => return Err(format!("request {n}: `twin_calls` and `path` do not go together")),
            (None, None) => return Err(format!("request {n}: needs `path` (or `twin_calls`)")),
            _ => {}
        }
        if step.json.is_some() && step.body.is_some() {
            return Err(format!("request {n}: `json` and `body` do not go together"));
        }
        if let Some(pattern) = &step.body_regex {
            Regex::new(pattern).map_err(|e| format!("request {n}: invalid `body_regex`: {e}"))?;
        }
        if step.twin_calls.is_some() {
            for pattern in step.capture.values() {
                let regex = Regex::new(pattern).map_err(|e| format!("request {n}: invalid `capture`: {e}"))?;
                if regex.captures_len() < 2 {
                    return Err(format!("request {n}: a `capture` regex needs a group, e.g. 'token=(\\w+)'"));
                }
            }
        }
    }
    Ok(scenario)
}

/// How a scenario run went: a summary for the stage (fixed words and step
/// numbers only) and the exchange for humans.
pub struct Ran {
    /// Whether every step held.
    pub passed: bool,
    /// One line.
    pub summary: String,
    /// The whole exchange.
    pub detail: String,
}

/// Runs every step of `scenario` against the service.
pub fn run(scenario: &HttpScenario) -> Ran {
    let mut detail = String::new();
    if let Some(description) = &scenario.description {
        detail.push_str(&format!("scenario: {}\n", clip(description)));
    }
    let mut captures: BTreeMap<String, String> = BTreeMap::new();
    for (i, step) in scenario.requests.iter().enumerate() {
        let n = i + 1;
        let result = match &step.twin_calls {
            Some(calls) => twin_step(n, step, calls, &mut captures, &mut detail),
            None => request_step(n, step, &mut captures, &mut detail),
        };
        if let Err(summary) = result {
            detail.push_str(&format!("\nFAILED: {summary}\n"));
            return Ran { passed: false, summary, detail };
        }
    }
    Ran { passed: true, summary: "passed".into(), detail }
}

/// `text` with every `{name}` replaced by its capture.
///
/// # Errors
/// When a `{name}` names no capture made so far.
fn fill(n: usize, text: &str, captures: &BTreeMap<String, String>) -> Result<String, String> {
    let Ok(placeholder) = Regex::new(r"\{([A-Za-z_][A-Za-z0-9_]*)\}") else { return Ok(text.to_string()) };
    let mut missing = false;
    let filled = placeholder.replace_all(text, |c: &regex::Captures<'_>| match captures.get(&c[1]) {
        Some(value) => value.clone(),
        None => {
            missing = true;
            c[0].to_string()
        }
    });
    if missing {
        return Err(format!("request {n}: uses a capture an earlier request did not make"));
    }
    Ok(filled.into_owned())
}

/// `value` (TOML) as JSON, with captures filled into its strings.
fn to_json(n: usize, value: &toml::Value, captures: &BTreeMap<String, String>) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    Ok(match value {
        toml::Value::String(s) => J::String(fill(n, s, captures)?),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(items) => J::Array(items.iter().map(|v| to_json(n, v, captures)).collect::<Result<_, _>>()?),
        toml::Value::Table(table) => J::Object(
            table.iter().map(|(k, v)| Ok((k.clone(), to_json(n, v, captures)?))).collect::<Result<_, String>>()?,
        ),
    })
}

/// Whether `actual` holds everything in `expected`: objects by key,
/// recursively; anything else equal.
fn json_contains(expected: &serde_json::Value, actual: &serde_json::Value) -> bool {
    match (expected, actual) {
        (serde_json::Value::Object(want), serde_json::Value::Object(got)) => {
            want.iter().all(|(k, v)| got.get(k).is_some_and(|g| json_contains(v, g)))
        }
        _ => expected == actual,
    }
}

/// The service's words for a failed send: only the host's fixed set.
fn send_failure(error: &str) -> &'static str {
    match error {
        "no service" => "the evaluator has no service: set `service` on its step",
        "not reachable" => "the service was not reachable",
        "timed out" => "the service did not answer in time",
        "too large" => "the response was too large",
        "bad response" => "the service did not answer with HTTP/1.1",
        "bad request" => "the request could not be sent (check the scenario)",
        _ => "the request failed",
    }
}

fn request_step(
    n: usize,
    step: &Step,
    captures: &mut BTreeMap<String, String>,
    detail: &mut String,
) -> Result<(), String> {
    let method = step.method.clone().unwrap_or_else(|| "GET".into()).to_ascii_uppercase();
    let path = fill(n, step.path.as_deref().unwrap_or("/"), captures)?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for (name, value) in &step.request_headers {
        headers.push((name.clone(), fill(n, value, captures)?));
    }
    let body = match (&step.json, &step.body) {
        (Some(json), _) => {
            headers.push(("content-type".into(), "application/json".into()));
            to_json(n, json, captures)?.to_string().into_bytes()
        }
        (None, Some(body)) => fill(n, body, captures)?.into_bytes(),
        (None, None) => Vec::new(),
    };
    detail.push_str(&format!("\n[{n}] {method} {}\n", clip(&path)));
    if !body.is_empty() {
        detail.push_str(&format!("{}\n", clip(&String::from_utf8_lossy(&body))));
    }
    let response = service::send(&Request { method, path, headers, body })
        .map_err(|e| format!("request {n}: {}", send_failure(&e)))?;
    let text = String::from_utf8_lossy(&response.body).into_owned();
    detail.push_str(&format!("-> {}\n{}\n", response.status, clip(&text)));
    if let Some(status) = step.status {
        if response.status != status {
            return Err(format!("request {n}: expected status {status}, got another"));
        }
    }
    let json: Option<serde_json::Value> = serde_json::from_str(&text).ok();
    if let Some(subset) = &step.json_subset {
        let want = to_json(n, subset, captures)?;
        if !json.as_ref().is_some_and(|got| json_contains(&want, got)) {
            detail.push_str(&format!("expected JSON to contain: {}\n", clip(&want.to_string())));
            return Err(format!("request {n}: the response body is not the expected JSON"));
        }
    }
    let missing: Vec<&String> = step.body_contains.iter().filter(|w| !text.contains(w.as_str())).collect();
    if !missing.is_empty() {
        detail.push_str(&format!("missing from the body: {}\n", clip(&format!("{missing:?}"))));
        return Err(format!(
            "request {n}: the body lacks an expected string ({} of {} missing)",
            missing.len(),
            step.body_contains.len()
        ));
    }
    if let Some(pattern) = &step.body_regex {
        if !Regex::new(pattern).is_ok_and(|r| r.is_match(&text)) {
            detail.push_str(&format!("pattern: {}\n", clip(pattern)));
            return Err(format!("request {n}: the body does not match the expected pattern"));
        }
    }
    let differing = step
        .headers
        .iter()
        .filter(|(name, value)| !response.headers.iter().any(|(k, v)| k.eq_ignore_ascii_case(name) && v == *value))
        .count();
    if differing > 0 {
        detail.push_str(&format!("expected headers: {}\n", clip(&format!("{:?}", step.headers))));
        return Err(format!("request {n}: {differing} of {} expected headers differ", step.headers.len()));
    }
    for (name, pointer) in &step.capture {
        let value = json.as_ref().and_then(|j| j.pointer(pointer)).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        match value {
            Some(value) => {
                captures.insert(name.clone(), value);
            }
            None => return Err(format!("request {n}: a capture found nothing in the response")),
        }
    }
    Ok(())
}

fn twin_step(
    n: usize,
    step: &Step,
    spec: &TwinCalls,
    captures: &mut BTreeMap<String, String>,
    detail: &mut String,
) -> Result<(), String> {
    let calls = service::twin_calls(&spec.twin).map_err(|e| match e.as_str() {
        "no such twin" => format!("request {n}: the service has no such twin (check the scenario and `twins`)"),
        "no service" => format!("request {n}: {}", send_failure("no service")),
        _ => format!("request {n}: the twin's calls could not be read"),
    })?;
    let matching: Vec<_> = calls
        .iter()
        .filter(|c| spec.method.as_ref().is_none_or(|m| c.method.eq_ignore_ascii_case(m)))
        .filter(|c| spec.path.as_ref().is_none_or(|p| &c.path == p))
        .collect();
    detail.push_str(&format!("\n[{n}] calls to twin `{}`: {} ({} matching)\n", spec.twin, calls.len(), matching.len()));
    for call in &matching {
        detail.push_str(&format!(
            "  {} {}\n  {}\n",
            call.method,
            clip(&call.path),
            clip(&String::from_utf8_lossy(&call.body))
        ));
    }
    if let Some(count) = spec.count {
        if matching.len() != count as usize {
            return Err(format!("request {n}: expected {count} calls to the twin, got another number"));
        }
    }
    for (name, pattern) in &step.capture {
        let body = matching.last().map(|c| String::from_utf8_lossy(&c.body).into_owned()).unwrap_or_default();
        let value = Regex::new(pattern)
            .ok()
            .and_then(|r| r.captures(&body))
            .and_then(|c| c.get(1))
            .map(|m| m.as_str().to_string());
        match value {
            Some(value) => {
                captures.insert(name.clone(), value);
            }
            None => return Err(format!("request {n}: a capture found nothing in the twin's calls")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_and_refuses_contradictions() {
        let ok = parse(
            "[[requests]]\nmethod = 'POST'\npath = '/a'\njson = { e = 'x' }\nstatus = 200\njson_subset = { ok = true }\ncapture = { t = '/t' }\n\
             [[requests]]\ntwin_calls = { twin = 'mail', count = 1 }\ncapture = { token = 'token=(\\w+)' }\n",
        )
        .unwrap();
        assert_eq!(ok.requests.len(), 2);
        assert!(parse("requests = []").unwrap_err().contains("empty"));
        assert!(parse("[[requests]]\npath = '/a'\ntwin_calls = { twin = 'm' }\n").is_err());
        assert!(parse("[[requests]]\nstatus = 200\n").unwrap_err().contains("needs `path`"));
        assert!(parse("[[requests]]\npath = '/a'\njson = 1\nbody = 'x'\n").is_err());
        assert!(parse("[[requests]]\ntwin_calls = { twin = 'm' }\ncapture = { t = 'x' }\n")
            .unwrap_err()
            .contains("group"));
        assert!(parse("[[requests]]\npath = '/a'\nstatuss = 200\n").is_err());
    }

    #[test]
    fn json_subset_is_recursive_and_captures_fill_strings() {
        let got: serde_json::Value = serde_json::from_str(r#"{"ok":true,"user":{"id":1,"name":"a"},"x":[1]}"#).unwrap();
        assert!(json_contains(&serde_json::json!({"ok": true, "user": {"id": 1}}), &got));
        assert!(!json_contains(&serde_json::json!({"user": {"id": 2}}), &got));
        assert!(!json_contains(&serde_json::json!({"missing": 1}), &got));
        let captures = BTreeMap::from([("token".to_string(), "abc".to_string())]);
        assert_eq!(fill(1, "/r?t={token}", &captures).unwrap(), "/r?t=abc");
        assert!(fill(1, "/r?t={other}", &captures).is_err());
        assert_eq!(fill(1, "/plain", &captures).unwrap(), "/plain");
    }

    #[test]
    fn summaries_name_steps_never_values() {
        for summary in [send_failure("not reachable"), send_failure("something the host never says")] {
            assert!(!summary.contains("something"));
        }
    }
}
