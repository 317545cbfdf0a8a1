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
}
