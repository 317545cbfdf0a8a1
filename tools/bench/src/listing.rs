//! The console's list queries at scale: a read model of `executions` executions on Postgres (rows written
//! straight into the tables, as a long-lived deployment's projection holds them), then `samples` REST calls
//! per case: the first page, a phase, a label, a workflow, twenty pages deep by page tokens, and the counts.

use std::time::{Duration, Instant};

use aloft_cli::fleet::{Fleet, FleetConfig};

use crate::shared::percentile_ms;

pub struct ListingCase {
    pub name: &'static str,
    pub p50_ms: f64,
    pub p95_ms: f64,
}

pub struct ListingResult {
    pub executions: u64,
    pub load_seconds: f64,
    pub cases: Vec<ListingCase>,
}

const PHASES: [&str; 5] = ["SUCCEEDED", "FAILED", "RUNNING", "QUEUED", "ABORTED"];

pub async fn run(database_url: &str, executions: u64, samples: usize) -> anyhow::Result<ListingResult> {
    anyhow::ensure!(
        database_url.starts_with("postgres"),
        "--database-url must be a postgres:// URL: the listing bench fills the read model with Postgres's generate_series"
    );
    let dir = tempfile::tempdir()?;
    let config = FleetConfig::embedded(dir.path(), std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .on_database(database_url)
        .await?;
    let database = config.database_url.clone();
    let fleet = Fleet::start(config).await?;
    let started = Instant::now();
    fill(&database, executions).await?;
    let load_seconds = started.elapsed().as_secs_f64();
    let http = reqwest::Client::new();
    let base = format!("{}/api/v1/projects/default/domains/development", fleet.endpoint());
    let mut cases = Vec::new();
    for (name, query) in [
        ("first page (50)", "executions?limit=50"),
        ("phase=FAILED", "executions?limit=50&phases=FAILED"),
        ("label team=ml", "executions?limit=50&labels.team=ml"),
        ("workflow wf7", "executions?limit=50&workflow=wf7"),
        ("name prefix b0042", "executions?limit=50&name_prefix=b0042"),
        ("counts by phase", "execution_counts"),
        ("counts of label team=ml", "execution_counts?labels.team=ml"),
    ] {
        let url = format!("{base}/{query}");
        let mut times = Vec::with_capacity(samples);
        for _ in 0..samples {
            let begun = Instant::now();
            let response = http.get(&url).send().await?;
            anyhow::ensure!(response.status().is_success(), "{url}: {}", response.status());
            let body = response.bytes().await?;
            times.push(begun.elapsed());
            // A fast answer must also be a full one.
            let answer: serde_json::Value = serde_json::from_slice(&body)?;
            let found = answer["executions"].as_array().map_or_else(
                || answer["total"].as_str().is_some_and(|t| t != "0"),
                |page| !page.is_empty(),
            );
            anyhow::ensure!(found, "{url} found nothing: {answer}");
        }
        cases.push(summarize(name, times));
    }
    // Twenty pages deep, following the tokens, `samples` times over.
    let mut times = Vec::new();
    for _ in 0..samples.div_ceil(20).max(1) {
        let mut token = String::new();
        for _ in 0..20 {
            let begun = Instant::now();
            let page: serde_json::Value = http
                .get(format!("{base}/executions"))
                .query(&[("limit", "50"), ("page_token", token.as_str())])
                .send()
                .await?
                .json()
                .await?;
            times.push(begun.elapsed());
            token = page["next_page_token"].as_str().unwrap_or_default().to_string();
        }
    }
    cases.push(summarize("pages 1-20 by token", times));
    fleet.stop().await?;
    Ok(ListingResult {
        executions,
        load_seconds,
        cases,
    })
}

fn summarize(name: &'static str, mut times: Vec<Duration>) -> ListingCase {
    times.sort();
    ListingCase {
        name,
        p50_ms: percentile_ms(&times, 0.5),
        p95_ms: percentile_ms(&times, 0.95),
    }
}

/// `executions` finished-looking executions of 20 workflows, phases in turn, one in ten labelled team=ml,
/// one per second of creation time.
async fn fill(database: &str, executions: u64) -> anyhow::Result<()> {
    let store = aloft_store::Store::connect(database).await?;
    let phases = PHASES.map(|p| format!("'{p}'")).join(", ");
    sqlx::query(&format!(
        "INSERT INTO executions (project, domain, name, request_id, workflow_name, workflow_version, \
         launch_plan_name, launch_plan_version, phase, inputs_json, outputs_json, error, created_at, started_at, \
         finished_at, last_seq, log_partition, parent_execution, parent_node, labels_json) \
         SELECT 'default', 'development', 'b' || lpad(i::text, 8, '0'), 'r' || i, 'wf' || (i % 20), '1', '', '', \
         (ARRAY[{phases}])[1 + (i % 5)], '{{}}', '{{}}', '', 1700000000000 + i * 1000, 1700000000000 + i * 1000, \
         1700000001000 + i * 1000, 0, 0, '', '', CASE WHEN i % 10 = 0 THEN '{{\"team\":\"ml\"}}' ELSE '{{}}' END \
         FROM generate_series(1, $1) AS i"
    ))
    .bind(executions as i64)
    .execute(store.pool())
    .await?;
    sqlx::query(
        "INSERT INTO execution_labels (project, domain, execution, label_key, label_value) \
         SELECT 'default', 'development', 'b' || lpad(i::text, 8, '0'), 'team', 'ml' \
         FROM generate_series(10, $1, 10) AS i",
    )
    .bind(executions as i64)
    .execute(store.pool())
    .await?;
    sqlx::query("ANALYZE").execute(store.pool()).await?;
    Ok(())
}
