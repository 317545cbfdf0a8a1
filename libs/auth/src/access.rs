//! A service's access control (admin's and the catalog's): who the caller is (`Authenticator`), what the
//! policy lets it do (the auth config's bindings plus those made through the API, read from the service's
//! projection of the registry), per-caller rate limits, and the caller of the request being served
//! (`CALLER`), which every event the request appends records as its principal.

use crate::error::{ConfigError, ScopeError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{
    AuthConfig, AuthError, Authenticator, Binding, Identity, KeyDirectory, Member, Permission, Policy, Role,
    Scope, StoredKey,
};
use aloft_store::Store;
use tokio::sync::Mutex;

tokio::task_local! {
    /// The authenticated caller of the request this task serves: set by the guard around each handler, so
    /// handlers need no extra parameter to record who asked.
    pub static CALLER: Identity;
}

/// The principal of the request being served, if a guard set one.
pub fn current_caller() -> Option<Identity> {
    CALLER.try_with(Identity::clone).ok()
}

/// Who the events of the request being served are recorded as caused by: its authenticated caller; none
/// when authentication is off (nobody was asked who they are).
pub fn recorded_principal() -> Option<aloft_core::principal::Principal> {
    current_caller()
        .filter(|identity| !identity.unrestricted)
        .map(|identity| identity.principal)
}

/// How long a looked-up key or the API's bindings are reused before reading the read model again: a
/// revocation or a new binding takes effect on every replica within this (plus its projection lag).
const REFRESH: Duration = Duration::from_secs(1);

/// API keys from the service's projection of the registry, each remembered for `REFRESH`.
pub struct StoreKeys {
    store: Store,
    cache: Mutex<HashMap<String, (Instant, Option<StoredKey>)>>,
}

impl StoreKeys {
    pub fn new(store: Store) -> StoreKeys {
        StoreKeys {
            store,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait::async_trait]
impl KeyDirectory for StoreKeys {
    async fn key(&self, id: &str) -> Result<Option<StoredKey>, AuthError> {
        if let Some((at, key)) = self.cache.lock().await.get(id) {
            if at.elapsed() < REFRESH {
                return Ok(key.clone());
            }
        }
        let row = self
            .store
            .api_key(id)
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        let key = match row {
            None => None,
            Some(row) => Some(StoredKey {
                role: Role::parse(&row.role)
                    .map_err(|e| AuthError::Unavailable(format!("API key {id}: {e}")))?,
                id: row.key_id,
                name: row.name,
                project: row.project,
                domain: row.domain,
                secret_hash: row.secret_hash,
                expires_at_millis: row.expires_at,
                revoked: row.revoked_at.is_some(),
            }),
        };
        let mut cache = self.cache.lock().await;
        // Bounded: made-up key ids must not grow it without end.
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(id.to_string(), (Instant::now(), key.clone()));
        Ok(key)
    }
}

pub struct AccessControl {
    pub authenticator: Authenticator,
    /// Platform admins and bindings of the config file.
    configured: Policy,
    store: Option<Store>,
    /// The configured policy plus the API's bindings, and when they were read.
    effective: Mutex<(Option<Instant>, Arc<Policy>)>,
    pub require_distinct_approver: crate::config::DistinctApprover,
    /// Calls per second of one caller, across its projects.
    pub principal_rate_limiter: Option<Arc<dyn aloft_fairq::ratelimit::TenantRateLimiter>>,
}

impl AccessControl {
    /// Authentication off: every caller is `anonymous` and may do everything.
    pub fn disabled() -> AccessControl {
        AccessControl {
            authenticator: Authenticator::disabled(),
            configured: Policy::default(),
            store: None,
            effective: Mutex::new((None, Arc::new(Policy::default()))),
            require_distinct_approver: Default::default(),
            principal_rate_limiter: None,
        }
    }

    pub fn new(config: &AuthConfig, store: Store) -> Result<AccessControl, ConfigError> {
        let configured = config.policy()?;
        let keys: Arc<dyn KeyDirectory> = Arc::new(StoreKeys::new(store.clone()));
        Ok(AccessControl {
            authenticator: Authenticator::new(config, Some(keys)),
            effective: Mutex::new((None, Arc::new(configured.clone()))),
            configured,
            store: Some(store),
            require_distinct_approver: config.require_distinct_approver.clone(),
            principal_rate_limiter: None,
        })
    }

    pub fn enabled(&self) -> bool {
        self.authenticator.enabled()
    }

    /// The bindings of the config file, for ListRoleBindings.
    pub fn configured(&self) -> &Policy {
        &self.configured
    }

    /// Forgets the API's bindings read so far: after this replica changed them, its next call reads them
    /// again (other replicas within `REFRESH`).
    pub async fn invalidate(&self) {
        self.effective.lock().await.0 = None;
    }

    /// The policy in force: the config file's, plus the API's bindings (re-read after `REFRESH`).
    pub async fn policy(&self) -> Result<Arc<Policy>, aloft_store::Error> {
        let Some(store) = &self.store else {
            return Ok(Arc::new(self.configured.clone()));
        };
        let mut effective = self.effective.lock().await;
        if effective.0.is_some_and(|at| at.elapsed() < REFRESH) {
            return Ok(Arc::clone(&effective.1));
        }
        let mut policy = self.configured.clone();
        for row in store.role_bindings(None).await? {
            let (Ok(member), Ok(role)) = (Member::parse(&row.member), Role::parse(&row.role)) else {
                tracing::warn!(member = %row.member, role = %row.role, "skipping a role binding that does not parse");
                continue;
            };
            policy.bindings.push(Binding {
                member,
                project: row.project,
                domain: row.domain,
                role,
            });
        }
        *effective = (Some(Instant::now()), Arc::new(policy));
        Ok(Arc::clone(&effective.1))
    }
}

/// The `authorization` header of a call, as `AccessControl::admit` takes it.
pub fn authorization(metadata: &tonic::metadata::MetadataMap) -> Option<&str> {
    metadata
        .get("authorization")
        .and_then(|value| value.to_str().ok())
}

/// Why a call is not admitted, of a kind of the shared error mapping.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// The request does not say what it touches.
    #[error("{0}")]
    Invalid(String),
    /// The credential or the policy cannot be checked now.
    #[error("{0}")]
    Unavailable(String),
    #[error("{message}")]
    RateLimited { message: String, retry_after: Duration },
}

impl aloft_proto::status::ServiceError for Refusal {
    fn error_code(&self) -> aloft_proto::status::ErrorCode {
        use aloft_proto::status::ErrorCode;
        match self {
            Refusal::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Refusal::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Refusal::Invalid(_) => ErrorCode::InvalidArgument,
            Refusal::Unavailable(_) => ErrorCode::Unavailable,
            Refusal::RateLimited { .. } => ErrorCode::ResourceExhausted,
        }
    }
}

impl AccessControl {
    /// Admits a call of `rpc`, which needs `permission` on what its request touches (`scope`, read only
    /// once the caller is known): authenticates the `authorization` header, checks the policy, then the
    /// caller's rate. The order matters: an unauthenticated caller learns nothing about the request, and a
    /// refused one is refused the same whether what it names exists or not.
    pub async fn admit(
        &self,
        authorization: Option<&str>,
        rpc: &str,
        permission: Permission,
        scope: impl FnOnce() -> Result<Scope, ScopeError>,
    ) -> Result<Identity, Refusal> {
        if permission == Permission::Public {
            return Ok(Identity::anonymous());
        }
        let identity = self
            .authenticator
            .authenticate(authorization)
            .await
            .map_err(|error| match error {
                AuthError::Unavailable(message) => Refusal::Unavailable(format!("authentication: {message}")),
                other => Refusal::Unauthenticated(other.to_string()),
            })?;
        if identity.unrestricted {
            return Ok(identity);
        }
        let scope = scope().map_err(|e| Refusal::Invalid(e.to_string()))?;
        let policy = self
            .policy()
            .await
            .map_err(|e| Refusal::Unavailable(format!("role bindings: {e}")))?;
        if !identity.allows(&policy, permission, &scope) {
            return Err(Refusal::PermissionDenied(format!(
                "{} may not call {rpc}: it lacks permission `{permission}` on {scope} (granted to: {})",
                identity.principal.display(),
                permission.granted_by()
            )));
        }
        if let Some(limiter) = &self.principal_rate_limiter {
            let caller = aloft_fairq::Tenant::new("@caller", &identity.principal.subject);
            if let Err(retry_after) = limiter.check(&caller).await {
                return Err(Refusal::RateLimited {
                    message: format!(
                        "{} is over its per-caller API rate limit; retry after {} ms",
                        identity.principal.subject,
                        retry_after.as_millis().max(1)
                    ),
                    retry_after,
                });
            }
        }
        Ok(identity)
    }
}
