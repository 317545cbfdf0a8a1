//! What every service's tables share, and admin's read models. Shared: connecting to Postgres or SQLite
//! through sqlx, the migrations runner (each owner of tables brings its own `Migrations`), the projector loop
//! (`projector`, `projection`: offsets in a table each projection names), the admission rule of execution
//! events (`admission`) and the access tables admin and the catalog both project (`access`). Admin's: the
//! read models (projects, tasks, workflows, launch plans, executions, node executions, task attempts,
//! history, deliveries) and their queries. The catalog's and the notifier's tables live in those services.
//!
//! Everything here is derived from the event log: projections commit their log offset in the same
//! transaction as the rows they change, so dropping the tables and replaying gives the same rows. The SQL
//! is written once, in the dialect both databases share. This crate must not decide anything: the rules
//! live in `aloft-core`.

pub mod access;
pub mod admission;
pub mod deliveries;
pub mod execution_rows;
pub mod listing;
pub mod metrics;
pub mod projection;
pub mod projector;
pub mod queries;
mod read_models;
pub mod snapshots;
mod state_cache;
pub mod tenants;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("invalid database url {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("stored row is unreadable ({table}): {reason}")]
    Corrupt { table: &'static str, reason: String },
    /// Rows changed under the open transaction by another writer; retrying from the database resolves it.
    #[error("conflicting write: {0}")]
    Conflict(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl aloft_proto::status::ServiceError for Error {
    fn error_code(&self) -> aloft_proto::status::ErrorCode {
        use aloft_proto::status::ErrorCode;
        match self {
            // The database is down or busy, or another writer won: the caller may retry.
            Error::Database(_) | Error::Conflict(_) => ErrorCode::Unavailable,
            Error::BadUrl { .. } => ErrorCode::InvalidArgument,
            Error::Corrupt { .. } => ErrorCode::Internal,
        }
    }
}

/// The statements of a migration: its `--` comment lines dropped first (a `;` in a comment is prose, not
/// the end of a statement), then split at `;`.
fn migration_statements(sql: &str) -> Vec<String> {
    let without_comments: String = sql
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|statement| !statement.is_empty())
        .map(str::to_string)
        .collect()
}

/// A set of numbered migrations (version, name, SQL, in order) and the table that records which have run.
/// Each owner of tables has its own: the shared read models here, the catalog's and the notifier's in their
/// services.
pub struct Migrations {
    pub table: &'static str,
    pub steps: &'static [(i64, &'static str, &'static str)],
}

/// The shared migrations: admin's read models and the access tables (API keys, role bindings) that admin
/// and the catalog both project. Every service's database runs them.
pub const READ_MODELS: Migrations = Migrations {
    table: "schema_migrations",
    steps: MIGRATIONS,
};

/// Every shared schema migration in order: version, name, SQL.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "read_models",
        include_str!("../migrations/0001_read_models.sql"),
    ),
    (2, "schedules", include_str!("../migrations/0002_schedules.sql")),
    (
        3,
        "attempt_cache",
        include_str!("../migrations/0003_attempt_cache.sql"),
    ),
    (
        4,
        "delivery_events",
        include_str!("../migrations/0004_delivery_events.sql"),
    ),
    (5, "pools", include_str!("../migrations/0005_pools.sql")),
    (6, "waiting", include_str!("../migrations/0006_waiting.sql")),
    (7, "snapshots", include_str!("../migrations/0007_snapshots.sql")),
    (
        8,
        "interruptible",
        include_str!("../migrations/0008_interruptible.sql"),
    ),
    (
        9,
        "child_links",
        include_str!("../migrations/0009_child_links.sql"),
    ),
    (
        10,
        "batched_records",
        include_str!("../migrations/0010_batched_records.sql"),
    ),
    (11, "labels", include_str!("../migrations/0011_labels.sql")),
    (12, "auth", include_str!("../migrations/0012_auth.sql")),
    (
        13,
        "tenant_quotas",
        include_str!("../migrations/0013_tenant_quotas.sql"),
    ),
];

/// The tables replay rebuilds, in a stable order (used to drop and to compare them).
pub const PROJECTION_TABLES: &[(&str, &str)] = &[
    ("projects", "name"),
    ("tasks", "project, domain, name, version"),
    ("workflows", "project, domain, name, version"),
    ("launch_plans", "project, domain, name, version"),
    ("executions", "project, domain, name"),
    ("execution_labels", "project, domain, execution, label_key"),
    ("node_executions", "project, domain, execution, node_index"),
    ("task_attempts", "project, domain, execution, node_index, attempt"),
    ("execution_events", "log_partition, log_offset, log_index"),
    ("delivery_events", "delivery_id, attempt"),
    ("resource_pools", "name"),
    ("tenant_quotas", "project, domain"),
    ("api_keys", "key_id"),
    ("role_bindings", "project, domain, member, role"),
    ("audit_events", "topic, log_partition, log_offset, log_index"),
    ("log_offsets", "topic, log_partition"),
];

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    is_sqlite: bool,
}

impl Store {
    /// Connects (`postgres://...` or `sqlite://PATH`) and runs the shared migrations.
    pub async fn connect(url: &str) -> Result<Store> {
        Store::connect_with(url, &[]).await
    }

