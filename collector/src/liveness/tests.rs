use super::*;

#[test]
fn down_after_three_intervals_and_forgotten_later() {
    let mut l = Liveness::new(None, 1_000_000, vec![("old".into(), 0)], 0);
    l.seen("a", 1_000_000);
    l.observe(&[SeriesSamples {
        labels: Labels::from_pairs([(METRIC_NAME, INTERVAL_METRIC), ("host", "a")]),
        samples: vec![Sample::new(1_000_000, 1.0)],
    }]);
    let up = |v: &[SeriesSamples], h: &str| {
        v.iter()
            .find(|s| s.labels.get("host") == Some(h))
            .map(|s| s.samples[0].value)
    };
    let j = l.judge(1_003_000);
    assert_eq!(up(&j, "a"), Some(1.0));
    assert_eq!(
        up(&j, "old"),
        None,
        "silent for longer than forget_after: forgotten"
    );
    assert_eq!(up(&l.judge(1_003_001), "a"), Some(0.0));
    assert!(!l.view()[0].up);
    l.seen("a", 1_004_000);
    assert_eq!(up(&l.judge(1_004_500), "a"), Some(1.0));
}

#[test]
fn a_collector_that_stood_still_does_not_page_its_hosts() {
    let t0 = 10_000_000;
    let mut l = Liveness::new(None, 3_600_000, vec![], t0);
    let up = |v: Vec<SeriesSamples>| -> Vec<f64> { v.iter().map(|s| s.samples[0].value).collect() };
    for t in (1_000..=5_000).step_by(1_000) {
        l.seen("web", t0 + t);
        l.tick(t0 + t);
        assert_eq!(up(l.judge(t0 + t)), vec![1.0]);
    }
    // Frozen for 60 s (SIGSTOP): the first judgement after it comes before the queued
    // samples are taken in.
    let resumed = t0 + 65_000;
    l.tick(resumed);
    assert!(
        up(l.judge(resumed)).is_empty(),
        "not judged on stale knowledge"
    );
    l.seen("web", resumed + 500);
    assert_eq!(up(l.judge(resumed + 1_000)), vec![1.0]);
    // A host that really went away is judged once the grace is over.
    let mut t = resumed + 1_000;
    while t < resumed + RESTART_GRACE_MS + 40_000 {
        t += 1_000;
        l.tick(t);
    }
    assert_eq!(up(l.judge(t)), vec![0.0]);
}

#[test]
fn a_clock_ahead_is_measured_from_arrival() {
    let t0 = 10_000_000;
    let mut l = Liveness::new(None, 3_600_000, vec![("a".into(), t0)], t0);
    let batch = |ts: i64| {
        vec![SeriesSamples {
            labels: Labels::from_pairs([(METRIC_NAME, "up"), ("host", "a")]),
            samples: vec![Sample::new(ts - 1_000, 1.0), Sample::new(ts, 1.0)],
        }]
    };
    let clock = |v: &[SeriesSamples]| {
        v.iter()
            .find(|s| s.labels.metric_name() == Some(CLOCK_METRIC))
            .map(|s| s.samples[0].value)
    };
    assert_eq!(clock(&l.judge(t0)), None, "nothing known yet");
    // An agent 300 s fast.
    l.observe_clock(&batch(t0 + 1_000 + 300_000), t0 + 1_000, None);
    l.seen("a", t0 + 1_000);
    assert_eq!(clock(&l.judge(t0 + 1_500)), Some(300.0));
    // Its clock set right (or a backlog of old samples): not ahead.
    l.observe_clock(&batch(t0 - 60_000), t0 + 2_000, None);
    assert_eq!(clock(&l.judge(t0 + 2_500)), Some(0.0));
}

/// A sender that says when it sent (`SENT_AT_HEADER`) is measured by that, behind as well as
/// ahead, whatever the times of the samples it carries (a backlog's are old).
#[test]
fn a_clock_behind_is_measured_from_what_the_sender_says() {
    let t0 = 10_000_000;
    let mut l = Liveness::new(None, 3_600_000, vec![("a".into(), t0)], t0);
    let batch = |ts: i64| {
        vec![SeriesSamples {
            labels: Labels::from_pairs([(METRIC_NAME, "up"), ("host", "a")]),
            samples: vec![Sample::new(ts, 1.0)],
        }]
    };
    let value = |v: &[SeriesSamples], name: &str| {
        v.iter()
            .find(|s| s.labels.metric_name() == Some(name))
            .map(|s| s.samples[0].value)
    };
    assert_eq!(
        value(&l.judge(t0), CLOCK_BEHIND_METRIC),
        None,
        "not known yet"
    );
    // Ten minutes slow: its samples and its send time alike.
    l.observe_clock(&batch(t0 - 600_000), t0, Some(-600_000));
    l.seen("a", t0);
    let v = l.judge(t0 + 500);
    assert_eq!(value(&v, CLOCK_BEHIND_METRIC), Some(600.0));
    assert_eq!(value(&v, CLOCK_METRIC), Some(0.0));
    // Set right, replaying an hour-old backlog: neither.
    l.observe_clock(&batch(t0 - 3_600_000), t0 + 1_000, Some(-20));
    let v = l.judge(t0 + 1_500);
    assert_eq!(value(&v, CLOCK_BEHIND_METRIC), Some(0.02));
    assert_eq!(value(&v, CLOCK_METRIC), Some(0.0));
    // Five minutes fast.
    l.observe_clock(&batch(t0 + 300_000), t0 + 2_000, Some(300_000));
    let v = l.judge(t0 + 2_500);
    assert_eq!(value(&v, CLOCK_METRIC), Some(300.0));
    assert_eq!(value(&v, CLOCK_BEHIND_METRIC), Some(0.0));
}

