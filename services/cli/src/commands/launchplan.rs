//! `aloft launchplan`: activate or deactivate a launch plan version.

use aloft_proto::v1 as wire;

use crate::args::*;
use crate::client::AdminClient;

use super::shared::*;

pub(super) async fn run(
    cli: &Cli,
    client: &mut AdminClient,
    _embedded: bool,
    command: &LaunchPlanCommand,
) -> anyhow::Result<i32> {
    let (name, version, activate) = match command {
        LaunchPlanCommand::Activate { name, version } => (name, version, true),
        LaunchPlanCommand::Deactivate { name, version } => (name, version, false),
    };
    let request = wire::GetEntityRequest {
        id: Some(entity_id(cli, name, Some(version))),
    };
    let plan = if activate {
        client
            .activate_launch_plan(request)
            .await
            .map_err(api("activate"))?
    } else {
        client
            .deactivate_launch_plan(request)
            .await
            .map_err(api("deactivate"))?
    }
    .into_inner();
    let state = if plan.active { "active" } else { "inactive" };
    println!("launch plan {name}@{version} is {state}");
    Ok(0)
}
