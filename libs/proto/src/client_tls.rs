//! The client side of TLS: an `https://` address is reached over TLS, trusting the public web PKI roots
//! and, when `ALOFT_CA_CERT` names a PEM file, that CA too (a deployment's own CA).

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// Why a client cannot set up TLS for an `https://` address.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    #[error("ALOFT_CA_CERT {path}: {source}")]
    CaCert { path: String, source: std::io::Error },
    #[error("TLS: {0}")]
    Tls(#[from] tonic::transport::Error),
}

/// `endpoint` with TLS when its address is `https://`; unchanged otherwise.
pub fn secure(endpoint: Endpoint) -> Result<Endpoint, ClientTlsError> {
    if endpoint.uri().scheme_str() != Some("https") {
        return Ok(endpoint);
    }
    let mut config = ClientTlsConfig::new().with_webpki_roots();
    if let Some(path) = std::env::var_os("ALOFT_CA_CERT") {
        let pem = std::fs::read(&path).map_err(|source| ClientTlsError::CaCert {
            path: std::path::Path::new(&path).display().to_string(),
            source,
        })?;
        config = config.ca_certificate(Certificate::from_pem(pem));
    }
    Ok(endpoint.tls_config(config)?)
}
