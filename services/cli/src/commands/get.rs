//! `aloft get`: show an execution, task, workflow or launch plan.

use aloft_proto::v1 as wire;

use crate::args::*;
use crate::client::AdminClient;
use crate::render;

use super::shared::*;

pub(super) async fn run(
    cli: &Cli,
    client: &mut AdminClient,
    _embedded: bool,
    args: &[String],
    version: &Option<String>,
) -> anyhow::Result<i32> {
    let (kind, name) = match args {
        [name] => ("execution", name.as_str()),
        [kind, name] => (kind.as_str(), name.as_str()),
        _ => anyhow::bail!("usage: aloft get [execution|task|workflow|launchplan] NAME"),
    };
    let id = entity_id(cli, name, version.as_deref());
    match kind {
        "execution" | "executions" => {
            let execution = client
                .get_execution(wire::GetExecutionRequest {
                    id: Some(execution_id(cli, name)),
                    ..Default::default()
                })
                .await
                .map_err(api("get execution"))?
                .into_inner();
            render::print_execution(&execution);
        }
        "task" | "tasks" => {
            let task = client
                .get_task(wire::GetEntityRequest { id: Some(id) })
                .await
                .map_err(api("get task"))?
                .into_inner();
            print_entity("task", task.id.as_ref(), &task.spec_json)?;
        }
        "workflow" | "workflows" => {
            let workflow = client
                .get_workflow(wire::GetEntityRequest { id: Some(id) })
                .await
                .map_err(api("get workflow"))?
                .into_inner();
            print_entity("workflow", workflow.id.as_ref(), &workflow.spec_json)?;
        }
        "launchplan" | "launchplans" | "launch-plan" => {
            let plan = client
                .get_launch_plan(wire::GetEntityRequest { id: Some(id) })
                .await
                .map_err(api("get launch plan"))?
                .into_inner();
            print_entity("launch plan", plan.id.as_ref(), &plan.spec_json)?;
        }
        other => anyhow::bail!("unknown kind {other:?}; use execution, task, workflow or launchplan"),
    }
    Ok(0)
}
