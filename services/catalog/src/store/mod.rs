//! The catalog's tables and their queries, under its own migrations (`MIGRATIONS`): memoized results with
//! their reservations and evictions (`cache`), artifact lineage (`lineage`), and the projection of the log
//! that fills both (`projection`). The API answers from here and the projector writes here; the rules that
//! make a replay give the same rows (precedence of results, evictions by time, the admission rule of
//! execution events) live here so both paths share them.

pub mod cache;
pub mod lineage;
pub mod projection;

use aloft_store::projection::OffsetsTable;
use aloft_store::{Migrations, Result, Store};

/// Where the catalog's projection commits its offsets.
pub const OFFSETS: OffsetsTable = OffsetsTable::new("catalog", "catalog_offsets");

/// The catalog's migrations, recorded in `catalog_schema_migrations`.
pub const MIGRATIONS: Migrations = Migrations {
    table: "catalog_schema_migrations",
    steps: &[(1, "catalog", include_str!("../../migrations/0001_catalog.sql"))],
};

/// The tables replay rebuilds (reservations are leases, not history), in a stable order, with their keys.
pub const TABLES: &[(&str, &str)] = &[
    ("cache_entries", "cache_key"),
    (
        "cache_evictions",
        "project, domain, task_name, cache_version, cache_key, evicted_at",
    ),
    ("lineage_executions", "project, domain, name"),
    ("artifacts", "artifact_id"),
    (
        "artifact_consumers",
        "project, domain, execution, node, input_name",
    ),
    ("catalog_offsets", "topic, log_partition"),
];

/// Empties the catalog's derived tables (and its offsets), so the catalog replays from offset 0.
pub async fn drop_tables(store: &Store) -> Result<()> {
    store.empty_tables(TABLES).await
}

/// Every row of the catalog's derived tables as text, in key order.
pub async fn dump_tables(store: &Store) -> Result<String> {
    store.dump_tables(TABLES).await
}
