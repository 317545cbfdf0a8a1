//! The log is the audit record: events written today must replay in every later version. One golden file
//! per event variant (`tests/golden/<family>/<event>.json`, committed) holds an event as this schema wrote
//! it; every build decodes each of them, and encoding the decoded event must give the file back, so a
//! renamed, retyped or dropped field fails here instead of in a replay of a production log.
//!
//! Files are named `VARIANT.json` (the form schema version 1 wrote) or `VARIANT.vN[-LABEL].json` (a form
//! version N writes); every one of them must keep decoding.
//!
//! A new variant needs a golden file: run `ALOFT_BLESS_GOLDEN=1 cargo test -p aloft-eventlog --test golden`
//! to write the missing ones from `samples()`, review and commit them. Existing files are never rewritten:
//! a change that cannot decode them needs a new `SCHEMA_VERSION` and a decoder for the old one.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aloft_core::notify::DeliveryEvent;
use aloft_core::spec::{TaskRef, TaskSpec, WorkflowSpec};
use aloft_core::{ExecutionEvent, Identifier, RegistryEvent, ScheduleEvent};
use aloft_eventlog::{Envelope, Payload};
use serde_json::{json, Value as Json};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

const FAMILIES: [&str; 4] = ["execution", "registry", "schedule", "delivery"];

/// Decodes `json` as an event of `family`.
fn decode(family: &str, json: &Json) -> Result<Payload, serde_json::Error> {
    Ok(match family {
        "execution" => Payload::Execution(serde_json::from_value(json.clone())?),
        "registry" => Payload::Registry(serde_json::from_value(json.clone())?),
        "schedule" => Payload::Schedule(serde_json::from_value(json.clone())?),
        "delivery" => Payload::Delivery(serde_json::from_value(json.clone())?),
        other => panic!("unknown event family {other}"),
    })
}

fn encode(payload: &Payload) -> Json {
    match payload {
        Payload::Execution(event) => serde_json::to_value(event),
        Payload::Registry(event) => serde_json::to_value(event),
        Payload::Schedule(event) => serde_json::to_value(event),
        Payload::Delivery(event) => serde_json::to_value(event),
    }
    .unwrap()
}

/// The event's variant as the log names it (its `event` tag).
fn variant(payload: &Payload) -> String {
    encode(payload)["event"].as_str().unwrap().to_string()
}

fn identifier(name: &str) -> Json {
    json!({"project": "genomics", "domain": "production", "name": name, "version": "7"})
}

fn execution() -> Json {
    json!({"project": "genomics", "domain": "production", "name": "align-2026-12-06"})
}

/// A process task with typed inputs and outputs, cached and with resources.
fn task_spec() -> Json {
    json!({
        "name": "align",
        "version": "7",
        "interface": {"inputs": {"reads": "blob<fastq>", "min_quality": "integer"}, "outputs": {"bam": "blob<bam>", "aligned": "float"}},
        "run": {"process": {"command": ["bwa", "mem", "ref.fa"], "env": {"THREADS": "8"}}},
        "retries": {"user": 2, "system": 3},
        "timeout": "2h",
        "cache": {"version": "1", "serialize": true, "ignored_inputs": []},
        "resources": {"pools": {"sequencer": 1}},
        "interruptible": true
    })
}

fn workflow_spec() -> Json {
    json!({
        "name": "alignment",
        "version": "7",
        "interface": {"inputs": {"reads": "blob<fastq>"}, "outputs": {"bam": "blob<bam>"}},
        "nodes": [
            {"id": "align", "task": "align", "inputs": {"reads": "inputs.reads", "min_quality": {"value": 30}}},
            {"id": "wait", "gate": {"sleep": "1m"}, "after": ["align"]}
        ],
        "outputs": {"bam": "align.bam"}
    })
}

fn compiled_workflow() -> Json {
    let spec: WorkflowSpec = serde_json::from_value(workflow_spec()).unwrap();
    let task: TaskSpec = serde_json::from_value(task_spec()).unwrap();
    let task_id: Identifier = serde_json::from_value(identifier("align")).unwrap();
    let workflow_id: Identifier = serde_json::from_value(identifier("alignment")).unwrap();
    let compiled = aloft_core::compile_workflow(workflow_id, &spec, &|r: &TaskRef| {
        (r.name == "align").then(|| (task_id.clone(), task.clone()))
    })
    .unwrap();
    serde_json::to_value(compiled).unwrap()
}

