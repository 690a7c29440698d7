//! `/ack`: the pages behind signed acknowledgement links (opened on phones).

use super::alerts::acknowledge;
use super::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tocsin_alerting::format_rfc3339;
use tocsin_model::now_ms;

pub(crate) fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title></head><body><h2>{title}</h2>{body}</body></html>"
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[derive(serde::Deserialize)]
pub(crate) struct AckQuery {
    /// Missing: refused as malformed, on the page.
    #[serde(default)]
    pub(crate) t: String,
}

/// What a link names, if it is genuine and for the alert's current firing (a link kept from
/// an earlier one acknowledges nothing).
pub(crate) fn verify_link(
    st: &AppState,
    token: &str,
) -> Result<tocsin_alerting::ack::Link, tocsin_alerting::ack::LinkError> {
    let link = tocsin_alerting::ack::verify(&st.ack_secret, token, now_ms(), st.ack_ttl_ms)?;
    let view = st.view.read().unwrap_or_else(|p| p.into_inner());
    let current = view
        .alerts
        .iter()
        .find(|a| format!("{:016x}", a.fingerprint()) == link.id)
        .and_then(|a| a.active_at);
    match current {
        Some(t) if t.div_euclid(1000) != link.since_s => {
            Err(tocsin_alerting::ack::LinkError::EarlierFiring)
        }
        _ => Ok(link),
    }
}

