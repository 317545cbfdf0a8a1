//! The propeller: Aloft's execution engine. It owns partitions of `aloft.executions` through the consumer
//! group, folds every event with `aloft_core::state`, appends the decisions that follow, and runs task
//! attempts through the executors once their start is acknowledged by the log, sharing its executor slots
//! between tenants through the fair-queue dispatcher of `aloft-fairq`.
//!
//! It never changes state directly and holds nothing the log cannot rebuild: a restarted or new owner
//! replays the partition, claims it with a higher epoch and carries on.

pub mod attempts;
pub mod compute;
pub mod disk;
pub mod engine;
pub mod executor;
pub mod memo;
pub mod metrics;
pub mod pools;

use std::path::PathBuf;
use std::sync::Arc;

use aloft_eventlog::{EventLog, Topics};
use tokio_util::sync::CancellationToken;

pub use engine::Engine;
pub use executor::{Executors, TaskExecutor};

/// What a propeller needs besides its event log.
#[derive(Clone)]
pub struct PropellerOptions {
    pub topics: Topics,
    /// Unique per instance; shown as the owner of its partition claims.
    pub member_id: String,
    /// Where process tasks get their working directories.
    pub work_dir: PathBuf,
    /// Where blob outputs and task logs go (`--blob-store`); `None`: a local directory, `WORK_DIR/.blobs`,
    /// which only propellers on this machine can read.
    pub blob_store: Option<aloft_blobstore::BlobStore>,
    /// Where task secrets are read from besides `ALOFT_SECRET_<NAME>` (`--secrets-dir`).
    pub secrets_dir: Option<PathBuf>,
    /// The container engine `container` tasks run on (`--container-engine`, `--container-network`).
    pub containers: executor::ContainerOptions,
    /// Run `container` tasks as Kubernetes pods instead (`--kubernetes`).
    pub kubernetes: Option<executor::KubernetesOptions>,
    /// The catalog that memoizes cached tasks (`http://HOST:PORT`); without it cached tasks always run
    /// and record LOOKUP_FAILURE.
    pub catalog: Option<Arc<dyn memo::Catalog>>,
    pub memo: memo::MemoOptions,
    /// Attempts running at once on this propeller; beyond it they wait in per-tenant queues, served by
    /// weight. `None`: no limit.
    pub max_running_attempts: Option<usize>,
    /// The CPU, memory and GPUs attempts are admitted against (`--cpus`, `--memory`, `--gpus`).
    pub compute: compute::ComputeCapacity,
    /// Where resource-pool tokens live (Redis when replicas share them) and how long a lease lasts.
    pub pools: Arc<dyn aloft_fairq::pools::ResourcePools>,
    pub pool_lease: std::time::Duration,
    /// Where and how often the state of each owned partition is stored; `None`: partitions are always
    /// rebuilt by replaying them from offset 0.
    pub snapshots: Option<engine::SnapshotOptions>,
    /// Between SIGTERM and SIGKILL when an attempt's process or container is stopped (cancel, timeout).
    pub termination_grace: std::time::Duration,
    /// Attempts that write to the work directory wait while its filesystem has less free (`--min-free-disk`).
    pub min_free_disk_bytes: u64,
    /// How long an ended attempt's directory stays in the work directory (`--attempt-dir-retention-secs`).
    pub attempt_dir_retention: std::time::Duration,
}

impl PropellerOptions {
    /// A propeller with the production defaults (the ones `aloft-propeller`'s flags default to): no catalog,
    /// no limit on running attempts, pools of this process, 30 s leases, no snapshots.
    pub fn new(topics: Topics, member_id: String, work_dir: PathBuf) -> PropellerOptions {
        PropellerOptions {
            topics,
            member_id,
            work_dir,
            blob_store: None,
            secrets_dir: None,
            containers: executor::ContainerOptions::default(),
            kubernetes: None,
            catalog: None,
            memo: memo::MemoOptions::default(),
            max_running_attempts: None,
            compute: compute::ComputeCapacity::default(),
            pools: Arc::new(aloft_fairq::pools::InProcessPools::default()),
            pool_lease: DEFAULT_POOL_LEASE,
            snapshots: None,
            termination_grace: executor::DEFAULT_TERMINATION_GRACE,
            min_free_disk_bytes: disk::DEFAULT_MIN_FREE_DISK,
            attempt_dir_retention: DEFAULT_ATTEMPT_DIR_RETENTION,
        }
    }
}

/// How long an ended attempt's directory stays before it is removed (`--attempt-dir-retention-secs`): long
/// past the moment its end is on the log, and time enough to look at its files after a failure.
pub const DEFAULT_ATTEMPT_DIR_RETENTION: std::time::Duration = std::time::Duration::from_secs(600);

/// Removes, every `retention` from `retention` after the start, the directories of attempts under
/// `work_dir` that ended more than `retention` ago.
async fn sweep_attempt_dirs(work_dir: PathBuf, retention: std::time::Duration, shutdown: CancellationToken) {
    let period = retention.max(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.cancelled() => return,
        }
        let removed = executor::sweep_ended_attempts(work_dir.clone(), retention).await;
        if removed > 0 {
            tracing::info!(
                removed,
                "removed the directories of attempts that ended before a propeller removed them"
            );
        }
    }
}

