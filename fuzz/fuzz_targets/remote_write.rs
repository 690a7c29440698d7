//! The remote-write decoder on arbitrary bodies: as sent (snappy), and with valid snappy around
//! arbitrary protobuf so the protobuf and validation layers are reached too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = tocsin_wire::Limits::default();
    let _ = tocsin_wire::decode(data, &limits);
    if let Ok(body) = snap::raw::Encoder::new().compress_vec(data) {
        if let Ok(series) = tocsin_wire::decode(&body, &limits) {
            // Whatever decodes obeys the limits.
            assert!(series.iter().map(|s| s.samples.len()).sum::<usize>() <= limits.max_samples);
            assert!(series.iter().all(|s| s.labels.len() <= limits.max_labels_per_series));
        }
    }
});
