//! False alarms on anomaly-free generated series: samples scoring at or above 0.2 per 10,000,
//! with and without records; once the series is past its first 2,000 samples, and in those
//! first samples (a new series' first week at a 5-minute interval).
//!
//! `quiet [SEEDS] [FIRST]`: the mean over that many seeds from FIRST on (default 20 from 1; a
//! shape's count of alarms is Poisson-like, so with few seeds a difference of a few alarms is
//! noise). Settings chosen on seeds 1-100 are checked on others: `quiet 100 101`.
use tocsin_baseline::{Detector, DetectorConfig};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next().max(1e-12), self.next());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

fn main() {
    const N: i64 = 30_000; // about 100 days of 5-minute samples
    const STEP: i64 = 300_000;
    type Gen = Box<dyn Fn(&mut Rng, i64, &mut f64) -> f64>;
    let gens: Vec<(&str, Gen)> = vec![
        ("gaussian noise", Box::new(|r, _, _| 50.0 + r.normal())),
        ("uniform noise", Box::new(|r, _, _| 50.0 + r.next())),
        (
            "heavy tail (Pareto spikes)",
            Box::new(|r, _, _| 10.0 + 1.0 / r.next().max(1e-9).powf(0.5)),
        ),
        (
            "random walk",
            Box::new(|r, _, s| {
                *s += r.normal();
                100.0 + *s
            }),
        ),
        (
            "slow growth + noise",
            Box::new(|r, i, _| 10.0 + i as f64 * 0.001 + r.normal() * 0.5),
        ),
        (
            "daily sine + noise",
            Box::new(|r, i, _| {
                50.0 + 20.0 * (i as f64 * 2.0 * std::f64::consts::PI / 288.0).sin() + r.normal()
            }),
        ),
        (
            "weekly business + noise",
            Box::new(|r, i, _| {
                let d = (i / 288) % 7;
                let h = (i % 288) / 12;
                (if d < 5 && (8..20).contains(&h) {
                    100.0
                } else {
                    20.0
                }) + 3.0 * r.normal()
            }),
        ),
        (
            "counter rate, Poisson-ish",
            Box::new(|r, _, _| (r.next() * 10.0).floor()),
        ),
        (
            "sparse 0/1",
            Box::new(|r, _, _| if r.next() < 0.02 { 1.0 } else { 0.0 }),
        ),
        (
            "noise that slowly widens",
            Box::new(|r, i, _| 50.0 + r.normal() * (1.0 + i as f64 / 10_000.0)),
        ),
    ];
    let variants = [
        ("no records", 0.0, -1.0),
        ("value records", 0.1, -1.0),
        ("value + volatility", 0.1, 0.02),
    ];
    // After the first 2,000 samples, and samples 30..2,000 (once a score is given).
    let spans = [
        (2_000, N, "after the first 2,000 samples"),
        (30, 2_000, "samples 30 to 2,000"),
    ];
    let arg = |n: usize, what: &str, default: u64| -> u64 {
        std::env::args()
            .nth(n)
            .map(|s| s.parse().unwrap_or_else(|_| panic!("{what}: a number")))
            .unwrap_or(default)
    };
    let seeds = arg(1, "SEEDS", 20);
    let first = arg(2, "FIRST", 1);
    for (from, to, title) in spans {
        println!("\n{title}:\n");
        println!("| series | {} |", variants.map(|v| v.0).join(" | "));
        println!("|---|---|---|---|");
        for (name, g) in &gens {
            let mut row = Vec::new();
            for (_, rm, vm) in variants {
                let mut total = 0.0;
                for seed in first..first + seeds {
                    let mut r = Rng(seed * 0x9E37_79B9_7F4A_7C15);
                    let mut st = 0.0;
                    let mut d = Detector::new(DetectorConfig {
                        record_margin: rm,
                        volatility_margin: vm,
                        ..DetectorConfig::default()
                    });
                    let mut alarms = 0;
                    for i in 0..to {
                        let x = g(&mut r, i, &mut st);
                        let s = d.update(i * STEP, x).score;
                        if i >= from && s >= 0.2 {
                            alarms += 1;
                        }
                    }
                    total += alarms as f64 * 10_000.0 / (to - from) as f64;
                }
                row.push(format!("{:.2}", total / seeds as f64));
            }
            println!("| {name} | {} |", row.join(" | "));
        }
    }
}
