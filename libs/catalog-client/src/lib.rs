//! The catalog's client, shared by the propeller (memoization: look up or reserve, store, release) and the
//! CLI (lineage and evictions, through `raw`). It owns how a connection to the catalog is made (address
//! forms, timeouts, message size) and turns answers into domain values, refusing malformed ones with an
//! error that says what was wrong. It holds no state beyond the connection.

use std::time::Duration;

use aloft_core::cache::ProducedBy;
use aloft_core::events::Outputs;
use aloft_core::ExecutionId;
use aloft_proto::bearer::Bearer;
use aloft_proto::v1 as wire;
use aloft_proto::v1::catalog_service_client::CatalogServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// The generated gRPC client, for the calls this crate does not wrap (lineage, evictions, listings).
pub type RawClient = CatalogServiceClient<InterceptedService<Channel, Bearer>>;

/// Catalog answers carry whole cached outputs.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("invalid catalog address {url:?}: {reason}")]
    BadAddress { url: String, reason: String },
    #[error("cannot reach the catalog at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The catalog answered the call with an error status.
    #[error("catalog: {0}")]
    Call(String),
    /// The catalog answered something that is not a valid answer.
    #[error("the catalog answered {0}")]
    BadAnswer(String),
    #[error("cannot encode the outputs to store: {0}")]
    Encode(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a lookup found.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Hit {
        outputs: Outputs,
        source: ProducedBy,
    },
    /// Nothing stored; the caller now holds the reservation and runs the task.
    Reserved,
    /// Nothing stored; `owner` holds the reservation and runs it.
    Held {
        owner: String,
    },
    Miss,
}

/// A result to store under `key`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResult {
    pub key: String,
    pub task_name: String,
    pub cache_version: String,
    pub task_version: String,
    pub outputs: Outputs,
    pub produced_by: ProducedBy,
    pub at: i64,
}

/// A connection to the catalog (cheap to clone).
#[derive(Clone)]
pub struct CatalogClient {
    channel: Channel,
    raw: RawClient,
}

