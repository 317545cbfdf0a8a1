//! The catalog's gRPC API: cache lookups with reservations, puts, evictions and lineage queries.

use std::sync::Arc;

use crate::store::cache::{self, CacheEntry, Eviction, Lookup};
use crate::store::lineage::{self, Lineage, LineageError};
use aloft_core::events::{Outputs, RegistryEvent};
use aloft_core::ids::validate_name;
use aloft_core::ExecutionId;
use aloft_eventlog::{Envelope, EventLog, Payload, Topics};
use aloft_proto::status::ServiceError;
use aloft_proto::v1 as wire;
use aloft_proto::v1::catalog_service_server::CatalogService;
use aloft_store::Store;
use tonic::{Request, Response, Status};

use crate::metrics;

pub struct CatalogApi {
    pub store: Store,
    pub log: Arc<dyn EventLog>,
    pub topics: Topics,
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A storage failure as callers see it: the code the shared error mapping gives its kind (the database being
/// down is UNAVAILABLE, a corrupt row INTERNAL), the message saying where it happened.
fn internal(error: impl Into<aloft_store::Error>) -> Status {
    let error = error.into();
    Status::new(error.error_code().grpc(), format!("catalog storage: {error}"))
}

fn entry_to_wire(entry: &CacheEntry) -> wire::CacheEntry {
    wire::CacheEntry {
        key: entry.key.clone(),
        project: entry.project.clone(),
        domain: entry.domain.clone(),
        task_name: entry.task_name.clone(),
        cache_version: entry.cache_version.clone(),
        outputs_json: serde_json::to_string(&entry.outputs).unwrap_or_default(),
        execution: Some(wire::ExecutionIdentifier::from(&entry.execution)),
        node: entry.node.clone(),
        attempt: entry.attempt,
        task_version: entry.task_version.clone(),
        created_at_millis: entry.created_at,
    }
}

/// A request the catalog refuses as malformed (INVALID_ARGUMENT); a `Status` is too large to pass around.
#[derive(Debug, thiserror::Error)]
enum RequestError {
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("cache key {key:?} is malformed: expected 64 hex digits")]
    MalformedKey { key: String },
    #[error("entry.execution is required")]
    NoExecution,
    #[error("entry.execution: {0}")]
    Execution(String),
    #[error("entry.project/domain must be those of entry.execution")]
    OtherTenant,
    #[error("entry.outputs_json is not a map of Aloft values: {0}")]
    Outputs(String),
}

impl aloft_proto::status::ServiceError for RequestError {
    fn error_code(&self) -> aloft_proto::status::ErrorCode {
        aloft_proto::status::ErrorCode::InvalidArgument
    }
}

fn invalid(error: RequestError) -> Status {
    aloft_proto::status::grpc_status(&error)
}

fn require(field: &'static str, value: &str) -> Result<(), RequestError> {
    if value.trim().is_empty() {
        return Err(RequestError::Empty { field });
    }
    Ok(())
}

fn require_key(key: &str) -> Result<(), RequestError> {
    let well_formed = key.len() == 64 && key.chars().all(|c| c.is_ascii_hexdigit());
    if !well_formed {
        return Err(RequestError::MalformedKey { key: key.to_string() });
    }
    Ok(())
}

fn entry_from_wire(entry: wire::CacheEntry) -> Result<CacheEntry, RequestError> {
    require_key(&entry.key)?;
    require("task_name", &entry.task_name)?;
    require("cache_version", &entry.cache_version)?;
    let execution = entry.execution.ok_or(RequestError::NoExecution)?;
    let execution = ExecutionId::try_from(&execution).map_err(|e| RequestError::Execution(e.to_string()))?;
    if execution.project != entry.project || execution.domain != entry.domain {
        return Err(RequestError::OtherTenant);
    }
    let outputs: Outputs =
        serde_json::from_str(&entry.outputs_json).map_err(|e| RequestError::Outputs(e.to_string()))?;
    Ok(CacheEntry {
        key: entry.key,
        project: entry.project,
        domain: entry.domain,
        task_name: entry.task_name,
        cache_version: entry.cache_version,
        outputs,
        execution,
        node: entry.node,
        attempt: entry.attempt,
        task_version: entry.task_version,
        created_at: entry.created_at_millis,
    })
}

fn lineage_to_wire(lineage: Lineage) -> wire::GetLineageResponse {
    wire::GetLineageResponse {
        selected: lineage.selected,
        artifacts: lineage
            .artifacts
            .into_values()
            .map(|artifact| wire::Artifact {
                id: artifact.id,
                execution: Some(wire::ExecutionIdentifier::from(&artifact.execution)),
                node: artifact.node,
                output: artifact.output,
                value_json: artifact.value_json,
                r#type: artifact.type_text,
                attempt: artifact.attempt,
                task: artifact.task,
                cached_from: artifact.cached_from,
                created_at_millis: artifact.created_at,
            })
            .collect(),
        edges: lineage
            .edges
            .into_iter()
            .map(|edge| wire::LineageEdge {
                from: edge.from,
                to: edge.to,
                relation: edge.relation,
            })
            .collect(),
        partial: lineage.partial_reason.is_some(),
        partial_reason: lineage.partial_reason.unwrap_or_default(),
    }
}

/// The span of a call made for a task attempt: a child of the attempt's span in the execution's trace.
fn call_span<T>(name: &'static str, request: &Request<T>) -> aloft_telemetry::trace::Span {
    let parent = aloft_telemetry::trace::from_grpc(request.metadata());
    aloft_telemetry::trace::Span::start(name, &parent, true, &[])
}

#[tonic::async_trait]
impl CatalogService for CatalogApi {
    async fn get_or_reserve(
        &self,
        request: Request<wire::GetOrReserveRequest>,
    ) -> Result<Response<wire::GetOrReserveResponse>, Status> {
        let _span = call_span("catalog.GetOrReserve", &request);
        let request = request.into_inner();
        require_key(&request.key).map_err(invalid)?;
        let reserve = if request.reserve {
            require("owner", &request.owner).map_err(invalid)?;
            if request.reservation_ttl_millis <= 0 {
                return Err(Status::invalid_argument(
                    "reservation_ttl_millis must be positive",
                ));
            }
            Some((request.owner.as_str(), request.reservation_ttl_millis))
        } else {
            None
        };
        let lookup = cache::get_or_reserve(self.store.pool(), &request.key, reserve, now_millis())
            .await
            .map_err(internal)?;
        use wire::get_or_reserve_response::Result as Answer;
        let (label, result) = match lookup {
            Lookup::Hit(entry) => ("hit", Answer::Hit(entry_to_wire(&entry))),
            Lookup::Reserved { owner, expires_at } => (
                "reserved",
                Answer::Reserved(wire::Reservation {
                    key: request.key.clone(),
                    owner,
                    expires_at_millis: expires_at,
                }),
            ),
            Lookup::Held { owner, expires_at } => (
                "held",
                Answer::Held(wire::Reservation {
                    key: request.key.clone(),
                    owner,
                    expires_at_millis: expires_at,
                }),
            ),
            Lookup::Miss => ("miss", Answer::Miss(true)),
        };
        metrics::LOOKUPS.increment(&[("result", label)], 1.0);
        Ok(Response::new(wire::GetOrReserveResponse { result: Some(result) }))
    }

