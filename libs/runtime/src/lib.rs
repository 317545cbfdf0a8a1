//! Process runtime shared by every Aloft binary: the backend flags (`--kafka-brokers`, `--data-dir`,
//! `--database-url`, ...) with their `ALOFT_*` env vars and config files (`config`), the shutdown token driven
//! by SIGINT/SIGTERM, member ids, secret references (`secrets`), the blob store's flag and TLS on a service's listener (`tls`).
//!
//! It must not hold service logic; services receive what this builds.

pub mod config;
pub mod secrets;
pub mod tls;

use std::path::PathBuf;
use std::sync::Arc;

use aloft_eventlog::{EventLog, LogBackend, Topics};
use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGINT/SIGTERM; a second signal exits at once.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                return;
            }
        };
        for round in 0..2 {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            if round == 0 {
                tracing::info!("shutting down (signal again to exit at once)");
                cancel.cancel();
            } else {
                std::process::exit(130);
            }
        }
    });
    token
}

/// A member id unique to this process.
pub fn default_member_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host = if host.is_empty() {
        "local".to_string()
    } else {
        host
    };
    format!("{host}-{}", std::process::id())
}

/// Where the event log and the read models live.
#[derive(clap::Args, Debug, Clone)]
pub struct BackendArgs {
    /// A YAML file of settings, keyed by flag name (e.g. `kafka-brokers: 10.0.0.1:9092`); ALOFT_* env vars
    /// and flags override it.
    #[arg(long, env = "ALOFT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers (e.g. 127.0.0.1:9092). Without it the embedded log in --data-dir is used.
    #[arg(long, env = "ALOFT_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Directory of the embedded backends (event log, SQLite database, task working dirs).
    #[arg(long, env = "ALOFT_DATA_DIR", default_value = ".aloft")]
    pub data_dir: PathBuf,
    /// Read-model database: postgres://USER@HOST:PORT/DB or sqlite://PATH (default: SQLite in --data-dir).
    #[arg(long, env = "ALOFT_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Prefix of every topic and consumer group, to run several deployments on one broker.
    #[arg(long, env = "ALOFT_TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,
    /// Partitions of aloft.executions when the topic is created.
    #[arg(long, env = "ALOFT_PARTITIONS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=aloft_eventlog::MAX_PARTITIONS as i64))]
    pub partitions: u32,
}

impl BackendArgs {
    pub fn log_backend(&self) -> LogBackend {
        match &self.kafka_brokers {
            Some(brokers) => LogBackend::Kafka {
                brokers: brokers.clone(),
            },
            None => LogBackend::Embedded {
                dir: self.data_dir.clone(),
            },
        }
    }

    pub fn topics(&self) -> Topics {
        Topics::with_prefix(&self.topic_prefix)
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("aloft.db").display()))
    }

    pub async fn open_log(&self) -> anyhow::Result<Arc<dyn EventLog>> {
        let backend = self.log_backend();
        aloft_eventlog::open(&backend, &self.topics(), self.partitions)
            .await
            .map_err(|error| match backend {
                LogBackend::Kafka { brokers } => anyhow::anyhow!("--kafka-brokers {brokers}: {error}"),
                LogBackend::Embedded { dir } => anyhow::anyhow!("--data-dir {}: {error}", dir.display()),
            })
    }
}

/// One `PROJECT[/DOMAIN]=URL` of `--raw-data-store`, opened and checked like the default store.
async fn open_raw_data_store(
    entry: &str,
) -> anyhow::Result<(String, Option<String>, aloft_blobstore::BlobStore)> {
    let setting = "--raw-data-store (ALOFT_RAW_DATA_STORES)";
    let (tenant, url) = entry
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("{setting} {entry:?}: expected PROJECT=URL or PROJECT/DOMAIN=URL"))?;
    let (project, domain) = match tenant.split_once('/') {
        Some((project, domain)) => (project, Some(domain)),
        None => (tenant, None),
    };
    aloft_core::ids::validate_name("project", project)
        .map_err(|error| anyhow::anyhow!("{setting}: {error}"))?;
    if let Some(domain) = domain {
        aloft_core::ids::validate_name("domain", domain)
            .map_err(|error| anyhow::anyhow!("{setting}: {error}"))?;
    }
    let store = aloft_blobstore::BlobStore::from_url(url)
        .map_err(|error| anyhow::anyhow!("{setting} for {tenant}: {error}"))?;
    store
        .check()
        .await
        .map_err(|error| anyhow::anyhow!("{setting} for {tenant}: {error}"))?;
    Ok((project.to_string(), domain.map(str::to_string), store))
}

