//! Rule-file fixtures: every `*.good.yaml` must load; every `*.bad.yaml` must fail with exactly
//! the messages in the table below. The shipped `rules/` must load too.

use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn load(path: &Path) -> Result<Vec<tocsin_rules::Rule>, Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let name = format!("fixtures/{}", path.file_name().unwrap().to_string_lossy());
    tocsin_rules::parse_file(&name, &text)
}

const BAD: &[(&str, &[&str])] = &[
    (
        "syntax.bad.yaml",
        &["fixtures/syntax.bad.yaml:5:1: did not find expected ',' or '}', while parsing a flow mapping"],
    ),
    (
        "unknown_field.bad.yaml",
        &["fixtures/unknown_field.bad.yaml:4:5: rules[0]: unknown field `levles`, expected one of `name`, `record`, `expr`, `for`, `for_runs`, `flapping`, `dynamic`, `levels`, `labels`, `annotations`, `remediation`, `interval`"],
    ),
    (
        "dynamic.bad.yaml",
        &[
            "fixtures/dynamic.bad.yaml:4: rule \"Bad\": dynamic.sensitivity \"extreme\" must be low, medium or high",
            "fixtures/dynamic.bad.yaml:8: rule \"Bad2\": dynamic.direction \"sideways\" must be up, down or both",
        ],
    ),
    (
        "remediation.bad.yaml",
        &[
            "fixtures/remediation.bad.yaml:5: rule \"LabelOnly\": remediation.params.unit: a value from a label needs the values it may take, `{label: service, values: [...]}`, or a value fixed here, `{value: ...}`: labels are what agents send",
            "fixtures/remediation.bad.yaml:11: rule \"LabelWithoutValues\": remediation.params.unit: `label` needs `values`, the list the label's value must be in",
            "fixtures/remediation.bad.yaml:17: rule \"Both\": remediation.params.unit: give either `value`, `label` with `values`, or `scale`",
        ],
    ),
    (
        "template.bad.yaml",
        &[
            "fixtures/template.bad.yaml:8: rule \"ReceiverDown\": annotations.description: unknown name \"levle\" (an alert has host, value, level, threshold, rule, score, expected, lower, upper, cause, labels; a label is labels.levle)",
            "fixtures/template.bad.yaml:7: rule \"ReceiverDown\": annotations.summary: unknown name \"receiver\" (an alert has host, value, level, threshold, rule, score, expected, lower, upper, cause, labels; a label is labels.receiver)",
        ],
    ),
    (
        "nolevels.bad.yaml",
        &["fixtures/nolevels.bad.yaml:4: rule \"NoLevels\": levels: at least one of warning, critical, emergency is required"],
    ),
    (
        "semantic.bad.yaml",
        &[
            "fixtures/semantic.bad.yaml:8: rule \"BadExpr\": expr: column 8: expected '[', found \")\"",
            "fixtures/semantic.bad.yaml:14: rule \"BadLevels\": for: invalid duration \"soon\" (expected number at 0), expected e.g. \"30s\", \"5m\", \"1h30m\"",
            "fixtures/semantic.bad.yaml:18: rule \"BadLevels\": levels: unknown level \"fatal\", expected one of warning, critical, emergency",
            "fixtures/semantic.bad.yaml:15: rule \"BadLevels\": levels: critical (> 80) must be beyond warning (> 90)",
            "fixtures/semantic.bad.yaml:24: rule \"BadRecovery\": levels.critical: expected a condition such as \"> 90\", found a bare number",
            "fixtures/semantic.bad.yaml:23: rule \"BadRecovery\": levels.warning: recover \"< 85\" must be on the safe side of when \"> 80\" (e.g. when \"> 90\", recover \"< 85\")",
            "fixtures/semantic.bad.yaml:26: rule \"Ok\": duplicate rule name (first defined as rule 1)",
            "fixtures/semantic.bad.yaml:31: rule \"Ok\": labels: \"alertname\" is set by tocsin and cannot be overridden",
            "fixtures/semantic.bad.yaml:33: rule \"Ok\": annotations.summary: invalid template: unexpected end of input, expected end of variable block",
        ],
    ),
];

