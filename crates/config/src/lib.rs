//! tocsin's configuration files: `Raw*` serde structs (unknown fields rejected) validated into
//! typed config, reporting every problem at once. Reading flags is the binaries' job.

pub mod actions;
pub mod agent;
pub mod collector;
pub mod escalation;
pub mod inhibit;
pub mod logs;
pub mod probes;
pub mod reports;
pub mod route;
pub mod services;

pub use tocsin_model::{error_chain, redact_url};
pub use tocsin_yaml::{
    format_duration, parse_duration, parse_size, parse_yaml, read_yaml, read_yaml_or_default,
    yaml_error_message, ConfigError, Problems, RawSecret, Secret,
};

/// What is wrong with `url` as an http(s) endpoint, `None` when nothing is. The URL is shown
/// without what may be secret (credentials, path and query: a chat robot's token).
pub(crate) fn http_url_problem(url: &str) -> Option<String> {
    let shown = tocsin_model::redact_url(url);
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Some(format!("{shown:?} must be http(s)"));
    }
    match url::Url::parse(url) {
        Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) => None,
        Ok(_) => Some(format!("{shown:?} has no host")),
        Err(e) => Some(format!("{shown:?} is not a valid URL ({e})")),
    }
}
