//! What each request message touches: the project (and domain) its permission is checked on. A request
//! that does not name its project cannot be checked, and is refused as invalid before anything is read.

use aloft_auth::{Scope, ScopeError};
use aloft_proto::v1 as wire;

pub trait Scoped {
    fn scope(&self) -> Result<Scope, ScopeError>;
}

fn domain(project: &str, domain: &str) -> Result<Scope, ScopeError> {
    if project.is_empty() {
        return Err(ScopeError::missing("project"));
    }
    Ok(if domain.is_empty() || domain == "*" {
        Scope::Project(project.to_string())
    } else {
        Scope::Domain(project.to_string(), domain.to_string())
    })
}

fn execution(id: Option<&wire::ExecutionIdentifier>) -> Result<Scope, ScopeError> {
    let id = id.ok_or(ScopeError::Missing {
        field: "id",
        hint: " (project, domain and name of the execution)",
    })?;
    if id.domain.is_empty() {
        return Err(ScopeError::missing("id.domain"));
    }
    domain(&id.project, &id.domain)
}

macro_rules! platform {
    ($($request:ty),*) => {
        $(impl Scoped for $request {
            fn scope(&self) -> Result<Scope, ScopeError> {
                Ok(Scope::Platform)
            }
        })*
    };
}

macro_rules! tenant {
    ($($request:ty),*) => {
        $(impl Scoped for $request {
            fn scope(&self) -> Result<Scope, ScopeError> {
                domain(&self.project, &self.domain)
            }
        })*
    };
}

macro_rules! project {
    ($($request:ty),*) => {
        $(impl Scoped for $request {
            fn scope(&self) -> Result<Scope, ScopeError> {
                domain(&self.project, "")
            }
        })*
    };
}

macro_rules! of_execution {
    ($($request:ty),*) => {
        $(impl Scoped for $request {
            fn scope(&self) -> Result<Scope, ScopeError> {
                execution(self.id.as_ref())
            }
        })*
    };
}

platform!(
    wire::CreateProjectRequest,
    wire::ListProjectsRequest,
    wire::ListTenantsRequest,
    wire::DefinePoolRequest,
    wire::WhoAmIRequest,
    wire::GetAuthInfoRequest
);

tenant!(
    wire::RegisterRequest,
    wire::RegisterBatchRequest,
    wire::ListDeliveriesRequest,
    wire::ListEntitiesRequest,
    wire::CreateExecutionRequest,
    wire::ListExecutionsRequest,
    wire::SetNotificationDefaultsRequest,
    wire::SetTenantQuotaRequest,
    wire::CreateApiKeyRequest
);

project!(
    wire::ListApiKeysRequest,
    wire::RevokeApiKeyRequest,
    wire::ListRoleBindingsRequest,
    wire::ListAuditEventsRequest
);

of_execution!(
    wire::GetExecutionRequest,
    wire::ListNodeExecutionsRequest,
    wire::WatchExecutionRequest,
    wire::GetExecutionStateRequest,
    wire::GetNodeDataRequest,
    wire::TerminateExecutionRequest,
    wire::SignalExecutionRequest,
    wire::ApproveExecutionRequest,
    wire::RelaunchExecutionRequest,
    wire::RecoverExecutionRequest,
    wire::GetTaskLogsRequest,
    wire::DownloadDataRequest
);

impl Scoped for wire::GetEntityRequest {
    fn scope(&self) -> Result<Scope, ScopeError> {
        let id = self.id.as_ref().ok_or(ScopeError::Missing {
            field: "id",
            hint: " (project, domain, name and version)",
        })?;
        if id.domain.is_empty() {
            return Err(ScopeError::missing("id.domain"));
        }
        domain(&id.project, &id.domain)
    }
}

impl Scoped for wire::BindRoleRequest {
    fn scope(&self) -> Result<Scope, ScopeError> {
        let binding = self.binding.as_ref().ok_or(ScopeError::missing("binding"))?;
        // Binding a role on one domain is still the project admin's decision.
        domain(&binding.project, "")
    }
}
