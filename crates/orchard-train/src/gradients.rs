//! The seam between the backward pass and the optimizer step. When a step's gradients are complete (after
//! the last micro-batch of an accumulation), the trainer hands them to a [`GradientSync`] before it unscales,
//! clips and applies them. One process holding the whole model and batch has nothing to do there
//! ([`Local`]); data-parallel training averages the replicas' gradients there, so that every replica takes
//! the same step.

use crate::optim::Param;

/// What happens to complete gradients before the optimizer step.
pub trait GradientSync {
    /// Called once per optimizer step with every trainable parameter, in the same order on every call
    /// (and on every replica); the gradients are in `param.tensor.grad()`.
    fn synchronise(&mut self, params: &[Param]) -> Result<(), String>;
}

/// A single process: the gradients are already the step's.
#[derive(Clone, Copy, Debug, Default)]
pub struct Local;

impl GradientSync for Local {
    fn synchronise(&mut self, _params: &[Param]) -> Result<(), String> {
        Ok(())
    }
}
