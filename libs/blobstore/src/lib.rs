//! Where task data lives between machines: one `BlobStore` over the `object_store` crate, configured by a URL
//! (`file:///dir`, `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`, `memory://`).
//!
//! It owns the layout of what Aloft keeps there (blob outputs and task logs under one root), streams files
//! and directories in and out without holding them in memory, and computes each upload's sha256 while it
//! streams. Everything a user may configure or pass (a URL, a blob URI) is checked and refused with an error
//! naming it; no credential ever appears in an error or a description.

mod config;
mod error;
mod layout;
mod store;
mod transfer;

pub use error::{BlobError, Result, SETTING};
pub use layout::{attempt_key, log_prefix, LogChunk};
pub use store::BlobStore;
pub use transfer::StoredBlob;
