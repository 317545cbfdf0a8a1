//! Where task data lives between machines: one `BlobStore` over the `object_store` crate, configured by a URL
//! (`file:///dir`, `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`, `memory://`).
//!
//! It owns the layout of what Aloft keeps there (blob outputs, offloaded values and task logs under one root),
//! offloads values too large for an event and resolves them back, streams files
//! and directories in and out without holding them in memory, and computes each upload's sha256 while it
//! streams. Everything a user may configure or pass (a URL, a blob URI) is checked and refused with an error
//! naming it; no credential ever appears in an error or a description.

mod config;
mod error;
mod layout;
mod limits;
mod store;
mod transfer;
mod values;

pub use error::{BlobError, Result, SETTING};
pub use layout::{attempt_key, input_key, log_prefix, LogChunk};
pub use limits::{ValueLimits, DEFAULT_INLINE_VALUE_LIMIT, DEFAULT_MAX_VALUE_BYTES, INLINE_VALUES_BUDGET};
pub use store::BlobStore;
pub use transfer::StoredBlob;
pub use values::{encoded_len, holds_offloaded, offloaded_uris, sha256_digest};
