//! Resolving secret references (`env:NAME`, `file:PATH`) from the process environment and the files
//! named in config. Secrets are read when needed and never logged or stored; errors name the reference,
//! never the value.

use aloft_core::notify::SecretRef;

/// Reads the secret behind `reference`. A file's trailing newline is dropped (as written by
/// `echo`, or mounted from a Kubernetes Secret).
pub fn resolve(reference: &str) -> Result<String, String> {
    match SecretRef::parse(reference)? {
        SecretRef::Env(name) => match std::env::var(&name) {
            Ok(value) if !value.is_empty() => Ok(value),
            Ok(_) => Err(format!(
                "secret {reference}: the environment variable {name} is empty"
            )),
            Err(_) => Err(format!(
                "secret {reference}: the environment variable {name} is not set"
            )),
        },
        SecretRef::File(path) => match std::fs::read_to_string(&path) {
            Ok(value) => {
                let value = value.trim_end_matches(['\n', '\r']).to_string();
                if value.is_empty() {
                    Err(format!("secret {reference}: the file {path} is empty"))
                } else {
                    Ok(value)
                }
            }
            Err(error) => Err(format!("secret {reference}: cannot read {path}: {error}")),
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
            missing.contains("cannot read /nonexistent/aloft-secret"),
            "{missing}"
        );
        let unset = resolve("env:ALOFT_TEST_SURELY_UNSET_SECRET").unwrap_err();
        assert!(unset.contains("is not set"), "{unset}");
        assert!(resolve("hunter2").unwrap_err().contains("not a secret reference"));
    }
}
