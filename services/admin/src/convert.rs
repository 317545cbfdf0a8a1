//! Conversions between wire types (`aloft-proto`) and domain types (`aloft-core`), validated at the boundary.

use aloft_core::events::Outputs;
use aloft_core::{ExecutionId, LiteralType, Value};
use aloft_proto::v1 as wire;

use crate::error::{ApiError, ApiResult};

pub fn literal_type_to_wire(literal_type: &LiteralType) -> wire::LiteralType {
    use wire::literal_type::Kind;
    let simple = |s: wire::SimpleType| Kind::Simple(s as i32);
    let kind = match literal_type {
        LiteralType::Integer => simple(wire::SimpleType::Integer),
        LiteralType::Float => simple(wire::SimpleType::Float),
        LiteralType::String => simple(wire::SimpleType::String),
        LiteralType::Boolean => simple(wire::SimpleType::Boolean),
        LiteralType::Datetime => simple(wire::SimpleType::Datetime),
        LiteralType::Duration => simple(wire::SimpleType::Duration),
        LiteralType::Struct => simple(wire::SimpleType::Struct),
        LiteralType::Blob { format } => Kind::Blob(wire::BlobType {
            format: format.clone(),
        }),
        LiteralType::List(inner) => Kind::List(Box::new(literal_type_to_wire(inner))),
        LiteralType::Map(inner) => Kind::Map(Box::new(literal_type_to_wire(inner))),
        LiteralType::Optional(inner) => Kind::Optional(Box::new(literal_type_to_wire(inner))),
    };
    wire::LiteralType { kind: Some(kind) }
}

pub fn interface_to_wire(interface: &aloft_core::spec::Interface) -> wire::TypedInterface {
    wire::TypedInterface {
        inputs: interface
            .inputs
            .iter()
            .map(|(k, t)| (k.clone(), literal_type_to_wire(t)))
            .collect(),
        outputs: interface
            .outputs
            .iter()
            .map(|(k, t)| (k.clone(), literal_type_to_wire(t)))
            .collect(),
        input_schemas_json: schemas_to_wire(&interface.input_schemas),
        output_schemas_json: schemas_to_wire(&interface.output_schemas),
    }
}

fn schemas_to_wire(
    schemas: &std::collections::BTreeMap<String, serde_json::Value>,
) -> std::collections::HashMap<String, String> {
    schemas
        .iter()
        .map(|(name, schema)| (name.clone(), schema.to_string()))
        .collect()
}

pub fn value_to_wire(value: &Value) -> wire::Literal {
    use wire::literal::Value as W;
    let converted = match value {
        Value::Integer(i) => W::Integer(*i),
        Value::Float(f) => W::Float(*f),
        Value::String(s) => W::String(s.clone()),
        Value::Boolean(b) => W::Boolean(*b),
        Value::Datetime(d) => W::Datetime(d.to_rfc3339()),
        Value::Duration { millis } => W::DurationMillis(*millis),
        Value::Blob {
            uri,
            format,
            digest,
            size,
        } => W::Blob(wire::Blob {
            uri: uri.clone(),
            format: format.clone(),
            digest: digest.clone().unwrap_or_default(),
            size: size.unwrap_or_default(),
        }),
        Value::List(items) => W::List(wire::LiteralList {
            values: items.iter().map(value_to_wire).collect(),
        }),
        Value::Map(entries) => W::Map(outputs_to_wire(entries)),
        Value::Struct(json) => W::StructJson(json.to_string()),
        Value::None => W::None(wire::NoneValue {}),
        Value::Offloaded {
            uri,
            size,
            digest,
            value_type,
        } => W::Offloaded(wire::OffloadedValue {
            uri: uri.clone(),
            size: *size,
            digest: digest.clone(),
            r#type: Some(literal_type_to_wire(value_type)),
        }),
    };
    wire::Literal {
        value: Some(converted),
    }
}

