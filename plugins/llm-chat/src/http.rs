//! A minimal synchronous HTTP client over `wasi:http/outgoing-handler`.
//!
//! [`Url`] splits an `http(s)://host[:port]/path` address (host-testable);
//! [`WasiHttp`] (wasm32 only) sends one POST and reads the whole response:
//! build the request, start it with `outgoing-handler.handle`, stream the
//! body through the outgoing-body stream, finish it, block on the response
//! future, then read the incoming body to its end (at most 8 MiB). The host
//! decides whether the request may leave at all (its allowlist) and may add
//! the `Authorization` header itself.

/// What came back from one POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The whole body.
    pub body: Vec<u8>,
}

/// Sends one HTTP POST and returns the response: [`WasiHttp`] in the
/// component, a scripted transport in the agent's host-side tests.
pub trait Transport {
    /// POSTs `body` to the absolute `url` with `headers`.
    ///
    /// # Errors
    /// When no response was received (refused, denied, timed out).
    fn post(&mut self, url: &str, headers: &[(String, String)], body: &[u8]) -> Result<HttpResponse, String>;
}

/// The parts of an absolute `http://` or `https://` URL that a wasi:http
/// request takes separately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `https` rather than `http`.
    pub https: bool,
    /// `host` or `host:port`.
    pub authority: String,
    /// The path and query, starting with `/`.
    pub path_with_query: String,
}

impl Url {
    /// Parses `url`.
    ///
    /// # Errors
    /// Another scheme, no host, or user info in the URL.
    pub fn parse(url: &str) -> Result<Url, String> {
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("`{url}` is not an http:// or https:// URL"));
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("`{url}` needs a host (and no user info)"));
        }
        let path_with_query =
            if path.starts_with('?') || path.is_empty() { format!("/{path}") } else { path.to_string() };
        Ok(Url { https, authority: authority.to_string(), path_with_query })
    }
}

/// `{base_url}/chat/completions`, keeping a query string of `base_url` at
/// the end (`https://h/v1?api-version=1` gives
/// `https://h/v1/chat/completions?api-version=1`).
pub fn completions_url(base_url: &str) -> String {
    let (base, query) = match base_url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (base_url, String::new()),
    };
    format!("{}/chat/completions{query}", base.trim_end_matches('/'))
}

#[cfg(target_arch = "wasm32")]
pub use client::WasiHttp;

