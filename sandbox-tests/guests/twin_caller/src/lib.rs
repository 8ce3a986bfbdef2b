//! A component service that calls its twin: on any request it POSTs a mail
//! to `$MAIL_URL/send` and tries `http://127.0.0.1:9/x` (an outside host),
//! and answers `twin: STATUS BODY; outside: reached|refused (WHY)`.

use std::io::Write as _;

use llm_chat::http::Transport;
use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct TwinCaller;

impl wasi::exports::http::incoming_handler::Guest for TwinCaller {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let mut http = llm_chat::http::WasiHttp;
        let url = std::env::var("MAIL_URL").unwrap_or_default();
        let mail = br#"{"to": "a@test.com", "subject": "hi", "body": "token=abc"}"#;
        let headers = [("content-type".to_string(), "application/json".to_string())];
        let twin = match http.post(&format!("{url}/send"), &headers, mail) {
            Ok(answer) => format!("{} {}", answer.status, String::from_utf8_lossy(&answer.body)),
            Err(e) => format!("failed ({e})"),
        };
        let outside = match http.post("http://127.0.0.1:9/x", &[], b"") {
            Ok(answer) => format!("reached ({})", answer.status),
            Err(e) => format!("refused ({e})"),
        };
        respond(out, &format!("twin: {twin}; outside: {outside}; url: {url}"));
    }
}

fn respond(out: ResponseOutparam, body: &str) {
    let response = OutgoingResponse::new(Fields::new());
    let _ = response.set_status_code(200);
    let Ok(outgoing) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(mut stream) = outgoing.write() {
        let _ = stream.write_all(body.as_bytes());
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

wasi::http::proxy::export!(TwinCaller);
