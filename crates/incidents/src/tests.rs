use std::collections::BTreeMap;

use tocsin_model::Labels;

use super::*;

const S: i64 = 1000;
const T0: i64 = 1_795_000_000_000; // 2026-11-18

fn alert(rule: &str, host: &str, level: Level, firing: bool) -> AlertInfo {
    let labels = Labels::from_pairs([("alertname", rule), ("host", host), ("service", "web")]);
    AlertInfo {
        annotations: BTreeMap::from([("summary".to_string(), "probe failed".to_string())]),
        threshold: "< 1".into(),
        ..AlertInfo::bare(rule, labels, level, firing)
    }
}

/// Grouping by host first (`incidents.group_by: [host, service]`), as these tests were written.
fn by_host() -> Settings {
    Settings {
        group_by: vec!["host".into(), "service".into()],
        ..Settings::default()
    }
}

#[test]
fn by_default_a_services_alerts_from_every_host_join_one_incident() {
    let mut inc = Incidents::new(Settings::default());
    let a = inc.on_alert(&alert("WebDown", "web-1", Level::Critical, true), T0);
    let b = inc.on_alert(&alert("WebDown", "web-2", Level::Critical, true), T0);
    assert_eq!(a, b);
    let mut host_only = alert("DiskFull", "web-1", Level::Warning, true);
    host_only.labels = Labels::from_pairs([("alertname", "DiskFull"), ("host", "web-1")]);
    assert_ne!(inc.on_alert(&host_only, T0), a, "no service: by host");
}

#[test]
fn alerts_join_an_incident_which_resolves_and_reopens() {
    let mut inc = Incidents::new(by_host());
    let a = alert("WebDown", "web-1", Level::Critical, true);
    let id = inc.on_alert(&a, T0).unwrap();
    assert_eq!(id, "INC-20261118-0001");
    let b = alert("WebSlow", "web-1", Level::Warning, true);
    assert_eq!(
        inc.on_alert(&b, T0 + S).unwrap(),
        id,
        "same host: same incident"
    );
    let other = inc
        .on_alert(&alert("WebDown", "web-2", Level::Critical, true), T0 + S)
        .unwrap();
    assert_eq!(other, "INC-20261118-0002");
    inc.record(&a.id, "notified", "chat (webhook)".into(), T0 + 2 * S);
    inc.alert_acked(&a.id, "alice", "looking", T0 + 10 * S);
    inc.on_alert(
        &alert("WebDown", "web-1", Level::Critical, false),
        T0 + 20 * S,
    );
    let i = inc.live().find(|i| i.id == id).unwrap();
    assert_eq!(i.state, State::Acknowledged, "WebSlow still fires");
    inc.on_alert(
        &alert("WebSlow", "web-1", Level::Warning, false),
        T0 + 30 * S,
    );
    let i = inc.live().find(|i| i.id == id).unwrap().clone();
    assert_eq!(i.state, State::Resolved);
    assert_eq!(i.resolved_by.as_deref(), Some("auto"));
    assert_eq!(i.time_to_ack_ms(), Some(10 * S));
    assert_eq!(i.time_to_resolve_ms(), Some(30 * S));
    assert_eq!(i.severity, Level::Critical);
    assert_eq!(i.category, "service");
    let (_, events) = inc.take_changes();
    let mine: Vec<&str> = events
        .iter()
        .filter(|e| e.incident == id)
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(
        mine,
        vec![
            "opened",
            "alert_fired",
            "alert_fired",
            "notified",
            "acknowledged",
            "alert_resolved",
            "alert_resolved",
            "resolved"
        ]
    );
    // Fires again within the window: the same incident reopens.
    let again = inc.on_alert(&a, T0 + 60 * S).unwrap();
    assert_eq!(again, id);
    let i = inc.live().find(|i| i.id == id).unwrap();
    assert_eq!(i.reopened, 1);
    assert_eq!(i.outage, "intermittent");
    // Much later: a new one.
    inc.on_alert(
        &alert("WebDown", "web-1", Level::Critical, false),
        T0 + 70 * S,
    );
    let fresh = inc.on_alert(&a, T0 + 3_600 * S).unwrap();
    assert_eq!(fresh, "INC-20261118-0003");
}

