//! The collector's Prometheus query API against a real Prometheus: the same samples reach both
//! (the collector stores them and forwards them by remote-write), then a corpus of queries
//! covering every function, operator, modifier and aggregation the API supports runs on both,
//! as instant queries at several times and as range queries at several steps. Answers must be
//! equal: same series and labels, values within 1e-9 relative, the same NaN and absence.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use tocsin_e2e::{serial, wait_for, Stack};
use tocsin_model::{Labels, Sample, SeriesSamples};

/// A small deterministic generator (the data must be the same on every run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

const STEP_MS: i64 = 15_000;
const SPAN_MS: i64 = 45 * 60_000;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

/// The data set: counters (one with a reset, one starting late, one ending early), gauges
/// around zero, classic histogram buckets, an info series, and a series sampled irregularly.
fn dataset(t0: i64) -> Vec<SeriesSamples> {
    let mut rng = Rng(42);
    let n = SPAN_MS / STEP_MS;
    let at = |i: i64| t0 + i * STEP_MS;
    let mut out = Vec::new();
    for host in ["h1", "h2", "h3"] {
        for code in ["200", "500"] {
            let mut v = 0.0;
            let mut samples = Vec::new();
            for i in 0..=n {
                // h3's 500s start 10 minutes in; h1's end 10 minutes early.
                if (host == "h3" && code == "500" && i < 40)
                    || (host == "h1" && code == "500" && i > n - 40)
                {
                    continue;
                }
                v += (rng.next() * 20.0).floor() + if code == "200" { 10.0 } else { 0.0 };
                // h2's 200s restart (counter reset) halfway.
                if host == "h2" && code == "200" && i == n / 2 {
                    v = rng.next() * 5.0;
                }
                samples.push(Sample::new(at(i), v));
            }
            out.push(SeriesSamples {
                labels: labels(&[
                    ("__name__", "dq_requests_total"),
                    ("host", host),
                    ("code", code),
                    ("job", "api"),
                ]),
                samples,
            });
        }
        for sensor in ["s1", "s2"] {
            let mut v = rng.next() * 10.0 - 5.0;
            let samples = (0..=n)
                .map(|i| {
                    v += rng.next() * 2.0 - 1.0;
                    Sample::new(at(i), (v * 1000.0).round() / 1000.0)
                })
                .collect();
            out.push(SeriesSamples {
                labels: labels(&[("__name__", "dq_temp"), ("host", host), ("sensor", sensor)]),
                samples,
            });
        }
        // Histogram buckets: cumulative counts per bound, plus _sum and _count.
        let bounds = ["0.1", "0.5", "1", "+Inf"];
        let mut counts = [0.0; 4];
        let mut sum = 0.0;
        let mut series: Vec<Vec<Sample>> = vec![Vec::new(); 6];
        for i in 0..=n {
            for _ in 0..(rng.next() * 8.0) as usize {
                let x = rng.next() * rng.next() * 1.5;
                sum += x;
                for (b, c) in bounds.iter().zip(counts.iter_mut()) {
                    let le: f64 = if *b == "+Inf" {
                        f64::INFINITY
                    } else {
                        b.parse().unwrap()
                    };
                    if x <= le {
                        *c += 1.0;
                    }
                }
            }
            for (k, c) in counts.iter().enumerate() {
                series[k].push(Sample::new(at(i), *c));
            }
            series[4].push(Sample::new(at(i), sum));
            series[5].push(Sample::new(at(i), counts[3]));
        }
        for (k, s) in series.into_iter().enumerate() {
            let l = match k {
                0..=3 => labels(&[
                    ("__name__", "dq_latency_bucket"),
                    ("host", host),
                    ("le", bounds[k]),
                ]),
                4 => labels(&[("__name__", "dq_latency_sum"), ("host", host)]),
                _ => labels(&[("__name__", "dq_latency_count"), ("host", host)]),
            };
            out.push(SeriesSamples {
                labels: l,
                samples: s,
            });
        }
        out.push(SeriesSamples {
            labels: labels(&[
                ("__name__", "dq_info"),
                ("host", host),
                (
                    "version",
                    &format!("1.{}", host.len() + host.as_bytes()[1] as usize % 3),
                ),
            ]),
            samples: (0..=n).map(|i| Sample::new(at(i), 1.0)).collect(),
        });
        // Irregular: gaps of 5 s to 40 s, counter-like.
        let mut t = t0;
        let mut v = 0.0;
        let mut samples = Vec::new();
        while t <= t0 + SPAN_MS {
            v += rng.next() * 3.0;
            samples.push(Sample::new(t, v));
            t += 5_000 + (rng.next() * 35.0) as i64 * 1000;
        }
        out.push(SeriesSamples {
            labels: labels(&[("__name__", "dq_irregular_total"), ("host", host)]),
            samples,
        });
    }
    out
}

