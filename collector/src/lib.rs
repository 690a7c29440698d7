//! The collector's wiring: command line, HTTP API, the writer thread that joins storage and rule
//! evaluation, rule-file loading and reloading. The capabilities themselves live in the
//! `tocsin-*` library crates.

pub mod access;
pub mod api;
pub mod backtest;
pub mod cli;
pub mod export;
mod exposition;
pub mod forward;
pub mod heartbeat;
pub mod liveness;
pub mod query;
pub mod reload;
pub mod reports;
pub mod rulefiles;
pub mod server;
pub mod services;
pub mod session;
pub mod slo;
mod storage_alert;
mod telemetry;
pub mod view;
pub mod writer;

pub use telemetry::Telemetry;
