//! Decodes arbitrary bytes as an operator call: it may fail, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meseta_api::operator::Call;

fuzz_target!(|data: &[u8]| {
    if let Ok(call) = serde_json::from_slice::<Call>(data) {
        let again = serde_json::to_vec(&call).expect("a decoded call encodes");
        serde_json::from_slice::<Call>(&again).expect("an encoded call decodes");
    }
});