/// `GET /ack?t=TOKEN`: a confirmation page (link previews must not acknowledge anything).
pub(crate) async fn page(
    State(st): State<AppState>,
    super::error::Query(q): super::error::Query<AckQuery>,
) -> Response {
    match verify_link(&st, &q.t) {
        Err(e) => {
            st.tel.ack_refused.inc();
            html(
                StatusCode::FORBIDDEN,
                "Acknowledgement refused",
                &escape(&e.to_string()),
            )
        }
        Ok(tocsin_alerting::ack::Link { id, level, .. }) => {
            let view = st.view.read().unwrap_or_else(|p| p.into_inner());
            let what = view
                .alerts
                .iter()
                .find(|a| format!("{:016x}", a.fingerprint()) == id)
                .map(|a| format!("{} {}", a.rule, a.labels))
                .unwrap_or_else(|| id.clone());
            html(
                StatusCode::OK,
                "Acknowledge alert / 确认告警",
                &format!(
                    "<p>{} ({})</p><form method=\"post\" action=\"ack\"><input type=\"hidden\" name=\"t\" value=\"{}\"><p><input name=\"by\" placeholder=\"name / 姓名\" required></p><p><input name=\"comment\" placeholder=\"comment / 备注\"></p><p><button type=\"submit\">Acknowledge / 确认</button></p></form>",
                    escape(&what),
                    level.as_str(),
                    escape(&q.t)
                ),
            )
        }
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct AckForm {
    pub(crate) t: String,
    pub(crate) by: String,
    #[serde(default)]
    pub(crate) comment: String,
}

/// `POST /ack` (form: t, by, comment): acknowledges with a signed link.
pub(crate) async fn submit(State(st): State<AppState>, body: Bytes) -> Response {
    let form: AckForm = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(e) => {
            return html(
                StatusCode::BAD_REQUEST,
                "Acknowledgement refused",
                &escape(&format!("invalid form: {e}")),
            )
        }
    };
    let (id, level) = match verify_link(&st, &form.t) {
        Ok(l) => (l.id, l.level),
        Err(e) => {
            st.tel.ack_refused.inc();
            return html(
                StatusCode::FORBIDDEN,
                "Acknowledgement refused",
                &escape(&e.to_string()),
            );
        }
    };
    if unfit(&form.by, &form.comment) {
        return html(
            StatusCode::BAD_REQUEST,
            "Acknowledgement refused",
            "name (one line of at most 200 bytes) or comment (2,000 bytes) refused",
        );
    }
    let by = if form.by.trim().is_empty() {
        "link".to_string()
    } else {
        form.by
    };
    let detail =
        serde_json::json!({ "alert": id, "level": level.as_str(), "comment": form.comment });
    match acknowledge(&st, id, Some(level), by.clone(), form.comment).await {
        Ok(a) => {
            link_audit(&st, &by, "POST /ack", &detail).await;
            html(
                StatusCode::OK,
                "Acknowledged / 已确认",
                &format!(
                    "<p>{}</p>{}",
                    escape(&format!("{} at {}", a.by, format_rfc3339(a.at))),
                    feedback_form(&form.t, &by)
                ),
            )
        }
        Err(e) => html(e.status(), "Acknowledgement refused", &escape(e.message())),
    }
}

/// After an acknowledgement: was the alert worth it?
fn feedback_form(token: &str, by: &str) -> String {
    let choice = |v: &str, label: &str| {
        format!("<p><label><input type=\"radio\" name=\"verdict\" value=\"{v}\" required> {label}</label></p>")
    };
    format!(
        "<h3>Was this alert useful? / 这条告警有用吗？</h3><form method=\"post\" action=\"ack/feedback\"><input type=\"hidden\" name=\"t\" value=\"{}\"><input type=\"hidden\" name=\"by\" value=\"{}\">{}{}{}{}<p><input name=\"comment\" placeholder=\"comment / 备注\"></p><p><button type=\"submit\">Send / 提交</button></p></form>",
        escape(token),
        escape(by),
        choice("useful", "useful / 有用"),
        choice("noise", "noise / 噪声"),
        choice("wrong_level", "wrong level / 级别不当"),
        choice("duplicate", "duplicate / 重复"),
    )
}

#[derive(serde::Deserialize)]
pub(crate) struct FeedbackForm {
    pub(crate) t: String,
    pub(crate) by: String,
    pub(crate) verdict: String,
    #[serde(default)]
    pub(crate) comment: String,
}

/// `POST /ack/feedback` (form: t, by, verdict, comment): feedback on the alert a signed link
/// names, for the incident it is part of.
pub(crate) async fn feedback(State(st): State<AppState>, body: Bytes) -> Response {
    let refused =
        |status: StatusCode, m: &str| html(status, "Feedback refused / 未记录", &escape(m));
    let form: FeedbackForm = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(e) => return refused(StatusCode::BAD_REQUEST, &format!("invalid form: {e}")),
    };
    let id = match tocsin_alerting::ack::verify(&st.ack_secret, &form.t, now_ms(), st.ack_ttl_ms) {
        Ok(l) => l.id,
        Err(e) => {
            st.tel.ack_refused.inc();
            return refused(StatusCode::FORBIDDEN, &e.to_string());
        }
    };
    let Some(verdict) = tocsin_incidents::Verdict::parse(&form.verdict) else {
        return refused(
            StatusCode::BAD_REQUEST,
            "verdict: useful, noise, wrong_level or duplicate",
        );
    };
    if unfit(&form.by, &form.comment) {
        return refused(
            StatusCode::BAD_REQUEST,
            "name (one line of at most 200 bytes) or comment (2,000 bytes) refused",
        );
    }
    let found = {
        let view = st.view.read().unwrap_or_else(|p| p.into_inner());
        view.incidents
            .iter()
            .filter_map(|i| Some((i.id.clone(), i.alerts.get(&id)?.rule.clone(), i.opened_at)))
            .max_by_key(|x| x.2)
    };
    let Some((incident, rule, _)) = found else {
        return refused(
            StatusCode::NOT_FOUND,
            "the alert's incident is no longer open: give feedback on it in the console or the API",
        );
    };
    let by = if form.by.trim().is_empty() {
        "link".to_string()
    } else {
        form.by
    };
    let detail = serde_json::json!({
        "alert": id, "incident": incident, "verdict": verdict.as_str(), "comment": form.comment,
    });
    let f = tocsin_incidents::Feedback {
        incident: incident.clone(),
        rule,
        verdict,
        by: by.clone(),
        comment: form.comment,
        at: now_ms(),
    };
    match super::incidents::record_feedback(&st, f).await {
        Ok(()) => {
            link_audit(&st, &by, "POST /ack/feedback", &detail).await;
            html(
                StatusCode::OK,
                "Thank you / 已记录",
                &escape(&format!("{} on {incident}", verdict.as_str())),
            )
        }
        Err(e) => refused(e.status(), e.message()),
    }
}

/// What a link holder may not write: a name and a comment beyond what the API allows (the
/// incidents' one line of 200 bytes and 2,000 bytes), so the acknowledgement, the feedback and
/// their audit rows stay small and a name stays one line.
fn unfit(by: &str, comment: &str) -> bool {
    !super::fits_name(by) || comment.len() > 2000
}

