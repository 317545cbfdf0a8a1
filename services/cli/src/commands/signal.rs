//! `aloft signal`: send a signal to an execution's gates.

use aloft_proto::v1 as wire;

use crate::args::*;
use crate::client::AdminClient;

use super::shared::*;

pub(super) async fn run(
    cli: &Cli,
    client: &mut AdminClient,
    _embedded: bool,
    execution: &str,
    signal: &str,
    value: &Option<String>,
) -> anyhow::Result<i32> {
    let id = execution_id(cli, execution);
    client
        .signal_execution(wire::SignalExecutionRequest {
            id: Some(id.clone()),
            signal: signal.to_string(),
            value: value.clone().unwrap_or_default(),
        })
        .await
        .map_err(api("signal"))?;
    println!("signal {signal} sent to {}/{}/{}", id.project, id.domain, id.name);
    Ok(0)
}
