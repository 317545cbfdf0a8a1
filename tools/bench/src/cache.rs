//! `aloft-bench cache`: lookup latency through the catalog's gRPC API with many stored results. The
//! table is filled in the database itself (one INSERT ... SELECT), then a catalog serves on loopback and
//! a client asks for random stored keys one at a time, as a propeller does.

use std::time::{Duration, Instant};

use aloft_eventlog::{LogBackend, Topics};
use aloft_proto::v1 as wire;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct CacheLookupResult {
    pub entries: u64,
    pub fill_seconds: f64,
    pub samples: usize,
    pub hits: usize,
    pub p50_micros: u128,
    pub p99_micros: u128,
    pub max_micros: u128,
}

/// Fills `entries` results into a fresh database (a scratch database on a Postgres server, or SQLite in
/// a temporary directory) and measures `samples` lookups of random stored keys.
pub async fn lookups(
    database_url: Option<&str>,
    entries: u64,
    samples: usize,
) -> anyhow::Result<CacheLookupResult> {
    let scratch = tempfile::tempdir()?;
    let url = match database_url {
        Some(url) if url.starts_with("postgres") => {
            aloft_store::create_scratch_postgres_database(url).await?
        }
        Some(url) => url.to_string(),
        None => format!("sqlite://{}", scratch.path().join("catalog.db").display()),
    };
    let store = aloft_store::Store::connect(&url).await?;
    let started = Instant::now();
    fill(&store, entries).await?;
    let fill_seconds = started.elapsed().as_secs_f64();
    eprintln!("filled {entries} cache entries in {fill_seconds:.1} s");

    let log = aloft_eventlog::open(
        &LogBackend::Embedded {
            dir: scratch.path().join("log"),
        },
        &Topics::with_prefix(""),
        1,
    )
    .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(aloft_catalog::run(
        aloft_catalog::CatalogOptions::new(Topics::with_prefix("")),
        store,
        log,
        listener,
        shutdown.clone(),
    ));
    let mut client = aloft_cli::lineage::connect_catalog(&format!("http://{address}")).await?;
    let mut latencies = Vec::with_capacity(samples);
    let mut hits = 0;
    // A fixed-seed LCG: the same keys in every run, spread over the whole table.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let warmup = samples / 10;
    for sample in 0..samples + warmup {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let index = 1 + (state >> 11) % entries.max(1);
        let request = wire::GetOrReserveRequest {
            key: format!("{index:064x}"),
            ..Default::default()
        };
        let asked = Instant::now();
        let answer = client.get_or_reserve(request).await?.into_inner();
        let latency = asked.elapsed();
        if sample < warmup {
            continue;
        }
        if matches!(answer.result, Some(wire::get_or_reserve_response::Result::Hit(_))) {
            hits += 1;
        }
        latencies.push(latency);
    }
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    latencies.sort();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map(Duration::as_micros)
            .unwrap_or(0)
    };
    Ok(CacheLookupResult {
        entries,
        fill_seconds,
        samples: latencies.len(),
        hits,
        p50_micros: percentile(0.50),
        p99_micros: percentile(0.99),
        max_micros: latencies.last().map(Duration::as_micros).unwrap_or(0),
    })
}

/// `entries` rows with keys `lpad(hex(i), 64)` for i in 1..=entries, in the database's own SQL.
async fn fill(store: &aloft_store::Store, entries: u64) -> anyhow::Result<()> {
    let outputs = r#"{"y":{"type":"integer","value":42}}"#;
    let sql = if store.is_sqlite() {
        format!(
            "WITH RECURSIVE series(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM series WHERE i < {entries}) \
             INSERT INTO cache_entries (cache_key, project, domain, task_name, cache_version, outputs_json, execution, \
             node, attempt, task_version, created_at, precedence) \
             SELECT printf('%064x', i), 'bench', 'development', 'task-' || (i % 100), '1', '{outputs}', 'e' || i, 'n', \
             1, '1', i, -i FROM series"
        )
    } else {
        format!(
            "INSERT INTO cache_entries (cache_key, project, domain, task_name, cache_version, outputs_json, execution, \
             node, attempt, task_version, created_at, precedence) \
             SELECT lpad(to_hex(i), 64, '0'), 'bench', 'development', 'task-' || (i % 100), '1', '{outputs}', 'e' || i, \
             'n', 1, '1', i, -i FROM generate_series(1, {entries}) AS i"
        )
    };
    sqlx::query(&sql).execute(store.pool()).await?;
    if !store.is_sqlite() {
        sqlx::query("ANALYZE cache_entries").execute(store.pool()).await?;
    }
    Ok(())
}
