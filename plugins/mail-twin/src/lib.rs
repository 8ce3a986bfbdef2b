//! `mail-twin`: the first-party digital twin of a mail-sending API, as a
//! `wasi:http/proxy` component that Cleanroom serves in-process
//! (`[twin.mail]` with `component = "..."`).
//!
//! - `POST /send` with a JSON object holding string fields `to`, `subject`
//!   and `body` answers `202 {"accepted": true}`; anything else sent there
//!   answers `400 {"error": "bad_request"}`.
//! - `GET /health` answers `200 ok`; any other path `404`.
//!
//! It keeps nothing: `wasi:http` gives every request a fresh instance. The
//! runner records every call the service makes to it (evaluators read them
//! with `service.twin-calls`), so "no e-mail is sent" is an assertion on
//! those records, and `faults = { error_rate = 1.0 }` on the twin tells it
//! to fail (the runner answers 503 in its place). The native twin beside
//! the password-reset demo (`pipelines/password-reset/twins/mail.py`) is the
//! same API with numbered ids and a `MAIL_FAIL=1` switch.

use std::io::Write as _;

use wasi::http::types::{Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct MailTwin;

/// Largest request body read.
const MAX_BODY: usize = 1 << 20;

impl wasi::exports::http::incoming_handler::Guest for MailTwin {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let (status, body) = match (request.method(), path.as_str()) {
            (Method::Get, "/health") => (200, "ok".to_string()),
            (Method::Post, "/send") => match read_body(request).and_then(|b| serde_json::from_slice(&b).ok()) {
                Some(serde_json::Value::Object(mail))
                    if ["to", "subject", "body"].iter().all(|k| mail.get(*k).is_some_and(|v| v.is_string())) =>
                {
                    (202, r#"{"accepted": true}"#.to_string())
                }
                _ => (400, r#"{"error": "bad_request"}"#.to_string()),
            },
            _ => (404, r#"{"error": "not_found"}"#.to_string()),
        };
        respond(out, status, &body);
    }
}

/// The whole request body, or `None` past [`MAX_BODY`] or on a read error.
fn read_body(request: IncomingRequest) -> Option<Vec<u8>> {
    let body = request.consume().ok()?;
    let stream = body.stream().ok()?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 << 10) {
            Ok(chunk) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > MAX_BODY {
                    return None;
                }
            }
            Err(wasi::io::streams::StreamError::Closed) => return Some(bytes),
            Err(_) => return None,
        }
    }
}

fn respond(out: ResponseOutparam, status: u16, body: &str) {
    let headers = Fields::new();
    let content_type = if body.starts_with('{') { "application/json" } else { "text/plain" };
    let _ = headers.append("content-type", content_type.as_bytes());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(mut stream) = outgoing.write() {
        let _ = stream.write_all(body.as_bytes());
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

wasi::http::proxy::export!(MailTwin);
