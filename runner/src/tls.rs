//! The one TLS client configuration the runner uses for outgoing HTTPS:
//! the Mozilla roots compiled in (`webpki-roots`, so no host file decides
//! whom a step or a registry pull trusts), ring as the provider, rustls'
//! safe protocol versions, no client certificate.

use std::sync::Arc;

/// A connector for HTTPS clients ([`crate::sandbox`]'s outgoing requests,
/// [`crate::oci`]'s registry client).
///
/// # Errors
/// rustls' reason when the provider offers no safe protocol version (it
/// always does; the error is kept rather than a panic).
pub fn connector() -> Result<tokio_rustls::TlsConnector, String> {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
