//! The delivery loop: picks pending deliveries that are due, waits for their destination's rate limit,
//! sends, and records the attempt with the delivery's new state in one transaction (so a restart sends
//! exactly what was not recorded as delivered). Transient failures are retried with exponential backoff and
//! jitter up to a budget (never sooner than a `Retry-After` the destination sent); permanent ones are
//! recorded and not retried.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::{due_deliveries, next_due, record_attempt, AttemptResult, PendingDelivery};
use aloft_core::notify::{DeliveryEvent, DeliveryOutcome};
use aloft_store::Store;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rand::Rng;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::channels::{destination, Channels, SendOutcome};
use crate::metrics;

/// Retry and rate-limit settings.
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    /// Attempts before a transiently failing delivery is given up.
    pub max_attempts: u32,
    /// The first retry waits about this long; each further one twice as long, up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Sends in flight at once.
    pub concurrency: usize,
    /// Per destination: Slack allows about one message per second per webhook.
    pub slack_per_second: NonZeroU32,
    /// Per SMTP server.
    pub smtp_per_second: NonZeroU32,
    /// Per webhook host.
    pub webhook_per_second: NonZeroU32,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            max_attempts: 8,
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(300),
            concurrency: 32,
            slack_per_second: NonZeroU32::MIN,
            smtp_per_second: NonZeroU32::new(50).unwrap_or(NonZeroU32::MIN),
            webhook_per_second: NonZeroU32::new(50).unwrap_or(NonZeroU32::MIN),
        }
    }
}

impl DeliveryPolicy {
    /// The wait before attempt `attempt + 1` after `attempt` failed: `base * 2^(attempt-1)`, capped, with
    /// jitter between half and all of it, so retries of many deliveries spread out.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let full = self
            .retry_base
            .saturating_mul(1u32 << exponent)
            .min(self.retry_max);
        let factor = rand::thread_rng().gen_range(0.5..=1.0);
        full.mul_f64(factor)
    }
}

struct Limiters {
    slack: DefaultKeyedRateLimiter<String>,
    smtp: DefaultKeyedRateLimiter<String>,
    webhook: DefaultKeyedRateLimiter<String>,
}

impl Limiters {
    fn new(policy: &DeliveryPolicy) -> Limiters {
        Limiters {
            slack: RateLimiter::keyed(Quota::per_second(policy.slack_per_second)),
            smtp: RateLimiter::keyed(Quota::per_second(policy.smtp_per_second)),
            webhook: RateLimiter::keyed(Quota::per_second(policy.webhook_per_second)),
        }
    }

