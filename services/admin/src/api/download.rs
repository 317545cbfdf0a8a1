//! Downloading data: an execution's (or a node's) input or output streamed back, a blob or an offloaded
//! value from the blob store and any other value as its text. A blob is only served to its own project and domain.

use aloft_core::Value;

use super::*;

/// How long a signed URL reads its blob.
const SIGNED_URL_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// What a download request names: a value's text, or a blob (a file: for a directory, the file asked for).
enum Wanted {
    Text(String),
    Blob {
        blobs: aloft_blobstore::BlobStore,
        uri: String,
    },
}

fn blob_error(error: aloft_blobstore::BlobError) -> ApiError {
    match error {
        aloft_blobstore::BlobError::NotFound { .. } => ApiError::NotFound(error.to_string()),
        other => ApiError::Unavailable(other.to_string()),
    }
}

/// Refuses `uri` unless it lies in this deployment's store under the project and domain of execution `id`.
fn readable_by(blobs: &aloft_blobstore::BlobStore, uri: &str, id: &ExecutionId) -> ApiResult<()> {
    if !blobs.owns(uri) {
        return Err(ApiError::FailedPrecondition(format!(
            "{uri} is not in this deployment's blob store; read it where it lives"
        )));
    }
    // Under the project and domain, in their own store or (data written before they had one) the default.
    let key = format!("{}/{}/", id.project, id.domain);
    let in_tenant = [blobs.for_tenant(&id.project, &id.domain), blobs.default_store()]
        .iter()
        .any(|store| uri.starts_with(&store.uri_of(&key)));
    if !in_tenant {
        return Err(ApiError::PermissionDenied(format!(
            "{uri} belongs to another project or domain than {}/{}",
            id.project, id.domain
        )));
    }
    Ok(())
}

impl AdminApi {
    pub(super) async fn download_data_rpc(
        &self,
        request: wire::DownloadDataRequest,
    ) -> ApiResult<DataStream> {
        let (blobs, uri) = match self.wanted(request).await? {
            Wanted::Text(text) => {
                let chunk = wire::DataChunk {
                    data: text.into_bytes(),
                };
                return Ok(Box::pin(futures::stream::iter([Ok(chunk)])));
            }
            Wanted::Blob { blobs, uri } => (blobs, uri),
        };
        let stream = blobs.get_stream(&uri).await.map_err(blob_error)?;
        Ok(Box::pin(futures::StreamExt::map(stream, to_chunk)))
    }

    pub(super) async fn data_url_rpc(&self, request: wire::DownloadDataRequest) -> ApiResult<wire::DataUrl> {
        let name = request.name.clone();
        let Wanted::Blob { blobs, uri } = self.wanted(request).await? else {
            return Err(ApiError::FailedPrecondition(format!(
                "{name:?} is not a blob; DownloadData returns its value"
            )));
        };
        let signed = blobs
            .signed_url(&uri, SIGNED_URL_LIFETIME)
            .await
            .map_err(blob_error)?;
        let url = signed.ok_or_else(|| {
            ApiError::FailedPrecondition(format!(
                "the blob store {} cannot sign URLs; download through DownloadData (aloft download)",
                blobs.root()
            ))
        })?;
        Ok(wire::DataUrl {
            url,
            expires_at_millis: now_millis() + SIGNED_URL_LIFETIME.as_millis() as i64,
        })
    }

    /// The value or blob file a download request names, checked against the caller's project and domain.
    async fn wanted(&self, request: wire::DownloadDataRequest) -> ApiResult<Wanted> {
        let id = execution_id_from_wire(request.id.as_ref())?;
        let row = self.execution_row(&id).await?;
        let (values, whose) = if request.node_id.is_empty() {
            if request.from_inputs {
                (row.inputs, format!("execution {id}'s inputs"))
            } else {
                (row.outputs, format!("execution {id}'s outputs"))
            }
        } else if request.from_inputs {
            // A node's inputs are in no table: its bindings resolved against the folded history.
            let node = &request.node_id;
            let (inputs, _) = self.node_data(&id, node).await?;
            let inputs = inputs.ok_or_else(|| {
                ApiError::FailedPrecondition(format!(
                    "node {node:?} of execution {id} has no inputs yet: a node it reads has not produced them"
                ))
            })?;
            (inputs, format!("node {node:?} of execution {id}'s inputs"))
        } else {
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
        let no_store = || {
            ApiError::FailedPrecondition("this admin has no blob store configured (--blob-store)".to_string())
        };
        let uri = match value {
            Value::Blob { uri, .. } | Value::Offloaded { uri, .. } => uri,
            // A list or map gathered from items some of which were offloaded: whole again, as its text.
            collection if aloft_blobstore::holds_offloaded(collection) => {
                let blobs = self.blobs.clone().ok_or_else(no_store)?;
                for uri in aloft_blobstore::offloaded_uris(collection) {
                    readable_by(&blobs, uri, &id)?;
                }
                let resolved = blobs.resolve(collection).await.map_err(blob_error)?;
                return Ok(Wanted::Text(resolved.to_text()));
            }
            other => return Ok(Wanted::Text(other.to_text())),
        };
        let blobs = self.blobs.clone().ok_or_else(no_store)?;
        readable_by(&blobs, uri, &id)?;
        if !uri.ends_with('/') {
            let uri = uri.clone();
            return Ok(Wanted::Blob { blobs, uri });
        }
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
        let uri = format!("{uri}{}", request.path);
        Ok(Wanted::Blob { blobs, uri })
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
