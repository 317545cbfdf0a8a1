//! Projects `aloft.executions` (execution inputs, succeeded attempts, phases) and evictions on
//! `aloft.registry` into the catalog's tables, through the shared projector loop of
//! `aloft_store::projector` (one transaction per batch, offsets committed with the rows), so a restarted
//! catalog catches up exactly and dropping the tables and replaying rebuilds the same rows.

use std::sync::Arc;

use crate::store::projection::{apply_execution_event, apply_registry_event, WorkflowCache};
use aloft_eventlog::{Envelope, EventLog, Payload, Record, Topics};
use aloft_store::projection::{Admission, LoggedEvent, OffsetsTable};
use aloft_store::projector::Projection;
use aloft_store::Store;
use futures::future::BoxFuture;
use futures::FutureExt;
use sqlx::AnyConnection;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics;

/// Next offset to project per `(topic, partition)`.
pub use aloft_store::projector::Progress;

struct CatalogTables {
    topics: Topics,
    admission: Admission,
    workflows: WorkflowCache,
    /// Events applied in the open transaction, per topic label: counted once it commits.
    uncommitted_events: std::collections::HashMap<&'static str, u64>,
}

impl Projection for CatalogTables {
    fn offsets_table(&self) -> OffsetsTable {
        crate::store::OFFSETS
    }

    fn apply<'a>(
        &'a mut self,
        connection: &'a mut AnyConnection,
        record: &'a Record,
        index: u32,
        envelope: &'a Envelope,
        partition_epoch: &'a mut u64,
    ) -> BoxFuture<'a, aloft_store::Result<()>> {
        async move {
            let topic = aloft_store::projector::topic_label(&self.topics, &record.topic);
            *self.uncommitted_events.entry(topic).or_default() += 1;
            match &envelope.payload {
                Payload::Schedule(_) | Payload::Delivery(_) => {}
                Payload::Registry(event) => {
                    apply_registry_event(connection, event).await?;
                    // API keys and bindings, so the catalog checks callers as admin does.
                    aloft_store::access::apply_registry_event(connection, event, envelope.principal.as_ref())
                        .await?;
                }
                Payload::Execution(event) => {
                    let logged = LoggedEvent::new(record, index, envelope, event);
                    apply_execution_event(
                        connection,
                        &mut self.admission,
                        &mut self.workflows,
                        partition_epoch,
                        &logged,
                    )
                    .await?;
                }
            }
            Ok(())
        }
        .boxed()
    }

    fn before_commit<'a>(
        &'a mut self,
        connection: &'a mut AnyConnection,
    ) -> BoxFuture<'a, aloft_store::Result<()>> {
        self.admission.flush(connection).boxed()
    }

    fn committed(&mut self, _records: &[Record]) {
        self.admission.committed();
        // Events, not records (a record carries a decision's events together).
        for (topic, events) in self.uncommitted_events.drain() {
            metrics::EVENTS_PROJECTED.increment(&[("topic", topic)], events as f64);
        }
    }

    fn rolled_back(&mut self) {
        self.admission.rolled_back();
        self.uncommitted_events.clear();
        // It may hold workflows of executions whose rows the rollback removed; they are re-read on demand.
        self.workflows = WorkflowCache::default();
    }
}

pub async fn run(
    store: Store,
    log: Arc<dyn EventLog>,
    topics: Topics,
    progress: watch::Sender<Progress>,
    shutdown: CancellationToken,
) {
    let projection = CatalogTables {
        topics: topics.clone(),
        admission: Admission::new("lineage_executions"),
        workflows: WorkflowCache::default(),
        uncommitted_events: Default::default(),
    };
    aloft_store::projector::run(projection, store, log, topics, progress, shutdown).await
}
