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
