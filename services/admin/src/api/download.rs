//! Downloading data: an execution's (or a node's) input or output streamed back, a blob from the blob store
//! and any other value as its text. A blob is only served to its own project and domain.

use aloft_core::Value;

use super::*;

/// The bytes of one download.
pub type DataStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<wire::DataChunk, Status>> + Send>>;

impl AdminApi {
    pub(super) async fn download_data_rpc(
        &self,
        request: wire::DownloadDataRequest,
    ) -> ApiResult<DataStream> {
        let id = execution_id_from_wire(request.id.as_ref())?;
        let row = self.execution_row(&id).await?;
        let (values, whose) = if request.node_id.is_empty() {
            if request.from_inputs {
                (row.inputs, format!("execution {id}'s inputs"))
            } else {
                (row.outputs, format!("execution {id}'s outputs"))
            }
        } else {
            if request.from_inputs {
                return Err(invalid(
                    "a node's inputs cannot be downloaded; name the node whose output it is",
                ));
            }
            let node = self
                .store
                .node_executions(&id)
                .await?
                .into_iter()
                .find(|node| node.node_id == request.node_id)
                .ok_or_else(|| {
                    ApiError::NotFound(format!("execution {id} has no node {:?}", request.node_id))
                })?;
            (
                node.outputs.unwrap_or_default(),
                format!("node {:?} of execution {id}'s outputs", request.node_id),
            )
        };
        let value = values.get(&request.name).ok_or_else(|| {
            let names: Vec<&str> = values.keys().map(String::as_str).collect();
            ApiError::NotFound(format!("{whose} have no {:?} (they are {names:?})", request.name))
        })?;
        let Value::Blob { uri, .. } = value else {
            let text = value.to_text();
            let chunk = wire::DataChunk {
                data: text.into_bytes(),
            };
            return Ok(Box::pin(futures::stream::iter([Ok(chunk)])));
        };
        let blobs = self.blobs.clone().ok_or_else(|| {
            ApiError::FailedPrecondition("this admin has no blob store configured (--blob-store)".to_string())
        })?;
        if !blobs.owns(uri) {
            return Err(ApiError::FailedPrecondition(format!(
                "{uri} is not in this deployment's blob store; read it where it lives"
            )));
        }
        let tenant_root = blobs.uri_of(&format!("{}/{}/", id.project, id.domain));
        if !uri.starts_with(&tenant_root) {
            return Err(ApiError::PermissionDenied(format!(
                "{uri} belongs to another project or domain than {}/{}",
                id.project, id.domain
            )));
        }
        let uri = if uri.ends_with('/') {
            if request.path.is_empty() {
                let files: Vec<String> = blobs
                    .list_uri(uri)
                    .await
                    .map_err(|e| ApiError::Unavailable(e.to_string()))?;
                return Err(invalid(format!(
                    "{:?} is a directory; pick one of its files with --path: {files:?}",
                    request.name
                )));
            }
            if request
                .path
                .split('/')
                .any(|part| part == ".." || part.is_empty())
            {
                return Err(invalid(format!(
                    "path {:?} is not a relative path inside the directory",
                    request.path
                )));
            }
            format!("{uri}{}", request.path)
        } else {
            uri.clone()
        };
        let stream = blobs.get_stream(&uri).await.map_err(|error| match error {
            aloft_blobstore::BlobError::NotFound { .. } => ApiError::NotFound(error.to_string()),
            other => ApiError::Unavailable(other.to_string()),
        })?;
        Ok(Box::pin(futures::StreamExt::map(stream, to_chunk)))
    }
}

#[allow(clippy::result_large_err)] // tonic's stream items are `Result<_, Status>`
fn to_chunk(bytes: aloft_blobstore::Result<impl AsRef<[u8]>>) -> Result<wire::DataChunk, Status> {
    bytes
        .map(|data| wire::DataChunk {
            data: data.as_ref().to_vec(),
        })
        .map_err(|error| Status::unavailable(error.to_string()))
}
