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
use aloft_store::Store;
use tokio::sync::watch;
use tonic::{Response, Status};

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
mod service;
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

/// How long a write waits for the event log's acknowledgement before answering UNAVAILABLE.
const APPEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The caller's mistake, as the API answers it: a message or a library's typed validation error.
fn invalid(message: impl std::fmt::Display) -> ApiError {
    ApiError::InvalidArgument(message.to_string())
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
        // While the broker is out of reach the producer keeps the record queued (up to its message timeout):
        // the caller hears UNAVAILABLE in seconds instead of waiting on it.
        match tokio::time::timeout(APPEND_TIMEOUT, self.log.append(topic, key, record)).await {
            Ok(appended) => Ok(appended?),
            Err(_) => Err(ApiError::Unavailable(format!(
                "the event log did not acknowledge the write within {APPEND_TIMEOUT:?} (the broker may be down or \
                 restarting); it may still be recorded when the broker returns, so check before retrying, or retry \
                 with the same execution name, which never runs twice"
            ))),
        }
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

    /// The projects the caller may read (a platform admin, or anyone with authentication off, all): what
    /// ListProjects and ListTenants answer about.
    async fn visible_projects(&self) -> ApiResult<Vec<aloft_store::queries::ProjectRow>> {
        let mut projects = self.store.list_projects().await?;
        if let Some(caller) = aloft_auth::access::current_caller() {
            if let Some(readable) = caller.readable_projects(&*self.access.policy().await?) {
                projects.retain(|row| readable.contains(&row.spec.name));
            }
        }
        Ok(projects)
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
