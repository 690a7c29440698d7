//! The collector's command line (this file also makes `cargo test` build the real binary that
//! the end-to-end tests start).

use std::path::Path;
use std::process::Command;

fn collector() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tocsin-collector"))
}

/// `backtest --rules RULES --rule RULE --csv CSV [ARGS…]`.
fn backtest_csv(rules: &Path, rule: &str, csv: &Path, args: &[&str]) -> std::process::Output {
    collector()
        .args([
            "backtest",
            "--rules",
            rules.to_str().unwrap(),
            "--rule",
            rule,
        ])
        .args(["--csv", csv.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
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
    let o = backtest_csv(&rules, "Unusual", &csv, &["--out", out.to_str().unwrap()]);
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

    let o = backtest_csv(&rules, "Nope", &csv, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no rule \"Nope\" (rules: Unusual)"));

    // An absence rule is judged between samples, which a replay of samples cannot show.
    std::fs::write(
        &rules,
        "rules:\n  - name: Gone\n    expr: absent_over_time(value[5m])\n    levels: { critical: \"== 1\" }\n",
    )
    .unwrap();
    let o = backtest_csv(&rules, "Gone", &csv, &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Gone uses absent_over_time"), "{err}");
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

/// Replays `values` (one every `step_s` seconds from 2026-11-01 00:00) through a shipped rule;
/// the level of each row ("" when not firing).
fn backtest_shipped(file: &str, rule: &str, step_s: i64, values: &[f64]) -> Vec<String> {
    backtest_rules(
        &format!("{}/../rules/{file}", env!("CARGO_MANIFEST_DIR")),
        rule,
        step_s,
        values,
    )
}

/// Backtests `rule` from `rules` (a file or a directory of them) over `values`.
fn backtest_rules(rules: &str, rule: &str, step_s: i64, values: &[f64]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("in.csv");
    let mut text = String::from("timestamp,value\n");
    for (i, v) in values.iter().enumerate() {
        let s = i as i64 * step_s;
        text.push_str(&format!(
            "2026-11-{:02} {:02}:{:02}:{:02},{v}\n",
            1 + s / 86_400,
            s % 86_400 / 3600,
            s % 3600 / 60,
            s % 60
        ));
    }
    std::fs::write(&csv, text).unwrap();
    let o = collector()
        .args(["backtest", "--rules", rules, "--rule", rule])
        .args(["--csv", csv.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .skip(1)
        .map(|r| r.rsplit(',').next().unwrap_or("").to_string())
        .collect()
}

/// The first row at each level, in minutes from the start.
fn first_at(levels: &[String], level: &str, step_s: i64) -> Option<i64> {
    levels
        .iter()
        .position(|l| l == level)
        .map(|i| i as i64 * step_s / 60)
}

#[test]
fn a_disk_filling_up_is_forecast_a_day_then_four_hours_ahead() {
    // Every 5 minutes: 100 GB free and steady for 12 h, then losing 10 GB an hour.
    let step = 300;
    let free: Vec<f64> = (0..(24 * 12))
        .map(|i| {
            let h = i as f64 / 12.0;
            if h < 12.0 {
                100e9
            } else {
                (100e9 - 10e9 * (h - 12.0)).max(0.0)
            }
        })
        .collect();
    let levels = backtest_shipped("host.yaml", "HostDiskFillingUp", step, &free);
    assert!(
        levels[..12 * 12].iter().all(String::is_empty),
        "a steady disk is never forecast full"
    );
    // The decline starts at 12:00 with 10 h to go: the hour's slope shows under 24 h to go
    // within half an hour (as the decline fills the window), then the rule's hour holds it.
    let warn = first_at(&levels, "warning", step).expect("warning");
    assert!((13 * 60..=14 * 60).contains(&warn), "warning at {warn} min");
    // Under 4 h left at 18:00, held 15 min.
    let crit = first_at(&levels, "critical", step).expect("critical");
    assert!(
        (18 * 60..=18 * 60 + 25).contains(&crit),
        "critical at {crit} min"
    );
    // A disk freeing space is not forecast full.
    let freeing: Vec<f64> = free.iter().map(|v| 200e9 - v).collect();
    let levels = backtest_shipped("host.yaml", "HostDiskFillingUp", step, &freeing);
    assert!(levels.iter().all(String::is_empty));
}

#[test]
fn network_latency_and_loss_rules_hold_for_their_minutes_and_recover_with_hysteresis() {
    // Every 10 s: 20 ms, then 260 ms for 5 minutes, 170 ms (above recovery) for 2, then 20.
    let step = 10;
    let rtt: Vec<f64> = (0..90)
        .map(|i| match i {
            0..30 => 0.020,
            30..60 => 0.260,
            60..72 => 0.170,
            _ => 0.020,
        })
        .collect();
    let levels = backtest_shipped("network.yaml", "NetworkLatencyHigh", step, &rtt);
    assert_eq!(
        first_at(&levels, "warning", step),
        Some(7),
        "5 min + 2 min for"
    );
    assert_eq!(levels[65], "warning", "170 ms is above the 150 ms recovery");
    assert_eq!(levels[75], "", "recovered");
    // Loss: 10 % is a warning, 30 % critical, after 2 minutes each.
    let loss: Vec<f64> = (0..60)
        .map(|i| {
            if i < 20 {
                0.0
            } else if i < 40 {
                0.1
            } else {
                0.3
            }
        })
        .collect();
    let levels = backtest_shipped("network.yaml", "NetworkPacketLoss", step, &loss);
    // Loss from 3m20s: warning at 5m20s; 30 % from 6m40s: critical at 8m40s.
    assert_eq!(first_at(&levels, "warning", step), Some(5));
    assert_eq!(first_at(&levels, "critical", step), Some(8));
}

/// The other new single-series shipped rules, replayed: each stays quiet on normal input and
/// fires at the level its thresholds say once its `for` has passed.
#[test]
fn new_shipped_rules_fire_on_their_signal_in_backtests() {
    // (file, rule, step s, normal value, bad value, normal rows, bad rows, expected level,
    //  earliest minute it may fire, latest)
    type Case = (
        &'static str,
        &'static str,
        i64,
        f64,
        f64,
        usize,
        usize,
        &'static str,
        i64,
        i64,
    );
    let cases: &[Case] = &[
        // 80 ms of jitter for 10 minutes (sampled every 10 s): warning after its 5 minutes.
        (
            "network.yaml",
            "NetworkJitterHigh",
            10,
            0.005,
            0.080,
            30,
            60,
            "warning",
            10,
            11,
        ),
        // Remounted read-only: critical after a minute.
        (
            "host.yaml",
            "HostFilesystemReadOnly",
            10,
            0.0,
            1.0,
            30,
            30,
            "critical",
            6,
            7,
        ),
        // A backup last written 30 h ago: warning at once.
        (
            "backup.yaml",
            "BackupTooOld",
            60,
            3600.0,
            30.0 * 3600.0,
            5,
            5,
            "warning",
            5,
            5,
        ),
        // A replica 90 s behind for 5 minutes: warning after 2.
        (
            "probes.yaml",
            "MysqlReplicationLag",
            10,
            0.0,
            90.0,
            30,
            30,
            "warning",
            7,
            8,
        ),
        (
            "probes.yaml",
            "PostgresReplicationLag",
            10,
            0.0,
            400.0,
            30,
            30,
            "critical",
            7,
            8,
        ),
    ];
    for &(file, rule, step, normal, bad, n_ok, n_bad, level, from, to) in cases {
        let values: Vec<f64> = std::iter::repeat_n(normal, n_ok)
            .chain(std::iter::repeat_n(bad, n_bad))
            .collect();
        let levels = backtest_shipped(file, rule, step, &values);
        assert!(
            levels[..n_ok].iter().all(String::is_empty),
            "{rule}: quiet on normal input"
        );
        // The rules directory serves as well as the file, as for the collector's `--rules`.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");
        assert_eq!(backtest_rules(dir, rule, step, &values), levels, "{rule}");
        let at = first_at(&levels, level, step).unwrap_or_else(|| panic!("{rule}: no {level}"));
        assert!((from..=to).contains(&at), "{rule}: {level} at minute {at}");
    }
    // An error counter growing 30 lines a minute: LogErrorsHigh warns (10/min) after 2 min.
    let counter: Vec<f64> = (0..60)
        .map(|i| if i < 20 { 0.0 } else { (i - 20) as f64 * 5.0 })
        .collect();
    let levels = backtest_shipped("logs.yaml", "LogErrorsHigh", 10, &counter);
    assert!(levels[..20].iter().all(String::is_empty));
    let at = first_at(&levels, "warning", 10).expect("LogErrorsHigh warning");
    assert!((5..=7).contains(&at), "LogErrorsHigh at minute {at}");
    // Inodes running out at 1,000 an hour from 10,000 free: warning within the hour's trend.
    let inodes: Vec<f64> = (0..(6 * 12))
        .map(|i| {
            if i < 24 {
                10_000.0
            } else {
                10_000.0 - 1000.0 * (i - 24) as f64 / 12.0
            }
        })
        .collect();
    let levels = backtest_shipped("host.yaml", "HostInodesFillingUp", 300, &inodes);
    assert!(levels[..24].iter().all(String::is_empty));
    assert!(first_at(&levels, "warning", 300).is_some(), "{levels:?}");
}

/// `check-config` judges the configuration as a start would — the file with its lines, the
/// rule files it names, receivers whose channel cannot be built — without opening the
/// database or the port, and passes a valid one with what it found.
#[test]
fn check_config_reports_every_problem_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("a.yaml"), "rules:\n  - name: A\n    expr: up(\n").unwrap();
    let data = dir.path().join("data");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        format!(
            "data_dir: {}\nrules: [{}]\nreceivers:\n  - name: hook\n    webhook: {{ url: \"ftp://x\" }}\nroute: {{ receivers: [nope] }}\n",
            data.display(),
            rules.display()
        ),
    )
    .unwrap();
    let out = collector()
        .args(["check-config", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:5: receivers[0] (\"hook\"): webhook.url")
            && err.contains("bad.yaml:6: route.receivers: no receiver named \"nope\""),
        "{err}"
    );
    // The file valid, its rules not.
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        format!(
            "data_dir: {}\nrules: [{}]\nreceivers:\n  - name: hook\n    webhook: {{ url: \"http://127.0.0.1:9/hook\" }}\n",
            data.display(),
            rules.display()
        ),
    )
    .unwrap();
    let out = collector()
        .args(["check-config", "-c", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a.yaml:3: rule \"A\": expr:"), "{err}");
    // Flags count as they do at a start: the shipped rules instead.
    let out = collector()
        .args(["check-config", "-c", good.to_str().unwrap(), "--rules"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../rules"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("good.yaml: valid") && said.contains("1 receivers (hook)"),
        "{said}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).is_empty(),
        "nothing to warn of"
    );
    // Valid, with a warning: a group sent again whole at each change of a burst.
    std::fs::write(
        &good,
        format!(
            "data_dir: {}\nrules: [{}]\nreceivers:\n  - name: hook\n    webhook: {{ url: \"http://127.0.0.1:9/hook\" }}\nroute: {{ receivers: [hook], group_by: [alertname], group_interval: 0s }}\n",
            data.display(),
            rules.display()
        ),
    )
    .unwrap();
    let out = collector()
        .args(["check-config", "-c", good.to_str().unwrap(), "--rules"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../rules"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: route: grouped by labels with group_interval 0s"),
        "{err}"
    );
    assert!(!data.exists(), "no data directory made");
}
