//! Tries to send an HTTP request with `wasi:http`: it imports
//! `wasi:http/outgoing-handler`, which only steps with `allow_hosts` are
//! granted, so on a step without it, it must be refused when the pipeline
//! is loaded, before it can run.

wit_bindgen::generate!({ path: "../../../wit", world: "check" });

use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, OutgoingRequest};

struct HttpProbe;

impl Guest for HttpProbe {
    fn check(_: Invocation) -> Result<Vec<Finding>, String> {
        let request = OutgoingRequest::new(Fields::new());
        match outgoing_handler::handle(request, None) {
            Ok(_) => Err("an HTTP request was sent".into()),
            Err(e) => Err(format!("the request was refused: {e:?}")),
        }
    }
}

export!(HttpProbe);
