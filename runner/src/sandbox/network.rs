//! The network capability: outgoing `wasi:http` for steps with `allow_hosts`.
//!
//! Plugins importing `wasi:http` are linked with it (the plan has already
//! refused them for steps without `allow_hosts`); every request then goes
//! through [`Hooks::send_request`], which, before anything leaves the host:
//!
//! 1. matches scheme, host and port against the step's rules, else refuses
//!    with `HTTP-request-denied` and records the refusal;
//! 2. resolves the host and refuses loopback, private, link-local, shared,
//!    multicast and unspecified addresses unless the step sets
//!    `allow_private` (a public name that resolves to `127.0.0.1` is a
//!    rebinding attack, not a local test server);
//! 3. connects to the address it checked (never resolving again), with TLS
//!    for `https` (webpki roots), and adds the step's secret headers for
//!    that origin, replacing any the guest set.
//!
//! A step with `max_requests` shares one [`RequestBudget`] between all its
//! invocations (an evaluator's every scenario run): a request is counted
//! before step 1, and the one past the budget is refused there, so the
//! budget is never overshot, and the step is marked as having run out.
//!
//! Timeouts: [`CONNECT_TIMEOUT`] and [`FIRST_BYTE_TIMEOUT`] unless the
//! guest asks for less; responses are cut at [`MAX_RESPONSE_BYTES`]. Raw
//! sockets stay off (`wasi:sockets` denies every address).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpHooks};

use crate::plan::grant::HttpGrant;
use crate::secrets::Secrets;

/// How long a connection (TCP and TLS) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the response headers may take (model APIs think before they answer).
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(300);
/// The largest response body a guest receives.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// The `wasi:http` state of one Store.
pub struct HttpState {
    /// wasmtime-wasi-http's context.
    pub ctx: WasiHttpCtx,
    /// Our policy.
    pub hooks: Hooks,
}

