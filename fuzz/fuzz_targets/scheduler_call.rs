//! Decodes arbitrary bytes as a scheduler call: it may fail, never panic, and what decodes
//! must survive a round trip.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meseta_api::scheduler::Call;

fuzz_target!(|data: &[u8]| {
    if let Ok(call) = serde_json::from_slice::<Call>(data) {
        let _ = call.validate();
        let again = serde_json::to_vec(&call).expect("a decoded call encodes");
        let back: Call = serde_json::from_slice(&again).expect("an encoded call decodes");
        assert_eq!(back.kind.type_name(), call.kind.type_name());
    }
});