/// The query corpus; `at` is a time inside the data (seconds) for `@`.
fn corpus(at: f64) -> Vec<String> {
    let mut q: Vec<String> = Vec::new();
    let mut add = |s: String| q.push(s);
    // Selectors and matchers, offset and @.
    for s in [
        "dq_temp",
        "dq_temp{host=\"h1\"}",
        "dq_temp{host=~\"h[12]\"}",
        "dq_temp{host!=\"h1\"}",
        "dq_temp{host!~\"h1|h3\",sensor=\"s2\"}",
        "{__name__=~\"dq_temp|dq_info\"}",
        "{__name__=\"dq_info\",version=~\"1\\\\..*\"}",
        "dq_temp offset 5m",
        "dq_temp offset -2m",
        "dq_requests_total",
        "dq_nothing",
    ] {
        add(s.to_string());
    }
    add(format!("dq_temp @ {at}"));
    add("dq_temp @ start()".into());
    add("dq_temp @ end()".into());
    add(format!("dq_temp @ {at} offset 3m"));
    // Range-vector functions over counters, several ranges.
    for f in [
        "rate", "irate", "increase", "delta", "idelta", "deriv", "resets", "changes",
    ] {
        for r in ["1m", "5m", "10m"] {
            add(format!("{f}(dq_requests_total[{r}])"));
        }
        add(format!("{f}(dq_irregular_total[2m])"));
    }
    add("rate(dq_requests_total[5m] offset 10m)".into());
    add(format!("rate(dq_requests_total[5m] @ {at})"));
    add("increase(dq_requests_total{code=\"500\"}[15m])".into());
    // The *_over_time family.
    for f in [
        "avg_over_time",
        "min_over_time",
        "max_over_time",
        "sum_over_time",
        "count_over_time",
        "last_over_time",
        "present_over_time",
        "stddev_over_time",
        "stdvar_over_time",
    ] {
        for r in ["1m", "5m", "20m"] {
            add(format!("{f}(dq_temp[{r}])"));
        }
    }
    for q_ in ["0", "0.25", "0.5", "0.9", "1"] {
        add(format!("quantile_over_time({q_}, dq_temp[10m])"));
    }
    add("absent_over_time(dq_temp[5m])".into());
    add("absent_over_time(dq_nothing{host=\"h1\"}[5m])".into());
    add("predict_linear(dq_temp[10m], 3600)".into());
    add("predict_linear(dq_requests_total[5m], 600)".into());
    add("holt_winters(dq_temp[10m], 0.3, 0.6)".into());
    add("holt_winters(dq_temp[5m], 0.8, 0.1)".into());
    // Histograms.
    for q_ in ["0", "0.5", "0.9", "0.99", "1"] {
        add(format!(
            "histogram_quantile({q_}, rate(dq_latency_bucket[5m]))"
        ));
    }
    add("histogram_quantile(0.9, sum by (le) (rate(dq_latency_bucket[5m])))".into());
    add("histogram_quantile(0.5, dq_latency_bucket)".into());
    add("rate(dq_latency_sum[5m]) / rate(dq_latency_count[5m])".into());
    // Labels.
    add("label_replace(dq_temp, \"hostnum\", \"n$1\", \"host\", \"h(.*)\")".into());
    add("label_replace(dq_temp, \"host\", \"\", \"sensor\", \"s1\")".into());
    add("label_replace(dq_temp, \"x\", \"$2-$1\", \"host\", \"(h)(\\\\d)\")".into());
    add("label_join(dq_temp, \"hs\", \"/\", \"host\", \"sensor\")".into());
    add("label_join(dq_temp, \"host\", \"\", \"missing\")".into());
    // Instant-vector functions.
    for f in [
        "abs",
        "ceil",
        "floor",
        "exp",
        "sqrt",
        "ln",
        "log2",
        "log10",
        "sgn",
        "timestamp",
        "cos",
        "sin",
        "tan",
        "acos",
        "asin",
        "atan",
        "cosh",
        "sinh",
        "tanh",
        "asinh",
        "deg",
        "rad",
    ] {
        add(format!("{f}(dq_temp / 10)"));
    }
    add("acosh(dq_temp)".into());
    add("atanh(dq_temp / 10)".into());
    add("timestamp(dq_temp)".into());
    add("timestamp(dq_temp offset 1m)".into());
    add("round(dq_temp)".into());
    add("round(dq_temp, 0.5)".into());
    add("round(dq_temp, 3)".into());
    add("clamp(dq_temp, -1, 1)".into());
    add("clamp(dq_temp, 1, -1)".into());
    add("clamp_min(dq_temp, 0)".into());
    add("clamp_max(dq_temp, 0)".into());
    add("sort(dq_temp)".into());
    add("sort_desc(dq_temp)".into());
    add("time()".into());
    add("vector(1)".into());
    add("vector(time())".into());
    add("scalar(dq_temp{host=\"h1\",sensor=\"s1\"})".into());
    add("scalar(dq_temp)".into());
    add("absent(dq_nothing{host=\"h1\",job=~\"x\"})".into());
    add("absent(dq_temp)".into());
    add("pi()".into());
    for f in [
        "minute",
        "hour",
        "day_of_week",
        "day_of_month",
        "day_of_year",
        "days_in_month",
        "month",
        "year",
    ] {
        add(format!("{f}()"));
        add(format!("{f}(dq_info * 1700000000 + dq_temp * 86400)"));
    }
    // Aggregations.
    for op in [
        "sum", "avg", "min", "max", "count", "stddev", "stdvar", "group",
    ] {
        add(format!("{op}(dq_temp)"));
        add(format!("{op} by (host) (dq_temp)"));
        add(format!("{op} without (sensor) (dq_temp)"));
        add(format!("{op}(rate(dq_requests_total[5m])) by (code)"));
    }
    for k in ["1", "2", "5"] {
        add(format!("topk({k}, dq_temp)"));
        add(format!("bottomk({k}, dq_temp) by (host)"));
    }
    add("topk(0, dq_temp)".into());
    for q_ in ["0", "0.3", "0.5", "1", "-1", "2"] {
        add(format!("quantile({q_}, dq_temp)"));
    }
    add("quantile by (host) (0.5, dq_temp)".into());
    add("count_values(\"value\", round(dq_temp))".into());
    add("count_values by (host) (\"v\", ceil(dq_temp))".into());
    add("count_values without (sensor) (\"v\", ceil(dq_temp))".into());
    // Binary operators: scalar-scalar, vector-scalar, vector-vector, bool, set operators.
    for s in [
        "1 + 2 * 3",
        "2 ^ 3 ^ 2",
        "7 % 3",
        "-(1 - 3)",
        "1 > bool 2",
        "2 >= bool 2",
        "dq_temp + 1",
        "2 * dq_temp",
        "dq_temp / 0",
        "-dq_temp",
        "dq_temp % 2",
        "dq_temp ^ 2",
        "dq_temp atan2 1",
        "dq_temp > 0",
        "dq_temp < 0",
        "1 < dq_temp",
        "dq_temp == 0",
        "dq_temp != 1",
        "dq_temp >= bool 0",
        "0 <= bool dq_temp",
        "dq_temp / dq_temp",
        "dq_temp - on(host, sensor) dq_temp offset 1m",
        "dq_temp > on(host, sensor) dq_temp offset 1m",
        "dq_temp > bool ignoring(sensor) group_left dq_info",
        "dq_temp * on(host) group_left(version) dq_info",
        "dq_info * on(host) group_right dq_temp",
        "dq_info + on(host) group_right(version) dq_temp",
        "rate(dq_requests_total[5m]) / ignoring(code) group_left sum without (code) (rate(dq_requests_total[5m]))",
        "sum by (host) (rate(dq_requests_total{code=\"500\"}[5m])) / sum by (host) (rate(dq_requests_total[5m]))",
        "dq_temp + on(host) dq_info",
        "dq_temp + on(host) group_left dq_temp",
        "dq_temp and dq_temp > 0",
        "dq_temp and on(host) dq_info{host=\"h2\"}",
        "dq_temp or dq_info",
        "dq_temp or on(host) dq_info",
        "dq_temp unless dq_temp < 0",
        "dq_temp unless on(host) dq_info{host=\"h1\"}",
        "dq_temp and ignoring(sensor) dq_info",
        "scalar(dq_temp{host=\"h1\",sensor=\"s1\"}) * dq_temp",
        "dq_temp == bool on(host, sensor) dq_temp",
    ] {
        add(s.to_string());
    }
    // Subqueries.
    for s in [
        "max_over_time(rate(dq_requests_total[1m])[10m:1m])",
        "avg_over_time(dq_temp[10m:30s])",
        "rate(dq_requests_total[5m:15s])",
        "min_over_time(sum(dq_temp)[15m:])",
        "max_over_time(deriv(dq_temp[5m])[20m:2m] offset 5m)",
        "count_over_time(dq_temp[10m:1m])",
        "sum_over_time((dq_temp > 0)[10m:45s])",
        "last_over_time(dq_temp[5m:1m])",
    ] {
        add(s.to_string());
    }
    add(format!("max_over_time(sum(dq_temp)[10m:1m] @ {at})"));
    // Compositions seen on dashboards.
    for s in [
        "100 * (1 - avg by (host) (rate(dq_requests_total{code=\"200\"}[5m])) / 20)",
        "sum by (host) (increase(dq_requests_total[10m])) > 100",
        // Over the irregular counter (real-valued increments): the request counters' integer
        // increments make hosts tie now and then, and which of two tied hosts Prometheus keeps
        // in a range query depends on its map order, at random.
        "topk(2, max by (host) (rate(dq_irregular_total[5m])))",
        "topk(2, sum by (host) (rate(dq_irregular_total[5m])))",
        "bottomk(2, max by (host) (rate(dq_irregular_total[5m])))",
        "count(count by (host) (dq_temp))",
        "sum(dq_temp) / count(dq_temp)",
        "avg(dq_temp) - avg(dq_temp offset 10m)",
        "abs(delta(dq_temp[10m])) > bool 1",
        "max by (host) (dq_temp) - min by (host) (dq_temp)",
        "sum(rate(dq_irregular_total[5m])) * 60",
        "group by (host) (dq_info)",
    ] {
        add(s.to_string());
    }
    q
}

