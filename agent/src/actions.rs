//! Remediation on this host: polls the collector for action requests, checks each against this
//! agent's own allowlist, runs it (argv, no shell, process group killed at its timeout, output
//! bounded) and reports the result. Each request id is written to `STATE_DIR/actions.done`
//! before the action starts, so a request delivered again — after a crash, or replayed by
//! anyone — never runs twice.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tocsin_config::agent::AgentConfig;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::Telemetry;

/// How long an action's result is offered to a collector that cannot take it yet.
const RESULT_RETRY_FOR: Duration = Duration::from_secs(600);
const RESULT_BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
struct Poll {
    data: PollData,
}

#[derive(Debug, Deserialize)]
struct PollData {
    actions: Vec<Wanted>,
}

#[derive(Debug, Deserialize)]
struct Wanted {
    id: String,
    action: String,
    #[serde(default)]
    params: BTreeMap<String, String>,
}

/// The ids of requests that have run here, kept on disk.
struct Done {
    path: PathBuf,
    ids: HashSet<String>,
}

impl Done {
    fn open(dir: &std::path::Path) -> std::io::Result<Done> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("actions.done");
        let ids = match std::fs::read_to_string(&path) {
            Ok(t) => t.lines().map(str::to_string).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashSet::new(),
            Err(e) => return Err(e),
        };
        Ok(Done { path, ids })
    }

    /// Records `id` durably; false when it was recorded before.
    fn claim(&mut self, id: &str) -> std::io::Result<bool> {
        if self.ids.contains(id) {
            return Ok(false);
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(format!("{id}\n").as_bytes())?;
        f.sync_data()?;
        self.ids.insert(id.to_string());
        Ok(true)
    }
}

/// The collector's base URL from a remote-write URL.
fn base(write_url: &str) -> String {
    write_url
        .trim_end_matches('/')
        .trim_end_matches("/api/v1/write")
        .to_string()
}

pub(crate) async fn action_loop(cfg: AgentConfig, tel: Telemetry, cancel: CancellationToken) {
    if cfg.actions.is_empty() {
        return;
    }
    let done = match Done::open(&cfg.state_dir) {
        Ok(d) => Arc::new(Mutex::new(d)),
        Err(e) => {
            warn!(dir = %cfg.state_dir.display(), error = %e, "cannot keep the record of actions run: remediation is off");
            return;
        }
    };
    info!(
        actions = cfg.actions.len(),
        "remediation actions allowed on this host"
    );
    let client = match crate::ship::client(&cfg.shipping, Duration::from_secs(10)) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cannot build the HTTP client: remediation is off");
            return;
        }
    };
    let allowlist = Arc::new(cfg.actions.clone());
    let slots = Arc::new(tokio::sync::Semaphore::new(cfg.max_concurrent_actions));
    let token = cfg.shipping.token.as_ref().map(|t| t.expose().to_string());
    let bases: Vec<String> = cfg.shipping.urls.iter().map(|u| base(u)).collect();
    let mut iv = tokio::time::interval(Duration::from_secs(1));
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = iv.tick() => {}
        }
        // The first collector that answers hands out this host's requests.
        let mut got = None;
        for b in &bases {
            let mut req = client
                .get(format!("{b}/api/v1/actions/poll"))
                .query(&[("host", cfg.host.as_str())]);
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => {
                    got = r
                        .json::<Poll>()
                        .await
                        .ok()
                        .map(|p| (b.clone(), p.data.actions));
                    break;
                }
                Ok(r) => {
                    warn!(collector = %b, status = %r.status(), "action poll refused");
                    break;
                }
                Err(_) => continue,
            }
        }
        let Some((b, wanted)) = got else { continue };
        for w in wanted {
            let fresh = done.lock().unwrap_or_else(|p| p.into_inner()).claim(&w.id);
            match fresh {
                Ok(true) => {}
                Ok(false) => {
                    tel.actions.with_label_values(&["replayed"]).inc();
                    warn!(request = %w.id, action = %w.action, "request ran here before: not running it again");
                    continue;
                }
                Err(e) => {
                    warn!(request = %w.id, error = %e, "cannot record the request: not running it");
                    continue;
                }
            }
            let (client, token, tel) = (client.clone(), token.clone(), tel.clone());
            let (allowlist, slots, b) = (Arc::clone(&allowlist), Arc::clone(&slots), b.clone());
            tokio::spawn(async move {
                let _slot = slots.acquire_owned().await;
                info!(request = %w.id, action = %w.action, params = ?w.params, "running action");
                let r = tocsin_exec::run_action(&allowlist, &w.action, &w.params).await;
                tel.actions.with_label_values(&[r.status.as_str()]).inc();
                if r.status == tocsin_model::ActionStatus::Refused {
                    warn!(request = %w.id, action = %w.action, reason = %r.summary, "action refused");
                } else {
                    info!(request = %w.id, action = %w.action, result = %r.status, summary = %r.summary, "action finished");
                }
                let body = serde_json::json!({
                    "status": r.status, "summary": r.summary, "output": r.output,
                });
                // Sent until the collector has it stored (2xx) or refuses it for good (409:
                // finished, or unknown); a collector that cannot store it now (503 with a full
                // disk, 429, a cut) hears it again, backing off to 30 s, for ten minutes.
                let deadline = std::time::Instant::now() + RESULT_RETRY_FOR;
                for attempt in 0u32.. {
                    let mut req = client
                        .post(format!("{b}/api/v1/actions/{}/result", w.id))
                        .json(&body);
                    if let Some(t) = &token {
                        req = req.bearer_auth(t);
                    }
                    match req.send().await {
                        Ok(resp) if resp.status().is_success() || resp.status().as_u16() == 409 => {
                            return
                        }
                        Ok(resp) => {
                            warn!(request = %w.id, status = %resp.status(), "result not taken")
                        }
                        Err(e) => warn!(request = %w.id, error = %e, "cannot report the result"),
                    }
                    if std::time::Instant::now() >= deadline {
                        tel.actions.with_label_values(&["unreported"]).inc();
                        error!(request = %w.id, "result never taken by the collector: given up");
                        return;
                    }
                    let wait = Duration::from_secs(1 << attempt.min(5)).min(RESULT_BACKOFF_MAX);
                    tokio::time::sleep(wait).await;
                }
            });
        }
    }
}
