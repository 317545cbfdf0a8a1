//! `aloft list`: list executions, tasks, workflows, launch plans or projects.

use aloft_proto::v1 as wire;

use crate::args::*;
use crate::client::AdminClient;
use crate::render;

use super::shared::*;

pub(super) async fn run(
    cli: &Cli,
    client: &mut AdminClient,
    _embedded: bool,
    what: &ListKind,
    limit: &u32,
    filters: &ExecutionFilters,
) -> anyhow::Result<i32> {
    let entities = wire::ListEntitiesRequest {
        project: cli.project.clone(),
        domain: cli.domain.clone(),
        name: String::new(),
    };
    match what {
        ListKind::Executions => {
            let response = client
                .list_executions(wire::ListExecutionsRequest {
                    project: cli.project.clone(),
                    domain: cli.domain.clone(),
                    limit: *limit,
                    phases: filters
                        .phases
                        .iter()
                        .map(|phase| parse_phase(phase))
                        .collect::<anyhow::Result<_>>()?,
                    labels: filters.labels.iter().cloned().collect(),
                    workflow: filters.workflow.clone().unwrap_or_default(),
                    name_prefix: filters.name_prefix.clone().unwrap_or_default(),
                    ..Default::default()
                })
                .await
                .map_err(api("list executions"))?
                .into_inner();
            for execution in &response.executions {
                render::print_execution_line(execution);
            }
        }
        ListKind::Tasks => {
            for task in client
                .list_tasks(entities)
                .await
                .map_err(api("list tasks"))?
                .into_inner()
                .tasks
            {
                print_id_line(task.id.as_ref());
            }
        }
        ListKind::Workflows => {
            for workflow in client
                .list_workflows(entities)
                .await
                .map_err(api("list workflows"))?
                .into_inner()
                .workflows
            {
                print_id_line(workflow.id.as_ref());
            }
        }
        ListKind::Launchplans => {
            for plan in client
                .list_launch_plans(entities)
                .await
                .map_err(api("list launch plans"))?
                .into_inner()
                .launch_plans
            {
                print_id_line(plan.id.as_ref());
            }
        }
        ListKind::Projects => {
            for project in client
                .list_projects(wire::ListProjectsRequest {})
                .await
                .map_err(api("list projects"))?
                .into_inner()
                .projects
            {
                println!(
                    "{:30}  {:40}  {}",
                    project.name,
                    project.domains.join(","),
                    project.description
                );
            }
        }
    }
    Ok(0)
}

/// `--phase running` (any case, `timed-out` or `timed_out`) as the wire's phase.
fn parse_phase(text: &str) -> anyhow::Result<i32> {
    let name = text.to_ascii_uppercase().replace('-', "_");
    wire::ExecutionPhase::from_str_name(&name)
        .filter(|phase| *phase != wire::ExecutionPhase::Unspecified)
        .map(|phase| phase as i32)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--phase {text:?} is not a phase; use queued, running, succeeded, failed, aborted or timed_out"
            )
        })
}
