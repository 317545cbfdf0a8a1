//! Opening a store from its URL: the schemes Aloft knows, their options (as query parameters) and the
//! errors that name what is wrong.

use std::sync::Arc;

use object_store::path::Path as StorePath;
use object_store::ObjectStore;

use crate::error::{redact, BlobError, Result, SETTING};
use crate::store::BlobStore;

impl BlobStore {
    /// The store a URL names. Credentials come from the standard environment of each cloud (for S3
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, instance metadata, ...), never from the URL.
    pub fn from_url(url: &str) -> Result<BlobStore> {
        open(url)
    }

    /// A local directory as the store (created when missing): the embedded default.
    pub fn local(dir: &std::path::Path) -> Result<BlobStore> {
        open_local(dir)
    }
}

fn config_error(reason: impl Into<String>) -> BlobError {
    BlobError::Config {
        setting: SETTING.to_string(),
        reason: reason.into(),
    }
}

/// A store from `url`: `file:///abs/dir` (or a plain path), `s3://bucket[/prefix][?endpoint=URL&region=R&
/// path_style=true|false]`, `gs://bucket[/prefix][?service_account=KEY.json]`,
/// `az://container[/prefix][?account=NAME&emulator=true]`,
/// `memory://` (one process only: tests).
pub(crate) fn open(url: &str) -> Result<BlobStore> {
    let url = url.trim();
    if url.is_empty() {
        return Err(config_error(
            "is empty; give a URL such as file:///var/lib/aloft/blobs or s3://bucket/prefix",
        ));
    }
    if url.starts_with('/') || url.starts_with('.') || !url.contains("://") {
        return open_local(std::path::Path::new(url));
    }
    let parsed = url::Url::parse(url).map_err(|e| config_error(format!("{url:?} is not a URL: {e}")))?;
    let options: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let scheme = parsed.scheme();
    if scheme == "file" {
        refuse_options(scheme, &options, &[])?;
        return open_local(std::path::Path::new(parsed.path()));
    }
    if scheme == "memory" {
        refuse_options(scheme, &options, &[])?;
        return Ok(BlobStore {
            store: Arc::new(object_store::memory::InMemory::new()),
            root: "memory://blobs".to_string(),
            prefix: StorePath::default(),
            local: None,
            signer: None,
            value_limits: crate::limits::ValueLimits::default(),
            tenants: Default::default(),
            routes: Default::default(),
        });
    }
    let bucket = parsed
        .host_str()
        .filter(|host| !host.is_empty())
        .ok_or_else(|| config_error(format!("{url:?} names no bucket ({scheme}://BUCKET/PREFIX)")))?
        .to_string();
    let prefix = StorePath::parse(parsed.path().trim_matches('/'))
        .map_err(|e| config_error(format!("the prefix of {url:?} is not a valid object path: {e}")))?;
    let (store, signer): (Arc<dyn ObjectStore>, Arc<dyn object_store::signer::Signer>) =
        match scheme {
            "s3" | "s3a" => {
                refuse_options(scheme, &options, &["endpoint", "region", "path_style"])?;
                let mut builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(&bucket)
                    .with_retry(retries());
                for (name, value) in &options {
                    builder = match name.as_str() {
                        "endpoint" => {
                            let endpoint = url::Url::parse(value)
                                .map_err(|e| config_error(format!("endpoint {value:?} is not a URL: {e}")))?;
                            builder
                                .with_endpoint(value.trim_end_matches('/'))
                                .with_allow_http(endpoint.scheme() == "http")
                                // An S3-compatible server at an address usually wants path-style requests.
                                .with_virtual_hosted_style_request(false)
                        }
                        "region" => builder.with_region(value),
                        "path_style" => builder.with_virtual_hosted_style_request(!parse_bool(name, value)?),
                        _ => builder,
                    };
                }
                let built =
                    Arc::new(builder.build().map_err(|e| {
                        config_error(format!("S3 store {bucket:?}: {}", redact(&e.to_string())))
                    })?);
                (built.clone(), built)
            }
            "gs" | "gcs" => {
                refuse_options(scheme, &options, &["service_account"])?;
                let mut builder = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(&bucket)
                    .with_retry(retries());
                for (name, value) in &options {
                    if name == "service_account" {
                        builder = builder.with_service_account_path(value);
                    }
                }
                let built = Arc::new(builder.build().map_err(|e| {
                    config_error(format!("GCS store {bucket:?}: {}", redact(&e.to_string())))
                })?);
                (built.clone(), built)
            }
            "az" | "azure" | "abfs" => {
                refuse_options(scheme, &options, &["account", "emulator"])?;
                let mut builder = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_container_name(&bucket)
                    .with_retry(retries());
                for (name, value) in &options {
                    builder = match name.as_str() {
                        "account" => builder.with_account(value),
                        "emulator" => builder.with_use_emulator(parse_bool(name, value)?),
                        _ => builder,
                    };
                }
                let built = Arc::new(builder.build().map_err(|e| {
                    config_error(format!("Azure store {bucket:?}: {}", redact(&e.to_string())))
                })?);
                (built.clone(), built)
            }
            other => {
                return Err(config_error(format!(
                    "unknown scheme {other:?} in {url:?}; use file, s3, gs, az or memory"
                )))
            }
        };
    let root = if prefix.as_ref().is_empty() {
        format!("{scheme}://{bucket}")
    } else {
        format!("{scheme}://{bucket}/{prefix}")
    };
    Ok(BlobStore {
        store,
        root,
        prefix,
        local: None,
        signer: Some(signer),
        value_limits: crate::limits::ValueLimits::default(),
        tenants: Default::default(),
        routes: Default::default(),
    })
}