/// `url` with a scheme (`HOST:PORT` means `http://HOST:PORT`).
fn endpoint(url: &str) -> Result<(String, Endpoint)> {
    let url = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    let endpoint = Endpoint::from_shared(url.clone()).map_err(|e| Error::BadAddress {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    let endpoint = aloft_proto::client_tls::secure(endpoint).map_err(|e| Error::BadAddress {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    Ok((url, endpoint))
}

impl CatalogClient {
    /// Connects on first use, so a propeller starts (and degrades to running cached tasks) while the
    /// catalog is down. Calls time out after 10 s.
    pub fn lazy(url: &str) -> Result<CatalogClient> {
        let (_, endpoint) = endpoint(url)?;
        let channel = endpoint
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(10))
            .connect_lazy();
        Ok(CatalogClient::over(channel))
    }

    /// Connects now, failing with a clear error when the catalog cannot be reached (for the CLI).
    pub async fn connect(url: &str) -> Result<CatalogClient> {
        let (url, endpoint) = endpoint(url)?;
        let channel = endpoint
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| Error::Unreachable {
                url,
                reason: e.to_string(),
            })?;
        Ok(CatalogClient::over(channel))
    }

    fn over(channel: Channel) -> CatalogClient {
        CatalogClient {
            raw: CatalogServiceClient::with_interceptor(channel.clone(), Bearer::default())
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            channel,
        }
    }

    /// This connection, sending `credential` (a service token for a propeller, a user's token or API key
    /// for the CLI) with every call.
    pub fn with_credential(self, credential: Option<&str>) -> Result<CatalogClient> {
        let bearer = Bearer::new(credential).map_err(|e| Error::Call(e.to_string()))?;
        Ok(CatalogClient {
            raw: CatalogServiceClient::with_interceptor(self.channel.clone(), bearer)
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            channel: self.channel,
        })
    }

    /// The generated client on this connection.
    pub fn raw(&self) -> RawClient {
        self.raw.clone()
    }

    /// Looks `key` up; with `reserve`, takes the reservation for `(owner, ttl)` on a miss (or extends it).
    pub async fn get_or_reserve(&self, key: &str, reserve: Option<(&str, Duration)>) -> Result<Lookup> {
        let request = traced(wire::GetOrReserveRequest {
            key: key.to_string(),
            reserve: reserve.is_some(),
            owner: reserve.map(|(owner, _)| owner.to_string()).unwrap_or_default(),
            reservation_ttl_millis: reserve.map(|(_, ttl)| ttl.as_millis() as i64).unwrap_or(0),
        });
        let response = self
            .raw
            .clone()
            .get_or_reserve(request)
            .await
            .map_err(|status| Error::Call(status.message().to_string()))?
            .into_inner();
        use wire::get_or_reserve_response::Result as Answer;
        Ok(match response.result {
            Some(Answer::Hit(entry)) => {
                let outputs: Outputs = serde_json::from_str(&entry.outputs_json)
                    .map_err(|e| Error::BadAnswer(format!("unreadable outputs for {key}: {e}")))?;
                let execution = entry
                    .execution
                    .as_ref()
                    .ok_or_else(|| Error::BadAnswer(format!("a hit for {key} without its execution")))?;
                let execution = ExecutionId::try_from(execution)
                    .map_err(|e| Error::BadAnswer(format!("a hit for {key} of {e}")))?;
                Lookup::Hit {
                    outputs,
                    source: ProducedBy {
                        execution,
                        node: entry.node,
                        attempt: entry.attempt,
                    },
                }
            }
            Some(Answer::Reserved(_)) => Lookup::Reserved,
            Some(Answer::Held(reservation)) => Lookup::Held {
                owner: reservation.owner,
            },
            Some(Answer::Miss(_)) | None => Lookup::Miss,
        })
    }

    /// Stores `entry` (replacing what is stored under its key with `overwrite`).
    pub async fn put(&self, entry: StoredResult, overwrite: bool) -> Result<()> {
        let outputs_json = serde_json::to_string(&entry.outputs).map_err(|e| Error::Encode(e.to_string()))?;
        let execution = &entry.produced_by.execution;
        let request = traced(wire::PutRequest {
            entry: Some(wire::CacheEntry {
                key: entry.key.clone(),
                project: execution.project.clone(),
                domain: execution.domain.clone(),
                task_name: entry.task_name.clone(),
                cache_version: entry.cache_version.clone(),
                outputs_json,
                execution: Some(wire::ExecutionIdentifier::from(execution)),
                node: entry.produced_by.node.clone(),
                attempt: entry.produced_by.attempt,
                task_version: entry.task_version.clone(),
                created_at_millis: entry.at,
            }),
            overwrite,
        });
        self.raw
            .clone()
            .put(request)
            .await
            .map(|_| ())
            .map_err(|status| Error::Call(status.message().to_string()))
    }

    /// Gives up `owner`'s reservation of `key`, so a waiter runs the task now.
    pub async fn release(&self, key: &str, owner: &str) -> Result<()> {
        let request = traced(wire::ReleaseReservationRequest {
            key: key.to_string(),
            owner: owner.to_string(),
        });
        self.raw
            .clone()
            .release_reservation(request)
            .await
            .map(|_| ())
            .map_err(|status| Error::Call(status.message().to_string()))
    }
}

/// A catalog call carrying the trace context of the operation it serves.
fn traced<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    aloft_telemetry::trace::to_grpc(request.metadata_mut());
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_without_a_scheme_is_http_and_a_malformed_one_is_named() {
        let url = endpoint("127.0.0.1:7000").map(|(url, _)| url);
        assert_eq!(url, Ok("http://127.0.0.1:7000".to_string()));
        let error = endpoint("http://bad host:1")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.starts_with("invalid catalog address \"http://bad host:1\""),
            "{error}"
        );
    }
}
