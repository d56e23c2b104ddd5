//! What the rules decided about one stream.

use std::collections::BTreeMap;

use crate::plex::Session;

use super::{Action, ThrottleSpec, Value, Vars};

/// Something the pipeline decided to do about a stream.
#[derive(Debug, Clone)]
pub struct Decision {
    pub rule: String,
    pub action: Action,
    pub session: Session,
    pub message: String,
    /// The values the rule read (None = unknown).
    pub values: BTreeMap<&'static str, Option<Value>>,
    /// The decision rests on an estimated measurement.
    pub estimated: bool,
    /// Every variable's value for the stream when the decision was made (what a
    /// notification shows beyond the values the rule read).
    pub vars: Vars,
    /// The rate and release of a `throttle` decision.
    pub throttle: Option<ThrottleSpec>,
}