fn outputs() -> Json {
    json!({
        "bam": {"type": "blob", "value": {"uri": "s3://bucket/align/1/bam", "format": "bam", "digest": "sha256:ab12"}},
        "aligned": {"type": "float", "value": 0.97}
    })
}

fn notification_rule() -> Json {
    json!({"phases": ["FAILED", "TIMED_OUT"], "email": {"to": ["oncall@example.com"], "from": "aloft@example.com",
        "smtp": {"host": "smtp.example.com", "port": 587, "tls": "starttls", "username": "aloft", "password": "env:SMTP_PASSWORD"}},
        "webhook": {"url": "https://hooks.example.com/aloft", "secret": "env:WEBHOOK_SECRET"}})
}

/// One event of every variant, as this build writes it.
fn samples() -> Vec<(&'static str, Json)> {
    let cache = json!({"key": "9f2c", "status": "HIT", "source": {"execution": execution(), "node": "align", "attempt": 1}});
    vec![
        (
            "execution",
            json!({"event": "execution_requested", "execution": execution(), "request_id": "r-1",
            "workflow": compiled_workflow(), "inputs": {"reads": {"type": "blob", "value": {"uri": "s3://bucket/reads.fq", "format": "fastq"}}},
            "launch_plan": identifier("nightly"), "requested_at": 1_765_000_000_000_i64, "scheduled_at": 1_765_000_000_000_i64,
            "overwrite_cache": true, "notifications": [notification_rule()],
            "recovery": {"from": execution(), "nodes": {"align": outputs()}},
            "parent": {"execution": execution(), "node": 2, "node_id": "child"}}),
        ),
        (
            "execution",
            json!({"event": "terminate_requested", "execution": execution(), "reason": "wrong reference genome", "requested_at": 2}),
        ),
        (
            "execution",
            json!({"event": "partition_claimed", "partition": 3, "epoch": 4, "owner": "propeller-0", "at": 3}),
        ),
        (
            "execution",
            json!({"event": "execution_started", "execution": execution(), "at": 4}),
        ),
        (
            "execution",
            json!({"event": "attempt_started", "execution": execution(), "node": 0, "attempt": 1, "interruptible": true, "at": 5}),
        ),
        (
            "execution",
            json!({"event": "attempt_waiting", "execution": execution(), "node": 0, "attempt": 1,
            "reason": "tenant genomics/production at its quota of 4; position 2 of 3 in genomics/production's queue", "at": 6}),
        ),
        (
            "execution",
            json!({"event": "attempt_dispatched", "execution": execution(), "node": 0, "attempt": 1, "at": 7}),
        ),
        (
            "execution",
            json!({"event": "attempt_succeeded", "execution": execution(), "node": 0, "attempt": 1, "outputs": outputs(), "at": 8,
            "cache": {"key": "9f2c", "status": "POPULATED"}}),
        ),
        (
            "execution@3-offloaded",
            json!({"event": "attempt_succeeded", "execution": execution(), "node": 0, "attempt": 1, "outputs": {
                "reads": {"type": "offloaded", "value": {
                    "uri": "s3://aloft-data/genomics/production/align-2026-12-06/align/1/reads.value",
                    "size": 5_242_880_u64, "digest": "sha256:9f2c", "type": "list<string>"}},
                "count": {"type": "integer", "value": 3}
            }, "at": 8}),
        ),
        (
            "execution",
            json!({"event": "attempt_failed", "execution": execution(), "node": 0, "attempt": 2, "kind": "timeout",
            "message": "timed out after 2h", "at": 9}),
        ),
        (
            "execution",
            json!({"event": "node_cache_hit", "execution": execution(), "node": 0, "attempt": 1, "outputs": outputs(), "cache": cache, "at": 10}),
        ),
        (
            "execution",
            json!({"event": "node_succeeded", "execution": execution(), "node": 1, "outputs": {}, "at": 11}),
        ),
        (
            "execution",
            json!({"event": "branch_taken", "execution": execution(), "node": 2, "case": 0, "condition": "align.aligned > 0.9",
            "skipped": [4, 5], "at": 12}),
        ),
        (
            // Schema version 1 carried what a gate waits for as text; version 2 carries it typed.
            "execution",
            json!({"event": "gate_waiting", "execution": execution(), "node": 1, "until": 1_765_000_060_000_i64,
            "waiting_for": "sleep until 2026-12-06T06:01:00Z", "at": 13}),
        ),
        (
            "execution@2",
            json!({"event": "gate_waiting", "execution": execution(), "node": 1, "until": 1_765_000_060_000_i64,
            "waiting_for": {"kind": "end_of_sleep"}, "at": 13}),
        ),
        (
            "execution@2-signal",
            json!({"event": "gate_waiting", "execution": execution(), "node": 3,
            "waiting_for": {"kind": "signal", "name": "approve-release"}, "at": 13}),
        ),
        (
            "execution@2-approval",
            json!({"event": "gate_waiting", "execution": execution(), "node": 4,
            "waiting_for": {"kind": "approval", "node": "release/review"}, "at": 13}),
        ),
        (
            "execution",
            json!({"event": "map_expanded", "execution": execution(), "node": 6, "first": 7, "items": 3, "task": identifier("align"), "at": 14}),
        ),
        (
            "execution",
            json!({"event": "dynamic_expanded", "execution": execution(), "node": 10, "first": 11,
            "added": [{"id": "plan/a", "task": identifier("align")}], "at": 15}),
        ),
        (
            "execution",
            json!({"event": "child_launched", "execution": execution(), "node": 12,
            "child": {"project": "genomics", "domain": "production", "name": "align-2026-12-06-child"}, "at": 16}),
        ),
        (
            "execution",
            json!({"event": "child_finished", "execution": execution(), "node": 12,
            "child": {"project": "genomics", "domain": "production", "name": "align-2026-12-06-child"}, "phase": "FAILED",
            "outputs": {}, "error": "node align failed", "requested_at": 17}),
        ),
        (
            "execution",
            json!({"event": "signal_received", "execution": execution(), "signal": "approve-release",
            "value": {"type": "boolean", "value": true}, "requested_at": 18}),
        ),
        (
            "execution",
            json!({"event": "node_failed", "execution": execution(), "node": 0, "phase": "TIMED_OUT",
            "message": "3 attempts failed; last: timed out after 2h", "at": 19}),
        ),
        (
            "execution",
            json!({"event": "execution_finished", "execution": execution(), "phase": "SUCCEEDED", "outputs": outputs(), "error": null, "at": 20}),
        ),
        (
            "registry",
            json!({"event": "project_registered", "project": {"name": "genomics", "description": "sequencing pipelines",
            "domains": ["development", "production"]}, "at": 21}),
        ),
        (
            "registry",
            json!({"event": "task_registered", "id": identifier("align"), "spec": task_spec(), "digest": "d1", "at": 22}),
        ),
        (
            "registry",
            json!({"event": "workflow_registered", "id": identifier("alignment"), "spec": workflow_spec(),
            "compiled": compiled_workflow(), "digest": "d2", "at": 23}),
        ),
        (
            "registry",
            json!({"event": "launch_plan_registered", "id": identifier("nightly"),
            "spec": {"name": "nightly", "version": "7", "workflow": "alignment", "default_inputs": {"reads": "s3://bucket/reads.fq"},
                "fixed_inputs": {}, "schedule": {"cron": "0 2 * * *", "timezone": "Europe/Berlin"}, "max_parallelism": 4,
                "notifications": [notification_rule()]},
            "workflow": identifier("alignment"),
            "default_inputs": {"reads": {"type": "blob", "value": {"uri": "s3://bucket/reads.fq", "format": "fastq"}}},
            "fixed_inputs": {}, "digest": "d3", "at": 24}),
        ),
        (
            "registry",
            json!({"event": "launch_plan_activated", "id": identifier("nightly"), "at": 25}),
        ),
        (
            "registry",
            json!({"event": "launch_plan_deactivated", "id": identifier("nightly"), "at": 26}),
        ),
        (
            "registry",
            json!({"event": "tenant_quota_set", "project": "genomics", "domain": "production", "weight": 3, "max_running": 40, "at": 27}),
        ),
        (
            "registry",
            json!({"event": "pool_defined", "name": "sequencer", "limit": 2, "at": 28}),
        ),
        (
            "registry",
            json!({"event": "notification_defaults_set", "project": "genomics", "domain": "production",
            "rules": [notification_rule()], "at": 29}),
        ),
        (
            "registry",
            json!({"event": "cache_evicted", "project": "genomics", "domain": "production", "task_name": "align",
            "cache_version": "1", "key": "9f2c", "at": 30}),
        ),
        (
            "registry",
            json!({"event": "api_key_created", "key_id": "k3y1d0000001", "name": "ci-bot", "project": "genomics",
            "domain": "production", "role": "operator", "secret_hash": "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",
            "expires_at": 40, "at": 30}),
        ),
        (
            "registry",
            json!({"event": "api_key_revoked", "key_id": "k3y1d0000001", "project": "genomics", "at": 31}),
        ),
        (
            "registry",
            json!({"event": "role_binding_set", "member": "group:ml-team", "project": "genomics", "domain": "",
            "role": "approver", "granted": true, "at": 32}),
        ),
        (
            "schedule",
            json!({"event": "schedule_fired", "launch_plan": identifier("nightly"), "scheduled_at": 31, "execution": execution(), "fired_at": 32}),
        ),
        (
            "schedule",
            json!({"event": "schedule_skipped", "launch_plan": identifier("nightly"), "through": 33, "count": 5, "at": 34}),
        ),
        (
            "schedule",
            json!({"event": "schedule_cursors", "cursors": [[identifier("nightly"), 35]], "at": 36}),
        ),
        (
            "delivery",
            json!({"event": "delivery_attempted", "delivery_id": "d-9", "execution": execution(), "channel": "email",
            "recipient": "oncall@example.com", "attempt": 2, "outcome": "will_retry", "reason": "smtp 451", "retry_at": 37, "at": 38}),
        ),
    ]
}

