//! The collector's command line (this file also makes `cargo test` build the real binary that
//! the end-to-end tests start).

use std::process::Command;

fn collector() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tocsin-collector"))
}

#[test]
fn version_and_help() {
    let out = collector().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("tocsin-collector "));
    let help = String::from_utf8(collector().arg("--help").output().unwrap().stdout).unwrap();
    for flag in [
        "--config",
        "--listen",
        "--data-dir",
        "--rules",
        "check-rules",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn check_rules_accepts_shipped_rules() {
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");
    let out = collector().args(["check-rules", rules]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
}

#[test]
fn check_rules_reports_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.yaml");
    std::fs::write(
        &f,
        "rules:\n  - name: A\n    expr: up\n    levels: { warning: \"> 1\" }\n  - name: B\n    expr: up[\n    levels: { bad: \"> 1\" }\n",
    )
    .unwrap();
    let out = collector()
        .args(["check-rules", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let p = f.display();
    assert!(err.contains(&format!("{p}:6: rule \"B\": expr: column 3: a range selector needs a function around it, e.g. rate(metric[5m])")), "{err}");
    assert!(
        err.contains(&format!("{p}:7: rule \"B\": levels: unknown level \"bad\"")),
        "{err}"
    );
    assert!(err.contains("2 problems found"), "{err}");
}

#[test]
fn invalid_config_is_refused_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.yaml");
    std::fs::write(&f, "listen: nowhere\nretention: 5m\n").unwrap();
    let out = collector()
        .args(["--config", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("listen: invalid socket address syntax"),
        "{err}"
    );
    assert!(err.contains("retention: must be at least 1h"), "{err}");

    std::fs::write(&f, "listen: 127.0.0.1:0\nretension: 5d\n").unwrap();
    let out = collector()
        .args(["--config", f.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("c.yaml:2:1: unknown field `retension`"),
        "{err}"
    );
}

#[test]
fn backtest_writes_one_row_per_input_and_flags_the_spike() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("r.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - name: Unusual\n    expr: value\n    dynamic: { sensitivity: medium }\n    levels: { emergency: \"> 1000\" }\n",
    )
    .unwrap();
    let csv = dir.path().join("in.csv");
    let mut text = String::from("timestamp,value\n");
    for i in 0..600 {
        let v = if i == 500 {
            90.0
        } else {
            50.0 + ((i * 7919) % 13) as f64 / 10.0
        };
        let (h, m) = ((i * 5) / 60, (i * 5) % 60);
        text.push_str(&format!(
            "2014-04-{:02} {:02}:{:02}:00,{v}\n",
            1 + h / 24,
            h % 24,
            m
        ));
    }
    std::fs::write(&csv, &text).unwrap();
    let out = dir.path().join("out.csv");
    let o = collector()
        .args([
            "backtest",
            "--rules",
            rules.to_str().unwrap(),
            "--rule",
            "Unusual",
        ])
        .args([
            "--csv",
            csv.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let result = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<&str> = result.lines().collect();
    assert_eq!(rows[0], "timestamp,value,anomaly_score,level");
    assert_eq!(rows.len(), 601, "one row per input row");
    let spike: Vec<&str> = rows[501].split(',').collect();
    assert_eq!(spike[1], "90");
    assert!(spike[2].parse::<f64>().unwrap() > 0.57, "{}", rows[501]);
    assert!(matches!(spike[3], "warning" | "critical"), "{}", rows[501]);
    assert!(
        rows[1..400].iter().all(|r| r.ends_with(',')),
        "quiet before the spike"
    );
    let summary = String::from_utf8_lossy(&o.stderr);
    assert!(summary.starts_with("600 rows; alerts fired:"), "{summary}");

    let o = collector()
        .args([
            "backtest",
            "--rules",
            rules.to_str().unwrap(),
            "--rule",
            "Nope",
            "--csv",
            csv.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no rule \"Nope\" (rules: Unusual)"));
}

#[test]
fn backtest_over_stored_history() {
    use tocsin_model::{Labels, Sample, SeriesSamples, METRIC_NAME};
    let dir = tempfile::tempdir().unwrap();
    let t0 = tocsin_model::parse_timestamp("2026-11-01 00:00:00").unwrap();
    {
        let mut store =
            tocsin_store::Store::open(&dir.path().join("tocsin.db"), Default::default()).unwrap();
        let series = |host: &str| SeriesSamples {
            labels: Labels::from_pairs([(METRIC_NAME, "load"), ("host", host)]),
            samples: (0..100)
                .map(|i| {
                    Sample::new(
                        t0 + i * 60_000,
                        if i == 80 {
                            50.0
                        } else {
                            1.0 + (i % 3) as f64 * 0.01
                        },
                    )
                })
                .collect(),
        };
        let mut tx = store.begin().unwrap();
        tx.append(&mut [series("a"), series("b")], t0 + 100 * 60_000)
            .unwrap();
        tx.commit().unwrap();
    }
    let rules = dir.path().join("r.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - name: U\n    expr: load\n    dynamic: { min_history: 10 }\n",
    )
    .unwrap();
    let args = |host: Option<&str>| {
        let mut c = collector();
        c.args([
            "backtest",
            "--rules",
            rules.to_str().unwrap(),
            "--rule",
            "U",
        ])
        .args(["--data-dir", dir.path().to_str().unwrap()])
        .args([
            "--from",
            "2026-11-01 00:10:00",
            "--to",
            "2026-11-01 01:30:00",
        ]);
        if let Some(h) = host {
            c.args(["--host", h]);
        }
        c.output().unwrap()
    };
    let o = args(None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("2 stored series match; narrow with --host")
    );
    let o = args(Some("a"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 1 + 81, "minutes 10..=90");
    assert!(
        rows[1].starts_with("2026-11-01T00:10:00.000Z,"),
        "{}",
        rows[1]
    );
    let spike = rows
        .iter()
        .find(|r| r.starts_with("2026-11-01T01:20:00"))
        .unwrap();
    assert!(
        spike.ends_with("warning") || spike.ends_with("critical"),
        "{spike}"
    );
}

#[test]
fn backtest_over_stored_history_of_a_rule_over_several_series() {
    use tocsin_model::{Labels, Sample, SeriesSamples, METRIC_NAME};
    let dir = tempfile::tempdir().unwrap();
    let t0 = tocsin_model::parse_timestamp("2026-11-01 00:00:00").unwrap();
    {
        let mut store =
            tocsin_store::Store::open(&dir.path().join("tocsin.db"), Default::default()).unwrap();
        // Requests and errors of one host; the error ratio jumps at minute 80. Another host's
        // errors alone (no requests) cannot be joined.
        let series = |name: &str, host: &str, v: &dyn Fn(i64) -> f64| SeriesSamples {
            labels: Labels::from_pairs([(METRIC_NAME, name), ("host", host)]),
            samples: (0..100)
                .map(|i| Sample::new(t0 + i * 60_000, v(i)))
                .collect(),
        };
        let requests = |i: i64| 1000.0 + (i % 3) as f64;
        let errors = |i: i64| {
            if i == 80 {
                400.0
            } else {
                10.0 + (i % 2) as f64
            }
        };
        let mut tx = store.begin().unwrap();
        tx.append(
            &mut [
                series("requests", "a", &requests),
                series("errors", "a", &errors),
                series("errors", "b", &errors),
            ],
            t0 + 100 * 60_000,
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let rules = dir.path().join("r.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - name: ErrorRatio\n    expr: errors / requests\n    dynamic: { min_history: 10, direction: up }\n",
    )
    .unwrap();
    let o = collector()
        .args(["backtest", "--rules", rules.to_str().unwrap()])
        .args([
            "--rule",
            "ErrorRatio",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ])
        .args([
            "--from",
            "2026-11-01 00:10:00",
            "--to",
            "2026-11-01 01:30:00",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 1 + 81, "one evaluation a minute, 10..=90");
    // The value column is the rule's: errors over requests.
    let first: Vec<&str> = rows[1].split(',').collect();
    assert_eq!(first[0], "2026-11-01T00:10:00.000Z");
    let expected = (10.0 + (10 % 2) as f64) / (1000.0 + (10 % 3) as f64);
    assert!(
        (first[1].parse::<f64>().unwrap() - expected).abs() < 1e-12,
        "{}",
        rows[1]
    );
    let flagged: Vec<&str> = rows[1..]
        .iter()
        .filter(|r| !r.ends_with(','))
        .map(|r| &r[..19])
        .collect();
    assert_eq!(flagged, vec!["2026-11-01T01:20:00"], "{out}");

    // Inputs with no series key in common cannot be joined.
    let o = collector()
        .args(["backtest", "--rules", rules.to_str().unwrap()])
        .args([
            "--rule",
            "ErrorRatio",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ])
        .args([
            "--from",
            "2026-11-01 00:10:00",
            "--to",
            "2026-11-01 01:30:00",
        ])
        .args(["--host", "b"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("no stored series of the same labels for every input of errors / requests"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_mount_that_stops_answering_pages_after_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("device_error.csv");
    let mut text = String::from("timestamp,value\n");
    for i in 0..10 {
        text.push_str(&format!("2026-11-01 00:{i:02}:00,{}\n", u8::from(i >= 3)));
    }
    std::fs::write(&csv, text).unwrap();
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/host.yaml");
    let o = collector()
        .args([
            "backtest",
            "--rules",
            rules,
            "--rule",
            "HostFilesystemUnresponsive",
        ])
        .args(["--csv", csv.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert!(rows[4].ends_with(','), "not before its minute: {}", rows[4]);
    assert!(rows[5].ends_with(",critical"), "{}", rows[5]);
}
