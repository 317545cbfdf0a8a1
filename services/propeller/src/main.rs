use aloft_core::quantity::{Quantity, QuantityError};
use aloft_runtime::{shutdown_on_signals, BackendArgs, BlobStoreArgs};
use clap::Parser;

/// Aloft propeller: the execution engine. Owns partitions of aloft.executions and runs task attempts.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    backend: BackendArgs,
    /// TLS on the operations endpoints (--ops-listen).
    #[command(flatten)]
    tls: aloft_runtime::tls::TlsArgs,
    #[command(flatten)]
    blobs: BlobStoreArgs,
    /// Where process tasks get their working directories.
    #[arg(long, env = "ALOFT_WORK_DIR", default_value = ".aloft/work")]
    work_dir: std::path::PathBuf,
    /// A directory of task secrets, one file per secret named after it (a mounted Kubernetes Secret);
    /// a secret not found there is read from ALOFT_SECRET_<NAME> in this process's environment.
    #[arg(long, env = "ALOFT_SECRETS_DIR")]
    secrets_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    containers: aloft_propeller::executor::ContainerOptions,
    /// Run `container` tasks as Kubernetes pods, one per attempt: `in-cluster` (this pod's service account),
    /// `kubeconfig`, or the API server's URL. Without it they run on --container-engine.
    #[arg(long, env = "ALOFT_KUBERNETES")]
    kubernetes: Option<String>,
    /// The namespace of a project/domain's pods; {project} and {domain} are replaced.
    #[arg(
        long,
        env = "ALOFT_KUBERNETES_NAMESPACE",
        default_value = "{project}-{domain}"
    )]
    kubernetes_namespace: String,
    /// Create a project/domain's namespace when its first pod finds none (needs the RBAC of
    /// deploy/k8s/components/task-namespaces). Without it the namespaces must exist: a pod whose namespace
    /// does not fails its attempt, naming the namespace.
    #[arg(long, env = "ALOFT_KUBERNETES_CREATE_NAMESPACES")]
    kubernetes_create_namespaces: bool,
    /// The service account task pods run as (the namespace's default when left out).
    #[arg(long, env = "ALOFT_KUBERNETES_SERVICE_ACCOUNT")]
    kubernetes_service_account: Option<String>,
    /// Image pull secrets of task pods (comma-separated Secret names in each task namespace).
    #[arg(long, env = "ALOFT_KUBERNETES_IMAGE_PULL_SECRETS", value_delimiter = ',')]
    kubernetes_image_pull_secrets: Vec<String>,
    /// The node label a task's resources.accelerator is matched against.
    #[arg(
        long,
        env = "ALOFT_KUBERNETES_ACCELERATOR_LABEL",
        default_value = "aloft.dev/accelerator"
    )]
    kubernetes_accelerator_label: String,
    /// Give task pods helper containers in this image (Aloft's own, holding the `aloft` binary) that stage
    /// their inputs into $ALOFT_INPUT_DIR and upload $ALOFT_OUTPUT_DIR through the blob store, so a task's
    /// image needs no client of the store. Needs a --blob-store the pods reach (s3://, gs://, az://).
    /// Without it a pod gets its inputs' URIs and writes its outputs under $ALOFT_OUTPUT_URI itself.
    #[arg(long, env = "ALOFT_KUBERNETES_HELPER_IMAGE", requires = "kubernetes")]
    kubernetes_helper_image: Option<String>,
    /// The Secret in each task namespace whose keys the helper containers get as their environment (the
    /// store's credentials, e.g. AWS_ACCESS_KEY_ID); optional, as the pods' cloud identity does as well.
    #[arg(
        long,
        env = "ALOFT_KUBERNETES_HELPER_SECRET",
        default_value = "aloft-blob-store"
    )]
    kubernetes_helper_secret: String,
    /// Unique name of this instance in the consumer group (default: host name + process id).
    #[arg(long, env = "ALOFT_MEMBER_ID")]
    member_id: Option<String>,
    /// Serve /healthz, /readyz (every owned partition claimed) and /metrics on this address.
    #[arg(long, env = "ALOFT_OPS_LISTEN")]
    ops_listen: Option<std::net::SocketAddr>,
    /// The catalog service (http://HOST:PORT) that memoizes cached tasks. Without it, cached tasks run
    /// every time and record LOOKUP_FAILURE.
    #[arg(long, env = "ALOFT_CATALOG")]
    catalog: Option<String>,
    /// The service token this propeller presents to the catalog (one whose sha256 is a `service_tokens`
    /// entry of the catalog's auth config), when the catalog authenticates callers.
    #[arg(long, env = "ALOFT_SERVICE_TOKEN", hide_env_values = true)]
    service_token: Option<String>,
    /// Attempts running at once on this propeller; more wait in per-tenant queues and start by tenant
    /// weight (`aloft quota set`) as slots free up. Unlimited when left out.
    #[arg(long, env = "ALOFT_MAX_RUNNING_ATTEMPTS", value_parser = clap::value_parser!(u64).range(1..))]
    max_running_attempts: Option<u64>,
    /// CPUs this propeller's attempts may request together (e.g. 8 or 7.5); an attempt whose
    /// resources.cpu does not fit waits (WAITING_FOR_RESOURCES). Not counted when left out.
    #[arg(long, env = "ALOFT_CPUS", value_parser = parse_cpus)]
    cpus: Option<u64>,
    /// Memory this propeller's attempts may request together (e.g. 32Gi); not counted when left out.
    #[arg(long, env = "ALOFT_MEMORY", value_parser = parse_memory)]
    memory: Option<u64>,
    /// GPUs this propeller's attempts may request together; a task asking for a GPU waits, saying so,
    /// on a propeller with none.
    #[arg(long, env = "ALOFT_GPUS", default_value_t = 0)]
    gpus: u32,
    /// Redis shared by the replicas for resource-pool tokens (e.g. redis://127.0.0.1:6379); without it each
    /// propeller keeps its own pools, which is only right for a single replica.
    #[arg(long, env = "ALOFT_REDIS_URL")]
    redis_url: Option<String>,
    /// How long pool tokens stay held without renewal (a killed propeller's come back after this).
    #[arg(long, env = "ALOFT_POOL_LEASE_MS", default_value_t = aloft_propeller::DEFAULT_POOL_LEASE.as_millis() as u64, value_parser = clap::value_parser!(u64).range(300..))]
    pool_lease_ms: u64,
    /// How long a serialized cached task's reservation lasts without a heartbeat (sent every third of it):
    /// when its holder dies, a waiting attempt takes over after about this long.
    #[arg(long, env = "ALOFT_CACHE_RESERVATION_TTL_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(300..))]
    cache_reservation_ttl_ms: u64,
    /// How often the state of each owned partition is stored in the database (--database-url); a restarted
    /// or replacing propeller restores it and replays only the records after it. 0 turns snapshots off
    /// (partitions are then replayed from offset 0).
    #[arg(long, env = "ALOFT_SNAPSHOT_INTERVAL_SECS", default_value_t = 30)]
    snapshot_interval_secs: u64,
    /// When an attempt is cancelled or times out, its processes (or container) get SIGTERM and this long to
    /// clean up and exit before SIGKILL.
    #[arg(long, env = "ALOFT_TERMINATION_GRACE_MS", default_value_t = aloft_propeller::executor::DEFAULT_TERMINATION_GRACE.as_millis() as u64)]
    termination_grace_ms: u64,
    /// Process and container attempts (which write to the work directory) wait while its filesystem has
    /// less than this free (e.g. 64Mi, 1Gi; 0: never wait).
    #[arg(long, env = "ALOFT_MIN_FREE_DISK", value_parser = parse_memory, default_value = "64Mi")]
    min_free_disk: u64,
    /// How long an ended attempt's directory (inputs, outputs, files it wrote, log) stays in the work
    /// directory before it is removed; its log and outputs are in the blob store by then.
    #[arg(long, env = "ALOFT_ATTEMPT_DIR_RETENTION_SECS", default_value_t = aloft_propeller::DEFAULT_ATTEMPT_DIR_RETENTION.as_secs())]
    attempt_dir_retention_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = aloft_runtime::config::parse();
    let data_helper = data_helper(&args)?;
    aloft_telemetry::init_tracing("aloft-propeller", "info");
    let shutdown = shutdown_on_signals();
    let log = args.backend.open_log().await?;
    let blob_store = args.blobs.open(&args.backend.data_dir).await?;
    aloft_propeller::metrics::register();
    if let Some(address) = args.ops_listen {
        // Not ready while the event log is out of reach (a propeller cut off from the broker holds nothing
        // once its session ends, and would otherwise look ready) or an owned partition is not yet claimed.
        let (probe_log, probe_topic) = (std::sync::Arc::clone(&log), args.backend.topics().executions);
        let readiness: aloft_telemetry::ops::ReadinessCheck = std::sync::Arc::new(move || {
            let (log, topic) = (std::sync::Arc::clone(&probe_log), probe_topic.clone());
            Box::pin(async move {
                use aloft_propeller::metrics::{PARTITIONS_ACTIVE, PARTITIONS_OWNED};
                aloft_eventlog::probe_end_offset(log.as_ref(), &topic)
                    .await
                    .map_err(aloft_telemetry::ops::NotReady::because)?;
                match (PARTITIONS_OWNED.value(&[]), PARTITIONS_ACTIVE.value(&[])) {
                    (Some(owned), Some(active)) if owned == active => Ok(()),
                    (owned, active) => Err(aloft_telemetry::ops::NotReady::because(format!(
                        "{} of {} owned partitions caught up and claimed",
                        active.unwrap_or(0.0),
                        owned.unwrap_or(0.0)
                    ))),
                }
            })
        });
        let tls = aloft_runtime::tls::Tls::from_args(&args.tls, shutdown.clone())?;
        aloft_runtime::tls::spawn_ops(
            address,
            tls,
            aloft_telemetry::ops::router(readiness),
            shutdown.clone(),
        )
        .await?;
    }
    let options = aloft_propeller::PropellerOptions {
        topics: args.backend.topics(),
        member_id: args.member_id.unwrap_or_else(aloft_runtime::default_member_id),
        work_dir: args.work_dir,
        blob_store: Some(blob_store),
        secrets_dir: args.secrets_dir,
        containers: args.containers,
        kubernetes: args
            .kubernetes
            .map(|api| aloft_propeller::executor::KubernetesOptions {
                api,
                pods: aloft_propeller::executor::PodSettings {
                    namespace_pattern: args.kubernetes_namespace,
                    create_namespaces: args.kubernetes_create_namespaces,
                    service_account: args.kubernetes_service_account,
                    image_pull_secrets: args.kubernetes_image_pull_secrets,
                    accelerator_label: args.kubernetes_accelerator_label,
                    data_helper,
                },
            }),
        catalog: match &args.catalog {
            Some(url) => Some(std::sync::Arc::new(
                aloft_propeller::memo::CatalogClient::lazy(url)?
                    .with_credential(args.service_token.as_deref())?,
            )),
            None => None,
        },
        memo: aloft_propeller::memo::MemoOptions {
            reservation_ttl: std::time::Duration::from_millis(args.cache_reservation_ttl_ms),
            ..Default::default()
        },
        max_running_attempts: args.max_running_attempts.map(|n| n as usize),
        compute: aloft_propeller::compute::ComputeCapacity {
            cpu_millis: args.cpus,
            memory_bytes: args.memory,
            gpus: args.gpus,
        },
        pools: match &args.redis_url {
            Some(url) => std::sync::Arc::new(
                aloft_fairq::pools::RedisPools::connect(url, &args.backend.topics().prefix)
                    .await
                    .map_err(|e| anyhow::anyhow!("--redis-url {url}: {e}"))?,
            ),
            None => std::sync::Arc::new(aloft_fairq::pools::InProcessPools::default()),
        },
        pool_lease: std::time::Duration::from_millis(args.pool_lease_ms),
        termination_grace: std::time::Duration::from_millis(args.termination_grace_ms),
        min_free_disk_bytes: args.min_free_disk,
        attempt_dir_retention: std::time::Duration::from_secs(args.attempt_dir_retention_secs),
        snapshots: match args.snapshot_interval_secs {
            0 => None,
            seconds => {
                let url = args.backend.database_url();
                let store = aloft_store::Store::connect(&url)
                    .await
                    .map_err(|e| anyhow::anyhow!("snapshot database {url}: {e}"))?;
                Some(aloft_propeller::engine::SnapshotOptions {
                    store,
                    interval: std::time::Duration::from_secs(seconds),
                })
            }
        },
    };
    let result = aloft_propeller::run(options, log, shutdown).await;
    // Spans still buffered go out before the process ends.
    aloft_telemetry::trace::flush();
    result
}

