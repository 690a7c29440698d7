use super::*;
use tocsin_model::{Labels, Level, Sample, SeriesSamples, METRIC_NAME};

const T0: i64 = 1_700_000_000_000;
const S: i64 = 1000;

fn rules(yaml: &str) -> Vec<Rule> {
    parse_file("test.yaml", yaml).unwrap_or_else(|e| panic!("{}", e.join("\n")))
}

fn two_level(extra: &str) -> Vec<Rule> {
    rules(&format!(
        r#"
rules:
  - name: Busy
    expr: cpu_busy * 100
    {extra}
    levels:
      warning: "> 80"
      critical: {{ when: "> 90", recover: "< 85" }}
    labels: {{ category: host }}
    annotations:
      summary: "{{{{ host }}}} at {{{{ value|round(1) }}}}% ({{{{ level }}}}, {{{{ threshold }}}})"
"#
    ))
}

fn sample(name: &str, host: &str, t: i64, v: f64) -> SeriesSamples {
    SeriesSamples {
        labels: Labels::from_pairs([(METRIC_NAME, name), ("host", host)]),
        samples: vec![Sample::new(t, v)],
    }
}

fn feed(e: &mut Engine, t: i64, v: f64) -> Vec<Transition> {
    e.ingest(&[sample("cpu_busy", "web1", t, v)], t)
}

fn kinds(ts: &[Transition]) -> Vec<(TransitionKind, Level)> {
    ts.iter().map(|t| (t.kind, t.level)).collect()
}

#[test]
fn fires_escalates_and_resolves() {
    let mut e = Engine::new(two_level(""), EngineOptions::default());
    assert!(feed(&mut e, T0, 0.5).is_empty());
    let t = feed(&mut e, T0 + 10 * S, 0.85);
    assert_eq!(kinds(&t), vec![(TransitionKind::Firing, Level::Warning)]);
    assert_eq!(t[0].annotations["summary"], "web1 at 85.0% (warning, > 80)");
    assert_eq!(t[0].labels.get("alertname"), Some("Busy"));
    assert_eq!(t[0].labels.get("category"), Some("host"));
    assert_eq!(t[0].labels.get(METRIC_NAME), None);
    let t = feed(&mut e, T0 + 20 * S, 0.95);
    assert_eq!(
        kinds(&t),
        vec![(
            TransitionKind::LevelChanged {
                from: Level::Warning
            },
            Level::Critical
        )]
    );
    assert!(
        feed(&mut e, T0 + 30 * S, 0.95).is_empty(),
        "no repeat while unchanged"
    );
    let t = feed(&mut e, T0 + 40 * S, 0.5);
    assert_eq!(kinds(&t), vec![(TransitionKind::Resolved, Level::Critical)]);
    assert_eq!(t[0].starts_at, T0 + 10 * S);
    assert_eq!(t[0].ends_at, Some(T0 + 40 * S));
    assert_eq!(e.alerts().count(), 0);
}

#[test]
fn hysteresis_holds_level_until_recovery() {
    let mut e = Engine::new(two_level(""), EngineOptions::default());
    assert_eq!(
        kinds(&feed(&mut e, T0, 0.95)),
        vec![(TransitionKind::Firing, Level::Critical)]
    );
    // 88 is below the trigger (90) but above recovery (85): stays critical.
    assert!(feed(&mut e, T0 + S, 0.88).is_empty());
    assert!(feed(&mut e, T0 + 2 * S, 0.86).is_empty());
    // Below recovery: down to warning, which still holds (> 80).
    assert_eq!(
        kinds(&feed(&mut e, T0 + 3 * S, 0.84)),
        vec![(
            TransitionKind::LevelChanged {
                from: Level::Critical
            },
            Level::Warning
        )]
    );
}

#[test]
fn for_delays_firing_and_tick_promotes() {
    let mut e = Engine::new(two_level("for: 30s"), EngineOptions::default());
    assert!(feed(&mut e, T0, 0.85).is_empty());
    assert_eq!(e.alerts().next().unwrap().level, None, "pending");
    assert!(feed(&mut e, T0 + 10 * S, 0.85).is_empty());
    assert!(e.tick(T0 + 29 * S).is_empty());
    assert_eq!(
        kinds(&e.tick(T0 + 30 * S)),
        vec![(TransitionKind::Firing, Level::Warning)]
    );
    // A dip resets pending for the higher level.
    assert!(feed(&mut e, T0 + 31 * S, 0.95).is_empty());
    assert!(feed(&mut e, T0 + 40 * S, 0.82).is_empty());
    assert!(feed(&mut e, T0 + 65 * S, 0.95).is_empty());
    assert!(e.tick(T0 + 94 * S).is_empty());
    assert_eq!(
        kinds(&e.tick(T0 + 95 * S)),
        vec![(
            TransitionKind::LevelChanged {
                from: Level::Warning
            },
            Level::Critical
        )]
    );
}

#[test]
fn pending_that_clears_never_fires() {
    let mut e = Engine::new(two_level("for: 30s"), EngineOptions::default());
    feed(&mut e, T0, 0.85);
    assert!(feed(&mut e, T0 + 10 * S, 0.5).is_empty());
    assert_eq!(e.alerts().count(), 0);
    assert!(e.tick(T0 + 60 * S).is_empty());
}

#[test]
fn stale_series_resolves() {
    let mut e = Engine::new(
        two_level(""),
        EngineOptions {
            stale_after_ms: 60 * S,
        },
    );
    feed(&mut e, T0, 0.95);
    assert!(e.tick(T0 + 60 * S).is_empty());
    let t = e.tick(T0 + 61 * S);
    assert_eq!(kinds(&t), vec![(TransitionKind::Resolved, Level::Critical)]);
    assert_eq!(t[0].reason, Some("stale"));
    // Old samples (a replayed backlog) are stored but not evaluated.
    assert!(e
        .ingest(&[sample("cpu_busy", "web1", T0, 0.95)], T0 + 120 * S)
        .is_empty());
}

#[test]
fn ratio_of_two_series_and_rate() {
    let r = rules(
        r#"
rules:
  - name: DiskFull
    expr: 100 * (1 - avail / size)
    levels: { warning: "> 80" }
  - name: Errors
    expr: rate(errors_total[1m])
    levels: { critical: "> 1" }
"#,
    );
    let mut e = Engine::new(r, EngineOptions::default());
    let disk = |t, a| {
        vec![
            SeriesSamples {
                labels: Labels::from_pairs([(METRIC_NAME, "avail"), ("host", "h"), ("mount", "/")]),
                samples: vec![Sample::new(t, a)],
            },
            SeriesSamples {
                labels: Labels::from_pairs([(METRIC_NAME, "size"), ("host", "h"), ("mount", "/")]),
                samples: vec![Sample::new(t, 100.0)],
            },
        ]
    };
    assert!(e.ingest(&disk(T0, 50.0), T0).is_empty());
    let t = e.ingest(&disk(T0 + S, 10.0), T0 + S);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].labels.get("mount"), Some("/"));
    assert!((t[0].value - 90.0).abs() < 1e-9);

    let c = |t, v| vec![sample("errors_total", "h", t, v)];
    assert!(
        e.ingest(&c(T0, 0.0), T0).is_empty(),
        "one sample: no rate yet"
    );
    // As PromQL's: the increase over the range (a young window's, from where the counter
    // was zero), per second of the range: 5 / 60.
    assert!(e.ingest(&c(T0 + 30 * S, 5.0), T0 + 30 * S).is_empty());
    let t = e.ingest(&c(T0 + 60 * S, 155.0), T0 + 60 * S);
    assert_eq!(kinds(&t), vec![(TransitionKind::Firing, Level::Critical)]);
    assert!((t[0].value - 155.0 / 60.0).abs() < 1e-9, "{}", t[0].value);
}