    async fn wait(&self, destination: &String) {
        let limiter = if destination.starts_with("slack:") {
            &self.slack
        } else if destination.starts_with("smtp:") {
            &self.smtp
        } else {
            &self.webhook
        };
        limiter.until_key_ready(destination).await;
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Sends until `shutdown`; sends in flight finish (each is bounded by a timeout) before it returns.
pub async fn run(
    store: Store,
    policy: DeliveryPolicy,
    deliveries_ready: Arc<Notify>,
    attempts_recorded: Arc<Notify>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let channels = Arc::new(Channels::new()?);
    let limiters = Arc::new(Limiters::new(&policy));
    // Deliveries being sent. A finished send leaves this set only after a query that started after its
    // record: a query already running may have read the row as still pending, and must not send it again.
    let mut in_flight: HashSet<String> = HashSet::new();
    let finished: Arc<Mutex<Vec<String>>> = Arc::default();
    let permits = Arc::new(Semaphore::new(policy.concurrency.max(1)));
    let policy = Arc::new(policy);
    let mut sends = JoinSet::new();
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let recorded_before_query = std::mem::take(&mut *finished.lock().unwrap_or_else(|p| p.into_inner()));
        let now = now_millis();
        let due = due_deliveries(store.pool(), now, 512).await;
        for id in &recorded_before_query {
            in_flight.remove(id);
        }
        let due = match due {
            Ok(due) => due,
            Err(error) => {
                warn!(%error, "cannot read pending deliveries; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let had_due = !due.is_empty();
        let mut started = 0;
        for delivery in due {
            if !in_flight.insert(delivery.delivery_id.clone()) {
                continue;
            }
            started += 1;
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                break;
            };
            let (store, channels, limiters, policy, finished, recorded) = (
                store.clone(),
                Arc::clone(&channels),
                Arc::clone(&limiters),
                Arc::clone(&policy),
                Arc::clone(&finished),
                Arc::clone(&attempts_recorded),
            );
            sends.spawn(async move {
                let id = delivery.delivery_id.clone();
                attempt(&store, &channels, &limiters, &policy, delivery).await;
                finished.lock().unwrap_or_else(|p| p.into_inner()).push(id);
                recorded.notify_one();
                drop(permit);
            });
        }
        while sends.try_join_next().is_some() {}
        if started > 0 {
            // More may be due right away (a full page, or sends that finished meanwhile).
            tokio::task::yield_now().await;
            if started >= 512 {
                continue;
            }
        }
        let wait = if had_due && started == 0 {
            // Everything due is in flight (waiting for a rate limit, say): wait for a send to finish.
            Duration::from_secs(1)
        } else {
            match next_due(store.pool()).await {
                Ok(Some(at)) => Duration::from_millis((at - now_millis()).clamp(5, 1000) as u64),
                _ => Duration::from_secs(1),
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = deliveries_ready.notified() => {}
            _ = attempts_recorded.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    while sends.join_next().await.is_some() {}
    Ok(())
}

/// One attempt of one delivery, recorded (retrying the record until the database answers: the message
/// went out, and forgetting that would send it again after a restart).
async fn attempt(
    store: &Store,
    channels: &Channels,
    limiters: &Limiters,
    policy: &DeliveryPolicy,
    delivery: PendingDelivery,
) {
    limiters.wait(&destination(&delivery)).await;
    let channel = Channels::channel_name(&delivery);
    let mut span = aloft_telemetry::trace::Span::start(
        "notifier.deliver",
        &delivery.traceparent,
        false,
        &[
            ("aloft.execution", delivery.execution.to_string()),
            ("aloft.channel", channel.to_string()),
            ("aloft.attempt", (delivery.attempts + 1).to_string()),
        ],
    );
    let send_started = std::time::Instant::now();
    let outcome = channels.send(&delivery).await;
    match &outcome {
        SendOutcome::Delivered => {}
        SendOutcome::Permanent(reason)
        | SendOutcome::Transient(reason)
        | SendOutcome::TransientAfter(reason, _) => span.fail(reason),
    }
    drop(span);
    let send_millis = send_started.elapsed().as_millis();
    let number = delivery.attempts + 1;
    let at = now_millis();
    let (result, event_outcome, label) = match outcome {
        SendOutcome::Delivered => (
            AttemptResult::Delivered { at },
            DeliveryOutcome::Delivered,
            "delivered",
        ),
        SendOutcome::Permanent(reason) => (
            AttemptResult::Failed {
                at,
                reason: reason.clone(),
            },
            DeliveryOutcome::GaveUp { reason },
            "gave_up",
        ),
        SendOutcome::Transient(reason) | SendOutcome::TransientAfter(reason, _)
            if number >= policy.max_attempts =>
        {
            let reason = format!("gave up after {number} attempts: {reason}");
            (
                AttemptResult::Failed {
                    at,
                    reason: reason.clone(),
                },
                DeliveryOutcome::GaveUp { reason },
                "gave_up",
            )
        }
        SendOutcome::Transient(reason) => {
            let retry_at = at + policy.backoff(number).as_millis() as i64;
            (
                AttemptResult::Retry {
                    at,
                    retry_at,
                    reason: reason.clone(),
                },
                DeliveryOutcome::WillRetry { reason, retry_at },
                "retry",
            )
        }
        SendOutcome::TransientAfter(reason, asked) => {
            // The destination's wait, or our backoff when that is longer.
            let retry_at = at + policy.backoff(number).max(asked).as_millis() as i64;
            (
                AttemptResult::Retry {
                    at,
                    retry_at,
                    reason: reason.clone(),
                },
                DeliveryOutcome::WillRetry { reason, retry_at },
                "retry",
            )
        }
    };
    metrics::ATTEMPTS.increment(&[("channel", channel), ("outcome", label)], 1.0);
    if label == "delivered" {
        let lag = (at - delivery.context.finished_at).max(0) as f64 / 1000.0;
        metrics::DELIVERY_LAG.observe(&[("channel", channel)], lag);
    } else {
        info!(delivery = %delivery.delivery_id, execution = %delivery.execution, channel, outcome = label, "delivery attempt failed");
    }
    let recipient = match delivery.recipient.split_once(':') {
        // A Slack recipient is the secret reference, never the URL.
        Some(("slack", reference)) => format!("slack:{reference}"),
        _ => delivery.recipient.clone(),
    };
    let event = DeliveryEvent::DeliveryAttempted {
        delivery_id: delivery.delivery_id.clone(),
        execution: delivery.execution.clone(),
        channel: channel.to_string(),
        recipient,
        attempt: number,
        outcome: event_outcome,
        at,
    };
    let record_started = std::time::Instant::now();
    let mut wait = Duration::from_millis(100);
    while let Err(error) = record_attempt(store.pool(), &delivery.delivery_id, number, &result, &event).await
    {
        warn!(%error, delivery = %delivery.delivery_id, "cannot record a delivery attempt; retrying");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
    tracing::debug!(
        delivery = %delivery.delivery_id,
        channel,
        send_millis = send_millis as u64,
        record_millis = record_started.elapsed().as_millis() as u64,
        "attempt recorded"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_destination_waits_for_its_rate_limit_and_others_do_not() {
        let policy = DeliveryPolicy {
            slack_per_second: NonZeroU32::MIN,
            ..DeliveryPolicy::default()
        };
        let limiters = Limiters::new(&policy);
        let busy = "slack:env:TEAM_A".to_string();
        let started = std::time::Instant::now();
        limiters.wait(&busy).await;
        limiters.wait(&"slack:env:TEAM_B".to_string()).await;
        let other_destination = started.elapsed();
        limiters.wait(&busy).await;
        // One message per second to one Slack webhook: the second waits for the next second.
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
        assert!(
            other_destination < Duration::from_millis(900),
            "{other_destination:?}"
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let policy = DeliveryPolicy {
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_millis(1000),
            ..DeliveryPolicy::default()
        };
        for _ in 0..100 {
            let first = policy.backoff(1);
            assert!(
                first >= Duration::from_millis(50) && first <= Duration::from_millis(100),
                "{first:?}"
            );
            let third = policy.backoff(3);
            assert!(
                third >= Duration::from_millis(200) && third <= Duration::from_millis(400),
                "{third:?}"
            );
            let late = policy.backoff(30);
            assert!(
                late >= Duration::from_millis(500) && late <= Duration::from_millis(1000),
                "{late:?}"
            );
        }
    }
}
