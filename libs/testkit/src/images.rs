//! Container images for tests and `aloft-bench containers`, made locally from a static busybox (Debian's
//! busybox-static) with `docker import`: nothing is pulled from a public registry.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

/// Why a test image could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot run docker: {0}")]
    NoDocker(std::io::Error),
    /// The docker CLI failed; its stderr.
    #[error("{0}")]
    Docker(String),
    #[error("no static busybox at /bin/busybox (Debian busybox-static; scripts/test.sh installs it)")]
    NoBusybox,
    #[error("tar of the image tree failed")]
    Tar,
    #[error("docker import {tag}: {reason}")]
    Import { tag: String, reason: Box<ImageError> },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
}

/// Runs the docker CLI against `engine`; its stdout, or its stderr as the error.
pub fn docker(engine: &str, args: &[&str]) -> Result<String, ImageError> {
    let output = Command::new("docker")
        .env("DOCKER_HOST", engine)
        .args(args)
        .output()
        .map_err(ImageError::NoDocker)?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(ImageError::Docker(
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ))
    }
}

/// Tests of one binary build their images one at a time.
static BUILDING: Mutex<()> = Mutex::new(());

/// Makes image `tag` (unless the engine has it): a static busybox with its applets and `/etc/image-name`
/// holding `tag`, imported from a directory tree.
pub fn busybox_image(engine: &str, tag: &str) -> Result<(), ImageError> {
    let _building = BUILDING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if docker(engine, &["image", "inspect", tag]).is_ok() {
        return Ok(());
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|path| Path::new(path).exists())
        .ok_or(ImageError::NoBusybox)?;
    fn io(what: &'static str) -> impl Fn(std::io::Error) -> ImageError {
        move |source| ImageError::Io { what, source }
    }
    let root = tempfile::tempdir().map_err(io("a scratch directory"))?;
    for dir in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(root.path().join(dir)).map_err(io("the image tree"))?;
    }
    std::fs::copy(busybox, root.path().join("bin/busybox")).map_err(io("copying busybox"))?;
    for applet in [
        "sh",
        "cat",
        "echo",
        "sleep",
        "ls",
        "head",
        "wc",
        "tr",
        "yes",
        "expr",
        "sha256sum",
        "cut",
        "mkdir",
        "true",
    ] {
        std::os::unix::fs::symlink("busybox", root.path().join("bin").join(applet))
            .map_err(io("an applet link"))?;
    }
    std::fs::write(root.path().join("etc/image-name"), tag).map_err(io("/etc/image-name"))?;
    let tar = root.path().with_extension("tar");
    let status = Command::new("tar")
        .args([
            "-C",
            &root.path().display().to_string(),
            "-cf",
            &tar.display().to_string(),
            ".",
        ])
        .status()
        .map_err(io("running tar"))?;
    if !status.success() {
        return Err(ImageError::Tar);
    }
    let imported = docker(
        engine,
        &[
            "import",
            "--change",
            "ENV PATH=/bin",
            &tar.display().to_string(),
            tag,
        ],
    );
    let _ = std::fs::remove_file(&tar);
    imported.map(|_| ()).map_err(|error| ImageError::Import {
        tag: tag.to_string(),
        reason: Box::new(error),
    })
}