/// One answer reduced to what must match: its type, and per series its values.
#[derive(Debug)]
enum Answer {
    Error(String),
    Scalar(f64, String),
    Series(BTreeMap<String, Vec<(f64, String)>>),
}

fn canonical(v: &Value) -> Answer {
    if v["status"] != "success" {
        return Answer::Error(v["errorType"].as_str().unwrap_or("?").to_string());
    }
    let d = &v["data"];
    let pair = |p: &Value| (p[0].as_f64().unwrap(), p[1].as_str().unwrap().to_string());
    match d["resultType"].as_str().unwrap() {
        "scalar" | "string" => {
            let (t, s) = pair(&d["result"]);
            Answer::Scalar(t, s)
        }
        kind => {
            let mut m = BTreeMap::new();
            for s in d["result"].as_array().unwrap() {
                let labels: BTreeMap<String, String> =
                    serde_json::from_value(s["metric"].clone()).unwrap();
                let key = format!("{kind}{labels:?}");
                let pts = if kind == "vector" {
                    vec![pair(&s["value"])]
                } else {
                    s["values"].as_array().unwrap().iter().map(pair).collect()
                };
                m.insert(key, pts);
            }
            Answer::Series(m)
        }
    }
}

fn same_value(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => {
            (x.is_nan() && y.is_nan()) || (x - y).abs() <= 1e-9 * x.abs().max(y.abs())
        }
        _ => false,
    }
}

