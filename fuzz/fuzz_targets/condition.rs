//! Branch conditions (`prep.n > 10 and inputs.mode == 'fast'`): parsing, type-checking and evaluating any
//! text answers an error or a value, never a panic.
#![no_main]

use aloft_core::condition::parse_condition;
use aloft_core::types::{LiteralType, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(condition) = parse_condition(text) else {
        return;
    };
    for literal_type in [LiteralType::Integer, LiteralType::Float, LiteralType::String, LiteralType::Boolean] {
        let _ = condition.check_types(&|_: &String| literal_type.clone());
    }
    for value in [Value::Integer(3), Value::Float(-0.5), Value::String("x".into()), Value::Boolean(true)] {
        let _ = condition.evaluate::<()>(&|_: &String| Ok(value.clone()));
    }
});
