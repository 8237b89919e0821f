//! Feeds arbitrary bytes to the RecordIO decoder in two pieces: it may report an error,
//! never panic, and every record it yields lies within the input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meseta_api::recordio::Decoder;

fuzz_target!(|data: &[u8]| {
    let cut = data.first().map_or(0, |b| *b as usize).min(data.len());
    let mut decoder = Decoder::new();
    let mut total = 0;
    for piece in [&data[..cut], &data[cut..]] {
        decoder.feed(piece);
        while let Ok(Some(record)) = decoder.next_record() {
            total += record.len();
            assert!(total <= data.len());
        }
    }
});
