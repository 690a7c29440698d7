//! Rules: parsing and checking rule files, and evaluating multi-level rules over streaming
//! samples as a pure state machine with an injected clock. It never sends or stores anything:
//! the caller persists state changes and routes transitions to delivery.

mod engine;
pub mod expr;
pub mod external;
mod file;
mod rule;

pub use engine::{
    AlertState, Engine, EngineOptions, Evaluation, StateChange, Transition, TransitionKind,
};
pub use file::parse_file;
pub use rule::{
    score_cutoffs, CmpOp, Condition, Direction, Dynamic, Exclusion, Flapping, LevelSpec,
    ParamSource, Remediation, Rule, AGGREGATE_INTERVAL_MS,
};

/// Checks that rule names are unique across files (each file is checked on its own by
/// `parse_file`).
pub fn check_unique(rules: &[Rule]) -> Result<(), Vec<String>> {
    let mut seen = std::collections::HashMap::new();
    let mut problems = Vec::new();
    for r in rules {
        if let Some(first) = seen.insert(r.name.as_str(), r.source.as_str()) {
            problems.push(format!(
                "{}: rule {:?}: duplicate rule name (first defined at {first})",
                r.source, r.name
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests;
