//! A whole Aloft fleet (admin, propellers, scheduler, catalog, notifier) in one process, sharing one event log
//! instance. Admin and the catalog each listen on their own address, as they do when deployed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use aloft_eventlog::{LogBackend, Topics};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub backend: LogBackend,
    pub database_url: String,
    pub topics: Topics,
    pub partitions: u32,
    pub work_dir: PathBuf,
    /// Where blob outputs and task logs live (a `BlobStore` URL); embedded: `DATA_DIR/blobs`.
    pub blob_store: String,
    pub listen: SocketAddr,
    /// The catalog's database (its own file on the embedded backends, so it never waits on admin's).
    pub catalog_database_url: String,
    pub catalog_listen: SocketAddr,
    /// The notifier's database (its own file on the embedded backends).
    pub notifier_database_url: String,
    pub bootstrap_project: Option<String>,
    pub propellers: usize,
    /// How often the propellers store snapshots of their partitions in `database_url`; `None`: never (one
    /// process on the embedded log replays its partitions in moments).
    pub snapshot_interval: Option<std::time::Duration>,
    /// Attempts each propeller runs at once at most; `None`: no limit.
    pub max_running_attempts: Option<usize>,
    /// The container engine `container` tasks run on.
    pub containers: aloft_propeller::executor::ContainerOptions,
    /// Who may call admin and the catalog; `None`: authentication is off (`aloft dev`).
    pub auth: Option<aloft_auth::AuthConfig>,
    /// The token the propellers present to the catalog when it authenticates callers.
    pub service_token: Option<String>,
}

impl FleetConfig {
    /// Everything embedded under `data_dir`: the file log, SQLite and task working dirs.
    /// The catalog listens on a free port; `aloft dev` pins it to [`crate::client::DEFAULT_DEV_CATALOG_ADDRESS`].
    pub fn embedded(data_dir: &std::path::Path, listen: SocketAddr) -> FleetConfig {
        FleetConfig {
            backend: LogBackend::Embedded {
                dir: data_dir.to_path_buf(),
            },
            database_url: format!("sqlite://{}", data_dir.join("aloft.db").display()),
            catalog_database_url: format!("sqlite://{}", data_dir.join("catalog.db").display()),
            catalog_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            notifier_database_url: format!("sqlite://{}", data_dir.join("notifier.db").display()),
            topics: Topics::with_prefix(""),
            partitions: 8,
            work_dir: data_dir.join("work"),
            blob_store: data_dir.join("blobs").display().to_string(),
            listen,
            bootstrap_project: Some("default".to_string()),
            propellers: 1,
            snapshot_interval: None,
            max_running_attempts: None,
            containers: Default::default(),
            auth: None,
            service_token: None,
        }
    }

    /// The same fleet on Kafka at `brokers`, its topics under a fresh `PREFIX-UUID.` prefix.
    pub fn on_kafka(mut self, brokers: &str, topic_prefix: &str) -> FleetConfig {
        self.backend = LogBackend::Kafka {
            brokers: brokers.to_string(),
        };
        self.topics = Topics::with_prefix(&format!("{topic_prefix}-{}.", uuid::Uuid::new_v4().simple()));
        self
    }

    /// The same fleet's tables in one database for admin, the catalog and the notifier (as a deployment on
    /// Postgres has): for a `postgres://` URL a fresh scratch database on that server, any other URL as it is.
    pub async fn on_database(mut self, database_url: &str) -> anyhow::Result<FleetConfig> {
        self.database_url = if database_url.starts_with("postgres") {
            aloft_store::create_scratch_postgres_database(database_url).await?
        } else {
            database_url.to_string()
        };
        self.catalog_database_url = self.database_url.clone();
        self.notifier_database_url = self.database_url.clone();
        Ok(self)
    }
}

