//! The execution states admin's projection folds, kept between transactions for the executions that run
//! now. A state the cache lacks (evicted, or after a restart or a rolled-back transaction) is rebuilt from the
//! execution's history rows, which hold every event the projection admitted, in log order.

use std::collections::HashMap;

use aloft_core::state::{ExecutionPhase, ExecutionState};
use aloft_core::ExecutionId;
use sqlx::AnyConnection;

use crate::queries::{event_row, fold_history, EVENT_COLUMNS};
use crate::{Error, Result};

/// Executions whose state is kept between transactions at most: past it the least recently used go (a state
/// is rebuilt from its history rows when its execution moves again).
pub const DEFAULT_CAPACITY: usize = 4_096;

pub(crate) struct StateCache {
    capacity: usize,
    states: HashMap<ExecutionId, Cached>,
    /// Counts uses, to find the least recently used.
    clock: u64,
}

struct Cached {
    state: ExecutionState,
    used: u64,
}

impl StateCache {
    pub(crate) fn new(capacity: usize) -> Self {
        StateCache {
            capacity: capacity.max(1),
            states: HashMap::new(),
            clock: 0,
        }
    }

    pub(crate) fn get(&self, id: &ExecutionId) -> Option<&ExecutionState> {
        self.states.get(id).map(|cached| &cached.state)
    }

    pub(crate) fn insert(&mut self, id: ExecutionId, state: ExecutionState) {
        self.clock += 1;
        self.states.insert(
            id,
            Cached {
                state,
                used: self.clock,
            },
        );
    }

    /// The state of `id` as the tables hold it (read back from its history rows on a miss), or `None` when
    /// its rows can no longer change: it has finished (no event changes a finished execution's state).
    pub(crate) async fn get_or_load(
        &mut self,
        conn: &mut AnyConnection,
        id: &ExecutionId,
    ) -> Result<Option<&mut ExecutionState>> {
        self.clock += 1;
        if !self.states.contains_key(id) {
            let Some(state) = load(conn, id).await? else {
                return Ok(None);
            };
            self.states.insert(id.clone(), Cached { state, used: 0 });
        }
        Ok(self.states.get_mut(id).map(|cached| {
            cached.used = self.clock;
            &mut cached.state
        }))
    }

    /// After a transaction that moved `touched` committed: finished executions are dropped, and the least
    /// recently used ones while over capacity. (Nothing is dropped while a transaction is open: the states
    /// of its executions are ahead of the history rows until it commits.)
    pub(crate) fn committed(&mut self, touched: &[ExecutionId]) {
        for id in touched {
            if self
                .states
                .get(id)
                .is_some_and(|cached| cached.state.phase.is_terminal())
            {
                self.states.remove(id);
            }
        }
        if self.states.len() <= self.capacity {
            return;
        }
        // Down to three quarters at once, so a full cache does not sort on every commit.
        let keep = self.capacity * 3 / 4;
        let mut uses: Vec<u64> = self.states.values().map(|cached| cached.used).collect();
        uses.sort_unstable();
        let cutoff = uses[uses.len() - keep.max(1)];
        self.states.retain(|_, cached| cached.used >= cutoff);
    }

    pub(crate) fn clear(&mut self) {
        self.states.clear();
    }
}

/// Folds `id`'s history rows (every event the projection admitted for it, in log order) into its state;
/// `None` when it has finished.
async fn load(conn: &mut AnyConnection, id: &ExecutionId) -> Result<Option<ExecutionState>> {
    let phase: Option<String> =
        sqlx::query_scalar("SELECT phase FROM executions WHERE project = $1 AND domain = $2 AND name = $3")
            .bind(&id.project)
            .bind(&id.domain)
            .bind(&id.name)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(phase) = phase else {
        return Err(Error::Corrupt {
            table: "executions",
            reason: format!("an event of {id} was admitted but the execution has no row"),
        });
    };
    if phase
        .parse::<ExecutionPhase>()
        .is_ok_and(|phase| phase.is_terminal())
    {
        return Ok(None);
    }
    let rows = sqlx::query(&format!(
        "{EVENT_COLUMNS} WHERE project = $1 AND domain = $2 AND execution = $3 \
         ORDER BY log_partition, log_offset, log_index"
    ))
    .bind(&id.project)
    .bind(&id.domain)
    .bind(&id.name)
    .fetch_all(&mut *conn)
    .await?;
    let rows = rows.iter().map(event_row).collect::<Result<Vec<_>>>()?;
    fold_history(id, &rows).map(Some)
}
