//! Cost of one detector update and the memory of one series' state; what a checkpoint costs
//! per series (the binary form against the JSON of earlier versions).
//!   cargo bench -p tocsin-baseline --bench update
use std::time::Instant;

fn main() {
    let n = 5_000_000u64;
    let mut runs = Vec::new();
    for _ in 0..5 {
        let mut d = tocsin_baseline::Detector::new(Default::default());
        let t = Instant::now();
        let mut acc = 0.0;
        for i in 0..n {
            let x = 50.0 + ((i * 2_654_435_761) % 1000) as f64 / 100.0;
            acc += d.update(i as i64 * 10_000, x).score;
        }
        let ns = t.elapsed().as_nanos() as f64 / n as f64;
        std::hint::black_box(acc);
        runs.push(ns);
    }
    runs.sort_by(f64::total_cmp);
    // The state of a series that has learned (the surprise histogram is allocated on first use).
    let mut d = tocsin_baseline::Detector::new(Default::default());
    for i in 0..1000 {
        d.update(i * 10_000, 50.0);
    }
    println!(
        "detector update: median {:.1} ns/sample over 5 runs of {n} ({:?}); state {} bytes per series",
        runs[2],
        runs.iter().map(|r| (r * 10.0).round() / 10.0).collect::<Vec<_>>(),
        d.state_bytes()
    );
    // A checkpoint: every series' state written, and read back at start. A series that has
    // learned every part (a week and a half of 5-minute samples).
    let mut d = tocsin_baseline::Detector::new(Default::default());
    for i in 0..5_000i64 {
        d.update(i * 300_000, 50.0 + ((i * 7919) % 101) as f64 / 10.0);
    }
    let per = |f: &mut dyn FnMut()| {
        let mut runs: Vec<f64> = (0..5)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..20_000 {
                    f();
                }
                t.elapsed().as_nanos() as f64 / 20_000.0 / 1000.0
            })
            .collect();
        runs.sort_by(f64::total_cmp);
        runs[2]
    };
    let bytes = d.to_bytes();
    let json = serde_json::to_string(&d).unwrap();
    let cfg = tocsin_baseline::DetectorConfig::default();
    let enc = per(&mut || {
        std::hint::black_box(d.to_bytes());
    });
    let dec = per(&mut || {
        std::hint::black_box(tocsin_baseline::Detector::from_bytes(&bytes, cfg).unwrap());
    });
    let jenc = per(&mut || {
        std::hint::black_box(serde_json::to_string(&d).unwrap());
    });
    let jdec = per(&mut || {
        std::hint::black_box(serde_json::from_str::<tocsin_baseline::Detector>(&json).unwrap());
    });
    println!(
        "checkpoint per series: {} bytes, write {enc:.2} us, read {dec:.2} us (JSON: {} bytes, write {jenc:.2} us, read {jdec:.2} us); medians of 5 runs of 20000",
        bytes.len(),
        json.len()
    );
}
