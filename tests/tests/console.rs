//! The web console in a real browser: headless Chromium (Debian's package) driven by playwright-core
//! (`tests/console/console.test.cjs`) against a fleet this test starts (Kafka + Postgres in CI). It launches
//! the diamond from its generated form and watches it succeed live, reads a node's outputs and log, steps
//! the history back, relaunches with a changed input, signals and approves a gate, filters the list by label
//! and phase, opens an unknown execution, scrolls the 10,000 items of a map to the last, follows a running
//! task's log live, reads a node's inputs, an entity page (interface, graph, schedule toggle), the
//! notification deliveries and the tenants with their quotas, draws a 2,000-node graph, launches a launch
//! plan from its form (defaults prefilled, fixed inputs read-only), and opens a struct as a tree and
//! downloads a blob. Screenshots of each step land in
//! `$ALOFT_TEST_LOG_DIR/console-screenshots` (default `~/.cache/aloft/logs/console-screenshots`).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::PathBuf;
use std::process::Command;

use aloft_e2e::*;
use aloft_proto::v1 as wire;

/// Waits until an attempt of execution `id` runs.
async fn wait_running(client: &mut aloft_cli::client::AdminClient, id: &wire::ExecutionIdentifier) {
    wait_until(client, id, std::time::Duration::from_secs(60), |execution| {
        execution
            .attempts
            .iter()
            .any(|attempt| attempt.phase == "RUNNING")
    })
    .await;
}

/// Node with playwright-core and Chromium, when installed (scripts/test.sh installs both).
fn browser() -> Option<(PathBuf, PathBuf)> {
    let chromium =
        PathBuf::from(std::env::var("ALOFT_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    let modules = std::env::var("ALOFT_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/aloft/node/node_modules")
        });
    let found = chromium.exists() && modules.join("playwright-core").exists();
    if !found {
        assert!(
            std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
            "the console test needs {} and playwright-core under {} (scripts/test.sh installs them)",
            chromium.display(),
            modules.display()
        );
        eprintln!("skipping: no Chromium or playwright-core");
        return None;
    }
    Some((chromium, modules))
}

