//! A map's `item_resources`: what each item asks for, taken from the item itself, as Argo fills a template's
//! resources from its item. `map: {task: align, over: sample, item_resources: {memory: "{{item.memory}}"}}`
//! gives the item `{"name": "big", "memory": "64Gi"}` 64 GiB and `{"name": "small", "memory": "2Gi"}` 2 GiB,
//! over the task's (and the node's) resources, field by field. A field is a quantity or `{{item.FIELD}}`,
//! which reads FIELD of a struct or map item; checked at registration, filled in when the map expands (an
//! item whose value makes no valid resources fails the map naming the item, before any item runs).

use crate::compute::{ResourceLimits, Resources};
use crate::spec::TaskSpec;
use crate::types::{LiteralType, Value};

/// The template fields, by their spec names, for reading and writing them alike.
fn fields(resources: &mut Resources) -> Vec<(&'static str, &mut Option<String>)> {
    let limits = resources.limits.get_or_insert_with(ResourceLimits::default);
    vec![
        ("cpu", &mut resources.cpu),
        ("memory", &mut resources.memory),
        ("ephemeral_storage", &mut resources.ephemeral_storage),
        ("accelerator", &mut resources.accelerator),
        ("limits.cpu", &mut limits.cpu),
        ("limits.memory", &mut limits.memory),
        ("limits.ephemeral_storage", &mut limits.ephemeral_storage),
    ]
}

/// `FIELD` of a text that is exactly `{{item.FIELD}}` (spaces allowed inside the braces).
fn item_field(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let field = inner.strip_prefix("item.")?;
    let valid = !field.is_empty()
        && field
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    valid.then_some(field)
}

/// Checks `template` at registration against the map's item type: every `{{...}}` must be `{{item.FIELD}}`
/// of a struct or map item, the rest valid quantities; GPUs and pools are the node's (`resources`), not an
/// item's.
pub fn check(template: &Resources, item_type: &LiteralType, task: &TaskSpec) -> Result<(), String> {
    if template.gpu.is_some() || !template.pools.is_empty() {
        return Err(
            "item_resources takes cpu, memory, ephemeral_storage, accelerator and limits; set gpu and \
                    pools on the node's resources"
                .to_string(),
        );
    }
    let mut sample = template.clone();
    for (name, value) in fields(&mut sample) {
        let Some(text) = value.as_deref() else { continue };
        if !text.contains("{{") {
            continue;
        }
        if item_field(text).is_none() {
            return Err(format!(
                "item_resources.{name}: {text:?} is neither a quantity nor {{{{item.FIELD}}}}"
            ));
        }
        if !matches!(item_type, LiteralType::Struct | LiteralType::Map(_)) {
            return Err(format!(
                "item_resources.{name} reads a field of each item, but the items are {item_type}, not a struct or map"
            ));
        }
        // A stand-in the quantity checks accept, so the literal fields are checked as they will be used.
        *value = Some(if name.ends_with("accelerator") { "any" } else { "1" }.to_string());
    }
    with_item_resources(task, &sample)
        .resources
        .unwrap_or_default()
        .validate(&task.name)
        .map_err(|e| format!("item_resources: {e}"))
}

/// The text of `field` of `item` (a struct or map), as a quantity is written.
fn read_field(item: &Value, field: &str) -> Result<String, String> {
    let found = match item {
        Value::Struct(json) => match json.get(field) {
            Some(serde_json::Value::String(text)) => Some(text.clone()),
            Some(serde_json::Value::Number(number)) => Some(number.to_string()),
            Some(other) => return Err(format!("field {field:?} is {other}, not a quantity")),
            None => None,
        },
        Value::Map(entries) => match entries.get(field) {
            Some(Value::String(text)) => Some(text.clone()),
            Some(value @ (Value::Integer(_) | Value::Float(_))) => Some(value.to_text()),
            Some(other) => {
                return Err(format!(
                    "field {field:?} is a {}, not a quantity",
                    other.kind_name()
                ))
            }
            None => None,
        },
        other => {
            return Err(format!(
                "the item is a {}, not a struct or map",
                other.kind_name()
            ))
        }
    };
    found.ok_or_else(|| format!("the item has no field {field:?}"))
}

