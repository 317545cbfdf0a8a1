//! The Quick start as a user types it: the `aloft` binary runs the diamond on the embedded default.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::process::Command;

use aloft_e2e::{binary, repo_root};

#[test]
fn aloft_run_on_a_spec_file_works_with_nothing_installed_and_history_reads_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let aloft = || {
        let mut command = Command::new(binary("aloft"));
        // A private data dir; no --admin, so the embedded fleet runs in the process as for a new user.
        command
            .current_dir(dir.path())
            .env("ALOFT_DATA_DIR", dir.path().join("data"))
            .env_remove("ALOFT_ADMIN");
        command
    };
    let run = aloft()
        .args([
            "run",
            repo_root().join("examples/diamond.yaml").to_str().unwrap(),
            "--input",
            "x=3",
            "--name",
            "quick-start",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("SUCCEEDED") && stdout.contains("result=24"),
        "{stdout}"
    );

    let history = aloft()
        .args(["history", "quick-start", "--json"])
        .output()
        .unwrap();
    assert!(
        history.status.success(),
        "{}",
        String::from_utf8_lossy(&history.stderr)
    );
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&history.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(events.first().unwrap()["kind"], "ExecutionRequested");
    assert_eq!(events.last().unwrap()["kind"], "ExecutionFinished");

    let bad = aloft()
        .args(["run", "diamond", "--input", "x=three"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("not an integer"), "{stderr}");
}

#[test]
fn aloft_schedules_lists_the_active_schedule_with_its_next_fire_time() {
    let dir = tempfile::tempdir().unwrap();
    let aloft = |args: &[&str]| {
        let output = Command::new(binary("aloft"))
            .args(args)
            .current_dir(dir.path())
            .env("ALOFT_DATA_DIR", dir.path().join("data"))
            .env_remove("ALOFT_ADMIN")
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let spec = repo_root().join("examples/scheduled.yaml");
    let (code, _, stderr) = aloft(&["register", "-f", spec.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stdout, stderr) = aloft(&["launchplan", "activate", "every-minute-report", "1"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("is active"), "{stdout}");

    let before = chrono::Utc::now();
    let (code, stdout, stderr) = aloft(&["schedules"]);
    assert_eq!(code, Some(0), "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("every-minute-report"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("* * * * *") && line.contains("latest"), "{line}");
    let next = line.split_whitespace().last().unwrap();
    let next = chrono::DateTime::parse_from_rfc3339(next).unwrap_or_else(|e| panic!("{next}: {e}"));
    let until_next = next.with_timezone(&chrono::Utc) - before;
    assert!(
        until_next > chrono::Duration::zero() && until_next <= chrono::Duration::seconds(61),
        "{line}"
    );

    let (code, _, stderr) = aloft(&["launchplan", "activate", "every-minute-report", "9"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("every-minute-report@9") && stderr.contains("not registered"),
        "{stderr}"
    );
}

#[test]
fn aloft_notify_sets_project_defaults_and_run_checks_its_rule_file() {
    let dir = tempfile::tempdir().unwrap();
    let aloft = |args: &[&str]| {
        let output = Command::new(binary("aloft"))
            .args(args)
            .current_dir(dir.path())
            .env("ALOFT_DATA_DIR", dir.path().join("data"))
            .env("ALOFT_TEST_HOOK_KEY", "k")
            .env_remove("ALOFT_ADMIN")
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "- phases: [FAILED]\n  webhook: {url: \"http://127.0.0.1:9/hook\", secret: \"env:ALOFT_TEST_HOOK_KEY\"}\n",
    )
    .unwrap();
    let (code, stdout, stderr) = aloft(&[
        "--domain",
        "production",
        "notify",
        "set-defaults",
        "-f",
        rules.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("notification defaults of default/production: 1 rule(s)"),
        "{stdout}"
    );
    let (code, stdout, stderr) = aloft(&["notify", "clear-defaults", "--all-domains"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("default (every domain): 0 rule(s)"), "{stdout}");

    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "- phases: [FAILED]\n  webhook: {url: \"hooks.example.com\", secret: \"env:X\"}\n",
    )
    .unwrap();
    let diamond = repo_root().join("examples/diamond.yaml");
    let (code, stdout, stderr) = aloft(&[
        "run",
        diamond.to_str().unwrap(),
        "--input",
        "x=1",
        "--notify-file",
        broken.to_str().unwrap(),
    ]);
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("broken.yaml notification rule 1: webhook.url"),
        "exit {code:?}; stderr: {stderr}; stdout: {stdout}"
    );
    let (code, _, stderr) = aloft(&[
        "run",
        "diamond",
        "--no-notify",
        "--notify-file",
        rules.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "clap refuses both: {stderr}");
}