/// One request the host answers itself instead of sending it out: a
/// component service's call to one of its twins.
#[derive(Debug, Clone)]
pub struct LocalCall {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path and query, starting with `/`.
    pub path: String,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl LocalCall {
    /// The call an HTTP request's `parts` and whole `body` make.
    pub fn from_parts(parts: &http::request::Parts, body: Vec<u8>) -> LocalCall {
        LocalCall {
            method: parts.method.as_str().to_string(),
            path: parts.uri.path_and_query().map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect(),
            body,
        }
    }
}

/// A response with `status`, `headers` (those that are not valid HTTP
/// are left out) and `body`.
pub fn local_response<B>(status: u16, headers: Vec<(String, String)>, body: B) -> http::Response<B> {
    let mut response = http::Response::new(body);
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(&value))
        {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// The answer to a [`LocalCall`]: status, headers and body.
pub type LocalAnswer = (u16, Vec<(String, String)>, Vec<u8>);

/// Something that answers [`LocalCall`]s for one origin: a twin, through
/// the same recording and faults as a program service's calls to it.
pub trait LocalRoute: Send + Sync {
    /// Answers `call`.
    fn call(&self, call: LocalCall) -> std::pin::Pin<Box<dyn Future<Output = LocalAnswer> + Send + '_>>;
}

/// Origins (`host` or `host:port`, plain `http`) the host answers itself,
/// each with what answers it.
pub type LocalRoutes = Vec<(String, Arc<dyn LocalRoute>)>;

/// The requests one run of a step may still make (`max_requests`), shared
/// by all its invocations.
#[derive(Debug)]
pub struct RequestBudget {
    limit: u32,
    used: AtomicU32,
    exhausted: AtomicBool,
}

impl RequestBudget {
    /// A budget of `limit` requests.
    pub fn new(limit: u32) -> RequestBudget {
        RequestBudget { limit, used: AtomicU32::new(0), exhausted: AtomicBool::new(false) }
    }

    /// The budget of a step run with `grant`, if it has one.
    pub fn of(grant: &crate::plan::Grant) -> Option<Arc<RequestBudget>> {
        grant.http().and_then(|h| h.max_requests).map(|limit| Arc::new(RequestBudget::new(limit)))
    }

    /// Counts one request; false (and the budget marked as run out) when
    /// none is left.
    pub fn take(&self) -> bool {
        let taken =
            self.used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| (used < self.limit).then_some(used + 1));
        if taken.is_err() {
            self.exhausted.store(true, Ordering::SeqCst);
        }
        taken.is_ok()
    }

    /// Whether a request was refused for want of budget.
    pub fn exhausted(&self) -> bool {
        self.exhausted.load(Ordering::SeqCst)
    }

    /// The budget.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Requests made so far.
    pub fn used(&self) -> u32 {
        self.used.load(Ordering::SeqCst)
    }
}

impl HttpState {
    /// State for a step with `grant` (none: every request is refused),
    /// counting its requests against `budget` when it has one.
    pub fn new(
        grant: Option<&HttpGrant>,
        secrets: &Secrets,
        denied: Arc<Mutex<Vec<String>>>,
        budget: Option<Arc<RequestBudget>>,
        routes: LocalRoutes,
    ) -> HttpState {
        let headers = grant
            .map(|g| {
                g.headers
                    .iter()
                    .filter_map(|h| {
                        let value = format!("{}{}", h.prefix, secrets.value(&h.secret)?);
                        let mut value = http::HeaderValue::from_str(&value).ok()?;
                        value.set_sensitive(true);
                        Some((h.host.clone(), http::HeaderName::from_bytes(h.header.as_bytes()).ok()?, value))
                    })
                    .collect()
            })
            .unwrap_or_default();
        HttpState { ctx: WasiHttpCtx::new(), hooks: Hooks { grant: grant.cloned(), headers, denied, budget, routes } }
    }
}

/// The policy applied to each outgoing request.
pub struct Hooks {
    grant: Option<HttpGrant>,
    /// (allow_hosts entry as written, header, value) to add.
    headers: Vec<(String, http::HeaderName, http::HeaderValue)>,
    /// Refusals, for the step's report and the journal.
    denied: Arc<Mutex<Vec<String>>>,
    /// The step run's `max_requests`, if it has one.
    budget: Option<Arc<RequestBudget>>,
    /// Origins answered in-process (a component service's twins).
    routes: LocalRoutes,
}

type SendResult =
    wasmtime_wasi_http::Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), Error>> + Send>)>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_errors: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let uri = request.uri().clone();
        let scheme = uri.scheme_str().unwrap_or("https").to_string();
        let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
        let port = uri.port_u16().unwrap_or(if scheme == "http" { 80 } else { 443 });
        let origin = format!("{scheme}://{host}:{port}");
        let denied = Arc::clone(&self.denied);
        let deny = move |why: String| -> Box<dyn Future<Output = SendResult> + Send> {
            if let Ok(mut list) = denied.lock() {
                list.push(why);
            }
            Box::new(async { Err(Error::HttpRequestDenied) })
        };
        if scheme == "http" {
            let authority = uri.authority().map(|a| a.as_str().to_string()).unwrap_or_default();
            if let Some((_, route)) = self.routes.iter().find(|(name, _)| *name == authority) {
                return Box::new(answer_locally(Arc::clone(route), request));
            }
        }
        let Some(grant) = &self.grant else {
            return deny(format!("{origin}: the step has no `allow_hosts`"));
        };
        let Some(rule) = grant.allow.iter().find(|r| r.matches(&scheme, &host, port)) else {
            return deny(format!("{origin}: not in `allow_hosts`"));
        };
        if let Some(budget) = self.budget.as_ref().filter(|b| !b.take()) {
            return deny(format!("{origin}: the step's `max_requests = {}` is used up", budget.limit()));
        }
        for (for_host, name, value) in &self.headers {
            if *for_host == rule.written {
                request.headers_mut().insert(name.clone(), value.clone());
            }
        }
        let allow_private = grant.allow_private;
        let denied = Arc::clone(&self.denied);
        let connect_timeout =
            options.and_then(|o| o.connect_timeout).map_or(CONNECT_TIMEOUT, |t| t.min(CONNECT_TIMEOUT));
        let first_byte =
            options.and_then(|o| o.first_byte_timeout).map_or(FIRST_BYTE_TIMEOUT, |t| t.min(FIRST_BYTE_TIMEOUT));
        Box::new(async move {
            let address = resolve(&host, port, allow_private).await.inspect_err(|why| {
                if let Ok(mut list) = denied.lock() {
                    list.push(format!("{origin}: {why}"));
                }
            });
            let Ok(address) = address else { return Err(Error::HttpRequestDenied) };
            send(request, address, &scheme, &host, connect_timeout, first_byte).await
        })
    }
}

