//! `BlobStore`: one object store and the root every key lives under; keys, URIs and the small-object
//! operations (put, get, list, delete).

use std::sync::Arc;

use object_store::path::Path as StorePath;
use object_store::ObjectStore;

use crate::error::{store_error, BlobError, Result, SETTING};

/// One configured blob store: an object store and the root every key lives under.
#[derive(Clone)]
pub struct BlobStore {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// The URI of the root, without a trailing slash and without query parameters (`s3://bucket/prefix`).
    pub(crate) root: String,
    /// The root's path inside `store` (empty for a local directory: the store is rooted there).
    pub(crate) prefix: StorePath,
    /// The same store as a local filesystem, when it is one: downloads then copy files directly.
    pub(crate) local: Option<Arc<object_store::local::LocalFileSystem>>,
    /// The same store as a URL signer, when it can sign (S3, GCS, Azure with a key).
    pub(crate) signer: Option<Arc<dyn object_store::signer::Signer>>,
    /// When a value is offloaded here rather than carried inline in an event, and how large one may be.
    pub(crate) value_limits: crate::limits::ValueLimits,
    /// Stores that override this one for a project (`None`: every domain) or one of its domains: where
    /// their raw data is written ([`BlobStore::for_tenant`]).
    pub(crate) tenants: Arc<Vec<TenantStore>>,
    /// Every store of the deployment (the default first), without routes of their own: a URI in any of
    /// them is read through any handle.
    pub(crate) routes: Arc<Vec<BlobStore>>,
}

/// A project's (or one of its domains') own store for raw data.
#[derive(Clone, Debug)]
pub(crate) struct TenantStore {
    project: String,
    domain: Option<String>,
    store: BlobStore,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStore").field("root", &self.root).finish()
    }
}

impl BlobStore {
    /// This store, offloading values by `limits`.
    pub fn with_value_limits(mut self, limits: crate::limits::ValueLimits) -> BlobStore {
        self.value_limits = limits;
        self
    }

    /// When a value is offloaded here, and how large one may be.
    pub fn value_limits(&self) -> crate::limits::ValueLimits {
        self.value_limits
    }

    /// This store as the deployment's default, with `tenants` overriding it for their raw data: each is
    /// `(project, domain, store)`, a `None` domain meaning every domain of the project.
    pub fn with_tenant_stores(self, tenants: Vec<(String, Option<String>, BlobStore)>) -> BlobStore {
        let limits = self.value_limits;
        let plain = |store: BlobStore| BlobStore {
            tenants: Arc::new(Vec::new()),
            routes: Arc::new(Vec::new()),
            value_limits: limits,
            ..store
        };
        let tenants: Vec<TenantStore> = tenants
            .into_iter()
            .map(|(project, domain, store)| TenantStore {
                project,
                domain,
                store: plain(store),
            })
            .collect();
        let routes: Vec<BlobStore> = std::iter::once(plain(self.clone()))
            .chain(tenants.iter().map(|tenant| tenant.store.clone()))
            .collect();
        BlobStore {
            tenants: Arc::new(tenants),
            routes: Arc::new(routes),
            ..self
        }
    }

    /// The store raw data of `project`/`domain` is written to: its own when the deployment gives it one,
    /// else the default. URIs of every store of the deployment stay readable through it.
    pub fn for_tenant(&self, project: &str, domain: &str) -> BlobStore {
        let own = self
            .tenants
            .iter()
            .find(|t| t.project == project && t.domain.as_deref() == Some(domain))
            .or_else(|| {
                self.tenants
                    .iter()
                    .find(|t| t.project == project && t.domain.is_none())
            });
        let Some(tenant) = own else {
            return self.default_store();
        };
        let chosen = tenant.store.clone();
        BlobStore {
            tenants: self.tenants.clone(),
            routes: self.routes.clone(),
            value_limits: self.value_limits,
            ..chosen
        }
    }

