//! The part of a kubelet the API server calls for `pods/log`: `GET /containerLogs/{namespace}/{pod}/{container}`
//! over HTTPS (with `?follow=true`, streamed until the container ends). No kubelet can run here; a test
//! registers a Node whose kubelet endpoint is this server, binds its pods there and writes what their
//! containers print, and the API server really proxies every log request to it. Its certificate is
//! self-signed: an API server given no `--kubelet-certificate-authority` does not check it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::net::accept_until;

/// What one container printed, and whether it has ended.
#[derive(Default)]
struct ContainerLog {
    bytes: Vec<u8>,
    ended: bool,
}

#[derive(Default)]
struct Logs {
    containers: Mutex<HashMap<String, ContainerLog>>,
    /// Wakes the follow streams when a log grows or ends.
    changed: Notify,
    /// The paths asked for, in order (`/containerLogs/ns/pod/container?query`).
    requests: Mutex<Vec<String>>,
}

/// A kubelet's log endpoint on 127.0.0.1; stops when dropped.
pub struct FakeKubelet {
    port: u16,
    logs: Arc<Logs>,
    shutdown: CancellationToken,
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn key(namespace: &str, pod: &str, container: &str) -> String {
    format!("{namespace}/{pod}/{container}")
}

impl FakeKubelet {
    pub async fn start() -> std::io::Result<FakeKubelet> {
        let acceptor = self_signed_acceptor()?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let logs = Arc::new(Logs::default());
        let shutdown = CancellationToken::new();
        let served = Arc::clone(&logs);
        let stopping = shutdown.clone();
        accept_until(listener, shutdown.clone(), move |stream| {
            let (acceptor, logs, stopping) = (acceptor.clone(), Arc::clone(&served), stopping.clone());
            async move {
                if let Ok(stream) = acceptor.accept(stream).await {
                    let _ = serve(stream, &logs, &stopping).await;
                }
            }
        });
        Ok(FakeKubelet { port, logs, shutdown })
    }

    /// The port a Node's `status.daemonEndpoints.kubeletEndpoint.port` names.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Appends `text` to what `container` of `pod` printed.
    pub fn print(&self, namespace: &str, pod: &str, container: &str, text: &str) {
        self.change(namespace, pod, container, |log| {
            log.bytes.extend_from_slice(text.as_bytes())
        });
    }

    /// Ends `container` of `pod`: its follow streams close after the last byte, as a kubelet's do.
    pub fn end(&self, namespace: &str, pod: &str, container: &str) {
        self.change(namespace, pod, container, |log| log.ended = true);
    }

    /// Changes the log of `container` of `pod` and wakes its follow streams.
    fn change(&self, namespace: &str, pod: &str, container: &str, change: impl FnOnce(&mut ContainerLog)) {
        change(
            self.logs
                .containers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .entry(key(namespace, pod, container))
                .or_default(),
        );
        self.logs.changed.notify_waiters();
    }

    /// The log requests the API server made, in order (`/containerLogs/ns/pod/container?query`).
    pub fn requests(&self) -> Vec<String> {
        self.logs
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

fn self_signed_acceptor() -> std::io::Result<tokio_rustls::TlsAcceptor> {
    let key = rcgen::KeyPair::generate().map_err(std::io::Error::other)?;
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .map_err(std::io::Error::other)?;
    let certificate = params.self_signed(&key).map_err(std::io::Error::other)?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(
            vec![certificate.der().clone()],
            tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .map_err(std::io::Error::other)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Answers one request: the container's log so far, and with `follow=true` what it prints next until it
/// ends. The body is delimited by closing the connection (HTTP/1.1 allows it), as a stream's end is.
async fn serve<S>(mut stream: S, logs: &Logs, shutdown: &CancellationToken) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split_whitespace().nth(1).unwrap_or_default().to_string();
    logs.requests
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(target.clone());
    let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
    let follow = query.split('&').any(|pair| pair == "follow=true");
    let Some(container) = path.strip_prefix("/containerLogs/") else {
        stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await?;
        return stream.shutdown().await;
    };
    stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
        .await?;
    let mut sent = 0;
    loop {
        // Registered before the log is read, so a line printed in between is not missed.
        let changed = logs.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let (new, ended) = {
            let containers = logs
                .containers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match containers.get(container) {
                Some(log) => (log.bytes[sent.min(log.bytes.len())..].to_vec(), log.ended),
                None => (Vec::new(), false),
            }
        };
        if !new.is_empty() {
            stream.write_all(&new).await?;
            stream.flush().await?;
            sent += new.len();
        }
        if !follow || ended {
            return stream.shutdown().await;
        }
        tokio::select! {
            _ = changed => {}
            _ = shutdown.cancelled() => return stream.shutdown().await,
        }
    }
}