/// `FAMILY` or `FAMILY@LABEL` (another form of a variant, written as `VARIANT.vLABEL.json`).
fn split_label(family_and_label: &str) -> (&str, Option<&str>) {
    match family_and_label.split_once('@') {
        Some((family, label)) => (family, Some(label)),
        None => (family_and_label, None),
    }
}

/// Every golden file: (family, variant from the file name, its JSON).
fn golden_files() -> Vec<(String, String, Json)> {
    let mut files = Vec::new();
    for family in FAMILIES {
        let dir = golden_dir().join(family);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let text = std::fs::read_to_string(&path).unwrap();
            let json: Json =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            files.push((family.to_string(), stem.to_string(), json));
        }
    }
    files.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    files
}

#[test]
fn every_golden_event_decodes_and_encodes_back_to_the_same_json() {
    let files = golden_files();
    assert!(
        !files.is_empty(),
        "no golden files under {}",
        golden_dir().display()
    );
    for (family, stem, json) in files {
        let payload = decode(&family, &json)
            .unwrap_or_else(|e| panic!("golden {family}/{stem}.json no longer decodes: {e}"));
        let variant_of_file = stem.split('.').next().unwrap_or_default();
        assert_eq!(
            variant(&payload),
            variant_of_file,
            "golden {family}/{stem}.json holds another event"
        );
        assert_eq!(
            encode(&payload),
            json,
            "golden {family}/{stem}.json decodes, but encodes differently: a field was renamed, retyped or dropped"
        );
        // And through the envelope, as the log carries it.
        let envelope = Envelope::unsequenced(format!("golden/{stem}"), 1, payload);
        let decoded = Envelope::decode(&envelope.encode().unwrap()).unwrap();
        assert_eq!(decoded, envelope, "{family}/{stem}");
    }
}

