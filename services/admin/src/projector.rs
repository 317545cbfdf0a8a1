//! Projects `aloft.registry`, `aloft.executions` and `aloft.deliveries` into admin's read models, through the shared projector
//! loop of `aloft_store::projector` (one transaction per batch, offsets committed with the rows).

use std::sync::Arc;

use aloft_core::{AppliedEvent, ExecutionEvent};
use aloft_eventlog::{Envelope, EventLog, Payload, Record, Topics};
use aloft_store::access::{self, AuditPlace};
use aloft_store::projection::{apply_registry_event, ExecutionReadModels, LoggedEvent, OffsetsTable};
use aloft_store::projector::Projection;
use aloft_store::Store;
use futures::future::BoxFuture;
use futures::FutureExt;
use sqlx::AnyConnection;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics;

/// Next offset to project per `(topic, partition)`; read-your-writes waits on it.
pub use aloft_store::projector::Progress;

struct ReadModels {
    topics: Topics,
    executions: ExecutionReadModels,
    /// Events applied in the open transaction, per topic label: counted once it commits.
    uncommitted_events: std::collections::HashMap<&'static str, u64>,
}

impl Projection for ReadModels {
    fn offsets_table(&self) -> OffsetsTable {
        OffsetsTable::READ_MODELS
    }

    fn reads_deliveries(&self) -> bool {
        true
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
                // The scheduler's progress is not projected (scheduled executions carry their time).
                Payload::Schedule(_) => {}
                Payload::Delivery(event) => {
                    aloft_store::deliveries::apply_delivery_event(connection, event).await?
                }
                Payload::Registry(event) => {
                    apply_registry_event(connection, record.offset, event).await?;
                    access::apply_registry_event(connection, event, envelope.principal.as_ref()).await?;
                    if let Some(principal) = &envelope.principal {
                        let (project, domain) = event.tenant();
                        let place = audit_place(record, index);
                        let target = envelope.stream.as_str();
                        access::record_audit(
                            connection,
                            &place,
                            envelope.occurred_at,
                            project,
                            domain,
                            principal,
                            event.kind(),
                            target,
                        )
                        .await?;
                    }
                }
                Payload::Execution(event) => {
                    let logged = LoggedEvent::new(record, index, envelope, event);
                    let verdict = self
                        .executions
                        .apply(connection, partition_epoch, &logged)
                        .await?;
                    let accepted = verdict == AppliedEvent::Accepted;
                    if let (true, Some(principal), Some(id)) =
                        (accepted, &envelope.principal, event.execution())
                    {
                        if matches!(event, ExecutionEvent::ExecutionRequested { .. }) {
                            access::set_launched_by(connection, id, principal).await?;
                        }
                        access::record_audit(
                            connection,
                            &audit_place(record, index),
                            envelope.occurred_at,
                            &id.project,
                            &id.domain,
                            principal,
                            event.kind(),
                            &envelope.stream,
                        )
                        .await?;
                    }
                    if verdict == AppliedEvent::Accepted {
                        let phase = match event {
                            ExecutionEvent::ExecutionRequested { .. } => Some("QUEUED"),
                            ExecutionEvent::ExecutionStarted { .. } => Some("RUNNING"),
                            ExecutionEvent::ExecutionFinished { phase, .. } => Some(phase.as_str()),
                            _ => None,
                        };
                        if let Some(phase) = phase {
                            metrics::EXECUTION_PHASES.increment(&[("phase", phase)], 1.0);
                        }
                    }
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
        self.executions.flush(connection).boxed()
    }

    fn committed(&mut self, _records: &[Record]) {
        self.executions.committed();
        metrics::PROJECTION_BATCHES.increment(&[], 1.0);
        // Events, not records: a record carries a decision's events together, so how many records an execution
        // takes depends on timing; its events do not.
        for (topic, events) in self.uncommitted_events.drain() {
            metrics::EVENTS_PROJECTED.increment(&[("topic", topic)], events as f64);
        }
    }

    fn rolled_back(&mut self) {
        self.executions.rolled_back();
        self.uncommitted_events.clear();
    }
}

fn audit_place(record: &Record, index: u32) -> AuditPlace<'_> {
    AuditPlace {
        topic: &record.topic,
        partition: record.partition,
        offset: record.offset,
        index,
    }
}

pub async fn run(
    store: Store,
    log: Arc<dyn EventLog>,
    topics: Topics,
    progress: watch::Sender<Progress>,
    shutdown: CancellationToken,
) {
    let projection = ReadModels {
        topics: topics.clone(),
        executions: ExecutionReadModels::default(),
        uncommitted_events: Default::default(),
    };
    aloft_store::projector::run(projection, store, log, topics, progress, shutdown).await
}
