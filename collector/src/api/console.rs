//! The web console: one page and its script and style, embedded in the binary (no build step,
//! no third-party code). Everything it shows and does goes through the JSON API with the
//! session the page signs in to; the assets themselves hold no data and are served to anyone.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

static INDEX: &str = include_str!("../../console/index.html");
static ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../console/app.css"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_str!("../../console/icon.svg"),
    ),
];

/// Nothing but the console's own files may run or load; no framing (clickjacking).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub(crate) async fn index(headers: HeaderMap) -> Response {
    serve(&headers, "text/html; charset=utf-8", INDEX)
}

pub(crate) async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ty, body)) => serve(&headers, ty, body),
        None => (StatusCode::NOT_FOUND, "no such console file\n").into_response(),
    }
}

/// ETags of the embedded files, hashed once.
fn etag(body: &'static str) -> &'static str {
    static TAGS: std::sync::OnceLock<Vec<(usize, String)>> = std::sync::OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        std::iter::once(INDEX)
            .chain(ASSETS.iter().map(|(_, _, b)| *b))
            .map(|b| {
                (
                    b.as_ptr() as usize,
                    format!("\"{:016x}\"", fnv(b.as_bytes())),
                )
            })
            .collect()
    });
    tags.iter()
        .find(|(p, _)| *p == body.as_ptr() as usize)
        .map(|(_, t)| t.as_str())
        .expect("an embedded file")
}

fn serve(headers: &HeaderMap, ty: &'static str, body: &'static str) -> Response {
    let etag = etag(body);
    let common = [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, HeaderValue::from_static(etag)),
    ];
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(header::CONTENT_TYPE, HeaderValue::from_static(ty))],
        body,
    )
        .into_response()
}

/// FNV-1a: the assets' version for caching.
fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100000001b3)
    })
}
