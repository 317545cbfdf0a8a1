//! Who may do what: authentication of API callers (OIDC bearer tokens checked against the issuer's JWKS,
//! API keys, service credentials), the roles and permissions of the authorization model, and the policy
//! that says which principal holds which role on which project. Admin and the catalog put it in front of
//! their APIs as one layer (`access`); this crate does no serving itself.

pub mod access;
pub mod apikey;
pub mod config;
pub mod error;
pub mod identity;
pub mod oidc;
pub mod policy;

pub use config::{AuthArgs, AuthConfig};
pub use error::{ApiKeyError, ConfigError, ScopeError};
pub use identity::{AuthError, Authenticator, Identity, KeyDirectory, StoredKey};
pub use policy::{Binding, Member, Permission, Policy, Role, Scope};
