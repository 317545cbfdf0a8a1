//! `aloft recover`: run a failed execution again, reusing what succeeded.

use aloft_proto::v1 as wire;

use crate::args::*;
use crate::client::AdminClient;

use super::shared::*;

pub(super) async fn run(
    cli: &Cli,
    client: &mut AdminClient,
    embedded: bool,
    execution: &str,
    name: &Option<String>,
    wait: &bool,
) -> anyhow::Result<i32> {
    let created = client
        .recover_execution(wire::RecoverExecutionRequest {
            id: Some(execution_id(cli, execution)),
            name: name.clone().unwrap_or_default(),
        })
        .await
        .map_err(api("recover"))?
        .into_inner();
    let id = created.id.unwrap_or_default();
    println!(
        "started execution {}/{}/{} (recovery of {execution})",
        id.project, id.domain, id.name
    );
    finish(client, &id, *wait || embedded).await
}
