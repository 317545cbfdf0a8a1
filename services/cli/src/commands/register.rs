//! `aloft register`: register every document of spec files.

use std::path::PathBuf;

use crate::args::*;
use crate::client::AdminClient;

use super::shared::*;

pub(super) async fn run(
    cli: &Cli,
    client: &mut AdminClient,
    _embedded: bool,
    files: &[PathBuf],
) -> anyhow::Result<i32> {
    for file in files {
        register_file(cli, client, file).await?;
    }
    Ok(0)
}
