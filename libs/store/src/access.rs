//! Admin's read models of who may do what and who did what: API keys (a digest of each secret, never the
//! secret), role bindings made through the API, the audit trail (one row per event an authenticated caller
//! caused) and who launched each execution. All are projected from the log, so a replay rebuilds them.

use aloft_core::events::RegistryEvent;
use aloft_core::principal::Principal;
use aloft_core::ExecutionId;
use sqlx::{AnyConnection, Row};

use crate::{to_json, Result, Store};

#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRow {
    pub key_id: String,
    pub name: String,
    pub project: String,
    pub domain: String,
    pub role: String,
    pub secret_hash: String,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub created_by: String,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoleBindingRow {
    pub project: String,
    pub domain: String,
    pub member: String,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub occurred_at: i64,
    pub project: String,
    pub domain: String,
    pub subject: String,
    pub display_name: String,
    pub via: String,
    pub action: String,
    pub target: String,
}

/// Where one audited event sits on the log: its identity in the audit table, so replay inserts it once.
pub struct AuditPlace<'a> {
    pub topic: &'a str,
    pub partition: u32,
    pub offset: u64,
    pub index: u32,
}

/// Applies the registry events of keys and bindings; others are not this module's.
pub async fn apply_registry_event(
    conn: &mut AnyConnection,
    event: &RegistryEvent,
    principal: Option<&Principal>,
) -> Result<()> {
    match event {
        RegistryEvent::ApiKeyCreated {
            key_id,
            name,
            project,
            domain,
            role,
            secret_hash,
            expires_at,
            at,
        } => {
            sqlx::query(
                "INSERT INTO api_keys (key_id, name, project, domain, role, secret_hash, expires_at, created_at, \
                 created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (key_id) DO NOTHING",
            )
            .bind(key_id)
            .bind(name)
            .bind(project)
            .bind(domain)
            .bind(role)
            .bind(secret_hash)
            .bind(*expires_at)
            .bind(*at)
            .bind(principal.map(|p| p.subject.clone()).unwrap_or_default())
            .execute(conn)
            .await?;
        }
        RegistryEvent::ApiKeyRevoked { key_id, at, .. } => {
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE key_id = $2 AND revoked_at IS NULL")
                .bind(*at)
                .bind(key_id)
                .execute(conn)
                .await?;
        }
        RegistryEvent::RoleBindingSet {
            member,
            project,
            domain,
            role,
            granted,
            at,
        } => {
            if *granted {
                sqlx::query(
                    "INSERT INTO role_bindings (project, domain, member, role, bound_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (project, domain, member, role) DO NOTHING",
                )
                .bind(project)
                .bind(domain)
                .bind(member)
                .bind(role)
                .bind(*at)
                .execute(conn)
                .await?;
            } else {
                sqlx::query(
                    "DELETE FROM role_bindings WHERE project = $1 AND domain = $2 AND member = $3 AND role = $4",
                )
                .bind(project)
                .bind(domain)
                .bind(member)
                .bind(role)
                .execute(conn)
                .await?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Records that `principal` caused the event at `place`: `action` (the event's kind) on `target` (its
/// stream) in `project/domain`.
#[allow(clippy::too_many_arguments)]
pub async fn record_audit(
    conn: &mut AnyConnection,
    place: &AuditPlace<'_>,
    occurred_at: i64,
    project: &str,
    domain: &str,
    principal: &Principal,
    action: &str,
    target: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_events (topic, log_partition, log_offset, log_index, occurred_at, project, domain, subject, \
         display_name, via, action, target) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (topic, log_partition, log_offset, log_index) DO NOTHING",
    )
    .bind(place.topic)
    .bind(i64::from(place.partition))
    .bind(place.offset as i64)
    .bind(i64::from(place.index))
    .bind(occurred_at)
    .bind(project)
    .bind(domain)
    .bind(&principal.subject)
    .bind(&principal.name)
    .bind(principal.via.as_str())
    .bind(action)
    .bind(target)
    .execute(conn)
    .await?;
    Ok(())
}

/// Who launched execution `id` (set once, by its request's principal).
pub async fn set_launched_by(
    conn: &mut AnyConnection,
    id: &ExecutionId,
    principal: &Principal,
) -> Result<()> {
    sqlx::query(
        "UPDATE executions SET launched_by_json = $1 WHERE project = $2 AND domain = $3 AND name = $4 \
         AND launched_by_json IS NULL",
    )
    .bind(to_json(principal))
    .bind(&id.project)
    .bind(&id.domain)
    .bind(&id.name)
    .execute(conn)
    .await?;
    Ok(())
}

fn key_row(row: &sqlx::any::AnyRow) -> Result<ApiKeyRow> {
    Ok(ApiKeyRow {
        key_id: row.try_get("key_id")?,
        name: row.try_get("name")?,
        project: row.try_get("project")?,
        domain: row.try_get("domain")?,
        role: row.try_get("role")?,
        secret_hash: row.try_get("secret_hash")?,
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

const KEY_COLUMNS: &str =
    "SELECT key_id, name, project, domain, role, secret_hash, expires_at, created_at, created_by, \
     revoked_at FROM api_keys";

impl Store {
    pub async fn api_key(&self, key_id: &str) -> Result<Option<ApiKeyRow>> {
        let row = sqlx::query(&format!("{KEY_COLUMNS} WHERE key_id = $1"))
            .bind(key_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(key_row).transpose()
    }

    pub async fn api_keys(&self, project: &str) -> Result<Vec<ApiKeyRow>> {
        let rows = sqlx::query(&format!(
            "{KEY_COLUMNS} WHERE project = $1 ORDER BY created_at, key_id"
        ))
        .bind(project)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(key_row).collect()
    }

    /// Every binding made through the API (of `project`, or all).
    pub async fn role_bindings(&self, project: Option<&str>) -> Result<Vec<RoleBindingRow>> {
        let rows = match project {
            Some(project) => {
                sqlx::query(
                    "SELECT project, domain, member, role FROM role_bindings WHERE project = $1 \
                     ORDER BY project, domain, member, role",
                )
                .bind(project)
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT project, domain, member, role FROM role_bindings ORDER BY project, domain, member, role",
                )
                .fetch_all(self.pool())
                .await?
            }
        };
        rows.iter()
            .map(|row| {
                Ok(RoleBindingRow {
                    project: row.try_get("project")?,
                    domain: row.try_get("domain")?,
                    member: row.try_get("member")?,
                    role: row.try_get("role")?,
                })
            })
            .collect()
    }

    /// The audit trail of `project` at or after `since`, oldest first, at most `limit` rows; only
    /// `subject`'s when set.
    pub async fn audit_events(
        &self,
        project: &str,
        since: i64,
        subject: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT occurred_at, project, domain, subject, display_name, via, action, target FROM audit_events \
             WHERE project = $1 AND occurred_at >= $2 AND ($3 = '' OR subject = $3) \
             ORDER BY occurred_at, topic, log_partition, log_offset, log_index LIMIT $4",
        )
        .bind(project)
        .bind(since)
        .bind(subject.unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditRow {
                    occurred_at: row.try_get("occurred_at")?,
                    project: row.try_get("project")?,
                    domain: row.try_get("domain")?,
                    subject: row.try_get("subject")?,
                    display_name: row.try_get("display_name")?,
                    via: row.try_get("via")?,
                    action: row.try_get("action")?,
                    target: row.try_get("target")?,
                })
            })
            .collect()
    }
}
