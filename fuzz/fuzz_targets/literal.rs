//! Literal values as users type them (`aloft run --input k=v`) and tasks write them: the first line names
//! a type (`list<map<integer>>`), the rest is the value's text; parsing, JSON conversion and checking
//! answer an error or a value, never a panic.
#![no_main]

use aloft_core::types::LiteralType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (type_text, value_text) = text.split_once('\n').unwrap_or((text, ""));
    let _ = aloft_core::types::parse_duration_millis(value_text);
    let Ok(literal_type) = type_text.parse::<LiteralType>() else {
        return;
    };
    if let Ok(value) = literal_type.parse_text(value_text) {
        let _ = literal_type.check(&value);
        let _ = value.to_text();
    }
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(value_text) {
        let _ = literal_type.from_json(&json);
    }
});