#[test]
fn remediation_closes_without_a_human_and_stats_report_it() {
    let mut inc = Incidents::new(Settings::default());
    let a = alert("WebDown", "web-1", Level::Critical, true);
    let id = inc.on_alert(&a, T0).unwrap();
    inc.record(&a.id, "requested", "restart_web requested".into(), T0 + S);
    inc.record(
        &a.id,
        "succeeded",
        "restart_web ran: exit 0".into(),
        T0 + 2 * S,
    );
    inc.record(&a.id, "verified", "restart_web worked".into(), T0 + 5 * S);
    inc.on_alert(
        &alert("WebDown", "web-1", Level::Critical, false),
        T0 + 5 * S,
    );
    inc.note(&id, "bob", "the cache filled the disk", T0 + 100 * S)
        .unwrap();
    assert_eq!(
        inc.resolve(&id, "bob", T0 + 101 * S),
        Err(Refused::Resolved)
    );
    let i = inc.live().next().unwrap().clone();
    assert_eq!(i.resolved_by.as_deref(), Some("remediation"));
    assert_eq!(i.time_to_remediate_ms(), Some(5 * S));
    let s = stats(
        std::slice::from_ref(&i),
        T0 - 95 * S,
        T0 + 105 * S,
        T0 + 200 * S,
    );
    assert_eq!(s.count, 1);
    assert_eq!(s.mttr_seconds, Some(5.0));
    assert_eq!(s.mean_time_to_remediate_seconds, Some(5.0));
    assert_eq!(s.auto_remediated_share, Some(1.0));
    assert_eq!(s.availability_service["web"], 0.975, "5 s down in 200 s");
    assert_eq!(s.noisy_rules, vec![("WebDown".to_string(), 1)]);
    let (_, events) = inc.take_changes();
    let md = report(&i, &events, &[], &[]);
    for want in [
        "# INC-20261118-0001: WebDown on web-1 (web)",
        "## Summary",
        "| Time to resolve (MTTR) | 5 s |",
        "| Time to remediate | 5 s |",
        "## Impact",
        "- Hosts: web-1",
        "## Timeline",
        "| 2026-11-18T",
        "| verified | restart_web worked |",
        "## Remediation",
        "## Notes",
        "bob: the cache filled the disk",
        "## Follow-ups",
    ] {
        assert!(md.contains(want), "{want:?} not in\n{md}");
    }
}

#[test]
fn ids_count_per_day_and_state_round_trips() {
    let mut inc = Incidents::new(by_host());
    inc.on_alert(&alert("A", "h1", Level::Warning, true), T0);
    let (rows, _) = inc.take_changes();
    // As the store reads a row back: its alerts put into it.
    let rows = rows
        .into_iter()
        .map(|r| {
            let mut v: serde_json::Value = serde_json::from_str(&r.json).unwrap();
            if v.is_object() {
                let alerts: serde_json::Map<String, serde_json::Value> = r
                    .alerts
                    .iter()
                    .map(|(a, d)| (a.clone(), serde_json::from_str(d).unwrap()))
                    .collect();
                v["alerts"] = alerts.into();
            }
            (r.id, v.to_string())
        })
        .collect();
    let mut again = Incidents::new(by_host());
    assert!(again.restore(rows, T0 + S).is_empty());
    // A restored incident is found by its alerts and its key (the index is rebuilt).
    assert_eq!(
        again.incident_of(&alert("A", "h1", Level::Warning, true).id),
        Some("INC-20261118-0001")
    );
    assert_eq!(
        again.on_alert(&alert("B", "h1", Level::Warning, true), T0 + S),
        Some("INC-20261118-0001".into()),
        "the same host's incident"
    );
    assert_eq!(
        again.on_alert(&alert("A", "h2", Level::Warning, true), T0 + S),
        Some("INC-20261118-0002".into())
    );
    assert_eq!(
        again.on_alert(&alert("A", "h3", Level::Warning, true), T0 + 86_400 * S),
        Some("INC-20261119-0001".into())
    );
    assert_eq!(again.ack("INC-nope", "x", "", T0), Err(Refused::NotFound));
}