/// The helper containers of task pods, when `--kubernetes-helper-image` is given: they get the propeller's
/// store URLs, which must be reachable from a pod (not a local directory).
fn data_helper(args: &Args) -> anyhow::Result<Option<aloft_propeller::executor::DataHelper>> {
    let Some(image) = &args.kubernetes_helper_image else {
        return Ok(None);
    };
    let local = |url: &str| !url.contains("://") || url.starts_with("file:") || url.starts_with("memory:");
    let store = match &args.blobs.blob_store {
        Some(url) if !local(url) => url.clone(),
        other => anyhow::bail!(
            "--kubernetes-helper-image (ALOFT_KUBERNETES_HELPER_IMAGE) needs a --blob-store (ALOFT_BLOB_STORE) \
             that task pods can reach, such as s3://BUCKET/PREFIX; {} is local to this machine",
            other.as_deref().unwrap_or("the default (a directory under --data-dir)")
        ),
    };
    for entry in &args.blobs.raw_data_stores {
        if entry.split_once('=').is_some_and(|(_, url)| local(url)) {
            anyhow::bail!(
                "--kubernetes-helper-image (ALOFT_KUBERNETES_HELPER_IMAGE) needs raw-data stores that task pods \
                 can reach; --raw-data-store {entry:?} is local to this machine"
            );
        }
    }
    let mut store_env = vec![("ALOFT_BLOB_STORE".to_string(), store)];
    if !args.blobs.raw_data_stores.is_empty() {
        store_env.push((
            "ALOFT_RAW_DATA_STORES".to_string(),
            args.blobs.raw_data_stores.join(" "),
        ));
    }
    Ok(Some(aloft_propeller::executor::DataHelper {
        image: image.clone(),
        store_env,
        credentials_secret: args.kubernetes_helper_secret.clone(),
    }))
}

/// `--cpus`: a Kubernetes CPU quantity (`8`, `7.5`, `7500m`), in millicores.
fn parse_cpus(text: &str) -> Result<u64, QuantityError> {
    Quantity::parse(text).map(|quantity| quantity.milli())
}

/// `--memory`: a Kubernetes memory quantity (`32Gi`, `64G`), in bytes.
fn parse_memory(text: &str) -> Result<u64, QuantityError> {
    Quantity::parse(text).map(|quantity| quantity.units())
}