    /// The deployment's default store (with the same routes).
    pub fn default_store(&self) -> BlobStore {
        match self.routes.first() {
            Some(default) => BlobStore {
                tenants: self.tenants.clone(),
                routes: self.routes.clone(),
                value_limits: self.value_limits,
                ..default.clone()
            },
            None => self.clone(),
        }
    }

    /// The roots of every store of the deployment (the default first).
    pub fn roots(&self) -> Vec<String> {
        if self.routes.is_empty() {
            vec![self.root.clone()]
        } else {
            self.routes.iter().map(|store| store.root.clone()).collect()
        }
    }

    /// Another store of the deployment that `uri` lies in, when this one does not hold it.
    pub(crate) fn routed(&self, uri: &str) -> Option<&BlobStore> {
        if self.owns_directly(uri) {
            return None;
        }
        self.routes.iter().find(|store| store.owns_directly(uri))
    }

    /// The root every key lives under, as a URI.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Writes, reads back and deletes a small object, so a store that cannot be reached or written stops a
    /// service at start with the setting named rather than failing its first task.
    pub async fn check(&self) -> Result<()> {
        let key = format!(".aloft-probe-{}", std::process::id());
        let uri = self
            .put(&key, bytes::Bytes::from_static(b"probe"))
            .await
            .map_err(|e| BlobError::Config {
                setting: SETTING.to_string(),
                reason: format!("cannot write to {}: {e}", self.root),
            })?;
        self.get(&uri).await.map_err(|e| BlobError::Config {
            setting: SETTING.to_string(),
            reason: format!("cannot read back from {}: {e}", self.root),
        })?;
        let _ = self.store.delete(&self.path_of(&key)).await;
        Ok(())
    }

    /// The URI of `key` (slash-separated, relative to the root).
    pub fn uri_of(&self, key: &str) -> String {
        let path = self.path_of(key);
        let relative = path
            .as_ref()
            .strip_prefix(self.prefix.as_ref())
            .unwrap_or(path.as_ref())
            .trim_start_matches('/');
        format!("{}/{}", self.root, relative)
    }

    /// Whether `uri` lies in this store, or in another store of the deployment (read through this one).
    pub fn owns(&self, uri: &str) -> bool {
        self.owns_directly(uri) || self.routed(uri).is_some()
    }

    fn owns_directly(&self, uri: &str) -> bool {
        uri.strip_prefix(&self.root)
            .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
    }

    /// Stores `bytes` at `key` (replacing what was there) and returns its URI.
    pub async fn put(&self, key: &str, bytes: bytes::Bytes) -> Result<String> {
        let path = self.path_of(key);
        let uri = self.uri_of(key);
        self.store
            .put(&path, bytes.into())
            .await
            .map_err(|e| store_error("writing", &uri, e))?;
        Ok(uri)
    }

    /// The whole content of the object at `uri` (for small objects: logs' chunks, offloaded values).
    pub async fn get(&self, uri: &str) -> Result<bytes::Bytes> {
        let result = self.open(uri).await?;
        result.bytes().await.map_err(|e| store_error("reading", uri, e))
    }

    /// The object at `uri`, opened for reading.
    async fn open(&self, uri: &str) -> Result<object_store::GetResult> {
        if let Some(other) = self.routed(uri) {
            return Box::pin(other.open(uri)).await;
        }
        let path = self.path_of_uri(uri)?;
        self.store
            .get(&path)
            .await
            .map_err(|e| store_error("reading", uri, e))
    }

