//! A small client of the OCI distribution API: what pulling and pushing one
//! component needs (manifests by tag or digest, blobs, monolithic uploads),
//! over HTTP/1.1 with hyper, TLS by [`crate::tls`], plain HTTP only to a
//! loopback registry.
//!
//! Authentication follows the registry's `WWW-Authenticate` challenge:
//! `Basic` (the distribution registry with htpasswd) sends the credentials
//! on the retried request; `Bearer` fetches a token from the realm (with the
//! credentials, if any) and sends the token. Credentials never go over plain
//! HTTP to a host that is not loopback, nor follow a redirect to another
//! host (blob storage such as S3 gets no `Authorization`). Every error text
//! is scrubbed of the credentials before it leaves this module.
//!
//! Nothing here trusts what it reads: the caller checks every manifest and
//! blob against its digest ([`super::fetch`]); blobs stream to a file with
//! a byte cap and the hash computed on the way.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use sha2::{Digest, Sha256};
use std::io::Write;
use wasmtime_wasi_http::io::TokioIo;

use super::auth::Credentials;
use super::reference::Reference;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request that sends a body (an upload) may take until the
/// registry's answer begins, the upload included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a registry may stay silent: before its answer to a request
/// without a body begins, and between two pieces of any answer. A registry
/// that stops sending (broken, or hostile and out to hold the run) is given
/// up on after this, however large the blob; one that keeps sending is not
/// cut off, however slow the link.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects followed for one request.
const MAX_REDIRECTS: usize = 5;

/// Accept header for manifests: only the OCI image manifest is a plugin.
const ACCEPT_MANIFEST: &str = super::artifact::MANIFEST_MEDIA_TYPE;

/// One repository of one registry, with its credentials and the
/// authorization the registry granted.
pub struct Registry {
    /// `http://host:port` or `https://host[:port]`.
    base: String,
    /// `host[:port]`, to tell whether a redirect leaves the registry.
    registry: String,
    repository: String,
    credentials: Option<Credentials>,
    /// The `Authorization` header value that worked.
    authorization: Option<String>,
    /// `pull` or `pull,push`: the scope asked of a token service.
    actions: &'static str,
}

/// A response whose body is still to be read.
struct Response {
    status: u16,
    headers: http::HeaderMap,
    body: hyper::body::Incoming,
}

impl Registry {
    /// A client for `reference`'s repository, to pull (`push = false`) or push.
    pub fn new(reference: &Reference, credentials: Option<Credentials>, push: bool) -> Registry {
        Registry {
            base: reference.base_url(),
            registry: reference.registry.clone(),
            repository: reference.repository.clone(),
            credentials,
            authorization: None,
            actions: if push { "pull,push" } else { "pull" },
        }
    }

    /// The manifest that `tag_or_digest` names, as bytes (capped), and its digest.
    ///
    /// # Errors
    /// Why it cannot be had, scrubbed.
    pub async fn manifest(&mut self, tag_or_digest: &str) -> Result<Vec<u8>, String> {
        let url = format!("{}/v2/{}/manifests/{tag_or_digest}", self.base, self.repository);
        let response = self.send(http::Method::GET, &url, &[("accept", ACCEPT_MANIFEST)], Bytes::new()).await?;
        let response = self.expect(response, &[200], &format!("the manifest `{tag_or_digest}`")).await?;
        read_capped(response.body, super::artifact::MAX_METADATA).await.map_err(|e| self.scrub(e))
    }

