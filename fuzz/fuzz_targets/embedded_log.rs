//! The embedded log's file (`aloft dev`'s events.log), torn or corrupted: opening it recovers what its
//! checksums vouch for or answers an error naming the byte, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    if std::fs::write(dir.path().join("events.log"), data).is_err() {
        return;
    }
    let _ = aloft_eventlog::embedded::EmbeddedLog::open(dir.path());
});
