//! Auto-remediation policy. When a rule with a `remediation` block fires at or above its level,
//! this decides whether an action request is made (cooldown, attempts per window, circuit
//! breaker, concurrency limits, dry-run, approval), hands requests to the agent that polls for
//! them (or to the collector) exactly once, takes their results, and verifies that the alert
//! resolved within `verify_within`. Failures count towards the breaker and ask for escalation.
//!
//! Pure: the caller injects time, persists [`Remedy::take_changes`] in the same transaction as
//! the events it records, and runs nothing itself. The side that runs an action checks it
//! against its own allowlist; a request here is only a name and label values.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tocsin_dispatch::AlertInfo;
use tocsin_model::TimestampMs;
use tocsin_rules::{ParamSource, Remediation};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    AwaitingApproval,
    Pending,
    Dispatched,
    Verifying,
    Succeeded,
    Failed,
    Refused,
    DryRun,
    Cancelled,
    Lost,
}

impl State {
    pub fn active(self) -> bool {
        matches!(
            self,
            State::AwaitingApproval | State::Pending | State::Dispatched | State::Verifying
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::AwaitingApproval => "awaiting_approval",
            State::Pending => "pending",
            State::Dispatched => "dispatched",
            State::Verifying => "verifying",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Refused => "refused",
            State::DryRun => "dry_run",
            State::Cancelled => "cancelled",
            State::Lost => "lost",
        }
    }
}

/// One action request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    pub rule: String,
    pub alert_id: String,
    /// The agent's host; `None` when the collector runs it.
    pub host: Option<String>,
    pub action: String,
    pub params: BTreeMap<String, String>,
    pub state: State,
    pub created: TimestampMs,
    pub dispatched: Option<TimestampMs>,
    pub finished: Option<TimestampMs>,
    /// How it ended, in one line (exit code, refusal reason, …).
    pub outcome: Option<String>,
    /// The tail of the action's output.
    pub output: String,
    pub verify_deadline: Option<TimestampMs>,
    verify_within_ms: i64,
    breaker_after: u32,
    window_ms: i64,
    /// A scale-out's count, kept as the new count once the action succeeds.
    #[serde(default)]
    pub scale_to: Option<u32>,
    #[serde(default)]
    cooldown_ms: i64,
    /// A scale-out whose alert still fired after it was handed on to the next step.
    #[serde(default)]
    retried: bool,
}

/// What happened, for the incident timeline and the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at: TimestampMs,
    pub alert_id: String,
    pub request: Option<String>,
    /// requested, dry_run, awaiting_approval, approved, skipped, refused, dispatched,
    /// succeeded, failed, verified, verify_failed, breaker_open, lost, cancelled.
    pub kind: &'static str,
    pub text: String,
    /// The alert should go to its next notification tier now.
    pub escalate: bool,
}

/// A result reported by the side that ran the action.
pub use tocsin_model::ActionStatus as ResultStatus;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Track {
    attempts: Vec<TimestampMs>,
    failures_in_row: u32,
    breaker_until: Option<TimestampMs>,
    /// The replica count the last successful scale-out set.
    #[serde(default)]
    replicas: Option<u32>,
}

/// Limits over all requests.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests dispatched or pending at once, over all hosts.
    pub max_concurrent: usize,
    /// … on one host.
    pub per_host: usize,
    /// A dispatched request not answered within this is lost (and counts as a failure).
    pub answer_within_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent: 10,
            per_host: 1,
            answer_within_ms: 10 * 60_000,
        }
    }
}

#[derive(Debug, Default)]
pub struct Remedy {
    limits: Limits,
    requests: BTreeMap<String, Request>,
    tracks: BTreeMap<String, Track>,
    /// Alerts whose remediation a silence held back (maintenance), by id: asked for when the
    /// silence ends if they still fire. Kept as state rows, so a restart inside the silence
    /// does not forget them.
    held: BTreeSet<String>,
    seq: u64,
    dirty: BTreeSet<String>,
}

