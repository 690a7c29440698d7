//! Evaluation against a small in-memory storage. The differential tests against a real
//! Prometheus (tests/) are the reference; these pin the pieces worth knowing by heart.

use tocsin_model::{Labels, Sample};

use crate::{parse, Engine, Error, Selector, Storage, Value};

struct Mem(Vec<(Labels, Vec<Sample>)>);

impl Storage for Mem {
    fn select(
        &mut self,
        sel: Selector<'_>,
        from: i64,
        to: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>, String> {
        Ok(self
            .0
            .iter()
            .filter(|(l, _)| sel.matches(l))
            .map(|(l, s)| {
                let s: Vec<Sample> = s
                    .iter()
                    .filter(|x| x.timestamp_ms >= from && x.timestamp_ms <= to)
                    .copied()
                    .collect();
                (l.clone(), s)
            })
            .filter(|(_, s)| !s.is_empty())
            .collect())
    }
}

fn series(
    pairs: &[(&str, &str)],
    every_s: i64,
    values: impl IntoIterator<Item = f64>,
) -> (Labels, Vec<Sample>) {
    let l = Labels::from_pairs(pairs.iter().map(|(k, v)| (*k, *v)));
    let s = values
        .into_iter()
        .enumerate()
        .map(|(i, v)| Sample::new(i as i64 * every_s * 1000, v))
        .collect();
    (l, s)
}

fn store() -> Mem {
    Mem(vec![
        // A counter rising 1 per 10 s, from 0 at t = 0, for 20 minutes.
        series(
            &[("__name__", "c"), ("host", "a")],
            10,
            (0..120).map(f64::from),
        ),
        // Twice as fast, with a reset at t = 600 s.
        series(
            &[("__name__", "c"), ("host", "b")],
            10,
            (0..120).map(|i| f64::from(if i < 60 { 2 * i } else { 2 * (i - 60) })),
        ),
        series(
            &[("__name__", "g"), ("host", "a"), ("dc", "x")],
            60,
            [1.0, 2.0, 3.0, 4.0],
        ),
        series(
            &[("__name__", "g"), ("host", "b"), ("dc", "x")],
            60,
            [10.0, 20.0, 30.0, 40.0],
        ),
    ])
}

fn instant(q: &str, t_s: i64) -> Result<Value, Error> {
    Engine::default().instant(&mut store(), &parse(q)?, t_s * 1000)
}

fn values(v: Value) -> Vec<(String, f64)> {
    let Value::Vector(v) = v else {
        panic!("not a vector: {v:?}")
    };
    let mut out: Vec<(String, f64)> = v
        .into_iter()
        .map(|e| (e.labels.to_string(), e.value))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn rate_extrapolates_and_handles_resets() {
    let v = values(instant("rate(c[5m])", 900).unwrap());
    assert_eq!(v.len(), 2);
    // 1 per 10 s = 0.1/s; after its reset, b rises 0.2/s again.
    assert!((v[0].1 - 0.1).abs() < 1e-12, "{v:?}");
    assert!((v[1].1 - 0.2).abs() < 1e-12, "{v:?}");
    assert!(!v[0].0.contains("__name__"));
}

#[test]
fn lookback_ends_a_series_five_minutes_after_its_last_sample() {
    // g's last sample is at 180 s.
    assert_eq!(values(instant("g", 480).unwrap()).len(), 2);
    assert_eq!(values(instant("g", 481).unwrap()).len(), 0);
}

#[test]
fn aggregation_and_matching() {
    let v = values(instant("sum by (dc) (g)", 200).unwrap());
    assert_eq!(v, vec![("{dc=\"x\"}".to_string(), 44.0)]);
    let v = values(instant("g / on(host) group_left c", 180).unwrap());
    assert_eq!(v.len(), 2);
    let e = instant("g + on(dc) g", 180).unwrap_err();
    assert!(matches!(e, Error::Execution(_)), "{e:?}");
}

#[test]
fn range_query_steps() {
    let e = parse("sum(g)").unwrap();
    let m = Engine::default()
        .range(&mut store(), &e, 0, 240_000, 60_000)
        .unwrap();
    assert_eq!(m.len(), 1);
    let v: Vec<f64> = m[0].points.iter().map(|p| p.value).collect();
    assert_eq!(v, vec![11.0, 22.0, 33.0, 44.0, 44.0]);
}

#[test]
fn subquery_and_at() {
    let v = values(instant("max_over_time(sum(g)[10m:1m])", 600).unwrap());
    assert_eq!(v[0].1, 44.0);
    let v = values(instant("g @ 60", 10_000).unwrap());
    assert_eq!(v.iter().map(|x| x.1).sum::<f64>(), 22.0);
}

#[test]
fn unsupported_is_bad_data() {
    assert!(matches!(
        instant("histogram_count(g)", 60),
        Err(Error::BadData(_))
    ));
}

/// What the evaluator does not support answers `bad_data` naming the construct (docs/QUERY.md
/// lists these).
#[test]
fn unsupported_constructs_name_themselves() {
    for (q, name) in UNSUPPORTED {
        match instant(q, 60) {
            Err(Error::BadData(m)) => assert!(m.contains(name), "{q}: {m}"),
            other => panic!("{q}: {other:?}"),
        }
    }
}

pub(crate) const UNSUPPORTED: [(&str, &str); 12] = [
    ("histogram_count(g)", "histogram_count"),
    ("histogram_sum(g)", "histogram_sum"),
    ("histogram_avg(g)", "histogram_avg"),
    ("histogram_fraction(0, 1, g)", "histogram_fraction"),
    ("histogram_stddev(g)", "histogram_stddev"),
    ("histogram_stdvar(g)", "histogram_stdvar"),
    ("limitk(1, g)", "limitk"),
    ("limit_ratio(0.5, g)", "limit_ratio"),
    ("sort_by_label(g, \"host\")", "sort_by_label"),
    ("sort_by_label_desc(g, \"host\")", "sort_by_label_desc"),
    ("mad_over_time(g[5m])", "mad_over_time"),
    ("info(g)", "info"),
];

/// A hostile query (deeply nested, or huge) is refused with a message, not a crashed thread.
#[test]
fn deep_and_huge_queries_are_refused() {
    let chain = format!("{}1", "1+".repeat(5_000));
    let nested = format!("{}1{}", "(".repeat(1_000), ")".repeat(1_000));
    let huge = format!("g{{host=\"{}\"}}", "x".repeat(40_000));
    for q in [chain, nested, huge] {
        // On a thread with a small stack: refusing must not recurse along the query.
        let r = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || parse(&q).map(|_| ()))
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert!(matches!(r, Err(Error::BadData(_))), "{r:?}");
    }
    assert!(parse(&format!("{}1", "1+".repeat(100))).is_ok());
}
