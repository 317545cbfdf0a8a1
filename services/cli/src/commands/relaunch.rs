//! `aloft relaunch`: run an execution again, inputs optionally replaced.

use aloft_proto::v1 as wire;

use crate::args::*;
use crate::client::AdminClient;

use super::shared::*;

pub(super) async fn run(
    cli: &Cli,
    client: &mut AdminClient,
    embedded: bool,
    execution: &str,
    inputs: &[(String, String)],
    name: &Option<String>,
    wait: &bool,
) -> anyhow::Result<i32> {
    let created = client
        .relaunch_execution(wire::RelaunchExecutionRequest {
            id: Some(execution_id(cli, execution)),
            name: name.clone().unwrap_or_default(),
            text_inputs: inputs.iter().cloned().collect(),
        })
        .await
        .map_err(api("relaunch"))?
        .into_inner();
    let id = created.id.unwrap_or_default();
    println!(
        "started execution {}/{}/{} (relaunch of {execution})",
        id.project, id.domain, id.name
    );
    finish(client, &id, *wait || embedded).await
}
