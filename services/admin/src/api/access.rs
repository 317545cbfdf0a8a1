//! The access RPCs: API keys (created with their secret shown once, listed without it, revoked), role
//! bindings made through the API, the audit trail, who the caller is, and how to log in. Each writes a
//! registry event, so keys and bindings replay like everything else.

use aloft_auth::{apikey, Member, Role};
use aloft_core::events::RegistryEvent;
use aloft_proto::v1 as wire;

use super::{invalid, now_millis, AdminApi};
use crate::convert::principal_to_wire;
use crate::error::{ApiError, ApiResult};
use aloft_auth::access::current_caller;

fn key_to_wire(row: aloft_store::access::ApiKeyRow) -> wire::ApiKey {
    wire::ApiKey {
        id: row.key_id,
        name: row.name,
        project: row.project,
        domain: row.domain,
        role: row.role,
        created_at_millis: row.created_at,
        expires_at_millis: row.expires_at.unwrap_or(0),
        created_by: row.created_by,
        revoked_at_millis: row.revoked_at.unwrap_or(0),
    }
}

impl AdminApi {
    pub(super) async fn create_api_key_rpc(
        &self,
        request: wire::CreateApiKeyRequest,
    ) -> ApiResult<wire::CreateApiKeyResponse> {
        let role = Role::parse(&request.role).map_err(|e| invalid(format!("role: {e}")))?;
        if request.domain.is_empty() {
            self.require_project(&request.project).await?;
        } else {
            self.require_domain(&request.project, &request.domain).await?;
        }
        if request.expires_in_seconds < 0 {
            return Err(invalid(format!(
                "expires_in_seconds must be 0 (never) or positive, not {}",
                request.expires_in_seconds
            )));
        }
        let name = if request.name.is_empty() {
            format!("{}-{}", request.project, role.as_str())
        } else {
            request.name.clone()
        };
        if name.len() > 100 || name.chars().any(char::is_control) {
            return Err(invalid("name must be at most 100 printable characters"));
        }
        let new_key = apikey::generate();
        let at = now_millis();
        let expires_at = (request.expires_in_seconds > 0)
            .then(|| at.saturating_add(request.expires_in_seconds.saturating_mul(1000)));
        self.append_registry(RegistryEvent::ApiKeyCreated {
            key_id: new_key.id.clone(),
            name,
            project: request.project.clone(),
            domain: request.domain.clone(),
            role: role.as_str().to_string(),
            secret_hash: new_key.secret_hash,
            expires_at,
            at,
        })
        .await?;
        let row = self.store.api_key(&new_key.id).await?.ok_or_else(|| {
            ApiError::Internal(format!("API key {} missing after it was projected", new_key.id))
        })?;
        Ok(wire::CreateApiKeyResponse {
            key: Some(key_to_wire(row)),
            secret: new_key.key,
        })
    }

    pub(super) async fn list_api_keys_rpc(
        &self,
        request: wire::ListApiKeysRequest,
    ) -> ApiResult<wire::ListApiKeysResponse> {
        self.require_project(&request.project).await?;
        let keys = self.store.api_keys(&request.project).await?;
        Ok(wire::ListApiKeysResponse {
            keys: keys.into_iter().map(key_to_wire).collect(),
        })
    }

    pub(super) async fn revoke_api_key_rpc(
        &self,
        request: wire::RevokeApiKeyRequest,
    ) -> ApiResult<wire::RevokeApiKeyResponse> {
        let key = self.store.api_key(&request.id).await?;
        // A key of another project is "not found" to this project's admin, as is a key that never was.
        let Some(key) = key.filter(|k| k.project == request.project) else {
            return Err(ApiError::NotFound(format!(
                "project {} has no API key {:?}",
                request.project, request.id
            )));
        };
        if key.revoked_at.is_some() {
            return Ok(wire::RevokeApiKeyResponse {});
        }
        self.append_registry(RegistryEvent::ApiKeyRevoked {
            key_id: key.key_id,
            project: key.project,
            at: now_millis(),
        })
        .await?;
        Ok(wire::RevokeApiKeyResponse {})
    }

    pub(super) async fn bind_role_rpc(
        &self,
        request: wire::BindRoleRequest,
    ) -> ApiResult<wire::BindRoleResponse> {
        let binding = request.binding.ok_or_else(|| invalid("binding is required"))?;
        let member = Member::parse(&binding.member).map_err(|e| invalid(format!("binding.member: {e}")))?;
        let role = Role::parse(&binding.role).map_err(|e| invalid(format!("binding.role: {e}")))?;
        if binding.domain.is_empty() {
            self.require_project(&binding.project).await?;
        } else {
            self.require_domain(&binding.project, &binding.domain).await?;
        }
        self.append_registry(RegistryEvent::RoleBindingSet {
            member: member.to_string(),
            project: binding.project,
            domain: binding.domain,
            role: role.as_str().to_string(),
            granted: !request.remove,
            at: now_millis(),
        })
        .await?;
        self.access.invalidate().await;
        Ok(wire::BindRoleResponse {})
    }

