//! Where Aloft's data lives under the store's root: an attempt's blob outputs under
//! `PROJECT/DOMAIN/EXECUTION/NODE/ATTEMPT/OUTPUT` (its offloaded values at `OUTPUT.value` there, an
//! execution's offloaded launch inputs at `PROJECT/DOMAIN/EXECUTION/inputs/INPUT.value`), its log under `logs/PROJECT/DOMAIN/EXECUTION/NODE/ATTEMPT/`
//! in chunks named by the byte offset they start at.

use crate::error::Result;
use crate::store::BlobStore;

/// The key of output `output` of one attempt.
pub fn attempt_key(
    project: &str,
    domain: &str,
    execution: &str,
    node: &str,
    attempt: u32,
    output: &str,
) -> String {
    format!("{project}/{domain}/{execution}/{node}/{attempt}/{output}")
}

/// The key of launch input `input` of an execution, when it is too large to travel inline.
pub fn input_key(project: &str, domain: &str, execution: &str, input: &str) -> String {
    format!("{project}/{domain}/{execution}/inputs/{input}.value")
}

/// The folder of one attempt's log chunks.
pub fn log_prefix(project: &str, domain: &str, execution: &str, node: &str, attempt: u32) -> String {
    format!("logs/{project}/{domain}/{execution}/{node}/{attempt}")
}

/// One stored piece of an attempt's log: the bytes from `offset` on.
#[derive(Debug, Clone, PartialEq)]
pub struct LogChunk {
    pub offset: u64,
    pub bytes: bytes::Bytes,
}

/// Width of a chunk's offset in its name: names sort as their offsets do.
const OFFSET_DIGITS: usize = 16;

impl BlobStore {
    /// Stores the log bytes of an attempt that start at `offset`.
    pub async fn put_log_chunk(&self, prefix: &str, offset: u64, bytes: bytes::Bytes) -> Result<()> {
        self.put(&format!("{prefix}/{offset:0OFFSET_DIGITS$}"), bytes)
            .await
            .map(|_| ())
    }

    /// Where the stored log of an attempt ends (its size so far).
    pub async fn log_size(&self, prefix: &str) -> Result<u64> {
        Ok(self
            .log_chunks_listed(prefix)
            .await?
            .last()
            .map_or(0, |(offset, size)| offset + size))
    }

    /// The stored log of an attempt from byte `from` on (chunks are cut where `from` falls inside one).
    pub async fn read_log(&self, prefix: &str, from: u64) -> Result<Vec<LogChunk>> {
        let mut chunks = Vec::new();
        for (offset, size) in self.log_chunks_listed(prefix).await? {
            if offset + size <= from {
                continue;
            }
            let bytes = self
                .get(&self.uri_of(&format!("{prefix}/{offset:0OFFSET_DIGITS$}")))
                .await?;
            let skip = from.saturating_sub(offset) as usize;
            chunks.push(LogChunk {
                offset: offset + skip as u64,
                bytes: bytes.slice(skip.min(bytes.len())..),
            });
        }
        Ok(chunks)
    }

    /// The chunks of a log as (offset, size), in order; names that are not offsets are not chunks.
    async fn log_chunks_listed(&self, prefix: &str) -> Result<Vec<(u64, u64)>> {
        let mut chunks: Vec<(u64, u64)> = self
            .list(prefix)
            .await?
            .into_iter()
            .filter_map(|(key, size)| {
                let name = key.rsplit('/').next()?;
                (name.len() == OFFSET_DIGITS)
                    .then(|| name.parse::<u64>().ok())
                    .flatten()
                    .map(|offset| (offset, size))
            })
            .collect();
        chunks.sort();
        Ok(chunks)
    }
}