#[test]
fn restart_restores_without_renotifying() {
    let mut e = Engine::new(two_level(""), EngineOptions::default());
    feed(&mut e, T0, 0.85);
    let saved: Vec<AlertState> = e
        .take_changes()
        .into_iter()
        .filter_map(|c| c.state)
        .collect();
    assert_eq!(saved.len(), 1);
    let json = serde_json::to_string(&saved[0]).unwrap();

    let mut e2 = Engine::new(two_level(""), EngineOptions::default());
    let back: AlertState = serde_json::from_str(&json).unwrap();
    assert!(e2.restore(vec![back], T0 + S).is_empty());
    assert!(
        feed(&mut e2, T0 + 10 * S, 0.86).is_empty(),
        "still warning: nothing new"
    );
    let t = feed(&mut e2, T0 + 20 * S, 0.1);
    assert_eq!(kinds(&t), vec![(TransitionKind::Resolved, Level::Warning)]);
    assert_eq!(t[0].starts_at, T0, "keeps the original start");
    let ch = e2.take_changes();
    assert_eq!(ch.len(), 1);
    let kept = ch[0].state.as_ref().expect("kept for flapping detection");
    assert!(!kept.is_active());
    assert_eq!(e2.alerts().count(), 0);
    // Once the flapping window has passed, it is forgotten.
    assert!(e2.tick(T0 + 20 * S + 10 * 60 * S).is_empty());
    let ch = e2.take_changes();
    assert!(ch[0].state.is_none(), "forgotten after the window");
}

#[test]
fn removed_rule_resolves_its_alerts() {
    let mut e = Engine::new(two_level(""), EngineOptions::default());
    assert!(e.has_rule("Busy") && !e.has_rule("Idle"));
    assert_eq!(e.rule("Busy").map(|r| r.name.as_str()), Some("Busy"));
    feed(&mut e, T0, 0.95);
    let t = e.replace_rules(Vec::new(), T0 + S);
    assert_eq!(kinds(&t), vec![(TransitionKind::Resolved, Level::Critical)]);
    assert_eq!(t[0].reason, Some("rule removed"));
    assert!(!e.has_rule("Busy"), "a posted alert may take the name now");
    assert!(e.rule("Busy").is_none());
}

#[test]
fn reload_keeps_state_of_surviving_rules() {
    let mut e = Engine::new(two_level(""), EngineOptions::default());
    feed(&mut e, T0, 0.95);
    assert!(e.replace_rules(two_level(""), T0 + S).is_empty());
    assert!(feed(&mut e, T0 + 2 * S, 0.95).is_empty());
    assert_eq!(
        kinds(&feed(&mut e, T0 + 3 * S, 0.1)),
        vec![(TransitionKind::Resolved, Level::Critical)]
    );
}

