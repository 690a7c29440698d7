//! The web console in a real headless Chromium: signing in, a firing alert appearing without a
//! reload, acknowledging it, silencing alerts like it and expiring the silence, an incident's
//! page and report, a service's error budget and the changes recorded, a read-only session that
//! can change nothing, and screenshots of every page
//! (zh-CN and English, desktop and phone) for docs/CONSOLE.md.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use tocsin_e2e::browser::Browser;
use tocsin_e2e::{serial, wait_for, Proc, Stack};
use tocsin_model::{Labels, Sample, SeriesSamples};

const ADMIN: &str = "adm1n-c0nsole";
const READ: &str = "r3ad-c0nsole";
const T: Duration = Duration::from_secs(20);

const RULES: &str = r#"
rules:
  - name: ConsoleDiskBusy
    expr: console_disk_busy_ratio * 100
    levels:
      warning: { when: "> 80", recover: "< 70" }
      critical: { when: "> 95" }
    labels: { category: disk, service: shop }
    annotations:
      summary: "Disk {{ value|round(1) }}% busy on {{ host }}"
  - name: ConsoleLatencyOdd
    expr: console_latency_seconds
    dynamic: { min_history: 20 }
    labels: { category: network }
"#;

/// Twenty seconds of a steady latency, then a jump: the dynamic rule learns the first and fires
/// on the second.
fn push_latency(c: &Proc) {
    let now = tocsin_model::now_ms();
    let mut samples: Vec<Sample> = (0..40)
        .map(|i| Sample {
            timestamp_ms: now - (40 - i) * 1000,
            value: 0.010 + 0.0005 * ((i * 7 % 5) as f64),
        })
        .collect();
    samples.push(Sample {
        timestamp_ms: now,
        value: 0.5,
    });
    let s = SeriesSamples {
        labels: Labels::from_pairs([("__name__", "console_latency_seconds"), ("host", "web-2")]),
        samples,
    };
    let auth = format!("Bearer {ADMIN}");
    let r = c.remote_write(&[s], &[("Authorization", &auth)]);
    assert!(r.status().is_success(), "{}", r.status());
}

fn push(c: &Proc, host: &str, value: f64) {
    let s = SeriesSamples {
        labels: Labels::from_pairs([("__name__", "console_disk_busy_ratio"), ("host", host)]),
        samples: vec![Sample {
            timestamp_ms: tocsin_model::now_ms(),
            value,
        }],
    };
    let auth = format!("Bearer {ADMIN}");
    let r = c.remote_write(&[s], &[("Authorization", &auth)]);
    assert!(r.status().is_success(), "{}", r.status());
}

fn push_probe(c: &Proc) {
    let s = SeriesSamples {
        labels: Labels::from_pairs([
            ("__name__", "probe_success"),
            ("probe", "members-web"),
            ("service", "members"),
            ("host", "web-1"),
        ]),
        samples: vec![Sample {
            timestamp_ms: tocsin_model::now_ms(),
            value: 1.0,
        }],
    };
    let auth = format!("Bearer {ADMIN}");
    let r = c.remote_write(&[s], &[("Authorization", &auth)]);
    assert!(r.status().is_success(), "{}", r.status());
}

fn api(c: &Proc, path: &str) -> Value {
    reqwest::blocking::Client::new()
        .get(c.url(path))
        .bearer_auth(ADMIN)
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn sign_in(b: &Browser, base: &str, user: &str, credential: &str) {
    b.goto(&format!("{base}/#/login"));
    b.ready("login");
    b.wait("[data-test=user]", T).type_text(user);
    b.wait("[data-test=credential]", T).type_text(credential);
    b.wait("[data-test=login] button[type=submit]", T).click();
    b.ready("overview");
}

/// `fetch` from the page (its cookie, and the CSRF header only when `csrf`): the status.
fn page_fetch(b: &Browser, method: &str, path: &str, body: Value, csrf: bool) -> u64 {
    b.eval(
        r#"const [m, p, body, csrf] = arguments;
           const headers = {'Content-Type': 'application/json'};
           if (csrf) headers['X-CSRF-Token'] = window.__csrf;
           return fetch(p, {method: m, headers, credentials: 'same-origin', body: m === 'GET' ? undefined : JSON.stringify(body)})
             .then(r => r.status);"#,
        json!([method, path, body, csrf]),
    )
    .as_u64()
    .expect("status")
}

fn screenshots_dir() -> PathBuf {
    let d = std::env::var("TOCSIN_SCREENSHOTS").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&d).expect("screenshot dir");
    d
}

