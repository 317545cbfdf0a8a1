//! Memoization around one attempt: a cached task asks the catalog before it runs and stores its result
//! after. The engine asks for most cached tasks before it even decides to start them (see
//! `looked_up_before_start`): a hit then succeeds the node in the same decision, and a miss is handed to the
//! attempt as its `PriorLookup`. With `serialize`, concurrent
//! attempts with one key run once (the reservation holder runs, the others wait for its result, and take
//! over if its reservation expires). A catalog that cannot be reached degrades to running the task.

use std::sync::Arc;
use std::time::Duration;

pub use aloft_catalog_client::{CatalogClient, Error as CatalogError, Lookup, StoredResult};
use aloft_core::cache::{cache_key, CacheOutcome, CacheStatus, ProducedBy};
use aloft_core::events::Outputs;
use aloft_core::spec::TaskSpec;
use aloft_core::ExecutionId;
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::executor::{AttemptOutcome, AttemptRequest, Executors};
use crate::metrics;

/// What the memoizer needs from the catalog: the shared catalog client in production, anything in tests.
pub trait Catalog: Send + Sync {
    fn get_or_reserve(
        &self,
        key: &str,
        reserve: Option<(&str, Duration)>,
    ) -> BoxFuture<'static, Result<Lookup, CatalogError>>;
    fn put(&self, entry: StoredResult, overwrite: bool) -> BoxFuture<'static, Result<(), CatalogError>>;
    fn release(&self, key: &str, owner: &str) -> BoxFuture<'static, Result<(), CatalogError>>;
}

impl Catalog for CatalogClient {
    fn get_or_reserve(
        &self,
        key: &str,
        reserve: Option<(&str, Duration)>,
    ) -> BoxFuture<'static, Result<Lookup, CatalogError>> {
        let (client, key) = (self.clone(), key.to_string());
        let reserve = reserve.map(|(owner, ttl)| (owner.to_string(), ttl));
        async move {
            let reserve = reserve.as_ref().map(|(owner, ttl)| (owner.as_str(), *ttl));
            client.get_or_reserve(&key, reserve).await
        }
        .boxed()
    }

    fn put(&self, entry: StoredResult, overwrite: bool) -> BoxFuture<'static, Result<(), CatalogError>> {
        let client = self.clone();
        async move { client.put(entry, overwrite).await }.boxed()
    }

    fn release(&self, key: &str, owner: &str) -> BoxFuture<'static, Result<(), CatalogError>> {
        let (client, key, owner) = (self.clone(), key.to_string(), owner.to_string());
        async move { client.release(&key, &owner).await }.boxed()
    }
}

/// How memoization behaves; the defaults suit production.
#[derive(Debug, Clone)]
pub struct MemoOptions {
    /// A serialized run's reservation lasts this long without a heartbeat; after its holder dies, a waiter
    /// takes over within about this long.
    pub reservation_ttl: Duration,
    /// How often a waiting attempt asks again.
    pub wait_interval: Duration,
}

impl Default for MemoOptions {
    fn default() -> Self {
        MemoOptions {
            reservation_ttl: Duration::from_secs(30),
            wait_interval: Duration::from_millis(250),
        }
    }
}

