//! `aloft admin`: operations on a deployment's log and databases directly (not through the API), for
//! operators. `lag` compares each projector's committed offsets with the end of every partition;
//! `replay --rebuild-projections` empties admin's read models (and with `--catalog`, the catalog's tables)
//! and replays the log into them from offset 0, exactly as the services do.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aloft_eventlog::{EventLog, LogBackend, Topics};
use aloft_store::projection::OffsetsTable;
use aloft_store::Store;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Where a deployment keeps its log and databases.
#[derive(Debug, Clone)]
pub struct DeploymentAddress {
    pub kafka_brokers: Option<String>,
    pub database_url: Option<String>,
    pub catalog_database_url: Option<String>,
    pub topic_prefix: String,
}

impl DeploymentAddress {
    fn backend(&self, data_dir: &Path) -> LogBackend {
        match &self.kafka_brokers {
            Some(brokers) => LogBackend::Kafka {
                brokers: brokers.clone(),
            },
            None => LogBackend::Embedded {
                dir: data_dir.to_path_buf(),
            },
        }
    }

    pub(crate) fn admin_database(&self, data_dir: &Path) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("aloft.db").display()))
    }

    /// The catalog shares admin's database on Postgres deployments; `aloft dev` gives it its own file.
    pub(crate) fn catalog_database(&self, data_dir: &Path) -> String {
        match (&self.catalog_database_url, &self.database_url) {
            (Some(url), _) => url.clone(),
            (None, Some(url)) => url.clone(),
            (None, None) => format!("sqlite://{}", data_dir.join("catalog.db").display()),
        }
    }

    async fn open_log(&self, data_dir: &Path) -> anyhow::Result<Arc<dyn EventLog>> {
        let backend = self.backend(data_dir);
        // The partition count only matters when a topic is created; an existing topic keeps its own.
        aloft_eventlog::open(&backend, &Topics::with_prefix(&self.topic_prefix), 8)
            .await
            .map_err(|error| match backend {
                LogBackend::Kafka { brokers } => anyhow::anyhow!("--kafka-brokers {brokers}: {error}"),
                LogBackend::Embedded { dir } => anyhow::anyhow!(
                    "the embedded log in {} cannot be opened ({error}); stop `aloft dev` first",
                    dir.display()
                ),
            })
    }
}

async fn connect(url: &str) -> anyhow::Result<Store> {
    Store::connect(url)
        .await
        .map_err(|error| anyhow::anyhow!("database {url}: {error}"))
}

/// Every partition of the topics the projectors read, with its end offset.
async fn end_offsets(log: &Arc<dyn EventLog>, topics: &Topics) -> anyhow::Result<Vec<(String, u32, u64)>> {
    let mut ends = vec![(
        topics.registry.clone(),
        0,
        log.end_offset(&topics.registry, 0).await?,
    )];
    for partition in 0..log.partition_count(&topics.executions).await? {
        ends.push((
            topics.executions.clone(),
            partition,
            log.end_offset(&topics.executions, partition).await?,
        ));
    }
    Ok(ends)
}

/// One row of `aloft admin lag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LagRow {
    pub service: &'static str,
    pub topic: String,
    pub partition: u32,
    pub committed: u64,
    pub end: u64,
}

impl LagRow {
    pub fn lag(&self) -> u64 {
        self.end.saturating_sub(self.committed)
    }
}

pub async fn lag(address: &DeploymentAddress, data_dir: &Path) -> anyhow::Result<Vec<LagRow>> {
    let log = address.open_log(data_dir).await?;
    let topics = Topics::with_prefix(&address.topic_prefix);
    let ends = end_offsets(&log, &topics).await?;
    let admin = connect(&address.admin_database(data_dir)).await?;
    let catalog = connect(&address.catalog_database(data_dir)).await?;
    let mut rows = Vec::new();
    for (service, committed) in [
        (
            "admin",
            aloft_store::projection::load_offsets(admin.pool(), OffsetsTable::READ_MODELS).await?,
        ),
        (
            "catalog",
            aloft_store::projection::load_offsets(catalog.pool(), aloft_catalog::store::OFFSETS).await?,
        ),
    ] {
        let committed: HashMap<(String, u32), u64> = committed
            .into_iter()
            .map(|(topic, partition, next, _)| ((topic, partition), next))
            .collect();
        for (topic, partition, end) in &ends {
            rows.push(LagRow {
                service,
                topic: topic.clone(),
                partition: *partition,
                committed: committed.get(&(topic.clone(), *partition)).copied().unwrap_or(0),
                end: *end,
            });
        }
    }
    Ok(rows)
}

