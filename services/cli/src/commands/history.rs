//! `aloft history`: every event of an execution, in order.

use aloft_proto::v1 as wire;

use crate::args::*;
use crate::client::AdminClient;
use crate::render;

use super::shared::*;

pub(super) async fn run(
    cli: &Cli,
    client: &mut AdminClient,
    _embedded: bool,
    execution: &str,
    json: &bool,
) -> anyhow::Result<i32> {
    let history = client
        .get_execution_history(wire::GetExecutionRequest {
            id: Some(execution_id(cli, execution)),
            ..Default::default()
        })
        .await
        .map_err(api("history"))?
        .into_inner();
    if *json {
        for event in &history.events {
            let payload: serde_json::Value =
                serde_json::from_str(&event.payload_json).unwrap_or(serde_json::Value::Null);
            let line = serde_json::json!({
                "log_partition": event.log_partition,
                "log_offset": event.log_offset,
                "stream": event.stream,
                "seq": event.seq,
                "writer_epoch": event.writer_epoch,
                "occurred_at_millis": event.occurred_at_millis,
                "kind": event.kind,
                "topic": event.topic,
                "summary": event.summary,
                "principal": event.principal.as_ref().map(|p| serde_json::json!({"subject": p.subject, "name": p.name, "via": p.via})),
                "event": payload,
            });
            println!("{line}");
        }
    } else {
        render::print_history(&history.events);
    }
    Ok(0)
}
