//! The alerting pipeline after rule evaluation: who hears what and when, and what incidents and
//! remediation make of it.
//!
//! Given the transitions rule evaluation decided and the time, [`Pipeline`] routes (the
//! configured tree), inhibits (a firing alert holds back others), silences (matchers and
//! maintenance windows, applied again when a notification falls due), groups, repeats and
//! escalates (through `tocsin-dispatch`), opens and joins incidents with their timeline, and
//! asks for remediation. It answers with [`Effects`]: state rows, timeline entries, audit rows,
//! notification bodies and action requests, which the caller makes durable in one transaction.
//! It reads no clock, opens no file or socket and sends nothing: the collector applies the
//! effects, the delivery workers send what was queued.
//!
//! Also here because they are what a notification is: the webhook payload every channel
//! renders from ([`payload`]), signed acknowledgement links ([`ack`]), and silences
//! ([`silence`]).

pub mod ack;
mod payload;
mod pipeline;
pub mod routing;
pub mod silence;

pub use payload::{
    digest, format_rfc3339, webhook_payload, AckLinker, AckView, Extras, Kind, Payload,
    PayloadAlert, Status, Summary,
};
pub use pipeline::{
    Alerts, AuditEntry, Effects, IncidentOp, Outgoing, Pipeline, Reconfigured, Resolved, Settings,
    Sources,
};

#[cfg(test)]
mod tests;