/// Where blob outputs and task logs live: the services that read or write task data take it.
#[derive(clap::Args, Debug, Clone)]
pub struct BlobStoreArgs {
    /// The blob store for task data and logs: file:///DIR, s3://BUCKET/PREFIX[?endpoint=URL&region=R],
    /// gs://BUCKET/PREFIX or az://CONTAINER/PREFIX; credentials come from each cloud's standard environment
    /// (AWS_ACCESS_KEY_ID, ...). Every propeller and admin of a deployment must name the same one.
    /// Default: the directory `blobs` in --data-dir, which only this machine can read.
    #[arg(long, env = "ALOFT_BLOB_STORE")]
    pub blob_store: Option<String>,
    /// A value (not a blob) whose encoding takes more bytes than this is written to the blob store and
    /// travels in events as a typed reference; at most 524288 (what the values of one event may take).
    #[arg(long, env = "ALOFT_INLINE_VALUE_LIMIT", default_value_t = aloft_blobstore::DEFAULT_INLINE_VALUE_LIMIT)]
    pub inline_value_limit: usize,
    /// The largest value (not a blob) a task may output, in bytes; a larger one fails its attempt naming it.
    /// Larger data belongs in a blob output.
    #[arg(long, env = "ALOFT_MAX_VALUE_BYTES", default_value_t = aloft_blobstore::DEFAULT_MAX_VALUE_BYTES)]
    pub max_value_bytes: u64,
    /// A project's (PROJECT=URL) or one of its domains' (PROJECT/DOMAIN=URL) own store for its raw data (blob
    /// outputs, offloaded values, task logs), overriding --blob-store for it; repeatable (the variable takes
    /// them separated by spaces). Every propeller and admin must be given the same ones.
    #[arg(long = "raw-data-store", env = "ALOFT_RAW_DATA_STORES", value_delimiter = ' ')]
    pub raw_data_stores: Vec<String>,
}

impl BlobStoreArgs {
    /// Opens the store (the default under `data_dir`) and checks it can be written and read, so a wrong
    /// setting stops the service at start naming it.
    pub async fn open(&self, data_dir: &std::path::Path) -> anyhow::Result<aloft_blobstore::BlobStore> {
        let store = match &self.blob_store {
            Some(url) => aloft_blobstore::BlobStore::from_url(url)?,
            None => aloft_blobstore::BlobStore::local(&data_dir.join("blobs"))?,
        };
        store.check().await?;
        let limits = self.value_limits()?;
        tracing::info!(
            root = store.root(),
            inline_value_limit = limits.inline,
            "blob store"
        );
        let mut tenants = Vec::new();
        for entry in self.raw_data_stores.iter().filter(|entry| !entry.is_empty()) {
            let (project, domain, tenant) = open_raw_data_store(entry).await?;
            tracing::info!(project, domain, root = tenant.root(), "raw data store");
            tenants.push((project, domain, tenant));
        }
        Ok(store.with_value_limits(limits).with_tenant_stores(tenants))
    }

    /// The value limits given, checked.
    pub fn value_limits(&self) -> anyhow::Result<aloft_blobstore::ValueLimits> {
        let budget = aloft_blobstore::INLINE_VALUES_BUDGET;
        if self.inline_value_limit > budget {
            anyhow::bail!(
                "--inline-value-limit (ALOFT_INLINE_VALUE_LIMIT) {} is more than {budget}, what the values of one \
                 event may take together",
                self.inline_value_limit
            );
        }
        if self.max_value_bytes < self.inline_value_limit as u64 {
            anyhow::bail!(
                "--max-value-bytes (ALOFT_MAX_VALUE_BYTES) {} is less than --inline-value-limit {}",
                self.max_value_bytes,
                self.inline_value_limit
            );
        }
        Ok(aloft_blobstore::ValueLimits {
            inline: self.inline_value_limit,
            max: self.max_value_bytes,
        })
    }
}
