//! TLS termination with rustls: HTTP/2 and HTTP/1.1 offered by ALPN.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

use crate::config::TlsConfig;

/// Why the TLS configuration could not be loaded.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A file held no usable PEM item.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong.
        what: String,
    },
    /// rustls refused the certificate/key pair.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn open(path: &Path) -> Result<BufReader<File>, TlsError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })
}

/// Builds the server-side rustls configuration.
pub fn server_config(tls: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let pem_err = |path: &Path, what: String| TlsError::Pem {
        path: path.display().to_string(),
        what,
    };
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_reader_iter(&mut open(&tls.cert)?)
            .collect::<Result<_, _>>()
            .map_err(|e| pem_err(&tls.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_err(&tls.cert, "no certificate found".into()));
    }
    let key = PrivateKeyDer::from_pem_reader(&mut open(&tls.key)?)
        .map_err(|e| pem_err(&tls.key, format!("no private key found ({e})")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
