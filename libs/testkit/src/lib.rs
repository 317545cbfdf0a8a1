//! Aloft's test kit: real protocol peers on loopback for tests and `aloft-bench notify` — an SMTP server that
//! speaks real SMTP (EHLO, MAIL, RCPT, DATA with dot-unstuffing, RSET, QUIT, STARTTLS and implicit TLS) and
//! keeps what it receives, and an HTTP server that records requests and answers with scripted statuses —
//! and the records of a synthetic failed execution, to drive the notifier without running tasks. They never
//! leave 127.0.0.1. Nothing here ships in a service binary.

pub mod http;
pub mod records;
pub mod smtp;

pub use http::{HttpSink, ReceivedRequest};
pub use records::failed_execution_records;
pub use smtp::{ReceivedMail, SinkTls, SmtpSink, SmtpSinkOptions};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Accepts connections until `shutdown`, serving each in its own task.
fn accept_until<F, Fut>(listener: TcpListener, shutdown: CancellationToken, serve: F)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            tokio::spawn(serve(stream));
        }
    });
}
