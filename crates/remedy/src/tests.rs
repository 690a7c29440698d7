use std::collections::BTreeMap;

use tocsin_model::{Labels, Level};

use super::*;

const S: i64 = 1000;
const M: i64 = 60 * S;

fn alert(level: Level, firing: bool) -> AlertInfo {
    let labels = Labels::from_pairs([
        ("alertname", "WebDown"),
        ("host", "web-1"),
        ("service", "web"),
    ]);
    AlertInfo {
        // Told as firing even when it resolves: the remedies judge `firing`.
        event: tocsin_dispatch::Event::Firing,
        threshold: "< 1".into(),
        ..AlertInfo::bare("WebDown", labels, level, firing)
    }
}

fn rem() -> Remediation {
    Remediation {
        action: "restart_web".into(),
        on_collector: false,
        params: BTreeMap::from([(
            "unit".to_string(),
            ParamSource::Label {
                label: "service".into(),
                values: vec!["web".into(), "api".into()],
            },
        )]),
        level: Level::Critical,
        verify_within_ms: 30 * S,
        cooldown_ms: M,
        max_attempts: 3,
        window_ms: 60 * M,
        breaker_after: 2,
        approval: false,
        dry_run: false,
    }
}

fn kinds(e: &[Event]) -> Vec<&'static str> {
    e.iter().map(|e| e.kind).collect()
}

#[test]
fn request_dispatch_result_and_verification() {
    let mut r = Remedy::new(Limits::default());
    assert!(
        r.on_alert(&alert(Level::Warning, true), &rem(), 0)
            .is_empty(),
        "below its level"
    );
    let e = r.on_alert(&alert(Level::Critical, true), &rem(), S);
    assert_eq!(kinds(&e), vec!["requested"]);
    assert_eq!(e[0].text, "restart_web (unit=web) requested on host web-1");
    assert!(
        r.take(Some("web-2"), S).0.is_empty(),
        "another host gets nothing"
    );
    let (reqs, e) = r.take(Some("web-1"), 2 * S);
    assert_eq!(kinds(&e), vec!["dispatched"]);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].params["unit"], "web");
    assert!(r.take(Some("web-1"), 3 * S).0.is_empty(), "handed out once");
    let id = reqs[0].id.clone();
    let e = r
        .result(
            &id,
            ResultStatus::Succeeded,
            "exit 0",
            "restarted",
            true,
            4 * S,
        )
        .unwrap();
    assert_eq!(kinds(&e), vec!["succeeded"]);
    assert!(
        r.result(&id, ResultStatus::Succeeded, "exit 0", "", true, 5 * S)
            .is_err(),
        "a replayed result does not count twice"
    );
    let e = r.on_alert(&alert(Level::Critical, false), &rem(), 10 * S);
    assert_eq!(kinds(&e), vec!["verified"]);
    assert_eq!(r.requests().next().unwrap().state, State::Succeeded);
}

#[test]
fn a_fix_that_does_not_take_fails_verification_and_escalates() {
    let mut r = Remedy::new(Limits::default());
    r.on_alert(&alert(Level::Critical, true), &rem(), 0);
    let (reqs, _) = r.take(Some("web-1"), 0);
    r.result(&reqs[0].id, ResultStatus::Succeeded, "exit 0", "", true, S)
        .unwrap();
    assert!(r.tick(30 * S).is_empty());
    let e = r.tick(31 * S);
    assert_eq!(kinds(&e), vec!["verify_failed"]);
    assert!(e[0].escalate);
}

#[test]
fn cooldown_attempt_limit_and_circuit_breaker() {
    let mut r = Remedy::new(Limits::default());
    let fail = |r: &mut Remedy, t: i64| {
        let (reqs, _) = r.take(Some("web-1"), t);
        r.result(
            &reqs[0].id,
            ResultStatus::Failed,
            "exit 1: boom",
            "boom",
            true,
            t,
        )
        .unwrap()
    };
    r.on_alert(&alert(Level::Critical, true), &rem(), 0);
    let e = fail(&mut r, S);
    assert_eq!(kinds(&e), vec!["failed"]);
    assert!(e[0].escalate);
    // Flapping: resolves and fires again within the cooldown.
    r.on_alert(&alert(Level::Critical, false), &rem(), 2 * S);
    let e = r.on_alert(&alert(Level::Critical, true), &rem(), 3 * S);
    assert_eq!(kinds(&e), vec!["skipped"]);
    assert!(e[0].text.contains("cooling down"), "{}", e[0].text);
    // After the cooldown: a second failure in a row opens the breaker.
    r.on_alert(&alert(Level::Critical, true), &rem(), M + 3 * S);
    let e = fail(&mut r, M + 4 * S);
    assert_eq!(kinds(&e), vec!["failed", "breaker_open"]);
    assert!(e[1].escalate);
    let e = r.on_alert(&alert(Level::Critical, true), &rem(), 5 * M);
    assert!(e[0].text.contains("circuit breaker open"), "{}", e[0].text);
    // Attempts per window.
    let mut many = rem();
    many.breaker_after = 10;
    many.cooldown_ms = 0;
    many.max_attempts = 2;
    let mut r = Remedy::new(Limits::default());
    for t in 0..2 {
        r.on_alert(&alert(Level::Critical, true), &many, t * S);
        fail(&mut r, t * S);
    }
    let e = r.on_alert(&alert(Level::Critical, true), &many, 3 * S);
    assert!(
        e[0].text.contains("2 attempts in the window"),
        "{}",
        e[0].text
    );
}

