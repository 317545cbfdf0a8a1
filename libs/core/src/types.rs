//! The literal type system and literal values.
//!
//! Types are written the way users write them in specs: `integer`, `float`, `string`, `boolean`,
//! `datetime`, `duration`, `blob`, `blob<csv>`, `list<T>`, `map<T>` (string keys), `struct` (JSON) and
//! `optional<T>`. Values serialize with an explicit tag so a `map<integer>` and a `struct` never collide.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a value does not fit its type, or text does not parse as one; nested variants say where inside a
/// list or map the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("expected {expected}, got {found}")]
    Mismatch { expected: LiteralType, found: String },
    #[error("expected a blob of format {expected}, got format {found}")]
    BlobFormat { expected: String, found: String },
    #[error("{text:?} is not {what}")]
    NotA { text: String, what: &'static str },
    #[error("a blob needs a URI or path")]
    EmptyBlob,
    #[error("expected JSON for {expected}: {reason}")]
    NotJson { expected: LiteralType, reason: String },
    #[error("item {index}: {source}")]
    Item { index: usize, source: Box<ValueError> },
    #[error("key {key:?}: {source}")]
    Key { key: String, source: Box<ValueError> },
}

impl ValueError {
    fn in_item(index: usize) -> impl FnOnce(ValueError) -> ValueError {
        move |source| ValueError::Item {
            index,
            source: Box::new(source),
        }
    }

    fn in_key(key: &str) -> impl FnOnce(ValueError) -> ValueError + '_ {
        move |source| ValueError::Key {
            key: key.to_string(),
            source: Box::new(source),
        }
    }
}

const DATETIME: &str = "a datetime (RFC 3339, e.g. 2026-01-31T12:00:00Z, or a date 2026-01-31)";
const DURATION: &str = "a duration (e.g. 250ms, 30s, 5m, 1h30m, 2d)";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LiteralType {
    Integer,
    Float,
    String,
    Boolean,
    Datetime,
    Duration,
    /// A file or directory passed by URI; `format` is free text such as `csv` (empty = any).
    Blob {
        format: String,
    },
    List(Box<LiteralType>),
    /// A map with string keys.
    Map(Box<LiteralType>),
    /// Free-form JSON.
    Struct,
    Optional(Box<LiteralType>),
}

impl LiteralType {
    /// Whether a value of type `self` may be bound to an input of type `target`.
    pub fn is_assignable_to(&self, target: &LiteralType) -> bool {
        match (self, target) {
            (a, b) if a == b => true,
            (LiteralType::Blob { format: from }, LiteralType::Blob { format: to }) => {
                to.is_empty() || from.is_empty() || from == to
            }
            (LiteralType::Optional(a), LiteralType::Optional(b)) => a.is_assignable_to(b),
            (a, LiteralType::Optional(b)) => a.is_assignable_to(b),
            (LiteralType::List(a), LiteralType::List(b)) | (LiteralType::Map(a), LiteralType::Map(b)) => {
                a.is_assignable_to(b)
            }
            _ => false,
        }
    }

    /// Checks that `value` has this type; the error says where inside the value the mismatch is.
    pub fn check(&self, value: &Value) -> Result<(), ValueError> {
        match (self, value) {
            (expected, Value::Offloaded { value_type, .. }) => {
                if value_type.is_assignable_to(expected) {
                    Ok(())
                } else {
                    Err(ValueError::Mismatch {
                        expected: expected.clone(),
                        found: format!("an offloaded {value_type}"),
                    })
                }
            }
            (LiteralType::Optional(_), Value::None) => Ok(()),
            (LiteralType::Optional(inner), other) => inner.check(other),
            (LiteralType::Integer, Value::Integer(_))
            | (LiteralType::Float, Value::Float(_))
            | (LiteralType::String, Value::String(_))
            | (LiteralType::Boolean, Value::Boolean(_))
            | (LiteralType::Datetime, Value::Datetime(_))
            | (LiteralType::Duration, Value::Duration { .. })
            | (LiteralType::Struct, Value::Struct(_)) => Ok(()),
            (
                LiteralType::Blob { format },
                Value::Blob {
                    format: value_format, ..
                },
            ) => {
                if format.is_empty() || value_format.is_empty() || format == value_format {
                    Ok(())
                } else {
                    Err(ValueError::BlobFormat {
                        expected: format.clone(),
                        found: value_format.clone(),
                    })
                }
            }
            (LiteralType::List(inner), Value::List(items)) => {
                for (index, item) in items.iter().enumerate() {
                    inner.check(item).map_err(ValueError::in_item(index))?;
                }
                Ok(())
            }
            (LiteralType::Map(inner), Value::Map(entries)) => {
                for (key, item) in entries {
                    inner.check(item).map_err(ValueError::in_key(key))?;
                }
                Ok(())
            }
            (expected, got) => Err(ValueError::Mismatch {
                expected: expected.clone(),
                found: got.kind_name().to_string(),
            }),
        }
    }