pub fn render_lag(rows: &[LagRow]) -> String {
    let mut out = String::from("SERVICE  TOPIC  PARTITION  COMMITTED  END  LAG\n");
    for row in rows {
        out.push_str(&format!(
            "{}  {}  {}  {}  {}  {}\n",
            row.service,
            row.topic,
            row.partition,
            row.committed,
            row.end,
            row.lag()
        ));
    }
    let total: u64 = rows.iter().map(LagRow::lag).sum();
    out.push_str(&format!(
        "total lag {total} record(s); propellers rebuild their partitions from the log and commit no offsets\n"
    ));
    out
}

/// Which derived tables to rebuild.
#[derive(Debug, Clone, Copy)]
pub struct Rebuild {
    pub projections: bool,
    pub catalog: bool,
}

/// Empties the chosen tables and replays the log into them until they reach the end offsets the log had
/// when the replay started. The services whose tables are rebuilt must be stopped: a running one keeps
/// projecting from the offsets it has in memory.
pub async fn replay(
    address: &DeploymentAddress,
    data_dir: &Path,
    rebuild: Rebuild,
    progress: impl Fn(&str),
) -> anyhow::Result<()> {
    let log = address.open_log(data_dir).await?;
    let topics = Topics::with_prefix(&address.topic_prefix);
    let ends = end_offsets(&log, &topics).await?;
    let total: u64 = ends.iter().map(|(_, _, end)| end).sum();
    if rebuild.projections {
        let store = connect(&address.admin_database(data_dir)).await?;
        store.drop_projections().await?;
        progress(&format!(
            "admin: emptied the read models; replaying {total} record(s)"
        ));
        let (sender, receiver) = watch::channel(HashMap::new());
        let shutdown = CancellationToken::new();
        let projector = tokio::spawn(aloft_admin::projector::run(
            store,
            Arc::clone(&log),
            topics.clone(),
            sender,
            shutdown.clone(),
        ));
        let waited = wait_caught_up("admin", receiver, &ends, &progress).await;
        shutdown.cancel();
        let _ = projector.await;
        waited?;
    }
    if rebuild.catalog {
        let store = connect(&address.catalog_database(data_dir)).await?;
        store.migrate(&aloft_catalog::store::MIGRATIONS).await?;
        aloft_catalog::store::drop_tables(&store).await?;
        progress(&format!(
            "catalog: emptied its tables; replaying {total} record(s)"
        ));
        let (sender, receiver) = watch::channel(HashMap::new());
        let shutdown = CancellationToken::new();
        let projector = tokio::spawn(aloft_catalog::projector::run(
            store,
            Arc::clone(&log),
            topics.clone(),
            sender,
            shutdown.clone(),
        ));
        let waited = wait_caught_up("catalog", receiver, &ends, &progress).await;
        shutdown.cancel();
        let _ = projector.await;
        waited?;
    }
    Ok(())
}

async fn wait_caught_up(
    service: &str,
    mut receiver: watch::Receiver<HashMap<(String, u32), u64>>,
    ends: &[(String, u32, u64)],
    progress: &impl Fn(&str),
) -> anyhow::Result<()> {
    let total: u64 = ends.iter().map(|(_, _, end)| end).sum();
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let done: u64 = {
            let offsets = receiver.borrow();
            ends.iter()
                .map(|(topic, partition, end)| {
                    offsets
                        .get(&(topic.clone(), *partition))
                        .copied()
                        .unwrap_or(0)
                        .min(*end)
                })
                .sum()
        };
        if done >= total {
            progress(&format!(
                "{service}: replayed {total} record(s) in {:.1} s",
                started.elapsed().as_secs_f64()
            ));
            return Ok(());
        }
        if last_report.elapsed() >= Duration::from_secs(2) {
            progress(&format!("{service}: {done} of {total} record(s) replayed"));
            last_report = Instant::now();
        }
        tokio::select! {
            changed = receiver.changed() => {
                if changed.is_err() {
                    anyhow::bail!("{service}: the projector stopped before catching up (see the log above)");
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}
