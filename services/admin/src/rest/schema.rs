//! The API's messages as the REST edge needs them, read from the protos' own descriptor set: a JSON Schema
//! of each message in the proto3 JSON mapping the generated serde code speaks (for the OpenAPI document),
//! and the type of each field a query string may set (so `?limit=5&top_level=true&labels.team=ml`
//! becomes the same request message a JSON body would).

use std::collections::BTreeMap;

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto};
use serde_json::{json, Map, Value};

const PACKAGE: &str = ".aloft.v1.";

/// Every message and enum of the `aloft.v1` package, by short name (nested map entries by their
/// `Outer.Entry` name).
pub struct Schemas {
    messages: BTreeMap<String, DescriptorProto>,
    enums: BTreeMap<String, Vec<String>>,
}

/// Why a REST request cannot become its request message (always answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestShapeError {
    #[error("no message {0}")]
    NoMessage(String),
    #[error("unknown query parameter {key:?}; this call takes {known}")]
    UnknownParameter { key: String, known: String },
    #[error("query parameter {key:?}: name the key, as {field}.KEY=VALUE")]
    MapKeyMissing { key: String, field: String },
    #[error("query parameter {key:?}: {field} is a message; send it in the request body")]
    MessageInQuery { key: String, field: String },
    #[error("query parameter {key:?} is given {times} times; give it once")]
    Repeated { key: String, times: usize },
    #[error("query parameter {key:?} is a boolean (true or false), not {value:?}")]
    NotBoolean { key: String, value: String },
    #[error("the body must be a JSON object ({message})")]
    BodyNotObject { message: &'static str },
    #[error("the body is not valid JSON: {0}")]
    BodyNotJson(String),
}

/// What a query parameter names, once resolved against a request message.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Bool,
    /// Numbers, strings, bytes and enums all travel as JSON strings, which the serde code accepts.
    Text,
}

impl Schemas {
    pub fn load() -> Result<Schemas, prost::DecodeError> {
        let set = prost_types::FileDescriptorSet::decode(aloft_proto::FILE_DESCRIPTOR_SET)?;
        let mut schemas = Schemas {
            messages: BTreeMap::new(),
            enums: BTreeMap::new(),
        };
        for file in set.file {
            for message in file.message_type {
                schemas.add_message("", message);
            }
            for enumeration in file.enum_type {
                schemas.enums.insert(
                    enumeration.name().to_string(),
                    enumeration.value.iter().map(|v| v.name().to_string()).collect(),
                );
            }
        }
        Ok(schemas)
    }

    fn add_message(&mut self, outer: &str, message: DescriptorProto) {
        let name = format!("{outer}{}", message.name());
        for nested in message.nested_type.clone() {
            self.add_message(&format!("{name}."), nested);
        }
        for enumeration in &message.enum_type {
            self.enums.insert(
                format!("{name}.{}", enumeration.name()),
                enumeration.value.iter().map(|v| v.name().to_string()).collect(),
            );
        }
        self.messages.insert(name, message);
    }

    pub fn has_message(&self, name: &str) -> bool {
        self.messages.contains_key(name)
    }

    fn short(type_name: &str) -> &str {
        type_name.strip_prefix(PACKAGE).unwrap_or(type_name)
    }

