use std::collections::BTreeMap;

use tocsin_dispatch::AlertInfo;
use tocsin_incidents::{Incidents, Settings, Verdict};
use tocsin_model::Labels;

use super::*;

const S: i64 = 1000;
// 2026-11-30 01:00 UTC: Monday 09:00 in Shanghai.
const FROM: i64 = 1_796_000_400_000;

fn alert(rule: &str, service: &str, level: Level, firing: bool) -> AlertInfo {
    let labels = Labels::from_pairs([("alertname", rule), ("host", "app-1"), ("service", service)]);
    AlertInfo {
        threshold: "< 1".into(),
        ..AlertInfo::bare(rule, labels, level, firing)
    }
}

/// Two incidents of members (critical, 10 min and 20 min, the second acknowledged after 2
/// min), one of search (warning, still open).
fn incidents() -> Vec<Incident> {
    let mut inc = Incidents::new(Settings {
        owners: BTreeMap::from([("members".to_string(), "members-team".to_string())]),
        rto_ms: BTreeMap::from([("members".to_string(), 15 * 60 * S)]),
        ..Settings::default()
    });
    let day = 86_400 * S;
    let t1 = FROM + day + 3600 * S; // Tue 10:00 Shanghai
    inc.on_alert(&alert("ServiceDown", "members", Level::Critical, true), t1);
    inc.on_alert(
        &alert("ServiceDown", "members", Level::Critical, false),
        t1 + 600 * S,
    );
    let t2 = FROM + 3 * day + 5 * 3600 * S; // Thu 14:00
    let id2 = inc
        .on_alert(&alert("ServiceDown", "members", Level::Critical, true), t2)
        .unwrap();
    inc.ack(&id2, "alice", "", t2 + 120 * S).unwrap();
    inc.check_deadlines(t2 + 16 * 60 * S);
    inc.on_alert(
        &alert("ServiceDown", "members", Level::Critical, false),
        t2 + 1200 * S,
    );
    inc.on_alert(&alert("ProbeSlow", "search", Level::Warning, true), t2);
    inc.live().cloned().collect()
}

fn input<'a>(
    zone: &'a Zone,
    locale: Locale,
    incidents: &'a [Incident],
    changes: &'a [Change],
    feedback: &'a [Feedback],
) -> PeriodInput<'a> {
    PeriodInput {
        kind: "weekly",
        from: FROM,
        to: FROM + 7 * 86_400 * S,
        zone,
        locale,
        services: vec![ServiceLine {
            name: "members".into(),
            owner: Some("members-team".into()),
            objective: Some(0.999),
            availability: Some(0.997),
            budget_remaining: Some(-0.5),
            rto_ms: Some(15 * 60 * S),
            latency: Some((0.5, 0.99, Some(0.995))),
        }],
        incidents,
        changes,
        feedback,
        changes_before_ms: 6 * 3600 * S,
        capacity: vec![],
    }
}

#[test]
fn the_weekly_report_counts_what_happened_in_its_zone_and_language() {
    let zone = Zone::parse("Asia/Shanghai").unwrap();
    let all = incidents();
    let changes = vec![Change {
        id: 7,
        service: "members".into(),
        hosts: vec![],
        kind: "deploy".into(),
        summary: "v2.4.1".into(),
        by: "ci".into(),
        link: None,
        start_ms: FROM + 3 * 86_400 * S + 4 * 3600 * S, // an hour before the second
        end_ms: None,
        freeze: None,
    }];
    let members_inc = all.iter().find(|i| i.services.contains("members")).unwrap();
    let feedback = vec![Feedback {
        incident: members_inc.id.clone(),
        rule: "ServiceDown".into(),
        verdict: Verdict::Noise,
        by: "alice".into(),
        comment: String::new(),
        at: FROM + 4 * 86_400 * S,
    }];
    let r = period_report(&input(&zone, Locale::ZhCn, &all, &changes, &feedback));
    assert_eq!(r.title, "服务周报 2026-11-30 – 2026-12-07");
    let md = &r.markdown;
    assert!(
        md.contains("事件 3 起（紧急 0，严重 2，警告 1），平均响应 2 分，平均恢复 15 分"),
        "{md}"
    );
    assert!(
        md.contains(
            "| members | members-team | 99.9 % | 99.7 % | 未达标 | -50 % | 2 | 15 分 | 15 分 | 1 |"
        ),
        "{md}"
    );
    assert!(
        md.contains("| 2026-12-01 | 1 |") && md.contains("| 2026-12-03 | 2 |"),
        "{md}"
    );
    assert!(md.contains("按小时分布: 10:00 1, 14:00 2"), "{md}");
    assert!(
        md.contains("| ServiceDown | 2 | 15 分 | noise 1 | 1 of 1 said noise |"),
        "{md}"
    );
    let second = all
        .iter()
        .filter(|i| i.services.contains("members"))
        .map(|i| i.id.clone())
        .max()
        .unwrap();
    assert!(
        md.contains(&format!(
            "| 2026-12-03 13:00 | members | deploy | ci | v2.4.1 | {second} |"
        )),
        "{md}"
    );
    assert!(md.contains("| 严重 | 2 | 100 % | 100 % |"), "{md}");
    assert_eq!(
        r.summary,
        [
            "事件 3 起（紧急 0，严重 2，警告 1），平均响应 2 分，平均恢复 15 分",
            "members：500 毫秒内响应 99.5 %（目标 99 %，达标）",
            "members：可用性 99.7 %（目标 99.9 %，未达标）",
            "待评估规则 1 条",
            "变更 1 次，其后发生事件的 1 次",
        ]
    );
    assert!(r.html.contains("<h2>服务等级</h2>"));
    let en = period_report(&input(&zone, Locale::En, &all, &changes, &feedback));
    assert!(
        en.markdown
            .contains("3 incidents (0 emergency, 2 critical, 1 warning), MTTA 2 min, MTTR 15 min"),
        "{}",
        en.markdown
    );
}

#[test]
fn the_daily_inspection_lists_what_needs_looking_at() {
    let zone = Zone::parse("Asia/Shanghai").unwrap();
    let i = Inspection {
        at: FROM,
        hosts_down: vec![("db-2".into(), Some(FROM - 3600 * S))],
        disks: vec![("db-1".into(), "/var".into(), 2.5)],
        certs: vec![("https://shop.example".into(), 12.0)],
        failing_probes: vec![("members-web".into(), "app-1".into(), "members".into())],
        silences_ending: vec![],
        dead_letters: 3,
        open_incidents: vec![],
        incidents_last_day: 4,
    };
    let r = inspection(&i, &zone, Locale::ZhCn);
    assert_eq!(r.title, "每日巡检 2026-11-30");
    assert!(
        r.markdown.contains("- db-2 (自 2026-11-30 08:00)"),
        "{}",
        r.markdown
    );
    assert!(r.markdown.contains("- db-1 /var：约 2.5 天后写满"));
    assert!(r.markdown.contains("## 今日到期的静默\n\n正常。"));
    assert!(r
        .summary
        .contains(&"投递失败（死信）通知 3 条；过去 24 小时新事件 4 起".to_string()));
}