    /// Parses a value written as text by a user (`--input k=v`) or by a task (an output file).
    /// Scalars are plain text; lists, maps and structs are JSON.
    pub fn parse_text(&self, text: &str) -> Result<Value, ValueError> {
        let not_a = |what| ValueError::NotA {
            text: text.trim().to_string(),
            what,
        };
        let trimmed = text.trim();
        match self {
            LiteralType::String => Ok(Value::String(text.trim_end_matches('\n').to_string())),
            LiteralType::Integer => trimmed
                .parse::<i64>()
                .map(Value::Integer)
                .map_err(|_| not_a("an integer")),
            LiteralType::Float => trimmed
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Value::Float)
                .ok_or_else(|| not_a("a finite float")),
            LiteralType::Boolean => match trimmed.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => Ok(Value::Boolean(true)),
                "false" | "no" | "0" => Ok(Value::Boolean(false)),
                _ => Err(not_a("a boolean (true/false)")),
            },
            LiteralType::Datetime => parse_datetime(trimmed).map(Value::Datetime),
            LiteralType::Duration => parse_duration_millis(trimmed).map(|millis| Value::Duration { millis }),
            LiteralType::Blob { format } => {
                if trimmed.is_empty() {
                    return Err(ValueError::EmptyBlob);
                }
                Ok(Value::Blob {
                    uri: trimmed.to_string(),
                    format: format.clone(),
                    digest: None,
                    size: None,
                })
            }
            LiteralType::Optional(inner) => {
                if trimmed.is_empty() || trimmed == "null" {
                    Ok(Value::None)
                } else {
                    inner.parse_text(text)
                }
            }
            LiteralType::List(_) | LiteralType::Map(_) | LiteralType::Struct => {
                let json: serde_json::Value =
                    serde_json::from_str(trimmed).map_err(|e| ValueError::NotJson {
                        expected: self.clone(),
                        reason: e.to_string(),
                    })?;
                self.from_json(&json)
            }
        }
    }

    /// Converts plain JSON (as a user or a task writes it) into a typed value.
    pub fn from_json(&self, json: &serde_json::Value) -> Result<Value, ValueError> {
        use serde_json::Value as J;
        match (self, json) {
            (LiteralType::Optional(_), J::Null) => Ok(Value::None),
            (LiteralType::Optional(inner), other) => inner.from_json(other),
            (LiteralType::Integer, J::Number(n)) => {
                n.as_i64().map(Value::Integer).ok_or_else(|| ValueError::NotA {
                    text: n.to_string(),
                    what: "an integer",
                })
            }
            (LiteralType::Float, J::Number(n)) => {
                n.as_f64().map(Value::Float).ok_or_else(|| ValueError::NotA {
                    text: n.to_string(),
                    what: "a float",
                })
            }
            (LiteralType::String, J::String(s)) => Ok(Value::String(s.clone())),
            (LiteralType::Boolean, J::Bool(b)) => Ok(Value::Boolean(*b)),
            (LiteralType::Datetime | LiteralType::Duration | LiteralType::Blob { .. }, J::String(s)) => {
                self.parse_text(s)
            }
            (LiteralType::Struct, any) => Ok(Value::Struct(any.clone())),
            (LiteralType::List(inner), J::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(index, item)| inner.from_json(item).map_err(ValueError::in_item(index)))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::List),
            (LiteralType::Map(inner), J::Object(entries)) => entries
                .iter()
                .map(|(key, item)| {
                    inner
                        .from_json(item)
                        .map(|v| (key.clone(), v))
                        .map_err(ValueError::in_key(key))
                })
                .collect::<Result<BTreeMap<_, _>, _>>()
                .map(Value::Map),
            (expected, got) => Err(ValueError::Mismatch {
                expected: expected.clone(),
                found: format!("JSON {got}"),
            }),
        }
    }
}

