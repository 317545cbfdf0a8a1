//! Who asked for something: the principal an API request was authenticated as, recorded on every event the
//! request caused (the envelope's `principal`), so the log says who launched, terminated, approved and
//! signalled, and a replay says it again.

use serde::{Deserialize, Serialize};

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// An OIDC bearer token (JWT) of the configured issuer.
    Oidc,
    /// An API key made with `aloft apikey create`.
    ApiKey,
    /// A service credential of another Aloft service (the scheduler's launches, the propeller's calls).
    Service,
    /// Authentication is off (`aloft dev`, `--insecure-no-auth`): every caller is this one.
    Anonymous,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Oidc => "oidc",
            AuthMethod::ApiKey => "api_key",
            AuthMethod::Service => "service",
            AuthMethod::Anonymous => "anonymous",
        }
    }

    pub fn parse(text: &str) -> Option<AuthMethod> {
        Some(match text {
            "oidc" => AuthMethod::Oidc,
            "api_key" => AuthMethod::ApiKey,
            "service" => AuthMethod::Service,
            "anonymous" => AuthMethod::Anonymous,
            _ => return None,
        })
    }
}

/// An authenticated caller, as events record it. Never holds a credential.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    /// The stable identity: the token's `sub`, `apikey:<id>` for a key, `service:<name>` for a service.
    pub subject: String,
    /// What people read: the token's email or name claim, the key's name.
    pub name: String,
    pub via: AuthMethod,
}

impl Principal {
    pub fn anonymous() -> Principal {
        Principal {
            subject: "anonymous".to_string(),
            name: "anonymous".to_string(),
            via: AuthMethod::Anonymous,
        }
    }

    /// `name (via)`, or the subject when the name says nothing more.
    pub fn display(&self) -> String {
        if self.name.is_empty() || self.name == self.subject {
            format!("{} ({})", self.subject, self.via.as_str())
        } else {
            format!("{} <{}> ({})", self.name, self.subject, self.via.as_str())
        }
    }
}
