//! What is wrong with an auth configuration (the file, its role bindings, the flags that load it) and
//! with what a request says it touches. Authentication failures themselves are `AuthError`; refusals of a
//! call are `Refusal`.

use std::path::Path;

/// A role binding, platform admin or service token the policy cannot hold, or a file or flag that cannot
/// be loaded; the message names the entry (`bindings[2]`) and the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown role {role:?}; the roles are viewer, operator, approver, publisher, admin")]
    UnknownRole { role: String },
    #[error("member {member:?} must be subject:<sub> or group:<name>")]
    Member { member: String },
    /// An entry of the file (`platform_admins`, `bindings[0]`) that is wrong.
    #[error("{entry}: {source}")]
    Entry { entry: String, source: Box<ConfigError> },
    #[error("service token {name:?}: sha256 must be 64 hex digits (sha256sum of the token)")]
    ServiceTokenDigest { name: String },
    #[error("{path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path}: {source}")]
    InFile { path: String, source: Box<ConfigError> },
    #[error("--auth-config {0}")]
    Flag(Box<ConfigError>),
    #[error(
        "--listen {listen} is not a loopback address and no authentication is configured: give \
         --auth-config (an OIDC issuer, service tokens or platform admins), or --insecure-no-auth to let \
         anyone who reaches it do everything"
    )]
    OpenWithoutAuth { listen: std::net::SocketAddr },
}

impl ConfigError {
    pub(crate) fn at_entry(entry: impl Into<String>) -> impl FnOnce(ConfigError) -> ConfigError {
        let entry = entry.into();
        move |source| ConfigError::Entry {
            entry,
            source: Box::new(source),
        }
    }

    pub(crate) fn in_file(path: &Path) -> impl FnOnce(ConfigError) -> ConfigError + '_ {
        move |source| ConfigError::InFile {
            path: path.display().to_string(),
            source: Box::new(source),
        }
    }
}

/// A request that does not name what it touches, so its permission cannot be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("{field} is required{hint}")]
    Missing { field: &'static str, hint: &'static str },
    #[error("project and domain are required")]
    ProjectAndDomain,
}

impl ScopeError {
    pub fn missing(field: &'static str) -> ScopeError {
        ScopeError::Missing { field, hint: "" }
    }
}

/// Why a credential is not an API key (never echoing its secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error("an API key starts with aloft_")]
    Prefix,
    #[error("an API key is aloft_<id>_<secret>")]
    Shape,
    #[error("malformed API key")]
    Malformed,
}
