//! `aloft terminate`: stop a running execution.

use aloft_proto::v1 as wire;

use crate::args::*;
use crate::client::AdminClient;

use super::shared::*;

pub(super) async fn run(
    cli: &Cli,
    client: &mut AdminClient,
    _embedded: bool,
    execution: &str,
    reason: &Option<String>,
) -> anyhow::Result<i32> {
    let id = execution_id(cli, execution);
    client
        .terminate_execution(wire::TerminateExecutionRequest {
            id: Some(id.clone()),
            reason: reason.clone().unwrap_or_default(),
        })
        .await
        .map_err(api("terminate"))?;
    println!(
        "termination of {}/{}/{} requested",
        id.project, id.domain, id.name
    );
    Ok(0)
}