    pub(super) async fn list_role_bindings_rpc(
        &self,
        request: wire::ListRoleBindingsRequest,
    ) -> ApiResult<wire::ListRoleBindingsResponse> {
        self.require_project(&request.project).await?;
        let mut bindings: Vec<wire::RoleBinding> = self
            .access
            .configured()
            .bindings
            .iter()
            .filter(|b| b.project == request.project)
            .map(|b| wire::RoleBinding {
                member: b.member.to_string(),
                project: b.project.clone(),
                domain: b.domain.clone(),
                role: b.role.as_str().to_string(),
                source: "config".to_string(),
            })
            .collect();
        for row in self.store.role_bindings(Some(&request.project)).await? {
            bindings.push(wire::RoleBinding {
                member: row.member,
                project: row.project,
                domain: row.domain,
                role: row.role,
                source: "api".to_string(),
            });
        }
        Ok(wire::ListRoleBindingsResponse { bindings })
    }

    pub(super) async fn list_audit_events_rpc(
        &self,
        request: wire::ListAuditEventsRequest,
    ) -> ApiResult<wire::ListAuditEventsResponse> {
        self.require_project(&request.project).await?;
        let limit = match request.limit {
            0 => 200,
            n => n.min(5000),
        };
        let subject = (!request.subject.is_empty()).then_some(request.subject.as_str());
        let rows = self
            .store
            .audit_events(&request.project, request.since_millis, subject, limit)
            .await?;
        Ok(wire::ListAuditEventsResponse {
            events: rows
                .into_iter()
                .map(|row| wire::AuditEvent {
                    occurred_at_millis: row.occurred_at,
                    project: row.project,
                    domain: row.domain,
                    principal: Some(wire::Principal {
                        subject: row.subject,
                        name: row.display_name,
                        via: row.via,
                    }),
                    action: row.action,
                    target: row.target,
                })
                .collect(),
        })
    }

    pub(super) async fn who_am_i_rpc(&self) -> ApiResult<wire::WhoAmIResponse> {
        let caller = current_caller().unwrap_or_else(aloft_auth::Identity::anonymous);
        let policy = self.access.policy().await?;
        let projects = caller.readable_projects(&policy);
        Ok(wire::WhoAmIResponse {
            principal: Some(principal_to_wire(&caller.principal)),
            groups: caller.groups.clone(),
            auth_enabled: self.access.enabled(),
            all_projects: projects.is_none(),
            projects: projects.unwrap_or_default(),
        })
    }

    pub(super) fn auth_info(&self) -> wire::AuthInfo {
        let oidc = self.access.authenticator.oidc().map(|o| o.settings());
        wire::AuthInfo {
            enabled: self.access.enabled(),
            issuer: oidc.map(|o| o.issuer.clone()).unwrap_or_default(),
            audience: oidc.map(|o| o.audience.clone()).unwrap_or_default(),
            client_id: oidc
                .map(|o| o.client_id.clone().unwrap_or_else(|| o.audience.clone()))
                .unwrap_or_default(),
        }
    }

    async fn require_project(&self, project: &str) -> ApiResult<()> {
        aloft_core::ids::validate_name("project", project).map_err(|e| invalid(e.to_string()))?;
        if self.store.get_project(project).await?.is_none() {
            return Err(ApiError::NotFound(format!("project {project:?} does not exist")));
        }
        Ok(())
    }

    /// Refuses an approval by the execution's own launcher when the policy requires another person.
    pub(super) async fn check_distinct_approver(&self, id: &aloft_core::ExecutionId) -> ApiResult<()> {
        if !self.access.require_distinct_approver.applies_to(&id.project) || !self.access.enabled() {
            return Ok(());
        }
        let Some(caller) = current_caller() else {
            return Ok(());
        };
        if let Some(launcher) = self.execution_row(id).await?.launched_by {
            if launcher.subject == caller.principal.subject {
                return Err(ApiError::PermissionDenied(format!(
                    "{} launched execution {id} and may not approve it: the approval policy \
                     (require_distinct_approver) requires another person",
                    caller.principal.display()
                )));
            }
        }
        Ok(())
    }
}