    /// A small blob (a config), capped at [`super::artifact::MAX_METADATA`].
    ///
    /// # Errors
    /// Why it cannot be had, scrubbed.
    pub async fn small_blob(&mut self, digest: &str) -> Result<Vec<u8>, String> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repository);
        let response = self.send(http::Method::GET, &url, &[], Bytes::new()).await?;
        let response = self.expect(response, &[200], &format!("blob {digest}")).await?;
        read_capped(response.body, super::artifact::MAX_METADATA).await.map_err(|e| self.scrub(e))
    }

    /// Streams blob `digest` into `file`, reading at most `size` bytes,
    /// and returns the sha256 (`sha256:<hex>`) of what arrived. The caller
    /// compares it with `digest`.
    ///
    /// # Errors
    /// Why it cannot be had (more bytes than `size` is one), scrubbed.
    pub async fn blob_to_file(&mut self, digest: &str, size: u64, file: &std::path::Path) -> Result<String, String> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repository);
        let response = self.send(http::Method::GET, &url, &[], Bytes::new()).await?;
        let response = self.expect(response, &[200], &format!("blob {digest}")).await?;
        // A plain file write: this client runs on a runtime of its own.
        let mut out = fs_err::File::create(file).map_err(|e| format!("cannot write `{}`: {e}", file.display()))?;
        let mut hasher = Sha256::new();
        let mut got = 0u64;
        let mut body = response.body;
        while let Some(data) =
            next_data(&mut body).await.map_err(|e| self.scrub(format!("while sending blob {digest}, {e}")))?
        {
            got += data.len() as u64;
            if got > size {
                return Err(format!("the registry sent more than the {size} bytes blob {digest} has"));
            }
            hasher.update(&data);
            out.write_all(&data).map_err(|e| format!("cannot write `{}`: {e}", file.display()))?;
        }
        out.sync_all().map_err(|e| format!("cannot write `{}`: {e}", file.display()))?;
        Ok(format!("sha256:{}", crate::plugin::hex(&hasher.finalize())))
    }

    /// Whether the registry has blob `digest` (so a push can skip it).
    ///
    /// # Errors
    /// Why the registry cannot be asked, scrubbed.
    pub async fn has_blob(&mut self, digest: &str) -> Result<bool, String> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repository);
        let response = self.send(http::Method::HEAD, &url, &[], Bytes::new()).await?;
        match response.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.expect(response, &[200], &format!("blob {digest}")).await.err().unwrap_or_default()),
        }
    }

    /// Uploads `bytes` as blob `digest` in one request (POST then PUT).
    ///
    /// # Errors
    /// Why the registry refused, scrubbed.
    pub async fn put_blob(&mut self, digest: &str, bytes: Bytes) -> Result<(), String> {
        let url = format!("{}/v2/{}/blobs/uploads/", self.base, self.repository);
        let response = self.send(http::Method::POST, &url, &[], Bytes::new()).await?;
        let response = self.expect(response, &[202], "an upload").await?;
        let location = header(&response.headers, "location")
            .ok_or("the registry started an upload but gave no `Location` to send it to")?;
        let mut url = self.absolute(&location)?;
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str("digest=");
        url.push_str(&digest.replace(':', "%3A"));
        let headers = [("content-type", "application/octet-stream")];
        let response = self.send(http::Method::PUT, &url, &headers, bytes).await?;
        self.expect(response, &[201], &format!("blob {digest}")).await.map(drop)
    }

    /// Stores `manifest` under `tag`; returns the digest the registry reports, if any.
    ///
    /// # Errors
    /// Why the registry refused, scrubbed.
    pub async fn put_manifest(&mut self, tag: &str, manifest: Bytes) -> Result<Option<String>, String> {
        let url = format!("{}/v2/{}/manifests/{tag}", self.base, self.repository);
        let headers = [("content-type", super::artifact::MANIFEST_MEDIA_TYPE)];
        let response = self.send(http::Method::PUT, &url, &headers, manifest).await?;
        let response = self.expect(response, &[201], &format!("the manifest `{tag}`")).await?;
        Ok(header(&response.headers, "docker-content-digest"))
    }

    /// Sends a request, answering one authentication challenge and
    /// following redirects.
    async fn send(
        &mut self,
        method: http::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Response, String> {
        let response = self.follow(method.clone(), url, headers, body.clone()).await?;
        if response.status != 401 {
            return Ok(response);
        }
        let challenge = header(&response.headers, "www-authenticate").unwrap_or_default();
        let Some(authorization) = self.answer(&challenge).await? else { return Ok(response) };
        self.authorization = Some(authorization);
        self.follow(method, url, headers, body).await
    }

    /// The `Authorization` value that answers `challenge`, if we can.
    async fn answer(&mut self, challenge: &str) -> Result<Option<String>, String> {
        let (scheme, params) = parse_challenge(challenge);
        if scheme.eq_ignore_ascii_case("basic") {
            return Ok(self.credentials.as_ref().map(Credentials::basic));
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Ok(None);
        }
        let Some(realm) = params.iter().find(|(k, _)| k == "realm").map(|(_, v)| v.clone()) else {
            return Err(format!("registry `{}` asked for a token but named no realm to get it from", self.registry));
        };
        let (realm_scheme, realm_host, _) = split_url(&realm)?;
        let mut url = realm.clone();
        let mut query = Vec::new();
        if let Some((_, service)) = params.iter().find(|(k, _)| k == "service") {
            query.push(format!("service={}", encode(service)));
        }
        let scope = params
            .iter()
            .find(|(k, _)| k == "scope")
            .map_or_else(|| format!("repository:{}:{}", self.repository, self.actions), |(_, v)| v.clone());
        query.push(format!("scope={}", encode(&scope)));
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&query.join("&"));
        // Credentials go to the realm only over TLS, or to this machine.
        let plain_remote = realm_scheme == "http" && !is_loopback_host(&realm_host);
        let basic = self.credentials.as_ref().filter(|_| !plain_remote).map(Credentials::basic);
        let mut headers = Vec::new();
        if let Some(basic) = &basic {
            headers.push(("authorization", basic.as_str()));
        }
        let response = once(http::Method::GET, &url, &headers, Bytes::new()).await.map_err(|e| self.scrub(e))?;
        if response.status != 200 {
            return Err(self.scrub(format!(
                "the token service of `{}` refused (HTTP {}): {}",
                self.registry,
                response.status,
                if self.credentials.is_some() { "check the credentials" } else { "it may need credentials" }
            )));
        }
        let body = read_capped(response.body, 1 << 20).await.map_err(|e| self.scrub(e))?;
        let token: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
            format!("the token service of `{}` answered with something that is not JSON", self.registry)
        })?;
        let token = token["token"].as_str().or_else(|| token["access_token"].as_str()).unwrap_or_default();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("the token service of `{}` gave no usable token", self.registry));
        }
        Ok(Some(format!("Bearer {token}")))
    }

    /// One request, then its redirects (for GET and HEAD), each to the
    /// `Location` given; `Authorization` only while on the registry's host.
    async fn follow(
        &mut self,
        method: http::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Response, String> {
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let (scheme, host, _) = split_url(&url)?;
            let mut all: Vec<(&str, &str)> = headers.to_vec();
            let own_host = host == self.registry;
            if own_host && (scheme == "https" || is_loopback_host(&host)) {
                if let Some(authorization) = &self.authorization {
                    all.push(("authorization", authorization.as_str()));
                }
            }
            let response = once(method.clone(), &url, &all, body.clone()).await.map_err(|e| self.scrub(e))?;
            let redirect = matches!(response.status, 301 | 302 | 303 | 307 | 308)
                && matches!(method, http::Method::GET | http::Method::HEAD);
            if !redirect {
                return Ok(response);
            }
            let location = header(&response.headers, "location")
                .ok_or_else(|| format!("registry `{}` redirected without a `Location`", self.registry))?;
            let next = self.absolute_from(&url, &location)?;
            let (next_scheme, next_host, _) = split_url(&next)?;
            if scheme == "https" && next_scheme == "http" && !is_loopback_host(&next_host) {
                return Err(format!(
                    "registry `{}` redirected from HTTPS to plain HTTP (`{next_host}`); refused",
                    self.registry
                ));
            }
            url = next;
        }
        Err(format!("registry `{}` redirected more than {MAX_REDIRECTS} times", self.registry))
    }

    /// `response` if its status is one of `ok`, else an error naming
    /// `what`, the status and the registry's own error message.
    async fn expect(&self, response: Response, ok: &[u16], what: &str) -> Result<Response, String> {
        if ok.contains(&response.status) {
            return Ok(response);
        }
        let status = response.status;
        let body = read_capped(response.body, 64 << 10).await.unwrap_or_default();
        let detail = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_string))
            .map(|m| format!(": {}", sanitize(&m)))
            .unwrap_or_default();
        let hint = match status {
            401 if self.credentials.is_some() => " (the registry refused the credentials)",
            401 | 403 => " (log in: give credentials in ~/.docker/config.json, or in [registries] with a secret)",
            404 => " (no such repository, tag or digest)",
            _ => "",
        };
        Err(self.scrub(format!("registry `{}`: {what}: HTTP {status}{detail}{hint}", self.registry)))
    }

    /// `location` (absolute, or a path on the registry) as a URL.
    fn absolute(&self, location: &str) -> Result<String, String> {
        self.absolute_from(&self.base, location)
    }

    fn absolute_from(&self, from: &str, location: &str) -> Result<String, String> {
        if location.starts_with("http://") || location.starts_with("https://") {
            split_url(location)?;
            return Ok(location.to_string());
        }
        if !location.starts_with('/') {
            return Err(format!("registry `{}` gave a relative location `{}`", self.registry, sanitize(location)));
        }
        let (scheme, host, _) = split_url(from)?;
        Ok(format!("{scheme}://{host}{location}"))
    }

    /// `text` without the credentials in any form they were sent.
    fn scrub(&self, text: String) -> String {
        match &self.credentials {
            Some(credentials) => credentials.scrub(&text),
            None => text,
        }
    }
}

