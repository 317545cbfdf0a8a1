//! Which events of `aloft.executions` a projection applies: the rule is `aloft_core::state::admit` (fenced and
//! duplicate decisions change nothing), checked against the last seq the projection's own table keeps per
//! execution. `Admission` remembers those seqs, so admitting the next decision of an execution costs no
//! statement, and writes each execution's seq once per transaction, just before it commits.

use std::collections::{HashMap, HashSet};

use aloft_core::events::ExecutionEvent;
use aloft_core::state::{admit, AppliedEvent, EventMeta};
use aloft_core::ExecutionId;
use sqlx::{AnyConnection, Row};

use crate::{Error, Result};

/// Executions whose last seq is remembered at most; past it the memory starts empty again (a projection reads
/// a seq back with one SELECT, so forgetting costs a statement, never correctness).
const REMEMBERED_EXECUTIONS: usize = 100_000;

/// Where an event sits in the log, from its record and envelope.
pub struct LoggedEvent<'a> {
    pub partition: u32,
    pub offset: u64,
    /// Its place among the envelopes of its record (0 unless a propeller appended several together).
    pub index: u32,
    pub stream: &'a str,
    pub seq: u64,
    pub writer_epoch: u64,
    pub occurred_at: i64,
    /// The trace context the event was written in (empty when none).
    pub traceparent: &'a str,
    pub event: &'a ExecutionEvent,
    /// Who caused it, when an API caller did.
    pub principal: Option<&'a aloft_core::principal::Principal>,
}

impl<'a> LoggedEvent<'a> {
    /// The execution event `event` carried by `envelope`, the `index`-th of `record`.
    pub fn new(
        record: &aloft_eventlog::Record,
        index: u32,
        envelope: &'a aloft_eventlog::Envelope,
        event: &'a ExecutionEvent,
    ) -> Self {
        LoggedEvent {
            partition: record.partition,
            offset: record.offset,
            index,
            stream: &envelope.stream,
            seq: envelope.seq,
            writer_epoch: envelope.writer_epoch,
            occurred_at: envelope.occurred_at,
            traceparent: &envelope.traceparent,
            event,
            principal: envelope.principal.as_ref(),
        }
    }
}

/// The admission state of one projection, whose table (`project, domain, name, last_seq`) keeps the last seq
/// applied per execution. Use one per projector: `admit` each event inside the batch's transaction, `flush`
/// before committing it, then `committed` — or `rolled_back` when the transaction failed.
pub struct Admission {
    table: &'static str,
    /// Last seqs as the open transaction sees them in `table`, apart from those in `moved`.
    stored: HashMap<ExecutionId, u64>,
    /// Seqs moved in the open transaction: execution → (seq in `table`, seq admitted since).
    moved: HashMap<ExecutionId, (u64, u64)>,
    /// Executions that finished in the open transaction: forgotten once it commits.
    finished: HashSet<ExecutionId>,
}

impl Admission {
    pub fn new(table: &'static str) -> Self {
        Admission {
            table,
            stored: HashMap::new(),
            moved: HashMap::new(),
            finished: HashSet::new(),
        }
    }

    /// `Ok(id)`: apply the event to execution `id` (its seq is admitted); `Err(verdict)`: nothing more to do.
    /// Claims move `partition_epoch`.
    pub async fn admit<'e>(
        &mut self,
        conn: &mut AnyConnection,
        partition_epoch: &mut u64,
        logged: &LoggedEvent<'e>,
    ) -> Result<std::result::Result<&'e ExecutionId, AppliedEvent>> {
        let event = logged.event;
        let last = match event.execution() {
            Some(id) => self.last_seq(conn, id).await?,
            None => None,
        };
        let meta = EventMeta {
            seq: logged.seq,
            writer_epoch: logged.writer_epoch,
        };
        let verdict = admit(*partition_epoch, last, &meta, event);
        if verdict != AppliedEvent::Accepted {
            return Ok(Err(verdict));
        }
        let Some(id) = event.execution() else {
            if let ExecutionEvent::PartitionClaimed { epoch, .. } = event {
                *partition_epoch = *epoch;
            }
            return Ok(Err(verdict));
        };
        match event {
            // The projection inserts the execution's row with seq 0.
            ExecutionEvent::ExecutionRequested { .. } => {
                self.stored.insert(id.clone(), 0);
            }
            _ if event.is_request() => {}
            _ => {
                let before = match self.moved.get(id) {
                    Some((before, _)) => *before,
                    None => last.unwrap_or_default(),
                };
                self.moved.insert(id.clone(), (before, logged.seq));
                if matches!(event, ExecutionEvent::ExecutionFinished { .. }) {
                    self.finished.insert(id.clone());
                }
            }
        }
        Ok(Ok(id))
    }

    async fn last_seq(&mut self, conn: &mut AnyConnection, id: &ExecutionId) -> Result<Option<u64>> {
        if let Some((_, now)) = self.moved.get(id) {
            return Ok(Some(*now));
        }
        if let Some(stored) = self.stored.get(id) {
            return Ok(Some(*stored));
        }
        let row = sqlx::query(&format!(
            "SELECT last_seq FROM {} WHERE project = $1 AND domain = $2 AND name = $3",
            self.table
        ))
        .bind(&id.project)
        .bind(&id.domain)
        .bind(&id.name)
        .fetch_optional(conn)
        .await?;
        let stored = row
            .map(|row| row.try_get::<i64, _>(0))
            .transpose()?
            .map(|seq| seq as u64);
        if let Some(seq) = stored {
            if self.stored.len() >= REMEMBERED_EXECUTIONS {
                self.stored.clear();
            }
            self.stored.insert(id.clone(), seq);
        }
        Ok(stored)
    }

    /// Writes the seqs admitted in the open transaction, one statement per execution. Each write expects the
    /// seq this projection read: if another writer moved it meanwhile, this fails (and the projector retries
    /// the batch from the database) rather than applying an event twice.
    pub async fn flush(&mut self, conn: &mut AnyConnection) -> Result<()> {
        for (id, (before, now)) in &self.moved {
            let written = sqlx::query(&format!(
                "UPDATE {} SET last_seq = $1 WHERE project = $2 AND domain = $3 AND name = $4 AND last_seq = $5",
                self.table
            ))
            .bind(*now as i64)
            .bind(&id.project)
            .bind(&id.domain)
            .bind(&id.name)
            .bind(*before as i64)
            .execute(&mut *conn)
            .await?;
            if written.rows_affected() != 1 {
                return Err(Error::Conflict(format!(
                    "{}.last_seq of execution {id} is no longer {before}: another projector wrote it",
                    self.table
                )));
            }
        }
        Ok(())
    }

    /// The open transaction committed: its seqs are the stored ones now.
    pub fn committed(&mut self) {
        for (id, (_, now)) in self.moved.drain() {
            self.stored.insert(id, now);
        }
        for id in self.finished.drain() {
            self.stored.remove(&id);
        }
        if self.stored.len() > REMEMBERED_EXECUTIONS {
            self.stored.clear();
        }
    }

    /// The open transaction rolled back: nothing remembered may be trusted.
    pub fn rolled_back(&mut self) {
        self.stored.clear();
        self.moved.clear();
        self.finished.clear();
    }
}
