//! Chat channels against local stand-ins that check each vendor's documented wire format and
//! verify signatures with an implementation of their own (hmac + sha2 here; ring in tocsin).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use tocsin_e2e::{serial, serve, wait_for, write_textfile, Proc};

const DING_SECRET: &str = "SECtest-secret";
const FEISHU_SECRET: &str = "feishu-secret";

/// (path, query, body) of every request a stand-in accepted.
type Seen = Arc<Mutex<Vec<(String, HashMap<String, String>, Value)>>>;

fn hmac_b64(key: &[u8], msg: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(msg);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn fresh(ts_ms: i64) -> bool {
    (tocsin_model::now_ms() - ts_ms).abs() < 3_600_000
}

/// Answers like the vendors: DingTalk and WeCom `errcode`, Feishu `code`, Slack `ok`, with the
/// vendors' error codes when a signature or token does not check out.
async fn vendor(
    path: String,
    q: HashMap<String, String>,
    body: Value,
    seen: Seen,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let accept = |seen: &Seen| {
        seen.lock()
            .unwrap()
            .push((path.clone(), q.clone(), body.clone()))
    };
    if path == "/robot/send" {
        let ts: i64 = q.get("timestamp").and_then(|t| t.parse().ok()).unwrap_or(0);
        let want = hmac_b64(
            DING_SECRET.as_bytes(),
            format!("{ts}\n{DING_SECRET}").as_bytes(),
        );
        // The query is URL-decoded already.
        let ok = q.get("access_token").map(String::as_str) == Some("tok123")
            && fresh(ts)
            && q.get("sign") == Some(&want);
        if !ok {
            return axum::Json(json!({"errcode": 310000, "errmsg": "sign not match"}))
                .into_response();
        }
        accept(&seen);
        axum::Json(json!({"errcode": 0, "errmsg": "ok"})).into_response()
    } else if path == "/cgi-bin/webhook/send" {
        if q.get("key").map(String::as_str) != Some("wecom-key") {
            return axum::Json(json!({"errcode": 93000, "errmsg": "invalid webhook url"}))
                .into_response();
        }
        // The documented sizes: markdown content at most 4,096 bytes, text 2,048 (UTF-8).
        let over = |field: &Value, max: usize| field.as_str().is_some_and(|c| c.len() > max);
        if over(&body["markdown"]["content"], 4096) || over(&body["text"]["content"], 2048) {
            return axum::Json(json!({"errcode": 40058, "errmsg": "markdown.content exceed max length 4096. invalid Request Parameter"}))
                .into_response();
        }
        accept(&seen);
        axum::Json(json!({"errcode": 0, "errmsg": "ok"})).into_response()
    } else if path.starts_with("/open-apis/bot/v2/hook/") {
        let ts: i64 = body["timestamp"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let want = hmac_b64(format!("{ts}\n{FEISHU_SECRET}").as_bytes(), b"");
        if !(fresh(ts * 1000) && body["sign"].as_str() == Some(want.as_str())) {
            return axum::Json(json!({"code": 19021, "msg": "sign match fail or timestamp is not within one hour from current time"})).into_response();
        }
        accept(&seen);
        axum::Json(json!({"code": 0, "msg": "success"})).into_response()
    } else if path.starts_with("/services/") {
        if !body["text"].is_string() {
            return (axum::http::StatusCode::BAD_REQUEST, "invalid_payload").into_response();
        }
        accept(&seen);
        "ok".into_response()
    } else {
        axum::http::StatusCode::NOT_FOUND.into_response()
    }
}

fn standin() -> (String, Seen, tokio::runtime::Runtime) {
    let seen: Seen = Arc::default();
    let s2 = Arc::clone(&seen);
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri,
              q: axum::extract::Query<HashMap<String, String>>,
              body: axum::body::Bytes| {
            let seen = Arc::clone(&s2);
            async move {
                assert!(!body.is_empty(), "POST with a JSON body");
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                vendor(uri.path().to_string(), q.0, v, seen).await
            }
        },
    );
    let (addr, rt) = serve(app);
    (format!("http://{addr}"), seen, rt)
}

/// A collector with one rule and the given receivers, and an agent feeding it `metric` from a
/// textfile as host `host`. Returns the temp dir (kept alive), the collector and the agent.
fn stack(rule: &str, receivers: &str, metric: &str, host: &str) -> (tempfile::TempDir, Proc, Proc) {
    let dir = tempfile::tempdir().unwrap();
    let p = |r: &str| dir.path().join(r).display().to_string();
    for d in ["rules", "tf"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    std::fs::write(p("rules/r.yaml"), format!("rules:\n{rule}")).unwrap();
    write_textfile(&dir.path().join("tf"), "m.prom", metric);
    let c = collector(&dir, &format!("receivers:\n{receivers}"));
    let a = Proc::start(
        "tocsin-agent",
        &[
            "--collector",
            &c.url("/api/v1/write"),
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "1s",
            "--textfile-dir",
            &p("tf"),
            "--host",
            host,
        ],
        std::path::Path::new(&p("a.log")),
    );
    (dir, c, a)
}

/// A collector with `config` (collector.yaml) in `dir`, its data and `rules/` there too.
fn collector(dir: &tempfile::TempDir, config: &str) -> Proc {
    let p = |r: &str| dir.path().join(r).display().to_string();
    std::fs::write(p("c.yaml"), config).unwrap();
    Proc::start(
        "tocsin-collector",
        &[
            "--config",
            &p("c.yaml"),
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &p("data"),
            "--rules",
            &p("rules"),
        ],
        std::path::Path::new(&p("c.log")),
    )
}

const DISK_RULE: &str =
    "  - name: DiskAlmostFull\n    expr: disk_used_percent\n    levels: { critical: \"> 90\" }\n";

#[test]
fn chat_robots_get_their_documented_format_and_signatures() {
    let _g = serial();
    let (base, seen, _rt) = standin();
    let receivers = format!(
        "  - name: ding
    dingtalk: {{ url: \"{base}/robot/send?access_token=tok123\", secret: {DING_SECRET}, at_mobiles: [\"13800000000\"] }}
  - name: ding-badsign
    dingtalk: {{ url: \"{base}/robot/send?access_token=tok123\", secret: SECwrong, locale: en }}
  - name: wecom
    wecom: {{ url: \"{base}/cgi-bin/webhook/send?key=wecom-key\", at_mobiles: [\"13900000000\"] }}
  - name: feishu
    feishu: {{ url: \"{base}/open-apis/bot/v2/hook/abc-123\", secret: {FEISHU_SECRET} }}
  - name: slack
    slack: {{ url: \"{base}/services/T000/B000/XXXX\" }}
"
    );
    let rule =
        format!("{DISK_RULE}    annotations: {{ summary: \"磁盘使用率 {{{{ value }}}}%\" }}\n");
    let (_dir, c, _a) = stack(&rule, &receivers, "disk_used_percent 95\n", "db-1");
    let all = wait_for("every chat message", Duration::from_secs(15), || {
        let s = seen.lock().unwrap().clone();
        (s.len() >= 5).then_some(s)
    });
    let by = |prefix: &str| -> Vec<Value> {
        all.iter()
            .filter(|(p, _, _)| p.starts_with(prefix))
            .map(|(_, _, b)| b.clone())
            .collect()
    };

    let ding = by("/robot/send");
    assert_eq!(
        ding.len(),
        1,
        "only the correctly signed DingTalk message got through"
    );
    assert_eq!(ding[0]["msgtype"], "markdown");
    assert_eq!(ding[0]["markdown"]["title"], "【告警】严重 DiskAlmostFull");
    let text = ding[0]["markdown"]["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            "### 【告警】严重 DiskAlmostFull\n- 摘要：磁盘使用率 95.0%\n- 主机：db-1\n"
        ),
        "{text}"
    );
    assert!(text.ends_with(" @13800000000"), "{text}");
    assert_eq!(
        ding[0]["at"],
        json!({"atMobiles": ["13800000000"], "isAtAll": false})
    );

    let wecom = by("/cgi-bin/webhook/send");
    assert_eq!(
        wecom.len(),
        2,
        "markdown, then a text that mentions by mobile"
    );
    assert_eq!(wecom[0]["msgtype"], "markdown");
    assert!(wecom[0]["markdown"]["content"]
        .as_str()
        .unwrap()
        .contains("> 主机：db-1"));
    assert_eq!(wecom[1]["msgtype"], "text");
    assert_eq!(
        wecom[1]["text"]["mentioned_mobile_list"],
        json!(["13900000000"])
    );

    let feishu = by("/open-apis/bot/v2/hook/abc-123");
    assert_eq!(feishu.len(), 1);
    assert_eq!(feishu[0]["msg_type"], "text");
    assert!(feishu[0]["content"]["text"]
        .as_str()
        .unwrap()
        .starts_with("【告警】严重 DiskAlmostFull\n摘要：磁盘使用率 95.0%"));

    let slack = by("/services/T000/B000/XXXX");
    assert_eq!(slack.len(), 1);
    assert!(
        slack[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("*[FIRING] CRITICAL DiskAlmostFull*\n• Summary: 磁盘使用率 95.0%"),
        "{}",
        slack[0]["text"]
    );

    // The receiver with the wrong secret is refused (errcode 310000): counted as failed, retried.
    wait_for("a failed DingTalk attempt", Duration::from_secs(10), || {
        let m = reqwest::blocking::get(c.url("/metrics"))
            .unwrap()
            .text()
            .unwrap();
        m.contains("tocsin_notifications_total{receiver=\"ding-badsign\",result=\"failed\"}")
            .then_some(())
    });
    assert!(c.log().contains("errcode 310000"), "{}", c.log());
}

/// The alerts a real Alertmanager holds.
fn alertmanager_alerts(am: &tocsin_e2e::servers::Server) -> Vec<Value> {
    reqwest::blocking::get(format!("http://{}/api/v2/alerts", am.addr()))
        .and_then(|r| r.json::<Vec<Value>>())
        .unwrap_or_default()
}

#[test]
fn alerts_are_forwarded_to_a_real_alertmanager() {
    let _g = serial();
    let Some(am) = tocsin_e2e::servers::alertmanager() else {
        return;
    };
    let (dir, _c, _a) = stack(
        "  - name: QueueBacklog\n    expr: queue_depth\n    levels: { warning: \"> 100\" }\n    labels: { team: payments }\n    annotations: { summary: \"{{ value }} jobs waiting\" }\n",
        &format!("  - name: am\n    alertmanager: {{ url: \"http://{}\" }}\n", am.addr()),
        "queue_depth 500\n",
        "worker-7",
    );
    let got = wait_for("the alert in Alertmanager", Duration::from_secs(20), || {
        alertmanager_alerts(&am)
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "QueueBacklog")
    });
    assert_eq!(got["labels"]["host"], "worker-7");
    assert_eq!(got["labels"]["level"], "warning");
    assert_eq!(got["labels"]["team"], "payments");
    assert_eq!(got["annotations"]["summary"], "500.0 jobs waiting");
    assert_eq!(got["status"]["state"], "active");

    // Resolving in tocsin resolves it in Alertmanager.
    write_textfile(&dir.path().join("tf"), "m.prom", "queue_depth 3\n");
    wait_for(
        "the alert resolved in Alertmanager",
        Duration::from_secs(20),
        || {
            (!alertmanager_alerts(&am)
                .iter()
                .any(|a| a["labels"]["alertname"] == "QueueBacklog"))
            .then_some(())
        },
    );
}

#[test]
fn alertmanager_keeps_every_alert_of_a_group_active_while_tocsin_resends_them() {
    let _g = serial();
    let Some(am) = tocsin_e2e::servers::alertmanager() else {
        return;
    };
    // One group of two alerts, a route that would repeat only after 4h, and a lease of 4s:
    // without resends Alertmanager would end both after four seconds.
    let (dir, c, _a) = stack(
        "  - name: QueueBacklog\n    expr: queue_depth\n    levels: { warning: \"> 100\" }\n",
        &format!(
            "  - name: am\n    alertmanager: {{ url: \"http://{}\", resend_interval: 1s }}\nroute: {{ receivers: [am], group_by: [alertname], group_wait: 0s, repeat_interval: 4h }}\n",
            am.addr()
        ),
        "queue_depth{queue=\"a\"} 500\nqueue_depth{queue=\"b\"} 700\n",
        "worker-8",
    );
    let active = |am: &tocsin_e2e::servers::Server| -> Vec<String> {
        let mut q: Vec<String> = alertmanager_alerts(am)
            .iter()
            .filter(|a| {
                a["labels"]["alertname"] == "QueueBacklog" && a["status"]["state"] == "active"
            })
            .map(|a| {
                a["labels"]["queue"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        q.sort();
        q
    };
    wait_for(
        "both alerts in Alertmanager",
        Duration::from_secs(20),
        || (active(&am) == ["a", "b"]).then_some(()),
    );
    let since = Instant::now();
    while since.elapsed() < Duration::from_secs(10) {
        assert_eq!(active(&am), ["a", "b"], "after {:?}", since.elapsed());
        std::thread::sleep(Duration::from_millis(250));
    }
    // The resends keep Alertmanager in sync; the incident's timeline holds the first one only.
    let get = |path: &str| -> Value {
        reqwest::blocking::get(c.url(path))
            .and_then(|r| r.json())
            .unwrap()
    };
    let id = get("/api/v1/incidents")["data"]["incidents"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let kinds: Vec<String> = get(&format!("/api/v1/incidents/{id}"))["data"]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert!(kinds.iter().any(|k| k == "notified"), "{kinds:?}");
    assert!(!kinds.iter().any(|k| k == "repeated"), "{kinds:?}");
    // One resolves: it ends in Alertmanager, the other stays.
    write_textfile(
        &dir.path().join("tf"),
        "m.prom",
        "queue_depth{queue=\"a\"} 500\nqueue_depth{queue=\"b\"} 3\n",
    );
    wait_for(
        "b resolved in Alertmanager",
        Duration::from_secs(20),
        || (active(&am) == ["a"]).then_some(()),
    );
}

#[test]
fn email_reaches_a_real_smtp_server() {
    let _g = serial();
    let Some((smtp, maildir)) = tocsin_e2e::servers::smtp() else {
        return;
    };
    let receivers = format!(
        "  - name: mail\n    email: {{ smarthost: \"{}\", tls: none, from: \"tocsin <alerts@example.test>\", to: [\"oncall@example.test\", \"lead@example.test\"], locale: en }}\n",
        smtp.addr()
    );
    let rule =
        format!("{DISK_RULE}    annotations: {{ summary: \"disk {{{{ value }}}}% <full>\" }}\n");
    let (_dir, _c, _a) = stack(&rule, &receivers, "disk_used_percent 95\n", "db-1");
    let mail = wait_for("a delivered e-mail", Duration::from_secs(20), || {
        let e = std::fs::read_dir(&maildir).ok()?.flatten().next()?;
        std::fs::read_to_string(e.path()).ok()
    });
    assert!(
        mail.contains("Subject: [FIRING] CRITICAL DiskAlmostFull"),
        "{mail}"
    );
    assert!(
        mail.contains("To: oncall@example.test, lead@example.test"),
        "{mail}"
    );
    assert!(
        mail.contains("From: tocsin <alerts@example.test>"),
        "{mail}"
    );
    assert!(
        mail.contains("Content-Type: multipart/alternative"),
        "{mail}"
    );
    assert!(
        mail.contains("Summary: disk 95.0% <full>"),
        "text part: {mail}"
    );
    // The HTML part is quoted-printable: undo its soft line breaks before looking.
    let unfolded = mail.replace("=\n", "");
    assert!(
        unfolded.contains("<li>Summary: disk 95.0% &lt;full&gt;</li>"),
        "escaped HTML part: {mail}"
    );
    assert!(mail.contains("Host: db-1"), "{mail}");
}

/// Aliyun's RFC 3986 encoding, written again here.
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn aliyun_sms_is_signed_and_maps_alert_fields_onto_the_template() {
    let _g = serial();
    const SECRET: &str = "aliyun-secret";
    let got: Arc<Mutex<Vec<HashMap<String, String>>>> = Arc::default();
    let g2 = Arc::clone(&got);
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |form: axum::extract::Form<HashMap<String, String>>| {
            let got = Arc::clone(&g2);
            async move {
                let mut p = form.0;
                let sig = p.remove("Signature").unwrap_or_default();
                // Signature v1 as Aliyun documents it, computed with hmac + sha1 here.
                let mut keys: Vec<&String> = p.keys().collect();
                keys.sort();
                let canonical = keys.iter().map(|k| format!("{}={}", pct(k), pct(&p[*k]))).collect::<Vec<_>>().join("&");
                let to_sign = format!("POST&%2F&{}", pct(&canonical));
                let mut mac = Hmac::<sha1::Sha1>::new_from_slice(format!("{SECRET}&").as_bytes()).unwrap();
                mac.update(to_sign.as_bytes());
                let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
                if sig != want {
                    return axum::Json(json!({"Code": "SignatureDoesNotMatch", "Message": "Specified signature is not matched"}));
                }
                got.lock().unwrap().push(p);
                axum::Json(json!({"Code": "OK", "Message": "OK", "BizId": "900619746936498440^0", "RequestId": "F655A8D5-B967-440B-8683-DAD6FF8DE990"}))
            }
        }),
    );
    let (addr, _rt) = serve(app);

    let receivers = format!(
        "  - name: sms
    aliyun_sms:
      endpoint: \"http://{addr}/\"
      access_key_id: testId
      access_key_secret: {SECRET}
      sign_name: 运维告警
      template_code: SMS_71390007
      phone_numbers: [\"13800000000\", \"13900000000\"]
"
    );
    let (_dir, _c, _a) = stack(DISK_RULE, &receivers, "disk_used_percent 95\n", "db-1");
    let p = wait_for("a signed SendSms call", Duration::from_secs(15), || {
        got.lock().unwrap().first().cloned()
    });
    assert_eq!(p["Action"], "SendSms");
    assert_eq!(p["Version"], "2017-05-25");
    assert_eq!(p["AccessKeyId"], "testId");
    assert_eq!(p["SignatureMethod"], "HMAC-SHA1");
    assert_eq!(p["SignatureVersion"], "1.0");
    assert_eq!(p["SignName"], "运维告警");
    assert_eq!(p["TemplateCode"], "SMS_71390007");
    assert_eq!(p["PhoneNumbers"], "13800000000,13900000000");
    assert!(
        p["Timestamp"].ends_with('Z') && p["Timestamp"].len() == 20,
        "{}",
        p["Timestamp"]
    );
    let tp: Value = serde_json::from_str(&p["TemplateParam"]).unwrap();
    assert_eq!(
        tp,
        json!({"alert": "DiskAlmostFull", "host": "db-1", "level": "critical", "value": "95.0"})
    );
}

#[test]
fn tencent_sms_is_signed_with_tc3() {
    let _g = serial();
    const KEY: &str = "tencent-key";
    let got: Arc<Mutex<Vec<(axum::http::HeaderMap, Value)>>> = Arc::default();
    let g2 = Arc::clone(&got);
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let got = Arc::clone(&g2);
            async move {
                let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
                let sha = |b: &[u8]| {
                    use sha2::Digest;
                    hex(&sha2::Sha256::digest(b))
                };
                let mac = |k: &[u8], m: &str| {
                    let mut m2 = Hmac::<sha2::Sha256>::new_from_slice(k).unwrap();
                    m2.update(m.as_bytes());
                    m2.finalize().into_bytes().to_vec()
                };
                // TC3-HMAC-SHA256 as Tencent Cloud documents it.
                let ts: i64 = h("x-tc-timestamp").parse().unwrap_or(0);
                let date = {
                    let t = time::OffsetDateTime::from_unix_timestamp(ts).unwrap();
                    format!("{:04}-{:02}-{:02}", t.year(), t.month() as u8, t.day())
                };
                let canonical = format!(
                    "POST\n/\n\ncontent-type:{}\nhost:{}\n\ncontent-type;host\n{}",
                    h("content-type"),
                    h("host"),
                    sha(&body)
                );
                let to_sign = format!("TC3-HMAC-SHA256\n{ts}\n{date}/sms/tc3_request\n{}", sha(canonical.as_bytes()));
                let k = mac(&mac(&mac(format!("TC3{KEY}").as_bytes(), &date), "sms"), "tc3_request");
                let want = format!(
                    "TC3-HMAC-SHA256 Credential=AKIDtest/{date}/sms/tc3_request, SignedHeaders=content-type;host, Signature={}",
                    hex(&mac(&k, &to_sign))
                );
                let fresh = (tocsin_model::now_ms() / 1000 - ts).abs() < 300;
                if h("authorization") != want || !fresh || h("x-tc-action") != "SendSms" || h("x-tc-version") != "2021-01-11" {
                    return axum::Json(json!({"Response": {"Error": {"Code": "AuthFailure.SignatureFailure", "Message": "The provided credentials could not be validated."}, "RequestId": "x"}}));
                }
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                got.lock().unwrap().push((headers.clone(), v));
                axum::Json(json!({"Response": {"SendStatusSet": [{"Code": "Ok", "Message": "send success"}], "RequestId": "y"}}))
            }
        }),
    );
    let (addr, _rt) = serve(app);
    let receivers = format!(
        "  - name: sms
    tencent_sms:
      endpoint: \"http://{addr}/\"
      secret_id: AKIDtest
      secret_key: {KEY}
      app_id: \"1400006666\"
      sign_name: 运维告警
      template_id: \"449739\"
      phone_numbers: [\"+8613800000000\"]
"
    );
    let (_dir, _c, _a) = stack(DISK_RULE, &receivers, "disk_used_percent 95\n", "db-1");
    let (headers, body) = wait_for("a signed SendSms call", Duration::from_secs(15), || {
        got.lock().unwrap().first().cloned()
    });
    assert_eq!(headers["x-tc-region"], "ap-guangzhou");
    assert_eq!(
        body,
        json!({
            "PhoneNumberSet": ["+8613800000000"],
            "SmsSdkAppId": "1400006666",
            "SignName": "运维告警",
            "TemplateId": "449739",
            "TemplateParamSet": ["DiskAlmostFull", "db-1", "critical", "95.0"],
        })
    );
}

#[test]
fn a_generic_sms_gateway_gets_the_templated_body_and_headers() {
    let _g = serial();
    let got: Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>> = Arc::default();
    let g2 = Arc::clone(&got);
    let app = axum::Router::new().route(
        "/sms/send",
        axum::routing::put(move |headers: axum::http::HeaderMap, body: String| {
            let got = Arc::clone(&g2);
            async move {
                // Fails the first time, so the retry path and the success match are both used.
                let mut g = got.lock().unwrap();
                g.push((headers, body));
                if g.len() == 1 {
                    "status=busy".to_string()
                } else {
                    "status=queued id=42".to_string()
                }
            }
        }),
    );
    let (addr, _rt) = serve(app);
    let receivers = format!(
        r#"  - name: gateway
    sms_gateway:
      url: "http://{addr}/sms/send"
      method: PUT
      content_type: application/x-www-form-urlencoded
      headers: {{ X-Api-Key: k3y }}
      body: "to={{{{ phone_numbers|join(',') }}}}&msg={{{{ text|urlencode }}}}"
      phone_numbers: ["13800000000", "13900000000"]
      success_match: "status=queued"
      locale: en
    template:
      title: "{{{{ level_word }}}} {{{{ alertname }}}}"
      body: "{{% for a in alerts %}}{{{{ a.host }}}} {{{{ a.value }}}}{{% endfor %}}"
"#
    );
    let (_dir, c, _a) = stack(DISK_RULE, &receivers, "disk_used_percent 95\n", "db-1");
    let (headers, body) = wait_for("a delivered SMS", Duration::from_secs(20), || {
        got.lock().unwrap().get(1).cloned()
    });
    assert_eq!(headers["x-api-key"], "k3y");
    assert_eq!(headers["content-type"], "application/x-www-form-urlencoded");
    assert_eq!(
        body,
        "to=13800000000,13900000000&msg=CRITICAL%20DiskAlmostFull%0Adb-1%2095"
    );
    let first = got.lock().unwrap()[0].1.clone();
    assert_eq!(first, body, "the retry sends the same message");
    wait_for("the failure counted", Duration::from_secs(5), || {
        let m = reqwest::blocking::get(c.url("/metrics"))
            .unwrap()
            .text()
            .unwrap();
        m.contains("tocsin_notifications_total{receiver=\"gateway\",result=\"failed\"} 1")
            .then_some(())
    });
}

#[test]
fn a_label_cannot_add_a_link_or_a_line_to_a_chat_message() {
    let _g = serial();
    let (base, seen, _rt) = standin();
    let receivers = format!(
        "  - name: ding
    dingtalk: {{ url: \"{base}/robot/send?access_token=tok123\", secret: {DING_SECRET} }}
  - name: slack
    slack: {{ url: \"{base}/services/T000/B000/XXXX\" }}
"
    );
    let rule = format!(
        "{DISK_RULE}    annotations: {{ summary: \"disk {{{{ labels.mountpoint }}}} full\" }}\n"
    );
    // A textfile (anything an agent or a compromised host controls) puts a fake
    // acknowledgement line with a phishing link into a label value.
    let evil = r#"disk_used_percent{mountpoint="/data\n- 确认：[点此确认](https://evil.example/ack) <https://evil.example|ok>"} 95"#;
    let (_dir, _c, _a) = stack(&rule, &receivers, &format!("{evil}\n"), "db-1");
    let all = wait_for("both messages", Duration::from_secs(15), || {
        let s = seen.lock().unwrap().clone();
        (s.len() >= 2).then_some(s)
    });
    for (path, _, body) in &all {
        let text = body["markdown"]["text"]
            .as_str()
            .or(body["text"].as_str())
            .unwrap_or_default();
        assert!(
            text.contains("evil.example"),
            "{path}: the value is shown: {text}"
        );
        if path.starts_with("/robot/send") {
            // Markdown's link; Slack's is `<url|text>`.
            assert!(
                !text.contains("](https://evil"),
                "{path}: a markdown link: {text}"
            );
        }
        assert!(
            !text.contains("<https://evil"),
            "{path}: a Slack link: {text}"
        );
        assert!(
            !text
                .lines()
                .any(|l| l.trim_start_matches(['-', '•', ' ']).starts_with("确认：[")),
            "{path}: a line of the label's own: {text}"
        );
    }
}

/// `test-receiver` sends one test message through a receiver as configured — the stand-in
/// checks DingTalk's signature as it does for alerts — and says so; a wrong secret fails
/// with the vendor's refusal, exit 1, and the secret is not in what it prints.
#[test]
fn a_receiver_can_be_tried_before_an_incident_needs_it() {
    let _g = serial();
    let (base, seen, _rt) = standin();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("collector.yaml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir: {}\nreceivers:
  - name: ding
    dingtalk: {{ url: \"{base}/robot/send?access_token=tok123\", secret: {DING_SECRET} }}
  - name: ding-badsign
    dingtalk: {{ url: \"{base}/robot/send?access_token=tok123\", secret: SECwrong-secret }}
",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let try_receiver = |name: &str| {
        std::process::Command::new(tocsin_e2e::binary("tocsin-collector"))
            .args(["test-receiver", name, "--config", cfg.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = try_receiver("ding");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ding: test message sent"));
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    let text = got[0].2["markdown"]["text"].as_str().unwrap().to_string();
    assert!(
        text.contains("TocsinTest") && text.contains("tocsin 测试消息：接收方 ding 可用"),
        "{text}"
    );
    let bad = try_receiver("ding-badsign");
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("310000") || err.contains("sign not match"),
        "{err}"
    );
    assert!(
        !err.contains("SECwrong-secret") && !err.contains("tok123"),
        "{err}"
    );
    let unknown = try_receiver("nope");
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("configured: ding, ding-badsign"));
    assert_eq!(seen.lock().unwrap().len(), 1, "nothing else got through");
    assert!(!dir.path().join("data").exists(), "no database made");
}

/// A mass outage's notification group (300 alerts posted at once) reaches WeCom's stand-in,
/// which refuses markdown over the documented 4,096 bytes as WeCom does (errcode 40058): one
/// message that lists the first alerts and counts the rest, accepted on the first try.
#[test]
fn a_mass_outage_reaches_wecom_in_one_message_it_accepts() {
    let _g = serial();
    let (base, seen, _rt) = standin();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    let c = collector(
        &dir,
        &format!(
            "receivers:\n  - name: wecom\n    wecom: {{ url: \"{base}/cgi-bin/webhook/send?key=wecom-key\" }}\n\
             route:\n  receivers: [wecom]\n  group_by: [alertname]\n  group_wait: 1s\n\
             external_alerts: {{ token: outage-sender }}\n"
        ),
    );
    let alerts: Vec<Value> = (0..300)
        .map(|i| {
            json!({ "labels": { "alertname": "NodeDown", "severity": "critical",
                                "host": format!("node-{i:03}") },
                    "annotations": { "summary": "节点不可达" } })
        })
        .collect();
    let r = reqwest::blocking::Client::new()
        .post(c.url("/api/v2/alerts"))
        .bearer_auth("outage-sender")
        .json(&alerts)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let msg = wait_for("the outage's message", Duration::from_secs(20), || {
        let s = seen.lock().unwrap().clone();
        s.into_iter()
            .find(|(p, _, _)| p == "/cgi-bin/webhook/send")
            .map(|(_, _, b)| b)
    });
    let content = msg["markdown"]["content"].as_str().unwrap();
    assert!(
        content.starts_with("### 【告警】严重 NodeDown 等300条"),
        "{content}"
    );
    assert!(content.contains("主机：node-000"), "{content}");
    let listed = (0..300)
        .filter(|i| content.contains(&format!("主机：node-{i:03}")))
        .count();
    assert!(
        content.contains(&format!("另有 {} 条未列出（共 300 条）", 300 - listed)),
        "{content}"
    );
    // Counted once the reply is read: waited for, then no failed attempt before it.
    let count = |result: &str| {
        tocsin_e2e::metric(
            &c.url("/metrics"),
            &format!("tocsin_notifications_total{{receiver=\"wecom\",result=\"{result}\"}}"),
        )
    };
    wait_for("the delivery counted", Duration::from_secs(10), || {
        (count("delivered") == 1.0).then_some(())
    });
    assert_eq!(count("failed"), 0.0, "accepted on the first try");
}