/// How long resource-pool tokens stay held without renewal (`--pool-lease-ms`).
pub const DEFAULT_POOL_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs one propeller on `log` until `shutdown` is cancelled.
pub async fn run(
    options: PropellerOptions,
    log: Arc<dyn EventLog>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&options.work_dir)
        .map_err(|e| anyhow::anyhow!("cannot create work dir {}: {e}", options.work_dir.display()))?;
    let blobs = match options.blob_store {
        Some(blobs) => blobs,
        None => aloft_blobstore::BlobStore::local(&options.work_dir.join(".blobs"))?,
    };
    let (quota_tx, quota_rx) = tokio::sync::mpsc::unbounded_channel();
    let pool_limits = Arc::new(std::sync::RwLock::new(std::collections::HashMap::new()));
    let quota_reader = tokio::spawn(follow_quotas(
        Arc::clone(&log),
        options.topics.registry.clone(),
        quota_tx,
        Arc::clone(&pool_limits),
        shutdown.clone(),
    ));
    let member = options.member_id;
    // Directories of attempts that ended while no propeller was left to remove them: swept once this one
    // has run for the retention (any attempt it re-attached to has reported by then), and every retention
    // after that.
    let sweeper = tokio::spawn(sweep_attempt_dirs(
        options.work_dir.clone(),
        options.attempt_dir_retention,
        shutdown.clone(),
    ));
    let disk = disk::DiskGuard {
        work_dir: options.work_dir.clone(),
        min_free_bytes: options.min_free_disk_bytes,
    };
    let (attempt_service, attempts, reports) = attempts::AttemptOptions {
        executors: {
            let secrets = executor::SecretSource::new(options.secrets_dir);
            let grace = options.termination_grace;
            let mut executors =
                Executors::new(options.work_dir.clone(), blobs.clone(), secrets.clone(), grace);
            executors.register(Arc::new(executor::ContainerExecutor::new(
                options.containers,
                options.work_dir,
                blobs.clone(),
                secrets,
                grace,
            )));
            if let Some(kubernetes) = options.kubernetes {
                executors.register(Arc::new(executor::KubernetesExecutor::new(
                    kubernetes,
                    blobs.clone(),
                )));
            }
            executors
        },
        catalog: options.catalog.clone(),
        memo: options.memo,
        pools: pools::PoolAccess {
            pools: options.pools,
            limits: pool_limits,
            lease: options.pool_lease,
        },
        capacity: options.max_running_attempts.unwrap_or(usize::MAX).max(1),
        compute: options.compute,
        disk,
        attempt_dir_retention: options.attempt_dir_retention,
        quotas: quota_rx,
        member: member.clone(),
    }
    .build();
    let attempt_service = tokio::spawn(attempt_service.run());
    let ran = Engine::run(
        log,
        engine::Membership {
            topic: options.topics.executions.clone(),
            group: options.topics.group("aloft-propeller"),
            member,
        },
        engine::EngineParts {
            attempts,
            reports,
            catalog: options.catalog,
            snapshots: options.snapshots,
            blobs: Some(blobs),
        },
        shutdown,
    )
    .await;
    // The engine dropped its handle: the service ends, leaving the attempts it runs running.
    let _ = attempt_service.await;
    quota_reader.abort();
    sweeper.abort();
    ran
}

/// Reads the registry from its start and passes on every tenant quota and pool limit as it is set.
async fn follow_quotas(
    log: Arc<dyn EventLog>,
    registry: String,
    quotas: tokio::sync::mpsc::UnboundedSender<(aloft_fairq::Tenant, aloft_fairq::TenantPolicy)>,
    pool_limits: Arc<std::sync::RwLock<std::collections::HashMap<String, u32>>>,
    shutdown: CancellationToken,
) {
    use aloft_core::events::RegistryEvent;
    use aloft_eventlog::{Envelope, Payload};
    let mut reader = match log.read(vec![(registry, 0, 0)]).await {
        Ok(reader) => reader,
        Err(error) => {
            tracing::error!(%error, "cannot read the registry; tenant quotas are not applied");
            return;
        }
    };
    loop {
        let records = tokio::select! {
            _ = shutdown.cancelled() => return,
            records = reader.next_batch(500) => match records {
                Ok(records) => records,
                Err(error) => {
                    tracing::error!(%error, "reading the registry failed; tenant quotas stop updating");
                    return;
                }
            },
        };
        for record in records {
            let Ok(Envelope {
                payload: Payload::Registry(event),
                ..
            }) = Envelope::decode(&record.payload)
            else {
                continue;
            };
            match event {
                RegistryEvent::TenantQuotaSet {
                    project,
                    domain,
                    weight,
                    max_running,
                    ..
                } => {
                    let policy = aloft_fairq::TenantPolicy { weight, max_running };
                    if quotas
                        .send((aloft_fairq::Tenant::new(&project, &domain), policy))
                        .is_err()
                    {
                        return;
                    }
                }
                RegistryEvent::PoolDefined { name, limit, .. } => {
                    pool_limits
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(name, limit);
                }
                _ => {}
            }
        }
    }
}
