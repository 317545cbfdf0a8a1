//! The client side of TLS: an `https://` address is reached over TLS, trusting the public web PKI roots
//! and, when `ALOFT_CA_CERT` names a PEM file, that CA too (a deployment's own CA).

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// `endpoint` with TLS when its address is `https://`; unchanged otherwise.
pub fn secure(endpoint: Endpoint) -> Result<Endpoint, String> {
    if endpoint.uri().scheme_str() != Some("https") {
        return Ok(endpoint);
    }
    let mut config = ClientTlsConfig::new().with_webpki_roots();
    if let Some(path) = std::env::var_os("ALOFT_CA_CERT") {
        let pem = std::fs::read(&path)
            .map_err(|e| format!("ALOFT_CA_CERT {}: {e}", std::path::Path::new(&path).display()))?;
        config = config.ca_certificate(Certificate::from_pem(pem));
    }
    endpoint.tls_config(config).map_err(|e| format!("TLS: {e}"))
}