pub fn outputs_to_wire(outputs: &Outputs) -> wire::LiteralMap {
    wire::LiteralMap {
        values: outputs
            .iter()
            .map(|(k, v)| (k.clone(), value_to_wire(v)))
            .collect(),
    }
}

/// Converts a wire literal given the type it must have; `path` names it in errors.
pub fn value_from_wire(literal: &wire::Literal, expected: &LiteralType, path: &str) -> ApiResult<Value> {
    use wire::literal::Value as W;
    let invalid = |reason: String| ApiError::InvalidArgument(format!("input {path}: {reason}"));
    let Some(value) = &literal.value else {
        return Err(invalid("has no value".to_string()));
    };
    let converted = match (expected, value) {
        (LiteralType::Optional(_), W::None(_)) => Value::None,
        (LiteralType::Optional(inner), _) => return value_from_wire(literal, inner, path),
        (LiteralType::Integer, W::Integer(i)) => Value::Integer(*i),
        (LiteralType::Float, W::Float(f)) => Value::Float(*f),
        (LiteralType::Float, W::Integer(i)) => Value::Float(*i as f64),
        (LiteralType::String, W::String(s)) => Value::String(s.clone()),
        (LiteralType::Boolean, W::Boolean(b)) => Value::Boolean(*b),
        (LiteralType::Datetime, W::Datetime(text)) => {
            expected.parse_text(text).map_err(|e| invalid(e.to_string()))?
        }
        (LiteralType::Duration, W::DurationMillis(millis)) => Value::Duration { millis: *millis },
        (LiteralType::Blob { format }, W::Blob(blob)) => Value::Blob {
            uri: blob.uri.clone(),
            digest: Some(blob.digest.clone()).filter(|digest| !digest.is_empty()),
            size: Some(blob.size).filter(|size| *size > 0),
            format: if blob.format.is_empty() {
                format.clone()
            } else {
                blob.format.clone()
            },
        },
        (LiteralType::Struct, W::StructJson(text)) => {
            Value::Struct(serde_json::from_str(text).map_err(|e| invalid(format!("invalid JSON: {e}")))?)
        }
        (LiteralType::List(inner), W::List(list)) => Value::List(
            list.values
                .iter()
                .enumerate()
                .map(|(i, item)| value_from_wire(item, inner, &format!("{path}[{i}]")))
                .collect::<ApiResult<_>>()?,
        ),
        (LiteralType::Map(inner), W::Map(map)) => Value::Map(
            map.values
                .iter()
                .map(|(k, item)| value_from_wire(item, inner, &format!("{path}.{k}")).map(|v| (k.clone(), v)))
                .collect::<ApiResult<_>>()?,
        ),
        (_, W::Offloaded(_)) => return Err(invalid(
            "an offloaded value (a reference into the blob store) cannot be given; pass the value itself, \
                 which is offloaded again if it is large"
                .to_string(),
        )),
        (expected, _) => return Err(invalid(format!("expected a value of type {expected}"))),
    };
    expected.check(&converted).map_err(|e| invalid(e.to_string()))?;
    Ok(converted)
}

pub fn execution_id_from_wire(id: Option<&wire::ExecutionIdentifier>) -> ApiResult<ExecutionId> {
    let id = id.ok_or_else(|| ApiError::InvalidArgument("id is required".to_string()))?;
    ExecutionId::try_from(id).map_err(|e| ApiError::InvalidArgument(e.to_string()))
}

/// Who caused something, as the API shows it.
pub fn principal_to_wire(principal: &aloft_core::principal::Principal) -> wire::Principal {
    wire::Principal {
        subject: principal.subject.clone(),
        name: principal.name.clone(),
        via: principal.via.as_str().to_string(),
    }
}

pub fn principal_wire(principal: Option<&aloft_core::principal::Principal>) -> Option<wire::Principal> {
    principal.map(principal_to_wire)
}