#[test]
fn good_fixtures_load() {
    let mut n = 0;
    for e in std::fs::read_dir(fixtures()).unwrap() {
        let p = e.unwrap().path();
        if p.to_string_lossy().ends_with(".good.yaml") {
            load(&p).unwrap_or_else(|e| panic!("{}: {e:?}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 3);
}

#[test]
fn bad_fixtures_fail_with_exact_messages() {
    let mut covered = 0;
    for e in std::fs::read_dir(fixtures()).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".bad.yaml") {
            continue;
        }
        let want = BAD
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} has no expected messages in the table"))
            .1;
        let got = load(&p).expect_err(&name);
        let mut got_sorted = got.clone();
        got_sorted.sort();
        let mut want_sorted: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want_sorted.sort();
        assert_eq!(got_sorted, want_sorted, "{name}: got\n{}", got.join("\n"));
        covered += 1;
    }
    assert_eq!(covered, BAD.len());
}

#[test]
fn shipped_rules_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules");
    let mut all = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let text = std::fs::read_to_string(&p).unwrap();
            let rules = tocsin_rules::parse_file(&p.display().to_string(), &text)
                .unwrap_or_else(|e| panic!("{}", e.join("\n")));
            all.extend(rules);
        }
    }
    assert!(all.len() >= 8);
    tocsin_rules::check_unique(&all).unwrap();
}

/// `HostFilesystemReadOnly` is for a disk filesystem the kernel remounted read-only (I/O
/// errors, a journal abort). Memory-backed and image filesystems mounted read-only by design
/// (a read-only tmpfs bind, a squashfs snap) are not it.
#[test]
fn shipped_read_only_rule_leaves_filesystems_read_only_by_design_alone() {
    use tocsin_model::{Labels, Sample, SeriesSamples, METRIC_NAME};
    use tocsin_rules::{Engine, EngineOptions, TransitionKind};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/host.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let rules: Vec<_> = tocsin_rules::parse_file("host.yaml", &text)
        .unwrap()
        .into_iter()
        .filter(|r| r.name == "HostFilesystemReadOnly")
        .collect();
    assert_eq!(rules.len(), 1);
    let mut e = Engine::new(rules, EngineOptions::default());
    let fs = |fstype: &str, t: i64| SeriesSamples {
        labels: Labels::from_pairs([
            (METRIC_NAME, "node_filesystem_readonly"),
            ("host", "web1"),
            ("fstype", fstype),
            ("mountpoint", &format!("/mnt/{fstype}")),
        ]),
        samples: vec![Sample::new(t, 1.0)],
    };
    let kinds = ["ext4", "xfs", "tmpfs", "ramfs", "squashfs", "overlay"];
    let t0 = 1_700_000_000_000;
    let mut fired = Vec::new();
    for i in 0..20 {
        let t = t0 + i * 10_000;
        let batch: Vec<_> = kinds.iter().map(|k| fs(k, t)).collect();
        for tr in e.ingest(&batch, t) {
            if tr.kind == TransitionKind::Firing {
                fired.push(tr.labels.get("fstype").unwrap().to_string());
            }
        }
    }
    fired.sort();
    assert_eq!(fired, ["ext4", "xfs"]);
}

/// A shipped rule by file and name.
fn shipped(file: &str, name: &str) -> tocsin_rules::Rule {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../rules")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    tocsin_rules::parse_file(file, &text)
        .unwrap()
        .into_iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("{name} in {file}"))
}