    /// Connects and runs the shared migrations, then `own` (a service's migrations of its own tables).
    pub async fn connect_with(url: &str, own: &[&Migrations]) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let is_sqlite = url.starts_with("sqlite:");
        if !is_sqlite && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return Err(Error::BadUrl {
                url: url.to_string(),
                reason: "expected postgres://USER@HOST:PORT/DB or sqlite://PATH".to_string(),
            });
        }
        let url = if is_sqlite && !url.contains("mode=") {
            format!("{url}{}mode=rwc", if url.contains('?') { "&" } else { "?" })
        } else {
            url.to_string()
        };
        let options = AnyConnectOptions::from_str(&url).map_err(|e| Error::BadUrl {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let pool = AnyPoolOptions::new()
            // SQLite allows one writer; a single connection avoids "database is locked" under load.
            .max_connections(if is_sqlite { 1 } else { 8 })
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        if is_sqlite {
            sqlx::query("PRAGMA journal_mode=WAL").execute(&pool).await?;
            sqlx::query("PRAGMA synchronous=NORMAL").execute(&pool).await?;
        }
        let store = Store { pool, is_sqlite };
        store.migrate(&READ_MODELS).await?;
        for migrations in own {
            store.migrate(migrations).await?;
        }
        Ok(store)
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn is_sqlite(&self) -> bool {
        self.is_sqlite
    }

    /// Applies pending migrations. Services sharing one database (admin and catalog) may start together, so
    /// on Postgres each migration runs in a transaction holding an advisory lock: one process applies it, the
    /// others then see it recorded.
    pub async fn migrate(&self, migrations: &Migrations) -> Result<()> {
        const MIGRATION_LOCK: i64 = 0x616c_6f66_7400; // "aloft\0"
        let table = migrations.table;
        for (version, name, sql) in migrations.steps {
            let mut tx = self.pool.begin().await?;
            if !self.is_sqlite {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(MIGRATION_LOCK)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (version BIGINT PRIMARY KEY, name TEXT NOT NULL)"
            ))
            .execute(&mut *tx)
            .await?;
            let applied = sqlx::query(&format!("SELECT version FROM {table} WHERE version = $1"))
                .bind(*version)
                .fetch_optional(&mut *tx)
                .await?;
            if applied.is_some() {
                tx.commit().await?;
                continue;
            }
            for statement in migration_statements(sql) {
                sqlx::query(&statement).execute(&mut *tx).await?;
            }
            sqlx::query(&format!("INSERT INTO {table} (version, name) VALUES ($1, $2)"))
                .bind(*version)
                .bind(*name)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::info!(table, version, name, "applied migration");
        }
        Ok(())
    }

    /// Empties every projection table (and the offsets), so the projector replays from offset 0.
    pub async fn drop_projections(&self) -> Result<()> {
        self.empty_tables(PROJECTION_TABLES).await
    }

    /// Every row of every projection table as text, in key order: the audit comparison of a replay.
    pub async fn dump_projections(&self) -> Result<String> {
        self.dump_tables(PROJECTION_TABLES).await
    }

    /// Empties `tables` (name, key columns) in one transaction: a projection's tables, before a replay.
    pub async fn empty_tables(&self, tables: &[(&str, &str)]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for (table, _) in tables {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every row of `tables` (name, key columns) as text, in key order: the audit comparison of a replay.
    pub async fn dump_tables(&self, tables: &[(&'static str, &str)]) -> Result<String> {
        let mut dump = String::new();
        for (table, key) in tables {
            dump.push_str(&format!("## {table}\n"));
            let rows = sqlx::query(&format!("SELECT * FROM {table} ORDER BY {key}"))
                .fetch_all(&self.pool)
                .await?;
            for row in rows {
                let mut fields = Vec::with_capacity(row.len());
                for index in 0..row.len() {
                    let text = row
                        .try_get::<Option<i64>, _>(index)
                        .map(|v| v.map(|n| n.to_string()))
                        .or_else(|_| row.try_get::<Option<String>, _>(index))
                        .map_err(|e| Error::Corrupt {
                            table,
                            reason: e.to_string(),
                        })?;
                    fields.push(text.unwrap_or_else(|| "NULL".to_string()));
                }
                dump.push_str(&fields.join("|"));
                dump.push('\n');
            }
        }
        Ok(dump)
    }
}

/// Creates a fresh, uniquely named Postgres database next to `base_url` (for tests and benchmarks) and
/// returns its URL.
pub async fn create_scratch_postgres_database(base_url: &str) -> Result<String> {
    sqlx::any::install_default_drivers();
    let name = format!("aloft_scratch_{}", uuid::Uuid::new_v4().simple());
    let pool = AnyPoolOptions::new().max_connections(1).connect(base_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await?;
    pool.close().await;
    let (server, _) = base_url.rsplit_once('/').ok_or_else(|| Error::BadUrl {
        url: base_url.to_string(),
        reason: "expected postgres://USER@HOST:PORT/DB".to_string(),
    })?;
    Ok(format!("{server}/{name}"))
}

/// The JSON text of a value the code made (always encodable: plain data, string keys).
pub fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Decodes a stored JSON column, naming the table when it is unreadable.
pub fn from_json<T: serde::de::DeserializeOwned>(table: &'static str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt {
        table,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::migration_statements;

    #[test]
    fn a_semicolon_in_a_comment_does_not_end_a_statement() {
        let sql = "-- labels; and indexes\nALTER TABLE t ADD COLUMN a TEXT\n;\n-- more; prose\nCREATE INDEX i ON t (a)\n";
        assert_eq!(
            migration_statements(sql),
            ["ALTER TABLE t ADD COLUMN a TEXT", "CREATE INDEX i ON t (a)"]
        );
    }
}
