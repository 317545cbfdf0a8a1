//! The access layer in front of the AdminService: every RPC (and so every REST route, which calls the same
//! RPC) is mapped to the one permission it needs in `RPCS` below, and nowhere else. A call is
//! authenticated from its `authorization` metadata (UNAUTHENTICATED without a valid credential), its
//! scope (project, domain) is read from its request message (`scopes`), and it is refused with
//! PERMISSION_DENIED naming the missing permission unless the caller holds it there. The handler then runs
//! with the caller set (`access::CALLER`), so every event it appends records who asked. ListProjects' handler
//! cuts its answer to what the caller may read (`AdminApi::list_projects_rpc`); everything else is scoped by its request, so a caller of
//! project A never learns whether anything of project B exists.

mod scopes;

use aloft_auth::access::Refusal;
use aloft_auth::{Identity, Permission};
use aloft_proto::v1 as wire;
use aloft_proto::v1::admin_service_server::AdminService;
use tonic::{Request, Response, Status};

use crate::api::{AdminApi, HistoryStream};
use crate::error::ApiError;
use aloft_auth::access::CALLER;
use scopes::Scoped;

/// The AdminService as callers reach it: `AdminApi` behind authentication and authorization.
#[derive(Clone)]
pub struct Guarded {
    api: AdminApi,
}

impl Guarded {
    pub fn new(api: AdminApi) -> Guarded {
        Guarded { api }
    }

    /// Authenticates the caller of `request` and checks that it holds `permission` on the request's scope.
    async fn admit<T: Scoped>(
        &self,
        request: &Request<T>,
        rpc: &str,
        permission: Permission,
    ) -> Result<Identity, Status> {
        self.api
            .access
            .admit(
                aloft_auth::access::authorization(request.metadata()),
                rpc,
                permission,
                || request.get_ref().scope(),
            )
            .await
            .map_err(|refusal| {
                Status::from(match refusal {
                    Refusal::Unauthenticated(message) => ApiError::Unauthenticated(message),
                    Refusal::PermissionDenied(message) => ApiError::PermissionDenied(message),
                    Refusal::Invalid(message) => ApiError::InvalidArgument(message),
                    Refusal::Unavailable(message) => ApiError::Unavailable(message),
                    Refusal::RateLimited { message, retry_after } => {
                        ApiError::ResourceExhausted { message, retry_after }
                    }
                })
            })
    }
}

/// Generates the guarded AdminService: each RPC admitted with its permission, then answered by `AdminApi`
/// with the caller set; and `RPCS`, the table of every RPC's permission.
macro_rules! guarded_service {
    ($($method:ident($request:ty) -> $response:ty: $permission:ident, $rpc:literal;)*) => {
        /// Every RPC of the AdminService and the permission it needs: the one place this is said.
        pub const RPCS: &[(&str, Permission)] = &[$(($rpc, Permission::$permission)),*];

        #[tonic::async_trait]
        impl AdminService for Guarded {
            type WatchExecutionStream = HistoryStream;
            type GetTaskLogsStream = crate::api::TaskLogStream;
            type DownloadDataStream = crate::api::DataStream;

            $(
                async fn $method(&self, request: Request<$request>) -> Result<Response<$response>, Status> {
                    let caller = self.admit(&request, $rpc, Permission::$permission).await?;
                    CALLER.scope(caller, AdminService::$method(&self.api, request)).await
                }
            )*
        }
    };
}

