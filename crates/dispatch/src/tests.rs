use std::time::Duration;

use tocsin_config::escalation::Step;

use super::*;

const S: i64 = 1000;
const M: i64 = 60 * S;
const H: i64 = 60 * M;

fn alert(name: &str, host: &str, level: Level, firing: bool) -> AlertInfo {
    let labels = Labels::from_pairs([("alertname", name), ("host", host)]);
    AlertInfo {
        value: 1.0,
        threshold: "> 0".into(),
        ..AlertInfo::bare(name, labels, level, firing)
    }
}

fn target(receivers: &[&str], opts: GroupOpts, escalation: Option<&str>) -> Target {
    Target {
        node: "route".into(),
        receivers: receivers.iter().map(|s| s.to_string()).collect(),
        opts,
        escalation: escalation.map(str::to_string),
        times: Default::default(),
    }
}

fn by_name(wait: i64, interval: i64) -> GroupOpts {
    GroupOpts {
        group_by: Some(vec!["alertname".into()]),
        group_wait: Duration::from_millis(wait as u64),
        group_interval: Duration::from_millis(interval as u64),
        repeat_interval: None,
        ..GroupOpts::default()
    }
}

/// Ticks every second from `from` to `to`, collecting (time, notification).
fn run(d: &mut Dispatcher, from: i64, to: i64) -> Vec<(i64, Notification)> {
    let mut out = Vec::new();
    let mut t = from;
    while t <= to {
        out.extend(d.tick(t).into_iter().map(|n| (t, n)));
        t += S;
    }
    out
}

/// The rows a dispatcher would save now (deleted ones left out), as `restore` takes them.
fn saved(d: &mut Dispatcher) -> Vec<(String, String)> {
    d.take_changes()
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
}

fn hosts(n: &Notification) -> Vec<(String, bool)> {
    n.alerts
        .iter()
        .map(|a| (a.labels.get("host").unwrap().to_string(), a.firing))
        .collect()
}

#[test]
fn alerts_are_grouped_after_group_wait_and_changes_wait_for_group_interval() {
    let mut d = Dispatcher::new(vec![], Default::default());
    let t = [target(&["chat"], by_name(30 * S, 60 * S), None)];
    d.event(&alert("Disk", "a", Level::Warning, true), &t, 0);
    assert!(run(&mut d, 0, 4 * S).is_empty());
    d.event(&alert("Disk", "b", Level::Warning, true), &t, 5 * S);
    d.event(&alert("Disk", "c", Level::Warning, true), &t, 10 * S);
    let sent = run(&mut d, 5 * S, 39 * S);
    assert_eq!(sent.len(), 1, "one message for the three hosts");
    assert_eq!(sent[0].0, 30 * S, "at group_wait after the first alert");
    assert_eq!(
        hosts(&sent[0].1),
        vec![("a".into(), true), ("b".into(), true), ("c".into(), true)]
    );
    assert_eq!(sent[0].1.group_labels.to_string(), "{alertname=\"Disk\"}");
    // A resolve soon after waits for group_interval since the last message.
    d.event(&alert("Disk", "a", Level::Warning, false), &t, 40 * S);
    let sent = run(&mut d, 40 * S, 120 * S);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, 90 * S);
    assert_eq!(
        hosts(&sent[0].1),
        vec![("b".into(), true), ("c".into(), true), ("a".into(), false)],
        "firing first, then the resolved one"
    );
    assert_eq!(sent[0].1.why, Why::Changed);
}

#[test]
fn an_alert_resolved_before_anyone_heard_is_not_sent_but_an_unknown_resolve_is() {
    let mut d = Dispatcher::new(vec![], Default::default());
    let t = [target(&["chat"], by_name(30 * S, 0), None)];
    d.event(&alert("Blip", "a", Level::Warning, true), &t, 0);
    d.event(&alert("Blip", "a", Level::Warning, false), &t, 10 * S);
    assert!(run(&mut d, 0, 60 * S).is_empty());
    assert_eq!(d.sizes(), (0, 0), "the empty group is gone");
    // Fired while silenced (never reached the dispatcher), resolved after: told.
    d.event(&alert("Quiet", "a", Level::Warning, false), &t, 100 * S);
    let sent = run(&mut d, 100 * S, 140 * S);
    assert_eq!(sent.len(), 1);
    assert_eq!(hosts(&sent[0].1), vec![("a".into(), false)]);
}