pub struct Fleet {
    pub address: SocketAddr,
    pub catalog_address: SocketAddr,
    /// Stops the APIs (admin, catalog): first, so no new write arrives while the rest drains.
    api_shutdown: CancellationToken,
    /// Stops the log's consumers (propellers, scheduler, notifier): after the APIs.
    consumer_shutdown: CancellationToken,
    api_tasks: Vec<JoinHandle<anyhow::Result<()>>>,
    consumer_tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Fleet {
    pub async fn start(config: FleetConfig) -> anyhow::Result<Fleet> {
        if let LogBackend::Embedded { dir } = &config.backend {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create data dir {}: {e}", dir.display()))?;
        }
        let store = aloft_store::Store::connect(&config.database_url)
            .await
            .map_err(|e| anyhow::anyhow!("database {}: {e}", config.database_url))?;
        let log = aloft_eventlog::open(&config.backend, &config.topics, config.partitions).await?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        let address = listener.local_addr()?;
        let catalog_store = aloft_store::Store::connect(&config.catalog_database_url)
            .await
            .map_err(|e| anyhow::anyhow!("catalog database {}: {e}", config.catalog_database_url))?;
        let catalog_listener = tokio::net::TcpListener::bind(config.catalog_listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.catalog_listen))?;
        let catalog_address = catalog_listener.local_addr()?;
        let catalog: Arc<dyn aloft_propeller::memo::Catalog> = Arc::new(
            aloft_propeller::memo::CatalogClient::lazy(&format!("http://{catalog_address}"))?
                .with_credential(config.service_token.as_deref())?,
        );
        let notifier_store = aloft_store::Store::connect(&config.notifier_database_url)
            .await
            .map_err(|e| anyhow::anyhow!("notifier database {}: {e}", config.notifier_database_url))?;
        let blobs = aloft_blobstore::BlobStore::from_url(&config.blob_store)?;
        blobs.check().await?;
        let (api_shutdown, consumer_shutdown) = (CancellationToken::new(), CancellationToken::new());
        let (mut api_tasks, mut tasks) = (Vec::new(), Vec::new());
        tasks.push(tokio::spawn(aloft_notifier::run(
            aloft_notifier::NotifierOptions::new(config.topics.clone()),
            notifier_store,
            Arc::clone(&log),
            consumer_shutdown.clone(),
        )));
        let mut catalog_options = aloft_catalog::CatalogOptions::new(config.topics.clone());
        catalog_options.auth = config.auth.clone();
        api_tasks.push(tokio::spawn(aloft_catalog::run(
            catalog_options,
            catalog_store,
            Arc::clone(&log),
            catalog_listener,
            api_shutdown.clone(),
        )));
        // One process: its propellers share one set of pools.
        let pools: Arc<dyn aloft_fairq::pools::ResourcePools> =
            Arc::new(aloft_fairq::pools::InProcessPools::default());
        for index in 0..config.propellers.max(1) {
            let mut options = aloft_propeller::PropellerOptions::new(
                config.topics.clone(),
                format!("{}-propeller-{index}", aloft_runtime::default_member_id()),
                config.work_dir.clone(),
            );
            options.catalog = Some(Arc::clone(&catalog));
            options.blob_store = Some(blobs.clone());
            options.containers = config.containers.clone();
            options.pools = Arc::clone(&pools);
            options.max_running_attempts = config.max_running_attempts;
            if let Some(interval) = config.snapshot_interval {
                options.snapshots = Some(aloft_propeller::engine::SnapshotOptions {
                    store: aloft_store::Store::connect(&config.database_url)
                        .await
                        .map_err(|e| anyhow::anyhow!("snapshot database {}: {e}", config.database_url))?,
                    interval,
                });
            }
            tasks.push(tokio::spawn(aloft_propeller::run(
                options,
                Arc::clone(&log),
                consumer_shutdown.clone(),
            )));
        }
        let scheduler_options = aloft_scheduler::SchedulerOptions::new(
            config.topics.clone(),
            format!("{}-scheduler", aloft_runtime::default_member_id()),
        );
        let clock = Arc::new(aloft_scheduler::clock::SystemClock {
            interval: std::time::Duration::from_millis(500),
        });
        let (scheduler, _progress) =
            aloft_scheduler::Scheduler::new(scheduler_options, Arc::clone(&log), clock);
        tasks.push(tokio::spawn(scheduler.run(consumer_shutdown.clone())));
        let mut admin_options = aloft_admin::AdminOptions::new(config.topics.clone());
        admin_options.bootstrap_project = config.bootstrap_project.clone();
        admin_options.blob_store = Some(blobs);
        admin_options.auth = config.auth.clone();
        admin_options.catalog_url = Some(format!("http://{catalog_address}"));
        api_tasks.push(tokio::spawn(aloft_admin::run(
            admin_options,
            store,
            log,
            listener,
            api_shutdown.clone(),
        )));
        Ok(Fleet {
            address,
            catalog_address,
            api_shutdown,
            consumer_shutdown,
            api_tasks,
            consumer_tasks: tasks,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn catalog_endpoint(&self) -> String {
        format!("http://{}", self.catalog_address)
    }

    /// Stops the APIs first (admin answers what it accepted, then its projector commits), then the log's
    /// consumers (propellers drain, the notifier flushes its outbox), then flushes traces; reports the first
    /// failure of any component.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.api_shutdown.cancel();
        let mut first_error = join_all(self.api_tasks).await;
        self.consumer_shutdown.cancel();
        if let Some(error) = join_all(self.consumer_tasks).await {
            first_error.get_or_insert(error);
        }
        aloft_telemetry::trace::flush();
        first_error.map_or(Ok(()), Err)
    }

    /// Waits until a component stops on its own (an error) or `shutdown` is cancelled.
    pub async fn run_until(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let stopped = {
            let running = self.api_tasks.iter_mut().chain(self.consumer_tasks.iter_mut());
            tokio::select! {
                _ = shutdown.cancelled() => None,
                (finished, _, _) = futures::future::select_all(running) => Some(match finished {
                    Ok(Ok(())) => anyhow::anyhow!("a fleet component stopped unexpectedly"),
                    Ok(Err(error)) => error,
                    Err(join_error) => anyhow::anyhow!("fleet task panicked: {join_error}"),
                }),
            }
        };
        match stopped {
            None => self.stop().await,
            Some(error) => {
                self.api_shutdown.cancel();
                self.consumer_shutdown.cancel();
                Err(error)
            }
        }
    }
}

/// Awaits every task; the first failure, if any.
async fn join_all(tasks: Vec<JoinHandle<anyhow::Result<()>>>) -> Option<anyhow::Error> {
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                first_error.get_or_insert(error);
            }
            Err(join_error) => {
                first_error.get_or_insert(anyhow::anyhow!("fleet task panicked: {join_error}"));
            }
        }
    }
    first_error
}