#[cfg(target_arch = "wasm32")]
mod client {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme};
    use wasi::io::streams::StreamError;

    use super::Url;
    use super::{HttpResponse, Transport};

    /// Largest response body read.
    const MAX_RESPONSE: usize = 8 << 20;
    /// Largest write the streams accept at once.
    const CHUNK: usize = 4096;

    /// The wasi:http transport.
    pub struct WasiHttp;

    impl Transport for WasiHttp {
        fn post(&mut self, url: &str, headers: &[(String, String)], body: &[u8]) -> Result<HttpResponse, String> {
            let url = Url::parse(url)?;
            let mut fields: Vec<(String, Vec<u8>)> =
                headers.iter().map(|(name, value)| (name.to_ascii_lowercase(), value.as_bytes().to_vec())).collect();
            fields.push(("content-length".to_string(), body.len().to_string().into_bytes()));
            let fields = Fields::from_list(&fields).map_err(|e| format!("invalid request header: {e:?}"))?;

            let request = OutgoingRequest::new(fields);
            let scheme = if url.https { Scheme::Https } else { Scheme::Http };
            request.set_method(&Method::Post).map_err(|()| "the host refused the method")?;
            request.set_scheme(Some(&scheme)).map_err(|()| "the host refused the scheme")?;
            request.set_authority(Some(&url.authority)).map_err(|()| "the host refused the authority")?;
            request.set_path_with_query(Some(&url.path_with_query)).map_err(|()| "the host refused the path")?;
            let outgoing = request.body().map_err(|()| "the request body is unavailable")?;

            // Start the request first so that the body streams to the peer
            // as it is written.
            let future = outgoing_handler::handle(request, None).map_err(describe)?;
            match write_body(&outgoing, body) {
                Ok(()) => OutgoingBody::finish(outgoing, None).map_err(describe)?,
                Err(write_error) => {
                    // A request that failed (denied, refused) closes the
                    // body stream: the response future says why.
                    drop(outgoing);
                    future.subscribe().block();
                    return Err(match future.get() {
                        Some(Ok(Err(code))) => describe(code),
                        _ => write_error,
                    });
                }
            }

            future.subscribe().block();
            let response = match future.get() {
                Some(Ok(Ok(response))) => response,
                Some(Ok(Err(code))) => return Err(describe(code)),
                Some(Err(())) => return Err("the response was already taken".to_string()),
                None => return Err("the response is not ready after waiting for it".to_string()),
            };
            let status = response.status();
            let incoming = response.consume().map_err(|()| "the response body is unavailable")?;
            let body = read_all(&incoming)?;
            drop(IncomingBody::finish(incoming));
            Ok(HttpResponse { status, body })
        }
    }

    /// Streams `body` into the request; the stream is closed on return,
    /// before the body is finished.
    fn write_body(outgoing: &OutgoingBody, body: &[u8]) -> Result<(), String> {
        let stream = outgoing.write().map_err(|()| "the request body stream is unavailable")?;
        for chunk in body.chunks(CHUNK) {
            stream.blocking_write_and_flush(chunk).map_err(|e| stream_error("sending the request", e))?;
        }
        Ok(())
    }

    fn read_all(incoming: &IncomingBody) -> Result<Vec<u8>, String> {
        let stream = incoming.stream().map_err(|()| "the response body stream is unavailable")?;
        let mut body = Vec::new();
        loop {
            match stream.blocking_read(65536) {
                Ok(bytes) => {
                    body.extend_from_slice(&bytes);
                    if body.len() > MAX_RESPONSE {
                        return Err(format!("the response is larger than {} MiB", MAX_RESPONSE >> 20));
                    }
                }
                Err(StreamError::Closed) => return Ok(body),
                Err(e) => return Err(stream_error("reading the response", e)),
            }
        }
    }

    fn stream_error(doing: &str, error: StreamError) -> String {
        match error {
            StreamError::Closed => format!("{doing}: the connection closed"),
            StreamError::LastOperationFailed(e) => format!("{doing}: {}", e.to_debug_string()),
        }
    }

    /// A wasi:http error code as a message, with the likely fix for the
    /// ones a pipeline causes.
    fn describe(code: ErrorCode) -> String {
        match code {
            ErrorCode::HttpRequestDenied => {
                "the host denied the request: add the endpoint to the step's `allow_hosts`".to_string()
            }
            ErrorCode::DnsError(e) => format!("DNS lookup failed: {e:?}"),
            ErrorCode::ConnectionRefused => "the connection was refused".to_string(),
            ErrorCode::ConnectionTimeout => "connecting timed out".to_string(),
            other => format!("{other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        let url = Url::parse("http://127.0.0.1:8080/v1/chat/completions").unwrap();
        assert_eq!(
            url,
            Url { https: false, authority: "127.0.0.1:8080".into(), path_with_query: "/v1/chat/completions".into() }
        );
        let url = Url::parse("https://api.openai.com?x=1").unwrap();
        assert_eq!(
            (url.https, url.authority.as_str(), url.path_with_query.as_str()),
            (true, "api.openai.com", "/?x=1")
        );
        assert_eq!(Url::parse("https://h").unwrap().path_with_query, "/");
        assert!(Url::parse("ftp://h/").is_err());
        assert!(Url::parse("https:///v1").is_err());
        assert!(Url::parse("https://user:pw@h/v1").is_err());
    }

    #[test]
    fn completions_url_appends_the_endpoint() {
        assert_eq!(completions_url("http://127.0.0.1:8080/v1"), "http://127.0.0.1:8080/v1/chat/completions");
        assert_eq!(completions_url("https://api.openai.com/v1/"), "https://api.openai.com/v1/chat/completions");
        assert_eq!(
            completions_url("https://h/openai?api-version=2"),
            "https://h/openai/chat/completions?api-version=2"
        );
    }
}
