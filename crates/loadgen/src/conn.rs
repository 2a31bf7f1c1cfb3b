//! Where requests go and how a connection is opened: a loopback URL, plain
//! HTTP or TLS (trusting one CA file, as the mock cloud generates), HTTP/1.1
//! with keep-alive and `TCP_NODELAY`.
//!
//! Only loopback hosts are accepted: the benchmarks must never send load to
//! another machine by mistake.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A parsed, checked target URL.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `Host` header value (`127.0.0.1:PORT`): HTTP/1.1 needs it and Tandem
    /// checks it against DNS rebinding.
    pub host: String,
    pub path: String,
    /// `Some` for `https://`: the connector trusting the given CA.
    tls: Option<TlsConnector>,
}

impl Target {
    /// `url` is `http://127.0.0.1:PORT/path` or `https://…` (then `ca` is
    /// the PEM file of the CA to trust).
    pub fn new(url: &str, ca: Option<&Path>) -> anyhow::Result<Self> {
        let uri: Uri = url.parse().with_context(|| format!("not a URL: {url}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => None,
            Some("https") => {
                let ca = ca.ok_or_else(|| anyhow!("an https URL needs --ca PEM"))?;
                Some(tls_connector(ca)?)
            }
            _ => bail!("the URL must start with http:// or https://: {url}"),
        };
        let host = uri.host().ok_or_else(|| anyhow!("no host in {url}"))?;
        let ip: IpAddr = match host {
            "localhost" => IpAddr::from([127, 0, 0, 1]),
            h => h
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .with_context(|| format!("the host must be a loopback address: {h}"))?,
        };
        if !ip.is_loopback() {
            bail!("refusing to send load to {ip}: only loopback addresses are allowed");
        }
        let port = uri.port_u16().unwrap_or(if tls.is_some() { 443 } else { 80 });
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        Ok(Target {
            addr: SocketAddr::new(ip, port),
            host: format!("{host}:{port}"),
            path,
            tls,
        })
    }

    /// Opens one keep-alive HTTP/1.1 connection; its driver runs as a task.
    pub async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        // Small requests and SSE frames must not wait for Nagle.
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => handshake(tcp).await,
            Some(tls) => {
                let name = ServerName::IpAddress(self.addr.ip().into());
                let stream = tls.connect(name, tcp).await.context("TLS handshake")?;
                handshake(stream).await
            }
        }
    }
}

async fn handshake<T>(io: T) -> anyhow::Result<SendRequest<Full<Bytes>>>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .context("HTTP/1.1 handshake")?;
    tokio::spawn(async move {
        // The connection ends when the sender is dropped or the peer closes;
        // the request in flight sees the error.
        let _ = conn.await;
    });
    Ok(sender)
}

fn tls_connector(ca: &Path) -> anyhow::Result<TlsConnector> {
    let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots
            .add(cert.with_context(|| format!("{}: not PEM", ca.display()))?)
            .with_context(|| format!("{}: not a usable CA", ca.display()))?;
    }
    if roots.is_empty() {
        bail!("{} holds no certificate", ca.display());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // HTTP/1.1 only: one request at a time per connection, like the client
    // side of the gateway, so `--concurrency` is the number of connections.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(cfg)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn loopback_only() {
        let t = Target::new("http://127.0.0.1:9/v1/chat/completions", None).unwrap();
        assert_eq!(t.host, "127.0.0.1:9");
        assert_eq!(t.path, "/v1/chat/completions");
        assert!(Target::new("http://localhost:9/", None).is_ok());
        assert!(Target::new("http://[::1]:9/", None).is_ok());
        assert!(Target::new("http://10.0.0.1:9/", None).is_err());
        assert!(Target::new("http://example.com/", None).is_err());
        assert!(Target::new("https://127.0.0.1:9/", None).is_err(), "https needs a CA");
        assert!(Target::new("ftp://127.0.0.1:9/", None).is_err());
    }
}
