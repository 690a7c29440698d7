//! Service levels end to end: a service with an objective, a real agent probing a real HTTP
//! server, the shipped rules. An outage burns the budget and fires the fast-burn alert; the
//! incident passes its RTO; the budget survives a restart of the collector.

use std::time::Duration;

use serde_json::{json, Value};
use tocsin_e2e::servers::HttpServer;
use tocsin_e2e::{serial, wait_for, Proc, Stack};

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");

fn get(c: &Proc, path: &str) -> Option<Value> {
    reqwest::blocking::get(c.url(path)).ok()?.json().ok()
}

/// The newest value of an instant query's only series, with its sample's time (seconds).
fn newest(c: &Proc, selector: &str) -> Option<(f64, f64)> {
    let q = |e: &str| {
        let v = get(
            c,
            &format!("/api/v1/query?query={}", urlencoding::encode(e)),
        )?;
        v["data"]["result"][0]["value"][1]
            .as_str()?
            .parse::<f64>()
            .ok()
    };
    Some((q(selector)?, q(&format!("timestamp({selector})"))?))
}

/// An agent for `host` shipping every second, with one probe (`{ … }` YAML).
fn agent(env: &Stack, c: &Proc, host: &str, probe: &str) -> Proc {
    let cfg = env.p("agent.yaml");
    std::fs::write(
        &cfg,
        format!("host: {host}\ninterval: 1s\nprobes:\n  - {probe}\n"),
    )
    .unwrap();
    env.agent(c, &["--config", &cfg, "--state-dir", &env.p("agent-state")])
}

fn incident_of(c: &Proc, service: &str) -> Option<Value> {
    let v = get(c, "/api/v1/incidents")?;
    let id = v["data"]["incidents"].as_array()?.iter().find(|i| {
        i["services"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x == service))
    })?["id"]
        .as_str()?
        .to_string();
    Some(get(c, &format!("/api/v1/incidents/{id}"))?["data"].clone())
}

