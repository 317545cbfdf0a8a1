//! The AdminService gRPC API. Write RPCs validate, append one event, wait until admin's own projection has
//! applied it (bounded), and answer from the projection: created, already exists with identical content
//! (idempotent), conflict (ALREADY_EXISTS) or invalid (INVALID_ARGUMENT naming the field).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use aloft_core::compiler::{compile_workflow_with, ChildPlan, CompiledWorkflow, Registry};
use aloft_core::events::{ExecutionEvent, Outputs, RegistryEvent};
use aloft_core::ids::validate_name;
use aloft_core::spec::{
    content_digest, identifier_for, LaunchPlanSpec, ProjectSpec, TaskRef, TaskSpec, WorkflowSpec,
};
use aloft_core::{ExecutionId, Identifier, LiteralType};
use aloft_eventlog::{Envelope, EventLog, Payload, Position, Topics};
use aloft_proto::v1 as wire;
use aloft_proto::v1::admin_service_server::AdminService;
use aloft_store::Store;
use aloft_telemetry::trace::{self, Span};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::convert::*;
use crate::error::{ApiError, ApiResult};
use crate::history::summarize;
use crate::metrics;
use crate::projector::Progress;

mod access;
mod download;
mod executions;
mod listing;
mod live;
mod logs;
mod notifications;
mod quotas;
mod reads;
mod registry;
mod signals;

/// The bytes of a blob as `DownloadData` streams them.
pub type DataStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<wire::DataChunk, Status>> + Send>>;
/// An attempt's log as `GetTaskLogs` streams it.
pub type TaskLogStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<wire::TaskLogChunk, Status>> + Send>>;

/// The events of an execution as `WatchExecution` streams them.
pub type HistoryStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<wire::HistoryEvent, Status>> + Send>>;

#[derive(Clone)]
pub struct AdminApi {
    pub store: Store,
    pub log: Arc<dyn EventLog>,
    pub topics: Topics,
    pub progress: watch::Receiver<Progress>,
    pub projection_wait: Duration,
    /// Per-tenant API rate limits, when configured.
    pub rate_limiter: Option<Arc<dyn aloft_fairq::ratelimit::TenantRateLimiter>>,
    /// Where task logs (and blob outputs) are read from; `None`: log requests are refused.
    pub blobs: Option<aloft_blobstore::BlobStore>,
    /// Who may call: the guard in front of this API admits callers; handlers read the caller and policy.
    pub access: Arc<aloft_auth::access::AccessControl>,
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::InvalidArgument(message.into())
}

fn parse_spec<T: serde::de::DeserializeOwned>(kind: &str, spec_json: &str) -> ApiResult<T> {
    let spec = serde_json::from_str(spec_json).map_err(|e| invalid(format!("invalid {kind} spec: {e}")))?;
    aloft_core::spec::reject_duplicate_keys(spec_json)
        .map_err(|e| invalid(format!("invalid {kind} spec: {e}")))?;
    Ok(spec)
}

fn execution_name() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let tail: String = (0..11)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("a{tail}")
}

impl AdminApi {
    /// Refuses the call when `project/domain` is over its API rate (RESOURCE_EXHAUSTED with retry-after).
    async fn check_rate_limit(&self, project: &str, domain: &str) -> ApiResult<()> {
        let Some(limiter) = &self.rate_limiter else {
            return Ok(());
        };
        let tenant = aloft_fairq::Tenant::new(project, domain);
        limiter.check(&tenant).await.map_err(|retry_after| {
            metrics::RATE_LIMITED.increment(&[("tenant", &tenant.to_string())], 1.0);
            ApiError::ResourceExhausted {
                message: format!(
                    "{tenant} is over its API rate limit; retry after {} ms",
                    retry_after.as_millis().max(1)
                ),
                retry_after,
            }
        })
    }