fn same(a: &Answer, b: &Answer) -> Result<(), String> {
    match (a, b) {
        (Answer::Error(x), Answer::Error(y)) if x == y => Ok(()),
        (Answer::Scalar(t1, v1), Answer::Scalar(t2, v2))
            if (t1 - t2).abs() < 1e-6 && same_value(v1, v2) =>
        {
            Ok(())
        }
        (Answer::Series(x), Answer::Series(y)) => {
            if x.keys().ne(y.keys()) {
                return Err(format!(
                    "series differ: ours {:?}, Prometheus {:?}",
                    x.keys().collect::<Vec<_>>(),
                    y.keys().collect::<Vec<_>>()
                ));
            }
            for (k, p) in x {
                let q = &y[k];
                if p.len() != q.len() {
                    return Err(format!("{k}: {} points, Prometheus {}", p.len(), q.len()));
                }
                for (a, b) in p.iter().zip(q) {
                    if (a.0 - b.0).abs() > 1e-6 || !same_value(&a.1, &b.1) {
                        return Err(format!("{k}: ours {a:?}, Prometheus {b:?}"));
                    }
                }
            }
            Ok(())
        }
        _ => Err(format!("ours {a:?}, Prometheus {b:?}")),
    }
}

fn get(base: &str, path: &str, params: &[(&str, String)]) -> Value {
    reqwest::blocking::Client::new()
        .get(format!("{base}{path}"))
        .query(params)
        .send()
        .unwrap()
        .json()
        .unwrap()
}

