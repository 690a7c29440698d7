//! Cost of decoding a remote-write request (snappy, protobuf, validation into model series),
//! per sample, for the two request shapes of the ingest benchmark, against prost's generic
//! decoding of the same bytes (without validation).
//!   cargo bench -p tocsin-wire --bench decode
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use prost::Message;
use std::time::Instant;
use tocsin_model::{Labels, Sample, SeriesSamples, METRIC_NAME};

fn request(series: usize, samples: usize) -> Vec<u8> {
    let body: Vec<SeriesSamples> = (0..series)
        .map(|s| SeriesSamples {
            labels: Labels::from_pairs([
                (METRIC_NAME, format!("loadgen_metric_{}", s % 50)),
                ("host", "agent-00042".to_string()),
                ("instance", "10.0.0.42:9100".to_string()),
                ("device", format!("dev{}", s / 50)),
                ("job", "node".to_string()),
            ]),
            samples: (0..samples)
                .map(|i| Sample::new(1_700_000_000_000 + i as i64 * 10_000, (s * i) as f64))
                .collect(),
        })
        .collect();
    tocsin_wire::encode(&tocsin_wire::to_request(&body))
}

fn median_ns_per_sample(samples: usize, mut f: impl FnMut()) -> (f64, Vec<f64>) {
    let reps = 200;
    let mut runs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        runs.push(t.elapsed().as_nanos() as f64 / (reps * samples) as f64);
    }
    let all = runs.clone();
    runs.sort_by(f64::total_cmp);
    (runs[2], all)
}

fn main() {
    let limits = tocsin_wire::Limits::default();
    for (series, samples) in [(2000, 1), (500, 4)] {
        let body = request(series, samples);
        let n = series * samples;
        let (ours, runs) = median_ns_per_sample(n, || {
            std::hint::black_box(tocsin_wire::decode(&body, &limits).unwrap());
        });
        let (prost, _) = median_ns_per_sample(n, || {
            let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
            std::hint::black_box(tocsin_wire::WriteRequest::decode(raw.as_slice()).unwrap());
        });
        println!(
            "{series} series x {samples} samples: decode median {ours:.1} ns/sample ({runs:.1?}); \
             prost alone {prost:.1} ns/sample"
        );
    }
}
