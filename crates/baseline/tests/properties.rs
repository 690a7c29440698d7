//! Properties of the detector over generated series: whatever comes in, scores stay in [0, 1]
//! and state stays bounded; a saved and restored detector goes on exactly as one that never
//! stopped; and the unit of a series does not change its scores.

use proptest::prelude::*;
use tocsin_baseline::{Detector, DetectorConfig};

const T0: i64 = 1_700_000_000_000;

/// Anything a sender might produce: ordinary, huge, tiny, negative and non-finite values.
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => -1e3..1e3f64,
        1 => any::<f64>(),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(0.0),
    ]
}

/// A noisy series with a daily swing, as (step ms, value).
fn series(len: usize) -> impl Strategy<Value = Vec<(i64, f64)>> {
    (
        1.0..1e4f64,
        0.01..0.5f64,
        prop::collection::vec((1_000i64..900_000, -1.0..1.0f64), len),
    )
        .prop_map(|(level, noise, steps)| {
            let mut t = 0;
            steps
                .into_iter()
                .map(|(dt, n)| {
                    t += dt;
                    let day = (t as f64 / 86_400_000.0 * std::f64::consts::TAU).sin();
                    (dt, level * (1.0 + 0.3 * day + noise * n))
                })
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn scores_stay_in_range_and_state_bounded_whatever_comes_in(
        input in prop::collection::vec((value(), -60_000i64..7_200_000), 1..600)
    ) {
        let mut d = Detector::new(DetectorConfig::default());
        // Steps may be zero or negative: clocks jump, senders repeat themselves.
        let mut t = T0;
        for (v, step) in input {
            t += step;
            let o = d.update(t, v);
            prop_assert!((0.0..=1.0).contains(&o.score), "score {} for {v}", o.score);
            prop_assert!(!o.expected.is_nan());
        }
        prop_assert!(d.state_bytes() <= 4608, "{} bytes", d.state_bytes());
    }

    #[test]
    fn a_restored_detector_goes_on_exactly_as_one_that_never_stopped(
        s in series(400), cut in 0usize..400
    ) {
        let mut whole = Detector::new(DetectorConfig::default());
        let mut first = Detector::new(DetectorConfig::default());
        let mut t = T0;
        // Restored from the checkpoint form, and from the JSON of earlier versions.
        let mut restored: Option<[Detector; 2]> = None;
        for (i, (dt, v)) in s.into_iter().enumerate() {
            t += dt;
            if i == cut {
                let bytes = first.to_bytes();
                let json = serde_json::to_string(&first).unwrap();
                restored = Some([
                    Detector::from_bytes(&bytes, DetectorConfig::default()).unwrap(),
                    serde_json::from_str(&json).unwrap(),
                ]);
            }
            let a = whole.update(t, v);
            match restored.as_mut() {
                Some([r, j]) => {
                    prop_assert_eq!(a, r.update(t, v), "sample {}", i);
                    prop_assert_eq!(a, j.update(t, v), "sample {} (json)", i);
                }
                None => prop_assert_eq!(a, first.update(t, v), "sample {}", i),
            }
        }
    }

    #[test]
    fn the_unit_of_a_series_does_not_change_its_scores(
        s in series(500), k in -9i32..9, m in 1.0..10.0f64
    ) {
        // Seconds or milliseconds, bytes or gigabytes.
        let f = m * 10f64.powi(k);
        let mut a = Detector::new(DetectorConfig::default());
        let mut b = Detector::new(DetectorConfig::default());
        let mut t = T0;
        for (i, (dt, v)) in s.into_iter().enumerate() {
            t += dt;
            let (x, y) = (a.update(t, v), b.update(t, v * f));
            prop_assert!((x.score - y.score).abs() < 1e-3, "sample {}: {} vs {}", i, x.score, y.score);
            prop_assert!((x.expected * f - y.expected).abs() <= 1e-9 * y.expected.abs());
        }
    }
}
