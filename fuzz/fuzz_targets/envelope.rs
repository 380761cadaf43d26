//! Arbitrary message bodies through the envelope, request and reply decoders.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = fjord_oslo::fuzzing::check_envelope(data) {
        panic!("{violation}");
    }
});
