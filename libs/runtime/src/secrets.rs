//! Resolving secret references (`env:NAME`, `file:PATH`) from the process environment and the files
//! named in config. Secrets are read when needed and never logged or stored; errors name the reference,
//! never the value.

use aloft_core::notify::{FieldError, SecretRef};

/// Why a secret could not be read; the message names the reference, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    Reference(#[from] FieldError),
    #[error("secret {reference}: the environment variable {name} is empty")]
    EmptyEnv { reference: String, name: String },
    #[error("secret {reference}: the environment variable {name} is not set")]
    UnsetEnv { reference: String, name: String },
    #[error("secret {reference}: the file {path} is empty")]
    EmptyFile { reference: String, path: String },
    #[error("secret {reference}: cannot read {path}: {reason}")]
    Unreadable {
        reference: String,
        path: String,
        reason: String,
    },
}

/// Reads the secret behind `reference`. A file's trailing newline is dropped (as written by
/// `echo`, or mounted from a Kubernetes Secret).
pub fn resolve(reference: &str) -> Result<String, SecretError> {
    let reference_text = reference.to_string();
    match SecretRef::parse(reference)? {
        SecretRef::Env(name) => match std::env::var(&name) {
            Ok(value) if !value.is_empty() => Ok(value),
            Ok(_) => Err(SecretError::EmptyEnv {
                reference: reference_text,
                name,
            }),
            Err(_) => Err(SecretError::UnsetEnv {
                reference: reference_text,
                name,
            }),
        },
        SecretRef::File(path) => match std::fs::read_to_string(&path) {
            Ok(value) => {
                let value = value.trim_end_matches(['\n', '\r']).to_string();
                if value.is_empty() {
                    Err(SecretError::EmptyFile {
                        reference: reference_text,
                        path,
                    })
                } else {
                    Ok(value)
                }
            }
            Err(error) => Err(SecretError::Unreadable {
                reference: reference_text,
                path,
                reason: error.to_string(),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_missing_secrets() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("hook");
        std::fs::write(&path, "s3cret\n").expect("write secret");
        assert_eq!(
            resolve(&format!("file:{}", path.display())),
            Ok("s3cret".to_string())
        );
        let missing = resolve("file:/nonexistent/aloft-secret").unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("cannot read /nonexistent/aloft-secret"),
            "{missing}"
        );
        let unset = resolve("env:ALOFT_TEST_SURELY_UNSET_SECRET").unwrap_err();
        assert!(unset.to_string().contains("is not set"), "{unset}");
        assert!(resolve("hunter2")
            .unwrap_err()
            .to_string()
            .contains("not a secret reference"));
    }
}
