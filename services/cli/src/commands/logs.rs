//! `aloft logs`: a node attempt's log, streamed from admin (which reads it from the blob store).

use aloft_proto::v1 as wire;
use tokio::io::AsyncWriteExt;

use crate::args::*;
use crate::client::AdminClient;

use super::shared::*;

pub(super) async fn run(
    cli: &Cli,
    client: &mut AdminClient,
    execution: &str,
    node: &str,
    attempt: Option<u32>,
    follow: bool,
) -> anyhow::Result<i32> {
    let mut chunks = client
        .get_task_logs(wire::GetTaskLogsRequest {
            id: Some(execution_id(cli, execution)),
            node_id: node.to_string(),
            attempt: attempt.unwrap_or(0),
            offset: 0,
            follow,
        })
        .await
        .map_err(api("logs"))?
        .into_inner();
    let mut stdout = tokio::io::stdout();
    while let Some(chunk) = chunks.message().await.map_err(api("logs"))? {
        stdout.write_all(&chunk.data).await?;
        stdout.flush().await?;
    }
    Ok(0)
}
