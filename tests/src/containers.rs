//! The container engine the container tests run on (Docker Engine, started by `scripts/test.sh`); test
//! images are made locally by `aloft_testkit::images`: nothing is pulled from a public registry.

pub use aloft_testkit::images::{busybox_image, docker};

/// The engine's socket (`ALOFT_TEST_CONTAINER_ENGINE`, default Docker's), or `None` (test skipped) when no
/// engine answers there, unless real backends are required.
pub fn real_container_engine() -> Option<String> {
    let engine = std::env::var("ALOFT_TEST_CONTAINER_ENGINE")
        .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string());
    let answers = docker(&engine, &["version", "--format", "{{.Server.Version}}"]).is_ok();
    if !answers {
        assert!(
            std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
            "no container engine answers at {engine} (scripts/test.sh starts Docker)"
        );
        eprintln!("skipping: no container engine at {engine}");
        return None;
    }
    Some(engine)
}

/// The names of the containers labelled as attempts of `execution`, running or not.
pub fn attempt_containers(engine: &str, execution: &str) -> Vec<String> {
    docker(
        engine,
        &[
            "ps",
            "--all",
            "--filter",
            &format!("label=aloft.execution={execution}"),
            "--format",
            "{{.Names}}",
        ],
    )
    .unwrap_or_default()
    .lines()
    .map(str::to_string)
    .collect()
}
