//! Moving an attempt's data between its working directory and the blob store: inputs staged in before it
//! starts (blobs of the store and offloaded values downloaded, streamed), outputs read back by type after it
//! ends (blobs uploaded, streamed, under the attempt's key, with their size and digest; values too large to
//! travel inline in an event offloaded beside them).

use std::collections::BTreeSet;
use std::path::Path;

use aloft_blobstore::{BlobError, BlobStore};
use aloft_core::events::Outputs;
use aloft_core::spec::TaskSpec;
use aloft_core::{LiteralType, Value};

use super::attempt::{system_error, user_error, AttemptId, AttemptOutcome};
use super::log_shipper::tenant_store;

/// The environment variable an input is given in.
pub(crate) fn env_name(input: &str) -> String {
    format!("ALOFT_INPUT_{}", input.to_ascii_uppercase())
}

/// Writes every input into `inputs_dir` (a blob of the store: its content, downloaded; an offloaded value:
/// its text, downloaded; any other value: its text) and returns the environment variables that carry them (a
/// blob: its local path, or its URI when it lives elsewhere or `by_uri` says the task reads blobs itself; an
/// offloaded value: the path of its file, as it may be too large for a variable). A blob input that does not
/// exist is the user's error.
pub(crate) async fn stage_inputs(
    blobs: &BlobStore,
    inputs_dir: &Path,
    inputs: &Outputs,
    by_uri: bool,
) -> Result<Vec<(String, String)>, AttemptOutcome> {
    let mut env = Vec::with_capacity(inputs.len());
    for (name, value) in inputs {
        let target = inputs_dir.join(name);
        let env_value = match value {
            Value::Blob { uri, .. } if by_uri => {
                write_text(&target, uri).await?;
                uri.clone()
            }
            Value::Blob { uri, .. } if blobs.owns(uri) => match blobs.download(uri, &target).await {
                Ok(_) => target.display().to_string(),
                Err(BlobError::NotFound { .. }) => {
                    return Err(user_error(format!("input {name:?}: {uri} does not exist")))
                }
                Err(error) => return Err(system_error(format!("staging input {name:?}: {error}"))),
            },
            Value::Blob { uri, .. } => {
                write_text(&target, uri).await?;
                // A local path (a `file://` URI or a bare path) is handed over as it is, once it exists;
                // another store's URI is the task's to read.
                let local = uri
                    .strip_prefix("file://")
                    .or((!uri.contains("://")).then_some(uri.as_str()));
                match local {
                    Some(path) if !Path::new(path).exists() => {
                        return Err(user_error(format!("input {name:?}: {uri} does not exist")))
                    }
                    Some(path) => path.to_string(),
                    None => uri.clone(),
                }
            }
            Value::Offloaded { uri, digest, .. } => {
                match blobs.download_offloaded(uri, digest, &target).await {
                    Ok(_) => target.display().to_string(),
                    Err(error) => return Err(system_error(format!("staging input {name:?}: {error}"))),
                }
            }
            // A list or map gathered from items some of which were offloaded: whole again, as its text.
            collection if aloft_blobstore::holds_offloaded(collection) => {
                let resolved = blobs
                    .resolve(collection)
                    .await
                    .map_err(|error| system_error(format!("staging input {name:?}: {error}")))?;
                let text = resolved.to_text();
                write_text(&target, &text).await?;
                target.display().to_string()
            }
            other => {
                let text = other.to_text();
                write_text(&target, &text).await?;
                text
            }
        };
        env.push((env_name(name), env_value));
    }
    Ok(env)
}

async fn write_text(path: &Path, text: &str) -> Result<(), AttemptOutcome> {
    tokio::fs::write(path, text)
        .await
        .map_err(|error| system_error(format!("cannot write input {}: {error}", path.display())))
}

