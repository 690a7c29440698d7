//! What the HTTP API reads of the writer's state: a snapshot refreshed after each change.

use std::collections::BTreeMap;
use std::sync::Arc;

use tocsin_rules::AlertState;

use crate::liveness::HostView;

/// What the HTTP API reads: refreshed by the writer after each change.
#[derive(Default)]
pub struct View {
    /// Pending and firing alerts, shared with the writer (a refresh copies references).
    pub alerts: Vec<Arc<AlertState>>,
    pub hosts: Vec<HostView>,
    /// Silences not yet ended, as stored.
    pub silences: Vec<tocsin_store::Silence>,
    /// Dynamic rules' bands: rule, series labels, [expected, lower, upper, value, score].
    pub bands: Vec<(String, tocsin_model::Labels, [f64; 5])>,
    /// Acknowledgements of firing alerts, by alert id.
    pub acks: BTreeMap<String, tocsin_dispatch::Ack>,
    /// Open and recently resolved incidents.
    pub incidents: Vec<tocsin_incidents::Incident>,
    /// Action requests of the last day.
    pub actions: Vec<tocsin_remedy::Request>,
    /// What holds firing alerts back, by alert id: the silences muting it, and the firing
    /// alerts inhibiting it.
    pub held: BTreeMap<String, (Vec<i64>, Vec<String>)>,
    /// The rules in force.
    pub rules: Vec<std::sync::Arc<tocsin_rules::Rule>>,
    /// The routing tree: which receivers an alert goes to (read by the API on request, not
    /// worked out for every alert on every refresh).
    pub route: Option<std::sync::Arc<tocsin_config::route::Route>>,
    /// Notification groups in flight: receiver (or escalation policy), group labels, the ids
    /// of their firing alerts.
    pub groups: Vec<(String, tocsin_model::Labels, Vec<String>)>,
    /// Every receiver configured, by name.
    pub receiver_names: Vec<String>,
}