#[test]
fn level_changes_without_grouping_go_out_at_once() {
    let mut d = Dispatcher::new(vec![], Default::default());
    let t = [target(&["chat"], GroupOpts::default(), None)];
    d.event(&alert("Cpu", "a", Level::Warning, true), &t, 0);
    d.event(&alert("Cpu", "b", Level::Warning, true), &t, 0);
    assert_eq!(d.tick(0).len(), 2, "each alert is its own group by default");
    d.event(&alert("Cpu", "a", Level::Critical, true), &t, S);
    let n = d.tick(S);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].alerts[0].level, Level::Critical);
}

#[test]
fn repeats_stop_at_the_limit_and_back_off() {
    let mut d = Dispatcher::new(vec![], Default::default());
    let opts = GroupOpts {
        repeat_interval: Some(Duration::from_secs(3600)),
        max_repeats: 3,
        repeat_backoff: 2.0,
        ..GroupOpts::default()
    };
    let t = [target(&["chat"], opts, None)];
    d.event(&alert("Cpu", "a", Level::Warning, true), &t, 0);
    let mut times = Vec::new();
    let mut now = 0;
    while now <= 24 * H {
        for n in d.tick(now) {
            times.push((now / M, n.why));
        }
        now += M;
    }
    assert_eq!(
        times,
        vec![
            (0, Why::Changed),
            (60, Why::Repeat { n: 1 }),
            (180, Why::Repeat { n: 2 }),
            (420, Why::Repeat { n: 3 }),
        ],
        "1h, then 2h, then 4h later; then no more"
    );
    // A change starts the count over.
    d.event(&alert("Cpu", "a", Level::Critical, true), &t, 24 * H);
    assert_eq!(d.tick(24 * H).len(), 1);
    assert_eq!(d.tick(25 * H)[0].why, Why::Repeat { n: 1 });
}

fn oncall() -> Policy {
    Policy {
        name: "oncall".into(),
        steps: vec![
            Step {
                after: Duration::ZERO,
                receivers: vec!["chat".into()],
            },
            Step {
                after: Duration::from_secs(600),
                receivers: vec!["lead".into()],
            },
            Step {
                after: Duration::from_secs(1800),
                receivers: vec!["manager".into()],
            },
        ],
        repeat_last: None,
    }
}

fn steps(sent: &[(i64, Notification)]) -> Vec<(i64, String, usize)> {
    sent.iter()
        .map(|(t, n)| {
            let step = match &n.why {
                Why::Escalation { step, .. } => *step,
                _ => 0,
            };
            (t / M, n.receiver.clone(), step)
        })
        .collect()
}

#[test]
fn escalation_walks_the_steps_in_order_until_acknowledged() {
    let mut d = Dispatcher::new(vec![oncall()], Default::default());
    let t = [target(&[], GroupOpts::default(), Some("oncall"))];
    let a = alert("DbDown", "db1", Level::Critical, true);
    d.event(&a, &t, 0);
    let sent = run(&mut d, 0, 60 * M);
    assert_eq!(
        steps(&sent),
        vec![
            (0, "chat".into(), 1),
            (10, "lead".into(), 2),
            (30, "manager".into(), 3)
        ]
    );
    // Resolve: everyone who heard of it hears of the end.
    d.event(&alert("DbDown", "db1", Level::Critical, false), &t, 61 * M);
    let ends = d.tick(61 * M);
    let mut who: Vec<&str> = ends.iter().map(|n| n.receiver.as_str()).collect();
    who.sort();
    assert_eq!(who, vec!["chat", "lead", "manager"]);
    assert!(ends.iter().all(|n| !n.alerts[0].firing));
    assert_eq!(d.sizes(), (0, 0));
}

#[test]
fn an_ack_stops_escalation_and_a_rise_in_level_reopens_it() {
    let mut d = Dispatcher::new(vec![oncall()], Default::default());
    let t = [target(&[], GroupOpts::default(), Some("oncall"))];
    let a = alert("DbDown", "db1", Level::Warning, true);
    d.event(&a, &t, 0);
    let sent = run(&mut d, 0, 15 * M);
    assert_eq!(
        steps(&sent),
        vec![(0, "chat".into(), 1), (10, "lead".into(), 2)]
    );
    let ack = d
        .ack(
            &a.id,
            Some(Level::Warning),
            None,
            "alice",
            "looking",
            15 * M,
        )
        .unwrap();
    assert_eq!(ack.level, Level::Warning);
    assert!(
        run(&mut d, 15 * M + S, 90 * M).is_empty(),
        "no step 3 after the ack"
    );
    // A stale link for a lower level than now is refused, an unknown alert too.
    assert_eq!(
        d.ack(
            &a.id,
            Some(Level::Critical),
            Some(Level::Warning),
            "bob",
            "",
            90 * M
        ),
        Err(AckError::LevelRose {
            now: Level::Critical
        })
    );
    assert_eq!(
        d.ack("0000", None, None, "bob", "", 90 * M),
        Err(AckError::NotFiring)
    );
    // Critical now: the steps start over from the first.
    d.event(&alert("DbDown", "db1", Level::Critical, true), &t, 100 * M);
    assert!(d.acks().is_empty(), "the ack covered warning only");
    let sent = run(&mut d, 100 * M, 140 * M);
    assert_eq!(
        steps(&sent),
        vec![
            (100, "chat".into(), 1),
            (110, "lead".into(), 2),
            (130, "manager".into(), 3)
        ]
    );
}