    /// The content of the object at `uri` as a stream of byte chunks (for downloads of any size).
    pub async fn get_stream(
        &self,
        uri: &str,
    ) -> Result<futures::stream::BoxStream<'static, Result<bytes::Bytes>>> {
        use futures::StreamExt;
        let result = self.open(uri).await?;
        let uri = uri.to_string();
        Ok(result
            .into_stream()
            .map(move |chunk| chunk.map_err(|e| store_error("reading", &uri, e)))
            .boxed())
    }

    /// A URL that reads the object at `uri` without credentials until `expires_in` has passed, when the store
    /// can sign one (`None`: a local directory or memory).
    pub async fn signed_url(&self, uri: &str, expires_in: std::time::Duration) -> Result<Option<String>> {
        if let Some(other) = self.routed(uri) {
            return Box::pin(other.signed_url(uri, expires_in)).await;
        }
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let path = self.path_of_uri(uri)?;
        // Presigning does not ask the store whether the object exists: ask first, so a wrong URI is NotFound.
        self.store
            .head(&path)
            .await
            .map_err(|e| store_error("reading", uri, e))?;
        let url = signer
            .signed_url(http::Method::GET, &path, expires_in)
            .await
            .map_err(|e| store_error("signing a URL for", uri, e))?;
        Ok(Some(url.to_string()))
    }

    /// The files of the directory blob at `uri` (ending with `/`), as paths relative to it.
    pub async fn list_uri(&self, uri: &str) -> Result<Vec<String>> {
        if let Some(other) = self.routed(uri) {
            return Box::pin(other.list_uri(uri)).await;
        }
        let key = self.key_of(&self.path_of_uri(uri)?);
        Ok(self
            .list(&key)
            .await?
            .into_iter()
            .map(|(file, _)| file[key.len()..].trim_start_matches('/').to_string())
            .collect())
    }

    /// The keys under `key_prefix` (a folder: `a/b` lists `a/b/...`) with their sizes, sorted by key.
    pub async fn list(&self, key_prefix: &str) -> Result<Vec<(String, u64)>> {
        use futures::TryStreamExt;
        let path = self.path_of(key_prefix);
        let uri = self.uri_of(key_prefix);
        let mut found: Vec<(String, u64)> = self
            .store
            .list(Some(&path))
            .map_ok(|meta| (self.key_of(&meta.location), meta.size))
            .try_collect()
            .await
            .map_err(|e| store_error("listing", &uri, e))?;
        found.sort();
        Ok(found)
    }

    /// Deletes the object at `key` (nothing there is no error).
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&self.path_of(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error("deleting", &self.uri_of(key), e)),
        }
    }

    /// Deletes every object under `key_prefix`; returns how many.
    pub async fn delete_prefix(&self, key_prefix: &str) -> Result<usize> {
        let listed = self.list(key_prefix).await?;
        for (key, _) in &listed {
            let uri = self.uri_of(key);
            match self.store.delete(&self.path_of(key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error("deleting", &uri, e)),
            }
        }
        Ok(listed.len())
    }

    pub(crate) fn path_of(&self, key: &str) -> StorePath {
        let mut parts: Vec<object_store::path::PathPart<'static>> = self
            .prefix
            .parts()
            .map(|part| part.as_ref().to_string().into())
            .collect();
        parts.extend(
            key.split('/')
                .filter(|part| !part.is_empty())
                .map(|part| object_store::path::PathPart::from(part.to_string())),
        );
        StorePath::from_iter(parts)
    }

    /// The key of a path of this store (relative to the root).
    pub(crate) fn key_of(&self, path: &StorePath) -> String {
        let prefix_parts = self.prefix.parts().count();
        path.parts()
            .skip(prefix_parts)
            .map(|part| part.as_ref().to_string())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The store path of a URI of this store, refusing any other.
    pub(crate) fn path_of_uri(&self, uri: &str) -> Result<StorePath> {
        let relative = uri
            .strip_prefix(&self.root)
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|rest| !rest.is_empty())
            .ok_or_else(|| BlobError::Foreign {
                uri: uri.to_string(),
                root: self.root.clone(),
            })?;
        let relative = StorePath::parse(relative.trim_end_matches('/')).map_err(|e| BlobError::Foreign {
            uri: uri.to_string(),
            root: format!("{} ({e})", self.root),
        })?;
        Ok(StorePath::from_iter(self.prefix.parts().chain(relative.parts())))
    }
}
