//! A real headless Chromium driven over W3C WebDriver (Debian's `chromium` and
//! `chromium-driver`): enough of the protocol for the console tests — open a page, find
//! elements by CSS, click, type, run a script, take a screenshot.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The W3C key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::blocking::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium window of `width`×`height`; `None` when they
    /// are not installed (outside CI; in CI that fails).
    pub fn start(width: u32, height: u32) -> Option<Browser> {
        if !crate::require_tool("chromedriver") || !crate::require_tool("chromium") {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .no_proxy()
            .build()
            .expect("client");
        let base = format!("http://127.0.0.1:{port}");
        crate::wait_for("chromedriver", Duration::from_secs(20), || {
            http.get(format!("{base}/status")).send().ok()
        });
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-extensions",
                    "--hide-scrollbars", "--force-device-scale-factor=1",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        } } });
        let mut b = Browser {
            driver,
            base,
            http,
            _profile: profile,
        };
        let r = b.call("POST", "/session", Some(caps));
        let id = r["sessionId"]
            .as_str()
            .or(r["value"]["sessionId"].as_str())
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_string();
        b.base = format!("{}/session/{id}", b.base);
        Some(b)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body.unwrap_or(json!({}))),
        };
        let r = req
            .send()
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        r.json().unwrap_or(Value::Null)
    }

    fn value(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let v = self.call(method, path, body);
        match v["value"].get("error") {
            Some(e) => Err(format!(
                "{e}: {}",
                v["value"]["message"].as_str().unwrap_or("")
            )),
            None => Ok(v["value"].clone()),
        }
    }

    pub fn goto(&self, url: &str) {
        self.value("POST", "/url", Some(json!({ "url": url })))
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// Makes the page read its clock in `zone` (an IANA name; empty: the machine's again).
    pub fn time_zone(&self, zone: &str) {
        self.value(
            "POST",
            "/goog/cdp/execute",
            Some(
                json!({ "cmd": "Emulation.setTimezoneOverride", "params": { "timezoneId": zone } }),
            ),
        )
        .unwrap_or_else(|e| panic!("time zone {zone:?}: {e}"));
    }

    /// Runs `script` (a function body; `arguments` as given) in the page; its return value.
    pub fn eval(&self, script: &str, args: Value) -> Value {
        self.value(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// The elements matching `css` now.
    pub fn find_all(&self, css: &str) -> Vec<Element<'_>> {
        self.value(
            "POST",
            "/elements",
            Some(json!({ "using": "css selector", "value": css })),
        )
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e[ELEMENT].as_str())
        .map(|id| Element {
            b: self,
            id: id.to_string(),
        })
        .collect()
    }

    /// The first element matching `css`, waiting up to `timeout` for it.
    pub fn wait(&self, css: &str, timeout: Duration) -> Element<'_> {
        crate::wait_for(&format!("element {css}"), timeout, || {
            self.find_all(css).into_iter().next()
        })
    }

    /// Waits until `script` (a function body) returns something truthy; returns it.
    pub fn wait_true(&self, what: &str, timeout: Duration, script: &str) -> Value {
        crate::wait_for(what, timeout, || {
            let v = self.eval(script, json!([]));
            let truthy =
                !matches!(v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            truthy.then_some(v)
        })
    }

    /// Waits for the console to have rendered page `name` (its `data-ready` mark).
    pub fn ready(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.eval("return document.body.dataset.ready || ''", json!([]));
            if v == json!(name) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "page {name} not ready (now {v}); text: {}",
                self.text("body")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn text(&self, css: &str) -> String {
        self.find_all(css)
            .first()
            .map(|e| e.text())
            .unwrap_or_default()
    }

    /// A PNG of the viewport, written to `path`.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let v = self.value("GET", "/screenshot", None).expect("screenshot");
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64"))
            .expect("PNG");
        std::fs::write(path, png).expect("write screenshot");
    }

    /// A Chrome DevTools Protocol command (e.g. `Network.setCacheDisabled`).
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.value(
            "POST",
            "/goog/cdp/execute",
            Some(json!({ "cmd": cmd, "params": params })),
        )
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
    }

    /// Resizes the window (CSS pixels).
    pub fn resize(&self, width: u32, height: u32) {
        self.value(
            "POST",
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .expect("resize");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.http.delete(&self.base).send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

pub struct Element<'a> {
    b: &'a Browser,
    id: String,
}

impl Element<'_> {
    pub fn click(&self) {
        self.b
            .value("POST", &format!("/element/{}/click", self.id), None)
            .unwrap_or_else(|e| panic!("click: {e}"));
    }

    pub fn clear(&self) {
        self.b
            .value("POST", &format!("/element/{}/clear", self.id), None)
            .unwrap_or_else(|e| panic!("clear: {e}"));
    }

    pub fn type_text(&self, text: &str) {
        self.b
            .value(
                "POST",
                &format!("/element/{}/value", self.id),
                Some(json!({ "text": text })),
            )
            .unwrap_or_else(|e| panic!("type: {e}"));
    }

    pub fn text(&self) -> String {
        self.b
            .value("GET", &format!("/element/{}/text", self.id), None)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    pub fn attr(&self, name: &str) -> Option<String> {
        self.b
            .value(
                "GET",
                &format!("/element/{}/attribute/{name}", self.id),
                None,
            )
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
    }
}
