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

    /// The value of secret `name`, or an error that says where it was looked for (never a value).
    pub fn resolve(&self, name: &str) -> Result<String, String> {
        if let Some(dir) = &self.dir {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(value) => return Ok(value.trim_end_matches(['\n', '\r']).to_string()),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(format!(
                        "secret {name:?}: cannot read {}: {error}",
                        path.display()
                    ))
                }
            }
        }
        let env = Self::env_name(name);
        match std::env::var(&env) {
            Ok(value) => Ok(value),
            Err(_) => Err(format!(
                "secret {name:?} is not available to this propeller (looked for {}{env} in its environment)",
                self.dir
                    .as_ref()
                    .map(|dir| format!("the file {} and ", dir.join(name).display()))
                    .unwrap_or_default()
            )),
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
                    .map_err(system_error)
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
