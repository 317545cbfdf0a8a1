//! Moving files and directories in and out of the store, streamed: memory stays bounded by a few parts
//! whatever the size, and an upload's sha256 is computed while its bytes pass.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use object_store::buffered::BufWriter;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{redact, store_error, BlobError, Result};
use crate::store::BlobStore;

/// One part of a multipart upload (S3 wants at least 5 MiB but the last).
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts in flight per upload: with `PART_SIZE`, what one upload may hold in memory.
const PARTS_IN_FLIGHT: usize = 2;
/// What one read of a local file takes.
const READ_SIZE: usize = 1024 * 1024;

/// A file or directory now in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    /// Where it is; a directory's URI ends with `/`.
    pub uri: String,
    /// Its bytes (a directory: the sum of its files').
    pub size: u64,
    /// `sha256:HEX` of a file's bytes; for a directory, of the sorted list of its files' paths and digests.
    pub digest: String,
}

fn local_error(path: &Path) -> impl Fn(std::io::Error) -> BlobError + '_ {
    move |error| BlobError::Local {
        path: path.display().to_string(),
        reason: error.to_string(),
    }
}

fn hex_digest(hasher: Sha256) -> String {
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("sha256:{hex}")
}

impl BlobStore {
    /// Uploads the file or directory at `local` to `key`.
    pub async fn upload(&self, local: &Path, key: &str) -> Result<StoredBlob> {
        let metadata = tokio::fs::metadata(local).await.map_err(local_error(local))?;
        if metadata.is_dir() {
            self.upload_dir(local, key).await
        } else {
            self.upload_file(local, key).await
        }
    }

    /// Uploads one file to `key`, streamed.
    pub async fn upload_file(&self, local: &Path, key: &str) -> Result<StoredBlob> {
        let uri = self.uri_of(key);
        let mut file = tokio::fs::File::open(local).await.map_err(local_error(local))?;
        let mut writer = BufWriter::with_capacity(self.store.clone(), self.path_of(key), PART_SIZE)
            .with_max_concurrency(PARTS_IN_FLIGHT);
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; READ_SIZE];
        let mut size = 0u64;
        let written: std::result::Result<(), BlobError> = async {
            loop {
                let read = file.read(&mut buffer).await.map_err(local_error(local))?;
                if read == 0 {
                    break;
                }
                hasher.update(&buffer[..read]);
                writer
                    .write_all(&buffer[..read])
                    .await
                    .map_err(|e| write_error(&uri, e))?;
                size += read as u64;
            }
            Ok(())
        }
        .await;
        if let Err(error) = written {
            // An unfinished multipart upload leaves no object; tell the store to drop its parts.
            let _ = writer.abort().await;
            return Err(error);
        }
        // A failed completion leaves no object either (the writer cannot be aborted after it).
        writer.shutdown().await.map_err(|e| write_error(&uri, e))?;
        Ok(StoredBlob {
            uri,
            size,
            digest: hex_digest(hasher),
        })
    }

    /// Uploads every file under directory `local` to `key/RELATIVE/PATH`.
    pub async fn upload_dir(&self, local: &Path, key: &str) -> Result<StoredBlob> {
        let mut files = Vec::new();
        collect_files(local, PathBuf::new(), &mut files)?;
        files.sort();
        let mut manifest = Sha256::new();
        let mut size = 0u64;
        for relative in &files {
            let relative_key = relative
                .components()
                .map(|part| part.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let stored = self
                .upload_file(&local.join(relative), &format!("{key}/{relative_key}"))
                .await?;
            manifest.update(format!("{relative_key}\0{}\n", stored.digest).as_bytes());
            size += stored.size;
        }
        Ok(StoredBlob {
            uri: format!("{}/", self.uri_of(key)),
            size,
            digest: hex_digest(manifest),
        })
    }

    /// Downloads the blob at `uri` to `local`: a file, or for a URI ending with `/` a directory of files.
    /// Returns the bytes written. A URI with nothing behind it is `NotFound`.
    pub async fn download(&self, uri: &str, local: &Path) -> Result<u64> {
        if let Some(other) = self.routed(uri) {
            return Box::pin(other.download(uri, local)).await;
        }
        let path = self.path_of_uri(uri)?;
        if !uri.ends_with('/') {
            return self.download_object(&path, uri, local).await;
        }
        let key = self.key_of(&path);
        let listed = self.list(&key).await?;
        if listed.is_empty() {
            return Err(BlobError::NotFound { uri: uri.to_string() });
        }
        tokio::fs::create_dir_all(local)
            .await
            .map_err(local_error(local))?;
        let mut total = 0;
        for (file_key, _) in listed {
            let relative = file_key[key.len()..].trim_start_matches('/');
            let target = relative
                .split('/')
                .fold(local.to_path_buf(), |path, part| path.join(part));
            total += self
                .download_object(&self.path_of(&file_key), &self.uri_of(&file_key), &target)
                .await?;
        }
        Ok(total)
    }

    async fn download_object(&self, path: &object_store::path::Path, uri: &str, local: &Path) -> Result<u64> {
        if let Some(filesystem) = &self.local {
            // A local store's object is a file: the kernel copies it far faster than a stream of reads.
            let source = filesystem
                .path_to_filesystem(path)
                .map_err(|e| store_error("reading", uri, e))?;
            if let Some(parent) = local.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(local_error(parent))?;
            }
            return match tokio::fs::copy(&source, local).await {
                Ok(bytes) => Ok(bytes),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    Err(BlobError::NotFound { uri: uri.to_string() })
                }
                Err(error) => Err(local_error(local)(error)),
            };
        }
        let result = self
            .store
            .get(path)
            .await
            .map_err(|e| store_error("reading", uri, e))?;
        if let Some(parent) = local.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(local_error(parent))?;
        }
        let mut file = tokio::fs::File::create(local).await.map_err(local_error(local))?;
        let mut stream = result.into_stream();
        let mut written = 0u64;
        while let Some(bytes) = stream.next().await {
            let bytes = bytes.map_err(|e| store_error("reading", uri, e))?;
            file.write_all(&bytes).await.map_err(local_error(local))?;
            written += bytes.len() as u64;
        }
        file.flush().await.map_err(local_error(local))?;
        Ok(written)
    }
}

fn write_error(uri: &str, error: std::io::Error) -> BlobError {
    BlobError::Store {
        operation: "writing",
        uri: uri.to_string(),
        reason: redact(&error.to_string()),
    }
}

/// The files under `root` (recursively), as paths relative to it.
fn collect_files(root: &Path, relative: PathBuf, files: &mut Vec<PathBuf>) -> Result<()> {
    let dir = root.join(&relative);
    for entry in std::fs::read_dir(&dir).map_err(local_error(&dir))? {
        let entry = entry.map_err(local_error(&dir))?;
        let kind = entry.file_type().map_err(local_error(&dir))?;
        let child = relative.join(entry.file_name());
        if kind.is_dir() {
            collect_files(root, child, files)?;
        } else {
            files.push(child);
        }
    }
    Ok(())
}
