//! Time for the scheduler, injectable so tests can run a simulated hour in seconds.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

#[async_trait::async_trait]
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    /// Resolves when it may be time to look for due fires again.
    async fn tick(&self);
}

/// Wall-clock time, checked every `interval`.
pub struct SystemClock {
    pub interval: Duration,
}

#[async_trait::async_trait]
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn tick(&self) {
        tokio::time::sleep(self.interval).await;
    }
}

/// A clock that moves only when told to; every move wakes the scheduler.
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
    moved: watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock {
            now: Mutex::new(start),
            moved: watch::channel(start).0,
        }
    }

    pub fn set(&self, time: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = time;
        self.moved.send_replace(time);
    }

    pub fn advance(&self, by: chrono::Duration) {
        let next = self.now() + by;
        self.set(next);
    }
}

#[async_trait::async_trait]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn tick(&self) {
        let mut moved = self.moved.subscribe();
        moved.borrow_and_update();
        // A periodic wake-up as well, so backlogs drain and leadership changes are noticed.
        let _ = tokio::time::timeout(Duration::from_millis(200), moved.changed()).await;
    }
}
