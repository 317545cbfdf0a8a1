//! Reading back what a succeeded pod wrote under its output prefix (by its task or its output helper), by
//! declared type: blob outputs as objects or folders, values as text, lists of blobs named by paths in the
//! output directory as the objects uploaded beside them; values too large to travel inline are offloaded.

use aloft_blobstore::{BlobError, BlobStore};
use aloft_core::events::Outputs;
use aloft_core::{LiteralType, Value};

use crate::executor::attempt::{system_error, user_error, AttemptOutcome, AttemptRequest};
use crate::executor::log_shipper::tenant_store;
use crate::executor::staging::offload_large_outputs;

/// The outputs the pod wrote under its output prefix, by declared type.
pub(super) async fn read_outputs(
    all_blobs: &BlobStore,
    prefix: &str,
    request: &AttemptRequest,
) -> AttemptOutcome {
    let blobs = tenant_store(all_blobs, &request.id());
    // Everything the pod wrote, once: a blob output is an object `NAME` or a folder `NAME/...`.
    let written = match blobs.list(prefix).await {
        Ok(written) => written,
        Err(error) => return system_error(format!("listing the pod's outputs: {error}")),
    };
    let mut outputs = Outputs::new();
    for (name, output_type) in &request.task.interface.outputs {
        let key = format!("{prefix}/{name}");
        let uri = blobs.uri_of(&key);
        if let LiteralType::Blob { format } = output_type {
            let folder = format!("{key}/");
            let parts: Vec<u64> = written
                .iter()
                .filter(|(found, _)| *found == key || found.starts_with(&folder))
                .map(|(_, size)| *size)
                .collect();
            if !parts.is_empty() {
                let is_folder = written.iter().any(|(found, _)| found.starts_with(&folder));
                outputs.insert(
                    name.clone(),
                    Value::Blob {
                        uri: if is_folder { format!("{uri}/") } else { uri },
                        format: format.clone(),
                        digest: None,
                        size: Some(parts.iter().sum()),
                    },
                );
                continue;
            }
        } else {
            let size = written
                .iter()
                .find(|(found, _)| *found == key)
                .map_or(0, |(_, size)| *size);
            let max = blobs.value_limits().max;
            if size > max {
                return user_error(format!(
                    "output {name:?} is {size} bytes, more than the {max} bytes a value may be \
                     (--max-value-bytes); write large data as a blob output"
                ));
            }
            match blobs.get(&uri).await {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    match output_type.parse_text(&text) {
                        Ok(mut value) => {
                            if let Err(outcome) =
                                locate_relative_blobs(&blobs, prefix, &written, name, &mut value)
                            {
                                return outcome;
                            }
                            outputs.insert(name.clone(), value);
                            continue;
                        }
                        Err(reason) => {
                            return user_error(format!(
                                "output {name:?} is not a valid {output_type}: {reason}"
                            ))
                        }
                    }
                }
                Err(BlobError::NotFound { .. }) => {}
                Err(error) => return system_error(format!("reading output {name:?}: {error}")),
            }
        }
        if matches!(output_type, LiteralType::Optional(_)) {
            outputs.insert(name.clone(), Value::None);
            continue;
        }
        return user_error(format!(
            "output {name:?} was not written (expected an object at $ALOFT_OUTPUT_URI/{name})"
        ));
    }
    offload_large_outputs(
        all_blobs,
        &request.id(),
        &request.task,
        &request.keep_inline,
        outputs,
    )
    .await
}

/// Blobs inside a list, map or optional output that name a file by a path relative to the outputs directory
/// (`["o0.items/0"]`, as the Python SDK writes a `list[Blob]`): the pod's output helper uploaded that
/// directory beside the outputs, so each becomes the URI of its object there, or the user's error if it is not.
fn locate_relative_blobs(
    blobs: &BlobStore,
    prefix: &str,
    written: &[(String, u64)],
    name: &str,
    value: &mut Value,
) -> Result<(), AttemptOutcome> {
    let mut relative = Vec::new();
    crate::executor::staging::collect_relative_blobs(value, &mut relative);
    let mut located = std::collections::HashMap::new();
    for path in relative {
        let key = format!("{prefix}/{path}");
        let Some((_, size)) = written.iter().find(|(found, _)| *found == key) else {
            return Err(user_error(format!(
                "output {name:?}: blob {path:?} was not written (expected $ALOFT_OUTPUT_DIR/{path})"
            )));
        };
        located.insert(path, (blobs.uri_of(&key), *size));
    }
    crate::executor::staging::locate_blobs(value, &located);
    Ok(())
}
