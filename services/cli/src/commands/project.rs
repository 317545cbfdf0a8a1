//! `aloft project`: create and list projects.

use aloft_proto::v1 as wire;

use crate::args::*;
use crate::client::AdminClient;

use super::shared::*;

pub(super) async fn run(
    _cli: &Cli,
    client: &mut AdminClient,
    _embedded: bool,
    command: &ProjectCommand,
) -> anyhow::Result<i32> {
    match command {
        ProjectCommand::Create {
            name,
            description,
            domains,
        } => {
            let response = client
                .create_project(wire::CreateProjectRequest {
                    project: Some(wire::Project {
                        name: name.clone(),
                        description: description.clone(),
                        domains: domains.clone(),
                    }),
                })
                .await
                .map_err(api("create project"))?
                .into_inner();
            let outcome = if response.outcome == wire::WriteOutcome::Created as i32 {
                "created"
            } else {
                "already exists, unchanged"
            };
            println!("project {name}: {outcome}");
        }
        ProjectCommand::List => {
            for project in client
                .list_projects(wire::ListProjectsRequest {})
                .await
                .map_err(api("list projects"))?
                .into_inner()
                .projects
            {
                println!("{:30}  {}", project.name, project.domains.join(","));
            }
        }
    }
    Ok(0)
}