/// Feeds one host's series (name → value at minute `m`) every 10 s for `minutes`, and returns
/// each transition as (minute, kind, level).
fn run_host(
    rule: tocsin_rules::Rule,
    minutes: i64,
    values: &dyn Fn(i64, &str) -> Option<f64>,
    names: &[&str],
) -> Vec<(i64, &'static str, tocsin_model::Level)> {
    use tocsin_model::{Labels, Sample, SeriesSamples, METRIC_NAME};
    use tocsin_rules::{Engine, EngineOptions};
    let mut e = Engine::new(vec![rule], EngineOptions::default());
    let t0 = 1_700_000_000_000;
    let mut out = Vec::new();
    for step in 0..minutes * 6 {
        let t = t0 + step * 10_000;
        let m = step / 6;
        let batch: Vec<SeriesSamples> = names
            .iter()
            .filter_map(|n| {
                let v = values(step, n)?;
                Some(SeriesSamples {
                    labels: Labels::from_pairs([(METRIC_NAME, *n), ("host", "web1")]),
                    samples: vec![Sample::new(t, v)],
                })
            })
            .collect();
        for tr in e.ingest(&batch, t) {
            out.push((m, tr.kind.as_str(), tr.level));
        }
    }
    out
}

/// The kernel's OOM killer ending a process warns at once, and the warning ends ten minutes
/// later if nothing more is killed.
#[test]
fn shipped_oom_kill_rule_warns_at_a_kill_and_ends_after_ten_quiet_minutes() {
    use tocsin_model::Level::Warning;
    let kills = |step: i64, _: &str| Some(if step < 6 * 15 { 3.0 } else { 4.0 });
    let got = run_host(
        shipped("host.yaml", "HostOomKill"),
        40,
        &kills,
        &["node_vmstat_oom_kill"],
    );
    assert_eq!(got, [(15, "firing", Warning), (25, "resolved", Warning)]);
}

/// Connection tracking's table: a warning past 75 %, critical past 90 %, each held two
/// minutes, and the end below 70 %; a host without connection tracking never alerts.
#[test]
fn shipped_conntrack_rule_follows_the_tables_fill() {
    use tocsin_model::Level::{Critical, Warning};
    let fill = |step: i64, name: &str| {
        let used = match step / 6 {
            0..10 => 500.0,
            10..20 => 800.0,
            20..30 => 950.0,
            30..40 => 720.0,
            _ => 600.0,
        };
        Some(if name.ends_with("limit") {
            1000.0
        } else {
            used
        })
    };
    let names = [
        "node_nf_conntrack_entries",
        "node_nf_conntrack_entries_limit",
    ];
    let got = run_host(
        shipped("network.yaml", "NetworkConntrackFull"),
        50,
        &fill,
        &names,
    );
    let kinds: Vec<_> = got.iter().map(|(_, k, l)| (*k, *l)).collect();
    assert_eq!(
        kinds,
        [
            ("firing", Warning),
            ("level_changed", Critical),
            ("level_changed", Warning),
            ("resolved", Warning)
        ],
        "{got:?}"
    );
    assert_eq!(
        got.iter().map(|(m, ..)| *m).collect::<Vec<_>>(),
        [12, 22, 30, 40],
        "{got:?}"
    );
    let none = |_: i64, _: &str| None;
    assert!(run_host(
        shipped("network.yaml", "NetworkConntrackFull"),
        10,
        &none,
        &names
    )
    .is_empty());
}

/// Accept queues overflowing: ten a minute warns, a hundred a minute is critical, a quiet
/// counter says nothing.
#[test]
fn shipped_listen_overflow_rule_counts_drops_a_minute() {
    use tocsin_model::Level::{Critical, Warning};
    // Per 10-s step: 0 for 10 min, 10/min for 15 min, 100/min for 15 min, then 0.
    let overflows = |step: i64, _: &str| {
        let m = step as f64 / 6.0;
        let v = if m < 10.0 {
            0.0
        } else if m < 25.0 {
            (m - 10.0) * 10.0
        } else if m < 40.0 {
            150.0 + (m - 25.0) * 100.0
        } else {
            1650.0
        };
        Some(v)
    };
    let got = run_host(
        shipped("network.yaml", "NetworkListenOverflows"),
        60,
        &overflows,
        &["node_netstat_TcpExt_ListenOverflows"],
    );
    // Each level holds 5 minutes first; as the counter stops, the rate over 5 minutes falls
    // through the warning band to nothing.
    assert_eq!(
        got,
        [
            (15, "firing", Warning),
            (32, "level_changed", Critical),
            (42, "level_changed", Warning),
            (45, "resolved", Warning)
        ]
    );
}

