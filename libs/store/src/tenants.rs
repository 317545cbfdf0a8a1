//! What the tenants page shows: each project/domain's quota as set on the registry, how many of its task
//! attempts run and wait for resources now (per task version, so admin can tell the pool tokens they hold),
//! and the fleet-wide resource pools. Read from the read model, so
//! it is what the projection has applied; the propellers' own queues are theirs.

use sqlx::Row;

use crate::{Result, Store};

/// A tenant's quota as last set (`aloft quota set`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantQuotaRow {
    pub project: String,
    pub domain: String,
    pub weight: u32,
    pub max_running: Option<u32>,
    pub set_at: i64,
}

/// How many attempts of one task version run now in a tenant, and how many of those wait for resources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskLoad {
    pub project: String,
    pub domain: String,
    pub task_name: String,
    pub task_version: String,
    pub running: u64,
    pub waiting: u64,
}

impl Store {
    pub async fn tenant_quotas(&self) -> Result<Vec<TenantQuotaRow>> {
        let rows = sqlx::query(
            "SELECT project, domain, weight, max_running, set_at FROM tenant_quotas ORDER BY project, domain",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TenantQuotaRow {
                    project: row.try_get(0)?,
                    domain: row.try_get(1)?,
                    weight: row.try_get::<i64, _>(2)? as u32,
                    max_running: row.try_get::<Option<i64>, _>(3)?.map(|n| n as u32),
                    set_at: row.try_get(4)?,
                })
            })
            .collect()
    }

    /// Running attempts per tenant and task version, with how many of them wait for resources (their node
    /// says why).
    pub async fn task_loads(&self) -> Result<Vec<TaskLoad>> {
        let rows = sqlx::query(
            "SELECT a.project, a.domain, n.task_name, n.task_version, COUNT(*), \
                    SUM(CASE WHEN n.wait_reason <> '' THEN 1 ELSE 0 END) \
             FROM task_attempts a JOIN node_executions n \
               ON n.project = a.project AND n.domain = a.domain AND n.execution = a.execution \
                  AND n.node_index = a.node_index \
             WHERE a.phase = 'RUNNING' \
             GROUP BY a.project, a.domain, n.task_name, n.task_version \
             ORDER BY a.project, a.domain, n.task_name, n.task_version",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TaskLoad {
                    project: row.try_get(0)?,
                    domain: row.try_get(1)?,
                    task_name: row.try_get(2)?,
                    task_version: row.try_get(3)?,
                    running: row.try_get::<i64, _>(4)? as u64,
                    waiting: row.try_get::<i64, _>(5)? as u64,
                })
            })
            .collect()
    }

    /// Every resource pool as last defined: its name and limit.
    pub async fn resource_pools(&self) -> Result<Vec<(String, u32)>> {
        let rows = sqlx::query("SELECT name, pool_limit FROM resource_pools ORDER BY name")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get::<i64, _>(1)? as u32)))
            .collect()
    }
}
