//! One conformance suite for the shared-state parts (resource pools, tenant rate limits), run in process
//! (always) and on Redis (when `ALOFT_TEST_REDIS_URL` is set; required when `ALOFT_REQUIRE_REAL_BACKENDS=1`).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aloft_fairq::pools::{InProcessPools, RedisPools, ResourcePools};
use aloft_fairq::ratelimit::{InProcessRateLimiter, RateLimit, RedisRateLimiter, TenantRateLimiter};
use aloft_fairq::Tenant;

fn redis_url() -> Option<String> {
    match std::env::var("ALOFT_TEST_REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
                "ALOFT_TEST_REDIS_URL is required"
            );
            eprintln!("skipping: ALOFT_TEST_REDIS_URL is not set");
            None
        }
    }
}

/// A unique key prefix per test, so runs and tests never share a pool.
fn prefix() -> String {
    format!("test-{}:", uuid::Uuid::new_v4().simple())
}

async fn in_process_pools() -> Option<Arc<dyn ResourcePools>> {
    Some(Arc::new(InProcessPools::default()))
}

async fn redis_pools() -> Option<Arc<dyn ResourcePools>> {
    let url = redis_url()?;
    Some(Arc::new(RedisPools::connect(&url, &prefix()).await.unwrap()))
}

const LIMIT: RateLimit = RateLimit {
    per_second: NonZeroU32::MIN.saturating_add(1),
    burst: NonZeroU32::MIN.saturating_add(2),
};

async fn in_process_limiter() -> Option<Arc<dyn TenantRateLimiter>> {
    Some(Arc::new(InProcessRateLimiter::new(LIMIT)))
}

async fn redis_limiter() -> Option<Arc<dyn TenantRateLimiter>> {
    let url = redis_url()?;
    Some(Arc::new(
        RedisRateLimiter::connect(&url, &prefix(), LIMIT).await.unwrap(),
    ))
}

macro_rules! suite {
    ($pools:path, $limiter:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_pool_never_grants_more_than_its_limit_to_racing_holders() {
            let Some(pools) = $pools().await else { return };
            let holding = Arc::new(AtomicU32::new(0));
            let most = Arc::new(AtomicU32::new(0));
            let mut racers = Vec::new();
            for index in 0..40 {
                let (pools, holding, most) = (Arc::clone(&pools), Arc::clone(&holding), Arc::clone(&most));
                racers.push(tokio::spawn(async move {
                    let holder = format!("attempt-{index}");
                    loop {
                        if pools
                            .acquire("warehouse", 4, 1, &holder, Duration::from_secs(30))
                            .await
                            .unwrap()
                        {
                            let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            holding.fetch_sub(1, Ordering::SeqCst);
                            pools.release("warehouse", &holder).await.unwrap();
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }));
            }
            for racer in racers {
                racer.await.unwrap();
            }
            assert_eq!(most.load(Ordering::SeqCst), 4, "four at a time, never more");
            assert_eq!(pools.in_use("warehouse").await.unwrap(), 0);
        }

        #[tokio::test]
        async fn a_crashed_holders_tokens_come_back_after_its_lease_and_renewal_keeps_them() {
            let Some(pools) = $pools().await else { return };
            // Leases far longer than the pauses between renewals, so a busy machine cannot make them lapse.
            let lease = Duration::from_millis(1_000);
            assert!(pools.acquire("gpu", 2, 2, "crashed", lease).await.unwrap());
            assert!(!pools
                .acquire("gpu", 2, 2, "kept", Duration::from_secs(30))
                .await
                .unwrap());
            assert_eq!(pools.in_use("gpu").await.unwrap(), 2);
            tokio::time::sleep(Duration::from_millis(1_200)).await;
            assert_eq!(pools.in_use("gpu").await.unwrap(), 0, "the lease ran out");
            assert!(pools.acquire("gpu", 2, 1, "kept", lease).await.unwrap());
            // Renewing (acquiring again as the same holder) extends the lease without taking more.
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                assert!(pools.acquire("gpu", 2, 1, "kept", lease).await.unwrap());
            }
            assert_eq!(
                pools.in_use("gpu").await.unwrap(),
                1,
                "renewed past its first lease"
            );
            assert!(!pools.acquire("gpu", 2, 2, "other", lease).await.unwrap());
            pools.release("gpu", "kept").await.unwrap();
            assert!(pools.acquire("gpu", 2, 2, "other", lease).await.unwrap());
        }

        #[tokio::test]
        async fn a_tenant_over_its_rate_waits_while_another_is_unaffected() {
            let Some(limiter) = $limiter().await else {
                return;
            };
            let (busy, quiet) = (Tenant::new("busy", "prod"), Tenant::new("quiet", "prod"));
            // A burst of 3 passes, the fourth call at once is refused with a wait of about one interval.
            for _ in 0..3 {
                limiter.check(&busy).await.unwrap();
            }
            let wait = limiter.check(&busy).await.unwrap_err();
            assert!(
                wait > Duration::ZERO && wait <= Duration::from_millis(600),
                "{wait:?}"
            );
            limiter.check(&quiet).await.unwrap();
            tokio::time::sleep(wait + Duration::from_millis(20)).await;
            limiter.check(&busy).await.unwrap();
        }
    };
}

mod in_process {
    use super::*;
    suite!(in_process_pools, in_process_limiter);
}

mod redis {
    use super::*;
    suite!(redis_pools, redis_limiter);
}

/// Redis restarted empty forgets the holders whose attempts still run: for one lease only renewals are
/// granted, so the running holders count again before a newcomer can exceed the limit.
#[tokio::test]
async fn after_redis_loses_the_pools_running_holders_renew_before_anyone_new_is_granted() {
    let Some(url) = redis_url() else { return };
    let prefix = prefix();
    let pools = RedisPools::connect(&url, &prefix).await.unwrap();
    let lease = Duration::from_millis(900);
    assert!(pools.acquire("gpu", 1, 1, "running", lease).await.unwrap());
    assert!(!pools.acquire("gpu", 1, 1, "newcomer", lease).await.unwrap());

    // What a restart without persistence does to this deployment's keys (only this test's prefix: other
    // tests share the server).
    let mut connection = ::redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    let _: () = ::redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut connection)
        .await
        .unwrap();

    assert!(
        !pools.acquire("gpu", 1, 1, "newcomer", lease).await.unwrap(),
        "a newcomer waits out the grace period"
    );
    assert!(
        pools.renew("gpu", 1, 1, "running", lease).await.unwrap(),
        "the running holder counts again"
    );
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    assert!(pools.renew("gpu", 1, 1, "running", lease).await.unwrap());
    assert!(
        !pools.acquire("gpu", 1, 1, "newcomer", lease).await.unwrap(),
        "after the grace period the limit counts the running holder"
    );
    pools.release("gpu", "running").await.unwrap();
    assert!(pools.acquire("gpu", 1, 1, "newcomer", lease).await.unwrap());
}

/// A replica meeting pools it never saw (a fresh deployment) grants at once: there is nothing to recover.
#[tokio::test]
async fn a_fresh_deployment_grants_its_first_tokens_at_once() {
    let Some(url) = redis_url() else { return };
    let pools = RedisPools::connect(&url, &prefix()).await.unwrap();
    assert!(pools
        .acquire("gpu", 1, 1, "first", Duration::from_secs(30))
        .await
        .unwrap());
}
