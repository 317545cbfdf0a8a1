//! The `aloft` command line and the in-process fleet behind `aloft dev`, `aloft-bench` and the embedded
//! fallback of every command (so `aloft run FILE` works with nothing installed).
//!
//! The CLI talks to admin and the catalog only through their gRPC APIs, in-process or remote alike.

pub mod admin_ops;
pub mod args;
pub mod client;
pub mod commands;
pub mod fleet;
pub mod gc;
pub mod lineage;
pub mod login;
pub mod notify;
pub mod ops_probe;
pub mod render;
pub mod specs;
