//! The `AdminService` trait: one line per RPC, each handing its request to its handler (in the sibling
//! modules) through `serve`, which maps the handler's error to a status in one place, or `serve_limited`,
//! which first refuses a tenant over its API rate.

use aloft_proto::v1 as wire;
use aloft_proto::v1::admin_service_server::AdminService;
use aloft_telemetry::trace::{self, Span};
use tonic::{Request, Response, Status};

use super::{into_status, AdminApi, DataStream, HistoryStream, TaskLogStream};
use crate::error::ApiResult;

/// A request scoped to one tenant: it counts against that tenant's API rate.
trait TenantScoped {
    fn tenant(&self) -> (&str, &str);
}

macro_rules! tenant_scoped {
    ($($request:ty),+) => {
        $(impl TenantScoped for $request {
            fn tenant(&self) -> (&str, &str) {
                (&self.project, &self.domain)
            }
        })+
    };
}

tenant_scoped!(
    wire::RegisterRequest,
    wire::ListEntitiesRequest,
    wire::ListExecutionsRequest
);

impl AdminApi {
    /// Every RPC goes through here (or `serve_limited`): its handler, and the one mapping of its error to
    /// a status. The trait methods below stay one line each.
    async fn serve<Req, Res>(
        &self,
        request: Request<Req>,
        handle: impl AsyncFnOnce(Req) -> ApiResult<Res>,
    ) -> Result<Response<Res>, Status> {
        into_status(handle(request.into_inner()).await)
    }

