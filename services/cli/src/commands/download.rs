//! `aloft download` (and `aloft get NAME --output OUTPUT`): one input or output streamed from admin to a file
//! or stdout.

use aloft_proto::v1 as wire;
use tokio::io::AsyncWriteExt;

use crate::args::*;
use crate::client::AdminClient;

use super::shared::*;

/// Which value to download.
pub(super) struct Wanted<'a> {
    pub name: &'a str,
    pub node: Option<&'a str>,
    pub input: bool,
    pub path: Option<&'a str>,
}

impl Wanted<'_> {
    fn request(&self, cli: &Cli, execution: &str) -> wire::DownloadDataRequest {
        wire::DownloadDataRequest {
            id: Some(execution_id(cli, execution)),
            node_id: self.node.unwrap_or_default().to_string(),
            name: self.name.to_string(),
            from_inputs: self.input,
            path: self.path.unwrap_or_default().to_string(),
        }
    }
}

/// Prints a signed URL for the blob.
pub(super) async fn print_url(
    cli: &Cli,
    client: &mut AdminClient,
    execution: &str,
    wanted: Wanted<'_>,
) -> anyhow::Result<i32> {
    let signed = client
        .get_data_url(wanted.request(cli, execution))
        .await
        .map_err(api("download --url"))?
        .into_inner();
    println!("{}", signed.url);
    Ok(0)
}

pub(super) async fn run(
    cli: &Cli,
    client: &mut AdminClient,
    execution: &str,
    wanted: Wanted<'_>,
    to: Option<&std::path::Path>,
) -> anyhow::Result<i32> {
    let mut chunks = client
        .download_data(wanted.request(cli, execution))
        .await
        .map_err(api("download"))?
        .into_inner();
    let mut out: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match to {
        Some(path) => Box::new(
            tokio::fs::File::create(path)
                .await
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?,
        ),
        None => Box::new(tokio::io::stdout()),
    };
    let mut written = 0u64;
    while let Some(chunk) = chunks.message().await.map_err(api("download"))? {
        out.write_all(&chunk.data).await?;
        written += chunk.data.len() as u64;
    }
    out.flush().await?;
    if let Some(path) = to {
        eprintln!("wrote {written} bytes to {}", path.display());
    }
    Ok(0)
}
