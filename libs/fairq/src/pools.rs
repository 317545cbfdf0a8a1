//! Named resource pools ("warehouse: 4 concurrent queries") shared by every propeller replica. A holder
//! takes tokens with a lease it renews while its attempt runs; a crashed holder's tokens come back when the
//! lease runs out. Tokens are never over-granted: in Redis the check and the grant are one Lua script, timed
//! by the Redis server's clock (replicas' clocks do not matter).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

#[async_trait]
pub trait ResourcePools: Send + Sync {
    /// Takes `amount` tokens of `pool` (at most `limit` in use) for `holder` until `lease` passes, or
    /// renews the lease when `holder` already holds them. `false`: not enough tokens free now.
    async fn acquire(
        &self,
        pool: &str,
        limit: u32,
        amount: u32,
        holder: &str,
        lease: Duration,
    ) -> Result<bool, PoolError>;

    /// Renews the lease of `holder`, which runs on its tokens: as `acquire`, except that a store which
    /// lost its state (Redis restarted empty) admits renewals first, so running holders count again before
    /// anyone new is granted.
    async fn renew(
        &self,
        pool: &str,
        limit: u32,
        amount: u32,
        holder: &str,
        lease: Duration,
    ) -> Result<bool, PoolError> {
        self.acquire(pool, limit, amount, holder, lease).await
    }

    /// Gives the tokens of `holder` back.
    async fn release(&self, pool: &str, holder: &str) -> Result<(), PoolError>;

    /// Tokens in use now (expired leases not counted).
    async fn in_use(&self, pool: &str) -> Result<u32, PoolError>;
}

/// Holders of one pool: tokens held and when the lease ends.
type Holders = HashMap<String, (u32, Instant)>;

/// Pools of one process (`aloft dev`, tests).
#[derive(Default)]
pub struct InProcessPools {
    pools: Mutex<HashMap<String, Holders>>,
}

impl InProcessPools {
    fn with_pool<T>(&self, pool: &str, action: impl FnOnce(&mut Holders) -> T) -> T {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        let holders = pools.entry(pool.to_string()).or_default();
        let now = Instant::now();
        holders.retain(|_, (_, expires)| *expires > now);
        action(holders)
    }
}

#[async_trait]
impl ResourcePools for InProcessPools {
    async fn acquire(
        &self,
        pool: &str,
        limit: u32,
        amount: u32,
        holder: &str,
        lease: Duration,
    ) -> Result<bool, PoolError> {
        Ok(self.with_pool(pool, |holders| {
            let expires = Instant::now() + lease;
            if let Some(held) = holders.get_mut(holder) {
                held.1 = expires;
                return true;
            }
            let used: u32 = holders.values().map(|(amount, _)| amount).sum();
            if used + amount > limit {
                return false;
            }
            holders.insert(holder.to_string(), (amount, expires));
            true
        }))
    }

    async fn release(&self, pool: &str, holder: &str) -> Result<(), PoolError> {
        self.with_pool(pool, |holders| holders.remove(holder));
        Ok(())
    }

    async fn in_use(&self, pool: &str) -> Result<u32, PoolError> {
        Ok(self.with_pool(pool, |holders| holders.values().map(|(amount, _)| amount).sum()))
    }
}

/// The start of every pool script: the Redis server's clock, and expired holders dropped.
macro_rules! drop_expired_holders {
    () => {
        r#"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
for _, holder in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  redis.call('HDEL', KEYS[2], holder)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
"#
    };
}

/// The grant is checked and made in the same script that dropped the expired holders. Before it: a store
/// that lost its state (the marker KEYS[3] is gone although this replica saw it, ARGV[6]) grants renewals
/// only (ARGV[5]) for one lease (KEYS[4]), the time every running holder takes to renew and count again.
const ACQUIRE: &str = concat!(
    drop_expired_holders!(),
    r#"
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('SET', KEYS[3], '1')
  if ARGV[6] == '1' then redis.call('SET', KEYS[4], '1', 'PX', ARGV[4]) end
end
if ARGV[5] ~= '1' and redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
local expires = now + tonumber(ARGV[4])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  redis.call('ZADD', KEYS[1], expires, ARGV[3])
  return 1
end
local used = 0
for _, amount in ipairs(redis.call('HVALS', KEYS[2])) do used = used + tonumber(amount) end
if used + tonumber(ARGV[2]) > tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], expires, ARGV[3])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[2])
return 1
"#
);