/// The shipped rules label their kind (`ProbeIntermittent`: intermittent, `ProbeSlow`:
/// degraded): that label wins over the inference from level and reopening.
#[test]
fn the_rules_outage_label_names_the_kind() {
    for (kind, level) in [
        ("complete", Level::Warning),
        ("partial", Level::Critical),
        ("intermittent", Level::Critical),
        ("degraded", Level::Critical),
    ] {
        let mut inc = Incidents::new(Settings::default());
        let mut a = alert("X", "h", level, true);
        a.labels.set("outage", kind);
        inc.on_alert(&a, T0);
        assert_eq!(inc.live().next().unwrap().outage, kind);
    }
    // An annotation, for a kind that depends on the level (ServiceOutage: partial at warning).
    let mut inc = Incidents::new(Settings::default());
    let mut a = alert("ServiceOutage", "h", Level::Warning, true);
    a.annotations.insert("outage".into(), "partial".into());
    inc.on_alert(&a, T0);
    assert_eq!(inc.live().next().unwrap().outage, "partial");
    // Without one: critical is complete, warning degraded.
    let mut inc = Incidents::new(Settings::default());
    inc.on_alert(&alert("X", "h", Level::Warning, true), T0);
    assert_eq!(inc.live().next().unwrap().outage, "degraded");
}

/// A probe's ServiceDown (no declared kind: inferred complete) and its service's ServiceOutage
/// (declared partial) in one incident: partial, whichever fires first.
#[test]
fn a_declared_kind_is_not_overridden_by_an_inferred_one() {
    for declared_first in [false, true] {
        let mut inc = Incidents::new(Settings::default()); // service first
        let mut down = alert("ServiceDown", "h1", Level::Critical, true);
        down.labels.set("service", "shop");
        let mut outage = alert("ServiceOutage", "", Level::Warning, true);
        outage.labels =
            tocsin_model::Labels::from_pairs([("alertname", "ServiceOutage"), ("service", "shop")]);
        outage.annotations.insert("outage".into(), "partial".into());
        let order = if declared_first {
            [&outage, &down]
        } else {
            [&down, &outage]
        };
        let ids: Vec<_> = order.iter().map(|a| inc.on_alert(a, T0)).collect();
        assert_eq!(ids[0], ids[1], "one incident for the service");
        let i = inc.live().next().unwrap();
        assert_eq!(i.outage, "partial", "declared first: {declared_first}");
        assert!(i.outage_declared);
    }
}

fn with_deadlines() -> Settings {
    Settings {
        deadlines: vec![
            Deadline {
                level: Level::Critical,
                ack_ms: 15 * 60 * S,
                resolve_ms: 24 * 3600 * S,
                hours: None,
            },
            Deadline {
                level: Level::Emergency,
                ack_ms: 5 * 60 * S,
                resolve_ms: 4 * 3600 * S,
                hours: None,
            },
        ],
        rto_ms: BTreeMap::from([("web".to_string(), 30 * 60 * S)]),
        owners: BTreeMap::from([("web".to_string(), "web-team".to_string())]),
        ..Settings::default()
    }
}

fn kinds(events: &[TimelineEvent]) -> Vec<(i64, &str, &str)> {
    events
        .iter()
        .filter(|e| e.kind.ends_with("_deadline_missed") || e.kind == "rto_breached")
        .map(|e| ((e.at - T0) / S, e.kind.as_str(), e.text.as_str()))
        .collect()
}