/// How one attempt ended, with what the cache did and the time to record (the same time the result was
/// stored under, so the catalog's replay of the log stores the very same entry).
pub struct MemoizedAttempt {
    pub outcome: AttemptOutcome,
    pub cache: Option<CacheOutcome>,
    pub finished_at: i64,
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn finished(outcome: AttemptOutcome, cache: Option<CacheOutcome>) -> MemoizedAttempt {
    MemoizedAttempt {
        outcome,
        cache,
        finished_at: now_millis(),
    }
}

/// What the engine's lookup before `AttemptStarted` found, for an attempt that must run (a hit never
/// becomes an attempt that runs).
#[derive(Debug, Clone, PartialEq)]
pub enum PriorLookup {
    Missed,
    Failed(CatalogError),
}

/// Whether the engine looks a node's result up before deciding to start it, so that a hit is decided in
/// one step (`AttemptStarted` and `AttemptSucceeded` together): cached tasks that are not serialized
/// (a reservation is a write, which must follow its deciding event) and not overwritten.
pub fn looked_up_before_start(task: &TaskSpec, overwrite_cache: bool) -> bool {
    task.cache.as_ref().is_some_and(|config| !config.serialize) && !overwrite_cache
}

/// The cache key of running `task` with `inputs` for `execution` (`None`: the task is not cached).
pub fn key_for(execution: &ExecutionId, task: &TaskSpec, inputs: &Outputs) -> Option<String> {
    let config = task.cache.as_ref()?;
    Some(cache_key(
        &execution.project,
        &execution.domain,
        &task.name,
        config,
        &task.interface,
        inputs,
    ))
}

/// Runs one attempt, through the cache when its task is cached. `prior`: the lookup already made for it.
pub async fn run_attempt(
    executors: Executors,
    catalog: Option<Arc<dyn Catalog>>,
    options: MemoOptions,
    request: AttemptRequest,
    overwrite_cache: bool,
    mut prior: Option<PriorLookup>,
    cancel: CancellationToken,
) -> MemoizedAttempt {
    let Some(config) = request.task.cache.clone() else {
        return finished(executors.run(request, cancel).await, None);
    };
    let key = cache_key(
        &request.execution.project,
        &request.execution.domain,
        &request.task.name,
        &config,
        &request.task.interface,
        &request.inputs,
    );
    let outcome_with = |status: CacheStatus, source: Option<ProducedBy>| CacheOutcome {
        key: key.clone(),
        status,
        source,
    };
    let Some(catalog) = catalog else {
        warn!(execution = %request.execution, node = %request.node_id, "task is cached but no catalog is configured; running it");
        let outcome = executors.run(request, cancel).await;
        return finished(outcome, Some(outcome_with(CacheStatus::LookupFailure, None)));
    };
    let produced_by = ProducedBy {
        execution: request.execution.clone(),
        node: request.node_id.clone(),
        attempt: request.attempt,
    };
    let owner = produced_by.to_string();
    let stored = |outputs: &Outputs, at: i64| StoredResult {
        key: key.clone(),
        task_name: request.task.name.clone(),
        cache_version: config.version.clone(),
        task_version: request.task_version.clone(),
        outputs: outputs.clone(),
        produced_by: produced_by.clone(),
        at,
    };

    if overwrite_cache {
        let outcome = executors.run(request.clone(), cancel).await;
        let at = now_millis();
        let status = match &outcome {
            AttemptOutcome::Succeeded(outputs) => match catalog.put(stored(outputs, at), true).await {
                Ok(()) => CacheStatus::Skipped,
                Err(error) => {
                    warn!(execution = %request.execution, node = %request.node_id, %error, "cannot store the overwritten result");
                    CacheStatus::PutFailure
                }
            },
            _ => CacheStatus::Skipped,
        };
        return MemoizedAttempt {
            outcome,
            cache: Some(outcome_with(status, None)),
            finished_at: at,
        };
    }

    let reserve = config
        .serialize
        .then_some((owner.as_str(), options.reservation_ttl));
    loop {
        let lookup = match prior.take() {
            Some(PriorLookup::Missed) => Ok(Lookup::Miss),
            Some(PriorLookup::Failed(error)) => Err(error),
            None => tokio::select! {
                _ = cancel.cancelled() => return finished(AttemptOutcome::Cancelled, None),
                lookup = catalog.get_or_reserve(&key, reserve) => lookup,
            },
        };
        match lookup {
            Ok(Lookup::Hit { outputs, source }) => {
                metrics::CACHE_LOOKUPS.increment(&[("result", "hit")], 1.0);
                debug!(execution = %request.execution, node = %request.node_id, "cache hit");
                return finished(
                    AttemptOutcome::Succeeded(outputs),
                    Some(outcome_with(CacheStatus::Hit, Some(source))),
                );
            }
            Ok(Lookup::Held { owner: holder }) => {
                debug!(execution = %request.execution, node = %request.node_id, %holder, "waiting for the reservation holder's result");
                tokio::select! {
                    _ = cancel.cancelled() => return finished(AttemptOutcome::Cancelled, None),
                    _ = tokio::time::sleep(options.wait_interval) => continue,
                }
            }
            Ok(lookup @ (Lookup::Miss | Lookup::Reserved)) => {
                metrics::CACHE_LOOKUPS.increment(&[("result", "miss")], 1.0);
                let reserved = lookup == Lookup::Reserved;
                let heartbeat = reserved.then(|| {
                    spawn_heartbeat(
                        Arc::clone(&catalog),
                        key.clone(),
                        owner.clone(),
                        options.reservation_ttl,
                    )
                });
                let outcome = executors.run(request.clone(), cancel.clone()).await;
                let at = now_millis();
                if let Some(heartbeat) = heartbeat {
                    heartbeat.cancel();
                }
                let status = match &outcome {
                    AttemptOutcome::Succeeded(outputs) => match catalog.put(stored(outputs, at), false).await
                    {
                        Ok(()) => CacheStatus::Populated,
                        Err(error) => {
                            warn!(execution = %request.execution, node = %request.node_id, %error, "cannot store the result in the catalog");
                            CacheStatus::PutFailure
                        }
                    },
                    _ => CacheStatus::Miss,
                };
                if reserved && status != CacheStatus::Populated {
                    // No result stored (the run failed or the put did): let a waiter run it now rather than
                    // after the reservation expires.
                    let _ = catalog.release(&key, &owner).await;
                }
                return MemoizedAttempt {
                    outcome,
                    cache: Some(outcome_with(status, None)),
                    finished_at: at,
                };
            }
            Err(error) => {
                metrics::CACHE_LOOKUPS.increment(&[("result", "failure")], 1.0);
                warn!(execution = %request.execution, node = %request.node_id, %error, "cache lookup failed; running the task");
                let outcome = executors.run(request.clone(), cancel).await;
                let at = now_millis();
                if let AttemptOutcome::Succeeded(outputs) = &outcome {
                    // Best effort; the catalog also records the result from the log when it is back.
                    let _ = catalog.put(stored(outputs, at), false).await;
                }
                return MemoizedAttempt {
                    outcome,
                    cache: Some(outcome_with(CacheStatus::LookupFailure, None)),
                    finished_at: at,
                };
            }
        }
    }
}

/// Keeps a reservation alive while its task runs.
fn spawn_heartbeat(
    catalog: Arc<dyn Catalog>,
    key: String,
    owner: String,
    ttl: Duration,
) -> CancellationToken {
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stopped.cancelled() => return,
                _ = tokio::time::sleep(ttl / 3) => {}
            }
            if let Err(error) = catalog.get_or_reserve(&key, Some((&owner, ttl))).await {
                warn!(%key, %error, "cannot extend the cache reservation");
            }
        }
    });
    stop
}
