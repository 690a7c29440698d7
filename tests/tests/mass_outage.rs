//! A mass outage through the collector: two thousand alerts of one name posted at once (as a
//! Prometheus does when a whole fleet goes down) make one notification group and one incident;
//! the collector restarts in the middle; every alert is told firing and then resolved, and the
//! incident, read back with all its alerts, resolves when the last of them does.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use tocsin_e2e::{serial, wait_for, Proc, Stack};

const ALERTS: usize = 2_000;
const TOKEN: &str = "m4ss-s3nder";

fn post(c: &Proc, ended: bool) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let rfc = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let (starts, ends) = if ended {
        (now - 600, now - 1)
    } else {
        (now, now + 3_600)
    };
    let client = reqwest::blocking::Client::new();
    let all: Vec<Value> = (0..ALERTS)
        .map(|i| {
            json!({
                "labels": { "alertname": "NodeDown", "severity": "critical",
                            "instance": format!("node-{i:04}"), "service": "fleet" },
                "annotations": { "summary": "node unreachable" },
                "startsAt": rfc(starts),
                "endsAt": rfc(ends),
            })
        })
        .collect();
    for batch in all.chunks(64) {
        let r = client
            .post(c.url("/api/v2/alerts"))
            .bearer_auth(TOKEN)
            .json(&batch)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap_or_default());
    }
}

fn get(c: &Proc, path: &str) -> Value {
    reqwest::blocking::get(c.url(path))
        .and_then(|r| r.json())
        .unwrap()
}

/// The instances the receiver has heard in the given state, over every notification.
fn heard(s: &Stack, status: &str) -> BTreeSet<String> {
    s.hook
        .all()
        .iter()
        .flat_map(|(_, v)| v["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["status"] == status)
        .filter_map(|a| a["labels"]["instance"].as_str().map(str::to_string))
        .collect()
}

/// The one incident, as the API reads it back (its alerts from their rows of their own).
fn incident(c: &Proc) -> Value {
    let list = get(c, "/api/v1/incidents");
    let all = list["data"]["incidents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        all.len(),
        1,
        "one incident for the whole outage: {}",
        all.len()
    );
    all[0].clone()
}

#[test]
fn a_mass_outage_is_one_incident_and_every_alert_is_told_firing_then_resolved() {
    let _g = serial();
    let s = Stack::new(&format!(
        "external_alerts: {{ token: {TOKEN} }}\n\
         route:\n  receivers: [hook]\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 4h\n"
    ));
    std::fs::create_dir(s.dir.path().join("rules")).unwrap();
    let listen = format!("127.0.0.1:{}", tocsin_e2e::servers::free_port());
    let mut c = s.collector(&listen, &s.p("rules"));

    post(&c, false);
    wait_for("every alert told firing", Duration::from_secs(30), || {
        (heard(&s, "firing").len() == ALERTS).then_some(())
    });
    let inc = incident(&c);
    assert_eq!(inc["alerts"].as_object().map(|a| a.len()), Some(ALERTS));
    assert_eq!(inc["state"], "open");

    // A restart in the middle of the outage: the incident is read back whole, and the group
    // tells nobody again.
    let told_before = s.hook.all().len();
    c.terminate();
    let c = s.collector(&listen, &s.p("rules"));
    let inc = incident(&c);
    assert_eq!(inc["alerts"].as_object().map(|a| a.len()), Some(ALERTS));
    let listed = get(&c, "/api/v2/alerts");
    assert_eq!(listed.as_array().map(Vec::len), Some(ALERTS));

    // The fleet comes back: every alert is told resolved, and the incident resolves with the
    // last of them — it knows all its alerts, those from before the restart included.
    post(&c, true);
    wait_for("every alert told resolved", Duration::from_secs(30), || {
        (heard(&s, "resolved").len() == ALERTS).then_some(())
    });
    let inc = wait_for("the incident resolved", Duration::from_secs(10), || {
        let i = incident(&c);
        (i["state"] == "resolved").then_some(i)
    });
    assert_eq!(inc["resolved_by"], "auto", "{}", inc["resolved_by"]);
    let spans = inc["alerts"].as_object().unwrap();
    assert_eq!(spans.len(), ALERTS);
    assert!(spans.values().all(|a| a["firing"] == false));
    // The restart itself told nobody anything: the first message after it is the recovery's.
    let first_after = &s.hook.all()[told_before].1;
    assert!(
        first_after["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["status"] == "resolved")),
        "the first message after the restart: {}",
        first_after["tocsin"]
    );
    assert_eq!(get(&c, "/api/v2/alerts"), json!([]));
}
