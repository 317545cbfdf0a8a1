//! Where a propeller finds the secrets tasks ask for: files named after the secret in `--secrets-dir`
//! (a mounted Kubernetes Secret, a Vault agent's output), then `ALOFT_SECRET_<NAME>` in its environment.
//! Values are handed to the attempt and never logged, stored or put in an error; errors name the secret.

use std::path::{Path, PathBuf};

use aloft_core::spec::TaskSecret;

use super::attempt::{system_error, AttemptOutcome};

/// The propeller's secret source.
#[derive(Debug, Clone)]
pub struct SecretSource {
    dir: Option<PathBuf>,
    /// The propeller's own `ALOFT_SECRET*` variables, read once: no task inherits them.
    own: std::sync::Arc<Vec<std::ffi::OsString>>,
}

impl Default for SecretSource {
    /// Secrets from the environment only.
    fn default() -> Self {
        SecretSource::new(None)
    }
}

/// A resolved secret, on its way into one attempt.
pub(crate) struct ResolvedSecret<'a> {
    pub secret: &'a TaskSecret,
    pub value: String,
}

/// A secret a task needs that this propeller cannot give it (the message never holds a value).
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {name:?}: cannot read {path}: {source}")]
    Unreadable {
        name: String,
        path: String,
        source: std::io::Error,
    },
    #[error(
        "secret {name:?} is not available to this propeller (looked for {}{env} in its environment)",
        file.as_ref().map(|file| format!("the file {file} and ")).unwrap_or_default()
    )]
    Unavailable {
        name: String,
        /// The file it was looked for in, when the propeller has a secrets directory.
        file: Option<String>,
        env: String,
    },
}

impl SecretSource {
    /// Secrets from files in `dir` (when given) and from the environment.
    pub fn new(dir: Option<PathBuf>) -> SecretSource {
        let own = std::env::vars_os()
            .map(|(name, _)| name)
            .filter(|name| name.to_string_lossy().starts_with("ALOFT_SECRET"))
            .collect();
        SecretSource {
            dir,
            own: std::sync::Arc::new(own),
        }
    }

    /// The propeller's own secret variables, to be removed from every task's environment.
    pub(crate) fn own_variables(&self) -> &[std::ffi::OsString] {
        &self.own
    }

    /// The environment variable secret `name` is read from.
    pub fn env_name(name: &str) -> String {
        let upper: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("ALOFT_SECRET_{upper}")
    }

    /// The value of secret `name`; see `SecretError`., or an error that says where it was looked for (never a value).
    pub fn resolve(&self, name: &str) -> Result<String, SecretError> {
        if let Some(dir) = &self.dir {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(value) => return Ok(value.trim_end_matches(['\n', '\r']).to_string()),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(SecretError::Unreadable {
                        name: name.to_string(),
                        path: path.display().to_string(),
                        source,
                    })
                }
            }
        }
        let env = Self::env_name(name);
        match std::env::var(&env) {
            Ok(value) => Ok(value),
            Err(_) => Err(SecretError::Unavailable {
                name: name.to_string(),
                file: self.dir.as_ref().map(|dir| dir.join(name).display().to_string()),
                env,
            }),
        }
    }

    /// Every secret `secrets` names, resolved; the first missing one fails the attempt as a system error.
    pub(crate) fn resolve_all<'a>(
        &self,
        secrets: &'a [TaskSecret],
    ) -> Result<Vec<ResolvedSecret<'a>>, AttemptOutcome> {
        secrets
            .iter()
            .map(|secret| {
                self.resolve(&secret.name)
                    .map(|value| ResolvedSecret { secret, value })
                    .map_err(|error| system_error(error.to_string()))
            })
            .collect()
    }
}

/// Writes the `file` secrets into `dir` (owner-only), returning whether any was written.
pub(crate) async fn write_secret_files(
    dir: &Path,
    secrets: &[ResolvedSecret<'_>],
) -> Result<bool, AttemptOutcome> {
    use std::os::unix::fs::PermissionsExt;
    let mut wrote = false;
    for resolved in secrets {
        let Some(file_name) = resolved.secret.file_name() else {
            continue;
        };
        if !wrote {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|error| system_error(format!("cannot create {}: {error}", dir.display())))?;
            let _ = tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).await;
            wrote = true;
        }
        let path = dir.join(file_name);
        tokio::fs::write(&path, &resolved.value).await.map_err(|error| {
            system_error(format!("cannot write secret {:?}: {error}", resolved.secret.name))
        })?;
        let _ = tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).await;
    }
    Ok(wrote)
}
