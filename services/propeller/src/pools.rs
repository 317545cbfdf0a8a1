//! Holding resource-pool tokens around an attempt: the attempt waits until it holds every pool it declares
//! (taken in name order, so two attempts never wait on each other), renews its leases while it runs, and
//! gives the tokens back when it ends. Tokens live in Redis when replicas share them; a killed propeller's
//! tokens return when their lease runs out.

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

impl PoolAccess {
    /// Waits until `holder` holds every pool in `wanted`, or `cancel` fires (then nothing is held).
    pub async fn acquire(
        &self,
        holder: &str,
        wanted: &BTreeMap<String, u32>,
        cancel: &CancellationToken,
    ) -> Option<HeldTokens> {
        let mut held: Vec<String> = Vec::new();
        for (pool, amount) in wanted {
            let mut wait = Duration::from_millis(50);
            loop {
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
                            warn!(%pool, %error, "resource pool unreachable; waiting");
                            false
                        }),
                    // Not defined (yet, on this replica): wait for the registry to tell its limit.
                    None => false,
                };
                if granted {
                    held.push(pool.clone());
                    break;
                }
                tokio::select! {
                    _ = cancel.cancelled() => {
                        self.release_all(holder, &held).await;
                        return None;
                    }
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(Duration::from_millis(500));
            }
        }
        let renewal = CancellationToken::new();
        let tokens = HeldTokens {
            access: self.clone(),
            holder: holder.to_string(),
            pools: held,
            renewal: renewal.clone(),
        };
        tokens.keep_renewing(wanted.clone());
        Some(tokens)
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
                            .acquire(pool, limit, *amount, &holder, access.lease)
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
