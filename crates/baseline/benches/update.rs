//! Cost of one detector update and the memory of one series' state.
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
}