/// Series by their label pairs (the metric name among them), with a value.
type Values = Vec<(Vec<(&'static str, &'static str)>, f64)>;

/// Feeds `rule` one sample of each series `values` gives per 15 s (the collector's own metrics'
/// interval) for `minutes`; the transitions, by the minute they came at.
fn run_every_15s(
    rule: tocsin_rules::Rule,
    minutes: i64,
    values: &dyn Fn(i64) -> Values,
) -> Vec<(i64, &'static str, tocsin_model::Level)> {
    use tocsin_model::{Labels, Sample, SeriesSamples};
    use tocsin_rules::{Engine, EngineOptions};
    let mut e = Engine::new(vec![rule], EngineOptions::default());
    let t0 = 1_700_000_000_000;
    let mut out = Vec::new();
    for step in 0..minutes * 4 {
        let t = t0 + step * 15_000;
        let batch: Vec<SeriesSamples> = values(step)
            .into_iter()
            .map(|(l, v)| SeriesSamples {
                labels: Labels::from_pairs(l),
                samples: vec![Sample::new(t, v)],
            })
            .collect();
        for tr in e.ingest(&batch, t) {
            out.push((step / 4, tr.kind.as_str(), tr.level));
        }
    }
    out
}

/// The collector's rules over its own metrics: a refused reload warns until a reload takes;
/// three failed attempts at a receiver within 15 minutes warn, and the warning ends 15 minutes
/// after the last; a notification given up is critical for the hour after.
#[test]
fn shipped_collector_rules_follow_reloads_and_deliveries() {
    use tocsin_model::Level::{Critical, Warning};
    let reload = |step: i64| {
        let ok = if (8..20).contains(&step) { 0.0 } else { 1.0 };
        vec![(
            vec![("__name__", "tocsin_config_last_reload_successful")],
            ok,
        )]
    };
    assert_eq!(
        run_every_15s(
            shipped("collector.yaml", "TocsinConfigReloadFailed"),
            10,
            &reload
        ),
        [(2, "firing", Warning), (5, "resolved", Warning)]
    );
    // Failed attempts at "down" in minute 5 (1 s, 2 s, 4 s apart: one sample each here), one
    // more at minute 30; "up" fails once an hour, which is no pattern.
    let attempts = |step: i64| {
        let down = match step {
            ..20 => 0.0,
            20 => 1.0,
            21 => 2.0,
            22..120 => 3.0,
            _ => 4.0,
        };
        let up = if step < 100 { 0.0 } else { 1.0 };
        vec![
            (
                vec![
                    ("__name__", "tocsin_notifications_total"),
                    ("receiver", "down"),
                    ("result", "failed"),
                ],
                down,
            ),
            (
                vec![
                    ("__name__", "tocsin_notifications_total"),
                    ("receiver", "up"),
                    ("result", "failed"),
                ],
                up,
            ),
            (
                vec![
                    ("__name__", "tocsin_notifications_total"),
                    ("receiver", "down"),
                    ("result", "delivered"),
                ],
                7.0,
            ),
        ]
    };
    assert_eq!(
        run_every_15s(
            shipped("collector.yaml", "TocsinReceiverFailing"),
            45,
            &attempts
        ),
        [(5, "firing", Warning), (20, "resolved", Warning)]
    );
    let dead = |step: i64| {
        let n = if step < 40 { 0.0 } else { 1.0 };
        vec![(
            vec![
                ("__name__", "tocsin_notifications_total"),
                ("receiver", "down"),
                ("result", "dead"),
            ],
            n,
        )]
    };
    assert_eq!(
        run_every_15s(
            shipped("collector.yaml", "TocsinNotificationsDead"),
            90,
            &dead
        ),
        [(10, "firing", Critical), (70, "resolved", Critical)]
    );
}