/// Runs `tests/console/SCRIPT` in Node against the console at `endpoint`, screenshots to the log directory;
/// its output, after checking it succeeded.
async fn run_in_browser(
    script: &str,
    endpoint: &str,
    (chromium, modules): (PathBuf, PathBuf),
    env: &[(&str, &str)],
) -> String {
    let log_dir = std::env::var("ALOFT_TEST_LOG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/aloft/logs")
        });
    let shots = log_dir.join("console-screenshots");
    let mut command = Command::new("node");
    command
        .arg(repo_root().join("tests/console").join(script))
        .arg(endpoint)
        .arg(&shots)
        .env("NODE_PATH", modules)
        .env("ALOFT_CHROMIUM", chromium);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the browser test {script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_launches_watches_inspects_travels_relaunches_approves_and_filters_in_the_browser() {
    let Some((chromium, modules)) = browser() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fleet = start_fleet(dir.path()).await;
    let mut client = wait_for_client(&fleet.endpoint(), String::new).await;
    register_file(&mut client, &repo_root().join("examples/diamond.yaml")).await;
    // The release example's `add` differs from the diamond's: it lives in another domain.
    let release = aloft_cli::specs::read_spec_file(&repo_root().join("examples/release.yaml")).unwrap();
    aloft_cli::specs::register_documents(&mut client, PROJECT, "staging", release)
        .await
        .unwrap();
    // A 10,000-item map (no-op items) for the page that must stay fast at that size.
    let big_map =
        "kind: task\nname: item\nversion: \"1\"\ninterface: {inputs: {i: integer}}\nrun: noop\n---\n\
                   kind: workflow\nname: big-map\ninterface: {inputs: {xs: \"list<integer>\"}}\n\
                   nodes:\n  - {id: items, map: {task: item, over: i}, inputs: {i: inputs.xs}}\n";
    register_text(&mut client, dir.path(), "big-map.yaml", big_map).await;
    let items = format!(
        "[{}]",
        (0..10_000).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
    );
    let big = launch(&mut client, workflow("big-map"), "big-map-1", &[("xs", &items)])
        .await
        .unwrap();
    wait_succeeded(&mut client, &big, std::time::Duration::from_secs(300)).await;
    // A workflow of 2,000 nodes in 20 layers of 100 (each waits for the one a layer above), for the graph.
    let mut wide = String::from(
        "kind: task\nname: nothing\nversion: \"1\"\nrun: noop\n---\nkind: workflow\nname: wide\nnodes:\n",
    );
    for node in 0..2_000 {
        let after = if node >= 100 {
            format!(", after: [n{}]", node - 100)
        } else {
            String::new()
        };
        wide.push_str(&format!("  - {{id: n{node}, task: nothing{after}}}\n"));
    }
    register_text(&mut client, dir.path(), "wide.yaml", &wide).await;
    let wide_run = launch(&mut client, workflow("wide"), "wide-1", &[])
        .await
        .unwrap();
    wait_succeeded(&mut client, &wide_run, std::time::Duration::from_secs(300)).await;
    // A cached task's stored result, for the cache page and the lineage of its node.
    register_file(&mut client, &repo_root().join("examples/cached.yaml")).await;
    let cached = launch(
        &mut client,
        workflow("square-plus-one"),
        "cached-1",
        &[("n", "7")],
    )
    .await
    .unwrap();
    wait_succeeded(&mut client, &cached, std::time::Duration::from_secs(60)).await;
    // A launch plan whose successes are posted to a webhook on loopback, for the deliveries page.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let hook = aloft_testkit::HttpSink::start(shutdown.clone()).await.unwrap();
    let secret = dir.path().join("hook-secret");
    std::fs::write(&secret, "console-test-secret").unwrap();
    let notified = format!(
        "kind: launch_plan\nname: diamond-notified\nworkflow: diamond\n\
         notifications:\n  - phases: [SUCCEEDED]\n    webhook: {{url: \"{}\", secret: \"file:{}\"}}\n",
        hook.url("/hook"),
        secret.display()
    );
    register_text(&mut client, dir.path(), "notified.yaml", &notified).await;
    let plan = wire::create_execution_request::Target::LaunchPlan(wire::Identifier {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        name: "diamond-notified".into(),
        version: String::new(),
    });
    let notified_run = launch(&mut client, plan, "notified-1", &[("x", "1")])
        .await
        .unwrap();
    wait_succeeded(&mut client, &notified_run, std::time::Duration::from_secs(60)).await;
    // The notifier reads the executions' log after the maps above: wait until it has posted the webhook
    // and admin has its record, so the browser finds it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        let deliveries = client
            .list_deliveries(wire::ListDeliveriesRequest {
                project: PROJECT.into(),
                domain: DOMAIN.into(),
                limit: 10,
            })
            .await
            .unwrap()
            .into_inner();
        if deliveries
            .events
            .iter()
            .any(|event| event.execution == "notified-1")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no delivery of notified-1 recorded within 180 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    // A launch plan that fixes the diamond's input, for the plan's launch form.
    register_text(
        &mut client,
        dir.path(),
        "fixed.yaml",
        "kind: launch_plan\nname: diamond-fixed\nworkflow: diamond\nfixed_inputs: {x: 5}\n",
    )
    .await;
    // A struct, a blob and a text too long to travel inline (offloaded to the blob store), for the tree of
    // fields and the download buttons.
    register_text(
        &mut client,
        dir.path(),
        "shapes.yaml",
        "kind: task\nname: shapes\nversion: \"1\"\ninterface: {outputs: {report: struct, data: blob, long: string}}\n\
         run:\n  process:\n    command: [\"sh\", \"-c\", \"echo '{\\\"scores\\\": {\\\"auc\\\": 0.91, \\\"folds\\\": [1, 2]}}' > \
         $ALOFT_OUTPUT_DIR/report; echo hello-blob > $ALOFT_OUTPUT_DIR/data; \
         head -c 100000 /dev/zero | tr '\\\\0' x > $ALOFT_OUTPUT_DIR/long\"]\n---\n\
         kind: workflow\nname: shapes\ninterface: {outputs: {report: struct, data: blob, long: string}}\n\
         nodes:\n  - {id: make, task: shapes}\noutputs: {report: make.report, data: make.data, long: make.long}\n",
    )
    .await;
    let shapes = launch(&mut client, workflow("shapes"), "shapes-1", &[])
        .await
        .unwrap();
    wait_succeeded(&mut client, &shapes, std::time::Duration::from_secs(60)).await;
    // A launch plan with a schedule (inactive until the browser activates it), for the entity page.
    register_file(&mut client, &repo_root().join("examples/scheduled.yaml")).await;
    // A task that prints a line, waits, prints another and keeps running: the browser follows its log.
    register_text(
        &mut client,
        dir.path(),
        "talk.yaml",
        "kind: task\nname: talk\nversion: \"1\"\nrun:\n  process:\n    command: [\"sh\", \"-c\", \
         \"echo first-line; sleep 3; echo second-line; sleep 120\"]\n---\n\
         kind: workflow\nname: talk\nnodes:\n  - {id: talk, task: talk}\n",
    )
    .await;
    let talk = launch(&mut client, workflow("talk"), "talk-1", &[])
        .await
        .unwrap();
    wait_running(&mut client, &talk).await;
    // A quota and a pool for the tenants page.
    client
        .set_tenant_quota(wire::SetTenantQuotaRequest {
            project: PROJECT.into(),
            domain: DOMAIN.into(),
            weight: 3,
            max_running: 7,
        })
        .await
        .unwrap();
    client
        .define_pool(wire::DefinePoolRequest {
            name: "gpus".into(),
            limit: 2,
        })
        .await
        .unwrap();
    // An attempt that holds one of the pool's tokens while the browser looks.
    register_text(
        &mut client,
        dir.path(),
        "holder.yaml",
        "kind: task\nname: holder\nversion: \"1\"\nresources: {pools: {gpus: 1}}\nrun:\n  process:\n    \
         command: [\"sleep\", \"300\"]\n---\nkind: workflow\nname: holder\nnodes:\n  - {id: hold, task: holder}\n",
    )
    .await;
    let holder = launch(&mut client, workflow("holder"), "hold-1", &[])
        .await
        .unwrap();
    wait_running(&mut client, &holder).await;
    let stdout = run_in_browser(
        "console.test.cjs",
        &fleet.endpoint(),
        (chromium, modules),
        &[
            ("ALOFT_CONSOLE_BIG_EXECUTION", "big-map-1"),
            ("ALOFT_CONSOLE_CACHED_EXECUTION", "cached-1"),
            ("ALOFT_CONSOLE_TALKING_EXECUTION", "talk-1"),
            ("ALOFT_CONSOLE_NOTIFIED_EXECUTION", "notified-1"),
            ("ALOFT_CONSOLE_WIDE_EXECUTION", "wide-1"),
            ("ALOFT_CONSOLE_SHAPES_EXECUTION", "shapes-1"),
        ],
    )
    .await;
    for step in [
        "ok   11-follow-a-running-tasks-log-live",
        "ok   12-an-entity-page-shows-the-interface-graph-and-schedule",
        "ok   13-notification-deliveries-and-their-attempts",
        "ok   14-tenants-with-their-quotas-and-the-pools",
        "ok   15-a-graph-of-2000-nodes-stays-interactive",
        "ok   16-a-launch-plan-form-prefills-defaults-and-fixes-its-fixed-inputs",
        "ok   17-a-struct-is-a-tree-and-a-blob-and-an-offloaded-value-download",
    ] {
        assert!(stdout.contains(step), "{step}: {stdout}");
    }
    client
        .terminate_execution(wire::TerminateExecutionRequest {
            id: Some(holder.clone()),
            reason: "the browser has seen it".into(),
        })
        .await
        .unwrap();
    wait_finished(&mut client, &holder, std::time::Duration::from_secs(60)).await;
    shutdown.cancel();
    assert!(
        stdout.contains("ok   10-cache-entries-lineage-and-eviction"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok   08-unknown-execution-is-a-clear-not-found"),
        "{stdout}"
    );
    fleet.stop().await.unwrap();
}

/// With authentication on, the console sends the user to the identity provider (authorization code +
/// PKCE), comes back logged in, shows who it is and what that user may see, and logs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_logs_in_to_the_console_through_the_identity_provider() {
    let Some((chromium, modules)) = browser() else {
        return;
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let issuer = aloft_testkit::oidc::TestIssuer::start("aloft", shutdown.clone())
        .await
        .unwrap();
    let config: aloft_auth::AuthConfig = serde_yaml::from_str(&format!(
        "oidc: {{issuer: \"{}\", audience: aloft}}\nplatform_admins: [\"subject:root\"]\n\
         bindings:\n  - {{member: \"group:ml\", project: {PROJECT}, role: operator}}\n",
        issuer.issuer
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fleet = start_fleet_with_auth(dir.path(), Some(config)).await;
    let root = issuer.token("root", &[]);
    let mut client = client_as(&fleet.endpoint(), &root).await;
    register_file(&mut client, &repo_root().join("examples/diamond.yaml")).await;
    launch(
        &mut client,
        workflow("diamond"),
        "seen-after-login",
        &[("x", "3")],
    )
    .await
    .unwrap();
    issuer.set_login("lena", &["ml"]);
    let stdout = run_in_browser("login.test.cjs", &fleet.endpoint(), (chromium, modules), &[]).await;
    assert!(stdout.contains("ok   03-logs-out"), "{stdout}");
    fleet.stop().await.unwrap();
    shutdown.cancel();
}
