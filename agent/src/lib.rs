//! The agent's wiring: command line, the sampling schedule, the shipping queue and the agent's
//! own `/metrics`. What is measured lives in `tocsin-sampling`, the protocol in `tocsin-wire`.

mod actions;
pub mod cli;
mod latest;
mod probes;
mod schedule;
pub mod ship;
mod telemetry;

pub use telemetry::Telemetry;