    /// Appends `envelope`, recorded as caused by the request's caller (every event an API request writes
    /// goes through here, so each one says who asked).
    async fn append(&self, topic: &str, key: &str, envelope: Envelope) -> ApiResult<Position> {
        let caller = aloft_auth::access::recorded_principal();
        let record = envelope.by(caller).encode()?;
        Ok(self.log.append(topic, key, record).await?)
    }

    /// Read-your-writes: waits until the projection has applied the record at `position`.
    async fn wait_projected(&self, topic: &str, position: Position) -> ApiResult<()> {
        let mut progress = self.progress.clone();
        let key = (topic.to_string(), position.partition);
        let applied = async {
            progress
                .wait_for(|p| p.get(&key).is_some_and(|next| *next > position.offset))
                .await
                .map(|_| ())
        };
        match tokio::time::timeout(self.projection_wait, applied).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(ApiError::Unavailable("the projector stopped".to_string())),
            Err(_) => Err(ApiError::Unavailable(format!(
                "the write was appended (offset {}) but the read model has not caught up within {:?}; retry the read",
                position.offset, self.projection_wait
            ))),
        }
    }

    async fn append_registry(&self, event: RegistryEvent) -> ApiResult<()> {
        let stream = event.stream();
        let envelope = Envelope::unsequenced(stream.clone(), event.at(), Payload::Registry(event));
        let position = self.append(&self.topics.registry, &stream, envelope).await?;
        self.wait_projected(&self.topics.registry, position).await
    }

    /// The read model's row of execution `id`, or NOT_FOUND naming it.
    async fn execution_row(&self, id: &ExecutionId) -> ApiResult<aloft_store::queries::ExecutionRow> {
        self.store
            .get_execution(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("execution {id} not found")))
    }

    async fn require_domain(&self, project: &str, domain: &str) -> ApiResult<()> {
        validate_name("project", project).map_err(|e| invalid(e.to_string()))?;
        validate_name("domain", domain).map_err(|e| invalid(e.to_string()))?;
        let Some(row) = self.store.get_project(project).await? else {
            return Err(ApiError::NotFound(format!(
                "project {project:?} does not exist; create it first (aloft project create {project})"
            )));
        };
        if !row.spec.domains.iter().any(|d| d == domain) {
            return Err(invalid(format!(
                "project {project:?} has no domain {domain:?}; its domains are {}",
                row.spec.domains.join(", ")
            )));
        }
        Ok(())
    }

    /// Compares an existing registration with a new one: identical is fine, different is a conflict.
    fn outcome(
        kind: &str,
        id: &Identifier,
        existing_digest: Option<&str>,
        digest: &str,
    ) -> ApiResult<Option<wire::WriteOutcome>> {
        match existing_digest {
            None => Ok(None),
            Some(existing) if existing == digest => Ok(Some(wire::WriteOutcome::AlreadyExistsIdentical)),
            Some(_) => Err(ApiError::AlreadyExists(format!(
                "{kind} {id} is already registered with different content; versions are immutable, register a new version"
            ))),
        }
    }
}

/// The identifier a get request names; it is required.
fn required_id(request: wire::GetEntityRequest) -> ApiResult<wire::Identifier> {
    request.id.ok_or_else(|| invalid("id is required"))
}

/// The version a request names; empty means the latest registered.
fn requested_version(id: &wire::Identifier) -> Option<&str> {
    (!id.version.is_empty()).then_some(id.version.as_str())
}

/// A list request narrowed to one name (every version of it), or all names when empty.
fn optional_name(request: &wire::ListEntitiesRequest) -> Option<&str> {
    (!request.name.is_empty()).then_some(request.name.as_str())
}

fn not_found(kind: &str, id: &wire::Identifier) -> ApiError {
    ApiError::NotFound(format!(
        "{kind} {:?} not found in {}/{}",
        id.name, id.project, id.domain
    ))
}

// tonic fixes the error type of every RPC to `Status`, however large.
#[allow(clippy::result_large_err)]
fn into_status<T>(result: ApiResult<T>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

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
