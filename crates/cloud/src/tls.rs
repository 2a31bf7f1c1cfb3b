//! The TLS client configuration: rustls with the ring provider, chosen
//! explicitly (no process-wide default provider is needed or installed),
//! trusting the system roots plus an optional extra CA file, offering
//! HTTP/2 and HTTP/1.1 through ALPN (or HTTP/1.1 only).

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;

use crate::config::ConfigError;

/// Builds the client config. A system without any root certificates is
/// tolerated (a container with only the private CA is a normal case); an
/// unreadable or empty `extra_ca_file` is an error naming the field.
pub(crate) fn client_config(extra_ca_file: Option<&Path>, http2: bool) -> Result<rustls::ClientConfig, ConfigError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    if !native.errors.is_empty() {
        tracing::debug!(
            errors = native.errors.len(),
            "some system root certificates could not be loaded"
        );
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "system root certificates");
    if let Some(path) = extra_ca_file {
        let field = |msg: String| ConfigError::new("", "extra_ca_file", format!("{}: {msg}", path.display()));
        let pem = std::fs::read(path).map_err(|e| field(format!("cannot read: {e}")))?;
        let certs = rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| field(format!("not PEM: {e}")))?;
        if certs.is_empty() {
            return Err(field("holds no certificate".into()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| field(format!("not a usable CA certificate: {e}")))?;
        }
    }
    if roots.is_empty() {
        tracing::warn!("no trusted root certificates: every https endpoint will fail to connect");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new("", "tls", e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // reqwest sets ALPN only on configs it builds itself.
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}