impl fmt::Display for LiteralType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LiteralType::Integer => write!(f, "integer"),
            LiteralType::Float => write!(f, "float"),
            LiteralType::String => write!(f, "string"),
            LiteralType::Boolean => write!(f, "boolean"),
            LiteralType::Datetime => write!(f, "datetime"),
            LiteralType::Duration => write!(f, "duration"),
            LiteralType::Blob { format } if format.is_empty() => write!(f, "blob"),
            LiteralType::Blob { format } => write!(f, "blob<{format}>"),
            LiteralType::List(inner) => write!(f, "list<{inner}>"),
            LiteralType::Map(inner) => write!(f, "map<{inner}>"),
            LiteralType::Struct => write!(f, "struct"),
            LiteralType::Optional(inner) => write!(f, "optional<{inner}>"),
        }
    }
}

impl FromStr for LiteralType {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let generic = |prefix: &str| -> Option<&str> {
            text.strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('<'))
                .and_then(|rest| rest.strip_suffix('>'))
        };
        if let Some(inner) = generic("list") {
            return Ok(LiteralType::List(Box::new(inner.parse()?)));
        }
        if let Some(inner) = generic("map") {
            // `map<string, T>` is accepted too: keys are always strings.
            let value_type = inner.strip_prefix("string,").unwrap_or(inner);
            return Ok(LiteralType::Map(Box::new(value_type.parse()?)));
        }
        if let Some(inner) = generic("optional") {
            return Ok(LiteralType::Optional(Box::new(inner.parse()?)));
        }
        if let Some(format) = generic("blob") {
            return Ok(LiteralType::Blob {
                format: format.trim().to_string(),
            });
        }
        match text {
            "integer" | "int" => Ok(LiteralType::Integer),
            "float" => Ok(LiteralType::Float),
            "string" | "str" => Ok(LiteralType::String),
            "boolean" | "bool" => Ok(LiteralType::Boolean),
            "datetime" => Ok(LiteralType::Datetime),
            "duration" => Ok(LiteralType::Duration),
            "blob" | "file" => Ok(LiteralType::Blob {
                format: String::new(),
            }),
            "struct" | "json" => Ok(LiteralType::Struct),
            other => Err(format!(
                "unknown type {other:?}; expected integer, float, string, boolean, datetime, duration, blob, \
                 blob<FORMAT>, list<T>, map<T>, struct or optional<T>"
            )),
        }
    }
}

impl Serialize for LiteralType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for LiteralType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A literal value. Large data is not inlined: blobs are passed by URI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Value {
    Integer(i64),
    Float(f64),
    String(String),
    Boolean(bool),
    Datetime(DateTime<Utc>),
    Duration {
        millis: i64,
    },
    Blob {
        uri: String,
        format: String,
        /// `sha256:HEX` of the content when known (outputs a task wrote as a file); cache keys use it
        /// instead of the URI, so equal content at another place is the same input.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        digest: Option<String>,
        /// Its size in bytes when known (outputs stored in the blob store).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
    },
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
    Struct(serde_json::Value),
    None,
    /// A value too large to travel inline in an event: its text (what a task reads: scalars bare,
    /// collections as JSON) lies in the blob store at `uri`. Readers that need the value itself fetch it
    /// and parse it by `value_type`; identity (cache keys) goes by `digest`.
    Offloaded {
        uri: String,
        /// Bytes of the stored text.
        size: u64,
        /// `sha256:HEX` of the stored text.
        digest: String,
        #[serde(rename = "type")]
        value_type: LiteralType,
    },
}

