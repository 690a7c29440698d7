//! Per-agent tokens: `/api/v1/tokens` (admin), and how the ingest path authenticates agents.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::Json;
use serde_json::{json, Value};
use tocsin_alerting::format_rfc3339;
use tocsin_model::now_ms;

use super::error::json_body;
use super::error::with_records;
use super::error::ApiError;
use super::AppState;
use crate::access::constant_time_eq;

/// Per-agent tokens as the ingest path checks them.
#[derive(Debug, Default)]
pub struct AgentTokens {
    /// SHA-256 hex of each live token → the host it may write for.
    pub live: std::collections::HashMap<String, String>,
    /// Once any token was issued (even if all are revoked now), writes need a token.
    pub required: bool,
}

/// SHA-256 of a token, hex: what the store keeps.
pub fn token_hash(token: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Loads the agent tokens from the store.
pub fn load_agent_tokens(ob: &tocsin_store::Records) -> tocsin_store::Result<AgentTokens> {
    let all = ob.tokens()?;
    Ok(AgentTokens {
        required: !all.is_empty(),
        live: all
            .into_iter()
            .filter(|t| t.revoked_ms.is_none())
            .map(|t| (t.hash, t.host))
            .collect(),
    })
}

/// Who is writing: `Ok(None)` may write for any host (the shared ingest token, or no
/// authentication configured at all), `Ok(Some(host))` only for that host (a per-agent token).
pub(crate) fn authenticate_agent(
    headers: &HeaderMap,
    st: &AppState,
) -> Result<Option<String>, ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let tokens = st.agent_tokens.read().unwrap_or_else(|p| p.into_inner());
    if let (Some(shared), Some(g)) = (&st.token, given) {
        if constant_time_eq(g.as_bytes(), shared.expose().as_bytes()) {
            return Ok(None);
        }
    }
    if let Some(g) = given {
        // A map lookup on the hash: the lookup's timing says nothing about the token.
        if let Some(host) = tokens.live.get(&token_hash(g)) {
            return Ok(Some(host.clone()));
        }
    }
    if st.token.is_none() && !tokens.required {
        return match st.access.agents_off() {
            None => Ok(None),
            Some(msg) => {
                st.tel.ingest_rejected("disabled", &msg);
                Err(ApiError::Forbidden(msg))
            }
        };
    }
    st.tel
        .ingest_rejected("unauthorized", "missing, wrong or revoked bearer token");
    Err(ApiError::Unauthorized(
        "missing, wrong or revoked bearer token".into(),
    ))
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub host: String,
    #[serde(default)]
    pub comment: String,
}

pub(crate) fn reload_tokens(st: &AppState, ob: &tocsin_store::Records) -> tocsin_store::Result<()> {
    let t = load_agent_tokens(ob)?;
    *st.agent_tokens.write().unwrap_or_else(|p| p.into_inner()) = t;
    Ok(())
}

/// `POST /api/v1/tokens` (admin) `{"host", "comment"}`: a new token for that host's agent,
/// shown once; only its hash is kept.
pub(crate) async fn issue(
    State(st): State<AppState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let n: NewToken = json_body(&body, "token request")?;
    if n.host.trim().is_empty() {
        return Err(ApiError::bad_request("host is required"));
    }
    // The `host` label its agent sends, which never holds a line break or a control
    // character, nor spaces around it.
    if n.host.len() > 253 || n.host.trim() != n.host || n.host.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "host must be the agent's host name: at most 253 characters, no control characters or surrounding spaces",
        ));
    }
    let token = format!("tcn_{}", tocsin_alerting::ack::new_secret());
    let hash = token_hash(&token);
    let st2 = st.clone();
    let host = n.host.clone();
    let id = with_records(&st, "issuing a token", move |o| {
        let id = o.add_token(&host, &hash, &n.comment, now_ms())?;
        reload_tokens(&st2, o)?;
        Ok(id)
    })
    .await?;
    tracing::info!(id, host = %n.host, "agent token issued");
    Ok(Json(
        json!({ "status": "success", "data": { "id": id, "host": n.host, "token": token } }),
    ))
}

pub(crate) async fn list(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let rows = with_records(&st, "listing tokens", |o| o.tokens()).await?;
    let list: Vec<Value> = rows
        .into_iter()
        .map(|t| {
            json!({
                "id": t.id,
                "host": t.host,
                "comment": t.comment,
                "createdAt": format_rfc3339(t.created_ms),
                "revokedAt": t.revoked_ms.map(format_rfc3339),
            })
        })
        .collect();
    Ok(Json(
        json!({ "status": "success", "data": { "tokens": list } }),
    ))
}

pub(crate) async fn revoke(
    State(st): State<AppState>,
    super::error::Path(id): super::error::Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let st2 = st.clone();
    let done = with_records(&st, "revoking a token", move |o| {
        let done = o.revoke_token(id, now_ms())?;
        reload_tokens(&st2, o)?;
        Ok(done)
    })
    .await?;
    if done {
        tracing::info!(id, "agent token revoked");
        Ok(Json(json!({ "status": "success" })))
    } else {
        Err(ApiError::not_found(format!("no live token {id}")))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::json;

    use crate::api::testing::{series, TestApi};

    #[tokio::test]
    async fn a_token_writes_for_its_own_host_only_until_revoked() {
        let api = TestApi::new("", "");
        let a = api
            .call(
                "POST",
                "/api/v1/tokens",
                None,
                Some(json!({"host": "h1", "comment": "web"})),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.json);
        let token = a.json["data"]["token"].as_str().unwrap().to_string();
        let id = a.json["data"]["id"].as_i64().unwrap();
        let listed = api.get("/api/v1/tokens").await.json;
        assert_eq!(listed["data"]["tokens"][0]["host"], "h1");
        assert!(
            !listed.to_string().contains(&token),
            "a listing shows no token"
        );
        let own = series(&[("__name__", "x"), ("host", "h1")], 1.0);
        let other = series(&[("__name__", "x"), ("host", "h2")], 1.0);
        let w = |s: &[tocsin_model::SeriesSamples], t| TestApi::write_request(s, t);
        // Once a token exists, writes need one.
        assert_eq!(
            api.send(w(std::slice::from_ref(&own), None)).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            api.send(w(std::slice::from_ref(&own), Some(&token)))
                .await
                .status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            api.send(w(std::slice::from_ref(&other), Some(&token)))
                .await
                .status,
            StatusCode::FORBIDDEN
        );
        let a = api
            .call("DELETE", &format!("/api/v1/tokens/{id}"), None, None)
            .await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(
            api.send(w(std::slice::from_ref(&own), Some(&token)))
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
        let a = api.call("DELETE", "/api/v1/tokens/99", None, None).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        for host in ["", "a\nb", " web-1", "web\u{1b}[2J"] {
            let a = api
                .call(
                    "POST",
                    "/api/v1/tokens",
                    None,
                    Some(json!({ "host": host })),
                )
                .await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{host:?}");
        }
    }
}