/// `template` filled in from `item`.
pub fn for_item(template: &Resources, item: &Value) -> Result<Resources, String> {
    let mut filled = template.clone();
    for (name, value) in fields(&mut filled) {
        let Some(field) = value.as_deref().and_then(item_field).map(str::to_string) else {
            continue;
        };
        *value = Some(read_field(item, &field).map_err(|e| format!("item_resources.{name}: {e}"))?);
    }
    if filled
        .limits
        .as_ref()
        .is_some_and(|limits| *limits == ResourceLimits::default())
    {
        filled.limits = None;
    }
    Ok(filled)
}

/// `task` with `resources` over its own, field by field.
fn with_item_resources(task: &TaskSpec, resources: &Resources) -> TaskSpec {
    let mut task = task.clone();
    task.resources = Some(
        task.resources
            .clone()
            .unwrap_or_default()
            .overridden_by(resources),
    );
    task
}

/// The task an item of a map runs: `task` with the item's resources filled in from `item` and checked.
pub fn item_task(task: &TaskSpec, template: Option<&Resources>, item: &Value) -> Result<TaskSpec, String> {
    let Some(template) = template else {
        return Ok(task.clone());
    };
    let task = with_item_resources(task, &for_item(template, item)?);
    if let Some(resources) = &task.resources {
        resources.validate(&task.name).map_err(|e| e.to_string())?;
    }
    Ok(task)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn task() -> TaskSpec {
        serde_json::from_value(serde_json::json!({
            "name": "align", "version": "1",
            "interface": {"inputs": {"sample": "struct"}, "outputs": {}},
            "resources": {"cpu": 2, "memory": "4Gi"},
            "run": {"container": {"image": "aligner:1"}}
        }))
        .unwrap()
    }

    fn template(json: serde_json::Value) -> Resources {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn each_item_gets_the_resources_it_names() {
        let template = template(
            serde_json::json!({"memory": "{{item.memory}}", "limits": {"memory": "{{ item.ceiling }}"}}),
        );
        check(&template, &LiteralType::Struct, &task()).unwrap();
        let big = Value::Struct(serde_json::json!({"name": "big", "memory": "64Gi", "ceiling": "80Gi"}));
        let item = item_task(&task(), Some(&template), &big).unwrap();
        let resources = item.resources.unwrap();
        assert_eq!(resources.memory.as_deref(), Some("64Gi"));
        assert_eq!(resources.cpu.as_deref(), Some("2"), "the task's CPU stays");
        assert_eq!(resources.limits.unwrap().memory.as_deref(), Some("80Gi"));
        let small = Value::Map(
            [
                ("memory".to_string(), Value::String("2Gi".into())),
                ("ceiling".to_string(), Value::Integer(3_000_000_000)),
            ]
            .into(),
        );
        let item = item_task(&task(), Some(&template), &small).unwrap();
        assert_eq!(item.resources.unwrap().memory.as_deref(), Some("2Gi"));
    }

    #[test]
    fn bad_templates_and_bad_items_are_named() {
        let bad = template(serde_json::json!({"memory": "{{sample.memory}}"}));
        let error = check(&bad, &LiteralType::Struct, &task()).unwrap_err();
        assert!(error.contains("item_resources.memory"), "{error}");
        let reads = template(serde_json::json!({"cpu": "{{item.cpu}}"}));
        let error = check(&reads, &LiteralType::Integer, &task()).unwrap_err();
        assert!(error.contains("not a struct or map"), "{error}");
        let literal = template(serde_json::json!({"memory": "lots"}));
        assert!(check(&literal, &LiteralType::Struct, &task())
            .unwrap_err()
            .contains("resources.memory"));
        let gpu = template(serde_json::json!({"gpu": 1}));
        assert!(check(&gpu, &LiteralType::Struct, &task())
            .unwrap_err()
            .contains("gpu"));

        let missing = Value::Struct(serde_json::json!({"name": "x"}));
        let error = item_task(&task(), Some(&reads), &missing).unwrap_err();
        assert!(
            error.contains("item_resources.cpu") && error.contains("no field \"cpu\""),
            "{error}"
        );
        let nonsense = Value::Struct(serde_json::json!({"cpu": "fast"}));
        let error = item_task(&task(), Some(&reads), &nonsense).unwrap_err();
        assert!(error.contains("resources.cpu"), "{error}");
    }
}
