//! TLS on a service's listeners (its API and its operations endpoints) when a certificate is configured (`--tls-cert`, `--tls-key`): rustls, the
//! certificate chain and key read from PEM files and read again when either file changes (checked every few
//! seconds), so a renewed certificate is served without a restart; connections made before keep theirs. A
//! file that cannot be read or parsed at a reload is logged and the previous certificate stays.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

/// How often the certificate files are checked for a change.
const RELOAD_CHECK: Duration = Duration::from_secs(2);

#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// PEM certificate chain of this service's listener: with --tls-key, it speaks TLS only (gRPC, REST
    /// and the console). Read again when the file changes.
    #[arg(long, env = "ALOFT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "ALOFT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn load(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<_> = rustls_pemfile::certs(&mut io::BufReader::new(
        std::fs::File::open(cert).map_err(|e| anyhow::anyhow!("--tls-cert {}: {e}", cert.display()))?,
    ))
    .collect::<Result<_, _>>()
    .map_err(|e| anyhow::anyhow!("--tls-cert {}: {e}", cert.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "--tls-cert {}: no certificate in the file",
        cert.display()
    );
    let private_key = rustls_pemfile::private_key(&mut io::BufReader::new(
        std::fs::File::open(key).map_err(|e| anyhow::anyhow!("--tls-key {}: {e}", key.display()))?,
    ))
    .map_err(|e| anyhow::anyhow!("--tls-key {}: {e}", key.display()))?
    .ok_or_else(|| anyhow::anyhow!("--tls-key {}: no private key in the file", key.display()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&private_key)
        .map_err(|e| anyhow::anyhow!("--tls-key {}: {e}", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    // A renewal caught half-way (new certificate, old key) must not be served.
    certified.keys_match().map_err(|e| {
        anyhow::anyhow!(
            "--tls-key {} is not the key of --tls-cert {}: {e}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(certified)
}

/// The certificate being served, swapped when its files change.
#[derive(Debug)]
struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, Option<SystemTime>, Option<SystemTime>)>,
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|current| Arc::clone(&current.0))
    }
}

impl ReloadingCert {
    fn reload_if_changed(&self) {
        let stamps = (modified(&self.cert), modified(&self.key));
        let unchanged = self
            .current
            .read()
            .map(|current| (current.1, current.2) == stamps)
            .unwrap_or(true);
        if unchanged {
            return;
        }
        match load(&self.cert, &self.key) {
            Ok(certified) => {
                if let Ok(mut current) = self.current.write() {
                    *current = (Arc::new(certified), stamps.0, stamps.1);
                }
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
            }
            // Half-written files during a renewal are common: keep serving the old one, try again later.
            Err(error) => {
                tracing::warn!(%error, "TLS certificate changed but cannot be loaded; keeping the previous one")
            }
        }
    }
}

/// Accepts TLS connections with the configured, reloading certificate.
#[derive(Clone)]
pub struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
}

impl Tls {
    /// TLS from `args`, or `None` when no certificate is configured. Checks the files now, and keeps
    /// checking them for changes until `shutdown`.
    pub fn from_args(args: &TlsArgs, shutdown: CancellationToken) -> anyhow::Result<Option<Tls>> {
        let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
            return Ok(None);
        };
        let certified = load(cert, key)?;
        let resolver = Arc::new(ReloadingCert {
            cert: cert.clone(),
            key: key.clone(),
            current: RwLock::new((Arc::new(certified), modified(cert), modified(key))),
        });
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| anyhow::anyhow!("TLS: {e}"))?
                .with_no_client_auth()
                .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
        // gRPC needs HTTP/2; browsers and REST clients may speak HTTP/1.1.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_CHECK);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => resolver.reload_if_changed(),
                }
            }
        });
        Ok(Some(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        }))
    }
}

/// A connection a service's listener accepted: plain TCP, or TLS over it.
pub enum Connection {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        match self {
            Connection::Plain(stream) => stream.connect_info(),
            Connection::Tls(stream) => stream.get_ref().0.connect_info(),
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Connection::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Connection::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Connection::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Connection::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Serves `router` (HTTP/1.1 and HTTP/2) on what `listener` accepts, through TLS when `tls` is set, until
/// `shutdown`.
pub async fn serve_router(
    listener: TcpListener,
    tls: Option<Tls>,
    router: axum::Router,
    shutdown: CancellationToken,
) {
    use tokio_stream::StreamExt;
    let mut connections = std::pin::pin!(incoming(listener, tls));
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = connections.next() => next,
        };
        let connection = match next {
            None => break,
            Some(Err(_)) => continue,
            Some(Ok(connection)) => connection,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(connection), service)
                .await;
        });
    }
}

/// Binds `address` and serves the operations endpoints (`router`) there in the background, through TLS when
/// the service has a certificate; the error names the flag.
pub async fn spawn_ops(
    address: std::net::SocketAddr,
    tls: Option<Tls>,
    router: axum::Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("--ops-listen {address}: {e}"))?;
    tracing::info!(%address, tls = tls.is_some(), "operations endpoints listening");
    tokio::spawn(serve_router(listener, tls, router, shutdown));
    Ok(())
}

/// The connections `listener` accepts, through TLS when `tls` is set. Handshakes run apart from the accept
/// loop, so a slow or bad client holds up nobody; one that fails its handshake is dropped (and logged).
pub fn incoming(
    listener: TcpListener,
    tls: Option<Tls>,
) -> impl futures_core::Stream<Item = io::Result<Connection>> + Send + 'static {
    let (sender, receiver) = tokio::sync::mpsc::channel::<io::Result<Connection>>(64);
    tokio::spawn(async move {
        loop {
            let accepted = listener.accept().await;
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            match &tls {
                None => {
                    if sender.send(Ok(Connection::Plain(stream))).await.is_err() {
                        break;
                    }
                }
                Some(tls) => {
                    let (acceptor, sender) = (tls.acceptor.clone(), sender.clone());
                    tokio::spawn(async move {
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => {
                                let _ = sender.send(Ok(Connection::Tls(Box::new(stream)))).await;
                            }
                            Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    });
                }
            }
            if sender.is_closed() {
                break;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}
