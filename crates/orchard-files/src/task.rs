//! What a target vector means.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a target vector means, which decides the loss, the metrics, how folds are stratified and how a
/// blend is normalised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Task {
    /// Exactly one class per sample (targets are one-hot; softmax and cross-entropy).
    #[serde(rename = "multi-class")]
    MultiClass,
    /// Any set of classes per sample (targets are multi-hot; sigmoid and binary cross-entropy).
    #[serde(rename = "multi-label")]
    MultiLabel,
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Task::MultiClass => "multi-class",
            Task::MultiLabel => "multi-label",
        })
    }
}
