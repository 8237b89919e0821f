//! Decodes arbitrary bytes as an executor call: it may fail, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meseta_api::executor::Call;

fuzz_target!(|data: &[u8]| {
    if let Ok(call) = serde_json::from_slice::<Call>(data) {
        let _ = call.validate();
        let again = serde_json::to_vec(&call).expect("a decoded call encodes");
        serde_json::from_slice::<Call>(&again).expect("an encoded call decodes");
    }
});
