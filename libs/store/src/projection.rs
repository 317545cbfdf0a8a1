//! What every projection shares — the tables where offsets are committed, and which events of
//! `aloft.executions` apply (`Admission`, the rule the propeller folds with) — and admin's projection of
//! `aloft.registry`. Admin's projection of executions is `ExecutionReadModels`.

use aloft_core::events::RegistryEvent;
use sqlx::{AnyConnection, AnyPool, Row};

pub use crate::admission::{Admission, LoggedEvent};
pub use crate::read_models::ExecutionReadModels;
use crate::{to_json, Result};

/// The table where a projection commits its offsets, in the transaction of the rows it changed, and the
/// projection's name in metrics. Each consumer names its own (its migrations make the table, with columns
/// `topic, log_partition, next_offset, epoch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetsTable {
    projection: &'static str,
    table: &'static str,
}

impl OffsetsTable {
    /// Admin's read models.
    pub const READ_MODELS: OffsetsTable = OffsetsTable::new("read_models", "log_offsets");

    pub const fn new(projection: &'static str, table: &'static str) -> OffsetsTable {
        OffsetsTable { projection, table }
    }

    /// The projection's name in metrics.
    pub fn projection(self) -> &'static str {
        self.projection
    }

    fn name(self) -> &'static str {
        self.table
    }
}

/// `(topic, partition, next_offset, epoch)` for every partition the projection has seen.
pub async fn load_offsets(pool: &AnyPool, table: OffsetsTable) -> Result<Vec<(String, u32, u64, u64)>> {
    let rows = sqlx::query(&format!(
        "SELECT topic, log_partition, next_offset, epoch FROM {}",
        table.name()
    ))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get::<String, _>(0)?,
                row.try_get::<i64, _>(1)? as u32,
                row.try_get::<i64, _>(2)? as u64,
                row.try_get::<i64, _>(3)? as u64,
            ))
        })
        .collect()
}

pub async fn save_offset(
    conn: &mut AnyConnection,
    table: OffsetsTable,
    topic: &str,
    partition: u32,
    next_offset: u64,
    epoch: u64,
) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO {} (topic, log_partition, next_offset, epoch) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (topic, log_partition) DO UPDATE SET next_offset = excluded.next_offset, epoch = excluded.epoch",
        table.name()
    ))
    .bind(topic)
    .bind(partition as i64)
    .bind(next_offset as i64)
    .bind(epoch as i64)
    .execute(conn)
    .await?;
    Ok(())
}

