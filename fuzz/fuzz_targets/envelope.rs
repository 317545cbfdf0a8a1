//! Records read from the log: any bytes decode to envelopes or to an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = aloft_eventlog::Envelope::decode(data);
    let _ = aloft_eventlog::Envelope::decode_all(data);
});