#[test]
fn dry_run_approval_refusals_and_limits() {
    let mut dry = rem();
    dry.dry_run = true;
    let mut r = Remedy::new(Limits::default());
    let e = r.on_alert(&alert(Level::Critical, true), &dry, 0);
    assert_eq!(kinds(&e), vec!["dry_run"]);
    assert!(r.take(Some("web-1"), 0).0.is_empty(), "nothing runs");

    let mut appr = rem();
    appr.approval = true;
    let mut r = Remedy::new(Limits::default());
    let a = alert(Level::Critical, true);
    assert_eq!(kinds(&r.on_alert(&a, &appr, 0)), vec!["awaiting_approval"]);
    assert!(r.take(Some("web-1"), 0).0.is_empty());
    assert_eq!(kinds(&r.approve(&a.id, "alice", S)), vec!["approved"]);
    assert_eq!(r.take(Some("web-1"), S).0.len(), 1);

    let mut bad = rem();
    bad.params.insert(
        "x".into(),
        ParamSource::Label {
            label: "no_such_label".into(),
            values: vec!["x".into()],
        },
    );
    let e = Remedy::new(Limits::default()).on_alert(&a, &bad, 0);
    assert_eq!(kinds(&e), vec!["refused"]);

    // A label value the rule does not list (what a compromised agent would send) runs nothing;
    // a value fixed in the rule is taken as it is.
    let mut evil = a.clone();
    evil.labels.set("service", "poweroff.target");
    let e = Remedy::new(Limits::default()).on_alert(&evil, &rem(), 0);
    assert_eq!(kinds(&e), vec!["refused"]);
    assert!(
        format!("{e:?}").contains("is not one of the values the rule allows"),
        "{e:?}"
    );
    let mut fixed = rem();
    fixed
        .params
        .insert("unit".into(), ParamSource::Value("nginx.service".into()));
    let mut r = Remedy::new(Limits::default());
    r.on_alert(&evil, &fixed, 0);
    assert_eq!(
        r.take(Some("web-1"), 0).0[0].params["unit"],
        "nginx.service"
    );

    // One at a time per host.
    let mut r = Remedy::new(Limits::default());
    r.on_alert(&a, &rem(), 0);
    let mut other = a.clone();
    other.rule = "WebSlow".into();
    let e = r.on_alert(&other, &rem(), 0);
    assert!(e[0].text.contains("concurrency limit"), "{}", e[0].text);
}

#[test]
fn unanswered_requests_are_lost_and_state_survives_a_restart() {
    let mut r = Remedy::new(Limits {
        answer_within_ms: 5 * S,
        ..Limits::default()
    });
    r.on_alert(&alert(Level::Critical, true), &rem(), 0);
    r.take(Some("web-1"), 0);
    let rows: Vec<(String, String)> = r
        .take_changes()
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    let mut again = Remedy::new(Limits {
        answer_within_ms: 5 * S,
        ..Limits::default()
    });
    assert!(again.restore(rows).is_empty());
    assert!(
        again.take(Some("web-1"), S).0.is_empty(),
        "not handed out twice"
    );
    assert_eq!(kinds(&again.tick(5 * S)), vec!["lost"]);
    // Ids keep counting after a restart.
    let e = again.on_alert(&alert(Level::Critical, true), &rem(), 2 * M);
    assert!(
        e[0].request.as_deref().unwrap().ends_with("-2"),
        "{:?}",
        e[0].request
    );
}

/// A scale-out asks one step above the last count that worked, never above the rule's
/// maximum, and never faster than the cooldown.
#[test]
fn scale_out_steps_up_to_its_maximum_with_a_cooldown() {
    let mut scale = rem();
    scale.params = BTreeMap::from([(
        "replicas".to_string(),
        ParamSource::Scale {
            start: 2,
            max: 4,
            step: 1,
        },
    )]);
    scale.max_attempts = 10;
    scale.breaker_after = 10;
    let a = alert(Level::Critical, true);
    let mut r = Remedy::new(Limits::default());
    let mut asked = Vec::new();
    let mut t = 0;
    for _ in 0..4 {
        let e = r.on_alert(&a, &scale, t);
        if kinds(&e) == vec!["refused"] {
            assert!(
                e[0].text.contains("already at the rule's maximum of 4"),
                "{}",
                e[0].text
            );
            break;
        }
        let (reqs, _) = r.take(Some("web-1"), t);
        let req = &reqs[0];
        asked.push(req.params["replicas"].clone());
        r.result(&req.id, ResultStatus::Succeeded, "scaled", "", true, t)
            .unwrap();
        // While it is being verified, nothing more.
        assert!(r.on_alert(&a, &scale, t + 1).is_empty());
        // The verification window passes with the alert still firing; within the cooldown
        // nothing more, after it the next step.
        r.tick(t + 31 * S);
        assert_eq!(kinds(&r.on_alert(&a, &scale, t + 32 * S)), vec!["skipped"]);
        t += M + 1;
    }
    assert_eq!(asked, ["3", "4"]);
}