#[test]
fn deadlines_and_the_rto_are_breached_once_each_and_counted_per_severity() {
    let mut inc = Incidents::new(with_deadlines());
    let id = inc
        .on_alert(&alert("WebDown", "web-1", Level::Critical, true), T0)
        .unwrap();
    assert_eq!(
        inc.live().next().unwrap().owner.as_deref(),
        Some("web-team"),
        "the service's owner"
    );
    let mut events = Vec::new();
    for t in (0..=40 * 60).step_by(10) {
        inc.check_deadlines(T0 + t * S);
        events.extend(inc.take_changes().1);
    }
    assert_eq!(
        kinds(&events),
        [
            (
                900,
                "ack_deadline_missed",
                "not acknowledged within 15 min (critical deadline); open 15 min"
            ),
            (
                1800,
                "rto_breached",
                "web down 30 min, past its recovery time objective of 30 min"
            ),
        ]
    );
    inc.ack(&id, "alice", "", T0 + 41 * 60 * S).unwrap();
    inc.on_alert(
        &alert("WebDown", "web-1", Level::Critical, false),
        T0 + 50 * 60 * S,
    );

    // A second incident, an emergency acknowledged in time and resolved in time.
    let mut other = alert("DbDown", "db-1", Level::Emergency, true);
    other.labels = Labels::from_pairs([("alertname", "DbDown"), ("host", "db-1")]);
    let t1 = T0 + 3600 * S;
    let id2 = inc.on_alert(&other, t1).unwrap();
    inc.ack(&id2, "bob", "", t1 + 60 * S).unwrap();
    inc.check_deadlines(t1 + 10 * 60 * S);
    other.firing = false;
    inc.on_alert(&other, t1 + 20 * 60 * S);
    assert!(kinds(&inc.take_changes().1).is_empty());

    let all: Vec<Incident> = inc.live().cloned().collect();
    let st = stats(&all, T0, T0 + 86_400 * S, T0 + 86_400 * S);
    let c = &st.deadlines["critical"];
    assert_eq!((c.incidents, c.acked_in_time, c.ack_missed), (1, 0, 1));
    assert_eq!((c.resolved_in_time, c.resolve_missed), (1, 0));
    assert_eq!((c.response_rate, c.resolution_rate), (Some(0.0), Some(1.0)));
    let e = &st.deadlines["emergency"];
    assert_eq!(
        (e.acked_in_time, e.ack_missed, e.response_rate),
        (1, 0, Some(1.0))
    );
    assert_eq!(st.rto_breaches, BTreeMap::from([("web".to_string(), 1)]));
}

#[test]
fn spans_read_in_two_units() {
    assert_eq!(format_span(45 * S), "45 s");
    assert_eq!(format_span(372 * S), "6 min 12 s");
    assert_eq!(format_span(600 * S), "10 min");
    assert_eq!(format_span(7500 * S), "2 h 5 min");
    assert_eq!(
        format_span(3 * 86_400 * S + 4 * 3600 * S + 5 * S),
        "3 d 4 h"
    );
}

#[test]
fn rules_are_reviewed_from_their_firings_and_what_people_said() {
    let mut inc = Incidents::new(Settings::default());
    // WebDown fires six times, a minute each; DiskFull once.
    for k in 0..6 {
        let t = T0 + k * 3600 * S;
        inc.on_alert(&alert("WebDown", "web-1", Level::Critical, true), t);
        inc.on_alert(
            &alert("WebDown", "web-1", Level::Critical, false),
            t + 60 * S,
        );
    }
    let mut disk = alert("DiskFull", "db-1", Level::Warning, true);
    disk.labels = Labels::from_pairs([("alertname", "DiskFull"), ("host", "db-1")]);
    let id = inc.on_alert(&disk, T0).unwrap();
    let all: Vec<Incident> = inc.live().cloned().collect();
    let fb = |rule: &str, verdict: Verdict| Feedback {
        incident: id.clone(),
        rule: rule.into(),
        verdict,
        by: "alice".into(),
        comment: String::new(),
        at: T0,
    };
    let feedback = [
        fb("DiskFull", Verdict::Noise),
        fb("DiskFull", Verdict::Useful),
        fb("Unseen", Verdict::WrongLevel),
    ];
    let r = rule_review(&all, &feedback, T0, T0 + 86_400 * S);
    assert_eq!(r[0].rule, "WebDown");
    assert_eq!(r[0].fired, 6);
    assert_eq!(r[0].mean_firing_seconds, Some(60.0));
    assert_eq!(r[0].precision, None);
    assert_eq!(
        r[0].review.as_deref(),
        Some("fired 6 times, nobody called it useful")
    );
    let disk = r.iter().find(|x| x.rule == "DiskFull").unwrap();
    assert_eq!(
        (disk.fired, disk.precision, disk.noise_share),
        (1, Some(0.5), Some(0.5))
    );
    assert_eq!(disk.review.as_deref(), Some("1 of 2 said noise"));
    let unseen = r.iter().find(|x| x.rule == "Unseen").unwrap();
    assert_eq!(
        unseen.review.as_deref(),
        Some("1 of 1 said wrong level or duplicate")
    );
}