/// One HTTP/1.1 request on a fresh connection.
async fn once(method: http::Method, url: &str, headers: &[(&str, &str)], body: Bytes) -> Result<Response, String> {
    let (scheme, host, path) = split_url(url)?;
    let port = match host.rsplit_once(':') {
        Some((_, port)) if !host.ends_with(']') => port.parse::<u16>().map_err(|_| format!("bad port in `{host}`"))?,
        _ if scheme == "https" => 443,
        _ => 80,
    };
    let name = super::reference::host_of(&host).trim_start_matches('[').trim_end_matches(']').to_string();
    if scheme == "http" && !is_loopback_host(&host) {
        return Err(format!("`{host}` is not on this machine; registries are spoken to over HTTPS only"));
    }
    let connect = tokio::net::TcpStream::connect((name.as_str(), port));
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(format!("cannot connect to `{host}`: {e}")),
        Err(_) => return Err(format!("connecting to `{host}` timed out")),
    };
    let mut request = http::Request::builder().method(method).uri(path).header("host", host.as_str());
    request = request.header("user-agent", concat!("cleanroom/", env!("CARGO_PKG_VERSION")));
    for (key, value) in headers {
        request = request.header(*key, *value);
    }
    let uploads = !body.is_empty();
    if uploads {
        request = request.header("content-length", body.len());
    }
    let request = request.body(Full::new(body)).map_err(|e| format!("cannot build a request to `{host}`: {e}"))?;
    let exchange = async {
        if scheme == "https" {
            let server = rustls::pki_types::ServerName::try_from(name.clone())
                .map_err(|_| format!("`{name}` is not a valid TLS server name"))?;
            let tls = crate::tls::connector()?
                .connect(server, tcp)
                .await
                .map_err(|e| format!("TLS with `{host}` failed: {e}"))?;
            send_on(TokioIo::new(tls), request).await
        } else {
            send_on(TokioIo::new(tcp), request).await
        }
    };
    let limit = if uploads { REQUEST_TIMEOUT } else { STALL_TIMEOUT };
    let (parts, body) = tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| format!("`{host}` did not answer within {}s", limit.as_secs()))?
        .map_err(|e| format!("`{host}`: {e}"))?
        .into_parts();
    Ok(Response { status: parts.status.as_u16(), headers: parts.headers, body })
}

