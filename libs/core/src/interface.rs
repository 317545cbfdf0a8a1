//! What flows between tasks: a task's typed `Interface` and the `Outputs` (named values) it produces. Shared
//! by specs, events, the cache and the state machine; imports only the type system below it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{LiteralType, Value};

/// Named values: the inputs an attempt receives, the outputs it produces.
pub type Outputs = BTreeMap<String, Value>;

/// Named, typed inputs and outputs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    #[serde(default)]
    pub inputs: BTreeMap<String, LiteralType>,
    #[serde(default)]
    pub outputs: BTreeMap<String, LiteralType>,
    /// JSON Schemas of inputs whose type alone does not say their shape: a struct's fields (a dataclass
    /// or pydantic model), an enum's values, a dataframe's columns. They are carried for readers (the
    /// API, the console, clients, the SDK's own checks); the engine checks values by type only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub input_schemas: BTreeMap<String, serde_json::Value>,
    /// The same for outputs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub output_schemas: BTreeMap<String, serde_json::Value>,
}

/// The largest schema one variable may carry, as JSON text: it travels in every registration event.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