/// Reads the outputs `task` declares from `outputs_dir`, by type; blobs are uploaded to the store (the
/// attempt's project's own, when it has one) under `attempt`'s key, and values too large to travel inline are offloaded beside them (all but `keep_inline`,
/// which the engine reads). A missing, ill-typed or oversized output is the user's error, found before
/// anything is uploaded; a store that fails is the system's.
pub(crate) async fn collect_outputs(
    blobs: &BlobStore,
    attempt: &AttemptId,
    outputs_dir: &Path,
    task: &TaskSpec,
    keep_inline: &BTreeSet<String>,
) -> AttemptOutcome {
    let blobs = &tenant_store(blobs, attempt);
    let limits = blobs.value_limits();
    // Sizes first, so an oversized output fails the attempt with nothing of it stored.
    for (name, output_type) in &task.interface.outputs {
        if matches!(output_type, LiteralType::Blob { .. }) {
            continue;
        }
        let size = match tokio::fs::metadata(outputs_dir.join(name)).await {
            Ok(metadata) => metadata.len(),
            Err(_) => continue,
        };
        if size > limits.max {
            return user_error(format!(
                "output {name:?} is {size} bytes, more than the {} bytes a value may be \
                 (--max-value-bytes); write large data as a blob output",
                limits.max
            ));
        }
    }
    let mut outputs = Outputs::new();
    for (name, output_type) in &task.interface.outputs {
        let path = outputs_dir.join(name);
        if !path.exists() {
            if matches!(output_type, LiteralType::Optional(_)) {
                outputs.insert(name.clone(), Value::None);
                continue;
            }
            return user_error(format!(
                "output {name:?} was not written (expected a file at $ALOFT_OUTPUT_DIR/{name})"
            ));
        }
        let value = match output_type {
            LiteralType::Blob { format } => match upload_output(blobs, attempt, name, &path).await {
                Ok(stored) => Value::Blob {
                    uri: stored.uri,
                    format: format.clone(),
                    digest: Some(stored.digest),
                    size: Some(stored.size),
                },
                Err(error) => return system_error(format!("storing output {name:?}: {error}")),
            },
            other => {
                let text = match tokio::fs::read_to_string(&path).await {
                    Ok(text) => text,
                    Err(error) => return user_error(format!("output {name:?} is unreadable: {error}")),
                };
                let mut value = match other.parse_text(&text) {
                    Ok(value) => value,
                    Err(reason) => {
                        return user_error(format!("output {name:?} is not a valid {other}: {reason}"))
                    }
                };
                if let Err(outcome) = upload_nested_blobs(blobs, attempt, name, outputs_dir, &mut value).await
                {
                    return outcome;
                }
                value
            }
        };
        outputs.insert(name.clone(), value);
    }
    offload_large_outputs(blobs, attempt, task, keep_inline, outputs).await
}

/// `outputs` with the values too large to travel inline offloaded to the store, beside the attempt's blobs
/// (`OUTPUT.value`); an output the engine reads must fit inline, or the attempt fails naming it.
pub(crate) async fn offload_large_outputs(
    blobs: &BlobStore,
    attempt: &AttemptId,
    task: &TaskSpec,
    keep_inline: &BTreeSet<String>,
    mut outputs: Outputs,
) -> AttemptOutcome {
    let blobs = &tenant_store(blobs, attempt);
    for name in keep_inline {
        let size = outputs.get(name).map_or(0, aloft_blobstore::encoded_len);
        if size > aloft_blobstore::INLINE_VALUES_BUDGET {
            return user_error(format!(
                "output {name:?} takes {size} bytes, and the engine reads it (a dynamic plan), so it must \
                 travel inline: at most {} bytes",
                aloft_blobstore::INLINE_VALUES_BUDGET
            ));
        }
    }
    let key_of = |name: &str| attempt.output_key(&format!("{name}.value"));
    match blobs
        .offload_large(
            &mut outputs,
            &task.interface.outputs,
            keep_inline,
            blobs.value_limits(),
            key_of,
        )
        .await
    {
        Ok(offloaded) => {
            if !offloaded.is_empty() {
                tracing::debug!(attempt = %attempt, ?offloaded, "outputs offloaded to the blob store");
            }
            AttemptOutcome::Succeeded(outputs)
        }
        Err(error) => system_error(format!("offloading outputs: {error}")),
    }
}