/// A local directory (made absolute, created when missing) as the store.
pub(crate) fn open_local(dir: &std::path::Path) -> Result<BlobStore> {
    let dir = std::path::absolute(dir).map_err(|e| config_error(format!("{}: {e}", dir.display())))?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| config_error(format!("cannot create {}: {e}", dir.display())))?;
    let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
        .map_err(|e| config_error(format!("{}: {e}", dir.display())))?;
    let root = format!("file://{}", dir.display().to_string().trim_end_matches('/'));
    let store = Arc::new(store);
    Ok(BlobStore {
        store: store.clone(),
        root,
        prefix: StorePath::default(),
        local: Some(store),
        signer: None,
        value_limits: crate::limits::ValueLimits::default(),
        tenants: Default::default(),
        routes: Default::default(),
    })
}

/// Retries of a failed request: enough for a store's transient errors, few enough that an unreachable store
/// stops a service at start within seconds (the crate's default retries for three minutes).
fn retries() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 4,
        retry_timeout: std::time::Duration::from_secs(30),
        ..Default::default()
    }
}

fn refuse_options(scheme: &str, options: &[(String, String)], known: &[&str]) -> Result<()> {
    match options.iter().find(|(name, _)| !known.contains(&name.as_str())) {
        None => Ok(()),
        Some((name, _)) if known.is_empty() => Err(config_error(format!(
            "a {scheme} store takes no option; {name:?} is not one"
        ))),
        Some((name, _)) => Err(config_error(format!(
            "unknown option {name:?} for a {scheme} store; known: {}",
            known.join(", ")
        ))),
    }
}

fn parse_bool(name: &str, value: &str) -> Result<bool> {
    match value {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(config_error(format!(
            "option {name}={other:?} is not true or false"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_schemes_and_options_are_refused_naming_them() {
        let error = open("ftp://host/x").unwrap_err().to_string();
        assert!(
            error.contains("unknown scheme \"ftp\"") && error.contains(SETTING),
            "{error}"
        );
        let error = open("s3://bucket/p?colour=blue").unwrap_err().to_string();
        assert!(error.contains("unknown option \"colour\""), "{error}");
        let error = open("s3:///p").unwrap_err().to_string();
        assert!(error.contains("names no bucket"), "{error}");
        let error = open("s3://bucket?path_style=maybe").unwrap_err().to_string();
        assert!(error.contains("path_style=\"maybe\""), "{error}");
    }

    #[test]
    fn an_s3_root_keeps_bucket_and_prefix_but_not_options() {
        let store = open("s3://bucket/raw/data/?endpoint=http://127.0.0.1:1&region=us-east-1").unwrap();
        assert_eq!(store.root(), "s3://bucket/raw/data");
        assert!(store.owns("s3://bucket/raw/data/p/d/e"));
        assert!(!store.owns("s3://bucket/raw/other"));
        assert!(!store.owns("s3://bucket/raw/data"));
    }

    #[test]
    fn signatures_are_redacted() {
        let text = "GET http://h/b/k?X-Amz-Credential=AKIA%2Fx&X-Amz-Signature=abc123 failed";
        let redacted = redact(text);
        assert!(
            !redacted.contains("abc123") && !redacted.contains("AKIA"),
            "{redacted}"
        );
    }
}
