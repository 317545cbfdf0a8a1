//! Time for the scheduler, injectable so tests can run a simulated hour in seconds and fault drills can step
//! a running scheduler's clock.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
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

/// Wall-clock time plus a signed offset in seconds read from a file at every tick (`--clock-offset-file`):
/// a clock step of the scheduler's host, forward or back, without touching the host's clock. The fault
/// harness steps a running scheduler with it. A missing file is no offset; a file that does not hold a
/// number keeps the offset read before (and says so once per change).
pub struct SteppedClock {
    interval: Duration,
    file: PathBuf,
    offset_millis: AtomicI64,
    refused: Mutex<Option<String>>,
}

impl SteppedClock {
    pub fn new(interval: Duration, file: PathBuf) -> SteppedClock {
        let clock = SteppedClock {
            interval,
            file,
            offset_millis: AtomicI64::new(0),
            refused: Mutex::new(None),
        };
        clock.read_offset();
        clock
    }

    fn read_offset(&self) {
        let text = match std::fs::read_to_string(&self.file) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::from("0"),
            Err(error) => return self.refuse(format!("cannot read it: {error}")),
        };
        match text.trim().parse::<f64>() {
            Ok(seconds) if seconds.is_finite() && seconds.abs() < 1e9 => {
                let millis = (seconds * 1000.0).round() as i64;
                let before = self.offset_millis.swap(millis, Ordering::Relaxed);
                if before != millis {
                    tracing::info!(offset_seconds = seconds, file = %self.file.display(), "the clock offset changed");
                }
                *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
            _ => self.refuse(format!("it holds {:?}, not a number of seconds", text.trim())),
        }
    }

    fn refuse(&self, why: String) {
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        if refused.as_deref() != Some(why.as_str()) {
            tracing::warn!(file = %self.file.display(), "the clock offset file is ignored: {why}");
            *refused = Some(why);
        }
    }
}

#[async_trait::async_trait]
impl Clock for SteppedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.offset_millis.load(Ordering::Relaxed))
    }

    async fn tick(&self) {
        tokio::time::sleep(self.interval).await;
        self.read_offset();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stepped_clock_follows_its_file_forward_and_back_and_keeps_the_last_offset_on_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("offset");
        let clock = SteppedClock::new(Duration::from_millis(1), file.clone());
        let drift = |clock: &SteppedClock| (clock.now() - Utc::now()).num_seconds();
        assert_eq!(drift(&clock), 0, "no file: no offset");
        std::fs::write(&file, "3600\n").unwrap();
        clock.tick().await;
        assert!((3599..=3600).contains(&drift(&clock)), "stepped an hour forward");
        std::fs::write(&file, "-90.5").unwrap();
        clock.tick().await;
        assert!((-91..=-90).contains(&drift(&clock)), "stepped back");
        std::fs::write(&file, "soon").unwrap();
        clock.tick().await;
        assert!(
            (-91..=-90).contains(&drift(&clock)),
            "garbage keeps the last offset"
        );
        std::fs::remove_file(&file).unwrap();
        clock.tick().await;
        assert_eq!(drift(&clock), 0, "a removed file is no offset");
    }
}
