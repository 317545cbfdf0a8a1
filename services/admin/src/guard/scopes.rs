//! What each request message touches: the project (and domain) its permission is checked on. A request
//! that does not name its project cannot be checked, and is refused as invalid before anything is read.

use aloft_auth::Scope;
use aloft_proto::v1 as wire;

pub trait Scoped {
    fn scope(&self) -> Result<Scope, String>;
}

fn domain(project: &str, domain: &str) -> Result<Scope, String> {
    if project.is_empty() {
        return Err("project is required".to_string());
    }
    Ok(if domain.is_empty() || domain == "*" {
        Scope::Project(project.to_string())
    } else {
        Scope::Domain(project.to_string(), domain.to_string())
    })
}

fn execution(id: Option<&wire::ExecutionIdentifier>) -> Result<Scope, String> {
    let id = id.ok_or_else(|| "id is required (project, domain and name of the execution)".to_string())?;
    if id.domain.is_empty() {
        return Err("id.domain is required".to_string());
    }
    domain(&id.project, &id.domain)
}

macro_rules! platform {
    ($($request:ty),*) => {
        $(impl Scoped for $request {
            fn scope(&self) -> Result<Scope, String> {
                Ok(Scope::Platform)
            }
        })*
    };
}

macro_rules! tenant {
    ($($request:ty),*) => {
        $(impl Scoped for $request {
            fn scope(&self) -> Result<Scope, String> {
                domain(&self.project, &self.domain)
            }
        })*
    };
}

macro_rules! project {
    ($($request:ty),*) => {
        $(impl Scoped for $request {
            fn scope(&self) -> Result<Scope, String> {
                domain(&self.project, "")
            }
        })*
    };
}

macro_rules! of_execution {
    ($($request:ty),*) => {
        $(impl Scoped for $request {
            fn scope(&self) -> Result<Scope, String> {
                execution(self.id.as_ref())
            }
        })*
    };
}

platform!(
    wire::CreateProjectRequest,
    wire::ListProjectsRequest,
    wire::DefinePoolRequest,
    wire::WhoAmIRequest,
    wire::GetAuthInfoRequest
);

tenant!(
    wire::RegisterRequest,
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
    wire::TerminateExecutionRequest,
    wire::SignalExecutionRequest,
    wire::ApproveExecutionRequest,
    wire::RelaunchExecutionRequest,
    wire::RecoverExecutionRequest,
    wire::GetTaskLogsRequest,
    wire::DownloadDataRequest
);

impl Scoped for wire::GetEntityRequest {
    fn scope(&self) -> Result<Scope, String> {
        let id = self
            .id
            .as_ref()
            .ok_or_else(|| "id is required (project, domain, name and version)".to_string())?;
        if id.domain.is_empty() {
            return Err("id.domain is required".to_string());
        }
        domain(&id.project, &id.domain)
    }
}

impl Scoped for wire::BindRoleRequest {
    fn scope(&self) -> Result<Scope, String> {
        let binding = self
            .binding
            .as_ref()
            .ok_or_else(|| "binding is required".to_string())?;
        // Binding a role on one domain is still the project admin's decision.
        domain(&binding.project, "")
    }
}
