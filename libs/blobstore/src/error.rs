//! What can go wrong with a blob store, in errors that name the setting, URI or path concerned and never a
//! credential.

/// The setting that names the store, in errors about it.
pub const SETTING: &str = "--blob-store (ALOFT_BLOB_STORE)";

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The store's URL cannot be used; says which setting and why.
    #[error("{setting}: {reason}")]
    Config { setting: String, reason: String },
    #[error("{uri} does not exist")]
    NotFound { uri: String },
    /// A URI this store cannot read (another scheme, bucket or prefix).
    #[error("{uri} is not in the blob store {root}")]
    Foreign { uri: String, root: String },
    #[error("blob store: {operation} {uri}: {reason}")]
    Store {
        operation: &'static str,
        uri: String,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Local { path: String, reason: String },
    /// An offloaded value whose stored text is not what its reference says.
    #[error("the offloaded value at {uri} is damaged: {reason}")]
    Corrupt { uri: String, reason: String },
}

pub type Result<T> = std::result::Result<T, BlobError>;

pub(crate) fn store_error(operation: &'static str, uri: &str, error: object_store::Error) -> BlobError {
    match error {
        object_store::Error::NotFound { .. } => BlobError::NotFound { uri: uri.to_string() },
        other => BlobError::Store {
            operation,
            uri: uri.to_string(),
            reason: redact(&other.to_string()),
        },
    }
}

/// `text` with anything that looks like a credential in a URL's query or user info replaced: object
/// stores' errors quote request URLs, and presigned ones carry signatures.
pub(crate) fn redact(text: &str) -> String {
    const SECRET_PARAMS: [&str; 5] = [
        "X-Amz-Signature=",
        "X-Amz-Credential=",
        "X-Amz-Security-Token=",
        "sig=",
        "Signature=",
    ];
    let mut out = text.to_string();
    for param in SECRET_PARAMS {
        let mut from = 0;
        while let Some(found) = out[from..].find(param) {
            let start = from + found + param.len();
            let end = out[start..]
                .find(|c: char| c == '&' || c.is_whitespace() || c == '"')
                .map_or(out.len(), |end| start + end);
            out.replace_range(start..end, "REDACTED");
            from = start + "REDACTED".len();
        }
    }
    out
}
