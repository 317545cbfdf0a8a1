//! What the loopback peers share: accepting connections until shutdown, and the time they stamp.

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Accepts connections until `shutdown`, serving each in its own task.
pub fn accept_until<F, Fut>(listener: TcpListener, shutdown: CancellationToken, serve: F)
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
