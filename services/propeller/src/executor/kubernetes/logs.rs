//! A pod's log in the blob store, where `aloft logs` reads it: followed through the API server (`pods/log`
//! with `follow=true`, which the API server proxies to the pod's kubelet) from when the task container
//! starts, shipped in chunks named by byte offset as a process task's are, and read once more when the pod
//! ends for whatever the stream had not delivered. A new owner resumes at the size already stored; a log
//! stream that breaks while the pod runs is opened again and skips what was shipped, since the kubelet
//! serves a container's log from its first byte every time.

use std::time::Duration;

use aloft_blobstore::BlobStore;
use futures::AsyncReadExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::executor::attempt::AttemptId;
use crate::executor::log_shipper::{log_prefix, tenant_store, SHIP_INTERVAL};

/// A chunk is stored as soon as it holds this much, before its interval is up.
const CHUNK_AT: usize = 4 * 1024 * 1024;
/// How long a broken log stream waits before it is opened again, at first and at most.
const REOPEN_FIRST: Duration = Duration::from_secs(1);
const REOPEN_MOST: Duration = Duration::from_secs(10);

/// The log of one attempt's pod.
pub(super) struct PodLog {
    target: LogTarget,
    /// Bytes stored so far, while no follower holds them.
    shipped: u64,
    follower: Option<(CancellationToken, JoinHandle<u64>)>,
}

/// Where the log comes from and where it goes.
#[derive(Clone)]
struct LogTarget {
    pods: Api<Pod>,
    pod: String,
    store: BlobStore,
    prefix: String,
}

/// Where a log's chunks go (and the pod they are of, for what is logged).
struct Chunks<'a> {
    store: &'a BlobStore,
    prefix: &'a str,
    pod: &'a str,
}

impl LogTarget {
    fn chunks(&self) -> Chunks<'_> {
        Chunks {
            store: &self.store,
            prefix: &self.prefix,
            pod: &self.pod,
        }
    }
}

impl PodLog {
    /// The log of a pod just created: nothing of it is stored yet.
    pub(super) fn new(pods: &Api<Pod>, pod: &str, blobs: &BlobStore, attempt: &AttemptId) -> PodLog {
        PodLog {
            target: LogTarget {
                pods: pods.clone(),
                pod: pod.to_string(),
                store: tenant_store(blobs, attempt),
                prefix: log_prefix(attempt),
            },
            shipped: 0,
            follower: None,
        }
    }

    /// The log of a pod an earlier owner (or an earlier start of this attempt) followed: shipping resumes
    /// after what it stored.
    pub(super) async fn resumed(
        pods: &Api<Pod>,
        pod: &str,
        blobs: &BlobStore,
        attempt: &AttemptId,
    ) -> PodLog {
        let mut log = PodLog::new(pods, pod, blobs, attempt);
        log.shipped = log.target.store.log_size(&log.target.prefix).await.unwrap_or(0);
        log
    }

    /// Starts following the log, once: called whenever the pod is seen with its task container started.
    pub(super) fn task_started(&mut self) {
        if self.follower.is_some() {
            return;
        }
        let stop = CancellationToken::new();
        let task = tokio::spawn(follow(self.target.clone(), self.shipped, stop.clone()));
        self.follower = Some((stop, task));
    }

    /// Stops following (the pod ended) and stores the rest of the log (best effort: a pod that never ran
    /// has none).
    pub(super) async fn finish(mut self) {
        if let Some((stop, task)) = self.follower.take() {
            stop.cancel();
            if let Ok(shipped) = task.await {
                self.shipped = shipped;
            }
        }
        let params = task_log(false);
        match self.target.pods.log_stream(&self.target.pod, &params).await {
            Ok(reader) => {
                let never = CancellationToken::new();
                ship_stream(&self.target.chunks(), reader, self.shipped, &never).await;
            }
            Err(error) => tracing::debug!(pod = %self.target.pod, %error, "the pod has no log to keep"),
        }
    }
}

impl Drop for PodLog {
    /// A log left without `finish` (the pod was lost) stops being followed.
    fn drop(&mut self) {
        if let Some((stop, _)) = &self.follower {
            stop.cancel();
        }
    }
}

