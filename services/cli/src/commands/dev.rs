//! `aloft dev`: the whole fleet in this process on the embedded backends.

use crate::args::*;
use crate::fleet::{Fleet, FleetConfig};

pub(super) async fn run(
    cli: &Cli,
    listen: &std::net::SocketAddr,
    catalog_listen: &std::net::SocketAddr,
    blob_store: Option<&str>,
    containers: aloft_propeller::executor::ContainerOptions,
) -> anyhow::Result<i32> {
    // The embedded fleet has no authentication: it must not be reachable from other machines.
    for (flag, address) in [("--listen", listen), ("--catalog-listen", catalog_listen)] {
        if !address.ip().is_loopback() {
            anyhow::bail!(
                "{flag} {address}: aloft dev runs without authentication and listens on loopback only \
                 (127.0.0.1 or ::1); deploy the services with --auth-config to serve other machines"
            );
        }
    }
    let mut config = FleetConfig::embedded(&cli.data_dir, *listen);
    config.bootstrap_project = Some(cli.project.clone());
    config.catalog_listen = *catalog_listen;
    if let Some(url) = blob_store {
        config.blob_store = url.to_string();
    }
    config.containers = containers;
    let fleet = Fleet::start(config).await?;
    eprintln!(
        "aloft dev: API on {endpoint} (gRPC, and REST under {endpoint}/api/v1), catalog on {}, data in {}\n\
         aloft dev: console at {endpoint}/console\n\
         aloft dev: authentication is off: the fleet listens on loopback only; Ctrl-C to stop",
        fleet.catalog_endpoint(),
        cli.data_dir.display(),
        endpoint = fleet.endpoint(),
    );
    fleet.run_until(aloft_runtime::shutdown_on_signals()).await?;
    Ok(0)
}