#[test]
fn the_last_step_repeats_until_its_limit() {
    let mut p = oncall();
    p.repeat_last = Some((Duration::from_secs(600), 2));
    let mut d = Dispatcher::new(vec![p], Default::default());
    let t = [target(&[], GroupOpts::default(), Some("oncall"))];
    d.event(&alert("DbDown", "db1", Level::Critical, true), &t, 0);
    let sent = run(&mut d, 0, 120 * M);
    let got: Vec<(i64, Why)> = sent.into_iter().map(|(t, n)| (t / M, n.why)).collect();
    let esc = |step, repeat| Why::Escalation {
        policy: "oncall".into(),
        step,
        repeat,
    };
    assert_eq!(
        got,
        vec![
            (0, esc(1, 0)),
            (10, esc(2, 0)),
            (30, esc(3, 0)),
            (40, esc(3, 1)),
            (50, esc(3, 2)),
        ]
    );
}

#[test]
fn acknowledged_alerts_are_not_repeated() {
    let mut d = Dispatcher::new(vec![], Default::default());
    let opts = GroupOpts {
        group_by: Some(vec!["alertname".into()]),
        repeat_interval: Some(Duration::from_secs(600)),
        ..GroupOpts::default()
    };
    let t = [target(&["chat"], opts, None)];
    let a = alert("Disk", "a", Level::Warning, true);
    d.event(&a, &t, 0);
    d.event(&alert("Disk", "b", Level::Warning, true), &t, 0);
    assert_eq!(d.tick(0).len(), 1);
    d.ack(&a.id, Some(Level::Warning), None, "alice", "", M)
        .unwrap();
    let n = d.tick(10 * M);
    assert_eq!(
        hosts(&n[0]),
        vec![("b".into(), true)],
        "only the unacknowledged"
    );
}

#[test]
fn a_resending_receiver_hears_of_every_firing_alert_often_acknowledged_or_not() {
    // The route repeats after 4h at most twice; the Alertmanager receiver resends every minute.
    let resend = BTreeMap::from([("am".to_string(), M)]);
    let mut d = Dispatcher::new(vec![], resend);
    let opts = GroupOpts {
        group_by: Some(vec!["alertname".into()]),
        repeat_interval: Some(Duration::from_secs(4 * 3600)),
        max_repeats: 2,
        repeat_backoff: 2.0,
        ..GroupOpts::default()
    };
    let t = [target(&["chat", "am"], opts, None)];
    let a = alert("Disk", "a", Level::Warning, true);
    d.event(&a, &t, 0);
    d.event(&alert("Disk", "b", Level::Warning, true), &t, 0);
    assert_eq!(d.tick(0).len(), 2);
    d.ack(&a.id, Some(Level::Warning), None, "alice", "", S)
        .unwrap();
    let sent = run(&mut d, S, 10 * M);
    let to = |r: &str| -> Vec<(i64, Vec<(String, bool)>)> {
        sent.iter()
            .filter(|(_, n)| n.receiver == r)
            .map(|(t, n)| (*t, hosts(n)))
            .collect()
    };
    assert!(to("chat").is_empty(), "{:?}", to("chat"));
    let am = to("am");
    assert_eq!(am.len(), 10, "{am:?}");
    assert!(am.iter().all(|(_, h)| h.len() == 2), "{am:?}");
}

#[test]
fn a_resending_receiver_is_resynced_after_a_restart_even_if_saved_without_resends() {
    // Saved by a dispatcher that did not resend (an older version): repeats after 4h.
    let mut d = Dispatcher::new(vec![], Default::default());
    let opts = GroupOpts {
        repeat_interval: Some(Duration::from_secs(4 * 3600)),
        ..GroupOpts::default()
    };
    let t = [target(&["am"], opts, None)];
    d.event(&alert("Disk", "a", Level::Warning, true), &t, 0);
    assert_eq!(d.tick(0).len(), 1);
    let rows = saved(&mut d);
    let mut e = Dispatcher::new(vec![], BTreeMap::from([("am".to_string(), M)]));
    assert!(e.restore(rows).is_empty());
    let sent: Vec<i64> = run(&mut e, 10 * M, 13 * M)
        .iter()
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(sent, vec![10 * M, 11 * M, 12 * M, 13 * M]);
}