#[test]
fn every_event_variant_has_a_golden_file() {
    let bless = std::env::var_os("ALOFT_BLESS_GOLDEN").is_some();
    let present: BTreeMap<(String, String), Json> = golden_files()
        .into_iter()
        .map(|(family, stem, json)| ((family, stem), json))
        .collect();
    let mut missing = Vec::new();
    for (family_and_label, sample) in samples() {
        let (family, label) = split_label(family_and_label);
        let payload =
            decode(family, &sample).unwrap_or_else(|e| panic!("a {family} sample does not decode: {e}"));
        let stem = match label {
            Some(label) => format!("{}.v{label}", variant(&payload)),
            None => variant(&payload),
        };
        let key = (family.to_string(), stem);
        if present.contains_key(&key) {
            continue;
        }
        if bless {
            let dir = golden_dir().join(family);
            std::fs::create_dir_all(&dir).unwrap();
            let text = serde_json::to_string_pretty(&encode(&payload)).unwrap() + "\n";
            std::fs::write(dir.join(format!("{}.json", key.1)), text).unwrap();
        } else {
            missing.push(format!("{}/{}", key.0, key.1));
        }
    }
    assert!(
        missing.is_empty(),
        "no golden file for {missing:?}: run ALOFT_BLESS_GOLDEN=1 cargo test -p aloft-eventlog --test golden"
    );
    // Every variant of each family has a sample: the samples cover the enums (checked by the exhaustive
    // matches below, which stop compiling when a variant is added).
    let sampled: std::collections::BTreeSet<String> = samples()
        .into_iter()
        .map(|(family_and_label, json)| {
            let (family, _) = split_label(family_and_label);
            format!("{family}/{}", variant(&decode(family, &json).unwrap()))
        })
        .collect();
    assert_eq!(
        sampled.len(),
        EXECUTION_VARIANTS + REGISTRY_VARIANTS + SCHEDULE_VARIANTS + DELIVERY_VARIANTS,
        "a sample of every variant: {sampled:?}"
    );
    // Each family's samples cover as many variants as its enum has (the exhaustive matches below count
    // them and stop compiling when a variant is added).
    for family in FAMILIES {
        let variants_sampled = sampled
            .iter()
            .filter(|s| s.starts_with(&format!("{family}/")))
            .count();
        let variants = samples()
            .into_iter()
            .filter(|(family_and_label, _)| split_label(family_and_label).0 == family)
            .map(|(_, json)| match decode(family, &json).unwrap() {
                Payload::Execution(event) => execution_variant_count(&event),
                Payload::Registry(event) => registry_variant_count(&event),
                Payload::Schedule(event) => schedule_variant_count(&event),
                Payload::Delivery(event) => delivery_variant_count(&event),
            })
            .max()
            .unwrap_or(0);
        assert_eq!(
            variants_sampled, variants,
            "{family}: one sample of each of its {variants} variants"
        );
    }
}

