//! `aloft register`: register every document of spec files and directories, all in one batch.

use std::path::{Path, PathBuf};

use crate::args::*;
use crate::client::AdminClient;
use crate::specs::{read_spec_file, register_documents};

use super::shared::print_registered;

/// The extensions of the files a directory contributes.
const SPEC_EXTENSIONS: [&str; 4] = ["yaml", "yml", "json", "py"];

pub(super) async fn run(
    cli: &Cli,
    client: &mut AdminClient,
    _embedded: bool,
    paths: &[PathBuf],
) -> anyhow::Result<i32> {
    let files = spec_files(paths)?;
    let mut documents = Vec::new();
    for file in &files {
        documents.extend(read_spec_file(file)?);
    }
    if documents.is_empty() {
        anyhow::bail!("no spec documents in {}", shown(&files));
    }
    let registered = register_documents(client, &cli.project, &cli.domain, documents)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", shown(&files)))?;
    print_registered(&registered);
    Ok(0)
}

/// The files `paths` name: each file as given, each directory's spec files (recursively, in name order).
fn spec_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let before = files.len();
            collect_directory(path, &mut files)?;
            if files.len() == before {
                anyhow::bail!(
                    "{} holds no spec files (.yaml, .yml, .json or .py)",
                    path.display()
                );
            }
        } else if path.exists() {
            files.push(path.clone());
        } else {
            anyhow::bail!("{} does not exist", path.display());
        }
    }
    Ok(files)
}

fn collect_directory(directory: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(directory)
        .map_err(|e| anyhow::anyhow!("cannot read directory {}: {e}", directory.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    entries.sort();
    for entry in entries {
        let hidden = entry
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with(['.', '_']));
        if hidden {
            continue;
        }
        if entry.is_dir() {
            collect_directory(&entry, files)?;
        } else if entry
            .extension()
            .is_some_and(|extension| SPEC_EXTENSIONS.iter().any(|known| extension == *known))
        {
            files.push(entry);
        }
    }
    Ok(())
}

fn shown(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|file| file.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
