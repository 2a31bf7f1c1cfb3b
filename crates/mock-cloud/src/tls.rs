//! TLS for the mock: a CA and a leaf certificate generated at start, or PEM
//! files; the rustls server config built on an explicit `ring` provider, so
//! nothing depends on a process-wide default provider being installed.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::MockError;

/// A certificate chain and its key, ready to serve, and the generating CA's
/// PEM when there was one.
pub(crate) struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub ca_pem: Option<String>,
}

/// A fresh CA ("Tandem mock CA") and a leaf for `sans`, signed by it. Names
/// that parse as IP addresses become IP SANs, the others DNS names.
pub(crate) fn generate(sans: &[String]) -> Result<Identity, MockError> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "Tandem mock CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut leaf_params = CertificateParams::new(sans.to_vec())?;
    leaf_params.distinguished_name.push(DnType::CommonName, "mock-cloud");
    leaf_params.is_ca = IsCa::NoCa;
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate()?;
    let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;

    Ok(Identity {
        chain: vec![leaf.der().clone()],
        key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into(),
        ca_pem: Some(ca_cert.pem()),
    })
}

/// A PEM certificate chain and a PEM private key from files.
pub(crate) fn load(cert: &std::path::Path, key: &std::path::Path) -> Result<Identity, MockError> {
    let pem_err = |path: &std::path::Path, message: String| MockError::Pem {
        path: path.display().to_string(),
        message,
    };
    let cert_pem = std::fs::read(cert).map_err(|e| pem_err(cert, e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_err(cert, "no CERTIFICATE block".into()));
    }
    let key_pem = std::fs::read(key).map_err(|e| pem_err(key, e.to_string()))?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| pem_err(key, e.to_string()))?;
    Ok(Identity {
        chain,
        key: key_der,
        ca_pem: None,
    })
}

/// A server config offering HTTP/2 and HTTP/1.1 by ALPN.
pub(crate) fn server_config(id: Identity) -> Result<Arc<ServerConfig>, MockError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(id.chain, id.key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A client config that trusts only `ca_pem`, on the `ring` provider, with
/// the same ALPN offer; for tests that talk to the mock.
pub(crate) fn client_config(ca_pem: &str) -> Result<rustls::ClientConfig, MockError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| MockError::Pem {
            path: "ca_pem".into(),
            message: e.to_string(),
        })?;
        roots.add(cert)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}
