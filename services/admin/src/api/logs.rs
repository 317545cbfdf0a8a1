//! Task logs: an attempt's log read back from the blob store the propellers ship it to, from any offset,
//! and followed while the attempt runs. Logs of an attempt whose propeller died, or that ran on another
//! machine, read the same way.

use aloft_core::phase::AttemptPhase;

use super::*;

/// How often a followed log looks for new chunks.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

impl AdminApi {
    pub(super) async fn task_logs_rpc(&self, request: wire::GetTaskLogsRequest) -> ApiResult<TaskLogStream> {
        let id = execution_id_from_wire(request.id.as_ref())?;
        self.execution_row(&id).await?;
        let blobs = self
            .blobs
            .as_ref()
            .ok_or_else(|| {
                ApiError::FailedPrecondition(
                    "this admin has no blob store configured (--blob-store)".to_string(),
                )
            })?
            .for_tenant(&id.project, &id.domain);
        let attempt = self.attempt_of(&id, &request.node_id, request.attempt).await?;
        let prefix =
            aloft_blobstore::log_prefix(&id.project, &id.domain, &id.name, &request.node_id, attempt);
        let (sender, receiver) = tokio::sync::mpsc::channel(16);
        let api = self.clone();
        let node = request.node_id.clone();
        tokio::spawn(async move {
            let mut offset = request.offset;
            loop {
                // Whether it had ended is read before the chunks: an ended attempt's log is all stored.
                let ended = !request.follow || api.attempt_ended(&id, &node, attempt).await;
                let chunks = match blobs.read_log(&prefix, offset).await {
                    Ok(chunks) => chunks,
                    Err(error) => {
                        let _ = sender
                            .send(Err(Status::unavailable(format!(
                                "reading the log of {id} {node} attempt {attempt}: {error}"
                            ))))
                            .await;
                        return;
                    }
                };
                for chunk in chunks {
                    offset = chunk.offset + chunk.bytes.len() as u64;
                    let answer = wire::TaskLogChunk {
                        offset: chunk.offset,
                        data: chunk.bytes.to_vec(),
                        attempt,
                    };
                    if sender.send(Ok(answer)).await.is_err() {
                        return; // the caller went away
                    }
                }
                if ended {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(FOLLOW_POLL) => {}
                    _ = sender.closed() => return,
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver)))
    }

    /// The attempt a log request means: `attempt`, or the node's latest for 0; NOT_FOUND naming what is
    /// missing.
    async fn attempt_of(&self, id: &ExecutionId, node: &str, attempt: u32) -> ApiResult<u32> {
        let attempts: Vec<u32> = self
            .store
            .task_attempts(id)
            .await?
            .into_iter()
            .filter(|row| row.node_id == node)
            .map(|row| row.attempt)
            .collect();
        match (attempt, attempts.iter().max()) {
            (_, None) => Err(ApiError::NotFound(format!(
                "node {node:?} of execution {id} has no attempt (yet); is the node id right?"
            ))),
            (0, Some(latest)) => Ok(*latest),
            (wanted, Some(_)) if attempts.contains(&wanted) => Ok(wanted),
            (wanted, Some(_)) => Err(ApiError::NotFound(format!(
                "node {node:?} of execution {id} has no attempt {wanted}; it has {attempts:?}"
            ))),
        }
    }

    /// Whether the read model shows the attempt ended (a vanished row counts as ended: nothing will follow).
    async fn attempt_ended(&self, id: &ExecutionId, node: &str, attempt: u32) -> bool {
        match self.store.task_attempts(id).await {
            Ok(rows) => rows
                .iter()
                .find(|row| row.node_id == node && row.attempt == attempt)
                .is_none_or(|row| {
                    row.phase
                        .parse::<AttemptPhase>()
                        .is_ok_and(|phase| phase != AttemptPhase::Running)
                }),
            // Not knowing is not ending: the next round asks again.
            Err(_) => false,
        }
    }
}
