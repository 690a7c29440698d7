//! How an action request ended, as the side that ran it reports it (agent or collector) and
//! as remediation judges it: one vocabulary on both ends of the wire.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    Succeeded,
    Failed,
    TimedOut,
    /// The runner refused it (not in its allowlist, a parameter did not match).
    Refused,
}

impl ActionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Succeeded => "succeeded",
            ActionStatus::Failed => "failed",
            ActionStatus::TimedOut => "timed_out",
            ActionStatus::Refused => "refused",
        }
    }
}

impl std::fmt::Display for ActionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_names_are_the_display_names() {
        for s in [
            ActionStatus::Succeeded,
            ActionStatus::Failed,
            ActionStatus::TimedOut,
            ActionStatus::Refused,
        ] {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<ActionStatus>(&json).unwrap(), s);
        }
    }
}