/// Registrations are first-writer-wins per identifier, so replay in log order gives the same rows.
pub async fn apply_registry_event(
    conn: &mut AnyConnection,
    offset: u64,
    event: &RegistryEvent,
) -> Result<()> {
    let offset = offset as i64;
    match event {
        RegistryEvent::ProjectRegistered { project, at } => {
            sqlx::query(
                "INSERT INTO projects (name, description, domains_json, registered_at, registry_offset) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
            )
            .bind(&project.name)
            .bind(&project.description)
            .bind(to_json(&project.domains))
            .bind(*at)
            .bind(offset)
            .execute(conn)
            .await?;
        }
        RegistryEvent::TaskRegistered { id, spec, digest, at } => {
            sqlx::query(
                "INSERT INTO tasks (project, domain, name, version, digest, spec_json, registered_at, registry_offset) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (project, domain, name, version) DO NOTHING",
            )
            .bind(&id.project)
            .bind(&id.domain)
            .bind(&id.name)
            .bind(&id.version)
            .bind(digest)
            .bind(to_json(spec))
            .bind(*at)
            .bind(offset)
            .execute(conn)
            .await?;
        }
        RegistryEvent::WorkflowRegistered {
            id,
            spec,
            compiled,
            digest,
            at,
        } => {
            sqlx::query(
                "INSERT INTO workflows (project, domain, name, version, digest, spec_json, compiled_json, registered_at, \
                 registry_offset) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (project, domain, name, version) DO NOTHING",
            )
            .bind(&id.project)
            .bind(&id.domain)
            .bind(&id.name)
            .bind(&id.version)
            .bind(digest)
            .bind(to_json(spec))
            .bind(to_json(compiled))
            .bind(*at)
            .bind(offset)
            .execute(conn)
            .await?;
        }
        RegistryEvent::LaunchPlanActivated { id, .. } => {
            // One active version per name: activating one deactivates the others in the same transaction.
            sqlx::query(
                "UPDATE launch_plans SET active = 0 WHERE project = $1 AND domain = $2 AND name = $3",
            )
            .bind(&id.project)
            .bind(&id.domain)
            .bind(&id.name)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE launch_plans SET active = 1 WHERE project = $1 AND domain = $2 AND name = $3 AND version = $4",
            )
            .bind(&id.project)
            .bind(&id.domain)
            .bind(&id.name)
            .bind(&id.version)
            .execute(conn)
            .await?;
        }
        RegistryEvent::LaunchPlanDeactivated { id, .. } => {
            sqlx::query(
                "UPDATE launch_plans SET active = 0 WHERE project = $1 AND domain = $2 AND name = $3 AND version = $4",
            )
            .bind(&id.project)
            .bind(&id.domain)
            .bind(&id.name)
            .bind(&id.version)
            .execute(conn)
            .await?;
        }
        RegistryEvent::LaunchPlanRegistered {
            id,
            spec,
            workflow,
            default_inputs,
            fixed_inputs,
            digest,
            at,
        } => {
            sqlx::query(
                "INSERT INTO launch_plans (project, domain, name, version, digest, spec_json, workflow_version, \
                 default_inputs_json, fixed_inputs_json, registered_at, registry_offset) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (project, domain, name, version) DO NOTHING",
            )
            .bind(&id.project)
            .bind(&id.domain)
            .bind(&id.name)
            .bind(&id.version)
            .bind(digest)
            .bind(to_json(spec))
            .bind(format!("{}@{}", workflow.name, workflow.version))
            .bind(to_json(default_inputs))
            .bind(to_json(fixed_inputs))
            .bind(*at)
            .bind(offset)
            .execute(conn)
            .await?;
        }
        // The catalog's business: admin keeps no cache tables.
        RegistryEvent::PoolDefined { name, limit, at } => {
            sqlx::query(
                "INSERT INTO resource_pools (name, pool_limit, defined_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET pool_limit = excluded.pool_limit, defined_at = excluded.defined_at \
                 WHERE resource_pools.defined_at <= excluded.defined_at",
            )
            .bind(name)
            .bind(i64::from(*limit))
            .bind(*at)
            .execute(conn)
            .await?;
        }
        // Shown on the tenants page; the propellers enforce quotas from their own fold of the registry.
        RegistryEvent::TenantQuotaSet {
            project,
            domain,
            weight,
            max_running,
            at,
        } => {
            sqlx::query(
                "INSERT INTO tenant_quotas (project, domain, weight, max_running, set_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (project, domain) DO UPDATE SET weight = excluded.weight, \
                 max_running = excluded.max_running, set_at = excluded.set_at \
                 WHERE tenant_quotas.set_at <= excluded.set_at",
            )
            .bind(project)
            .bind(domain)
            .bind(i64::from(*weight))
            .bind(max_running.map(i64::from))
            .bind(*at)
            .execute(conn)
            .await?;
        }
        // Evictions are the catalog's, notification defaults the notifier's; keys and bindings
        // `access::apply_registry_event`'s (it needs the envelope's principal).
        RegistryEvent::CacheEvicted { .. }
        | RegistryEvent::NotificationDefaultsSet { .. }
        | RegistryEvent::ApiKeyCreated { .. }
        | RegistryEvent::ApiKeyRevoked { .. }
        | RegistryEvent::RoleBindingSet { .. } => {}
    }
    Ok(())
}
