//! The console's page of a 10,000-item map in headless Chromium (playwright-core, as the console test
//! drives it): time from navigation to the first row of the node table, and the page's JavaScript heap once
//! it has scrolled to the last item. Needs node, playwright-core and Chromium (`scripts/test.sh` installs
//! them under ~/.cache/aloft/node and from Debian).

use std::net::SocketAddr;
use std::path::PathBuf;

use aloft_cli::client::connect;
use aloft_cli::fleet::{Fleet, FleetConfig};
use aloft_cli::specs::{read_spec_file, register_documents};
use aloft_proto::v1 as wire;

pub struct ConsoleResult {
    pub items: usize,
    pub first_paint_ms: Vec<f64>,
    pub heap_mib: Vec<f64>,
}

pub async fn run(items: usize, runs: usize) -> anyhow::Result<ConsoleResult> {
    let scratch = tempfile::tempdir()?;
    let config = FleetConfig::embedded(scratch.path(), SocketAddr::from(([127, 0, 0, 1], 0)));
    let fleet = Fleet::start(config).await?;
    let outcome = measure(&fleet, scratch.path(), items, runs).await;
    fleet.stop().await?;
    outcome
}

async fn measure(
    fleet: &Fleet,
    dir: &std::path::Path,
    items: usize,
    runs: usize,
) -> anyhow::Result<ConsoleResult> {
    let mut client = connect(&fleet.endpoint()).await?;
    let spec = dir.join("map.yaml");
    std::fs::write(
        &spec,
        "kind: task\nname: item\nversion: \"1\"\ninterface: {inputs: {i: integer}}\nrun: noop\n---\n\
         kind: workflow\nname: big-map\ninterface: {inputs: {xs: \"list<integer>\"}}\n\
         nodes:\n  - {id: items, map: {task: item, over: i}, inputs: {i: inputs.xs}}\n",
    )?;
    register_documents(&mut client, "default", "development", read_spec_file(&spec)?).await?;
    let xs = format!(
        "[{}]",
        (0..items).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
    );
    let id = wire::ExecutionIdentifier {
        project: "default".into(),
        domain: "development".into(),
        name: "big-map-1".into(),
    };
    client
        .create_execution(wire::CreateExecutionRequest {
            project: id.project.clone(),
            domain: id.domain.clone(),
            name: id.name.clone(),
            target: Some(wire::create_execution_request::Target::Workflow(
                wire::Identifier {
                    project: id.project.clone(),
                    domain: id.domain.clone(),
                    name: "big-map".into(),
                    version: String::new(),
                },
            )),
            text_inputs: [("xs".to_string(), xs)].into_iter().collect(),
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow::anyhow!("launching the map: {}", s.message()))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    loop {
        let execution = client
            .get_execution(wire::GetExecutionRequest {
                id: Some(id.clone()),
                without_nodes: true,
            })
            .await
            .map_err(|s| anyhow::anyhow!("reading the map: {}", s.message()))?
            .into_inner();
        if execution.phase == wire::ExecutionPhase::Succeeded as i32 {
            break;
        }
        anyhow::ensure!(
            execution.finished_at_millis == 0 && std::time::Instant::now() < deadline,
            "the map did not succeed: {}",
            execution.error
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/console/console.test.cjs");
    let home = std::env::var("HOME").unwrap_or_default();
    let modules = std::env::var("ALOFT_NODE_MODULES")
        .unwrap_or_else(|_| format!("{home}/.cache/aloft/node/node_modules"));
    let mut result = ConsoleResult {
        items,
        first_paint_ms: Vec::new(),
        heap_mib: Vec::new(),
    };
    for _ in 0..runs {
        let output = tokio::process::Command::new("node")
            .arg(&script)
            .arg(fleet.endpoint())
            .arg(dir.join("screenshots"))
            .env("NODE_PATH", &modules)
            .env("ALOFT_CONSOLE_BIG_EXECUTION", &id.name)
            .env("ALOFT_CONSOLE_ONLY_BIG", "1")
            .output()
            .await?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        anyhow::ensure!(
            output.status.success(),
            "the browser run failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let field = |name: &str| -> anyhow::Result<f64> {
            stdout
                .split_whitespace()
                .find_map(|word| word.strip_prefix(name))
                .and_then(|value| value.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("no {name} in the browser's report:\n{stdout}"))
        };
        result.first_paint_ms.push(field("first-paint-ms=")?);
        result.heap_mib.push(field("js-heap-bytes=")? / (1024.0 * 1024.0));
    }
    Ok(result)
}
