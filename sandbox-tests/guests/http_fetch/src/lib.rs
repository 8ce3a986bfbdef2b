//! Sends one HTTP request with `wasi:http` and reports what came back: the
//! probe for the network capability (allowlist, private addresses, injected
//! secret headers, response caps). Config: `url`, optional `method`
//! (default GET), `body`, `header` (a `name: value` the guest sets itself),
//! and `print_env` (an environment variable whose value it prints, to test
//! that granted secrets are scrubbed from reports).
//! A response is an `info` finding `status <code>: <first 300 bytes of the
//! body>` plus one `body-bytes` finding with the body's length; a refusal or
//! transport error is the check's `err` with wasi:http's error code.

wit_bindgen::generate!({ path: "../../../wit", world: "check" });

use cleanroom::plugin::types::Severity;
use cleanroom_plugin_sdk::parse_config;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    print_env: Option<String>,
}

struct HttpFetch;

fn info(rule: &str, message: String) -> Finding {
    Finding { rule: rule.into(), severity: Severity::Info, message, path: None, line: None, column: None }
}

impl Guest for HttpFetch {
    fn check(invocation: Invocation) -> Result<Vec<Finding>, String> {
        let config: Config = parse_config(&invocation.config)?;
        if let Some(name) = &config.print_env {
            println!("{name}={}", std::env::var(name).unwrap_or_else(|_| "<unset>".into()));
        }
        let (scheme, rest) = config.url.split_once("://").ok_or("url needs a scheme")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let headers = Fields::new();
        if let Some(header) = &config.header {
            let (name, value) = header.split_once(':').ok_or("header must be `name: value`")?;
            headers.append(name.trim(), value.trim().as_bytes()).map_err(|e| format!("header refused: {e:?}"))?;
        }
        let request = OutgoingRequest::new(headers);
        let method = match config.method.as_deref().unwrap_or("GET") {
            "POST" => Method::Post,
            _ => Method::Get,
        };
        request.set_method(&method).map_err(|()| "bad method")?;
        request.set_scheme(Some(&if scheme == "http" { Scheme::Http } else { Scheme::Https })).map_err(|()| "bad scheme")?;
        request.set_authority(Some(authority)).map_err(|()| "bad authority")?;
        request.set_path_with_query(Some(path)).map_err(|()| "bad path")?;
        let body = request.body().map_err(|()| "no body")?;
        if let Some(text) = &config.body {
            let stream = body.write().map_err(|()| "no body stream")?;
            stream.blocking_write_and_flush(text.as_bytes()).map_err(|e| format!("write failed: {e:?}"))?;
            drop(stream);
        }
        OutgoingBody::finish(body, None).map_err(|e| format!("finish failed: {e:?}"))?;
        let pending = outgoing_handler::handle(request, None).map_err(|e| format!("request refused: {e:?}"))?;
        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(e))) => return Err(format!("request failed: {e:?}")),
            _ => return Err("no response".into()),
        };
        let status = response.status();
        let incoming = response.consume().map_err(|()| "no response body")?;
        let stream = incoming.stream().map_err(|()| "no response stream")?;
        let mut bytes = Vec::new();
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(wasip2::io::streams::StreamError::Closed) => break,
                Err(e) => return Err(format!("reading the body failed after {} bytes: {e:?}", bytes.len())),
            }
        }
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
        Ok(vec![info("status", format!("status {status}: {text}")), info("body-bytes", bytes.len().to_string())])
    }
}

export!(HttpFetch);