/// Hands `request` to `route` whole, and its answer back as a response.
async fn answer_locally(route: Arc<dyn LocalRoute>, request: http::Request<WasiBody>) -> SendResult {
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|_| Error::HttpRequestBodySize(Some(MAX_RESPONSE_BYTES as u64)))?
        .to_bytes()
        .to_vec();
    let (status, headers, body) = route.call(LocalCall::from_parts(&parts, body)).await;
    let body = http_body_util::Full::new(hyper::body::Bytes::from(body))
        .map_err(|never: std::convert::Infallible| match never {})
        .boxed_unsync();
    Ok((local_response(status, headers, body), Box::new(async { Ok(()) })))
}

/// The first address `host` resolves to, refused when any of them is not
/// public and `allow_private` is off.
async fn resolve(host: &str, port: u16, allow_private: bool) -> Result<SocketAddr, String> {
    let addresses: Vec<SocketAddr> =
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(found)) => found.collect(),
            Ok(Err(e)) => return Err(format!("cannot resolve `{host}`: {e}")),
            Err(_) => return Err(format!("resolving `{host}` timed out")),
        };
    if !allow_private {
        if let Some(private) = addresses.iter().find(|a| !is_public(a.ip())) {
            return Err(format!(
                "`{host}` resolves to {}, a loopback, private or link-local address (set `allow_private = true` for a local server)",
                private.ip()
            ));
        }
    }
    addresses.first().copied().ok_or_else(|| format!("`{host}` resolves to no address"))
}

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || first == 0x2001 && v6.segments()[1] == 0xdb8) // documentation
        }
    }
}

/// Sends `request` to `address` (HTTP/1.1, TLS for https with `host` as
/// the server name) and returns the response with a capped body.
async fn send(
    mut request: http::Request<WasiBody>,
    address: SocketAddr,
    scheme: &str,
    host: &str,
    connect_timeout: Duration,
    first_byte: Duration,
) -> SendResult {
    let tcp = match tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(address)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Err(Error::ConnectionRefused),
        Ok(Err(e)) => return Err(Error::Connect(e)),
        Err(_) => return Err(Error::ConnectionTimeout),
    };
    // Only the path goes on the request line; the Host header names the origin.
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    *request.uri_mut() = path.parse().map_err(|_| Error::HttpRequestUriInvalid)?;
    let response = if scheme == "https" {
        let name =
            rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|_| Error::HttpRequestUriInvalid)?;
        let tls = crate::tls::connector().map_err(|e| Error::InternalError(Some(e)))?;
        let stream = match tokio::time::timeout(connect_timeout, tls.connect(name, tcp)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(_)) => return Err(Error::TlsProtocolError),
            Err(_) => return Err(Error::ConnectionTimeout),
        };
        exchange(TokioIo::new(stream), request, first_byte).await?
    } else {
        exchange(TokioIo::new(tcp), request, first_byte).await?
    };
    let response = response.map(|body| {
        Limited::new(body, MAX_RESPONSE_BYTES)
            .map_err(|e| match e.downcast::<hyper::Error>() {
                Ok(hyper) => Error::from(*hyper),
                Err(_) => Error::HttpResponseBodySize(Some(MAX_RESPONSE_BYTES as u64)),
            })
            .boxed_unsync()
    });
    Ok((response, Box::new(async { Ok(()) })))
}

/// One HTTP/1.1 request on `io`; the connection is driven by its own task.
async fn exchange<I>(
    io: TokioIo<I>,
    request: http::Request<WasiBody>,
    first_byte: Duration,
) -> Result<http::Response<hyper::body::Incoming>, Error>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.map_err(Error::from)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("outgoing connection ended: {e}");
        }
    });
    match tokio::time::timeout(first_byte, sender.send_request(request)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(Error::from(e)),
        Err(_) => Err(Error::HttpResponseTimeout),
    }
}

#[cfg(test)]
mod tests {
    use super::is_public;

    #[test]
    fn only_public_unicast_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["1.1.1.1", "93.184.216.34", "2606:4700:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
