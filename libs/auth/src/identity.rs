//! Authentication: turns an `Authorization` header into an `Identity` (an OIDC token, an API key, or a
//! service token), and says what that identity may do under a `Policy`.

use std::sync::Arc;

use aloft_core::principal::{AuthMethod, Principal};

use crate::apikey;
use crate::config::AuthConfig;
use crate::oidc::{OidcVerifier, TokenError};
use crate::policy::{roles_allow, Binding, Member, Membership, Permission, Policy, Role, Scope};

/// An API key as the registry stores it: never its secret, only the secret's digest.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub id: String,
    pub name: String,
    pub project: String,
    pub domain: String,
    pub role: Role,
    pub secret_hash: String,
    pub expires_at_millis: Option<i64>,
    pub revoked: bool,
}

/// Where API keys are looked up (admin's read model of the registry).
#[async_trait::async_trait]
pub trait KeyDirectory: Send + Sync {
    async fn key(&self, id: &str) -> Result<Option<StoredKey>, AuthError>;
}

/// A caller, authenticated.
#[derive(Debug, Clone)]
pub struct Identity {
    pub principal: Principal,
    pub groups: Vec<String>,
    /// An API key's own grant.
    pub key_grant: Option<Binding>,
    /// Authentication is off: everything is allowed.
    pub unrestricted: bool,
}

impl Identity {
    pub fn anonymous() -> Identity {
        Identity {
            principal: Principal::anonymous(),
            groups: Vec::new(),
            key_grant: None,
            unrestricted: true,
        }
    }

    fn membership(&self) -> Membership<'_> {
        Membership {
            subject: &self.principal.subject,
            groups: &self.groups,
        }
    }

    /// Whether this caller holds `permission` on `scope` under `policy`.
    pub fn allows(&self, policy: &Policy, permission: Permission, scope: &Scope) -> bool {
        if self.unrestricted {
            return true;
        }
        if self.principal.via == AuthMethod::Service {
            return matches!(
                permission,
                Permission::Service | Permission::Authenticated | Permission::Public
            );
        }
        if policy.allows(&self.membership(), permission, scope) {
            return true;
        }
        self.key_grant
            .as_ref()
            .is_some_and(|grant| roles_allow(std::iter::once(grant), &self.membership(), permission, scope))
    }

    /// The projects this caller may read (`None`: every one).
    pub fn readable_projects(&self, policy: &Policy) -> Option<Vec<String>> {
        if self.unrestricted {
            return None;
        }
        let mut projects = policy.readable_projects(&self.membership())?;
        if let Some(grant) = &self.key_grant {
            projects.push(grant.project.clone());
        }
        projects.sort();
        projects.dedup();
        Some(projects)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: send `authorization: Bearer <token or API key>` (aloft login, or an API key from aloft apikey create)")]
    Missing,
    #[error("the credential is refused: {0}")]
    Refused(String),
    /// The credential could not be checked (the issuer or the key directory is unreachable).
    #[error("the credential cannot be checked now: {0}")]
    Unavailable(String),
}

pub struct Authenticator {
    enabled: bool,
    oidc: Option<OidcVerifier>,
    keys: Option<Arc<dyn KeyDirectory>>,
    service_tokens: Vec<(String, String)>,
}

impl Authenticator {
    /// Everyone is `anonymous` and may do everything (`aloft dev`, `--insecure-no-auth`).
    pub fn disabled() -> Authenticator {
        Authenticator {
            enabled: false,
            oidc: None,
            keys: None,
            service_tokens: Vec::new(),
        }
    }

    pub fn new(config: &AuthConfig, keys: Option<Arc<dyn KeyDirectory>>) -> Authenticator {
        Authenticator {
            enabled: true,
            oidc: config.oidc.clone().map(OidcVerifier::new),
            keys,
            service_tokens: config
                .service_tokens
                .iter()
                .map(|t| (t.name.clone(), t.sha256.to_ascii_lowercase()))
                .collect(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn oidc(&self) -> Option<&OidcVerifier> {
        self.oidc.as_ref()
    }

    /// Who sent `authorization` (the header's value), or why it is refused. Never puts the credential in
    /// an error.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Identity, AuthError> {
        if !self.enabled {
            return Ok(Identity::anonymous());
        }
        let Some(header) = authorization else {
            return Err(AuthError::Missing);
        };
        let credential = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                AuthError::Refused("the authorization header must be `Bearer <credential>`".into())
            })?;
        if credential.is_empty() {
            return Err(AuthError::Missing);
        }
        if apikey::is_api_key(credential) {
            return self.api_key(credential).await;
        }
        let digest = apikey::hash_secret(credential);
        if let Some((name, _)) = self
            .service_tokens
            .iter()
            .find(|(_, hash)| apikey::digests_equal(hash, &digest))
        {
            return Ok(Identity {
                principal: Principal {
                    subject: format!("service:{name}"),
                    name: name.clone(),
                    via: AuthMethod::Service,
                },
                groups: Vec::new(),
                key_grant: None,
                unrestricted: false,
            });
        }
        let Some(oidc) = &self.oidc else {
            return Err(AuthError::Refused(
                "not an API key or service token, and no OIDC issuer is configured".into(),
            ));
        };
        let claims = oidc.verify(credential).await.map_err(|e| match e {
            TokenError::Jwks(message) => AuthError::Unavailable(message),
            other => AuthError::Refused(other.to_string()),
        })?;
        Ok(Identity {
            principal: Principal {
                subject: claims.subject,
                name: claims.name,
                via: AuthMethod::Oidc,
            },
            groups: claims.groups,
            key_grant: None,
            unrestricted: false,
        })
    }

    async fn api_key(&self, credential: &str) -> Result<Identity, AuthError> {
        let (id, secret) = apikey::parse(credential).map_err(|e| AuthError::Refused(e.to_string()))?;
        let Some(keys) = &self.keys else {
            return Err(AuthError::Refused("API keys are not accepted here".into()));
        };
        let key = keys
            .key(id)
            .await?
            .ok_or_else(|| AuthError::Refused(format!("no API key {id}")))?;
        if !apikey::digests_equal(&apikey::hash_secret(secret), &key.secret_hash) {
            return Err(AuthError::Refused(format!("API key {id}: wrong secret")));
        }
        if key.revoked {
            return Err(AuthError::Refused(format!("API key {id} was revoked")));
        }
        if key.expires_at_millis.is_some_and(|at| at <= now_millis()) {
            return Err(AuthError::Refused(format!("API key {id} has expired")));
        }
        let subject = format!("apikey:{}", key.id);
        Ok(Identity {
            key_grant: Some(Binding {
                member: Member::Subject(subject.clone()),
                project: key.project.clone(),
                domain: key.domain.clone(),
                role: key.role,
            }),
            principal: Principal {
                subject,
                name: key.name,
                via: AuthMethod::ApiKey,
            },
            groups: Vec::new(),
            unrestricted: false,
        })
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