#[test]
fn a_change_concerns_an_incident_on_its_services_or_hosts_shortly_before() {
    let mut inc = Incidents::new(Settings::default());
    inc.on_alert(&alert("WebDown", "web-1", Level::Critical, true), T0);
    let i = inc.live().next().unwrap().clone();
    let change = |service: &str, hosts: &[&str], start: i64| Change {
        id: 1,
        service: service.into(),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        kind: "deploy".into(),
        summary: "v2".into(),
        by: "ci".into(),
        link: None,
        start_ms: start,
        end_ms: None,
        freeze: None,
    };
    let h = 3600 * S;
    assert!(change("web", &[], T0 - h).concerns(&i, 4 * h, T0));
    assert!(change("db", &["web-1"], T0 - h).concerns(&i, 4 * h, T0));
    assert!(!change("db", &["db-1"], T0 - h).concerns(&i, 4 * h, T0));
    assert!(!change("web", &[], T0 - 5 * h).concerns(&i, 4 * h, T0));
    assert!(change("web", &[], T0 + 60 * S).concerns(&i, 4 * h, T0 + h));
}

#[test]
fn edits_assign_record_a_cause_and_track_follow_ups() {
    let mut inc = Incidents::new(Settings::default());
    let id = inc
        .on_alert(&alert("WebDown", "web-1", Level::Critical, true), T0)
        .unwrap();
    inc.take_changes();
    let by = "alice";
    for e in [
        Edit::Assign {
            owner: "web-team".into(),
        },
        Edit::Assign {
            owner: "db-team".into(),
        },
        Edit::Cause {
            category: "dependency".into(),
            text: "db failover".into(),
        },
        Edit::FollowUp {
            text: "test failovers".into(),
            owner: Some("bob".into()),
        },
        Edit::FollowUpState {
            id: 1,
            state: "done".into(),
        },
    ] {
        inc.edit(&id, by, &e, T0 + S).unwrap();
    }
    assert_eq!(
        inc.edit(&id, by, &Edit::Cause { category: "gremlins".into(), text: String::new() }, T0),
        Err(EditRefused::Invalid(
            "category \"gremlins\" is not one of change, configuration, capacity, hardware, network, dependency, software, human, external, unknown".into()
        ))
    );
    assert_eq!(
        inc.edit(
            &id,
            by,
            &Edit::FollowUpState {
                id: 7,
                state: "done".into()
            },
            T0
        ),
        Err(EditRefused::Invalid("no follow-up #7".into()))
    );
    assert_eq!(
        inc.edit("INC-none", by, &Edit::Impact { text: "x".into() }, T0),
        Err(EditRefused::NotFound)
    );
    for n in 1..MAX_FOLLOW_UPS {
        let e = Edit::FollowUp {
            text: format!("step {n}"),
            owner: None,
        };
        inc.edit(&id, by, &e, T0).unwrap();
    }
    assert_eq!(
        inc.edit(
            &id,
            by,
            &Edit::FollowUp {
                text: "one more".into(),
                owner: None
            },
            T0
        ),
        Err(EditRefused::Invalid(
            "at most 100 follow-ups per incident".into()
        ))
    );
    let i = inc.live().next().unwrap();
    assert_eq!(i.owner.as_deref(), Some("db-team"));
    assert_eq!(i.root_cause.as_ref().unwrap().category, "dependency");
    assert_eq!(i.follow_ups[0].state, "done");
    let texts: Vec<String> = inc
        .take_changes()
        .1
        .into_iter()
        .map(|e| e.text)
        .take(5)
        .collect();
    assert_eq!(
        texts,
        [
            "assigned to web-team by alice",
            "reassigned from web-team to db-team by alice",
            "alice: root cause dependency: db failover",
            "alice: follow-up #1 (owner bob): test failovers",
            "alice: follow-up #1 done",
        ]
    );
}

