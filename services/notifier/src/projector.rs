//! Reads `aloft.registry` (rules on launch plans, project defaults) and `aloft.executions` into the
//! notifier's tables through the shared projector loop: a finished execution's deliveries are created in
//! the transaction that commits the offset, so a crash between reading an event and recording its
//! deliveries re-reads the event, and one after it finds them recorded.

use std::sync::Arc;

use aloft_eventlog::{Envelope, EventLog, Payload, Record, Topics};
use aloft_store::projection::{Admission, LoggedEvent, OffsetsTable};
use aloft_store::projector::Projection;
use aloft_store::Store;
use futures::future::BoxFuture;
use futures::FutureExt;
use sqlx::AnyConnection;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::metrics;

pub use aloft_store::projector::Progress;

struct NotifierTables {
    topics: Topics,
    console_url: String,
    admission: Admission,
    created_in_batch: usize,
    deliveries_ready: Arc<Notify>,
}

impl Projection for NotifierTables {
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
            match &envelope.payload {
                Payload::Registry(event) => crate::store::apply_registry_event(connection, event).await?,
                Payload::Execution(event) => {
                    let logged = LoggedEvent::new(record, index, envelope, event);
                    self.created_in_batch += crate::store::apply_execution_event(
                        connection,
                        &mut self.admission,
                        partition_epoch,
                        &logged,
                        &self.console_url,
                    )
                    .await?;
                }
                Payload::Schedule(_) | Payload::Delivery(_) => {}
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

    fn committed(&mut self, records: &[Record]) {
        self.admission.committed();
        for record in records {
            let topic = aloft_store::projector::topic_label(&self.topics, &record.topic);
            metrics::EVENTS_PROJECTED.increment(&[("topic", topic)], 1.0);
        }
        if self.created_in_batch > 0 {
            metrics::DELIVERIES_CREATED.increment(&[], self.created_in_batch as f64);
            self.deliveries_ready.notify_one();
        }
        self.created_in_batch = 0;
    }

    fn rolled_back(&mut self) {
        self.admission.rolled_back();
        self.created_in_batch = 0;
    }
}

pub async fn run(
    store: Store,
    log: Arc<dyn EventLog>,
    topics: Topics,
    console_url: String,
    deliveries_ready: Arc<Notify>,
    progress: watch::Sender<Progress>,
    shutdown: CancellationToken,
) {
    let projection = NotifierTables {
        topics: topics.clone(),
        console_url,
        admission: Admission::new("notifier_executions"),
        created_in_batch: 0,
        deliveries_ready,
    };
    aloft_store::projector::run(projection, store, log, topics, progress, shutdown).await
}