const IN_USE: &str = concat!(
    drop_expired_holders!(),
    r#"
local used = 0
for _, amount in ipairs(redis.call('HVALS', KEYS[2])) do used = used + tonumber(amount) end
return used
"#
);

/// Pools in Redis, shared by every replica that uses the same `prefix`.
///
/// Redis restarted empty forgets every holder while their attempts still run: granting at once would
/// exceed the limits. So the pools keep a marker key; a replica that saw it and finds it gone starts a
/// grace period of one lease, during which only renewals are granted (running holders renew every third of
/// a lease, so all of them count again before it ends). Replicas that all restarted with Redis cannot tell.
pub struct RedisPools {
    connection: redis::aio::ConnectionManager,
    prefix: String,
    acquire: redis::Script,
    in_use: redis::Script,
    /// This replica has seen the marker (set by its first successful call).
    seen_marker: std::sync::atomic::AtomicBool,
}

impl RedisPools {
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisPools, PoolError> {
        let client = redis::Client::open(url)?;
        // Bounded waits: without them a call made while Redis restarts can wait on a dead connection for
        // minutes, and the attempt service waits with it (found by the fault harness: a Redis restart held up
        // every tenant's queue for ~100 s).
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2))
            .set_number_of_retries(3)
            .set_max_delay(1_000);
        let connection = redis::aio::ConnectionManager::new_with_config(client, config).await?;
        Ok(RedisPools {
            connection,
            prefix: prefix.to_string(),
            acquire: redis::Script::new(ACQUIRE),
            in_use: redis::Script::new(IN_USE),
            seen_marker: std::sync::atomic::AtomicBool::new(false),
        })
    }

    async fn take_or_renew(
        &self,
        pool: &str,
        limit: u32,
        amount: u32,
        holder: &str,
        lease: Duration,
        renewal: bool,
    ) -> Result<bool, PoolError> {
        use std::sync::atomic::Ordering;
        let (leases, amounts) = self.keys(pool);
        let seen = self.seen_marker.load(Ordering::Relaxed);
        let granted: i64 = self
            .acquire
            .key(leases)
            .key(amounts)
            .key(format!("{}aloft:pools:marker", self.prefix))
            .key(format!("{}aloft:pools:grace", self.prefix))
            .arg(limit)
            .arg(amount)
            .arg(holder)
            .arg(lease.as_millis() as u64)
            .arg(if renewal { "1" } else { "0" })
            .arg(if seen { "1" } else { "0" })
            .invoke_async(&mut self.connection.clone())
            .await?;
        self.seen_marker.store(true, Ordering::Relaxed);
        Ok(granted == 1)
    }

    fn keys(&self, pool: &str) -> (String, String) {
        (
            format!("{}aloft:pool:{pool}:leases", self.prefix),
            format!("{}aloft:pool:{pool}:amounts", self.prefix),
        )
    }
}

#[async_trait]
impl ResourcePools for RedisPools {
    async fn acquire(
        &self,
        pool: &str,
        limit: u32,
        amount: u32,
        holder: &str,
        lease: Duration,
    ) -> Result<bool, PoolError> {
        self.take_or_renew(pool, limit, amount, holder, lease, false)
            .await
    }

    async fn renew(
        &self,
        pool: &str,
        limit: u32,
        amount: u32,
        holder: &str,
        lease: Duration,
    ) -> Result<bool, PoolError> {
        self.take_or_renew(pool, limit, amount, holder, lease, true).await
    }

    async fn release(&self, pool: &str, holder: &str) -> Result<(), PoolError> {
        let (leases, amounts) = self.keys(pool);
        let mut connection = self.connection.clone();
        let _: () = redis::pipe()
            .atomic()
            .zrem(leases, holder)
            .hdel(amounts, holder)
            .query_async(&mut connection)
            .await?;
        Ok(())
    }

    async fn in_use(&self, pool: &str) -> Result<u32, PoolError> {
        let (leases, amounts) = self.keys(pool);
        let used: i64 = self
            .in_use
            .key(leases)
            .key(amounts)
            .invoke_async(&mut self.connection.clone())
            .await?;
        Ok(used.max(0) as u32)
    }
}