#[test]
fn a_deadline_in_business_hours_counts_only_their_time() {
    // Weekdays 09:00-18:00 at +08:00; a warning must be acknowledged within 4 hours of them.
    let office = tocsin_model::weekly::Weekly::new(
        &["mon", "tue", "wed", "thu", "fri"].map(String::from),
        "09:00",
        "18:00",
        Some("+08:00"),
    )
    .unwrap();
    let mut inc = Incidents::new(Settings {
        deadlines: vec![Deadline {
            level: Level::Warning,
            ack_ms: 4 * 3600 * S,
            resolve_ms: 30 * 3600 * S,
            hours: Some(tocsin_clock::BusinessHours {
                window: tocsin_clock::Window::fixed(office),
                holidays: Default::default(),
                workdays: Default::default(),
            }),
        }],
        ..Settings::default()
    });
    // Friday 2026-12-04 17:00 at +08:00.
    let fri_17 = 1_796_374_800_000;
    inc.on_alert(&alert("DiskFilling", "db-1", Level::Warning, true), fri_17)
        .unwrap();
    let mut missed = Vec::new();
    // Every ten minutes until Monday 14:00: an hour on Friday, the weekend, then Monday.
    let mon_14 = fri_17 + (2 * 24 + 21) * 3600 * S;
    let mut t = fri_17;
    while t <= mon_14 {
        inc.check_deadlines(t);
        missed.extend(
            inc.take_changes()
                .1
                .into_iter()
                .filter(|e| e.kind.ends_with("_deadline_missed"))
                .map(|e| (e.at, e.text)),
        );
        t += 600 * S;
    }
    // Due Monday 12:00: four hours of business time, 67 hours of clock.
    let mon_12 = fri_17 + 67 * 3600 * S;
    assert_eq!(
        missed,
        [(
            mon_12,
            "not acknowledged within 4 h of business hours (warning deadline); open 2 d 19 h"
                .to_string()
        )]
    );
}

/// A change to one alert of a large incident (a mass outage) writes that alert's part, what it
/// added to the incident's hosts, services and probes, and the incident's row without its
/// alerts and members — not every alert and host again; the row, the parts and the members read
/// back as the whole incident.
#[test]
fn one_alert_more_in_a_large_incident_writes_its_part_not_the_others() {
    let mut inc = Incidents::new(Settings::default());
    for h in 0..200 {
        inc.on_alert(
            &alert("WebDown", &format!("web-{h}"), Level::Critical, true),
            T0,
        );
    }
    let (rows, _) = inc.take_changes();
    let row = rows.iter().find(|r| r.id != "#seq").expect("the incident");
    assert_eq!(row.alerts.len(), 200);
    let hosts = row
        .members
        .iter()
        .filter(|(set, _)| *set == "hosts")
        .count();
    assert_eq!(hosts, 200, "each host a member of its own");
    assert!(
        !row.json.contains("web-7"),
        "no host in the row: {}",
        row.json
    );
    let whole = serde_json::to_string(inc.live().next().expect("live")).unwrap();
    let parts = row.alerts.iter().map(|(a, j)| (a.as_str(), j.as_str()));
    let members = row.members.iter().map(|(set, m)| (*set, m.as_str()));
    let read = Row::assemble(&row.json, parts, members).unwrap();
    assert_eq!(
        serde_json::from_str::<Incident>(&read).unwrap(),
        serde_json::from_str::<Incident>(&whole).unwrap()
    );
    let bytes = |rows: &[Row]| -> usize {
        rows.iter()
            .map(|r| {
                r.json.len()
                    + r.alerts
                        .iter()
                        .map(|(a, j)| a.len() + j.len())
                        .sum::<usize>()
                    + r.members
                        .iter()
                        .map(|(s, m)| s.len() + m.len())
                        .sum::<usize>()
            })
            .sum()
    };
    for firing in [true, false] {
        inc.on_alert(
            &alert("WebDown", "web-200", Level::Critical, firing),
            T0 + S,
        );
        let (rows, _) = inc.take_changes();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].alerts.len(), 1, "only the alert that changed");
        let written = bytes(&rows);
        assert!(
            written * 30 < whole.len(),
            "{written} bytes written for one alert of an incident of {} bytes",
            whole.len()
        );
    }
}
