//! The live watch (`WatchExecution` as server-sent events on REST): a map of `items` no-op items is launched
//! with a watcher already listening; it counts the events that reach it while the execution runs (live), then
//! a second watcher reads the ended execution's whole history (catch-up). Events per second of each.

use std::net::SocketAddr;
use std::time::Instant;

use aloft_cli::client::connect;
use aloft_cli::fleet::{Fleet, FleetConfig};
use aloft_cli::specs::{read_spec_file, register_documents};
use aloft_proto::v1 as wire;
use futures::StreamExt;

pub struct WatchResult {
    pub items: usize,
    pub live_events: u64,
    pub live_seconds: f64,
    pub catch_up_events: u64,
    pub catch_up_seconds: f64,
}

pub async fn run(
    items: usize,
    kafka_brokers: Option<&str>,
    database_url: Option<&str>,
) -> anyhow::Result<WatchResult> {
    let scratch = tempfile::tempdir()?;
    let mut config = FleetConfig::embedded(scratch.path(), SocketAddr::from(([127, 0, 0, 1], 0)));
    if let Some(brokers) = kafka_brokers {
        config = config.on_kafka(brokers, "bench");
    }
    if let Some(url) = database_url {
        config = config.on_database(url).await?;
    }
    let fleet = Fleet::start(config).await?;
    let outcome = watch_a_map(&fleet, scratch.path(), items).await;
    fleet.stop().await?;
    outcome
}

async fn watch_a_map(fleet: &Fleet, dir: &std::path::Path, items: usize) -> anyhow::Result<WatchResult> {
    let mut client = connect(&fleet.endpoint()).await?;
    let spec = dir.join("map.yaml");
    std::fs::write(
        &spec,
        "kind: task\nname: item\nversion: \"1\"\ninterface: {inputs: {i: integer}}\nrun: noop\n---\n\
         kind: workflow\nname: watched-map\ninterface: {inputs: {xs: \"list<integer>\"}}\n\
         nodes:\n  - {id: items, map: {task: item, over: i}, inputs: {i: inputs.xs}}\n",
    )?;
    register_documents(&mut client, "default", "development", read_spec_file(&spec)?).await?;
    let xs = format!(
        "[{}]",
        (0..items).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
    );
    let created = client
        .create_execution(wire::CreateExecutionRequest {
            project: "default".into(),
            domain: "development".into(),
            name: "watched".into(),
            target: Some(wire::create_execution_request::Target::Workflow(
                wire::Identifier {
                    project: "default".into(),
                    domain: "development".into(),
                    name: "watched-map".into(),
                    version: String::new(),
                },
            )),
            text_inputs: [("xs".to_string(), xs)].into_iter().collect(),
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow::anyhow!("launching the map: {}", s.message()))?;
    anyhow::ensure!(created.into_inner().id.is_some(), "no execution id");
    let url = format!(
        "{}/api/v1/projects/default/domains/development/executions/watched/watch",
        fleet.endpoint()
    );
    // Live: from the request (it is already in the history) to the end of the execution.
    let (live_events, live_seconds) = count_events(&url).await?;
    // Catch-up: the ended execution's whole history at once.
    let (catch_up_events, catch_up_seconds) = count_events(&url).await?;
    anyhow::ensure!(
        live_events == catch_up_events,
        "the live watch saw {live_events} events, the history has {catch_up_events}"
    );
    Ok(WatchResult {
        items,
        live_events,
        live_seconds,
        catch_up_events,
        catch_up_seconds,
    })
}

/// Reads a watch to its `end` event: how many events came, and the seconds from the first to the end.
async fn count_events(url: &str) -> anyhow::Result<(u64, f64)> {
    let response = reqwest::get(url).await?;
    anyhow::ensure!(response.status().is_success(), "{url}: {}", response.status());
    let mut body = response.bytes_stream();
    let mut events = 0u64;
    let mut first = None;
    let mut pending = String::new();
    while let Some(chunk) = body.next().await {
        pending.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(end) = pending.find("\n\n") {
            let frame: String = pending.drain(..end + 2).collect();
            if frame.starts_with("event: end") {
                let seconds = first.map_or(0.0, |at: Instant| at.elapsed().as_secs_f64());
                return Ok((events, seconds));
            }
            if frame.contains("event: history") {
                first.get_or_insert_with(Instant::now);
                events += 1;
            }
        }
    }
    anyhow::bail!("{url} ended without its end event after {events} events")
}
