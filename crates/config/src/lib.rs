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