#[test]
fn a_rule_narrowed_on_reload_resolves_the_alerts_it_no_longer_reads_at_once() {
    let ro = |selector: &str| {
        rules(&format!(
            "rules:\n  - name: ReadOnly\n    expr: fs_ro{selector}\n    labels: {{ category: fs }}\n    levels: {{ critical: \"> 0\" }}\n"
        ))
    };
    let fs = |fstype: &str, dev: &str, t: i64| SeriesSamples {
        labels: Labels::from_pairs([
            (METRIC_NAME, "fs_ro"),
            ("host", "web1"),
            ("fstype", fstype),
            ("device", dev),
        ]),
        samples: vec![Sample::new(t, 1.0)],
    };
    let batch = |t| vec![fs("tmpfs", "a", t), fs("ext4", "b", t), fs("xfs", "c", t)];
    let mut e = Engine::new(ro(""), EngineOptions::default());
    assert_eq!(e.ingest(&batch(T0), T0).len(), 3);
    // The same expression with another threshold keeps every alert.
    assert!(e.replace_rules(ro(""), T0 + S).is_empty());
    // A matcher on a label the rule sets itself cannot be judged: kept (stale in time).
    assert!(e
        .replace_rules(ro(r#"{category="other"}"#), T0 + S)
        .is_empty());
    // Narrowed by the input's labels.
    let t = e.replace_rules(ro(r#"{fstype!~"tmpfs|xfs", device!="zz"}"#), T0 + 2 * S);
    let mut gone: Vec<_> = t
        .iter()
        .map(|t| {
            (
                t.kind,
                t.reason,
                t.labels.get("device").unwrap().to_string(),
            )
        })
        .collect();
    gone.sort_by(|a, b| a.2.cmp(&b.2));
    assert_eq!(
        gone,
        vec![
            (
                TransitionKind::Resolved,
                Some("rule changed"),
                "a".to_string()
            ),
            (
                TransitionKind::Resolved,
                Some("rule changed"),
                "c".to_string()
            ),
        ]
    );
    // What it still reads goes on firing, without a new notification.
    assert!(e.ingest(&batch(T0 + 3 * S), T0 + 3 * S).is_empty());
    assert_eq!(e.alerts().count(), 1);
}

#[test]
fn flapping_needs_a_window_and_two_changes() {
    let bad = |f: &str| {
        parse_file(
            "f.yaml",
            &format!("rules:\n  - name: X\n    expr: up\n    flapping: {f}\n    levels: {{ warning: \"< 1\" }}\n"),
        )
        .unwrap_err()
    };
    assert_eq!(
        bad("{ changes: 3, window: 0s }"),
        ["f.yaml:4: rule \"X\": flapping.window must be above 0 (changes: 0 switches detection off)"]
    );
    assert_eq!(
        bad("{ changes: 1 }"),
        ["f.yaml:4: rule \"X\": flapping.changes must be 0 (off) or at least 2"]
    );
    assert!(parse_file(
        "f.yaml",
        "rules:\n  - name: X\n    expr: up\n    flapping: { changes: 0, window: 0s }\n    levels: { warning: \"< 1\" }\n",
    )
    .is_ok());
}

#[test]
fn unique_names_across_files() {
    let mut a = rules("rules:\n  - name: X\n    expr: up\n    levels: { warning: \"< 1\" }\n");
    let b = parse_file(
        "b.yaml",
        "rules:\n  - name: X\n    expr: up\n    levels: { warning: \"< 1\" }\n",
    )
    .unwrap();
    a.extend(b);
    assert_eq!(
        check_unique(&a).unwrap_err(),
        vec!["b.yaml:2: rule \"X\": duplicate rule name (first defined at test.yaml:2)"]
    );
}

#[test]
fn for_runs_counts_fresh_evaluations_only() {
    let r = rules(
        r#"
rules:
  - name: Down
    expr: probe_success
    for_runs: 2
    levels: { critical: "< 1" }
"#,
    );
    let mut e = Engine::new(r, EngineOptions::default());
    let f = |e: &mut Engine, t: i64, v: f64| e.ingest(&[sample("probe_success", "h", t, v)], t);
    assert!(f(&mut e, T0, 0.0).is_empty(), "one failed run");
    assert!(e.tick(T0 + 60 * S).is_empty(), "time alone is not a run");
    assert_eq!(
        kinds(&f(&mut e, T0 + 61 * S, 0.0)),
        vec![(TransitionKind::Firing, Level::Critical)]
    );
    assert_eq!(
        kinds(&f(&mut e, T0 + 62 * S, 1.0)),
        vec![(TransitionKind::Resolved, Level::Critical)]
    );
    // A success in between resets the count.
    f(&mut e, T0 + 63 * S, 0.0);
    f(&mut e, T0 + 64 * S, 1.0);
    assert!(f(&mut e, T0 + 65 * S, 0.0).is_empty());
}

#[test]
fn time_function_for_certificate_expiry() {
    let r = rules(
        r#"
rules:
  - name: CertExpiry
    expr: (probe_ssl_earliest_cert_expiry - time()) / 86400
    levels:
      warning: "< 30"
      critical: "< 14"
      emergency: "< 3"
"#,
    );
    let mut e = Engine::new(r, EngineOptions::default());
    let expiry = (T0 / 1000 + 10 * 86400) as f64;
    let t = e.ingest(
        &[sample("probe_ssl_earliest_cert_expiry", "h", T0, expiry)],
        T0,
    );
    assert_eq!(kinds(&t), vec![(TransitionKind::Firing, Level::Critical)]);
    assert!((t[0].value - 10.0).abs() < 1e-9);
}

#[test]
fn flapping_is_notified_once_then_quiet_until_calm() {
    let r = rules(
        r#"
rules:
  - name: Flappy
    expr: probe_success
    flapping: { changes: 4, window: 1m }
    levels: { critical: "< 1" }
"#,
    );
    let mut e = Engine::new(r, EngineOptions::default());
    let f = |e: &mut Engine, t: i64, v: f64| e.ingest(&[sample("probe_success", "h", t, v)], t);
    let mut seen = Vec::new();
    for i in 0..10 {
        seen.extend(kinds(&f(
            &mut e,
            T0 + i * S,
            if i % 2 == 0 { 0.0 } else { 1.0 },
        )));
    }
    use TransitionKind::*;
    assert_eq!(
        seen,
        vec![
            (Firing, Level::Critical),
            (Resolved, Level::Critical),
            (Firing, Level::Critical),
            (Flapping, Level::Critical),
        ],
        "three changes notified, the fourth announces flapping, the rest are quiet"
    );
    assert!(e.alerts().next().is_none() || e.alerts().all(|a| a.flapping));
    // Calm: stays firing; after a window with at most two changes, flapping ends, firing.
    f(&mut e, T0 + 10 * S, 0.0);
    assert!(e.tick(T0 + 40 * S).is_empty(), "still within the window");
    let t = e.tick(T0 + 70 * S);
    assert_eq!(
        kinds(&t),
        vec![(FlappingEnded { firing: true }, Level::Critical)]
    );
    assert_eq!(
        kinds(&f(&mut e, T0 + 71 * S, 1.0)),
        vec![(Resolved, Level::Critical)]
    );
}

#[test]
fn every_sample_of_a_batch_is_a_run() {
    let r = rules("rules:\n  - name: Slow\n    expr: latency\n    for_runs: 3\n    levels: { warning: \"> 1\" }\n");
    let mut e = Engine::new(r, EngineOptions::default());
    let batch = SeriesSamples {
        labels: Labels::from_pairs([(METRIC_NAME, "latency"), ("host", "h")]),
        samples: vec![
            Sample::new(T0, 2.0),
            Sample::new(T0 + S, 2.0),
            Sample::new(T0 + 2 * S, 2.0),
        ],
    };
    assert_eq!(
        kinds(&e.ingest(&[batch], T0 + 2 * S)),
        vec![(TransitionKind::Firing, Level::Warning)]
    );
}

#[test]
fn dynamic_levels_combine_with_a_static_emergency() {
    let r = rules(
        r#"
rules:
  - name: Disk
    expr: used
    dynamic: { sensitivity: medium, direction: up, min_abs_deviation: 10 }
    levels:
      emergency: "> 98"
    annotations:
      summary: "{{ value }} vs expected {{ expected|round(1) }}"
"#,
    );
    assert!(r[0].level(Level::Warning).unwrap().on_score);
    assert!(!r[0].level(Level::Emergency).unwrap().on_score);
    let mut e = Engine::new(r, EngineOptions::default());
    let f = |e: &mut Engine, i: i64, v: f64| {
        e.ingest(&[sample("used", "h", T0 + i * 60 * S, v)], T0 + i * 60 * S)
    };
    for i in 0..300 {
        assert!(
            f(&mut e, i, 40.0 + (i % 3) as f64 * 0.1).is_empty(),
            "quiet while learning and steady"
        );
    }
    // A drop is ignored (direction up); a small rise is below min_abs_deviation.
    assert!(f(&mut e, 300, 10.0).is_empty());
    e.take_last_evaluation();
    assert!(f(&mut e, 301, 43.0).is_empty());
    // A large unusual rise fires dynamically and says what was expected.
    let t = f(&mut e, 302, 70.0);
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(t[0].level >= Level::Warning && t[0].level <= Level::Critical);
    assert!(
        t[0].annotations["summary"].starts_with("70.0 vs expected"),
        "{}",
        t[0].annotations["summary"]
    );
    // The static emergency still applies.
    let t = f(&mut e, 303, 99.0);
    assert!(
        matches!(t[0].kind, TransitionKind::LevelChanged { .. }),
        "{t:?}"
    );
    assert_eq!(t[0].level, Level::Emergency);
}

#[test]
fn learned_baselines_survive_a_restart() {
    let yaml = "rules:\n  - name: U\n    expr: v\n    dynamic: {}\n";
    let mut a = Engine::new(rules(yaml), EngineOptions::default());
    let f = |e: &mut Engine, i: i64, v: f64| {
        e.ingest(&[sample("v", "h", T0 + i * 60 * S, v)], T0 + i * 60 * S);
        e.take_last_evaluation().unwrap().score
    };
    for i in 0..200 {
        f(&mut a, i, 10.0 + (i % 5) as f64);
    }
    let saved = a.baselines();
    assert_eq!(saved.len(), 1);
    let mut b = Engine::new(rules(yaml), EngineOptions::default());
    assert_eq!(b.restore_baselines(saved.clone()), (1, vec![]));
    // Same state, same verdict on the next sample; a fresh engine would still be learning.
    assert_eq!(f(&mut a, 200, 30.0), f(&mut b, 200, 30.0));
    assert!(f(&mut a, 201, 60.0) > 0.0);
    let mut fresh = Engine::new(rules(yaml), EngineOptions::default());
    assert_eq!(f(&mut fresh, 201, 60.0), 0.0);
    // Baselines of a rule that is gone are dropped.
    let mut other = Engine::new(
        rules("rules:\n  - name: X\n    expr: v\n    dynamic: {}\n"),
        EngineOptions::default(),
    );
    assert_eq!(other.restore_baselines(saved.clone()), (0, vec![]));
    // State saved as JSON by earlier versions still restores; damaged state is named.
    let (key, bytes) = saved[0].clone();
    let d = tocsin_baseline::Detector::from_bytes(&bytes, Default::default()).unwrap();
    let json = serde_json::to_vec(&d).unwrap();
    let mut c = Engine::new(rules(yaml), EngineOptions::default());
    assert_eq!(c.restore_baselines(vec![(key.clone(), json)]), (1, vec![]));
    assert_eq!(
        f(&mut c, 200, 30.0),
        f(&mut fresh_copy(&saved, yaml), 200, 30.0)
    );
    let mut damaged = Engine::new(rules(yaml), EngineOptions::default());
    let (n, bad) = damaged.restore_baselines(vec![(key.clone(), bytes[..40].to_vec())]);
    assert_eq!((n, bad), (0, vec![(key, "truncated".to_string())]));
}

fn fresh_copy(saved: &[(String, Vec<u8>)], yaml: &str) -> Engine {
    let mut e = Engine::new(rules(yaml), EngineOptions::default());
    e.restore_baselines(saved.to_vec());
    e
}

#[test]
fn a_replayed_backlog_is_learned_as_if_it_had_come_live_and_never_fires() {
    let yaml = "rules:\n  - name: U\n    expr: v\n    dynamic: {}\n";
    let at = |i: i64| T0 + i * 60 * S;
    let value = |i: i64| 10.0 + (i % 5) as f64;
    let live = |e: &mut Engine, i: i64, v: f64| e.ingest(&[sample("v", "h", at(i), v)], at(i));
    let mut on_time = Engine::new(rules(yaml), EngineOptions::default());
    let mut replayed = Engine::new(rules(yaml), EngineOptions::default());
    let mut never = Engine::new(rules(yaml), EngineOptions::default());
    for i in 0..200 {
        for e in [&mut on_time, &mut replayed, &mut never] {
            live(e, i, value(i));
        }
    }
    // An hour the collector did not hear (an outage), with a spike in it.
    let gap = |i: i64| if i == 230 { 500.0 } else { value(i) };
    for i in 200..260 {
        live(&mut on_time, i, gap(i));
    }
    // The agent ships it from its buffer two hours later, in batches, oldest first.
    let late = at(380);
    for chunk in (200..260).collect::<Vec<_>>().chunks(15) {
        let batch: Vec<SeriesSamples> = chunk
            .iter()
            .map(|&i| sample("v", "h", at(i), gap(i)))
            .collect();
        assert!(
            replayed.ingest(&batch, late).is_empty(),
            "a backlog never fires"
        );
    }
    assert_eq!(replayed.learned_late(), 60);
    assert_eq!(replayed.alerts().count(), 0);
    assert_eq!(
        replayed.baselines(),
        on_time.baselines(),
        "learned as if it had come on time"
    );
    assert_ne!(replayed.baselines(), never.baselines());
    // Too old for the band, too: the exported one is still that of the last live sample.
    let band = |e: &Engine| e.bands().map(|(_, _, b)| b[3]).next();
    assert_eq!(band(&replayed), Some(value(199)));
}

#[test]
fn samples_sent_ahead_of_a_backlog_are_judged_once_and_learned_in_order() {
    let yaml = "rules:\n  - name: U\n    expr: v\n    dynamic: {}\n  - name: Over\n    expr: v\n    levels: { warning: \"> 1000\" }\n";
    let at = |i: i64| T0 + i * 60 * S;
    let value = |i: i64| {
        if i == 261 || i == 262 {
            5000.0
        } else {
            10.0 + (i % 5) as f64
        }
    };
    let mut on_time = Engine::new(rules(yaml), EngineOptions::default());
    let mut ahead = Engine::new(rules(yaml), EngineOptions::default());
    for i in 0..200 {
        for e in [&mut on_time, &mut ahead] {
            e.ingest(&[sample("v", "h", at(i), value(i))], at(i));
        }
    }
    for i in 200..263 {
        on_time.ingest(&[sample("v", "h", at(i), value(i))], at(i));
    }
    // After an outage of an hour, the agent replays it while sending each new sample ahead,
    // and those are judged at once.
    let mut live = Vec::new();
    for i in 260..263 {
        live.extend(ahead.ingest_live(&[sample("v", "h", at(i), value(i))], at(i)));
    }
    let over = |t: &[Transition]| {
        let mine: Vec<Transition> = t.iter().filter(|t| t.rule == "Over").cloned().collect();
        kinds(&mine)
    };
    assert_eq!(over(&live), vec![(TransitionKind::Firing, Level::Warning)]);
    // The replay reaches its end: the backlog, then the stored copies of the live samples,
    // all within the staleness window of the last ones. Judging them again would resolve and
    // re-fire the alert on old values.
    let now = at(263);
    for i in 200..263 {
        let t = ahead.ingest(&[sample("v", "h", at(i), value(i))], now);
        assert!(t.is_empty(), "sample {i} is not judged again: {t:?}");
    }
    assert_eq!(
        ahead.baselines(),
        on_time.baselines(),
        "learned in order, each sample once"
    );
    // What comes next is judged as usual.
    for e in [&mut on_time, &mut ahead] {
        let t = e.ingest(&[sample("v", "h", at(263), 12.0)], at(263));
        assert_eq!(over(&t), vec![(TransitionKind::Resolved, Level::Warning)]);
    }
    assert_eq!(ahead.baselines(), on_time.baselines());
}

/// A dynamic rule and a static one over the ratio of two series of one host.
const RATIO: &str = "rules:\n  - name: R\n    expr: errors / requests\n    dynamic: {}\n  - name: Over\n    expr: errors / requests\n    levels: { warning: \"> 0.5\" }\n";

/// Both inputs of `RATIO` over instants `is`, as an agent ships them: each series with its
/// samples in turn.
fn ratio_batch(
    is: &[i64],
    at: impl Fn(i64) -> i64,
    value: impl Fn(i64) -> f64,
) -> Vec<SeriesSamples> {
    let series = |name: &str, v: &dyn Fn(i64) -> f64| SeriesSamples {
        labels: Labels::from_pairs([(METRIC_NAME, name), ("host", "h")]),
        samples: is.iter().map(|&i| Sample::new(at(i), v(i))).collect(),
    };
    vec![
        series("errors", &|i| value(i)),
        series("requests", &|_| 100.0),
    ]
}

#[test]
fn a_replayed_backlog_of_a_rule_over_several_series_is_learned_instant_by_instant() {
    let at = |i: i64| T0 + i * 60 * S;
    let value = |i: i64| {
        if i == 230 {
            90.0
        } else {
            10.0 + (i % 5) as f64
        }
    };
    let live = |e: &mut Engine, i: i64| e.ingest(&ratio_batch(&[i], at, value), at(i));
    let mut on_time = Engine::new(rules(RATIO), EngineOptions::default());
    let mut replayed = Engine::new(rules(RATIO), EngineOptions::default());
    let mut never = Engine::new(rules(RATIO), EngineOptions::default());
    for i in 0..200 {
        for e in [&mut on_time, &mut replayed, &mut never] {
            live(e, i);
        }
    }
    // An hour the collector did not hear, with a spike of errors in it; shipped two hours
    // later in batches of 15 instants.
    let mut fired = Vec::new();
    for i in 200..260 {
        fired.extend(live(&mut on_time, i));
    }
    assert!(
        fired.iter().any(|t| t.kind == TransitionKind::Firing),
        "the spike fired on time"
    );
    for chunk in (200..260).collect::<Vec<_>>().chunks(15) {
        let t = replayed.ingest(&ratio_batch(chunk, at, value), at(380));
        assert!(t.is_empty(), "a backlog never fires: {t:?}");
    }
    assert_eq!(replayed.learned_late(), 60, "one value per instant");
    assert_eq!(replayed.alerts().count(), 0);
    assert_eq!(
        replayed.baselines(),
        on_time.baselines(),
        "learned as if it had come on time"
    );
    assert_ne!(replayed.baselines(), never.baselines());
}

#[test]
fn a_rule_over_several_series_judges_what_is_sent_ahead_once_and_learns_it_in_order() {
    let at = |i: i64| T0 + i * 60 * S;
    let value = |i: i64| {
        if i == 261 || i == 262 {
            80.0
        } else {
            10.0 + (i % 5) as f64
        }
    };
    let mut on_time = Engine::new(rules(RATIO), EngineOptions::default());
    let mut ahead = Engine::new(rules(RATIO), EngineOptions::default());
    for i in 0..263 {
        on_time.ingest(&ratio_batch(&[i], at, value), at(i));
        if i < 200 {
            ahead.ingest(&ratio_batch(&[i], at, value), at(i));
        }
    }
    let over = |t: &[Transition]| {
        let mine: Vec<Transition> = t.iter().filter(|t| t.rule == "Over").cloned().collect();
        kinds(&mine)
    };
    let mut live = Vec::new();
    for i in 260..263 {
        live.extend(ahead.ingest_live(&ratio_batch(&[i], at, value), at(i)));
    }
    assert_eq!(over(&live), vec![(TransitionKind::Firing, Level::Warning)]);
    // The replay: the backlog, then the stored copies of what was judged live.
    for chunk in (200..263).collect::<Vec<_>>().chunks(15) {
        let t = ahead.ingest(&ratio_batch(chunk, at, value), at(263));
        assert!(
            t.is_empty(),
            "instants {chunk:?} are not judged again: {t:?}"
        );
    }
    assert_eq!(
        ahead.baselines(),
        on_time.baselines(),
        "learned in order, each instant once"
    );
    for e in [&mut on_time, &mut ahead] {
        let t = e.ingest(&ratio_batch(&[263], at, |_| 12.0), at(263));
        assert_eq!(over(&t), vec![(TransitionKind::Resolved, Level::Warning)]);
    }
    assert_eq!(ahead.baselines(), on_time.baselines());
}

#[test]
fn a_dynamic_alert_says_what_made_its_score() {
    let yaml = "rules:\n  - name: U\n    expr: v\n    dynamic: {}\n    annotations:\n      summary: \"{{ cause }}: {{ value }} (expected {{ expected|round(1) }})\"\n";
    let mut e = Engine::new(rules(yaml), EngineOptions::default());
    let at = |i: i64| T0 + i * 60 * S;
    // Noise of ±5 around 50, then a value beyond its range: a deviation of a routine size.
    for i in 0..2000 {
        let v = 50.0 + ((i * 7919) % 101) as f64 / 10.0 - 5.0;
        assert!(e.ingest(&[sample("v", "h", at(i), v)], at(i)).is_empty());
    }
    let t = e.ingest(&[sample("v", "h", at(2000), 57.0)], at(2000));
    assert_eq!(kinds(&t), vec![(TransitionKind::Firing, Level::Warning)]);
    let summary = &t[0].annotations["summary"];
    assert!(summary.starts_with("record: 57.0 (expected "), "{summary}");
}

#[test]
fn excluded_windows_neither_learn_nor_fire() {
    use crate::rule::Exclusion;
    // 2023-11-12 was a Sunday.
    let sunday_0230 = tocsin_model::parse_timestamp("2023-11-12 02:30:00").unwrap();
    let w = Exclusion::Weekly(
        tocsin_clock::Window::new(&["sun".into()], "02:00", "04:00", None, None).unwrap(),
    );
    assert!(w.contains(sunday_0230));
    assert!(!w.contains(sunday_0230 + 86_400_000), "Monday");
    let night = Exclusion::Weekly(
        tocsin_clock::Window::new(&["sat".into()], "23:00", "01:00", None, None).unwrap(),
    );
    assert!(
        night.contains(tocsin_model::parse_timestamp("2023-11-12 00:30:00").unwrap()),
        "Saturday night into Sunday"
    );

    // In a zone: Sundays 02:00–04:00 Berlin time are 00:00–02:00 UTC in summer.
    let r = rules(
        "rules:\n  - name: U\n    expr: v\n    dynamic:\n      exclude:\n        - { days: [sun], from: \"02:00\", to: \"04:00\", timezone: Europe/Berlin }\n",
    );
    let berlin = &r[0].dynamic.as_ref().unwrap().exclude[0];
    let july_5 = tocsin_model::parse_timestamp("2026-07-05 00:30:00").unwrap();
    assert!(berlin.contains(july_5) && !berlin.contains(july_5 + 2 * 3_600_000));

    let r = rules(
        "rules:\n  - name: U\n    expr: v\n    dynamic:\n      exclude:\n        - { days: [sun], from: \"02:00\", to: \"04:00\" }\n",
    );
    let mut e = Engine::new(r, EngineOptions::default());
    let base = sunday_0230 - 7 * 86_400_000;
    for i in 0..(7 * 288) {
        e.ingest(
            &[sample("v", "h", base + i * 300_000, 10.0 + (i % 4) as f64)],
            base + i * 300_000,
        );
    }
    // A deploy spike inside the window: nothing fires, and nothing is learned from it.
    let t = e.ingest(&[sample("v", "h", sunday_0230, 500.0)], sunday_0230);
    assert!(t.is_empty());
    assert_eq!(e.take_last_evaluation().unwrap().score, 0.0);
    let after = sunday_0230 + 2 * 3_600_000;
    let t = e.ingest(&[sample("v", "h", after, 500.0)], after);
    assert_eq!(t.len(), 1, "the same spike outside the window fires");

    let bad = parse_file(
        "x.yaml",
        "rules:\n  - name: U\n    expr: v\n    dynamic:\n      exclude:\n        - { days: [funday], from: \"02:00\", to: \"04:00\" }\n        - { from: \"25:00\", to: \"04:00\" }\n        - { start: \"2026-01-02 00:00:00\", end: \"2026-01-01 00:00:00\" }\n",
    )
    .unwrap_err();
    assert_eq!(bad.len(), 3, "{bad:?}");
    assert!(
        bad[0].ends_with("dynamic.exclude[0]: unknown day \"funday\", expected mon … sun"),
        "{}",
        bad[0]
    );
}

#[test]
fn dynamic_levels_fall_back_to_static_ones_while_the_baseline_warms_up() {
    let yaml = r#"
rules:
  - name: Disk
    expr: used
    dynamic:
      min_history: 60
      cold_start:
        warning: { when: "> 90", recover: "< 85" }
    annotations:
      summary: "{{ value }} ({{ threshold }})"
  - name: Quiet
    expr: used
    dynamic: { min_history: 60 }
"#;
    let r = rules(yaml);
    assert!(r[0].level(Level::Warning).unwrap().cold_start.is_some());
    assert!(r[0].level(Level::Critical).unwrap().cold_start.is_none());
    let mut e = Engine::new(r, EngineOptions::default());
    let mut f = |i: i64, v: f64| {
        let t = e.ingest(&[sample("used", "h", T0 + i * 60 * S, v)], T0 + i * 60 * S);
        t.into_iter()
            .map(|t| {
                (
                    t.rule.clone(),
                    t.kind,
                    t.level,
                    t.annotations.get("summary").cloned().unwrap_or_default(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert!(f(0, 50.0).is_empty());
    // Too little history to score: the static stand-in judges the value; the rule without one
    // stays quiet, and the critical level has none.
    let t = f(1, 95.0);
    assert_eq!(
        t,
        vec![(
            "Disk".to_string(),
            TransitionKind::Firing,
            Level::Warning,
            "95.0 (> 90)".to_string()
        )]
    );
    assert!(f(2, 88.0).is_empty(), "hysteresis: 88 is not below 85");
    assert_eq!(f(3, 80.0)[0].1, TransitionKind::Resolved);
    for i in 4..600 {
        let v = 50.0 + (i % 3) as f64;
        assert!(f(i, v).is_empty(), "steady at {i}");
    }
    // Once the baseline has its history, the score judges, for both rules alike: 85 is far
    // out of the ordinary though below 90, and the threshold shown is the score's cutoff.
    let t = f(600, 85.0);
    assert_eq!(t.len(), 2, "{t:?}");
    assert!(t.iter().all(|t| t.1 == TransitionKind::Firing), "{t:?}");
    assert_eq!(t[0].3, "85.0 (>= 0.2)");

    let bad = parse_file(
        "x.yaml",
        "rules:\n  - name: U\n    expr: v\n    levels: { emergency: \"> 99\" }\n    dynamic:\n      cold_start:\n        emergency: \"> 98\"\n        warning: { when: \"> 90\", for: 5m }\n",
    )
    .unwrap_err();
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(
        bad[0].ends_with(
            "dynamic.cold_start.emergency: emergency is not a dynamic level of this rule (dynamic.levels)"
        ),
        "{}",
        bad[0]
    );
    assert!(
        bad[1].ends_with("dynamic.cold_start.warning: for and for_runs are the dynamic level's"),
        "{}",
        bad[1]
    );
    assert!(bad[1].starts_with("x.yaml:8"), "{}", bad[1]);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the values, notifications tell a consistent story: fire before anything
        /// else, level changes only while firing and always to a different level, resolve only
        /// what fired, and a quiet value at the end leaves nothing active.
        #[test]
        fn transitions_are_consistent(values in proptest::collection::vec(0.0f64..1.2, 1..300)) {
            let mut e = Engine::new(two_level(""), EngineOptions::default());
            let mut firing: Option<Level> = None;
            for (i, v) in values.iter().enumerate() {
                for t in feed(&mut e, T0 + i as i64 * S, *v) {
                    match t.kind {
                        TransitionKind::Firing => {
                            prop_assert!(firing.is_none());
                            firing = Some(t.level);
                        }
                        TransitionKind::LevelChanged { from } => {
                            prop_assert_eq!(firing, Some(from));
                            prop_assert_ne!(from, t.level);
                            firing = Some(t.level);
                        }
                        TransitionKind::Resolved => {
                            prop_assert_eq!(firing, Some(t.level));
                            firing = None;
                        }
                        // Flapping is announced once; the alert's state then moves on quietly
                        // until the flapping ends and says where it settled.
                        TransitionKind::Flapping => {}
                        TransitionKind::FlappingEnded { firing: f } => {
                            firing = f.then_some(t.level);
                        }
                    }
                    // Critical is only ever entered above its trigger (hysteresis keeps it, it
                    // never starts it).
                    if t.level == Level::Critical && matches!(t.kind, TransitionKind::Firing) {
                        prop_assert!(*v > 0.9);
                    }
                }
            }
            feed(&mut e, T0 + values.len() as i64 * S, 0.0);
            prop_assert_eq!(e.alerts().count(), 0);
        }
    }
}

fn absence_rule() -> Vec<Rule> {
    rules(
        r#"
rules:
  - name: BackupMetricsAbsent
    expr: absent_over_time(tocsin_file_newest_age_seconds{probe="db-backup", host=~"db.*"}[10m])
    for: 2m
    levels:
      critical: "== 1"
    annotations:
      summary: "no backup figures from probe {{ labels.probe }} for 10 minutes"
"#,
    )
}

fn backup_sample(host: &str, t: i64) -> SeriesSamples {
    SeriesSamples {
        labels: Labels::from_pairs([
            (METRIC_NAME, "tocsin_file_newest_age_seconds"),
            ("probe", "db-backup"),
            ("host", host),
        ]),
        samples: vec![Sample::new(t, 60.0)],
    }
}

#[test]
fn absence_fires_after_its_range_and_for_and_resolves_when_a_sample_arrives() {
    let mut e = Engine::new(absence_rule(), EngineOptions::default());
    let r = &e.rules()[0];
    assert_eq!(
        r.expr.to_promql(),
        r#"absent_over_time(tocsin_file_newest_age_seconds{probe="db-backup", host=~"db.*"}[600s])"#
    );
    // The first tick starts the clock: nothing is absent for a range after the start.
    assert!(e.tick(T0).is_empty());
    assert!(e
        .ingest(&[backup_sample("db1", T0 + 30 * S)], T0 + 30 * S)
        .is_empty());
    // A series the selector does not take is no presence.
    let other = e.ingest(&[backup_sample("web1", T0 + 60 * S)], T0 + 60 * S);
    assert!(other.is_empty());
    for m in 1..=10 {
        assert!(e.tick(T0 + 30 * S + m * 60 * S).is_empty(), "minute {m}");
    }
    // Ten minutes and a second without a sample: pending for its `for`, firing after it.
    assert!(e.tick(T0 + 30 * S + 601 * S).is_empty());
    assert_eq!(e.alerts().count(), 1, "pending");
    assert!(e.tick(T0 + 30 * S + 700 * S).is_empty());
    let t = e.tick(T0 + 30 * S + 721 * S);
    assert_eq!(kinds(&t), vec![(TransitionKind::Firing, Level::Critical)]);
    assert_eq!(t[0].labels.get("probe"), Some("db-backup"));
    assert_eq!(t[0].labels.get("host"), None, "a regex fixes no label");
    assert_eq!(t[0].value, 1.0);
    assert_eq!(
        t[0].annotations["summary"],
        "no backup figures from probe db-backup for 10 minutes"
    );
    // Never stale: it is judged on every tick, long past `stale_after`.
    assert!(e.tick(T0 + 3600 * S).is_empty());
    // Saved and restored across a restart, it stays firing without a word...
    let saved: Vec<AlertState> = e.alerts().cloned().collect();
    let mut e2 = Engine::new(absence_rule(), EngineOptions::default());
    assert!(e2.restore(saved, T0 + 3700 * S).is_empty());
    assert!(e2.tick(T0 + 3700 * S).is_empty());
    assert!(e2.tick(T0 + 7200 * S).is_empty(), "not resolved as stale");
    // ...until a sample within the range arrives. An old one (a replayed backlog) is not one.
    assert!(e2
        .ingest(&[backup_sample("db2", T0 + 3000 * S)], T0 + 7201 * S)
        .is_empty());
    let t = e2.ingest(&[backup_sample("db2", T0 + 7202 * S)], T0 + 7202 * S);
    assert_eq!(kinds(&t), vec![(TransitionKind::Resolved, Level::Critical)]);
    assert_eq!(e2.alerts().count(), 0);
    assert!(e2.tick(T0 + 7300 * S).is_empty());
}

#[test]
fn absence_must_be_the_whole_expression() {
    for (expr, want) in [
        (
            "absent_over_time(up[5m]) * 2",
            "must be the whole expression",
        ),
        (
            "1 + absent_over_time(up[5m])",
            "must be the whole expression",
        ),
        ("absent_over_time(up)", "expected '['"),
    ] {
        let yaml =
            format!("rules:\n  - name: A\n    expr: {expr}\n    levels: {{ warning: \"> 0\" }}\n");
        let err = parse_file("t.yaml", &yaml).unwrap_err().join("\n");
        assert!(err.contains(want), "{expr}: {err}");
    }
    let yaml = "rules:\n  - name: A\n    expr: absent_over_time(up[5m])\n    dynamic: {}\n";
    let err = parse_file("t.yaml", yaml).unwrap_err().join("\n");
    assert!(err.contains("t.yaml:4"), "{err}");
    assert!(
        err.contains("absent_over_time has no series to learn from"),
        "{err}"
    );
}

/// What a series says of itself does not pass for what tocsin sets: its `alertname` gives way
/// to the rule's name and its `level` is kept as `exported_level`, so a silence or route on
/// the alert's level is not matched by an agent's label.
#[test]
fn a_series_cannot_set_the_alerts_name_or_level() {
    let mut e = Engine::new(two_level(""), EngineOptions::default());
    let s = SeriesSamples {
        labels: Labels::from_pairs([
            (METRIC_NAME, "cpu_busy"),
            ("host", "web1"),
            ("alertname", "Other"),
            ("level", "info"),
        ]),
        samples: vec![Sample::new(T0, 0.95)],
    };
    let t = e.ingest(&[s], T0);
    assert_eq!(kinds(&t), vec![(TransitionKind::Firing, Level::Critical)]);
    assert_eq!(t[0].labels.get("alertname"), Some("Busy"));
    assert_eq!(t[0].labels.get("level"), None);
    assert_eq!(t[0].labels.get("exported_level"), Some("info"));
}

/// The API's view holds the engine's alerts by reference: an evaluation that changes one it
/// holds copies that alert (what the view read stays as read), and one nobody holds is changed
/// in place, not copied.
#[test]
fn alerts_are_shared_and_copied_only_when_changed_while_held() {
    let mut e = Engine::new(two_level(""), EngineOptions::default());
    feed(&mut e, T0, 0.85);
    let held = std::sync::Arc::clone(e.shared_alerts().next().expect("firing"));
    assert_eq!(held.level, Some(Level::Warning));
    feed(&mut e, T0 + 10 * S, 0.95);
    let now = e.shared_alerts().next().expect("firing");
    assert!(
        !std::sync::Arc::ptr_eq(&held, now),
        "copied: the view held it"
    );
    assert_eq!(now.level, Some(Level::Critical));
    assert_eq!(
        (held.level, held.value),
        (Some(Level::Warning), 85.0),
        "as read"
    );
    drop(held);
    let before = std::sync::Arc::as_ptr(e.shared_alerts().next().expect("firing"));
    feed(&mut e, T0 + 20 * S, 0.96);
    let after = e.shared_alerts().next().expect("firing");
    assert_eq!(std::sync::Arc::as_ptr(after), before, "changed in place");
    assert_eq!(after.value, 96.0);
    assert_eq!(e.alerts().next().expect("firing").value, 96.0);
}

fn labelled(name: &str, pairs: &[(&str, &str)], t: i64, v: f64) -> SeriesSamples {
    let mut labels = Labels::from_pairs(pairs.iter().copied());
    labels.set(METRIC_NAME, name);
    SeriesSamples {
        labels,
        samples: vec![Sample::new(t, v)],
    }
}

/// A service's error ratio over its hosts: the sum of errors over the sum of requests per
/// service, evaluated on the clock every `interval`. Hosts that fall silent leave the group
/// after the staleness window; a group left with none resolves as stale.
#[test]
fn an_aggregation_judges_each_group_on_the_clock() {
    let r = rules(
        r#"
rules:
  - name: ServiceErrors
    expr: sum by (service) (errors) / sum by (service) (requests)
    interval: 10s
    for_runs: 2
    levels: { warning: "> 0.1" }
    annotations: { summary: "{{ labels.service }}: {{ value|round(2) }}" }
"#,
    );
    assert_eq!(r[0].interval_ms, 10 * S);
    let mut e = Engine::new(r, EngineOptions::default());
    let at = |t: i64, host: &str, svc: &str, err: f64, req: f64| {
        vec![
            labelled("errors", &[("host", host), ("service", svc)], t, err),
            labelled("requests", &[("host", host), ("service", svc)], t, req),
        ]
    };
    // web: one host failing a third of its requests, two healthy: 10 / 300 over the service.
    let mut batch = at(T0, "w1", "web", 10.0, 100.0);
    batch.extend(at(T0, "w2", "web", 0.0, 100.0));
    batch.extend(at(T0, "w3", "web", 0.0, 100.0));
    batch.extend(at(T0, "d1", "db", 5.0, 10.0));
    assert!(
        e.ingest(&batch, T0).is_empty(),
        "samples alone judge nothing"
    );
    assert!(e.tick(T0).is_empty(), "db 0.5 holds once: for_runs 2");
    assert!(e.tick(T0 + 5 * S).is_empty(), "not due before 10s");
    let t = e.tick(T0 + 10 * S);
    assert_eq!(kinds(&t), vec![(TransitionKind::Firing, Level::Warning)]);
    assert_eq!(t[0].annotations["summary"], "db: 0.5");
    assert_eq!(t[0].labels.get("service"), Some("db"));
    assert_eq!(t[0].labels.get("host"), None, "the group's labels only");
    assert_eq!(t[0].labels.get("alertname"), Some("ServiceErrors"));
    // Two web hosts fail: 60 / 300 = 0.2 from the next two evaluations.
    let mut batch = at(T0 + 12 * S, "w2", "web", 25.0, 100.0);
    batch.extend(at(T0 + 12 * S, "w3", "web", 25.0, 100.0));
    e.ingest(&batch, T0 + 12 * S);
    assert!(e.tick(T0 + 20 * S).is_empty());
    let t = e.tick(T0 + 30 * S);
    assert_eq!(kinds(&t), vec![(TransitionKind::Firing, Level::Warning)]);
    assert_eq!(t[0].labels.get("service"), Some("web"));
    assert_eq!(t[0].value, 0.2);
    // db's host falls silent: after the staleness window its group has no value, and the
    // alert resolves as stale five minutes after its last evaluation.
    let mut t_now = T0 + 30 * S;
    let mut resolved = Vec::new();
    while resolved.is_empty() && t_now < T0 + 700 * S {
        t_now += 10 * S;
        let mut batch = at(t_now, "w1", "web", 10.0, 100.0);
        batch.extend(at(t_now, "w2", "web", 25.0, 100.0));
        batch.extend(at(t_now, "w3", "web", 25.0, 100.0));
        e.ingest(&batch, t_now);
        resolved = e.tick(t_now);
    }
    assert_eq!(
        kinds(&resolved),
        vec![(TransitionKind::Resolved, Level::Warning)]
    );
    assert_eq!(resolved[0].labels.get("service"), Some("db"));
    // Stale at T0 + 300 s: no value from the next evaluation on; resolved 5 min after it.
    assert_eq!(t_now, T0 + 610 * S);
    // web recovers when the failing hosts do.
    let mut batch = at(t_now + 5 * S, "w2", "web", 0.0, 100.0);
    batch.extend(at(t_now + 5 * S, "w3", "web", 0.0, 100.0));
    e.ingest(&batch, t_now + 5 * S);
    let t = e.tick(t_now + 10 * S);
    assert_eq!(kinds(&t), vec![(TransitionKind::Resolved, Level::Warning)]);
    // Hosts taken out of service leave their groups at once, not when their series go
    // stale: with w2 and w3 forgotten, w1's 15 errors in 100 requests are web's 0.15 (with
    // them, still fresh, 15 in 300).
    e.forget_host("w2", t_now + 11 * S);
    e.forget_host("w3", t_now + 11 * S);
    e.ingest(
        &at(t_now + 15 * S, "w1", "web", 15.0, 100.0),
        t_now + 15 * S,
    );
    assert!(
        e.tick(t_now + 20 * S).is_empty(),
        "0.15 holds once: for_runs 2"
    );
    let t = e.tick(t_now + 30 * S);
    assert_eq!(kinds(&t), vec![(TransitionKind::Firing, Level::Warning)]);
    assert_eq!(t[0].value, 0.15, "w1 alone");
}

/// `count`, `avg`, `min`, `max`, `without` and the inner expression per series: the share of a
/// cluster's hosts with their disk over 90 % full cannot be said without a comparison, but the
/// fullest disk per cluster and how many hosts report can.
#[test]
fn aggregations_combine_per_series_values_by_their_groups() {
    let r = rules(
        r#"
rules:
  - name: Fullest
    expr: max without (host, mountpoint) (100 * (1 - avail / size))
    levels: { warning: "> 90" }
  - name: FewHosts
    expr: count by (cluster) (avail{mountpoint="/"})
    levels: { warning: "< 3" }
  - name: AvgFree
    expr: avg(avail / size) * 100
    levels: { warning: "< 50" }
  - name: MinFree
    expr: min by (cluster) (avail / size)
    levels: { critical: "< 0.05" }
  - name: ManyFull
    expr: count by (cluster) (100 * (1 - avail / size) > 60)
    levels: { warning: ">= 2" }
  - name: ShareFull
    expr: 100 * avg by (cluster) (avail / size < bool 0.35)
    levels: { warning: "> 50" }
  - name: MedianFree
    expr: quantile by (cluster) (0.5, avail / size)
    levels: { warning: "< 0.45" }
  - name: Spread
    expr: stddev by (cluster) (avail)
    levels: { warning: "> 20" }
"#,
    );
    let mut e = Engine::new(r, EngineOptions::default());
    let mut batch = Vec::new();
    for (host, cluster, mp, avail) in [
        ("a", "eu", "/", 50.0),
        ("a", "eu", "/var", 4.0),
        ("b", "eu", "/", 60.0),
        ("c", "us", "/", 20.0),
        ("d", "us", "/", 30.0),
        ("e", "us", "/", 40.0),
    ] {
        let l = [("host", host), ("cluster", cluster), ("mountpoint", mp)];
        batch.push(labelled("avail", &l, T0, avail));
        batch.push(labelled("size", &l, T0, 100.0));
    }
    e.ingest(&batch, T0);
    let mut t: Vec<(String, Option<String>, f64)> = e
        .tick(T0)
        .iter()
        .map(|t| {
            (
                t.labels.get("alertname").unwrap().to_string(),
                t.labels.get("cluster").map(str::to_string),
                (t.value * 1000.0).round() / 1000.0,
            )
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(
        t,
        [
            ("AvgFree".to_string(), None, 34.0),
            ("FewHosts".to_string(), Some("eu".to_string()), 2.0),
            ("Fullest".to_string(), Some("eu".to_string()), 96.0),
            ("ManyFull".to_string(), Some("us".to_string()), 2.0),
            ("MedianFree".to_string(), Some("us".to_string()), 0.3),
            ("MinFree".to_string(), Some("eu".to_string()), 0.04),
            ("ShareFull".to_string(), Some("us".to_string()), 66.667),
            ("Spread".to_string(), Some("eu".to_string()), 24.386),
        ]
    );
}

#[test]
fn aggregations_are_checked_where_they_are_written() {
    for (expr, col, msg) in [
        (
            "sum by (service) (errors) / requests",
            29,
            "a selector outside the aggregation",
        ),
        ("sum by (a) (x) / sum by (b) (y)", 18, "must group alike"),
        ("sum(max by (a) (x))", 5, "aggregations do not nest"),
        ("sum by (a) (x) by (b)", 16, "a grouping is given twice"),
        ("sum by (1a) (x)", 9, "expected a label name"),
        ("sum by (a (x)", 11, "expected ')'"),
        ("sum(x) > 3", 8, "a rule's thresholds are its levels"),
        ("x > 3", 3, "a rule's thresholds are its levels"),
        ("count(x > y)", 11, "expected a number here"),
        ("quantile(x)", 10, "expected a number here"),
    ] {
        let e = crate::expr::parse(expr).unwrap_err();
        assert!(
            e.msg.contains(msg) && e.col == col,
            "{expr}: column {} {}",
            e.col,
            e.msg
        );
    }
    let c = crate::expr::parse("sum(rate(x[5m])) by (job) / sum without (host) (y)");
    assert!(c.unwrap_err().msg.contains("must group alike"));
    let c = crate::expr::parse("sum(rate(x{a=\"1\"}[5m])) by (job) / count by (job) (y)").unwrap();
    assert_eq!(
        c.to_promql(),
        "sum by (job) (rate(x{a=\"1\"}[300s])) / count by (job) (y)"
    );
    assert_eq!(crate::expr::parse("avg(x)").unwrap().to_promql(), "avg(x)");
    assert_eq!(
        crate::expr::parse("quantile(0.9, x) by (a) - stdvar by (a) (x)")
            .unwrap()
            .to_promql(),
        "quantile by (a) (0.9, x) - stdvar by (a) (x)"
    );
    assert_eq!(
        crate::expr::parse(
            "count without (host) (x{a=\"b\"} * 2 >= 90) / avg without (host) (y == bool 1)"
        )
        .unwrap()
        .to_promql(),
        "count without (host) (x{a=\"b\"} * 2 >= 90) / avg without (host) (y == bool 1)"
    );
    // `interval` belongs to rules that aggregate.
    let e = parse_file(
        "test.yaml",
        "rules:\n  - name: A\n    expr: x\n    interval: 1m\n    levels: { warning: \"> 1\" }\n  - name: B\n    expr: sum(x)\n    interval: 100ms\n    levels: { warning: \"> 1\" }\n",
    )
    .unwrap_err();
    assert!(
        e[0].starts_with("test.yaml:4: rule \"A\": interval: only a rule that aggregates"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("test.yaml:8: rule \"B\": interval: must be at least 1s"),
        "{e:?}"
    );
    // An agent's action needs the group's host.
    let remedy = |expr: &str, on: &str| {
        parse_file(
            "test.yaml",
            &format!("rules:\n  - name: A\n    expr: {expr}\n    levels: {{ critical: \"> 1\" }}\n    remediation: {{ action: restart_web, on: {on} }}\n"),
        )
    };
    let e = remedy("sum by (service) (x)", "agent").unwrap_err();
    assert!(
        e[0].contains("this rule's groups have no host label"),
        "{e:?}"
    );
    assert!(remedy("sum without (host) (x)", "agent").is_err());
    assert!(remedy("sum by (service, host) (x)", "agent").is_ok());
    assert!(remedy("sum without (disk) (x)", "agent").is_ok());
    assert!(remedy("sum by (service) (x)", "collector").is_ok());
    // Nor does a template's `host`.
    let e = parse_file(
        "test.yaml",
        "rules:\n  - name: A\n    expr: avg by (service) (x)\n    levels: { warning: \"> 1\" }\n    annotations: { summary: \"{{ host }} {{ labels.service }}\" }\n",
    )
    .unwrap_err();
    assert_eq!(
        e,
        ["test.yaml:5: rule \"A\": annotations.summary: host: this rule's groups have no host label, so `host` renders as nothing (labels.NAME for the group's labels)"]
    );
}

/// Recording rules store values instead of alerting: per series on each sample, labelled as
/// their input and named by the rule; over a fleet on the clock, labelled as the group.
#[test]
fn recording_rules_make_samples_named_by_the_rule() {
    let r = rules(
        r#"
rules:
  - record: host:cpu_busy:percent
    expr: cpu_busy * 100
    labels: { source: rule }
  - record: fleet:cpu_busy:avg
    expr: avg(cpu_busy)
    interval: 10s
"#,
    );
    assert!(r
        .iter()
        .all(|r| r.record && r.defined_levels().count() == 0));
    let mut e = Engine::new(r, EngineOptions::default());
    assert!(e
        .ingest(
            &[
                sample("cpu_busy", "a", T0, 0.5),
                sample("cpu_busy", "b", T0, 0.7)
            ],
            T0
        )
        .is_empty());
    assert!(e.tick(T0).is_empty(), "no alerts");
    type Made = (String, Option<String>, Option<String>, i64, f64);
    let mut got: Vec<Made> = e
        .take_recorded()
        .into_iter()
        .map(|s| {
            (
                s.labels.metric_name().unwrap().to_string(),
                s.labels.get("host").map(str::to_string),
                s.labels.get("source").map(str::to_string),
                s.samples[0].timestamp_ms,
                (s.samples[0].value * 1e9).round() / 1e9,
            )
        })
        .collect();
    got.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let s = |x: &str| Some(x.to_string());
    assert_eq!(
        got,
        [
            ("fleet:cpu_busy:avg".into(), None, None, T0, 0.6),
            ("host:cpu_busy:percent".into(), s("a"), s("rule"), T0, 50.0),
            ("host:cpu_busy:percent".into(), s("b"), s("rule"), T0, 70.0),
        ]
    );
    assert!(e.take_recorded().is_empty(), "taken once");
    assert_eq!(e.alerts().count(), 0);
    // What belongs to alerts is refused in a recording rule.
    let e = parse_file(
        "test.yaml",
        "rules:\n  - record: x:y\n    name: X\n    expr: x\n    levels: { warning: \"> 1\" }\n  - record: \"bad name\"\n    expr: x\n",
    )
    .unwrap_err();
    assert_eq!(
        e,
        [
            "test.yaml:2: rule \"x:y\": give name (an alerting rule) or record (a recording rule), not both",
            "test.yaml:5: rule \"x:y\": levels: a recording rule stores values and raises no alert",
            "test.yaml:6: rule \"bad name\": record must be a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)",
        ]
    );
}