    async fn put(&self, request: Request<wire::PutRequest>) -> Result<Response<wire::PutResponse>, Status> {
        let _span = call_span("catalog.Put", &request);
        let request = request.into_inner();
        let entry = entry_from_wire(
            request
                .entry
                .ok_or_else(|| Status::invalid_argument("entry is required"))?,
        )
        .map_err(invalid)?;
        // The owner the propeller reserved with: the attempt that produced the entry.
        let owner = aloft_core::cache::ProducedBy {
            execution: entry.execution.clone(),
            node: entry.node.clone(),
            attempt: entry.attempt,
        }
        .to_string();
        let mut connection = self.store.pool().acquire().await.map_err(internal)?;
        let stored = cache::put_entry(&mut connection, &entry, request.overwrite)
            .await
            .map_err(internal)?;
        drop(connection);
        cache::release_reservation(self.store.pool(), &entry.key, &owner)
            .await
            .map_err(internal)?;
        metrics::PUTS.increment(
            &[("result", if stored { "stored" } else { "kept_existing" })],
            1.0,
        );
        Ok(Response::new(wire::PutResponse { stored }))
    }

    async fn release_reservation(
        &self,
        request: Request<wire::ReleaseReservationRequest>,
    ) -> Result<Response<wire::ReleaseReservationResponse>, Status> {
        let _span = call_span("catalog.ReleaseReservation", &request);
        let request = request.into_inner();
        require_key(&request.key).map_err(invalid)?;
        require("owner", &request.owner).map_err(invalid)?;
        let released = cache::release_reservation(self.store.pool(), &request.key, &request.owner)
            .await
            .map_err(internal)?;
        Ok(Response::new(wire::ReleaseReservationResponse { released }))
    }