impl Value {
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Integer(_) => "integer",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Boolean(_) => "boolean",
            Value::Datetime(_) => "datetime",
            Value::Duration { .. } => "duration",
            Value::Blob { .. } => "blob",
            Value::List(_) => "list",
            Value::Map(_) => "map",
            Value::Struct(_) => "struct",
            Value::None => "none",
            Value::Offloaded { .. } => "offloaded value",
        }
    }

    /// Plain JSON, as written into task input files and shown to users.
    pub fn to_plain_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Integer(i) => J::from(*i),
            Value::Float(f) => J::from(*f),
            Value::String(s) => J::from(s.clone()),
            Value::Boolean(b) => J::from(*b),
            Value::Datetime(d) => J::from(d.to_rfc3339()),
            Value::Duration { millis } => J::from(format_duration_millis(*millis)),
            Value::Blob { uri, .. } => J::from(uri.clone()),
            Value::List(items) => J::Array(items.iter().map(Value::to_plain_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_plain_json()))
                    .collect(),
            ),
            Value::Struct(json) => json.clone(),
            Value::None => J::Null,
            // Its content is elsewhere: shown by reference, resolved by whoever needs the value.
            Value::Offloaded {
                uri,
                size,
                value_type,
                ..
            } => serde_json::json!({"offloaded": uri, "size": size, "type": value_type.to_string()}),
        }
    }

    /// The text form a task reads from its input file: scalars bare, collections as JSON.
    pub fn to_text(&self) -> String {
        match self {
            Value::String(s) => s.clone(),
            Value::Blob { uri, .. } => uri.clone(),
            Value::Datetime(d) => d.to_rfc3339(),
            Value::Duration { millis } => format_duration_millis(*millis),
            Value::None => String::new(),
            Value::Offloaded { .. }
            | Value::Integer(_)
            | Value::Float(_)
            | Value::Boolean(_)
            | Value::List(_)
            | Value::Map(_)
            | Value::Struct(_) => self.to_plain_json().to_string(),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(s) => write!(f, "{s:?}"),
            other => write!(f, "{}", other.to_text()),
        }
    }
}

fn parse_datetime(text: &str) -> Result<DateTime<Utc>, ValueError> {
    if let Ok(parsed) = DateTime::parse_from_rfc3339(text) {
        return Ok(parsed.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        if let Some(midnight) = date.and_hms_opt(0, 0, 0) {
            return Ok(midnight.and_utc());
        }
    }
    Err(ValueError::NotA {
        text: text.to_string(),
        what: DATETIME,
    })
}

/// Parses durations such as `250ms`, `30s`, `5m`, `1h30m`, `2d`; a bare number is seconds.
pub fn parse_duration_millis(text: &str) -> Result<i64, ValueError> {
    let invalid = || ValueError::NotA {
        text: text.to_string(),
        what: DURATION,
    };
    if text.is_empty() {
        return Err(invalid());
    }
    if let Ok(seconds) = text.parse::<i64>() {
        return seconds.checked_mul(1000).ok_or_else(invalid);
    }
    let mut total: i64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid());
        }
        let amount: i64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit_millis = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        total = amount
            .checked_mul(unit_millis)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(invalid)?;
    }
    Ok(total)
}

pub fn format_duration_millis(millis: i64) -> String {
    if millis % 1000 != 0 {
        format!("{millis}ms")
    } else {
        format!("{}s", millis / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_round_trip_through_their_text_form() {
        for text in [
            "integer",
            "list<map<float>>",
            "optional<blob<csv>>",
            "struct",
            "duration",
        ] {
            let parsed: LiteralType = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
        }
        assert!("list<widget>"
            .parse::<LiteralType>()
            .unwrap_err()
            .contains("widget"));
    }

    #[test]
    fn values_are_parsed_by_their_declared_type() {
        assert_eq!(
            LiteralType::Integer.parse_text("42\n").unwrap(),
            Value::Integer(42)
        );
        assert!(LiteralType::Integer
            .parse_text("4.2")
            .unwrap_err()
            .to_string()
            .contains("not an integer"));
        assert_eq!(LiteralType::Float.parse_text("0.5").unwrap(), Value::Float(0.5));
        let list: LiteralType = "list<integer>".parse().unwrap();
        assert_eq!(
            list.parse_text("[1,2]").unwrap(),
            Value::List(vec![Value::Integer(1), Value::Integer(2)])
        );
        assert!(list
            .parse_text("[1,\"x\"]")
            .unwrap_err()
            .to_string()
            .contains("item 1"));
        assert_eq!(
            LiteralType::Duration.parse_text("1h30m").unwrap(),
            Value::Duration { millis: 5_400_000 }
        );
        assert!(LiteralType::Datetime.parse_text("yesterday").is_err());
    }

    #[test]
    fn optional_accepts_none_and_inner_type() {
        let optional: LiteralType = "optional<integer>".parse().unwrap();
        assert!(optional.check(&Value::None).is_ok());
        assert!(optional.check(&Value::Integer(1)).is_ok());
        assert!(optional.check(&Value::String("x".into())).is_err());
        assert!(LiteralType::Integer.is_assignable_to(&optional));
        assert!(!optional.is_assignable_to(&LiteralType::Integer));
    }
}