fn ev(at: TimestampMs, r: &Request, kind: &'static str, text: String, escalate: bool) -> Event {
    Event {
        at,
        alert_id: r.alert_id.clone(),
        request: Some(r.id.clone()),
        kind,
        text,
        escalate,
    }
}

impl Remedy {
    pub fn new(limits: Limits) -> Remedy {
        Remedy {
            limits,
            ..Default::default()
        }
    }

    fn track_key(rule: &str, alert_id: &str) -> String {
        format!("{rule}|{alert_id}")
    }

    /// Marks an alert's remediation as held back by a silence; whether it was not already.
    pub fn hold(&mut self, alert_id: &str) -> bool {
        let new = self.held.insert(alert_id.to_string());
        if new {
            self.dirty.insert(format!("h:{alert_id}"));
        }
        new
    }

    /// Forgets a hold (the alert was remediated, or resolved).
    pub fn release(&mut self, alert_id: &str) {
        if self.held.remove(alert_id) {
            self.dirty.insert(format!("h:{alert_id}"));
        }
    }

    pub fn is_held(&self, alert_id: &str) -> bool {
        self.held.contains(alert_id)
    }

    /// Takes in an alert event of a rule with a remediation block.
    pub fn on_alert(&mut self, a: &AlertInfo, rem: &Remediation, now: TimestampMs) -> Vec<Event> {
        let mut out = Vec::new();
        if !a.firing {
            for r in self.requests.values_mut().filter(|r| r.alert_id == a.id) {
                match r.state {
                    State::Verifying | State::Dispatched => {
                        r.state = State::Succeeded;
                        r.finished.get_or_insert(now);
                        r.verify_deadline = None;
                        self.dirty.insert(format!("r:{}", r.id));
                        if let Some(t) = self.tracks.get_mut(&Self::track_key(&r.rule, &r.alert_id))
                        {
                            t.failures_in_row = 0;
                            self.dirty.insert(format!("t:{}|{}", r.rule, r.alert_id));
                        }
                        out.push(ev(
                            now,
                            r,
                            "verified",
                            format!("{} worked: the alert resolved", r.action),
                            false,
                        ));
                    }
                    State::Pending | State::AwaitingApproval => {
                        r.state = State::Cancelled;
                        r.finished = Some(now);
                        self.dirty.insert(format!("r:{}", r.id));
                        out.push(ev(
                            now,
                            r,
                            "cancelled",
                            "the alert resolved first".into(),
                            false,
                        ));
                    }
                    _ => {}
                }
            }
            return out;
        }
        if a.level < rem.level {
            return out;
        }
        if self
            .requests
            .values()
            .any(|r| r.alert_id == a.id && r.rule == a.rule && r.state.active())
        {
            return out;
        }
        let key = Self::track_key(&a.rule, &a.id);
        let track = self.tracks.entry(key.clone()).or_default();
        track.attempts.retain(|t| now - t < rem.window_ms);
        let note = |kind: &'static str, text: String| Event {
            at: now,
            alert_id: a.id.clone(),
            request: None,
            kind,
            text,
            escalate: false,
        };
        let skip = |text: String| note("skipped", text);
        if let Some(until) = track.breaker_until.filter(|u| *u > now) {
            out.push(skip(format!(
                "{}: circuit breaker open for {} s more",
                rem.action,
                (until - now) / 1000
            )));
            return out;
        }
        if let Some(last) = track.attempts.last().filter(|l| now - *l < rem.cooldown_ms) {
            out.push(skip(format!(
                "{}: cooling down ({} s since the last attempt)",
                rem.action,
                (now - last) / 1000
            )));
            return out;
        }
        if track.attempts.len() as u32 >= rem.max_attempts {
            out.push(skip(format!(
                "{}: {} attempts in the window already",
                rem.action,
                track.attempts.len()
            )));
            return out;
        }
        let mut params = BTreeMap::new();
        let mut scale_to = None;
        for (p, source) in &rem.params {
            let scaled;
            let value = match source {
                ParamSource::Scale { start, max, step } => {
                    let now_at = track.replicas.unwrap_or(*start);
                    if now_at >= *max {
                        out.push(note(
                            "refused",
                            format!(
                                "{}: already at the rule's maximum of {max} replicas",
                                rem.action
                            ),
                        ));
                        return out;
                    }
                    let next = now_at.saturating_add(*step).min(*max);
                    scale_to = Some(next);
                    scaled = next.to_string();
                    Ok(scaled.as_str())
                }
                ParamSource::Value(v) => Ok(v.as_str()),
                ParamSource::Label { label, values } => match a.labels.get(label) {
                    Some(v) if values.iter().any(|x| x == v) => Ok(v),
                    Some(v) => Err(format!(
                        "{}: label {label}={v:?} is not one of the values the rule allows for {p}",
                        rem.action
                    )),
                    None => Err(format!(
                        "{}: the alert has no label {label:?} for {p}",
                        rem.action
                    )),
                },
            };
            match value {
                Ok(v) => {
                    params.insert(p.clone(), v.to_string());
                }
                Err(why) => {
                    out.push(note("refused", why));
                    return out;
                }
            }
        }
        let host = if rem.on_collector {
            None
        } else {
            match a.labels.get("host") {
                Some(h) => Some(h.to_string()),
                None => {
                    out.push(note(
                        "refused",
                        format!("{}: the alert has no host to run it on", rem.action),
                    ));
                    return out;
                }
            }
        };
        if !rem.dry_run {
            let busy: Vec<&Request> = self
                .requests
                .values()
                .filter(|r| matches!(r.state, State::Pending | State::Dispatched))
                .collect();
            let on_host = busy.iter().filter(|r| r.host == host).count();
            if busy.len() >= self.limits.max_concurrent || on_host >= self.limits.per_host {
                out.push(skip(format!(
                    "{}: concurrency limit reached ({} running, {} on this host)",
                    rem.action,
                    busy.len(),
                    on_host
                )));
                return out;
            }
        }
        track.attempts.push(now);
        self.dirty.insert(format!("t:{key}"));
        self.seq += 1;
        self.dirty.insert("s:seq".into());
        let id = format!("act-{}-{}", now / 1000, self.seq);
        let state = if rem.dry_run {
            State::DryRun
        } else if rem.approval {
            State::AwaitingApproval
        } else {
            State::Pending
        };
        let r = Request {
            id: id.clone(),
            rule: a.rule.clone(),
            alert_id: a.id.clone(),
            host: host.clone(),
            action: rem.action.clone(),
            params,
            state,
            created: now,
            dispatched: None,
            finished: (state == State::DryRun).then_some(now),
            outcome: None,
            output: String::new(),
            verify_deadline: None,
            verify_within_ms: rem.verify_within_ms,
            breaker_after: rem.breaker_after,
            window_ms: rem.window_ms,
            scale_to,
            cooldown_ms: rem.cooldown_ms,
            retried: false,
        };
        let whereto = host
            .as_deref()
            .map_or("the collector".to_string(), |h| format!("host {h}"));
        let params_text = r
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        out.push(match state {
            State::DryRun => ev(
                now,
                &r,
                "dry_run",
                format!(
                    "dry run: would run {} ({params_text}) on {whereto}",
                    r.action
                ),
                false,
            ),
            State::AwaitingApproval => ev(
                now,
                &r,
                "awaiting_approval",
                format!(
                    "{} ({params_text}) on {whereto} waits for an acknowledgement",
                    r.action
                ),
                false,
            ),
            _ => ev(
                now,
                &r,
                "requested",
                format!("{} ({params_text}) requested on {whereto}", r.action),
                false,
            ),
        });
        self.dirty.insert(format!("r:{id}"));
        self.requests.insert(id, r);
        out
    }

    /// Somebody acknowledged the alert: requests waiting for approval may run.
    pub fn approve(&mut self, alert_id: &str, by: &str, now: TimestampMs) -> Vec<Event> {
        let mut out = Vec::new();
        for r in self
            .requests
            .values_mut()
            .filter(|r| r.alert_id == alert_id && r.state == State::AwaitingApproval)
        {
            r.state = State::Pending;
            self.dirty.insert(format!("r:{}", r.id));
            out.push(ev(
                now,
                r,
                "approved",
                format!("{} approved by {by}", r.action),
                false,
            ));
        }
        out
    }

    /// Pending requests for the agent of `host` (or, with `None`, for the collector), marked
    /// dispatched: each is handed out once.
    pub fn take(&mut self, host: Option<&str>, now: TimestampMs) -> (Vec<Request>, Vec<Event>) {
        let mut reqs = Vec::new();
        let mut events = Vec::new();
        for r in self
            .requests
            .values_mut()
            .filter(|r| r.state == State::Pending && r.host.as_deref() == host)
        {
            r.state = State::Dispatched;
            r.dispatched = Some(now);
            self.dirty.insert(format!("r:{}", r.id));
            events.push(ev(
                now,
                r,
                "dispatched",
                format!("{} handed to {}", r.action, host.unwrap_or("the collector")),
                false,
            ));
            reqs.push(r.clone());
        }
        (reqs, events)
    }

    /// Alerts whose scale-out ran but did not bring them down (verification failed) and whose
    /// cooldown has passed: the caller asks again with the alert as it fires now, for the next
    /// step (each such request is handed on once).
    pub fn scale_outs_due(&mut self, now: TimestampMs) -> Vec<String> {
        let mut due = Vec::new();
        for r in self.requests.values_mut() {
            if r.scale_to.is_some()
                && r.state == State::Failed
                && !r.retried
                && now - r.created >= r.cooldown_ms
            {
                r.retried = true;
                self.dirty.insert(format!("r:{}", r.id));
                due.push(r.alert_id.clone());
            }
        }
        due
    }

    /// The result of request `id`; `firing` is whether its alert still fires. A request that
    /// is not dispatched (unknown, or answered already) is an error: results count once.
    pub fn result(
        &mut self,
        id: &str,
        status: ResultStatus,
        summary: &str,
        output: &str,
        firing: bool,
        now: TimestampMs,
    ) -> Result<Vec<Event>, String> {
        let r = self
            .requests
            .get_mut(id)
            .filter(|r| r.state == State::Dispatched)
            .ok_or_else(|| format!("no dispatched action request {id:?}"))?;
        r.outcome = Some(summary.to_string());
        r.output = output.to_string();
        self.dirty.insert(format!("r:{id}"));
        let mut out = Vec::new();
        match status {
            ResultStatus::Succeeded => {
                if let Some(n) = r.scale_to {
                    let key = Self::track_key(&r.rule, &r.alert_id);
                    self.tracks.entry(key.clone()).or_default().replicas = Some(n);
                    self.dirty.insert(format!("t:{key}"));
                }
                let r = self.requests.get_mut(id).expect("found above");
                out.push(ev(
                    now,
                    r,
                    "succeeded",
                    format!("{} ran: {summary}", r.action),
                    false,
                ));
                if firing {
                    r.state = State::Verifying;
                    r.verify_deadline = Some(now + r.verify_within_ms);
                } else {
                    r.state = State::Succeeded;
                    r.finished = Some(now);
                    out.push(ev(
                        now,
                        r,
                        "verified",
                        format!("{} worked: the alert resolved", r.action),
                        false,
                    ));
                }
                Ok(out)
            }
            other => {
                r.state = if other == ResultStatus::Refused {
                    State::Refused
                } else {
                    State::Failed
                };
                r.finished = Some(now);
                let kind = if other == ResultStatus::Refused {
                    "refused"
                } else {
                    "failed"
                };
                out.push(ev(now, r, kind, format!("{}: {summary}", r.action), true));
                let r = r.clone();
                out.extend(self.failure(&r, now));
                Ok(out)
            }
        }
    }

    fn failure(&mut self, r: &Request, now: TimestampMs) -> Vec<Event> {
        let key = Self::track_key(&r.rule, &r.alert_id);
        let t = self.tracks.entry(key.clone()).or_default();
        t.failures_in_row += 1;
        self.dirty.insert(format!("t:{key}"));
        if t.failures_in_row >= r.breaker_after {
            t.breaker_until = Some(now + r.window_ms);
            t.failures_in_row = 0;
            return vec![ev(
                now,
                r,
                "breaker_open",
                format!(
                    "{}: {} failures in a row, circuit breaker open for {} s",
                    r.action,
                    r.breaker_after,
                    r.window_ms / 1000
                ),
                true,
            )];
        }
        Vec::new()
    }

    /// Verification deadlines and unanswered requests due at `now`.
    pub fn tick(&mut self, now: TimestampMs) -> Vec<Event> {
        let mut out = Vec::new();
        let due: Vec<Request> = self
            .requests
            .values()
            .filter(|r| {
                (r.state == State::Verifying && r.verify_deadline.is_some_and(|d| d <= now))
                    || (r.state == State::Dispatched
                        && r.dispatched
                            .is_some_and(|d| now - d >= self.limits.answer_within_ms))
            })
            .cloned()
            .collect();
        for mut r in due {
            let (state, kind, text) = if r.state == State::Verifying {
                (
                    State::Failed,
                    "verify_failed",
                    format!(
                        "{} ran but the alert still fires after {} s",
                        r.action,
                        r.verify_within_ms / 1000
                    ),
                )
            } else {
                (
                    State::Lost,
                    "lost",
                    format!("{}: no result from the runner", r.action),
                )
            };
            r.state = state;
            r.finished = Some(now);
            r.verify_deadline = None;
            out.push(ev(now, &r, kind, text, true));
            out.extend(self.failure(&r, now));
            self.dirty.insert(format!("r:{}", r.id));
            self.requests.insert(r.id.clone(), r);
        }
        // Finished requests are kept for a day for the API, then forgotten here (the audit log
        // keeps them).
        let old: Vec<String> = self
            .requests
            .values()
            .filter(|r| !r.state.active() && r.finished.is_some_and(|f| now - f > 86_400_000))
            .map(|r| r.id.clone())
            .collect();
        for id in old {
            self.requests.remove(&id);
            self.dirty.insert(format!("r:{id}"));
        }
        out
    }

    pub fn requests(&self) -> impl Iterator<Item = &Request> {
        self.requests.values()
    }

    /// State rows changed since the last call: (key, JSON or `None` when gone).
    pub fn take_changes(&mut self) -> Vec<(String, Option<String>)> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .map(|k| {
                let json = match k.split_at(2) {
                    ("r:", id) => self.requests.get(id).map(serde_json::to_string),
                    ("t:", key) => self.tracks.get(key).map(serde_json::to_string),
                    ("h:", id) => self.held.contains(id).then(|| serde_json::to_string(&true)),
                    _ => Some(serde_json::to_string(&self.seq)),
                };
                (k, json.map(|j| j.expect("remediation state serializes")))
            })
            .collect()
    }

    /// Restores rows written by [`Remedy::take_changes`]; returns the unreadable ones.
    pub fn restore(&mut self, rows: Vec<(String, String)>) -> Vec<(String, String)> {
        let mut bad = Vec::new();
        for (k, json) in rows {
            let r = match k.get(..2) {
                Some("r:") => serde_json::from_str(&json).map(|r| {
                    self.requests.insert(k[2..].to_string(), r);
                }),
                Some("t:") => serde_json::from_str(&json).map(|t| {
                    self.tracks.insert(k[2..].to_string(), t);
                }),
                Some("s:") => serde_json::from_str(&json).map(|s| self.seq = s),
                Some("h:") => serde_json::from_str::<bool>(&json).map(|_| {
                    self.held.insert(k[2..].to_string());
                }),
                _ => {
                    bad.push((k, "unknown kind of row".into()));
                    continue;
                }
            };
            if let Err(e) = r {
                bad.push((k, e.to_string()));
            }
        }
        bad
    }
}

#[cfg(test)]
mod tests;
