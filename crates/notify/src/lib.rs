//! Delivery: turns alert transitions into notification payloads (Alertmanager webhook v4 JSON)
//! and runs one worker per receiver that drains the durable outbox in order, with retries,
//! exponential backoff and a dead-letter state. Rule evaluation never calls into this crate;
//! the collector joins the two.

mod channel;

pub use channel::{log_receiver, DeliveryError};
pub mod template;
mod worker;

#[cfg(test)]
mod testing;

pub use worker::{backoff_ms, workers, DeliveryMetrics, RateLimiter, Urgent};

/// Whether a receiver's channel can be built as the collector builds it at start (its HTTP
/// client, TLS settings, e-mail transport), for `check-config`.
pub fn check_receiver(r: &tocsin_config::collector::ReceiverConfig) -> Result<(), String> {
    channel::build(r).map(drop)
}
