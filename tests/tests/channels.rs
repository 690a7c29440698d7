//! Vendor channels against local stand-ins that check the documented wire format and verify the
//! signature with an implementation of their own (hmac + sha2 here; ring in tocsin).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use tocsin_e2e::{serial, wait_for, write_textfile, Proc};

/// What the DingTalk stand-in saw: query parameters and body of each request it accepted.
type Seen = Arc<Mutex<Vec<(std::collections::HashMap<String, String>, Value)>>>;

/// A DingTalk robot stand-in on 127.0.0.1: verifies access_token, timestamp and sign as the
/// vendor documents them; answers errcode 310000 on a bad signature, like DingTalk.
fn dingtalk_standin(secret: &'static str) -> (String, Seen, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let s2 = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/robot/send",
        axum::routing::post(
            move |q: axum::extract::Query<std::collections::HashMap<String, String>>,
                  body: axum::body::Bytes| {
                let seen = Arc::clone(&s2);
                async move {
                    let q = q.0;
                    let ok_token = q.get("access_token").map(String::as_str) == Some("tok123");
                    let ts: i64 = q.get("timestamp").and_then(|t| t.parse().ok()).unwrap_or(0);
                    let fresh = (tocsin_model::now_ms() - ts).abs() < 3_600_000;
                    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
                    mac.update(format!("{ts}\n{secret}").as_bytes());
                    let want = base64::engine::general_purpose::STANDARD
                        .encode(mac.finalize().into_bytes());
                    // axum has URL-decoded the query already.
                    let signed = q.get("sign") == Some(&want);
                    if !(ok_token && fresh && signed) {
                        return axum::Json(
                            serde_json::json!({"errcode": 310000, "errmsg": "sign not match"}),
                        );
                    }
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    seen.lock().unwrap().push((q, v));
                    axum::Json(serde_json::json!({"errcode": 0, "errmsg": "ok"}))
                }
            },
        ),
    );
    rt.spawn(async move { axum::serve(listener, app).await });
    (
        format!("http://{addr}/robot/send?access_token=tok123"),
        seen,
        rt,
    )
}

#[test]
fn dingtalk_markdown_signed_and_at_mentions() {
    let _g = serial();
    let (url, seen, _rt) = dingtalk_standin("SECtest-secret");
    let dir = tempfile::tempdir().unwrap();
    let p = |r: &str| dir.path().join(r).display().to_string();
    for d in ["rules", "tf"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    std::fs::write(
        p("rules/r.yaml"),
        "rules:\n  - name: DiskAlmostFull\n    expr: disk_used_percent\n    levels: { critical: \"> 90\" }\n    annotations: { summary: \"磁盘使用率 {{ value }}%\" }\n",
    )
    .unwrap();
    std::fs::write(
        p("c.yaml"),
        format!(
            "receivers:\n  - name: ding\n    dingtalk: {{ url: \"{url}\", secret: SECtest-secret, at_mobiles: [\"13800000000\"] }}\n  - name: ding-badsign\n    dingtalk: {{ url: \"{url}\", secret: SECwrong, locale: en }}\n"
        ),
    )
    .unwrap();
    write_textfile(&dir.path().join("tf"), "d.prom", "disk_used_percent 95\n");
    let c = Proc::start(
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
    );
    let _a = Proc::start(
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
            "db-1",
        ],
        std::path::Path::new(&p("a.log")),
    );
    let (q, body) = wait_for("a DingTalk message", Duration::from_secs(15), || {
        seen.lock().unwrap().first().cloned()
    });
    assert_eq!(q.get("access_token").map(String::as_str), Some("tok123"));
    assert_eq!(body["msgtype"], "markdown");
    let title = body["markdown"]["title"].as_str().unwrap();
    let text = body["markdown"]["text"].as_str().unwrap();
    assert_eq!(title, "【告警】严重 DiskAlmostFull");
    assert!(text.contains("- **摘要**：磁盘使用率 95.0%"), "{text}");
    assert!(text.contains("- **主机**：db-1"), "{text}");
    assert!(text.contains("@13800000000"), "{text}");
    assert_eq!(body["at"]["atMobiles"][0], "13800000000");
    assert_eq!(body["at"]["isAtAll"], false);

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
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "only the correctly signed message got through"
    );
}
