//! The propeller: Aloft's execution engine. It owns partitions of `aloft.executions` through the consumer
//! group, folds every event with `aloft_core::state`, appends the decisions that follow, and runs task
//! attempts through the executors once their start is acknowledged by the log.
//!
//! It never changes state directly and holds nothing the log cannot rebuild: a restarted or new owner
//! replays the partition, claims it with a higher epoch and carries on.

pub mod engine;
pub mod executor;
pub mod memo;
pub mod metrics;

use std::path::PathBuf;
use std::sync::Arc;

use aloft_eventlog::{EventLog, Topics};
use tokio_util::sync::CancellationToken;

pub use engine::Engine;
pub use executor::Executors;

/// What a propeller needs besides its event log.
#[derive(Clone)]
pub struct PropellerOptions {
    pub topics: Topics,
    /// Unique per instance; shown as the owner of its partition claims.
    pub member_id: String,
    /// Where process tasks get their working directories.
    pub work_dir: PathBuf,
    /// The catalog that memoizes cached tasks (`http://HOST:PORT`); without it cached tasks always run
    /// and record LOOKUP_FAILURE.
    pub catalog: Option<Arc<dyn memo::Catalog>>,
    pub memo: memo::MemoOptions,
}

/// Runs one propeller on `log` until `shutdown` is cancelled.
pub async fn run(
    options: PropellerOptions,
    log: Arc<dyn EventLog>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&options.work_dir)
        .map_err(|e| anyhow::anyhow!("cannot create work dir {}: {e}", options.work_dir.display()))?;
    Engine::run(
        log,
        options.topics.executions.clone(),
        options.topics.group("aloft-propeller"),
        options.member_id,
        engine::AttemptRunner {
            executors: Executors::new(options.work_dir),
            catalog: options.catalog,
            memo: options.memo,
        },
        shutdown,
    )
    .await
}