#[test]
fn an_alert_without_a_value_survives_a_restart() {
    // An alert posted from elsewhere has no value: NaN, stored as null, read back as NaN.
    let mut d = Dispatcher::new(vec![], Default::default());
    let t = [target(&["chat"], GroupOpts::default(), None)];
    let a = AlertInfo {
        value: f64::NAN,
        ..alert("FromElsewhere", "a", Level::Critical, true)
    };
    d.event(&a, &t, 0);
    assert_eq!(d.tick(0).len(), 1);
    let rows = saved(&mut d);
    assert!(
        rows.iter().any(|(_, j)| j.contains("\"value\":null")),
        "{rows:?}"
    );
    let mut e = Dispatcher::new(vec![], Default::default());
    assert!(e.restore(rows).is_empty());
    assert_eq!(e.known_levels().get(a.id.as_str()), Some(&Level::Critical));
}

#[test]
fn state_survives_a_restart() {
    let mut d = Dispatcher::new(vec![oncall()], Default::default());
    let t = [
        target(&["chat"], by_name(30 * S, 0), None),
        target(&[], GroupOpts::default(), Some("oncall")),
    ];
    let a = alert("DbDown", "db1", Level::Critical, true);
    d.event(&a, &t, 0);
    run(&mut d, 0, 5 * M);
    let rows = saved(&mut d);
    let mut e = Dispatcher::new(vec![oncall()], Default::default());
    assert!(e.restore(rows).is_empty());
    // Nothing is sent twice; the next step comes on time.
    let sent = run(&mut e, 5 * M, 15 * M);
    assert_eq!(steps(&sent), vec![(10, "lead".into(), 2)]);
    assert_eq!(
        e.restore(vec![("g:x".into(), "{".into()), ("z:y".into(), "1".into())])
            .len(),
        2
    );
}

#[test]
fn a_failed_remediation_bumps_the_alert_to_its_next_tier() {
    let mut d = Dispatcher::new(vec![oncall()], Default::default());
    let t = [
        target(&["chat"], GroupOpts::default(), None),
        target(&[], GroupOpts::default(), Some("oncall")),
    ];
    let a = alert("WebDown", "web1", Level::Critical, true);
    d.event(&a, &t, 0);
    assert_eq!(d.tick(0).len(), 2, "chat group + step 1");
    d.bump(&a.id, Event::RemediationFailed, M);
    let sent = d.tick(M);
    let mut got: Vec<(String, String)> = sent
        .iter()
        .map(|n| (n.receiver.clone(), n.alerts[0].event.to_string()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("chat".into(), "remediation_failed".into()),
            ("lead".into(), "remediation_failed".into())
        ],
        "step 2 now instead of at 10 minutes, and the group hears again"
    );
}

/// The rows of the dispatcher's state as a store keeps them: changes applied one after another.
fn apply(store: &mut BTreeMap<String, String>, d: &mut Dispatcher) -> usize {
    let mut bytes = 0;
    for (k, v) in d.take_changes() {
        match v {
            Some(v) => {
                bytes += v.len();
                store.insert(k, v);
            }
            None => {
                store.remove(&k);
            }
        }
    }
    bytes
}

#[test]
fn a_change_to_one_alert_of_a_large_group_rewrites_its_row_not_the_whole_group() {
    let mut d = Dispatcher::new(vec![], Default::default());
    let t = [target(&["chat"], by_name(0, 0), None)];
    let mut store = BTreeMap::new();
    for i in 0..200 {
        d.event(
            &alert("HostDown", &format!("h{i}"), Level::Critical, true),
            &t,
            0,
        );
    }
    assert_eq!(d.tick(0).len(), 1);
    let all = apply(&mut store, &mut d);
    assert_eq!(store.len(), 201, "the group and each of its alerts");
    // One more host down: its row, and the group's (small) row.
    d.event(&alert("HostDown", "h200", Level::Critical, true), &t, S);
    let n = d.tick(S);
    assert_eq!(
        n[0].alerts.len(),
        201,
        "the message still carries the whole group"
    );
    let one = apply(&mut store, &mut d);
    assert!(
        one * 50 < all,
        "{one} bytes written against {all} for the whole group"
    );
    // Restored from the rows, it knows every alert and what was told.
    let mut e = Dispatcher::new(vec![], Default::default());
    assert!(e.restore(store.clone().into_iter().collect()).is_empty());
    assert_eq!(e.known_levels().len(), 201);
    assert!(run(&mut e, 2 * S, 10 * S).is_empty(), "nothing told twice");
    // All resolve: the group goes, and every row with it.
    for i in 0..=200 {
        d.event(
            &alert("HostDown", &format!("h{i}"), Level::Critical, false),
            &t,
            11 * S,
        );
    }
    assert_eq!(d.tick(11 * S).len(), 1);
    assert!(d.tick(12 * S).is_empty());
    apply(&mut store, &mut d);
    assert!(
        store.is_empty(),
        "{:?}",
        store.keys().take(3).collect::<Vec<_>>()
    );
}