#[test]
fn a_huge_reported_interval_does_not_put_host_down_off() {
    let mut l = Liveness::new(None, 1_000_000_000, vec![], 0);
    l.seen("a", 1_000_000);
    l.observe(&[SeriesSamples {
        labels: Labels::from_pairs([(METRIC_NAME, INTERVAL_METRIC), ("host", "a")]),
        samples: vec![Sample::new(1_000_000, 86_400.0 * 365.0)],
    }]);
    assert_eq!(l.view()[0].interval_ms, Some(MAX_INTERVAL_MS));
    assert_eq!(
        l.judge(1_000_000 + 3 * MAX_INTERVAL_MS)[0].samples[0].value,
        1.0
    );
    assert_eq!(
        l.judge(1_000_001 + 3 * MAX_INTERVAL_MS)[0].samples[0].value,
        0.0
    );
}

#[test]
fn a_restart_judges_known_hosts_by_the_interval_they_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tocsin.db");
    let start = tocsin_model::now_ms();
    let last = start - 10_000;
    {
        let mut store = Store::open(&path, Default::default()).unwrap();
        let mut txn = store.begin().unwrap();
        let mut batch: Vec<SeriesSamples> = [("slow", 120.0), ("fast", 10.0)]
            .into_iter()
            .map(|(h, secs)| SeriesSamples {
                labels: Labels::from_pairs([(METRIC_NAME, INTERVAL_METRIC), ("host", h)]),
                samples: vec![Sample::new(last - 120_000, 1.0), Sample::new(last, secs)],
            })
            .collect();
        txn.append(&mut batch, start).unwrap();
        txn.commit().unwrap();
    }
    let store = Store::open(&path, Default::default()).unwrap();
    let mut l = Liveness::restore(&store, None, 3_600_000, start).unwrap();
    let intervals: Vec<_> = l.view().iter().map(|h| h.interval_ms).collect();
    assert_eq!(intervals, vec![Some(10_000), Some(120_000)]);
    // Past the grace, 70 s after their last batch: the 10 s agent has missed three beats,
    // the 2-minute one not even one.
    let judged: Vec<(String, f64)> = l
        .judge(start + RESTART_GRACE_MS + 1)
        .iter()
        .map(|s| {
            (
                s.labels.get("host").unwrap().to_string(),
                s.samples[0].value,
            )
        })
        .collect();
    assert_eq!(
        judged,
        vec![("fast".to_string(), 0.0), ("slow".to_string(), 1.0)]
    );
}

#[test]
fn explicit_down_after_wins() {
    let mut l = Liveness::new(Some(500), 3_600_000, vec![], 0);
    l.seen("a", 0);
    assert_eq!(l.judge(501)[0].samples[0].value, 0.0);
}

#[test]
fn hosts_get_a_grace_after_the_store_refused_writes() {
    let t0 = 10_000_000;
    let mut l = Liveness::new(None, 3_600_000, vec![], t0);
    l.seen("web", t0 + 1_000);
    l.seen("db", t0 + 1_000);
    let up = |v: Vec<SeriesSamples>| -> Vec<f64> { v.iter().map(|s| s.samples[0].value).collect() };
    assert_eq!(up(l.judge(t0 + 2_000)), vec![1.0, 1.0]);
    // A full disk from t0 + 5 s to t0 + 40 s: agents are answered 503 and back off.
    for t in (5_000..=40_000).step_by(1_000) {
        l.away(t0 + t);
        assert!(up(l.judge(t0 + t)).is_empty(), "at {t}");
    }
    // One host comes back and is judged again; the other, silent, only after the grace.
    l.seen("web", t0 + 45_000);
    assert_eq!(up(l.judge(t0 + 46_000)), vec![1.0]);
    assert_eq!(
        up(l.judge(t0 + 40_000 + RESTART_GRACE_MS + 1)),
        vec![0.0, 0.0]
    );
}

#[test]
fn hosts_known_from_before_a_restart_get_a_grace() {
    let start = 10_000_000;
    // Two hosts last seen 5 minutes before the start; one reports again soon, one never.
    let known = vec![
        ("back".into(), start - 300_000),
        ("gone".into(), start - 300_000),
    ];
    let mut l = Liveness::new(None, 3_600_000, known, start);
    let judged = |v: &[SeriesSamples]| -> Vec<(String, f64)> {
        v.iter()
            .map(|s| {
                (
                    s.labels.get("host").unwrap().to_string(),
                    s.samples[0].value,
                )
            })
            .collect()
    };
    assert_eq!(judged(&l.judge(start + 1_000)), vec![]);
    l.seen("back", start + 20_000);
    assert_eq!(
        judged(&l.judge(start + 21_000)),
        vec![("back".to_string(), 1.0)]
    );
    assert_eq!(
        judged(&l.judge(start + RESTART_GRACE_MS + 1)),
        vec![("back".to_string(), 0.0), ("gone".to_string(), 0.0)]
    );
}
