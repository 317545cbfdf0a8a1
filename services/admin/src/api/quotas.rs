//! Tenant quotas and resource pools at the API: a tenant's weight and concurrency limit, and the limits of
//! named pools, validated and recorded on the registry, where every propeller picks them up without a
//! restart.

use super::*;

impl AdminApi {
    /// Records a tenant's weight and concurrency quota; propellers apply it from the registry.
    pub(super) async fn set_tenant_quota(
        &self,
        request: wire::SetTenantQuotaRequest,
    ) -> ApiResult<wire::SetTenantQuotaResponse> {
        self.require_domain(&request.project, &request.domain).await?;
        let max_running = (request.max_running > 0).then_some(request.max_running);
        aloft_fairq::TenantPolicy {
            weight: request.weight,
            max_running,
        }
        .validate()
        .map_err(|e| invalid(format!("quota of {}/{}: {e}", request.project, request.domain)))?;
        self.append_registry(RegistryEvent::TenantQuotaSet {
            project: request.project,
            domain: request.domain,
            weight: request.weight,
            max_running,
            at: now_millis(),
        })
        .await?;
        Ok(wire::SetTenantQuotaResponse {})
    }
}

impl AdminApi {
    pub(super) async fn define_pool(
        &self,
        request: wire::DefinePoolRequest,
    ) -> ApiResult<wire::DefinePoolResponse> {
        validate_name("resource pool", &request.name).map_err(|e| invalid(e.to_string()))?;
        if request.limit == 0 {
            return Err(invalid(format!(
                "pool {}: limit must be at least 1",
                request.name
            )));
        }
        self.append_registry(RegistryEvent::PoolDefined {
            name: request.name,
            limit: request.limit,
            at: now_millis(),
        })
        .await?;
        Ok(wire::DefinePoolResponse {})
    }

    /// Every pool a task declares must be defined, with room for what the task asks.
    pub(super) async fn check_task_pools(&self, spec: &TaskSpec) -> ApiResult<()> {
        for (pool, amount) in spec.resources.iter().flat_map(|r| r.pools.iter()) {
            match self.store.pool_limit(pool).await? {
                None => {
                    return Err(invalid(format!(
                        "task {}: unknown resource pool {pool:?}; define it first (aloft quota pool {pool} --limit N)",
                        spec.name
                    )))
                }
                Some(limit) if *amount > limit => {
                    return Err(invalid(format!(
                        "task {}: asks {amount} tokens of pool {pool}, which has {limit}",
                        spec.name
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

impl AdminApi {
    /// Each domain of each project the caller may read, with its quota (the defaults where none was set)
    /// and its attempts running and waiting now; and every resource pool.
    pub(super) async fn list_tenants_rpc(
        &self,
        _request: wire::ListTenantsRequest,
    ) -> ApiResult<wire::ListTenantsResponse> {
        let projects = self.visible_projects().await?;
        let quotas: HashMap<(String, String), aloft_store::tenants::TenantQuotaRow> = self
            .store
            .tenant_quotas()
            .await?
            .into_iter()
            .map(|row| ((row.project.clone(), row.domain.clone()), row))
            .collect();
        // Per tenant: attempts running and waiting; per pool: the tokens running attempts hold (a waiting
        // attempt holds none yet).
        let mut loads: HashMap<(String, String), (u64, u64)> = HashMap::new();
        let mut held: HashMap<String, u64> = HashMap::new();
        for load in self.store.task_loads().await? {
            let holding = load.running.saturating_sub(load.waiting);
            let tenant = loads
                .entry((load.project.clone(), load.domain.clone()))
                .or_default();
            tenant.0 += holding;
            tenant.1 += load.waiting;
            if holding == 0 {
                continue;
            }
            let task = self
                .store
                .get_task(
                    &load.project,
                    &load.domain,
                    &load.task_name,
                    Some(&load.task_version),
                )
                .await?;
            let declared = task
                .iter()
                .flat_map(|row| row.spec.resources.iter().flat_map(|r| r.pools.iter()));
            for (pool, amount) in declared {
                *held.entry(pool.clone()).or_default() += u64::from(*amount) * holding;
            }
        }
        let mut tenants = Vec::new();
        for project in projects {
            for domain in &project.spec.domains {
                let key = (project.spec.name.clone(), domain.clone());
                let quota = quotas.get(&key);
                let (running, waiting) = loads.get(&key).copied().unwrap_or_default();
                tenants.push(wire::Tenant {
                    project: key.0,
                    domain: key.1,
                    weight: quota.map_or(1, |quota| quota.weight),
                    max_running: quota.and_then(|quota| quota.max_running).unwrap_or(0),
                    quota_set_at_millis: quota.map_or(0, |quota| quota.set_at),
                    running_attempts: running,
                    waiting_attempts: waiting,
                });
            }
        }
        let pools = self
            .store
            .resource_pools()
            .await?
            .into_iter()
            .map(|(name, limit)| wire::ResourcePool {
                held: held.get(&name).copied().unwrap_or(0),
                name,
                limit,
            })
            .collect();
        Ok(wire::ListTenantsResponse { tenants, pools })
    }
}