async fn send_on<I>(
    io: TokioIo<I>,
    request: http::Request<Full<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("registry connection ended: {e}");
        }
    });
    sender.send_request(request).await.map_err(|e| e.to_string())
}

/// The whole body, refused past `cap` bytes.
async fn read_capped(mut body: hyper::body::Incoming, cap: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(data) = next_data(&mut body).await? {
        if out.len() + data.len() > cap {
            return Err(format!("the registry's answer is over the {cap}-byte limit"));
        }
        out.extend_from_slice(&data);
    }
    Ok(out)
}

/// The next piece of `body`'s data, `None` at its end.
///
/// # Errors
/// When the registry breaks off, or sends nothing for [`STALL_TIMEOUT`].
async fn next_data(body: &mut hyper::body::Incoming) -> Result<Option<Bytes>, String> {
    loop {
        let frame = match tokio::time::timeout(STALL_TIMEOUT, body.frame()).await {
            Err(_) => {
                return Err(format!(
                    "the registry sent nothing for {}s in the middle of its answer; given up",
                    STALL_TIMEOUT.as_secs()
                ))
            }
            Ok(None) => return Ok(None),
            Ok(Some(frame)) => frame.map_err(|e| format!("the registry broke off its answer: {e}"))?,
        };
        // Trailers carry no data: read on.
        if let Ok(data) = frame.into_data() {
            return Ok(Some(data));
        }
    }
}