const EXECUTION_VARIANTS: usize = 20;
const REGISTRY_VARIANTS: usize = 13;
const SCHEDULE_VARIANTS: usize = 3;
const DELIVERY_VARIANTS: usize = 1;

/// Adding a variant breaks these matches: add it to the count and a sample for it to `samples()`.
fn execution_variant_count(event: &ExecutionEvent) -> usize {
    match event {
        ExecutionEvent::ExecutionRequested { .. }
        | ExecutionEvent::TerminateRequested { .. }
        | ExecutionEvent::PartitionClaimed { .. }
        | ExecutionEvent::ExecutionStarted { .. }
        | ExecutionEvent::AttemptStarted { .. }
        | ExecutionEvent::AttemptWaiting { .. }
        | ExecutionEvent::AttemptDispatched { .. }
        | ExecutionEvent::AttemptSucceeded { .. }
        | ExecutionEvent::AttemptFailed { .. }
        | ExecutionEvent::NodeCacheHit { .. }
        | ExecutionEvent::NodeSucceeded { .. }
        | ExecutionEvent::BranchTaken { .. }
        | ExecutionEvent::GateWaiting { .. }
        | ExecutionEvent::MapExpanded { .. }
        | ExecutionEvent::DynamicExpanded { .. }
        | ExecutionEvent::ChildLaunched { .. }
        | ExecutionEvent::ChildFinished { .. }
        | ExecutionEvent::SignalReceived { .. }
        | ExecutionEvent::NodeFailed { .. }
        | ExecutionEvent::ExecutionFinished { .. } => EXECUTION_VARIANTS,
    }
}

fn registry_variant_count(event: &RegistryEvent) -> usize {
    match event {
        RegistryEvent::ProjectRegistered { .. }
        | RegistryEvent::TaskRegistered { .. }
        | RegistryEvent::WorkflowRegistered { .. }
        | RegistryEvent::LaunchPlanRegistered { .. }
        | RegistryEvent::LaunchPlanActivated { .. }
        | RegistryEvent::LaunchPlanDeactivated { .. }
        | RegistryEvent::TenantQuotaSet { .. }
        | RegistryEvent::PoolDefined { .. }
        | RegistryEvent::NotificationDefaultsSet { .. }
        | RegistryEvent::CacheEvicted { .. }
        | RegistryEvent::ApiKeyCreated { .. }
        | RegistryEvent::ApiKeyRevoked { .. }
        | RegistryEvent::RoleBindingSet { .. } => REGISTRY_VARIANTS,
    }
}

fn schedule_variant_count(event: &ScheduleEvent) -> usize {
    match event {
        ScheduleEvent::ScheduleFired { .. }
        | ScheduleEvent::ScheduleSkipped { .. }
        | ScheduleEvent::ScheduleCursors { .. } => SCHEDULE_VARIANTS,
    }
}

fn delivery_variant_count(event: &DeliveryEvent) -> usize {
    match event {
        DeliveryEvent::DeliveryAttempted { .. } => DELIVERY_VARIANTS,
    }
}