#[test]
fn an_outage_burns_the_budget_fires_the_fast_burn_alert_and_breaches_the_rto() {
    let _g = serial();
    let env = Stack::new(
        "services:\n  - { name: members, objective: 99.9%, window: 30d, rto: 4s, owner: members-team }\n",
    );
    let mut svc = HttpServer::start(None);
    // A fixed port, so that the agent finds the collector again after its restart.
    let listen = format!("127.0.0.1:{}", tocsin_e2e::servers::free_port());
    let mut c = env.collector(&listen, RULES);
    let _agent = agent(&env, &c, "app-1", &format!(
            "{{ name: members-web, kind: http, target: \"{}\", interval: 1s, timeout: 500ms, labels: {{ service: members }} }}",
            svc.url("http")
        ));

    let budget = "tocsin_slo_error_budget_remaining{service=\"members\"}";
    wait_for(
        "a full budget while the service is up",
        Duration::from_secs(30),
        || newest(&c, budget).filter(|(v, _)| *v == 1.0),
    );
    assert_eq!(
        newest(&c, "tocsin_slo_objective{service=\"members\"}")
            .unwrap()
            .0,
        0.999
    );

    svc.stop();
    let down_at = std::time::Instant::now();
    let fast = wait_for(
        "ErrorBudgetFastBurn firing",
        Duration::from_secs(60),
        || {
            c.alerts()
                .into_iter()
                .find(|a| a["labels"]["alertname"] == "ErrorBudgetFastBurn")
        },
    );
    assert_eq!(fast["labels"]["service"], "members");
    assert_eq!(fast["level"], "critical");
    // Two windows, the probe's confirmation and the 10-second derivation step: well inside
    // a minute of a total outage on a service up only seconds before.
    assert!(
        down_at.elapsed() < Duration::from_secs(45),
        "{:?}",
        down_at.elapsed()
    );
    let burn = newest(
        &c,
        "tocsin_slo_burn_rate{service=\"members\",window=\"5m\"}",
    )
    .unwrap()
    .0;
    assert!(burn > 14.4, "5-minute burn rate {burn}");

    // The service's incident: owned by its team, with the RTO breach on its timeline.
    let inc = wait_for(
        "the RTO breach on the timeline",
        Duration::from_secs(30),
        || {
            let inc = incident_of(&c, "members")?;
            inc["timeline"]
                .as_array()?
                .iter()
                .any(|e| e["kind"] == "rto_breached")
                .then_some(inc)
        },
    );
    assert_eq!(inc["owner"], "members-team");
    let breach = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "rto_breached")
        .unwrap();
    assert!(
        breach["text"]
            .as_str()
            .unwrap()
            .contains("past its recovery time objective of 4 s"),
        "{breach}"
    );
    assert!(
        inc["alerts"]
            .as_object()
            .unwrap()
            .values()
            .any(|a| a["rule"] == "ErrorBudgetFastBurn"),
        "the burn alert joins the service's incident: {inc}"
    );
    let stats = get(&c, "/api/v1/incidents/stats").unwrap();
    assert_eq!(stats["data"]["rto_breaches"]["members"], 1, "{stats}");
    assert_eq!(
        tocsin_e2e::metric(
            &c.url("/metrics"),
            "tocsin_incident_deadline_breaches_total{kind=\"rto\",severity=\"critical\"}"
        ),
        1.0
    );

    // The service comes back: the budget stops falling. It survives a restart of the
    // collector: the record saved as it stopped, then the stored indicator since.
    let port = svc.port;
    let _svc = HttpServer::start_on(port, None);
    wait_for("the service up again", Duration::from_secs(30), || {
        newest(
            &c,
            "tocsin_service_probe_success_ratio{service=\"members\"}",
        )
        .filter(|(v, _)| *v == 1.0)
    });
    let (before, _) = wait_for("the budget settled", Duration::from_secs(40), || {
        let a = newest(&c, budget)?;
        let b = wait_for("the next step", Duration::from_secs(20), || {
            newest(&c, budget).filter(|x| x.1 > a.1)
        });
        (a.0 == b.0).then_some(b)
    });
    assert!(before < 0.999, "some of the budget spent: {before}");
    assert!(c.terminate().success());
    let restarted_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    c = env.collector(&listen, RULES);
    let (after, _) = wait_for(
        "the budget derived after the restart",
        Duration::from_secs(30),
        || newest(&c, budget).filter(|(_, t)| *t >= restarted_at),
    );
    assert!(
        (after - before).abs() < 1e-3,
        "budget before the restart {before}, after {after}"
    );
    let log = c.log();
    let line = log
        .lines()
        .find(|l| l.contains("error budgets restored"))
        .unwrap_or_else(|| panic!("no restore logged:\n{log}"));
    assert!(line.contains("saved=1"), "{line}");
}