/// `(scheme, host[:port], path?query)` of an `http(s)://` URL.
fn split_url(url: &str) -> Result<(String, String, String), String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("`{}` is not a URL", sanitize(url)))?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("`{}` is not an http(s) URL", sanitize(url)));
    }
    let (host, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    if host.is_empty() || host.contains('@') || !host.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("`{}` has no usable host", sanitize(url)));
    }
    Ok((scheme.to_string(), host.to_string(), path.to_string()))
}

use super::reference::is_loopback as is_loopback_host;

fn header(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// `Bearer realm="x",service="y"` -> ("Bearer", [(realm, x), (service, y)]).
fn parse_challenge(challenge: &str) -> (String, Vec<(String, String)>) {
    let challenge = challenge.trim();
    let (scheme, rest) = challenge.split_once(' ').unwrap_or((challenge, ""));
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect::<String>().trim().to_ascii_lowercase();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied().filter(|c| *c != ',') {
                value.push(c);
                chars.next();
            }
        }
        params.push((key, value.trim().to_string()));
    }
    (scheme.to_string(), params)
}

/// Percent-encodes everything but unreserved characters.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// Registry-supplied text made safe to print: one line, no control
/// characters, at most 200 characters.
fn sanitize(text: &str) -> String {
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(200).collect();
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_with_quoted_and_bare_values() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(params[0], ("realm".into(), "https://auth.example/token".into()));
        assert_eq!(params[2], ("scope".into(), "repository:a/b:pull,push".into()));
        let (scheme, params) = parse_challenge("Basic realm=x");
        assert_eq!((scheme.as_str(), params[0].1.as_str()), ("Basic", "x"));
        assert_eq!(parse_challenge("").1, vec![]);
    }

    #[test]
    fn urls_split_and_refuse_userinfo_and_other_schemes() {
        assert_eq!(
            split_url("http://localhost:5000/v2/a/blobs/uploads/x?y=1").unwrap(),
            ("http".into(), "localhost:5000".into(), "/v2/a/blobs/uploads/x?y=1".into())
        );
        assert!(split_url("https://user:pw@evil.example/x").is_err());
        assert!(split_url("file:///etc/passwd").is_err());
        assert_eq!(encode("repository:a/b:pull,push"), "repository%3Aa%2Fb%3Apull%2Cpush");
    }
}