async fn upload_output(
    blobs: &BlobStore,
    attempt: &AttemptId,
    name: &str,
    path: &Path,
) -> Result<aloft_blobstore::StoredBlob, BlobError> {
    blobs.upload(path, &attempt.output_key(name)).await
}

/// Blobs inside a list, map or optional output that name a file by a path relative to the outputs directory
/// (`["o0.items/0", "o0.items/1"]`, as the Python SDK writes a `list[Blob]`) are uploaded like a blob output
/// (under `OUTPUT/PATH`), so they reach any machine; other URIs are kept as they are.
async fn upload_nested_blobs(
    blobs: &BlobStore,
    attempt: &AttemptId,
    name: &str,
    outputs_dir: &Path,
    value: &mut Value,
) -> Result<(), AttemptOutcome> {
    let mut relative = Vec::new();
    collect_relative_blobs(value, &mut relative);
    if relative.is_empty() {
        return Ok(());
    }
    let mut stored = std::collections::HashMap::new();
    for path in relative {
        let file = outputs_dir.join(&path);
        if !file.starts_with(outputs_dir) || path.split('/').any(|part| part == "..") {
            return Err(user_error(format!(
                "output {name:?}: blob {path:?} is outside $ALOFT_OUTPUT_DIR"
            )));
        }
        if !file.exists() {
            return Err(user_error(format!(
                "output {name:?}: blob {path:?} was not written (expected a file at $ALOFT_OUTPUT_DIR/{path})"
            )));
        }
        let uploaded = upload_output(blobs, attempt, &format!("{name}/{path}"), &file)
            .await
            .map_err(|error| system_error(format!("storing output {name:?} ({path}): {error}")))?;
        stored.insert(path, uploaded);
    }
    replace_relative_blobs(value, &stored);
    Ok(())
}

/// A blob URI that names a file in the outputs directory: no scheme, not absolute.
fn is_relative_blob(uri: &str) -> bool {
    !uri.is_empty() && !uri.contains("://") && !uri.starts_with('/')
}

pub(crate) fn collect_relative_blobs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Blob { uri, .. } if is_relative_blob(uri) => found.push(uri.clone()),
        Value::List(items) => items.iter().for_each(|item| collect_relative_blobs(item, found)),
        Value::Map(entries) => entries
            .values()
            .for_each(|item| collect_relative_blobs(item, found)),
        _ => {}
    }
}

/// Gives every blob in `value` whose URI is a key of `located` that object's URI and size (its digest is
/// unknown: the store wrote it, not this propeller).
pub(crate) fn locate_blobs(value: &mut Value, located: &std::collections::HashMap<String, (String, u64)>) {
    match value {
        Value::Blob { uri, size, .. } => {
            if let Some((found, bytes)) = located.get(uri.as_str()) {
                *size = Some(*bytes);
                *uri = found.clone();
            }
        }
        Value::List(items) => items.iter_mut().for_each(|item| locate_blobs(item, located)),
        Value::Map(entries) => entries.values_mut().for_each(|item| locate_blobs(item, located)),
        _ => {}
    }
}

fn replace_relative_blobs(
    value: &mut Value,
    stored: &std::collections::HashMap<String, aloft_blobstore::StoredBlob>,
) {
    match value {
        Value::Blob {
            uri, digest, size, ..
        } => {
            if let Some(blob) = stored.get(uri.as_str()) {
                *digest = Some(blob.digest.clone());
                *size = Some(blob.size);
                *uri = blob.uri.clone();
            }
        }
        Value::List(items) => items
            .iter_mut()
            .for_each(|item| replace_relative_blobs(item, stored)),
        Value::Map(entries) => entries
            .values_mut()
            .for_each(|item| replace_relative_blobs(item, stored)),
        _ => {}
    }
}