    async fn evict(
        &self,
        request: Request<wire::EvictRequest>,
    ) -> Result<Response<wire::EvictResponse>, Status> {
        let request = request.into_inner();
        validate_name("project", &request.project).map_err(|e| Status::invalid_argument(e.to_string()))?;
        validate_name("domain", &request.domain).map_err(|e| Status::invalid_argument(e.to_string()))?;
        validate_name("task name", &request.task_name)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if !request.key.is_empty() {
            require_key(&request.key).map_err(invalid)?;
        }
        let at = now_millis();
        let eviction = Eviction {
            project: request.project,
            domain: request.domain,
            task_name: request.task_name,
            cache_version: request.cache_version,
            key: request.key,
            at,
        };
        // Counted first: the projector may apply the logged eviction before this handler does.
        let evicted = cache::count_evictable(self.store.pool(), &eviction)
            .await
            .map_err(internal)?;
        let event = RegistryEvent::CacheEvicted {
            project: eviction.project.clone(),
            domain: eviction.domain.clone(),
            task_name: eviction.task_name.clone(),
            cache_version: eviction.cache_version.clone(),
            key: eviction.key.clone(),
            at,
        };
        // The eviction is an event first, so replaying the log keeps the results evicted; applying it here
        // too makes it visible at once (whichever applies second removes nothing more).
        let stream = event.stream();
        let caller = aloft_auth::access::recorded_principal();
        let envelope = Envelope::unsequenced(stream.clone(), at, Payload::Registry(event)).by(caller);
        let record = envelope
            .encode()
            .map_err(|error| aloft_proto::status::grpc_status(&error))?;
        self.log
            .append(&self.topics.registry, &stream, record)
            .await
            .map_err(|e| Status::unavailable(format!("cannot record the eviction on the log: {e}")))?;
        let mut connection = self.store.pool().acquire().await.map_err(internal)?;
        cache::evict(&mut connection, &eviction).await.map_err(internal)?;
        Ok(Response::new(wire::EvictResponse { evicted }))
    }

    async fn list_cache_entries(
        &self,
        request: Request<wire::ListCacheEntriesRequest>,
    ) -> Result<Response<wire::ListCacheEntriesResponse>, Status> {
        let request = request.into_inner();
        validate_name("project", &request.project).map_err(|e| Status::invalid_argument(e.to_string()))?;
        validate_name("domain", &request.domain).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let limit = if request.limit == 0 { 100 } else { request.limit };
        let entries = cache::list_entries(
            self.store.pool(),
            &request.project,
            &request.domain,
            &request.task_name,
            limit,
        )
        .await
        .map_err(internal)?;
        Ok(Response::new(wire::ListCacheEntriesResponse {
            entries: entries.iter().map(entry_to_wire).collect(),
        }))
    }

    async fn get_lineage(
        &self,
        request: Request<wire::GetLineageRequest>,
    ) -> Result<Response<wire::GetLineageResponse>, Status> {
        let request = request.into_inner();
        let execution = request
            .execution
            .ok_or_else(|| Status::invalid_argument("execution is required"))?;
        let execution = ExecutionId {
            project: execution.project,
            domain: execution.domain,
            name: execution.name,
        };
        execution
            .validate()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if request.node.is_empty() && !request.output.is_empty() {
            return Err(Status::invalid_argument(
                "an output needs its node: EXECUTION/NODE/OUTPUT",
            ));
        }
        let node = (!request.node.is_empty()).then_some(request.node.as_str());
        let output = (!request.output.is_empty()).then_some(request.output.as_str());
        match lineage::lineage(self.store.pool(), &execution, node, output, request.depth).await {
            Ok(lineage) => Ok(Response::new(lineage_to_wire(lineage))),
            Err(error @ LineageError::UnknownExecution(_)) => Err(Status::not_found(error.to_string())),
            Err(error @ (LineageError::UnknownNode { .. } | LineageError::UnknownOutput { .. })) => {
                Err(Status::not_found(error.to_string()))
            }
            Err(LineageError::Store(error)) => Err(internal(error)),
        }
    }
}