    fn map_entry(&self, field: &FieldDescriptorProto) -> Option<&DescriptorProto> {
        if field.r#type() != Type::Message {
            return None;
        }
        self.messages
            .get(Self::short(field.type_name()))
            .filter(|m| m.options.as_ref().is_some_and(|o| o.map_entry()))
    }

    /// The JSON Schema of one field's value (one element, for a repeated field).
    fn value_schema(&self, field: &FieldDescriptorProto) -> Value {
        match field.r#type() {
            Type::String => json!({"type": "string"}),
            Type::Bool => json!({"type": "boolean"}),
            Type::Int32 | Type::Sint32 | Type::Sfixed32 => json!({"type": "integer", "format": "int32"}),
            Type::Uint32 | Type::Fixed32 => json!({"type": "integer", "format": "int32", "minimum": 0}),
            // The proto3 JSON mapping writes 64-bit integers as strings (JavaScript numbers lose digits).
            Type::Int64 | Type::Sint64 | Type::Sfixed64 => json!({"type": "string", "format": "int64"}),
            Type::Uint64 | Type::Fixed64 => json!({"type": "string", "format": "uint64"}),
            Type::Double => json!({"type": "number", "format": "double"}),
            Type::Float => json!({"type": "number", "format": "float"}),
            Type::Bytes => json!({"type": "string", "format": "byte"}),
            Type::Enum => {
                let name = Self::short(field.type_name());
                json!({"type": "string", "enum": self.enums.get(name).cloned().unwrap_or_default()})
            }
            Type::Message | Type::Group => {
                json!({"$ref": format!("#/components/schemas/{}", Self::short(field.type_name()))})
            }
        }
    }

    fn field_schema(&self, field: &FieldDescriptorProto) -> Value {
        if let Some(entry) = self.map_entry(field) {
            let value = entry.field.iter().find(|f| f.number() == 2);
            return json!({
                "type": "object",
                "additionalProperties": value.map_or(json!({}), |v| self.value_schema(v)),
            });
        }
        if field.label() == Label::Repeated {
            return json!({"type": "array", "items": self.value_schema(field)});
        }
        self.value_schema(field)
    }

    /// The JSON Schema of every message (map entries aside), for the OpenAPI document's components.
    pub fn component_schemas(&self) -> Map<String, Value> {
        let mut components = Map::new();
        for (name, message) in &self.messages {
            if message.options.as_ref().is_some_and(|o| o.map_entry()) {
                continue;
            }
            let mut properties = Map::new();
            for field in &message.field {
                let mut schema = self.field_schema(field);
                if field.oneof_index.is_some() && !field.proto3_optional() {
                    if let Some(oneof) = message.oneof_decl.get(field.oneof_index() as usize) {
                        let note = format!("One of `{}`: set at most one of them.", oneof.name());
                        schema = described(schema, note);
                    }
                }
                properties.insert(field.name().to_string(), schema);
            }
            components.insert(
                name.clone(),
                json!({"type": "object", "properties": properties, "additionalProperties": false}),
            );
        }
        components
    }

    /// The fields of message `name` a query string may set: scalar fields, repeated scalars and string
    /// maps (`labels.team=ml`), not nested messages (those are set through the path or the body).
    pub fn query_fields(&self, name: &str) -> Vec<(String, Value, bool)> {
        let Some(message) = self.messages.get(name) else {
            return Vec::new();
        };
        message
            .field
            .iter()
            .filter(|field| field.r#type() != Type::Message || self.map_entry(field).is_some())
            .map(|field| {
                let name = match self.map_entry(field) {
                    Some(_) => format!("{}.{{key}}", field.name()),
                    None => field.name().to_string(),
                };
                let schema = match self.map_entry(field) {
                    Some(entry) => entry
                        .field
                        .iter()
                        .find(|f| f.number() == 2)
                        .map_or(json!({"type": "string"}), |v| self.value_schema(v)),
                    None => self.field_schema(field),
                };
                (
                    name,
                    schema,
                    field.label() == Label::Repeated && self.map_entry(field).is_none(),
                )
            })
            .collect()
    }

    /// Sets query parameter `key` (every value it was given) on `request`, a JSON object of message
    /// `message`, typed by the field it names. Errors name the parameter and what it takes.
    pub fn set_query_value(
        &self,
        message: &str,
        request: &mut Map<String, Value>,
        key: &str,
        values: &[String],
    ) -> Result<(), RequestShapeError> {
        let descriptor = self
            .messages
            .get(message)
            .ok_or_else(|| RequestShapeError::NoMessage(message.to_string()))?;
        let (field_name, map_key) = match key.split_once('.') {
            Some((field, rest)) => (field, Some(rest)),
            None => (key, None),
        };
        let Some(field) = descriptor.field.iter().find(|f| f.name() == field_name) else {
            let known: Vec<String> = self
                .query_fields(message)
                .into_iter()
                .map(|(n, _, _)| n)
                .collect();
            return Err(RequestShapeError::UnknownParameter {
                key: key.to_string(),
                known: if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                },
            });
        };
        if let Some(entry) = self.map_entry(field) {
            let Some(map_key) = map_key.filter(|k| !k.is_empty()) else {
                return Err(RequestShapeError::MapKeyMissing {
                    key: key.to_string(),
                    field: field_name.to_string(),
                });
            };
            let value_field = entry.field.iter().find(|f| f.number() == 2);
            let scalar = value_field.map_or(Scalar::Text, scalar_of);
            let value = single(key, values)?;
            let map = request
                .entry(field_name.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(map) = map {
                map.insert(map_key.to_string(), typed(key, &scalar, value)?);
            }
            return Ok(());
        }
        if map_key.is_some() || field.r#type() == Type::Message {
            return Err(RequestShapeError::MessageInQuery {
                key: key.to_string(),
                field: field_name.to_string(),
            });
        }
        let scalar = scalar_of(field);
        let value = if field.label() == Label::Repeated {
            // `phases=RUNNING&phases=FAILED` or `phases=RUNNING,FAILED`.
            let items: Vec<Value> = values
                .iter()
                .flat_map(|v| v.split(','))
                .filter(|v| !v.is_empty())
                .map(|v| typed(key, &scalar, v))
                .collect::<Result<_, _>>()?;
            Value::Array(items)
        } else {
            typed(key, &scalar, single(key, values)?)?
        };
        request.insert(field_name.to_string(), value);
        Ok(())
    }
}

