//! Aloft's test kit: real protocol peers on loopback for tests and `aloft-bench notify` — an SMTP server that
//! speaks real SMTP (EHLO, MAIL, RCPT, DATA with dot-unstuffing, RSET, QUIT, STARTTLS and implicit TLS) and
//! keeps what it receives, and an HTTP server that records requests and answers with scripted statuses —
//! the records of a synthetic failed execution, to drive the notifier without running tasks, and container
//! images built locally from a static busybox, an OIDC issuer that signs tokens with keys it made, and a
//! kubelet's log endpoint the Kubernetes API server proxies `pods/log` to. They never leave 127.0.0.1. Nothing here ships in a service
//! binary.

pub mod http;
pub mod images;
pub mod kubelet;
mod net;
pub use net::accept_until;
pub mod oidc;
pub mod records;
pub mod smtp;

pub use http::{HttpSink, ReceivedRequest};
pub use kubelet::FakeKubelet;
pub use records::failed_execution_records;
pub use smtp::{ReceivedMail, SinkTls, SmtpSink, SmtpSinkOptions};
