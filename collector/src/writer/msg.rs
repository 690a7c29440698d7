//! Messages to the writer thread and its answers.

use tocsin_model::SeriesSamples;
use tocsin_rules::Rule;
use tocsin_store::AppendStats;
use tokio::sync::oneshot;

use tocsin_alerting::IncidentOp;

/// Where an ingested batch comes from, which decides whether it is stored and forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An agent or any remote-write sender: stored, then forwarded.
    Sender,
    /// For rule evaluation only: the sender stores these samples later, in order (see
    /// `tocsin_wire::LIVE_HEADER`).
    Live,
    /// Forwarded by the other collector of a pair (`tocsin_wire::FORWARDED_HEADER`): stored,
    /// not forwarded again.
    Peer,
}

/// The writer's answer to an ingest request, with the request's series handed back: they are
/// freed by the thread that decoded them (the allocator's cheap, local path) rather than on
/// the writer's single thread, where dropping them was a seventh of its work.
pub struct Ingested {
    pub result: Result<AppendStats, WriteError>,
    pub batch: Vec<SeriesSamples>,
}

pub enum Msg {
    Ingest {
        batch: Vec<SeriesSamples>,
        /// Per entry of `batch`, what the request worker found in the series index (or
        /// nothing: the writer looks the series up itself).
        hints: Vec<tocsin_store::Hint>,
        origin: Origin,
        /// The sender's clock as it sent the request (`SENT_AT_HEADER`) less the collector's
        /// as the request arrived, in milliseconds, when the sender said.
        clock_offset: Option<i64>,
        reply: oneshot::Sender<Ingested>,
    },
    Tick,
    Reload(Vec<Rule>),
    /// A reloaded configuration's alerting part (routes, receivers, inhibition, escalation,
    /// incidents, remediation limits): taken between two groups, from the stored state.
    Configure {
        alerting: Box<tocsin_alerting::Settings>,
        /// Every receiver configured, by name.
        receivers: std::collections::BTreeSet<String>,
        reply: oneshot::Sender<Result<tocsin_alerting::Reconfigured, String>>,
    },
    /// A scheduled report ran: its messages are queued for their receivers and `key` set to
    /// `at` in one transaction, so that it goes out once, also across a restart.
    ReportRun {
        key: String,
        at: i64,
        messages: Vec<(String, String)>,
        reply: oneshot::Sender<Result<(), OpFailure>>,
    },
    AddSilence {
        silence: tocsin_store::Silence,
        reply: oneshot::Sender<Result<i64, String>>,
    },
    ExpireSilence {
        id: i64,
        reply: oneshot::Sender<Result<bool, String>>,
    },
    /// Acknowledge the firing alert `id`; `link_level` when it comes from a signed link.
    Ack {
        id: String,
        link_level: Option<tocsin_model::Level>,
        by: String,
        comment: String,
        reply: oneshot::Sender<Result<tocsin_dispatch::Ack, AckFailure>>,
    },
    /// Take a host out of service: forget it (no more `HostDown`) and resolve its alerts.
    ForgetHost {
        host: String,
        reply: oneshot::Sender<Result<(), OpFailure>>,
    },
    /// Alerts raised elsewhere, posted as to an Alertmanager. Those taken are durable when
    /// answered; the answer names those refused (the rest are taken, as Alertmanager does).
    PostAlerts {
        alerts: Vec<tocsin_rules::external::Posted>,
        reply: oneshot::Sender<Result<(), OpFailure>>,
    },
    /// An agent asks for the action requests of its host (each handed out once).
    PollActions {
        host: String,
        reply: oneshot::Sender<Result<Vec<tocsin_remedy::Request>, String>>,
    },
    /// The result of an action request, from the agent or the collector's own runner.
    ActionResult {
        id: String,
        status: tocsin_remedy::ResultStatus,
        summary: String,
        output: String,
        reply: oneshot::Sender<Result<(), OpFailure>>,
    },
    Incident {
        id: String,
        op: IncidentOp,
        reply: oneshot::Sender<Result<(), OpFailure>>,
    },
    /// The newest sample of every series fresh within `stale_after`, in the text exposition
    /// format, leaving out metric names in `skip` (the collector's own).
    Federate {
        skip: std::collections::HashSet<String>,
        reply: oneshot::Sender<String>,
    },
}

/// Why a request about an incident or an action's result did not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpFailure {
    /// Nothing by that id.
    NotFound(String),
    /// The request contradicts the current state (a resolved incident, a finished action).
    Refused(String),
    /// No room for more (a documented bound): try again later.
    Full(String),
    /// Not written: the sender should try again.
    Storage(String),
}

impl std::fmt::Display for OpFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpFailure::NotFound(e)
            | OpFailure::Refused(e)
            | OpFailure::Full(e)
            | OpFailure::Storage(e) => f.write_str(e),
        }
    }
}

/// Why an acknowledgement did not take.
#[derive(Debug)]
pub enum AckFailure {
    Refused(tocsin_dispatch::AckError),
    Storage(String),
}

#[derive(Debug, Clone)]
pub enum WriteError {
    /// Retry later: the store is temporarily unable to write (disk full, locked).
    Unavailable(String),
    Failed(String),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Unavailable(e) => write!(f, "storage temporarily unavailable: {e}"),
            WriteError::Failed(e) => write!(f, "storage failed: {e}"),
        }
    }
}

/// Replies sent after the group commits (or fails).
pub(super) enum Reply {
    Poll(
        oneshot::Sender<Result<Vec<tocsin_remedy::Request>, String>>,
        Vec<tocsin_remedy::Request>,
    ),
    Done(
        oneshot::Sender<Result<(), OpFailure>>,
        Result<(), OpFailure>,
    ),
}

impl Reply {
    pub(super) fn send_ok(self) {
        match self {
            Reply::Poll(tx, reqs) => {
                let _ = tx.send(Ok(reqs));
            }
            Reply::Done(tx, r) => {
                let _ = tx.send(r);
            }
        }
    }

    pub(super) fn send_err(self, e: String) {
        match self {
            Reply::Poll(tx, _) => {
                let _ = tx.send(Err(e));
            }
            Reply::Done(tx, _) => {
                let _ = tx.send(Err(OpFailure::Storage(e)));
            }
        }
    }
}
