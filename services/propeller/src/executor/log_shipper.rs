//! Ships an attempt's log file to the blob store while the attempt runs, in chunks named by their offset, so
//! its log is readable through the API from any machine and survives the propeller (a crash loses at most
//! the last `SHIP_INTERVAL`).

use std::path::PathBuf;
use std::time::Duration;

use aloft_blobstore::BlobStore;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::attempt::AttemptId;

/// How often new log bytes go to the store.
pub const SHIP_INTERVAL: Duration = Duration::from_millis(500);
/// The most one chunk holds.
const MAX_CHUNK: usize = 4 * 1024 * 1024;

/// The store folder of an attempt's log chunks.
pub fn log_prefix(attempt: &AttemptId) -> String {
    let id = &attempt.execution;
    aloft_blobstore::log_prefix(
        &id.project,
        &id.domain,
        &id.name,
        &attempt.node_id,
        attempt.attempt,
    )
}

/// A running shipper; `finish` ships what is left and stops it.
pub struct LogShipper {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl LogShipper {
    /// Ships `log_path` to the attempt's folder from byte `from` on (what an earlier owner already shipped
    /// is not repeated), every `SHIP_INTERVAL`.
    pub fn spawn(blobs: BlobStore, attempt: &AttemptId, log_path: PathBuf, from: u64) -> LogShipper {
        let blobs = tenant_store(&blobs, attempt);
        let stop = CancellationToken::new();
        let prefix = log_prefix(attempt);
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut shipped = from;
                loop {
                    let stopping = tokio::select! {
                        _ = tokio::time::sleep(SHIP_INTERVAL) => false,
                        _ = stop.cancelled() => true,
                    };
                    match ship_new_bytes(&blobs, &prefix, &log_path, shipped).await {
                        Ok(now) => shipped = now,
                        // Kept locally; the next round tries again.
                        Err(error) => tracing::warn!(%error, log = %prefix, "cannot ship log bytes yet"),
                    }
                    if stopping {
                        return;
                    }
                }
            }
        });
        LogShipper { stop, task }
    }

    /// Ships the rest of the log (the attempt ended) and stops.
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }

    /// Where a new owner resumes shipping the log of an attempt it re-attached to.
    pub async fn resume_offset(blobs: &BlobStore, attempt: &AttemptId) -> u64 {
        tenant_store(blobs, attempt)
            .log_size(&log_prefix(attempt))
            .await
            .unwrap_or(0)
    }
}

/// The store the attempt's raw data goes to: its project's (or domain's) own, when it has one.
pub(crate) fn tenant_store(blobs: &BlobStore, attempt: &AttemptId) -> BlobStore {
    blobs.for_tenant(&attempt.execution.project, &attempt.execution.domain)
}

/// Why a round of shipping stopped short; the bytes stay in the local file for the next round.
#[derive(Debug, thiserror::Error)]
enum ShipError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] aloft_blobstore::BlobError),
}

impl ShipError {
    fn read(path: &std::path::Path, source: std::io::Error) -> ShipError {
        ShipError::Read {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Stores the bytes of `log_path` past `shipped` as chunks; returns the new shipped offset.
async fn ship_new_bytes(
    blobs: &BlobStore,
    prefix: &str,
    log_path: &std::path::Path,
    mut shipped: u64,
) -> Result<u64, ShipError> {
    // Most rounds find nothing new: one cheap look at the size, no file opened. It matters at the end of an
    // attempt, whose result waits for this round.
    let new_bytes = match std::fs::metadata(log_path) {
        Ok(metadata) if metadata.len() <= shipped => return Ok(shipped),
        Ok(metadata) => metadata.len() - shipped,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(shipped),
        Err(_) => MAX_CHUNK as u64,
    };
    let mut file = match tokio::fs::File::open(log_path).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(shipped),
        Err(source) => return Err(ShipError::read(log_path, source)),
    };
    file.seek(std::io::SeekFrom::Start(shipped))
        .await
        .map_err(|source| ShipError::read(log_path, source))?;
    // Sized to what is new (a few lines, usually), not to the largest chunk.
    let mut buffer = vec![0u8; new_bytes.min(MAX_CHUNK as u64) as usize];
    loop {
        let mut filled = 0;
        while filled < buffer.len() {
            let read = file
                .read(&mut buffer[filled..])
                .await
                .map_err(|source| ShipError::read(log_path, source))?;
            if read == 0 {
                break;
            }
            filled += read;
        }
        if filled == 0 {
            return Ok(shipped);
        }
        blobs
            .put_log_chunk(prefix, shipped, bytes::Bytes::copy_from_slice(&buffer[..filled]))
            .await?;
        shipped += filled as u64;
        if filled < MAX_CHUNK {
            return Ok(shipped);
        }
    }
}