#[test]
fn the_console_serves_the_people_on_call() {
    let _g = serial();
    let s = Stack::new(&format!(
        "admin_token: {ADMIN}\nread_token: {READ}\nhost_down_after: 2s\n\
         services:\n  - {{ name: members, objective: 99.9%, window: 30d }}\n"
    ));
    std::fs::create_dir(s.dir.path().join("rules")).unwrap();
    std::fs::write(s.dir.path().join("rules/console.yaml"), RULES).unwrap();
    let c = s.collector("127.0.0.1:0", &s.p("rules"));
    let base = c.url("");
    let Some(b) = Browser::start(1280, 900) else {
        return;
    };

    // The page itself is served to anyone, with a policy that runs nothing but its own code.
    let page = reqwest::blocking::get(c.url("/")).unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    // ... but nothing of the API without signing in.
    assert_eq!(
        reqwest::blocking::get(c.url("/api/v1/alerts"))
            .unwrap()
            .status(),
        401
    );

    // A wrong credential is refused, and says so.
    b.goto(&format!("{base}/"));
    b.ready("login");
    b.wait("[data-test=user]", T).type_text("mallory");
    b.wait("[data-test=credential]", T).type_text("guess");
    b.wait("[data-test=login] button[type=submit]", T).click();
    let err = b.wait("[data-test=login-error]", T).text();
    assert!(err.contains("凭据错误"), "{err}");
    assert!(b.find_all("[data-nav]").is_empty(), "no page behind it");

    sign_in(&b, &base, "alice", ADMIN);
    // The overview says whether the configuration file is what runs.
    let panel = b.wait("[data-test=collector]", T).text();
    assert!(
        panel.contains("配置") && panel.contains("起生效"),
        "{panel}"
    );
    // A host heard from once, decommissioned: down two seconds later.
    push(&c, "retired-1", 0.1);
    // A probe of the service with an objective, up: its error budget is derived from here on.
    push_probe(&c);
    // Session cookie: HttpOnly, so the page's script cannot read it.
    assert_eq!(b.eval("return document.cookie", json!([])), json!(""));

    // A firing alert appears without a reload.
    push(&c, "web-1", 0.2);
    b.find_all("[data-nav=alerts]")[0].click();
    b.ready("alerts");
    assert!(b.find_all("[data-rule=ConsoleDiskBusy]").is_empty());
    b.eval("window.__marker = 'same page'", json!([]));
    for _ in 0..2 {
        push(&c, "web-1", 0.91);
        std::thread::sleep(Duration::from_millis(300));
    }
    let row = b.wait("tr[data-rule=ConsoleDiskBusy]", T);
    assert!(row.text().contains("web-1"), "{}", row.text());
    assert_eq!(
        b.eval("return window.__marker", json!([])),
        json!("same page"),
        "no reload"
    );
    assert!(b.text("tr[data-rule=ConsoleDiskBusy]").contains("警告"));
    let alert_id = row.attr("data-alert").unwrap();
    screenshot_set(&b, &base, &format!("#/alert/{alert_id}"), "alert", "alert");

    // Acknowledge it from its page; the incident's timeline gains the entry.
    b.goto(&format!("{base}/#/alert/{alert_id}"));
    b.ready("alert");
    b.wait("[data-test=chart]", T);
    assert!(
        !b.find_all("[data-threshold=warning]").is_empty(),
        "the chart shows the thresholds"
    );
    b.wait("[data-test=ack-form] input[name=comment]", T)
        .type_text("looking at it");
    b.wait("[data-test=ack]", T).click();
    let acked = b.wait("[data-test=acked-by]", T).text();
    assert!(
        acked.contains("alice") && acked.contains("looking at it"),
        "{acked}"
    );
    // Its level history, from its incident's timeline.
    b.ready("alert");
    let history = b.text("[data-test=level-history]");
    assert!(
        history.contains("ConsoleDiskBusy fired at warning")
            && history.contains("acknowledged by alice"),
        "{history}"
    );
    let incident = wait_for("the incident", T, || {
        api(&c, "/api/v1/incidents")["data"]["incidents"]
            .as_array()
            .and_then(|l| l.first().cloned())
    });
    let inc_id = incident["id"].as_str().unwrap().to_string();
    b.goto(&format!("{base}/#/incidents"));
    b.ready("incidents");
    b.wait(&format!("tr[data-incident='{inc_id}']"), T).click();
    b.ready("incident");
    let timeline = b.wait("[data-test=timeline]", T);
    wait_for("the acknowledgement on the timeline", T, || {
        let t = timeline.text();
        (t.contains("acknowledged") && t.contains("alice")).then_some(())
    });
    // Seconds in every time.
    let first = b.text("[data-test=timeline] time");
    assert!(first.len() == 19 && first.as_bytes()[16] == b':', "{first}");
    // A note, and the report downloads with everything in it.
    b.wait("[data-test=note-form] textarea", T)
        .type_text("disk replaced at 03:10");
    b.wait("[data-test=note-form] button", T).click();
    let on_timeline = |what: &str, text: &str| {
        wait_for(what, T, || {
            b.text("[data-test=timeline]").contains(text).then_some(())
        })
    };
    on_timeline("the note", "disk replaced at 03:10");
    // Feedback on its alert, from the console: counted for the rule.
    b.eval(
        "document.querySelector('[data-test=feedback-form] select[name=verdict]').value = 'noise'",
        json!([]),
    );
    b.wait("[data-test=feedback-form] input[name=comment]", T)
        .type_text("the disk is fine");
    b.wait("[data-test=feedback-form] button", T).click();
    on_timeline(
        "the feedback on the timeline",
        "said noise of ConsoleDiskBusy",
    );
    let stats = api(&c, "/api/v1/incidents/stats");
    assert_eq!(
        stats["data"]["rules_to_review"][0]["rule"], "ConsoleDiskBusy",
        "{stats}"
    );
    let href = b.wait("[data-test=report]", T).attr("href").unwrap();
    let report = b.eval(
        "return fetch(arguments[0], {credentials: 'same-origin'}).then(r => r.text())",
        json!([href]),
    );
    let report = report.as_str().unwrap();
    assert!(
        report.contains("ConsoleDiskBusy") && report.contains("disk replaced at 03:10"),
        "{report}"
    );
    screenshot_set(
        &b,
        &base,
        &format!("#/incident/{inc_id}"),
        "incident",
        "incident",
    );

    // Silence alerts like it: the form is filled from the alert, the preview lists it.
    b.goto(&format!("{base}/#/alert/{alert_id}"));
    b.ready("alert");
    b.wait("[data-test=silence-like]", T).click();
    b.ready("silences");
    b.wait(&format!("[data-test=preview] [data-alert='{alert_id}']"), T);
    b.wait("[data-test=silence-comment]", T)
        .type_text("disk swap on web-1");
    b.wait("[data-test=silence-create]", T).click();
    let silence = b.wait("tr[data-silence][data-state=active]", T);
    let silence_id = silence.attr("data-silence").unwrap();
    screenshot_set(&b, &base, "#/silences", "silences", "silences");
    b.goto(&format!("{base}/#/alerts"));
    b.ready("alerts");
    wait_for("the alert marked silenced", T, || {
        b.text("tr[data-rule=ConsoleDiskBusy]")
            .contains("已静默")
            .then_some(())
    });
    // Expire it: the mark goes.
    b.goto(&format!("{base}/#/silences"));
    b.ready("silences");
    b.wait(
        &format!("tr[data-silence='{silence_id}'] [data-test=expire]"),
        T,
    )
    .click();
    wait_for("the silence gone", T, || {
        b.find_all(&format!(
            "tr[data-silence='{silence_id}'][data-state=active]"
        ))
        .is_empty()
        .then_some(())
    });
    b.goto(&format!("{base}/#/alerts"));
    b.ready("alerts");
    wait_for("the alert no longer silenced", T, || {
        let t = b.text("tr[data-rule=ConsoleDiskBusy]");
        (!t.is_empty() && !t.contains("已静默")).then_some(())
    });

    // A weekly maintenance window made in the console keeps the browser's wall clock: its
    // time zone goes with it, not today's offset (which would move it an hour at the next
    // change of daylight saving time).
    b.time_zone("Europe/Berlin");
    b.goto(&format!("{base}/#/silences"));
    b.ready("silences");
    b.eval(
        "const f = document.querySelector('[data-test=silence-form]');
         [...f.querySelectorAll('button.plain')].find((x) => x.type === 'button').click();
         const row = [...f.querySelectorAll('div.row')].find((r) => r.querySelector('select'));
         const [name, value] = row.querySelectorAll('input');
         name.value = 'alertname'; value.value = 'ConsoleWeeklyBackup';
         f.recurring.checked = true; f.days.value = 'sun'; f.comment.value = 'weekly backup';
         f.querySelector('[data-test=silence-create]').click();",
        json!([]),
    );
    let row = wait_for("the weekly window listed", T, || {
        b.find_all("tr[data-silence]")
            .into_iter()
            .map(|r| r.text())
            .find(|t| t.contains("ConsoleWeeklyBackup"))
    });
    assert!(row.contains("sun 02:00–04:00 Europe/Berlin"), "{row}");
    b.time_zone("");

    // A dynamic rule's alert charts the series in the band it learned.
    push_latency(&c);
    b.goto(&format!("{base}/#/alerts"));
    b.ready("alerts");
    let dynamic = b.wait("tr[data-rule=ConsoleLatencyOdd]", T);
    let dynamic_id = dynamic.attr("data-alert").unwrap();
    b.goto(&format!("{base}/#/alert/{dynamic_id}"));
    b.ready("alert");
    b.wait("[data-test=band]", T);
    screenshot_set(
        &b,
        &base,
        &format!("#/alert/{dynamic_id}"),
        "alert-dynamic",
        "alert",
    );

    // A state change with the cookie but without the CSRF token is refused.
    assert_eq!(
        page_fetch(
            &b,
            "POST",
            "/api/v1/silences",
            json!({"matchers": [{"name": "host", "value": "x"}], "duration": "1h", "createdBy": "x", "comment": "x"}),
            false
        ),
        403
    );

    // The audit log says who did what.
    b.goto(&format!("{base}/#/audit"));
    b.ready("audit");
    let audit = b.text("[data-test=audit]");
    for what in [
        "POST /api/v1/alerts/",
        "POST /api/v1/silences",
        "DELETE /api/v1/silences/",
        "sign in",
    ] {
        assert!(audit.contains(what), "{what} in {audit}");
    }
    assert!(audit.contains("alice (console, admin)"), "{audit}");
    assert!(!audit.contains(ADMIN), "no credential in the audit log");

    // Service levels: the objective and its budget, and a change recorded by a pipeline, its
    // text shown as text and its link a link.
    let change = reqwest::blocking::Client::new()
        .post(c.url("/api/v1/changes"))
        .bearer_auth(ADMIN)
        .json(&json!({"service": "members", "summary": "v2 <img src=x onerror=alert(1)>", "by": "ci", "link": "https://ci.example/run/42"}))
        .send()
        .unwrap();
    assert!(change.status().is_success(), "{}", change.status());
    b.find_all("[data-nav=slo]")[0].click();
    b.ready("slo");
    let row = "[data-test=slo] tr[data-service=members][data-sli=availability]";
    let text = b.wait(row, T).text();
    assert!(
        text.contains("99.90 %") && text.contains("可用性"),
        "{text}"
    );
    assert_eq!(b.text(&format!("{row} [data-test=budget]")), "100.0 %");
    assert_eq!(b.text(&format!("{row} [data-test=conditions]")), "—");
    // A badge's text stands out from its background (a green "ok" badge once had green text).
    assert_eq!(
        b.eval(
            "return [...document.querySelectorAll('.badge')].filter(x => { const s = getComputedStyle(x); return s.color === s.backgroundColor; }).length",
            json!([])
        ),
        json!(0)
    );
    let ch = b.text("[data-test=changes]");
    assert!(
        ch.contains("v2 <img src=x onerror=alert(1)>") && ch.contains("ci"),
        "{ch}"
    );
    assert!(b.find_all("[data-test=changes] img").is_empty());
    assert_eq!(
        b.eval(
            "return [...document.querySelectorAll('[data-test=changes] a')].map(a => a.href)",
            json!([])
        ),
        json!(["https://ci.example/run/42"])
    );

    // The weekly report as the collector sends it, in the console's language.
    b.find_all("[data-nav=reports]")[0].click();
    b.ready("reports");
    b.find_all("[data-report=weekly]")[0].click();
    b.wait("[data-report=weekly].on", T);
    b.ready("reports");
    let sent = reqwest::blocking::Client::new()
        .get(c.url("/api/v1/reports/weekly?locale=zh-CN"))
        .bearer_auth(ADMIN)
        .send()
        .and_then(|r| r.text())
        .unwrap();
    let shown = b.text("[data-test=report]");
    let title = |s: &str| {
        s.lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string()
    };
    assert!(
        !title(&sent).is_empty() && title(&shown) == title(&sent),
        "{shown}\n---\n{sent}"
    );
    assert!(shown.contains("members"), "{shown}");

    // The remaining pages, for the screenshots.
    for (hash, name, ready) in [
        ("#/", "overview", "overview"),
        ("#/alerts", "alerts", "alerts"),
        ("#/incidents", "incidents", "incidents"),
        ("#/slo", "slo", "slo"),
        ("#/reports?kind=weekly", "reports", "reports"),
        ("#/hosts", "hosts", "hosts"),
        ("#/probes", "probes", "probes"),
        ("#/rules", "rules", "rules"),
        ("#/tokens", "tokens", "tokens"),
        ("#/notifications", "notifications", "notifications"),
        ("#/audit", "audit", "audit"),
    ] {
        screenshot_set(&b, &base, hash, name, ready);
    }

    // The decommissioned host, down, is taken out of service from its row: it leaves the list.
    b.goto(&format!("{base}/#/hosts"));
    b.ready("hosts");
    b.wait("tr[data-host=retired-1] [data-test=retire]", T)
        .click();
    wait_for("the host gone from the list", T, || {
        b.find_all("tr[data-host=retired-1]")
            .is_empty()
            .then_some(())
    });
    assert!(api(&c, "/api/v1/hosts")["data"]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["host"] != "retired-1"));

    // Dark, as the system asks for it.
    b.cdp(
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]}),
    );
    b.goto(&format!("{base}/?dark#/alert/{alert_id}"));
    b.ready("alert");
    let bg = b.eval(
        "return getComputedStyle(document.body).backgroundColor",
        json!([]),
    );
    assert_eq!(bg, json!("rgb(21, 23, 27)"), "dark background");
    b.screenshot(&screenshots_dir().join("alert-zh-CN-desktop-dark.png"));
    b.cdp("Emulation.setEmulatedMedia", json!({"features": []}));

    // Signed out, then in with the read credential: nothing to press, and the API refuses.
    b.goto(&format!("{base}/#/"));
    b.ready("overview");
    b.wait("[data-test=signout]", T).click();
    b.ready("login");
    sign_in(&b, &base, "bob", READ);
    assert!(b.text("[data-test=whoami]").contains("只读"));
    b.goto(&format!("{base}/#/alert/{alert_id}"));
    b.ready("alert");
    assert!(b.find_all("[data-test=ack-form]").is_empty());
    assert!(b.find_all("[data-test=silence-like]").is_empty());
    b.goto(&format!("{base}/#/silences"));
    b.ready("silences");
    assert!(b.find_all("[data-test=silence-form]").is_empty());
    b.goto(&format!("{base}/#/incident/{inc_id}"));
    b.ready("incident");
    assert!(b.find_all("[data-test=incident-resolve]").is_empty());
    assert!(b.find_all("[data-test=note-form]").is_empty());
    assert!(b.find_all("[data-nav=tokens]").is_empty());
    b.goto(&format!("{base}/#/hosts"));
    b.ready("hosts");
    assert!(
        b.find_all("[data-test=retire]").is_empty(),
        "nothing to retire read-only"
    );
    // Even with its CSRF token, the read session cannot change anything.
    b.eval(
        "return fetch('/api/v1/session').then(r => r.json()).then(j => { window.__csrf = j.data.csrf; return 1; })",
        json!([]),
    );
    assert_eq!(
        page_fetch(
            &b,
            "POST",
            &format!("/api/v1/incidents/{inc_id}/resolve"),
            json!({"by": "bob"}),
            true
        ),
        403
    );
    assert_eq!(
        page_fetch(
            &b,
            "POST",
            &format!("/api/v1/alerts/{alert_id}/ack"),
            json!({"by": "bob"}),
            true
        ),
        403
    );
    assert_ne!(
        api(&c, &format!("/api/v1/incidents/{inc_id}"))["data"]["state"],
        json!("resolved")
    );
}

/// Screenshots of one page: zh-CN and English, desktop (1280 px) and phone (390 px) widths.
fn screenshot_set(b: &Browser, base: &str, hash: &str, name: &str, ready: &str) {
    let dir = screenshots_dir();
    for lang in ["zh-CN", "en"] {
        for (form, w, h) in [("desktop", 1280, 900), ("phone", 390, 844)] {
            b.resize(w, h);
            b.eval(
                "localStorage.setItem('tocsin.lang', arguments[0])",
                json!([lang]),
            );
            b.goto(&format!("{base}/?{lang}{form}{hash}"));
            b.ready(ready);
            b.screenshot(&dir.join(format!("{name}-{lang}-{form}.png")));
        }
    }
    b.resize(1280, 900);
    b.eval("localStorage.setItem('tocsin.lang', 'zh-CN')", json!([]));
}
