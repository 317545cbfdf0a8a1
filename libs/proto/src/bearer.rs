//! The client side of authentication: every call of a client carries `authorization: Bearer <credential>`
//! (an OIDC token, an API key or a service token) when it has one.

use tonic::metadata::{Ascii, MetadataValue};

/// A credential with characters an HTTP header cannot carry (its text is not echoed: it is a secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the credential has characters an HTTP header cannot carry")]
pub struct UnsendableCredential;

/// A tonic interceptor adding the credential to each call.
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// `None` sends no credential; a credential a header cannot carry is refused (without echoing it).
    pub fn new(credential: Option<&str>) -> Result<Bearer, UnsendableCredential> {
        match credential.map(str::trim).filter(|c| !c.is_empty()) {
            None => Ok(Bearer(None)),
            Some(credential) => format!("Bearer {credential}")
                .parse()
                .map(|value| Bearer(Some(value)))
                .map_err(|_| UnsendableCredential),
        }
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}