/// A change made through a signed link goes to the audit log like any other: the actor is the
/// name the holder gave, marked as a link's (anyone holding the link can type any name); the
/// detail names what changed, never the link's token.
async fn link_audit(st: &AppState, by: &str, event: &str, detail: &serde_json::Value) {
    let body = detail.to_string();
    super::audit(
        st,
        &format!("link:{by}"),
        event,
        StatusCode::OK,
        body.as_bytes(),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};

    use crate::api::alerts::tests::firing;

    /// A link for the alert `id` as notifications carry it.
    fn link(api: &crate::api::testing::TestApi, id: &str, since_ms: i64) -> String {
        let level = tocsin_model::Level::Warning;
        let expires = tocsin_model::now_ms() + 3_600_000;
        tocsin_alerting::ack::token(&api.state.ack_secret, id, level, since_ms, expires)
    }

    fn since(api: &crate::api::testing::TestApi) -> i64 {
        let v = api.state.view.read().unwrap();
        v.alerts[0].active_at.expect("firing")
    }

    #[tokio::test]
    async fn a_genuine_link_shows_a_confirmation_page_and_the_form_acknowledges() {
        let (api, id) = firing("", 10.0).await;
        let t = link(&api, &id, since(&api));
        let page = api.get(&format!("/ack?t={t}")).await;
        assert_eq!(page.status, StatusCode::OK);
        let html = page.json.as_str().unwrap();
        assert!(html.contains("Hot"), "{html}");
        assert!(html.contains("<form method=\"post\""), "{html}");
        // Opening the page acknowledged nothing (link previews open pages).
        assert_eq!(
            api.get("/api/v1/alerts").await.json["data"]["alerts"][0]["ack"],
            serde_json::Value::Null
        );
        // A name too long, or of more than one line: refused.
        for by in ["a".repeat(201), "alice%0AINFO+admin".to_string()] {
            let req = Request::post("/ack")
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(Body::from(format!("t={t}&by={by}")))
                .unwrap();
            assert_eq!(api.send(req).await.status, StatusCode::BAD_REQUEST, "{by}");
        }
        let form = format!("t={t}&by=alice&comment=phone");
        let req = Request::post("/ack")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap();
        let a = api.send(req).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.json);
        let html = a.json.as_str().unwrap();
        assert!(html.contains("alice"));
        // Then: was it worth it? The same link records feedback on the alert's incident.
        assert!(html.contains("action=\"ack/feedback\""), "{html}");
        let post = |body: String| {
            Request::post("/ack/feedback")
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap()
        };
        let bad = api.send(post(format!("t={t}&by=alice&verdict=meh"))).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        let forged = api
            .send(post("t=abc.warning.1.2.sig&by=x&verdict=noise".into()))
            .await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        let ok = api
            .send(post(format!(
                "t={t}&by=alice&verdict=wrong_level&comment=warning+at+most"
            )))
            .await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.json);
        // Both changes are in the audit log, under the name given and marked as a link's, and
        // the link's token is not.
        let audit = api.get("/api/v1/audit").await.json;
        let rows = audit["data"]["audit"].as_array().expect("rows").clone();
        let row = |event: &str| {
            rows.iter()
                .find(|r| r["event"] == event)
                .unwrap_or_else(|| panic!("{event} not audited: {audit}"))
                .clone()
        };
        let ack = row("POST /ack");
        assert_eq!(ack["actor"], "link:alice");
        assert_eq!(ack["detail"]["body"]["alert"], id.as_str());
        assert_eq!(ack["detail"]["body"]["comment"], "phone");
        let fb = row("POST /ack/feedback");
        assert_eq!(fb["actor"], "link:alice");
        assert_eq!(fb["detail"]["body"]["verdict"], "wrong_level");
        assert!(!audit.to_string().contains(&t), "the token leaked: {audit}");
        let stats = api.get("/api/v1/incidents/stats").await.json;
        let rule = &stats["data"]["rules"][0];
        assert_eq!(rule["rule"], "Hot", "{stats}");
        assert_eq!(rule["feedback"]["wrong_level"], 1, "{stats}");
        assert_eq!(
            api.state
                .tel
                .feedback
                .with_label_values(&["wrong_level"])
                .get(),
            1
        );
        // A link holder cannot fill the database: feedback per incident is bounded.
        for _ in 1..200 {
            let a = api
                .send(post(format!("t={t}&by=alice&verdict=noise")))
                .await;
            assert_eq!(a.status, StatusCode::OK);
        }
        let full = api
            .send(post(format!("t={t}&by=alice&verdict=noise")))
            .await;
        assert_eq!(full.status, StatusCode::CONFLICT, "{}", full.json);
    }

    #[tokio::test]
    async fn a_forged_or_stale_link_is_refused_and_counted() {
        let (api, id) = firing("", 10.0).await;
        let forged = api.get("/ack?t=abc.warning.1.2.sig").await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        // A link sent for an earlier firing of the same alert.
        let old = link(&api, &id, since(&api) - 3_600_000);
        let a = api.get(&format!("/ack?t={old}")).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
        assert!(a.json.as_str().unwrap().contains("earlier firing"));
        // Markup in what the page echoes is escaped.
        let a = api.get("/ack?t=%3Cscript%3E").await;
        assert!(!a.json.as_str().unwrap().contains("<script>"));
        assert_eq!(api.state.tel.ack_refused.get(), 3);
    }
}