fn task_log(follow: bool) -> LogParams {
    LogParams {
        container: Some("task".into()),
        follow,
        ..Default::default()
    }
}

/// Follows the task container's log until `stop`, opening the stream again when it breaks; returns how
/// many bytes are stored.
async fn follow(target: LogTarget, mut shipped: u64, stop: CancellationToken) -> u64 {
    let mut wait = REOPEN_FIRST;
    let params = task_log(true);
    loop {
        let opened = tokio::select! {
            opened = target.pods.log_stream(&target.pod, &params) => opened,
            _ = stop.cancelled() => return shipped,
        };
        match opened {
            Ok(reader) => {
                let before = shipped;
                shipped = ship_stream(&target.chunks(), reader, shipped, &stop).await;
                if shipped > before {
                    wait = REOPEN_FIRST;
                }
            }
            Err(error) => tracing::debug!(pod = %target.pod, %error, "cannot follow the pod's log yet"),
        }
        // The stream ended while the pod runs (its kubelet restarted, a proxy timed out, or the container
        // ended and the pod's end is on its way): open it again, a little later each time.
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return shipped,
        }
        wait = (wait * 2).min(REOPEN_MOST);
    }
}

/// Stores what `reader` delivers past byte `shipped` of the log (the stream starts at its first byte), in a
/// chunk every `SHIP_INTERVAL` (or sooner, at `CHUNK_AT` bytes), until it ends or `stop`; returns the new
/// stored size. A chunk that cannot be stored ends the stream: the next one delivers its bytes again.
async fn ship_stream(
    target: &Chunks<'_>,
    reader: impl futures::AsyncBufRead,
    mut shipped: u64,
    stop: &CancellationToken,
) -> u64 {
    let mut reader = std::pin::pin!(reader);
    let mut offset = 0u64; // of the stream's next byte in the log
    let mut pending: Vec<u8> = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut tick = tokio::time::interval(SHIP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            read = reader.read(&mut buffer) => Some(read),
            _ = tick.tick() => None,
            _ = stop.cancelled() => Some(Ok(0)),
        };
        let (ended, flush) = match event {
            None => (false, true),
            Some(Ok(0)) | Some(Err(_)) => (true, true),
            Some(Ok(read)) => {
                let start = offset;
                offset += read as u64;
                // Only what lies past the stored and pending bytes is new.
                let known = shipped + pending.len() as u64;
                if offset > known {
                    let skip = known.saturating_sub(start) as usize;
                    pending.extend_from_slice(&buffer[skip..read]);
                }
                (false, pending.len() >= CHUNK_AT)
            }
        };
        if flush && !pending.is_empty() {
            let size = pending.len() as u64;
            let chunk = bytes::Bytes::from(std::mem::take(&mut pending));
            match target.store.put_log_chunk(target.prefix, shipped, chunk).await {
                Ok(()) => shipped += size,
                Err(error) => {
                    tracing::warn!(pod = %target.pod, %error, "cannot store the pod's log yet");
                    return shipped;
                }
            }
        }
        if ended {
            return shipped;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn stored(store: &BlobStore, prefix: &str) -> String {
        let mut text = String::new();
        for chunk in store.read_log(prefix, 0).await.unwrap() {
            text.push_str(std::str::from_utf8(&chunk.bytes).unwrap());
        }
        text
    }

    /// Every stream of a container's log starts at its first byte: what was stored is skipped, and the
    /// rest lands at its own offset, so a new stream (or owner) neither repeats nor loses a line.
    #[tokio::test]
    async fn a_stream_stores_only_what_lies_past_the_stored_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(dir.path()).unwrap();
        let chunks = Chunks {
            store: &store,
            prefix: "logs/a",
            pod: "pod",
        };
        let never = CancellationToken::new();
        let first = futures::io::Cursor::new(b"one\ntw".to_vec());
        assert_eq!(ship_stream(&chunks, first, 0, &never).await, 6);
        let again = futures::io::Cursor::new(b"one\ntwo\nthree\n".to_vec());
        assert_eq!(ship_stream(&chunks, again, 6, &never).await, 14);
        assert_eq!(stored(&store, "logs/a").await, "one\ntwo\nthree\n");
        assert_eq!(store.log_size("logs/a").await.unwrap(), 14);
    }
}
