//! `aloft approve`: approve a waiting approval gate.

use aloft_proto::v1 as wire;

use crate::args::*;
use crate::client::AdminClient;

use super::shared::*;

pub(super) async fn run(
    cli: &Cli,
    client: &mut AdminClient,
    _embedded: bool,
    execution: &str,
    node: &str,
) -> anyhow::Result<i32> {
    let id = execution_id(cli, execution);
    client
        .approve_execution(wire::ApproveExecutionRequest {
            id: Some(id.clone()),
            node: node.to_string(),
        })
        .await
        .map_err(api("approve"))?;
    println!("node {node} of {}/{}/{} approved", id.project, id.domain, id.name);
    Ok(0)
}
