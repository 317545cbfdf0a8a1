//! Finding the admin API: `--admin URL`, else a running `aloft dev` on the default address, else an
//! embedded fleet started in this process on `--data-dir`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use std::sync::OnceLock;

use aloft_proto::v1::admin_service_client::AdminServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::fleet::{Fleet, FleetConfig};

pub const DEFAULT_DEV_ADDRESS: &str = "127.0.0.1:8089";
/// Where `aloft dev` serves the catalog.
pub const DEFAULT_DEV_CATALOG_ADDRESS: &str = "127.0.0.1:8090";

pub type AdminClient = AdminServiceClient<InterceptedService<Channel, aloft_proto::bearer::Bearer>>;

/// The credential every call of this process sends (`--token`, or the one `aloft login` stored).
static CREDENTIAL: OnceLock<Option<String>> = OnceLock::new();

/// Sets the credential for every admin connection of this process (once, before connecting).
pub fn use_credential(credential: Option<String>) {
    let _ = CREDENTIAL.set(credential);
}

/// Where `aloft login` keeps the credential: `$XDG_CONFIG_HOME/aloft/credential`, else
/// `~/.config/aloft/credential`.
pub fn credential_path() -> Option<std::path::PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| std::path::PathBuf::from(home).join(".config")))?;
    Some(base.join("aloft").join("credential"))
}

pub fn stored_credential() -> Option<String> {
    let text = std::fs::read_to_string(credential_path()?).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// A connection to admin, and the in-process fleet behind it when there is one.
pub struct Connection {
    pub client: AdminClient,
    /// The catalog's address, when known: `--catalog`, the dev server's, or the embedded fleet's.
    pub catalog_url: Option<String>,
    pub embedded: Option<Fleet>,
}

impl Connection {
    pub async fn open(
        admin: Option<&str>,
        catalog: Option<&str>,
        data_dir: &Path,
        project: &str,
    ) -> anyhow::Result<Connection> {
        let mut connection = Connection::open_admin(admin, data_dir, project).await?;
        if let Some(url) = catalog {
            connection.catalog_url = Some(with_scheme(url));
        }
        Ok(connection)
    }

    async fn open_admin(admin: Option<&str>, data_dir: &Path, project: &str) -> anyhow::Result<Connection> {
        if let Some(url) = admin {
            let url = if url.contains("://") {
                url.to_string()
            } else {
                format!("http://{url}")
            };
            let client = connect(&url)
                .await
                .map_err(|e| anyhow::anyhow!("cannot reach admin at {url}: {e}"))?;
            return Ok(Connection {
                client,
                catalog_url: None,
                embedded: None,
            });
        }
        let dev_url = format!("http://{DEFAULT_DEV_ADDRESS}");
        if let Ok(Ok(client)) = tokio::time::timeout(Duration::from_millis(300), connect(&dev_url)).await {
            eprintln!("using the aloft dev server at {DEFAULT_DEV_ADDRESS}");
            return Ok(Connection {
                client,
                catalog_url: Some(format!("http://{DEFAULT_DEV_CATALOG_ADDRESS}")),
                embedded: None,
            });
        }
        let mut config = FleetConfig::embedded(data_dir, SocketAddr::from(([127, 0, 0, 1], 0)));
        config.bootstrap_project = Some(project.to_string());
        let fleet = Fleet::start(config).await?;
        let client = connect(&fleet.endpoint()).await?;
        Ok(Connection {
            client,
            catalog_url: Some(fleet.catalog_endpoint()),
            embedded: Some(fleet),
        })
    }

    pub async fn close(self) -> anyhow::Result<()> {
        match self.embedded {
            Some(fleet) => fleet.stop().await,
            None => Ok(()),
        }
    }
}

fn with_scheme(url: &str) -> String {
    if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

/// This process's credential (`use_credential`), if any.
pub fn credential() -> Option<String> {
    CREDENTIAL.get().cloned().flatten()
}

/// A client of admin at `url` sending this process's credential (`use_credential`).
pub async fn connect(url: &str) -> anyhow::Result<AdminClient> {
    connect_as(url, credential().as_deref()).await
}

/// A client of admin at `url` sending `credential` (an OIDC token or an API key) with every call.
pub async fn connect_as(url: &str, credential: Option<&str>) -> anyhow::Result<AdminClient> {
    let endpoint = aloft_proto::client_tls::secure(Channel::from_shared(url.to_string())?)
        .map_err(anyhow::Error::msg)?;
    let channel = endpoint.connect_timeout(Duration::from_secs(5)).connect().await?;
    let bearer = aloft_proto::bearer::Bearer::new(credential)
        .map_err(|e| anyhow::anyhow!("--token, ALOFT_TOKEN or aloft login: {e}"))?;
    Ok(AdminServiceClient::with_interceptor(channel, bearer).max_decoding_message_size(64 * 1024 * 1024))
}