fn scalar_of(field: &FieldDescriptorProto) -> Scalar {
    if field.r#type() == Type::Bool {
        Scalar::Bool
    } else {
        Scalar::Text
    }
}

fn single<'v>(key: &str, values: &'v [String]) -> Result<&'v str, RequestShapeError> {
    match values {
        [value] => Ok(value),
        _ => Err(RequestShapeError::Repeated {
            key: key.to_string(),
            times: values.len(),
        }),
    }
}

fn typed(key: &str, scalar: &Scalar, value: &str) -> Result<Value, RequestShapeError> {
    match scalar {
        Scalar::Text => Ok(Value::String(value.to_string())),
        Scalar::Bool => match value {
            "true" | "1" | "" => Ok(Value::Bool(true)),
            "false" | "0" => Ok(Value::Bool(false)),
            other => Err(RequestShapeError::NotBoolean {
                key: key.to_string(),
                value: other.to_string(),
            }),
        },
    }
}

/// `schema` with a description. OpenAPI 3.0 ignores the siblings of a `$ref`, so a reference is wrapped in
/// `allOf`; any other schema takes the description itself (generators read a wrapped scalar as an object).
fn described(schema: Value, description: String) -> Value {
    match schema {
        Value::Object(mut fields) if !fields.contains_key("$ref") => {
            fields.insert("description".to_string(), Value::String(description));
            Value::Object(fields)
        }
        other => json!({"allOf": [other], "description": description}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_become_the_typed_fields_of_the_request_message() {
        let schemas = Schemas::load().unwrap();
        let mut request = Map::new();
        let set = |request: &mut Map<String, Value>, key: &str, values: &[&str]| {
            let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            schemas.set_query_value("ListNodeExecutionsRequest", request, key, &values)
        };
        set(&mut request, "top_level", &["true"]).unwrap();
        set(&mut request, "limit", &["5"]).unwrap();
        set(&mut request, "phases", &["NODE_FAILED,NODE_RUNNING"]).unwrap();
        let parsed: aloft_proto::v1::ListNodeExecutionsRequest =
            serde_json::from_value(Value::Object(request.clone())).unwrap();
        assert!(parsed.top_level);
        assert_eq!(parsed.limit, 5);
        assert_eq!(parsed.phases.len(), 2);
        let error = set(&mut request, "top_level", &["maybe"]).unwrap_err();
        assert!(error.to_string().contains("boolean"), "{error}");
        let error = set(&mut request, "colour", &["red"]).unwrap_err();
        assert!(
            error.to_string().contains("unknown query parameter \"colour\"")
                && error.to_string().contains("top_level"),
            "{error}"
        );
        let error = set(&mut request, "id", &["x"]).unwrap_err();
        assert!(error.to_string().contains("request body"), "{error}");
    }

    #[test]
    fn labels_are_set_one_key_at_a_time() {
        let schemas = Schemas::load().unwrap();
        let mut request = Map::new();
        let values = vec!["ml".to_string()];
        schemas
            .set_query_value("ListExecutionsRequest", &mut request, "labels.team", &values)
            .unwrap();
        let parsed: aloft_proto::v1::ListExecutionsRequest =
            serde_json::from_value(Value::Object(request)).unwrap();
        assert_eq!(parsed.labels.get("team").map(String::as_str), Some("ml"));
    }

    #[test]
    fn every_message_has_a_schema_and_64_bit_integers_are_strings() {
        let schemas = Schemas::load().unwrap();
        let components = schemas.component_schemas();
        let execution = &components["Execution"]["properties"];
        assert_eq!(execution["created_at_millis"]["type"], "string");
        assert_eq!(execution["phase"]["enum"][3], "SUCCEEDED");
        assert_eq!(execution["labels"]["type"], "object");
        assert!(!components.contains_key("Execution.LabelsEntry"));
    }
}
