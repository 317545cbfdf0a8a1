//! Memoized results: stored entries and their precedence, reservations (leases that serialize runs of one
//! key), evictions by time, and the listing of a task's entries.

use aloft_core::events::Outputs;
use aloft_core::ExecutionId;
use sqlx::{AnyConnection, AnyPool, Row};

use aloft_store::{from_json, to_json, Result};

/// One stored result.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheEntry {
    pub key: String,
    pub project: String,
    pub domain: String,
    pub task_name: String,
    pub cache_version: String,
    pub outputs: Outputs,
    pub execution: ExecutionId,
    pub node: String,
    pub attempt: u32,
    pub task_version: String,
    pub created_at: i64,
}

/// The answer to a lookup.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Hit(Box<CacheEntry>),
    /// No result; the reservation is the caller's (until `expires_at`).
    Reserved {
        owner: String,
        expires_at: i64,
    },
    /// No result; another owner holds the reservation.
    Held {
        owner: String,
        expires_at: i64,
    },
    Miss,
}

const ENTRY_COLUMNS: &str =
    "cache_key, project, domain, task_name, cache_version, outputs_json, execution, node, \
                             attempt, task_version, created_at";

fn entry_from_row(row: &sqlx::any::AnyRow) -> Result<CacheEntry> {
    let project: String = row.try_get(1)?;
    let domain: String = row.try_get(2)?;
    Ok(CacheEntry {
        key: row.try_get(0)?,
        task_name: row.try_get(3)?,
        cache_version: row.try_get(4)?,
        outputs: from_json("cache_entries", &row.try_get::<String, _>(5)?)?,
        execution: ExecutionId {
            project: project.clone(),
            domain: domain.clone(),
            name: row.try_get(6)?,
        },
        project,
        domain,
        node: row.try_get(7)?,
        attempt: row.try_get::<i64, _>(8)? as u32,
        task_version: row.try_get(9)?,
        created_at: row.try_get(10)?,
    })
}

pub async fn get_entry(pool: &AnyPool, key: &str) -> Result<Option<CacheEntry>> {
    let row = sqlx::query(&format!(
        "SELECT {ENTRY_COLUMNS} FROM cache_entries WHERE cache_key = $1"
    ))
    .bind(key)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(entry_from_row).transpose()
}

/// Looks `key` up; on a miss with `reserve = Some((owner, ttl))`, takes the reservation if it is free,
/// expired or already the owner's (a heartbeat extends it), else reports who holds it. With `reserve`, the
/// answer is never `Miss`: a caller that is told to run holds the reservation.
pub async fn get_or_reserve(
    pool: &AnyPool,
    key: &str,
    reserve: Option<(&str, i64)>,
    now: i64,
) -> Result<Lookup> {
    let Some((owner, ttl_millis)) = reserve else {
        return Ok(match get_entry(pool, key).await? {
            Some(entry) => Lookup::Hit(Box::new(entry)),
            None => Lookup::Miss,
        });
    };
    // A holder can store its result and release between our statements; then the next round sees the
    // result (or a free reservation). Bounded, since each round follows another owner's progress.
    for _ in 0..8 {
        if let Some(entry) = get_entry(pool, key).await? {
            return Ok(Lookup::Hit(Box::new(entry)));
        }
        // One statement, so two racing owners cannot both win: the conditional upsert takes the row lock.
        sqlx::query(
            "INSERT INTO cache_reservations (cache_key, owner, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (cache_key) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
             WHERE cache_reservations.owner = excluded.owner OR cache_reservations.expires_at < $4",
        )
        .bind(key)
        .bind(owner)
        .bind(now + ttl_millis)
        .bind(now)
        .execute(pool)
        .await?;
        let row = sqlx::query("SELECT owner, expires_at FROM cache_reservations WHERE cache_key = $1")
            .bind(key)
            .fetch_optional(pool)
            .await?;
        let Some(row) = row else {
            continue;
        };
        let holder: String = row.try_get(0)?;
        let expires_at: i64 = row.try_get(1)?;
        if holder != owner {
            // The holder may have stored its result between our lookup and the upsert.
            if let Some(entry) = get_entry(pool, key).await? {
                return Ok(Lookup::Hit(Box::new(entry)));
            }
            return Ok(Lookup::Held {
                owner: holder,
                expires_at,
            });
        }
        // The previous holder may have stored its result and released between our lookup and the upsert,
        // leaving the row free for us: running again would compute the result twice.
        if let Some(entry) = get_entry(pool, key).await? {
            release_reservation(pool, key, owner).await?;
            return Ok(Lookup::Hit(Box::new(entry)));
        }
        return Ok(Lookup::Reserved {
            owner: holder,
            expires_at,
        });
    }
    // Still racing after several rounds: report it as held, so the caller waits and asks again.
    Ok(Lookup::Held {
        owner: String::new(),
        expires_at: now,
    })
}

pub async fn release_reservation(pool: &AnyPool, key: &str, owner: &str) -> Result<bool> {
    let deleted = sqlx::query("DELETE FROM cache_reservations WHERE cache_key = $1 AND owner = $2")
        .bind(key)
        .bind(owner)
        .execute(pool)
        .await?;
    Ok(deleted.rows_affected() > 0)
}