guarded_service! {
    create_project(wire::CreateProjectRequest) -> wire::CreateProjectResponse: Platform, "CreateProject";
    list_projects(wire::ListProjectsRequest) -> wire::ListProjectsResponse: Authenticated, "ListProjects";
    list_tenants(wire::ListTenantsRequest) -> wire::ListTenantsResponse: Authenticated, "ListTenants";
    register_task(wire::RegisterRequest) -> wire::RegisterResponse: Register, "RegisterTask";
    get_task(wire::GetEntityRequest) -> wire::Task: Read, "GetTask";
    list_tasks(wire::ListEntitiesRequest) -> wire::ListTasksResponse: Read, "ListTasks";
    register_workflow(wire::RegisterRequest) -> wire::RegisterResponse: Register, "RegisterWorkflow";
    get_workflow(wire::GetEntityRequest) -> wire::Workflow: Read, "GetWorkflow";
    list_workflows(wire::ListEntitiesRequest) -> wire::ListWorkflowsResponse: Read, "ListWorkflows";
    register_launch_plan(wire::RegisterRequest) -> wire::RegisterResponse: Register, "RegisterLaunchPlan";
    register_batch(wire::RegisterBatchRequest) -> wire::RegisterBatchResponse: Register, "RegisterBatch";
    get_launch_plan(wire::GetEntityRequest) -> wire::LaunchPlan: Read, "GetLaunchPlan";
    list_launch_plans(wire::ListEntitiesRequest) -> wire::ListLaunchPlansResponse: Read, "ListLaunchPlans";
    activate_launch_plan(wire::GetEntityRequest) -> wire::LaunchPlan: Register, "ActivateLaunchPlan";
    deactivate_launch_plan(wire::GetEntityRequest) -> wire::LaunchPlan: Register, "DeactivateLaunchPlan";
    set_notification_defaults(wire::SetNotificationDefaultsRequest) -> wire::SetNotificationDefaultsResponse: Administer, "SetNotificationDefaults";
    set_tenant_quota(wire::SetTenantQuotaRequest) -> wire::SetTenantQuotaResponse: Administer, "SetTenantQuota";
    define_pool(wire::DefinePoolRequest) -> wire::DefinePoolResponse: Platform, "DefinePool";
    create_execution(wire::CreateExecutionRequest) -> wire::CreateExecutionResponse: Execute, "CreateExecution";
    get_execution(wire::GetExecutionRequest) -> wire::Execution: Read, "GetExecution";
    list_executions(wire::ListExecutionsRequest) -> wire::ListExecutionsResponse: Read, "ListExecutions";
    count_executions(wire::ListExecutionsRequest) -> wire::ExecutionCounts: Read, "CountExecutions";
    list_node_executions(wire::ListNodeExecutionsRequest) -> wire::ListNodeExecutionsResponse: Read, "ListNodeExecutions";
    watch_execution(wire::WatchExecutionRequest) -> HistoryStream: Read, "WatchExecution";
    get_execution_state(wire::GetExecutionStateRequest) -> wire::Execution: Read, "GetExecutionState";
    get_execution_data(wire::GetExecutionRequest) -> wire::ExecutionData: Read, "GetExecutionData";
    get_node_data(wire::GetNodeDataRequest) -> wire::NodeData: Read, "GetNodeData";
    list_deliveries(wire::ListDeliveriesRequest) -> wire::ListDeliveriesResponse: Read, "ListDeliveries";
    terminate_execution(wire::TerminateExecutionRequest) -> wire::TerminateExecutionResponse: Execute, "TerminateExecution";
    signal_execution(wire::SignalExecutionRequest) -> wire::SignalExecutionResponse: Execute, "SignalExecution";
    approve_execution(wire::ApproveExecutionRequest) -> wire::ApproveExecutionResponse: Approve, "ApproveExecution";
    relaunch_execution(wire::RelaunchExecutionRequest) -> wire::CreateExecutionResponse: Execute, "RelaunchExecution";
    recover_execution(wire::RecoverExecutionRequest) -> wire::CreateExecutionResponse: Execute, "RecoverExecution";
    get_execution_history(wire::GetExecutionRequest) -> wire::ExecutionHistory: Read, "GetExecutionHistory";
    get_task_logs(wire::GetTaskLogsRequest) -> crate::api::TaskLogStream: Read, "GetTaskLogs";
    download_data(wire::DownloadDataRequest) -> crate::api::DataStream: Read, "DownloadData";
    get_data_url(wire::DownloadDataRequest) -> wire::DataUrl: Read, "GetDataUrl";
    create_api_key(wire::CreateApiKeyRequest) -> wire::CreateApiKeyResponse: Administer, "CreateApiKey";
    list_api_keys(wire::ListApiKeysRequest) -> wire::ListApiKeysResponse: Administer, "ListApiKeys";
    revoke_api_key(wire::RevokeApiKeyRequest) -> wire::RevokeApiKeyResponse: Administer, "RevokeApiKey";
    bind_role(wire::BindRoleRequest) -> wire::BindRoleResponse: Administer, "BindRole";
    list_role_bindings(wire::ListRoleBindingsRequest) -> wire::ListRoleBindingsResponse: Administer, "ListRoleBindings";
    list_audit_events(wire::ListAuditEventsRequest) -> wire::ListAuditEventsResponse: Administer, "ListAuditEvents";
    who_am_i(wire::WhoAmIRequest) -> wire::WhoAmIResponse: Authenticated, "WhoAmI";
    get_auth_info(wire::GetAuthInfoRequest) -> wire::AuthInfo: Public, "GetAuthInfo";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rest_route_calls_an_rpc_of_the_permission_table_and_every_rpc_has_a_route() {
        let table: std::collections::BTreeSet<&str> = RPCS.iter().map(|(rpc, _)| *rpc).collect();
        assert_eq!(table.len(), RPCS.len(), "an RPC listed twice");
        let routed: std::collections::BTreeSet<&str> = crate::rest::routes::ROUTES
            .iter()
            .map(|route| route.rpc)
            .collect();
        for rpc in &routed {
            assert!(
                table.contains(rpc) || crate::rest::CATALOG_RPCS.contains(rpc),
                "route of {rpc} has no permission"
            );
        }
        for rpc in &table {
            assert!(routed.contains(rpc), "RPC {rpc} has no REST route");
        }
    }
}
