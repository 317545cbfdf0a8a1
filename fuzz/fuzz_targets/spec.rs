//! Spec files as users write them (YAML, several documents) and spec JSON as the API takes it: parsing,
//! validation and compiling a workflow against the tasks of the same input must answer errors, never panic.
#![no_main]

use std::collections::HashMap;

use aloft_core::spec::{SpecDocument, TaskRef, TaskSpec};
use aloft_core::Identifier;
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

fn check(documents: Vec<SpecDocument>) {
    let mut tasks: HashMap<String, TaskSpec> = HashMap::new();
    for document in &documents {
        if let SpecDocument::Task(task) = document {
            if task.validate().is_ok() {
                tasks.insert(task.name.clone(), task.clone());
            }
        }
    }
    let id = |name: &str| Identifier {
        project: "fuzz".into(),
        domain: "development".into(),
        name: name.into(),
        version: "1".into(),
    };
    for document in &documents {
        match document {
            SpecDocument::Workflow(workflow) => {
                let lookup = |task: &TaskRef| tasks.get(&task.name).map(|spec| (id(&task.name), spec.clone()));
                let _ = aloft_core::compile_workflow(id(&workflow.name), workflow, &lookup);
            }
            SpecDocument::LaunchPlan(plan) => {
                let _ = plan.validate_names();
                if let Some(schedule) = &plan.schedule {
                    let _ = schedule.compile();
                }
            }
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text).take(16) {
        let Ok(value) = serde_yaml::Value::deserialize(document) else {
            break;
        };
        if let Ok(spec) = serde_yaml::from_value::<SpecDocument>(value) {
            documents.push(spec);
        }
    }
    if aloft_core::spec::reject_duplicate_keys(text).is_ok() {
        if let Ok(spec) = serde_json::from_str::<SpecDocument>(text) {
            documents.push(spec);
        }
    }
    check(documents);
});
