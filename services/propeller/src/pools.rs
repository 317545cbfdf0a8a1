//! Holding resource-pool tokens around an attempt: before the dispatcher starts an attempt it takes every
//! pool the task declares in one try (in name order, all or none, so two attempts never hold parts of what
//! the other needs), the attempt renews its leases while it runs and gives the tokens back when it ends.
//! An attempt whose pool is full waits in its tenant's queue without holding an executor slot. Tokens live
//! in Redis when replicas share them; a killed propeller's tokens return when their lease runs out.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aloft_fairq::pools::ResourcePools;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// The pools, their limits as defined on the registry, and how long a lease lasts.
#[derive(Clone)]
pub struct PoolAccess {
    pub pools: Arc<dyn ResourcePools>,
    pub limits: Arc<RwLock<HashMap<String, u32>>>,
    pub lease: Duration,
}

/// Tokens held by one attempt; `release` gives them back.
pub struct HeldTokens {
    access: PoolAccess,
    holder: String,
    pools: Vec<String>,
    renewal: CancellationToken,
}

/// The pool an attempt waits for: too few free tokens, not defined on this replica yet, or unreachable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resource pool {pool:?} has too few free tokens")]
pub struct PoolBusy {
    pub pool: String,
}

impl PoolAccess {
    /// Takes every pool in `wanted` for `holder` in one try, or none: `Err` names the first pool without
    /// enough free tokens (or not defined on this replica yet, or unreachable).
    pub async fn try_acquire(
        &self,
        holder: &str,
        wanted: &BTreeMap<String, u32>,
    ) -> Result<HeldTokens, PoolBusy> {
        let mut held: Vec<String> = Vec::new();
        for (pool, amount) in wanted {
            let limit = self
                .limits
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(pool)
                .copied();
            let granted = match limit {
                Some(limit) => self
                    .pools
                    .acquire(pool, limit, *amount, holder, self.lease)
                    .await
                    .unwrap_or_else(|error| {
                        warn!(%pool, %error, "resource pool unreachable; the attempt waits");
                        false
                    }),
                // Not defined (yet, on this replica): wait for the registry to tell its limit.
                None => false,
            };
            if !granted {
                self.release_all(holder, &held).await;
                return Err(PoolBusy { pool: pool.clone() });
            }
            held.push(pool.clone());
        }
        let tokens = HeldTokens {
            access: self.clone(),
            holder: holder.to_string(),
            pools: held,
            renewal: CancellationToken::new(),
        };
        tokens.keep_renewing(wanted.clone());
        Ok(tokens)
    }

    async fn release_all(&self, holder: &str, pools: &[String]) {
        for pool in pools {
            if let Err(error) = self.pools.release(pool, holder).await {
                warn!(%pool, %error, "cannot release pool tokens; they return when the lease ends");
            }
        }
    }
}

impl HeldTokens {
    fn keep_renewing(&self, wanted: BTreeMap<String, u32>) {
        let (access, holder, stop) = (self.access.clone(), self.holder.clone(), self.renewal.clone());
        tokio::spawn(async move {
            let every = access.lease / 3;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                for (pool, amount) in &wanted {
                    let limit = access
                        .limits
                        .read()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(pool)
                        .copied();
                    if let Some(limit) = limit {
                        if let Err(error) = access
                            .pools
                            .renew(pool, limit, *amount, &holder, access.lease)
                            .await
                        {
                            warn!(%pool, %error, "cannot renew a pool lease");
                        }
                    }
                }
            }
        });
    }

    pub async fn release(self) {
        self.renewal.cancel();
        self.access.release_all(&self.holder, &self.pools).await;
    }
}
