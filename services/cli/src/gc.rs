//! `aloft admin gc`: removes the raw data (blob outputs and offloaded values) of executions that finished before a cutoff, except
//! what a cache entry or an unfinished execution still references. Works on the read models, the catalog's
//! table and the blob store directly, like the other operator tools; task logs are kept.

use std::collections::BTreeSet;
use std::path::Path;

use aloft_blobstore::BlobStore;
use aloft_core::events::Outputs;
use aloft_core::Value;
use sqlx::Row;

use crate::admin_ops::DeploymentAddress;

/// What one collection removed (or, on a dry run, would remove).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct GcReport {
    /// Finished executions older than the cutoff whose data was looked at.
    pub executions: usize,
    pub removed_objects: usize,
    pub removed_bytes: u64,
    /// Objects of those executions kept because a cache entry or an unfinished execution references them.
    pub kept_objects: usize,
}

/// Every blob or offloaded value's URI inside `value`.
fn blob_uris(value: &Value, into: &mut BTreeSet<String>) {
    match value {
        Value::Blob { uri, .. } | Value::Offloaded { uri, .. } => {
            into.insert(uri.clone());
        }
        Value::List(items) => items.iter().for_each(|item| blob_uris(item, into)),
        Value::Map(entries) => entries.values().for_each(|item| blob_uris(item, into)),
        _ => {}
    }
}

fn uris_of_json(json: &str, into: &mut BTreeSet<String>) {
    if let Ok(outputs) = serde_json::from_str::<Outputs>(json) {
        outputs.values().for_each(|value| blob_uris(value, into));
    }
}

/// Whether the object at `uri` is a referenced blob or lies in a referenced directory blob.
fn referenced(uri: &str, references: &BTreeSet<String>) -> bool {
    references.contains(uri)
        || references
            .iter()
            .any(|r| r.ends_with('/') && uri.starts_with(r.as_str()))
}

/// Collects the raw data of executions finished more than `older_than` ago; `say` gets one line per
/// execution that has any. With `dry_run` nothing is deleted.
pub async fn gc(
    address: &DeploymentAddress,
    data_dir: &Path,
    blobs: &BlobStore,
    older_than: std::time::Duration,
    dry_run: bool,
    mut say: impl FnMut(String),
) -> anyhow::Result<GcReport> {
    let cutoff = chrono::Utc::now().timestamp_millis() - older_than.as_millis() as i64;
    let admin = aloft_store::Store::connect(&address.admin_database(data_dir)).await?;
    let catalog = aloft_store::Store::connect_with(
        &address.catalog_database(data_dir),
        &[&aloft_catalog::store::MIGRATIONS],
    )
    .await?;

    let mut references = BTreeSet::new();
    for outputs_json in aloft_catalog::store::cache::stored_outputs(catalog.pool()).await? {
        uris_of_json(&outputs_json, &mut references);
    }
    // An unfinished execution may be about to read an old blob it was given as an input.
    for row in sqlx::query("SELECT inputs_json FROM executions WHERE finished_at IS NULL")
        .fetch_all(admin.pool())
        .await?
    {
        uris_of_json(&row.try_get::<String, _>(0)?, &mut references);
    }

    let finished = sqlx::query(
        "SELECT project, domain, name FROM executions WHERE finished_at IS NOT NULL AND finished_at < $1 \
         ORDER BY finished_at",
    )
    .bind(cutoff)
    .fetch_all(admin.pool())
    .await?;
    let mut report = GcReport::default();
    for row in finished {
        let (project, domain, name): (String, String, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        report.executions += 1;
        let (mut removed, mut bytes, mut kept) = (0usize, 0u64, 0usize);
        // Its project's own store, and the default (data written before the project had one).
        let mut stores = vec![blobs.for_tenant(&project, &domain), blobs.default_store()];
        stores.dedup_by(|a, b| a.root() == b.root());
        for store in &stores {
            for (key, size) in store.list(&format!("{project}/{domain}/{name}")).await? {
                if referenced(&store.uri_of(&key), &references) {
                    kept += 1;
                    continue;
                }
                if !dry_run {
                    store.delete(&key).await?;
                }
                removed += 1;
                bytes += size;
            }
        }
        if removed + kept > 0 {
            say(format!(
                "{project}/{domain}/{name}: {} {removed} object(s), {bytes} bytes; kept {kept} still referenced",
                if dry_run { "would remove" } else { "removed" }
            ));
        }
        report.removed_objects += removed;
        report.removed_bytes += bytes;
        report.kept_objects += kept;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_in_a_referenced_directory_is_referenced() {
        let references: BTreeSet<String> = [
            "s3://b/p/d/e/n/1/tree/".to_string(),
            "s3://b/p/d/e/n/1/file".to_string(),
        ]
        .into_iter()
        .collect();
        assert!(referenced("s3://b/p/d/e/n/1/file", &references));
        assert!(referenced("s3://b/p/d/e/n/1/tree/sub/x", &references));
        assert!(!referenced("s3://b/p/d/e/n/1/other", &references));
        assert!(!referenced("s3://b/p/d/e/n/1/filex", &references));
    }
}