#[test]
fn state_written_with_the_alerts_in_the_group_row_is_read_and_moved_to_rows_of_their_own() {
    let mut d = Dispatcher::new(vec![], Default::default());
    let t = [target(&["chat"], by_name(0, 0), None)];
    for h in ["a", "b"] {
        d.event(&alert("Disk", h, Level::Warning, true), &t, 0);
    }
    d.tick(0);
    let mut store = BTreeMap::new();
    apply(&mut store, &mut d);
    // The shape an earlier version wrote: one row per group, its alerts and what was sent in it.
    let mut old: BTreeMap<String, String> = BTreeMap::new();
    let mut group: Option<(String, serde_json::Value)> = None;
    let (mut alerts, mut sent) = (serde_json::Map::new(), serde_json::Map::new());
    for (k, v) in &store {
        let v: serde_json::Value = serde_json::from_str(v).unwrap();
        if let Some(rest) = k.strip_prefix("m:") {
            let id = rest.split_once('|').unwrap().0.to_string();
            alerts.insert(id.clone(), v["alert"].clone());
            sent.insert(id, v["sent"].clone());
        } else if k.starts_with("g:") {
            group = Some((k.clone(), v));
        } else {
            old.insert(k.clone(), v.to_string());
        }
    }
    let (gk, mut gv) = group.unwrap();
    gv["alerts"] = alerts.into();
    gv["sent"] = sent.into();
    old.insert(gk, gv.to_string());
    let mut e = Dispatcher::new(vec![], Default::default());
    assert!(e.restore(old.into_iter().collect()).is_empty());
    assert_eq!(e.known_levels().len(), 2);
    assert!(run(&mut e, S, 5 * S).is_empty(), "nothing told twice");
    // The next state taken writes the alerts' rows and a group row without them.
    let mut moved = BTreeMap::new();
    apply(&mut moved, &mut e);
    assert_eq!(moved.len(), 3, "{:?}", moved.keys().collect::<Vec<_>>());
    assert!(moved
        .iter()
        .all(|(k, v)| !k.starts_with("g:") || !v.contains("\"alerts\"")));
}

/// `holds` answers for one alert what `known_levels` answers for all, where the route sends
/// it: a group holds it from its firing (told or waiting) until its resolve has gone, an
/// escalation while it runs; a group it joined under another route is not looked at.
#[test]
fn holds_answers_for_one_alert_where_its_route_sends_it() {
    let mut d = Dispatcher::new(vec![oncall()], BTreeMap::new());
    let grouped = [target(&["ops"], by_name(0, 60 * S), None)];
    let escalated = [target(&[], by_name(0, 60 * S), Some("oncall"))];
    let a = alert("Cpu", "a", Level::Critical, true);
    let b = alert("Cpu", "b", Level::Critical, true);
    assert!(!d.holds(&a, &grouped));
    d.event(&a, &grouped, 0);
    assert!(d.holds(&a, &grouped), "waiting in its group");
    assert!(!d.holds(&b, &grouped), "another alert of the group");
    d.tick(0);
    assert!(d.holds(&a, &grouped), "told");
    assert!(d.known_levels().contains_key(a.id.as_str()));
    let elsewhere = [target(&["lead"], by_name(0, 60 * S), None)];
    assert!(!d.holds(&a, &elsewhere), "only where the route sends it");
    d.event(&b, &escalated, 0);
    assert!(d.holds(&b, &escalated), "escalating");
    let mut a_ends = a.clone();
    a_ends.firing = false;
    a_ends.event = Event::Resolved;
    d.event(&a_ends, &grouped, 5 * S);
    run(&mut d, 5 * S, 70 * S);
    assert!(!d.holds(&a, &grouped), "its resolve has gone");
    assert!(!d.known_levels().contains_key(a.id.as_str()));
}