/// Stores a result unless an eviction covers it or a result of higher precedence is stored (see the
/// migration). Returns whether this result is now the stored one.
pub async fn put_entry(conn: &mut AnyConnection, entry: &CacheEntry, overwrite: bool) -> Result<bool> {
    let evicted = sqlx::query(
        "SELECT 1 FROM cache_evictions WHERE project = $1 AND domain = $2 AND task_name = $3 \
         AND (cache_version = '' OR cache_version = $4) AND (cache_key = '' OR cache_key = $5) AND evicted_at >= $6",
    )
    .bind(&entry.project)
    .bind(&entry.domain)
    .bind(&entry.task_name)
    .bind(&entry.cache_version)
    .bind(&entry.key)
    .bind(entry.created_at)
    .fetch_optional(&mut *conn)
    .await?;
    if evicted.is_some() {
        return Ok(false);
    }
    let precedence = if overwrite {
        entry.created_at
    } else {
        -entry.created_at
    };
    let written = sqlx::query(&format!(
        "INSERT INTO cache_entries ({ENTRY_COLUMNS}, precedence) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (cache_key) DO UPDATE SET outputs_json = excluded.outputs_json, execution = excluded.execution, \
         node = excluded.node, attempt = excluded.attempt, task_version = excluded.task_version, \
         created_at = excluded.created_at, precedence = excluded.precedence \
         WHERE excluded.precedence > cache_entries.precedence"
    ))
    .bind(&entry.key)
    .bind(&entry.project)
    .bind(&entry.domain)
    .bind(&entry.task_name)
    .bind(&entry.cache_version)
    .bind(to_json(&entry.outputs))
    .bind(&entry.execution.name)
    .bind(&entry.node)
    .bind(entry.attempt as i64)
    .bind(&entry.task_version)
    .bind(entry.created_at)
    .bind(precedence)
    .execute(&mut *conn)
    .await?;
    Ok(written.rows_affected() > 0)
}

/// What an eviction removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    pub project: String,
    pub domain: String,
    pub task_name: String,
    /// Empty: every cache version.
    pub cache_version: String,
    /// Empty: every key.
    pub key: String,
    pub at: i64,
}

/// How many stored results `eviction` covers now.
pub async fn count_evictable(pool: &AnyPool, eviction: &Eviction) -> Result<u64> {
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM cache_entries WHERE project = $1 AND domain = $2 AND task_name = $3 \
         AND ($4 = '' OR cache_version = $4) AND ($5 = '' OR cache_key = $5) AND created_at <= $6",
    )
    .bind(&eviction.project)
    .bind(&eviction.domain)
    .bind(&eviction.task_name)
    .bind(&eviction.cache_version)
    .bind(&eviction.key)
    .bind(eviction.at)
    .fetch_one(pool)
    .await?;
    Ok(count.max(0) as u64)
}

/// Records an eviction and removes the results it covers; returns how many were removed.
pub async fn evict(conn: &mut AnyConnection, eviction: &Eviction) -> Result<u64> {
    sqlx::query(
        "INSERT INTO cache_evictions (project, domain, task_name, cache_version, cache_key, evicted_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(&eviction.project)
    .bind(&eviction.domain)
    .bind(&eviction.task_name)
    .bind(&eviction.cache_version)
    .bind(&eviction.key)
    .bind(eviction.at)
    .execute(&mut *conn)
    .await?;
    let deleted = sqlx::query(
        "DELETE FROM cache_entries WHERE project = $1 AND domain = $2 AND task_name = $3 \
         AND ($4 = '' OR cache_version = $4) AND ($5 = '' OR cache_key = $5) AND created_at <= $6",
    )
    .bind(&eviction.project)
    .bind(&eviction.domain)
    .bind(&eviction.task_name)
    .bind(&eviction.cache_version)
    .bind(&eviction.key)
    .bind(eviction.at)
    .execute(&mut *conn)
    .await?;
    Ok(deleted.rows_affected())
}

pub async fn list_entries(
    pool: &AnyPool,
    project: &str,
    domain: &str,
    task_name: &str,
    limit: u32,
) -> Result<Vec<CacheEntry>> {
    let rows = sqlx::query(&format!(
        "SELECT {ENTRY_COLUMNS} FROM cache_entries WHERE project = $1 AND domain = $2 AND ($3 = '' OR task_name = $3) \
         ORDER BY created_at DESC, cache_key LIMIT $4"
    ))
    .bind(project)
    .bind(domain)
    .bind(task_name)
    .bind(i64::from(limit.clamp(1, 10_000)))
    .fetch_all(pool)
    .await?;
    rows.iter().map(entry_from_row).collect()
}

/// The outputs (JSON) of every stored result: the blob garbage collector keeps every blob they name.
pub async fn stored_outputs(pool: &AnyPool) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT outputs_json FROM cache_entries")
        .fetch_all(pool)
        .await?;
    rows.iter().map(|row| Ok(row.try_get::<String, _>(0)?)).collect()
}
