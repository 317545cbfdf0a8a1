//! Per-tenant API rate limits for admin: GCRA in process (governor) for one replica, or in Redis (the same
//! algorithm in one Lua script, on the Redis server's clock) when admin runs as several replicas. A call
//! over the limit learns how long to wait.

use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::dispatcher::Tenant;

/// Calls per second per tenant, and how many may come at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

#[async_trait]
pub trait TenantRateLimiter: Send + Sync {
    /// `Ok(())` when `tenant` may make a call now; otherwise how long until it may.
    async fn check(&self, tenant: &Tenant) -> Result<(), Duration>;
}

pub struct InProcessRateLimiter {
    limiter: DefaultKeyedRateLimiter<Tenant>,
    clock: governor::clock::DefaultClock,
}

impl InProcessRateLimiter {
    pub fn new(limit: RateLimit) -> InProcessRateLimiter {
        InProcessRateLimiter {
            limiter: RateLimiter::keyed(Quota::per_second(limit.per_second).allow_burst(limit.burst)),
            clock: governor::clock::DefaultClock::default(),
        }
    }
}

#[async_trait]
impl TenantRateLimiter for InProcessRateLimiter {
    async fn check(&self, tenant: &Tenant) -> Result<(), Duration> {
        use governor::clock::Clock;
        self.limiter
            .check_key(tenant)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// GCRA: the theoretical arrival time moves one emission interval per call; a call that would put it
/// more than the burst ahead of now is refused with the wait in milliseconds.
const GCRA: &str = r#"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if allow_at > now then return allow_at - now end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(tolerance + interval))
return 0
"#;

pub struct RedisRateLimiter {
    connection: redis::aio::ConnectionManager,
    prefix: String,
    limit: RateLimit,
    script: redis::Script,
}

impl RedisRateLimiter {
    pub async fn connect(
        url: &str,
        prefix: &str,
        limit: RateLimit,
    ) -> Result<RedisRateLimiter, redis::RedisError> {
        let client = redis::Client::open(url)?;
        Ok(RedisRateLimiter {
            connection: redis::aio::ConnectionManager::new(client).await?,
            prefix: prefix.to_string(),
            limit,
            script: redis::Script::new(GCRA),
        })
    }
}

#[async_trait]
impl TenantRateLimiter for RedisRateLimiter {
    async fn check(&self, tenant: &Tenant) -> Result<(), Duration> {
        let interval_millis = (1000 / u64::from(self.limit.per_second.get())).max(1);
        let key = format!("{}aloft:rate:{}/{}", self.prefix, tenant.project, tenant.domain);
        let answer: Result<i64, _> = self
            .script
            .key(key)
            .arg(interval_millis)
            .arg(self.limit.burst.get())
            .invoke_async(&mut self.connection.clone())
            .await;
        match answer {
            Ok(0) => Ok(()),
            Ok(wait) => Err(Duration::from_millis(wait.max(1) as u64)),
            // An unreachable Redis must not take the API down: the call passes, and the outage is logged.
            Err(error) => {
                tracing::warn!(%error, "rate limiter unreachable; letting the call through");
                Ok(())
            }
        }
    }
}