    /// `serve` for a tenant-scoped request: refused first when its tenant is over its API rate.
    async fn serve_limited<Req: TenantScoped, Res>(
        &self,
        request: Request<Req>,
        handle: impl AsyncFnOnce(Req) -> ApiResult<Res>,
    ) -> Result<Response<Res>, Status> {
        let request = request.into_inner();
        let (project, domain) = request.tenant();
        if let Err(error) = self.check_rate_limit(project, domain).await {
            return Err(error.into());
        }
        into_status(handle(request).await)
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn create_project(
        &self,
        request: Request<wire::CreateProjectRequest>,
    ) -> Result<Response<wire::CreateProjectResponse>, Status> {
        self.serve(request, async |request| self.create_project_rpc(request).await)
            .await
    }

    async fn list_projects(
        &self,
        request: Request<wire::ListProjectsRequest>,
    ) -> Result<Response<wire::ListProjectsResponse>, Status> {
        self.serve(request, async |request| self.list_projects_rpc(request).await)
            .await
    }

    async fn register_task(
        &self,
        request: Request<wire::RegisterRequest>,
    ) -> Result<Response<wire::RegisterResponse>, Status> {
        self.serve_limited(request, async |request| self.register_task_rpc(request).await)
            .await
    }

    async fn get_task(
        &self,
        request: Request<wire::GetEntityRequest>,
    ) -> Result<Response<wire::Task>, Status> {
        self.serve(request, async |request| self.get_task_rpc(request).await)
            .await
    }

    async fn list_tasks(
        &self,
        request: Request<wire::ListEntitiesRequest>,
    ) -> Result<Response<wire::ListTasksResponse>, Status> {
        self.serve_limited(request, async |request| self.list_tasks_rpc(request).await)
            .await
    }

    async fn register_workflow(
        &self,
        request: Request<wire::RegisterRequest>,
    ) -> Result<Response<wire::RegisterResponse>, Status> {
        self.serve_limited(request, async |request| self.register_workflow_rpc(request).await)
            .await
    }

    async fn get_workflow(
        &self,
        request: Request<wire::GetEntityRequest>,
    ) -> Result<Response<wire::Workflow>, Status> {
        self.serve(request, async |request| self.get_workflow_rpc(request).await)
            .await
    }

    async fn list_workflows(
        &self,
        request: Request<wire::ListEntitiesRequest>,
    ) -> Result<Response<wire::ListWorkflowsResponse>, Status> {
        self.serve_limited(request, async |request| self.list_workflows_rpc(request).await)
            .await
    }

    async fn register_launch_plan(
        &self,
        request: Request<wire::RegisterRequest>,
    ) -> Result<Response<wire::RegisterResponse>, Status> {
        self.serve_limited(request, async |request| {
            self.register_launch_plan_rpc(request).await
        })
        .await
    }

    async fn register_batch(
        &self,
        request: Request<wire::RegisterBatchRequest>,
    ) -> Result<Response<wire::RegisterBatchResponse>, Status> {
        self.serve(request, async |request| self.register_batch_rpc(request).await)
            .await
    }

    async fn get_launch_plan(
        &self,
        request: Request<wire::GetEntityRequest>,
    ) -> Result<Response<wire::LaunchPlan>, Status> {
        self.serve(request, async |request| self.get_launch_plan_rpc(request).await)
            .await
    }

    async fn list_launch_plans(
        &self,
        request: Request<wire::ListEntitiesRequest>,
    ) -> Result<Response<wire::ListLaunchPlansResponse>, Status> {
        self.serve_limited(request, async |request| self.list_launch_plans_rpc(request).await)
            .await
    }

    async fn activate_launch_plan(
        &self,
        request: Request<wire::GetEntityRequest>,
    ) -> Result<Response<wire::LaunchPlan>, Status> {
        into_status(self.set_launch_plan_active(request.into_inner().id, true).await)
    }

    async fn deactivate_launch_plan(
        &self,
        request: Request<wire::GetEntityRequest>,
    ) -> Result<Response<wire::LaunchPlan>, Status> {
        into_status(self.set_launch_plan_active(request.into_inner().id, false).await)
    }

    async fn define_pool(
        &self,
        request: Request<wire::DefinePoolRequest>,
    ) -> Result<Response<wire::DefinePoolResponse>, Status> {
        into_status(self.define_pool(request.into_inner()).await)
    }

    async fn set_tenant_quota(
        &self,
        request: Request<wire::SetTenantQuotaRequest>,
    ) -> Result<Response<wire::SetTenantQuotaResponse>, Status> {
        into_status(self.set_tenant_quota(request.into_inner()).await)
    }

    async fn set_notification_defaults(
        &self,
        request: Request<wire::SetNotificationDefaultsRequest>,
    ) -> Result<Response<wire::SetNotificationDefaultsResponse>, Status> {
        into_status(self.set_notification_defaults(request.into_inner()).await)
    }

    async fn create_execution(
        &self,
        request: Request<wire::CreateExecutionRequest>,
    ) -> Result<Response<wire::CreateExecutionResponse>, Status> {
        let span = launch_span("admin.CreateExecution", &request);
        let traceparent = span.traceparent().to_string();
        let request = request.into_inner();
        let result = self.create_execution_rpc(request, traceparent).await;
        traced_status(span, result)
    }

    async fn relaunch_execution(
        &self,
        request: Request<wire::RelaunchExecutionRequest>,
    ) -> Result<Response<wire::CreateExecutionResponse>, Status> {
        let span = launch_span("admin.RelaunchExecution", &request);
        let result = self
            .relaunch(request.into_inner(), span.traceparent().to_string())
            .await;
        traced_status(span, result)
    }

    async fn recover_execution(
        &self,
        request: Request<wire::RecoverExecutionRequest>,
    ) -> Result<Response<wire::CreateExecutionResponse>, Status> {
        let span = launch_span("admin.RecoverExecution", &request);
        let result = self
            .recover(request.into_inner(), span.traceparent().to_string())
            .await;
        traced_status(span, result)
    }

    async fn get_execution(
        &self,
        request: Request<wire::GetExecutionRequest>,
    ) -> Result<Response<wire::Execution>, Status> {
        self.serve(request, async |request| self.get_execution_rpc(request).await)
            .await
    }

    async fn list_executions(
        &self,
        request: Request<wire::ListExecutionsRequest>,
    ) -> Result<Response<wire::ListExecutionsResponse>, Status> {
        self.serve_limited(request, async |request| self.list_executions_rpc(request).await)
            .await
    }

    async fn count_executions(
        &self,
        request: Request<wire::ListExecutionsRequest>,
    ) -> Result<Response<wire::ExecutionCounts>, Status> {
        self.serve_limited(request, async |request| self.count_executions_rpc(request).await)
            .await
    }

    async fn list_node_executions(
        &self,
        request: Request<wire::ListNodeExecutionsRequest>,
    ) -> Result<Response<wire::ListNodeExecutionsResponse>, Status> {
        self.serve(request, async |request| {
            self.list_node_executions_rpc(request).await
        })
        .await
    }

    type WatchExecutionStream = HistoryStream;

    async fn watch_execution(
        &self,
        request: Request<wire::WatchExecutionRequest>,
    ) -> Result<Response<Self::WatchExecutionStream>, Status> {
        self.serve(request, async |request| self.watch_execution_rpc(request).await)
            .await
    }

    async fn get_execution_state(
        &self,
        request: Request<wire::GetExecutionStateRequest>,
    ) -> Result<Response<wire::Execution>, Status> {
        self.serve(request, async |request| {
            self.get_execution_state_rpc(request).await
        })
        .await
    }

    async fn get_execution_data(
        &self,
        request: Request<wire::GetExecutionRequest>,
    ) -> Result<Response<wire::ExecutionData>, Status> {
        self.serve(request, async |request| {
            self.get_execution_data_rpc(request).await
        })
        .await
    }

    async fn list_tenants(
        &self,
        request: Request<wire::ListTenantsRequest>,
    ) -> Result<Response<wire::ListTenantsResponse>, Status> {
        self.serve(request, async |request| self.list_tenants_rpc(request).await)
            .await
    }

    async fn list_deliveries(
        &self,
        request: Request<wire::ListDeliveriesRequest>,
    ) -> Result<Response<wire::ListDeliveriesResponse>, Status> {
        self.serve(request, async |request| self.list_deliveries_rpc(request).await)
            .await
    }

    async fn get_node_data(
        &self,
        request: Request<wire::GetNodeDataRequest>,
    ) -> Result<Response<wire::NodeData>, Status> {
        self.serve(request, async |request| self.get_node_data_rpc(request).await)
            .await
    }

    async fn terminate_execution(
        &self,
        request: Request<wire::TerminateExecutionRequest>,
    ) -> Result<Response<wire::TerminateExecutionResponse>, Status> {
        self.serve(request, async |request| {
            self.terminate_execution_rpc(request).await
        })
        .await
    }

    async fn signal_execution(
        &self,
        request: Request<wire::SignalExecutionRequest>,
    ) -> Result<Response<wire::SignalExecutionResponse>, Status> {
        into_status(self.send_signal(request.into_inner()).await)
    }

    async fn approve_execution(
        &self,
        request: Request<wire::ApproveExecutionRequest>,
    ) -> Result<Response<wire::ApproveExecutionResponse>, Status> {
        into_status(self.approve(request.into_inner()).await)
    }

    async fn get_execution_history(
        &self,
        request: Request<wire::GetExecutionRequest>,
    ) -> Result<Response<wire::ExecutionHistory>, Status> {
        self.serve(request, async |request| {
            self.get_execution_history_rpc(request).await
        })
        .await
    }

    type GetTaskLogsStream = TaskLogStream;
    type DownloadDataStream = DataStream;

    async fn get_data_url(
        &self,
        request: Request<wire::DownloadDataRequest>,
    ) -> Result<Response<wire::DataUrl>, Status> {
        self.serve(request, async |request| self.data_url_rpc(request).await)
            .await
    }

    async fn download_data(
        &self,
        request: Request<wire::DownloadDataRequest>,
    ) -> Result<Response<Self::DownloadDataStream>, Status> {
        self.serve(request, async |request| self.download_data_rpc(request).await)
            .await
    }

    async fn get_task_logs(
        &self,
        request: Request<wire::GetTaskLogsRequest>,
    ) -> Result<Response<Self::GetTaskLogsStream>, Status> {
        self.serve(request, async |request| self.task_logs_rpc(request).await)
            .await
    }

    async fn create_api_key(
        &self,
        request: Request<wire::CreateApiKeyRequest>,
    ) -> Result<Response<wire::CreateApiKeyResponse>, Status> {
        self.serve(request, async |request| self.create_api_key_rpc(request).await)
            .await
    }

    async fn list_api_keys(
        &self,
        request: Request<wire::ListApiKeysRequest>,
    ) -> Result<Response<wire::ListApiKeysResponse>, Status> {
        self.serve(request, async |request| self.list_api_keys_rpc(request).await)
            .await
    }

    async fn revoke_api_key(
        &self,
        request: Request<wire::RevokeApiKeyRequest>,
    ) -> Result<Response<wire::RevokeApiKeyResponse>, Status> {
        self.serve(request, async |request| self.revoke_api_key_rpc(request).await)
            .await
    }

    async fn bind_role(
        &self,
        request: Request<wire::BindRoleRequest>,
    ) -> Result<Response<wire::BindRoleResponse>, Status> {
        self.serve(request, async |request| self.bind_role_rpc(request).await)
            .await
    }

    async fn list_role_bindings(
        &self,
        request: Request<wire::ListRoleBindingsRequest>,
    ) -> Result<Response<wire::ListRoleBindingsResponse>, Status> {
        self.serve(request, async |request| {
            self.list_role_bindings_rpc(request).await
        })
        .await
    }

    async fn list_audit_events(
        &self,
        request: Request<wire::ListAuditEventsRequest>,
    ) -> Result<Response<wire::ListAuditEventsResponse>, Status> {
        self.serve(request, async |request| self.list_audit_events_rpc(request).await)
            .await
    }

    async fn who_am_i(
        &self,
        request: Request<wire::WhoAmIRequest>,
    ) -> Result<Response<wire::WhoAmIResponse>, Status> {
        self.serve(request, async |_| self.who_am_i_rpc().await).await
    }

    async fn get_auth_info(
        &self,
        _request: Request<wire::GetAuthInfoRequest>,
    ) -> Result<Response<wire::AuthInfo>, Status> {
        Ok(Response::new(self.auth_info()))
    }
}

/// The span of an API call that launches an execution: the root of the execution's trace, or a child of
/// the caller's span when the call carries a `traceparent`.
fn launch_span<T>(name: &'static str, request: &Request<T>) -> Span {
    Span::start(name, &trace::from_grpc(request.metadata()), true, &[])
}

/// Ends the call's span (failed when the call failed) and answers it.
#[allow(clippy::result_large_err)] // the RPC's own error type, as `into_status`
fn traced_status<T>(mut span: Span, result: ApiResult<T>) -> Result<Response<T>, Status> {
    if let Err(error) = &result {
        span.fail(&error.to_string());
    }
    drop(span);
    into_status(result)
}