fn probe(c: &Proc, ok: bool, t_ms: i64) {
    let s = tocsin_model::SeriesSamples {
        labels: tocsin_model::Labels::from_pairs([
            ("__name__", "probe_success"),
            ("host", "app-1"),
            ("probe", "members-web"),
            ("kind", "http"),
            ("service", "members"),
        ]),
        samples: vec![tocsin_model::Sample::new(t_ms, if ok { 1.0 } else { 0.0 })],
    };
    assert_eq!(c.remote_write(&[s], &[]).status().as_u16(), 204);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `tocsin-collector ARGS --url …`: (success, stdout, stderr).
fn cli(c: &Proc, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(tocsin_e2e::binary("tocsin-collector"))
        .args(args)
        .args(["--url", &c.url("")])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_change_shows_on_the_next_incident_a_freeze_refuses_one_and_feedback_is_counted() {
    let _g = serial();
    let env = Stack::new(
        "services:\n  - { name: members, objective: 99.9% }\n\
         change_freezes:\n  - { name: billing-release, services: [billing], start: \"2020-01-01 00:00:00\", end: \"2099-01-01 00:00:00\" }\n",
    );
    let c = env.collector("127.0.0.1:0", RULES);

    // A deploy of members, from CI.
    let (ok, out, err) = cli(
        &c,
        &[
            "change",
            "add",
            "--service",
            "members",
            "--summary",
            "deploy v2.4.1",
            "--by",
            "ci",
            "--host",
            "app-1",
            "--link",
            "https://ci.example/run/42",
        ],
    );
    assert!(ok, "{err}");
    let id = serde_json::from_str::<Value>(&out).unwrap()["data"]["id"]
        .as_i64()
        .unwrap();
    // The freeze on billing refuses a change, and lets one through with a reason.
    let (ok, _, err) = cli(
        &c,
        &[
            "change",
            "add",
            "--service",
            "billing",
            "--summary",
            "new tariffs",
            "--by",
            "bob",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains(
            "change freeze \"billing-release\" holds for billing until 2099-01-01T00:00:00Z"
        ),
        "{err}"
    );
    let (ok, _, err) = cli(
        &c,
        &[
            "change",
            "add",
            "--service",
            "billing",
            "--summary",
            "hotfix",
            "--by",
            "bob",
            "--kind",
            "config",
            "--override",
            "payment outage fix",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("warning: inside change freeze \"billing-release\""),
        "{err}"
    );
    assert_eq!(
        tocsin_e2e::metric(
            &c.url("/metrics"),
            "tocsin_change_requests_total{result=\"refused\"}"
        ),
        1.0
    );
    let listed = get(&c, "/api/v1/changes?service=billing").unwrap();
    assert_eq!(
        listed["data"]["changes"][0]["freeze"],
        "billing-release (overridden: payment outage fix)"
    );
    // The change marker, for dashboards.
    wait_for("the change marker stored", Duration::from_secs(10), || {
        newest(&c, "tocsin_change{service=\"members\",kind=\"deploy\"}")
            .filter(|(v, _)| *v == id as f64)
    });

    // Then members goes down: its incident shows the deploy before it.
    let t = now_ms();
    probe(&c, true, t - 3000);
    probe(&c, false, t - 2000);
    probe(&c, false, t - 1000);
    let inc = wait_for("the members incident", Duration::from_secs(20), || {
        incident_of(&c, "members")
    });
    assert_eq!(inc["changes"][0]["summary"], "deploy v2.4.1", "{inc}");
    assert_eq!(inc["changes"][0]["link"], "https://ci.example/run/42");
    let timeline = inc["timeline"].as_array().unwrap();
    let kinds: Vec<&str> = timeline
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    let change_at = kinds
        .iter()
        .position(|k| *k == "change")
        .expect("change on the timeline");
    let opened_at = kinds.iter().position(|k| *k == "opened").unwrap();
    assert!(change_at < opened_at, "{kinds:?}");
    assert_eq!(
        timeline[change_at]["text"],
        "deploy of members by ci: deploy v2.4.1"
    );
    let inc_id = inc["id"].as_str().unwrap().to_string();
    let report = reqwest::blocking::get(c.url(&format!("/api/v1/incidents/{inc_id}/report")))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        report.contains("## Changes before it\n\n- ")
            && report
                .contains("deploy of members by ci: deploy v2.4.1 (https://ci.example/run/42)"),
        "{report}"
    );
    assert!(
        !report.contains("hotfix"),
        "billing's change is not members': {report}"
    );

    // Feedback: a bad verdict is told, a good one counted per rule.
    let (ok, _, err) = cli(
        &c,
        &[
            "incidents",
            "feedback",
            &inc_id,
            "--by",
            "alice",
            "--verdict",
            "meh",
        ],
    );
    assert!(
        !ok && err.contains("verdict \"meh\" is not one of useful, noise, wrong_level, duplicate"),
        "{err}"
    );
    let (ok, _, err) = cli(
        &c,
        &[
            "incidents",
            "feedback",
            &inc_id,
            "--by",
            "alice",
            "--verdict",
            "noise",
            "--rule",
            "ServiceDown",
            "--comment",
            "the deploy restarts it",
        ],
    );
    assert!(ok, "{err}");
    let stats = get(&c, "/api/v1/incidents/stats").unwrap();
    let rule = stats["data"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "ServiceDown")
        .cloned()
        .unwrap();
    assert_eq!(rule["fired"], 1, "{rule}");
    assert_eq!(rule["feedback"]["noise"], 1, "{rule}");
    assert_eq!(rule["noise_share"], 1.0, "{rule}");
    assert_eq!(
        stats["data"]["rules_to_review"][0]["review"], "1 of 1 said noise",
        "{stats}"
    );
    assert_eq!(
        tocsin_e2e::metric(
            &c.url("/metrics"),
            "tocsin_alert_feedback_total{verdict=\"noise\"}"
        ),
        1.0
    );
    let inc = incident_of(&c, "members").unwrap();
    assert_eq!(inc["feedback"][0]["comment"], "the deploy restarts it");
}

const DING_SECRET: &str = "SECreport";

/// A DingTalk robot stand-in: checks the access token and the signature as DingTalk
/// documents it (`HMAC-SHA256(secret, "{timestamp}\n{secret}")`, base64), computed here
/// independently, and keeps the messages it accepts.
fn dingtalk() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    tokio::runtime::Runtime,
) {
    use base64::Engine as _;
    use hmac::Mac as _;
    let seen: std::sync::Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
    let s2 = seen.clone();
    let app = axum::Router::new().route(
        "/robot/send",
        axum::routing::post(
            move |q: axum::extract::Query<std::collections::HashMap<String, String>>,
                  body: axum::Json<Value>| {
                let seen = s2.clone();
                async move {
                    let ts = q.get("timestamp").cloned().unwrap_or_default();
                    let mut mac =
                        hmac::Hmac::<sha2::Sha256>::new_from_slice(DING_SECRET.as_bytes()).unwrap();
                    mac.update(format!("{ts}\n{DING_SECRET}").as_bytes());
                    let want = base64::engine::general_purpose::STANDARD
                        .encode(mac.finalize().into_bytes());
                    let fresh = ts
                        .parse::<i64>()
                        .is_ok_and(|t| (now_ms() - t).abs() < 3_600_000);
                    if q.get("access_token").map(String::as_str) != Some("tok123")
                        || !fresh
                        || q.get("sign") != Some(&want)
                    {
                        return axum::Json(json!({"errcode": 310000, "errmsg": "sign not match"}));
                    }
                    seen.lock().unwrap().push(body.0);
                    axum::Json(json!({"errcode": 0, "errmsg": "ok"}))
                }
            },
        ),
    );
    let (addr, rt) = tocsin_e2e::serve(app);
    (format!("http://{addr}"), seen, rt)
}

/// The text of every part of a stored e-mail, transfer encodings undone.
fn mail_text(raw: &str) -> String {
    use base64::Engine as _;
    let raw = raw.replace("\r\n", "\n");
    let mut out = String::new();
    for part in raw.split("\n\n").collect::<Vec<_>>().windows(2) {
        let (head, body) = (part[0], part[1]);
        let body = body.split("\n--").next().unwrap_or("");
        if head.contains("Content-Transfer-Encoding: base64") {
            let joined: String = body.lines().collect();
            if let Ok(b) = base64::engine::general_purpose::STANDARD.decode(joined.trim()) {
                out.push_str(&String::from_utf8_lossy(&b));
            }
        } else if head.contains("Content-Transfer-Encoding: quoted-printable") {
            let unfolded = body.replace("=\n", "");
            let bytes = unfolded.as_bytes();
            let mut dec = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'=' && i + 2 < bytes.len() {
                    if let Ok(b) = u8::from_str_radix(&unfolded[i + 1..i + 3], 16) {
                        dec.push(b);
                        i += 3;
                        continue;
                    }
                }
                dec.push(bytes[i]);
                i += 1;
            }
            out.push_str(&String::from_utf8_lossy(&dec));
        } else {
            out.push_str(body);
        }
        out.push('\n');
    }
    out
}

/// A weekly report on a schedule a few seconds away (in UTC: the weekday and time of day
/// it will be then), after two incidents of the service: it reaches a real SMTP server and a
/// DingTalk stand-in, and its numbers are those of the incidents the API shows.
#[test]
fn a_weekly_report_goes_out_on_schedule_to_mail_and_chat_with_the_incidents_numbers() {
    let _g = serial();
    let Some((smtp, maildir)) = tocsin_e2e::servers::smtp() else {
        return;
    };
    let (ding, seen, _rt) = dingtalk();
    let due = time::OffsetDateTime::now_utc() + time::Duration::seconds(35);
    let weekday = due.weekday().to_string().to_lowercase()[..3].to_string();
    let at = format!("{:02}:{:02}:{:02}", due.hour(), due.minute(), due.second());
    let env = Stack::new(
        &[
            "  - name: mail".to_string(),
            format!(
                "    email: {{ smarthost: \"{}\", tls: none, from: \"tocsin <reports@example.test>\", to: [\"ops@example.test\"] }}",
                smtp.addr()
            ),
            "  - name: ding".into(),
            format!("    dingtalk: {{ url: \"{ding}/robot/send?access_token=tok123\", secret: {DING_SECRET} }}"),
            // Alerts to the stack's webhook; the reports to mail and chat.
            "route: { receivers: [hook] }".into(),
            "timezone: UTC".into(),
            "incidents: { reopen_within: 1s }".into(),
            "services:".into(),
            "  - { name: members, objective: 99.9%, rto: 60s, owner: members-team }".into(),
            "reports:".into(),
            format!("  weekly: {{ day: {weekday}, at: \"{at}\", receivers: [mail, ding] }}"),
            String::new(),
        ]
        .join("\n"),
    );
    // The stack's own receivers come first in the file: the webhook, then these two.
    let cfg = std::fs::read_to_string(env.p("collector.yaml")).unwrap();
    assert!(cfg.contains("  - name: mail"), "{cfg}");
    // The shipped rules but the error-budget ones: the incidents are the probe's alone.
    let rules = env.p("rules");
    std::fs::create_dir(&rules).unwrap();
    for f in std::fs::read_dir(RULES).unwrap().flatten() {
        if f.file_name() != "slo.yaml" {
            std::fs::copy(f.path(), std::path::Path::new(&rules).join(f.file_name())).unwrap();
        }
    }
    let c = env.collector("127.0.0.1:0", &rules);

    // Two incidents of members: the first resolves by itself, the second is acknowledged.
    let mut t = now_ms() - 60_000;
    for round in 0..2 {
        probe(&c, true, t);
        probe(&c, false, t + 1000);
        probe(&c, false, t + 2000);
        t += 3000;
        let inc = wait_for("an open members incident", Duration::from_secs(20), || {
            let v = get(&c, "/api/v1/incidents")?;
            v["data"]["incidents"]
                .as_array()?
                .iter()
                .find(|i| i["state"] == "open")
                .cloned()
        });
        if round == 1 {
            std::thread::sleep(Duration::from_millis(1100));
            let r = reqwest::blocking::Client::new()
                .post(c.url(&format!(
                    "/api/v1/incidents/{}/ack",
                    inc["id"].as_str().unwrap()
                )))
                .json(&json!({"by": "alice"}))
                .send()
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
        }
        std::thread::sleep(Duration::from_millis(1200));
        probe(&c, true, t);
        t += 1000;
        wait_for("the incident resolved", Duration::from_secs(20), || {
            let v = get(&c, "/api/v1/incidents")?;
            v["data"]["incidents"]
                .as_array()?
                .iter()
                .all(|i| i["state"] == "resolved")
                .then_some(())
        });
        std::thread::sleep(Duration::from_millis(1100));
    }
    let incidents = get(&c, "/api/v1/incidents").unwrap()["data"]["incidents"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(incidents.len(), 2, "{incidents:?}");
    assert!(
        std::time::SystemTime::now() < std::time::SystemTime::from(due),
        "the incidents were made before the report was due"
    );

    let (mail, text) = wait_for(
        "the weekly report by e-mail",
        Duration::from_secs(60),
        || {
            std::fs::read_dir(&maildir).ok()?.flatten().find_map(|e| {
                let raw = std::fs::read_to_string(e.path()).ok()?;
                let text = mail_text(&raw);
                text.contains("服务周报").then_some((raw, text))
            })
        },
    );
    assert_eq!(
        std::fs::read_dir(&maildir).unwrap().count(),
        1,
        "alerts go to the webhook, only the report to mail"
    );
    assert!(mail.contains("To: ops@example.test"), "{mail}");
    assert!(text.contains("# 服务周报 "), "{text}");
    for section in [
        "## 概览",
        "## 服务等级",
        "## 事件",
        "## 响应时限达成率",
        "## 趋势",
        "## 待评估规则",
        "## 变更",
        "## 容量趋势",
    ] {
        assert!(text.contains(section), "{section} in {text}");
    }
    // The numbers, from the incidents the API shows.
    let secs = |k: &str| {
        incidents
            .iter()
            .filter_map(|i| i[k].as_f64())
            .collect::<Vec<f64>>()
    };
    let (to_ack, to_resolve) = (secs("time_to_ack_seconds"), secs("time_to_resolve_seconds"));
    assert_eq!((to_ack.len(), to_resolve.len()), (1, 2));
    let mean_ms =
        |v: &[f64]| v.iter().map(|s| (s * 1000.0).round() as i64).sum::<i64>() / v.len() as i64;
    let summary = format!(
        "事件 2 起（紧急 0，严重 2，警告 0），平均响应 {} 秒，平均恢复 {} 秒",
        mean_ms(&to_ack) / 1000,
        mean_ms(&to_resolve) / 1000
    );
    assert!(text.contains(&summary), "{summary} in {text}");
    let members_row = text
        .lines()
        .find(|l| l.starts_with("| members | members-team | 99.9 % |"))
        .unwrap();
    let cells: Vec<&str> = members_row.split(" | ").collect();
    assert_eq!(cells[6], "2", "two incidents of members: {members_row}");
    assert_eq!(cells[8], "1 分", "RTO: {members_row}");
    for i in &incidents {
        assert!(
            text.contains(i["id"].as_str().unwrap()),
            "{} in {text}",
            i["id"]
        );
    }
    assert!(text.contains("| 严重 | 2 | 100 % | 100 % |"), "{text}");
    assert!(text.contains("<h2>服务等级</h2>"), "the HTML part: {text}");

    let msg = wait_for(
        "the weekly report in DingTalk",
        Duration::from_secs(30),
        || seen.lock().unwrap().first().cloned(),
    );
    assert_eq!(msg["msgtype"], "markdown");
    let md = msg["markdown"]["text"].as_str().unwrap();
    assert!(
        msg["markdown"]["title"]
            .as_str()
            .unwrap()
            .starts_with("服务周报 "),
        "{msg}"
    );
    assert!(md.contains(&summary), "{md}");
    assert!(md.contains("待评估规则"), "{md}");
    assert!(c.log().contains("scheduled report queued"));
}

/// An incident handed to a team (who are told, through the routing tree, on their own
/// receiver), then — resolved, and out of the collector's memory after a restart — its root
/// cause, impact and follow-ups recorded and carried into its report and the statistics.
#[test]
fn an_incident_is_assigned_its_owner_told_and_its_cause_and_follow_ups_recorded_after_it_resolved()
{
    let _g = serial();
    let team = tocsin_e2e::Webhook::start();
    let env = Stack::new(
        &[
            "  - name: team".to_string(),
            format!("    webhook: {{ url: \"{}\" }}", team.url),
            "route:".into(),
            "  receivers: [hook]".into(),
            "  routes:".into(),
            "    - match: { owner: members-team }".into(),
            "      receivers: [team]".into(),
            "    - match: { owner: review-team }".into(),
            "      receivers: [team]".into(),
            "incidents: { reopen_within: 1s }".into(),
            "services:".into(),
            "  - { name: members, owner: ops }".into(),
            String::new(),
        ]
        .join("\n"),
    );
    let mut c = env.collector("127.0.0.1:0", RULES);
    let t = now_ms();
    probe(&c, true, t - 3000);
    probe(&c, false, t - 2000);
    probe(&c, false, t - 1000);
    let inc = wait_for("the members incident", Duration::from_secs(20), || {
        incident_of(&c, "members")
    });
    assert_eq!(inc["owner"], "ops", "the service's owner first");
    let id = inc["id"].as_str().unwrap().to_string();
    // Assigns the incident and returns the `nth` notice of the team's receiver, which tells it.
    let assign = |c: &Proc, by: &str, owner: &str, nth: usize| {
        let (ok, _, err) = cli(
            c,
            &["incidents", "assign", &id, "--by", by, "--owner", owner],
        );
        assert!(ok, "{err}");
        let (_, notice) = team.wait_nth(nth, Duration::from_secs(15));
        assert_eq!(notice["tocsinReport"]["kind"], "notice", "{notice}");
        assert!(
            notice["tocsinReport"]["title"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{id} → {owner}: ServiceDown")),
            "{notice}"
        );
    };
    assign(&c, "alice", "members-team", 1);
    assert!(
        env.hook
            .all()
            .iter()
            .all(|(_, v)| v.get("tocsinReport").is_none()),
        "the notice goes to the team's receiver only"
    );

    // Resolved, then the collector restarts: the incident is only in the store now.
    probe(&c, true, now_ms());
    wait_for("resolved", Duration::from_secs(20), || {
        (incident_of(&c, "members")?["state"] == "resolved").then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert!(c.terminate().success());
    c = env.collector("127.0.0.1:0", RULES);
    // Handed on for its review: the new owner is told too, though it is only in the store.
    assign(&c, "bob", "review-team", 2);
    for args in [
        vec![
            "incidents",
            "cause",
            &id,
            "--by",
            "bob",
            "--category",
            "software",
            "a retry storm after the v2.4.1 deploy",
        ],
        vec![
            "incidents",
            "impact",
            &id,
            "--by",
            "bob",
            "members in east-1 could not log in for 3 minutes",
        ],
        vec![
            "incidents",
            "follow-up",
            &id,
            "--by",
            "bob",
            "--owner",
            "carol",
            "cap client retries",
        ],
        vec![
            "incidents",
            "follow-up",
            &id,
            "--by",
            "bob",
            "add a canary stage",
        ],
        vec![
            "incidents",
            "follow-up-state",
            &id,
            "1",
            "--by",
            "carol",
            "--state",
            "done",
        ],
    ] {
        let (ok, _, err) = cli(&c, &args);
        assert!(ok, "{args:?}: {err}");
    }
    let (ok, _, err) = cli(
        &c,
        &[
            "incidents",
            "cause",
            &id,
            "--by",
            "bob",
            "--category",
            "gremlins",
            "x",
        ],
    );
    assert!(
        !ok && err.contains("category \"gremlins\" is not one of change"),
        "{err}"
    );
    let (ok, _, err) = cli(
        &c,
        &[
            "incidents",
            "follow-up-state",
            &id,
            "9",
            "--by",
            "bob",
            "--state",
            "done",
        ],
    );
    assert!(!ok && err.contains("no follow-up #9"), "{err}");

    let inc = incident_of(&c, "members").unwrap();
    assert_eq!(inc["owner"], "review-team");
    assert_eq!(inc["root_cause"]["category"], "software");
    assert_eq!(inc["follow_ups"][0]["state"], "done");
    assert_eq!(inc["follow_ups"][1]["state"], "open");
    let kinds: Vec<&str> = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for k in ["assigned", "root_cause", "impact", "follow_up"] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    let report = reqwest::blocking::get(c.url(&format!("/api/v1/incidents/{id}/report")))
        .unwrap()
        .text()
        .unwrap();
    for line in [
        "| Owner | review-team |",
        "| Root cause | software: a retry storm after the v2.4.1 deploy |",
        "| Impact | members in east-1 could not log in for 3 minutes |",
        "- [x] #1 cap client retries (carol)",
        "- [ ] #2 add a canary stage",
    ] {
        assert!(report.contains(line), "{line} in {report}");
    }
    assert!(!report.contains("- [ ] Root cause: what broke"), "{report}");
    let stats = get(&c, "/api/v1/incidents/stats").unwrap();
    assert_eq!(stats["data"]["by_cause"]["software"], 1, "{stats}");
    assert_eq!(stats["data"]["follow_ups"]["done"], 1, "{stats}");
}

/// A service's recovery point objective against its real backup files: a backup older than
/// the RPO fires `RecoveryPointAtRisk`, a fresh one resolves it.
#[test]
fn a_backup_older_than_the_services_rpo_puts_its_recovery_point_at_risk() {
    let _g = serial();
    let env = Stack::new("services:\n  - { name: members, rpo: 60s }\n");
    let c = env.collector("127.0.0.1:0", RULES);
    let backups = env.p("backups");
    std::fs::create_dir(&backups).unwrap();
    let dump = format!("{backups}/members.dump");
    std::fs::write(&dump, b"dump").unwrap();
    let touch = |ago: &str| {
        assert!(std::process::Command::new("touch")
            .args(["-d", ago, &dump])
            .status()
            .unwrap()
            .success());
    };
    touch("3 minutes ago");
    let _agent = agent(&env, &c, "db-1", &format!("{{ name: members-dump, kind: file, target: \"{backups}/*.dump\", interval: 1s, file: {{}}, labels: {{ service: members }} }}"));
    let alert = wait_for(
        "RecoveryPointAtRisk firing",
        Duration::from_secs(30),
        || {
            c.alerts()
                .into_iter()
                .find(|a| a["labels"]["alertname"] == "RecoveryPointAtRisk")
        },
    );
    assert_eq!(alert["labels"]["service"], "members");
    let ratio = alert["value"].as_f64().unwrap();
    assert!(
        (2.9..4.0).contains(&ratio),
        "three minutes against one: {alert}"
    );
    touch("now");
    wait_for(
        "RecoveryPointAtRisk resolved",
        Duration::from_secs(30),
        || {
            c.alerts()
                .iter()
                .all(|a| a["labels"]["alertname"] != "RecoveryPointAtRisk")
                .then_some(())
        },
    );
}

/// A latency objective: a service that answers, but slowly, burns its latency budget and fires
/// the fast-burn alert for `sli="latency"`, while its availability budget stays whole.
#[test]
fn a_slow_service_burns_its_latency_budget_not_its_availability() {
    let _g = serial();
    let env = Stack::new(
        "services:\n  - { name: members, objective: 99.9%, latency: { threshold: 300ms, objective: 99% } }\n",
    );
    let svc = HttpServer::start(None);
    let c = env.collector("127.0.0.1:0", RULES);
    let _agent = agent(&env, &c, "app-1", &format!(
            "{{ name: members-web, kind: http, target: \"{}\", interval: 1s, timeout: 3s, labels: {{ service: members }} }}",
            svc.url("http")
        ));
    let latency_budget = "tocsin_slo_error_budget_remaining{service=\"members\",sli=\"latency\"}";
    wait_for(
        "a full latency budget while fast",
        Duration::from_secs(30),
        || newest(&c, latency_budget).filter(|(v, _)| *v == 1.0),
    );
    svc.set(tocsin_e2e::servers::Mode::Slow);
    let fast = wait_for("the latency fast burn", Duration::from_secs(60), || {
        c.alerts().into_iter().find(|a| {
            a["labels"]["alertname"] == "ErrorBudgetFastBurn" && a["labels"]["sli"] == "latency"
        })
    });
    assert_eq!(fast["labels"]["service"], "members");
    assert!(
        c.alerts().iter().all(|a| !(a["labels"]["alertname"]
            .as_str()
            .unwrap_or("")
            .starts_with("ErrorBudget")
            && a["labels"]["sli"] == "availability")),
        "answering slowly is not down"
    );
    let (avail, _) = newest(
        &c,
        "tocsin_slo_error_budget_remaining{service=\"members\",sli=\"availability\"}",
    )
    .unwrap();
    assert_eq!(avail, 1.0);
}
