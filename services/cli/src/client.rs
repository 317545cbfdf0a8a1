//! Finding the admin API: `--admin URL`, else a running `aloft dev` on the default address, else an
//! embedded fleet started in this process on `--data-dir`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use aloft_proto::v1::admin_service_client::AdminServiceClient;
use tonic::transport::Channel;

use crate::fleet::{Fleet, FleetConfig};

pub const DEFAULT_DEV_ADDRESS: &str = "127.0.0.1:8089";
/// Where `aloft dev` serves the catalog.
pub const DEFAULT_DEV_CATALOG_ADDRESS: &str = "127.0.0.1:8090";

pub type AdminClient = AdminServiceClient<Channel>;

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

pub async fn connect(url: &str) -> anyhow::Result<AdminClient> {
    let channel = Channel::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    Ok(AdminServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
}
