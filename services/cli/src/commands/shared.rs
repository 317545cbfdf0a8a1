//! What several commands share: identifiers from names, registering files, resolving what to run,
//! following an execution, printing entities.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use aloft_proto::v1 as wire;
use tonic::Status;

use crate::args::*;
use crate::client::AdminClient;
use crate::render;
use crate::specs::{read_spec_file, register_documents};

pub(super) fn api(context: &str) -> impl Fn(Status) -> anyhow::Error + '_ {
    move |status| anyhow::anyhow!("{context}: {}", status.message())
}

pub(super) fn execution_id(cli: &Cli, text: &str) -> wire::ExecutionIdentifier {
    let parts: Vec<&str> = text.split('/').collect();
    match parts.as_slice() {
        [project, domain, name] => wire::ExecutionIdentifier {
            project: project.to_string(),
            domain: domain.to_string(),
            name: name.to_string(),
        },
        _ => wire::ExecutionIdentifier {
            project: cli.project.clone(),
            domain: cli.domain.clone(),
            name: text.to_string(),
        },
    }
}

pub(super) fn entity_id(cli: &Cli, name: &str, version: Option<&str>) -> wire::Identifier {
    wire::Identifier {
        project: cli.project.clone(),
        domain: cli.domain.clone(),
        name: name.to_string(),
        version: version.unwrap_or_default().to_string(),
    }
}

pub(super) async fn register_file(
    cli: &Cli,
    client: &mut AdminClient,
    path: &Path,
) -> anyhow::Result<Vec<crate::specs::Registered>> {
    let documents = read_spec_file(path)?;
    let registered = register_documents(client, &cli.project, &cli.domain, documents)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    print_registered(&registered);
    Ok(registered)
}

/// One line per registered document: whether it was new, its kind, name and version.
pub(super) fn print_registered(registered: &[crate::specs::Registered]) {
    for item in registered {
        let outcome = if item.created { "registered" } else { "unchanged" };
        if item.kind == "project" {
            println!("{outcome} project {}", item.id.project);
        } else {
            println!("{outcome} {} {}@{}", item.kind, item.id.name, item.id.version);
        }
    }
}

pub(super) async fn resolve_target(
    cli: &Cli,
    client: &mut AdminClient,
    name: &str,
    version: Option<&str>,
) -> anyhow::Result<(String, wire::Identifier)> {
    let id = entity_id(cli, name, version);
    if let Ok(plan) = client
        .get_launch_plan(wire::GetEntityRequest { id: Some(id.clone()) })
        .await
    {
        return Ok((
            "launch plan".to_string(),
            plan.into_inner().id.unwrap_or_default(),
        ));
    }
    if let Ok(workflow) = client
        .get_workflow(wire::GetEntityRequest { id: Some(id.clone()) })
        .await
    {
        return Ok((
            "workflow".to_string(),
            workflow.into_inner().id.unwrap_or_default(),
        ));
    }
    if let Ok(task) = client
        .get_task(wire::GetEntityRequest { id: Some(id.clone()) })
        .await
    {
        return Ok(("task".to_string(), task.into_inner().id.unwrap_or_default()));
    }
    anyhow::bail!(
        "{name:?} is neither a file nor a launch plan, workflow or task registered in {}/{}",
        cli.project,
        cli.domain
    )
}

/// Polls the execution and prints each node's phase changes until it finishes.
pub(super) async fn follow(
    client: &mut AdminClient,
    id: &wire::ExecutionIdentifier,
) -> anyhow::Result<wire::Execution> {
    let mut seen: BTreeMap<String, i32> = BTreeMap::new();
    loop {
        let execution = client
            .get_execution(wire::GetExecutionRequest {
                id: Some(id.clone()),
                ..Default::default()
            })
            .await
            .map_err(api("following the execution"))?
            .into_inner();
        for node in &execution.nodes {
            if seen.get(&node.node_id) != Some(&node.phase) {
                seen.insert(node.node_id.clone(), node.phase);
                let phase = render::node_phase(node.phase);
                if phase != "PENDING" && phase != "QUEUED" || node.attempts > 0 {
                    eprintln!("  {:20} {}", node.node_id, phase);
                }
            }
        }
        if render::is_terminal(execution.phase) {
            return Ok(execution);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

pub(super) fn print_entity(kind: &str, id: Option<&wire::Identifier>, spec_json: &str) -> anyhow::Result<()> {
    if let Some(id) = id {
        println!("{kind} {}/{}/{}@{}", id.project, id.domain, id.name, id.version);
    }
    let spec: serde_json::Value = serde_json::from_str(spec_json)?;
    print!("{}", serde_yaml::to_string(&spec)?);
    Ok(())
}

pub(super) fn print_id_line(id: Option<&wire::Identifier>) {
    if let Some(id) = id {
        println!("{:30}  {}", id.name, id.version);
    }
}

/// After a launch: with `wait`, follows the execution to its end and prints it; the exit code is 0 unless
/// it was awaited and did not succeed.
pub(super) async fn finish(
    client: &mut AdminClient,
    execution: &wire::ExecutionIdentifier,
    wait: bool,
) -> anyhow::Result<i32> {
    if !wait {
        return Ok(0);
    }
    let finished = follow(client, execution).await?;
    render::print_execution(&finished);
    Ok(if finished.phase == wire::ExecutionPhase::Succeeded as i32 {
        0
    } else {
        1
    })
}