#[test]
fn query_api_answers_as_prometheus_does() {
    let _g = serial();
    // Prometheus' own defaults (a subquery without a step takes the evaluation interval).
    let Some(prom) = tocsin_e2e::servers::prometheus_with("  scrape_interval: 1m\n", "  []\n")
    else {
        return;
    };
    let (s, c) = Stack::with_collector(&format!(
        "remote_write:\n  - {{ name: prom, url: \"http://127.0.0.1:{}/api/v1/write\" }}\n",
        prom.port
    ));
    let _ = &s;
    // The data ends a minute ago, on the 15 s grid, and spans 45 minutes (Prometheus takes
    // samples up to an hour older than its newest).
    let t_end = (tocsin_model::now_ms() - 60_000) / STEP_MS * STEP_MS;
    let t0 = t_end - SPAN_MS;
    let data = dataset(t0);
    // In time order, five minutes of every series per request.
    let mut from = t0;
    while from <= t_end {
        let to = from + 5 * 60_000;
        let batch: Vec<SeriesSamples> = data
            .iter()
            .map(|s| SeriesSamples {
                labels: s.labels.clone(),
                samples: s
                    .samples
                    .iter()
                    .filter(|x| x.timestamp_ms >= from && x.timestamp_ms < to)
                    .copied()
                    .collect(),
            })
            .filter(|s| !s.samples.is_empty())
            .collect();
        let r = c.remote_write(&batch, &[]);
        assert!(r.status().is_success(), "write: {}", r.status());
        from = to;
    }
    let ours = c.url("");
    let theirs = format!("http://127.0.0.1:{}", prom.port);
    // Every sample on both sides (counted per metric: without their names, series of two
    // metrics may look alike).
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for s in &data {
        *expected
            .entry(s.labels.metric_name().unwrap().to_string())
            .or_default() += s.samples.len();
    }
    for base in [&ours, &theirs] {
        wait_for("every sample stored", Duration::from_secs(60), || {
            for (name, n) in &expected {
                let v = get(
                    base,
                    "/api/v1/query",
                    &[
                        ("query", format!("sum(count_over_time({name}[50m]))")),
                        ("time", format!("{}", t_end as f64 / 1000.0)),
                    ],
                );
                let got: f64 = v["data"]["result"][0]["value"][1].as_str()?.parse().ok()?;
                if got as usize != *n {
                    return None;
                }
            }
            Some(())
        });
    }

    let s = |ms: i64| format!("{:.3}", ms as f64 / 1000.0);
    let at = (t0 + 20 * 60_000) as f64 / 1000.0;
    let instants = [
        t0 - 60_000,
        t0 + 7 * 60_000,
        t0 + 20 * 60_000 + 7_000,
        t_end,
        t_end + 4 * 60_000,
        t_end + 6 * 60_000,
    ];
    let ranges = [
        (t0, t_end + 5 * 60_000, "60"),
        (t0 + 10 * 60_000, t0 + 30 * 60_000, "15"),
        (t0, t_end, "433"),
    ];
    let queries = corpus(at);
    assert!(queries.len() >= 200, "{} queries", queries.len());
    let mut failures = Vec::new();
    let mut nonempty = 0;
    for q in &queries {
        let mut any = false;
        let mut check = |path: &str, params: Vec<(&str, String)>, what: String| {
            let a = canonical(&get(&ours, path, &params));
            let b = canonical(&get(&theirs, path, &params));
            if let Answer::Series(m) = &b {
                any |= !m.is_empty();
            }
            if let Answer::Scalar(..) = &b {
                any = true;
            }
            if let Err(e) = same(&a, &b) {
                failures.push(format!("{q} ({what}): {e}"));
            }
        };
        for t in instants {
            check(
                "/api/v1/query",
                vec![("query", q.clone()), ("time", s(t))],
                format!("instant at {}", s(t)),
            );
        }
        for (a, b, step) in ranges {
            check(
                "/api/v1/query_range",
                vec![
                    ("query", q.clone()),
                    ("start", s(a)),
                    ("end", s(b)),
                    ("step", step.to_string()),
                ],
                format!("range {}..{} step {step}", s(a), s(b)),
            );
        }
        nonempty += usize::from(any);
    }
    assert!(
        failures.is_empty(),
        "{} of {} evaluations differ from Prometheus:\n{}",
        failures.len(),
        queries.len() * (instants.len() + ranges.len()),
        failures.join("\n")
    );
    // The corpus means something: nearly every query has data on Prometheus' side.
    assert!(
        nonempty * 10 >= queries.len() * 9,
        "{nonempty} of {} queries had data",
        queries.len()
    );

    eprintln!(
        "{} queries x {} evaluations equal to Prometheus' answers, {nonempty} queries with data",
        queries.len(),
        instants.len() + ranges.len()
    );

    // promtool, Prometheus' own client, reads the collector as it reads Prometheus.
    if tocsin_e2e::require_tool("promtool") {
        let promtool = |args: &[&str]| {
            let out = std::process::Command::new("promtool")
                .args(args)
                .output()
                .expect("run promtool");
            assert!(
                out.status.success(),
                "promtool {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let t = s(t_end);
        let out = promtool(&[
            "query",
            "instant",
            "--time",
            &t,
            &ours,
            "sum by (host) (dq_temp)",
        ]);
        let theirs_out = promtool(&[
            "query",
            "instant",
            "--time",
            &t,
            &theirs,
            "sum by (host) (dq_temp)",
        ]);
        assert_eq!(out, theirs_out);
        assert_eq!(out.lines().count(), 3, "{out}");
        let args = |base: &str| {
            promtool(&[
                "query",
                "range",
                "--start",
                &s(t0),
                "--end",
                &t,
                "--step",
                "5m",
                base,
                "rate(dq_requests_total{host=\"h2\"}[5m])",
            ])
        };
        let out = args(&ours);
        assert_eq!(out, args(&theirs));
        assert!(out.contains("code=\"500\""), "{out}");
        let out = promtool(&["query", "series", "--match", "dq_info", &ours]);
        assert_eq!(out.lines().count(), 3, "{out}");
        let out = promtool(&["query", "labels", &ours, "sensor"]);
        assert_eq!(
            out.split_whitespace().collect::<Vec<_>>(),
            ["s1", "s2"],
            "{out}"
        );
    }
}

/// Every panel and variable query of the shipped dashboards, on a live stack (an agent with
/// host series and probes, rules firing, a dynamic rule's band), answers the same from the
/// collector as from a Prometheus fed by its forwarding (its own metrics forwarded too).
#[test]
fn every_dashboard_query_answers_as_prometheus_does() {
    let _g = serial();
    let Some(prom) = tocsin_e2e::servers::prometheus_with("  scrape_interval: 1m\n", "  []\n")
    else {
        return;
    };
    let cert = tocsin_e2e::servers::self_signed(tocsin_model::now_ms() / 1000 + 40 * 86_400);
    let https = tocsin_e2e::servers::HttpServer::start(Some(&cert));
    let s = Stack::with_textfile(
        &format!(
            "remote_write:\n  - {{ name: prom, url: \"http://127.0.0.1:{}/api/v1/write\" }}\nself_metrics: {{ interval: 1s, forward: true }}\n",
            prom.port
        ),
        "e2e_value 60\ne2e_flat 5\n",
    );
    std::fs::write(
        s.dir.path().join("rules/r.yaml"),
        "rules:
  - name: Busy
    expr: e2e_value
    levels: { warning: \"> 50\" }
  - name: Dyn
    expr: e2e_flat
    dynamic: { min_history: 3 }
  - name: ShopWatch
    expr: tocsin_service_probe_success_ratio{service=\"shop\"}
    levels: { warning: \"> 0.5\" }
",
    )
    .unwrap();
    let c = s.collector("127.0.0.1:0", &s.p("rules"));
    let agent_cfg = s.dashboard_agent_config(&https.url("https"), "");
    let _a = s.agent(&c, &["--config", &agent_cfg]);
    let ours = c.url("");
    let theirs = format!("http://127.0.0.1:{}", prom.port);
    wait_for("Busy firing", Duration::from_secs(20), || {
        c.alerts()
            .into_iter()
            .any(|a| a["rule"] == "Busy" && a["state"] == "firing")
            .then_some(())
    });
    // Half a minute of history, so that rates and the dynamic band have something to say.
    wait_for("30 s of host series", Duration::from_secs(60), || {
        let v = get(
            &ours,
            "/api/v1/query",
            &[(
                "query",
                "count_over_time(node_load1{host=\"dash-host\"}[1m])".into(),
            )],
        );
        let n: f64 = v["data"]["result"][0]["value"][1].as_str()?.parse().ok()?;
        (n >= 30.0).then_some(())
    });
    // A time both have everything before: forwarding keeps the order of commits, so once
    // Prometheus has samples newer than T of the agent's series and of the collector's own,
    // it has all of those up to T.
    let t = (tocsin_model::now_ms() - 3_000) / 1000 * 1000;
    for probe in [
        "node_load1{host=\"dash-host\"}",
        "tocsin_storage_series",
        "probe_success{probe=\"gateway\"}",
    ] {
        wait_for(
            &format!("{probe} past T in Prometheus"),
            Duration::from_secs(30),
            || {
                let v = get(
                    &theirs,
                    "/api/v1/query",
                    &[("query", format!("timestamp({probe})"))],
                );
                let ts: f64 = v["data"]["result"][0]["value"][1].as_str()?.parse().ok()?;
                (ts * 1000.0 > (t + 2_000) as f64).then_some(())
            },
        );
    }
    let sec = |ms: i64| format!("{:.3}", ms as f64 / 1000.0);
    let mut failures = Vec::new();
    let mut nonempty = 0;
    let queries = tocsin_e2e::dashboard_queries("dash-host", "Dyn");
    for (what, q) in &queries {
        let runs = [
            (
                "/api/v1/query",
                vec![("query", q.clone()), ("time", sec(t))],
            ),
            (
                "/api/v1/query_range",
                vec![
                    ("query", q.clone()),
                    ("start", sec(t - 60_000)),
                    ("end", sec(t)),
                    ("step", "5".into()),
                ],
            ),
        ];
        for (path, params) in runs {
            let a = canonical(&get(&ours, path, &params));
            let b = canonical(&get(&theirs, path, &params));
            if path == "/api/v1/query" && matches!(&b, Answer::Series(m) if !m.is_empty()) {
                nonempty += 1;
            }
            if let Err(e) = same(&a, &b) {
                failures.push(format!("{what}: {q} ({path}): {e}"));
            }
        }
    }
    assert!(queries.len() >= 40, "{} queries", queries.len());
    assert!(
        failures.is_empty(),
        "{} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        nonempty * 10 >= queries.len() * 8,
        "{nonempty} of {} queries had data",
        queries.len()
    );
    eprintln!(
        "{} dashboard queries equal to Prometheus' answers, {nonempty} with data",
        queries.len()
    );
}

/// A recording rule's values are stored as a series of their own: the query API answers them
/// (as it would a Prometheus's recorded series), and an alerting rule reads them.
#[test]
fn recorded_series_are_stored_queried_and_alerted_on() {
    let _g = serial();
    let (s, c) = Stack::with_collector("");
    std::fs::write(
        s.p("rules/recorded.yaml"),
        r#"rules:
  - record: service:app_load:sum
    expr: sum by (service) (app_load)
    interval: 1s
    labels: { source: fleet }
  - name: ServiceLoadHigh
    expr: service:app_load:sum
    levels: { warning: "> 100" }
    annotations: { summary: "{{ labels.service }} at {{ value }}" }
"#,
    )
    .unwrap();
    let base = c.url("");
    let base = base.trim_end_matches('/');
    wait_for("the rules loaded", Duration::from_secs(20), || {
        let v = get(base, "/api/v1/rules", &[]);
        let rules = v["data"]["rules"].as_array()?.clone();
        (rules.len() == 2).then_some(rules)
    });
    let v = get(base, "/api/v1/rules", &[]);
    let rec = &v["data"]["rules"].as_array().unwrap()[0];
    assert_eq!(rec["type"], "recording", "{rec}");
    assert_eq!(rec["interval"], 1.0, "{rec}");
    // Two hosts of one service, posted every half second until the alert is told.
    let post = |load: [f64; 2]| {
        let now = tocsin_model::now_ms();
        let series: Vec<SeriesSamples> = ["a", "b"]
            .iter()
            .zip(load)
            .map(|(host, v)| SeriesSamples {
                labels: labels(&[("__name__", "app_load"), ("host", host), ("service", "web")]),
                samples: vec![Sample::new(now, v)],
            })
            .collect();
        assert_eq!(c.remote_write(&series, &[]).status().as_u16(), 204);
    };
    let (_, fired) = {
        let mut n = 0;
        wait_for(
            "the alert on the recorded series",
            Duration::from_secs(20),
            || {
                post([60.0, 70.0]);
                std::thread::sleep(Duration::from_millis(500 * (n.min(1))));
                n += 1;
                s.hook.all().first().cloned()
            },
        )
    };
    let alert = &fired["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "ServiceLoadHigh", "{fired}");
    assert_eq!(alert["labels"]["service"], "web");
    assert_eq!(alert["labels"]["source"], "fleet");
    assert_eq!(alert["annotations"]["summary"], "web at 130.0");
    let v = get(
        base,
        "/api/v1/query",
        &[("query", "service:app_load:sum".to_string())],
    );
    let result = &v["data"]["result"][0];
    assert_eq!(result["metric"]["service"], "web", "{v}");
    assert_eq!(result["metric"]["source"], "fleet", "{v}");
    assert!(result["metric"].get("host").is_none(), "{v}");
    assert_eq!(result["value"][1], "130", "{v}");
    let text = reqwest::blocking::get(c.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        text.lines().any(|l| l
            .starts_with("tocsin_rule_recorded_samples_total{result=\"stored\"}")
            && !l.ends_with(" 0")),
        "{text}"
    );
}
