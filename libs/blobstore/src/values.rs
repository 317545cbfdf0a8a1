//! Values too large to travel inline in an event. Such a value is written to the store as its text (what a
//! task reads: scalars bare, collections as JSON) and travels as a typed reference, `Value::Offloaded`
//! `{uri, size, digest, type}`, which a reader that needs the value itself resolves here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use aloft_core::{LiteralType, Value};
use futures::future::BoxFuture;
use futures::FutureExt;
use sha2::{Digest, Sha256};

use crate::error::{BlobError, Result};
use crate::limits::{ValueLimits, INLINE_VALUES_BUDGET, NEVER_OFFLOADED_BELOW};
use crate::store::BlobStore;

/// The bytes `value` takes in an event (its JSON encoding), counted without building it.
pub fn encoded_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        // A value that does not encode cannot travel inline either.
        Err(_) => usize::MAX,
    }
}

/// `sha256:HEX` of `bytes`, as blob digests are written.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("sha256:{hex}")
}

impl BlobStore {
    /// Writes `value`'s text to `key` and returns the reference that travels in its place.
    pub async fn offload(&self, key: &str, value: &Value, value_type: &LiteralType) -> Result<Value> {
        let text = value.to_text();
        let digest = sha256_digest(text.as_bytes());
        let size = text.len() as u64;
        let uri = self.put(key, bytes::Bytes::from(text)).await?;
        Ok(Value::Offloaded {
            uri,
            size,
            digest,
            value_type: value_type.clone(),
        })
    }

    /// Offloads, under `key_of(name)`, each of `values` whose encoding is over the inline limit, then the
    /// largest left while together they take more than [`INLINE_VALUES_BUDGET`]; `keep_inline` names values
    /// the engine reads, which stay (and do not count against the budget). `types` gives each value's declared type (recorded in its reference).
    /// Returns the names offloaded.
    pub async fn offload_large(
        &self,
        values: &mut BTreeMap<String, Value>,
        types: &BTreeMap<String, LiteralType>,
        keep_inline: &BTreeSet<String>,
        limits: ValueLimits,
        key_of: impl Fn(&str) -> String,
    ) -> Result<Vec<String>> {
        let mut sizes: Vec<(usize, String)> = values
            .iter()
            .filter(|(name, value)| {
                !keep_inline.contains(*name)
                    && types.contains_key(*name)
                    && !matches!(value, Value::Offloaded { .. } | Value::None)
            })
            .map(|(name, value)| (encoded_len(value), name.clone()))
            .collect();
        // Largest first, so the budget is met by offloading as few values as can be. Values that must stay
        // inline do not count: offloading others cannot make room for them.
        sizes.sort_by(|a, b| b.cmp(a));
        let mut inline_total: usize = sizes.iter().map(|(size, _)| size).sum();
        let mut offloaded = Vec::new();
        for (size, name) in sizes {
            if (size <= limits.inline && inline_total <= INLINE_VALUES_BUDGET) || size < NEVER_OFFLOADED_BELOW
            {
                break;
            }
            let (Some(value), Some(value_type)) = (values.get(&name), types.get(&name)) else {
                continue;
            };
            let reference = self.offload(&key_of(&name), value, value_type).await?;
            inline_total = inline_total - size + encoded_len(&reference);
            values.insert(name.clone(), reference);
            offloaded.push(name);
        }
        Ok(offloaded)
    }

    /// Downloads the offloaded value `uri` (whose reference says `digest`) to the file `local`, streamed, and
    /// checks the file against the digest: a changed object is refused as damaged and its file removed, so a
    /// task never reads it. Returns the bytes written.
    pub async fn download_offloaded(&self, uri: &str, digest: &str, local: &Path) -> Result<u64> {
        let size = self.download(uri, local).await?;
        let file = local.to_path_buf();
        let found = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            let mut hasher = Sha256::new();
            std::io::copy(&mut std::fs::File::open(&file)?, &mut hasher)?;
            let hex: String = hasher
                .finalize()
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            Ok(format!("sha256:{hex}"))
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|hashed| hashed)
        .map_err(|e| BlobError::Corrupt {
            uri: uri.to_string(),
            reason: format!("cannot read it back from {}: {e}", local.display()),
        })?;
        if found != digest {
            let _ = tokio::fs::remove_file(local).await;
            return Err(BlobError::Corrupt {
                uri: uri.to_string(),
                reason: format!("its content is {found}, the reference says {digest}"),
            });
        }
        Ok(size)
    }

    /// `value` with every offloaded value in it fetched, checked against its digest and parsed by its type.
    pub fn resolve<'a>(&'a self, value: &'a Value) -> BoxFuture<'a, Result<Value>> {
        async move {
            match value {
                Value::Offloaded {
                    uri,
                    digest,
                    value_type,
                    ..
                } => {
                    let bytes = self.get(uri).await?;
                    let corrupt = |reason: String| BlobError::Corrupt {
                        uri: uri.clone(),
                        reason,
                    };
                    let found = sha256_digest(&bytes);
                    if &found != digest {
                        return Err(corrupt(format!(
                            "its content is {found}, the reference says {digest}"
                        )));
                    }
                    let text = std::str::from_utf8(&bytes).map_err(|e| corrupt(e.to_string()))?;
                    value_type
                        .parse_text(text)
                        .map_err(|e| corrupt(format!("not a {value_type}: {e}")))
                }
                Value::List(items) => {
                    let mut resolved = Vec::with_capacity(items.len());
                    for item in items {
                        resolved.push(self.resolve(item).await?);
                    }
                    Ok(Value::List(resolved))
                }
                Value::Map(entries) => {
                    let mut resolved = BTreeMap::new();
                    for (key, item) in entries {
                        resolved.insert(key.clone(), self.resolve(item).await?);
                    }
                    Ok(Value::Map(resolved))
                }
                other => Ok(other.clone()),
            }
        }
        .boxed()
    }
}

/// Whether `value` holds an offloaded value anywhere.
pub fn holds_offloaded(value: &Value) -> bool {
    !offloaded_uris(value).is_empty()
}

/// The URIs of the offloaded values inside `value`.
pub fn offloaded_uris(value: &Value) -> Vec<&str> {
    fn walk<'a>(value: &'a Value, into: &mut Vec<&'a str>) {
        match value {
            Value::Offloaded { uri, .. } => into.push(uri),
            Value::List(items) => items.iter().for_each(|item| walk(item, into)),
            Value::Map(entries) => entries.values().for_each(|item| walk(item, into)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(value, &mut found);
    found
}
