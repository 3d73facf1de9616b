//! Integration tests of orchard-models: one binary, one file per topic.
//!
//! - `sweep`: every registered model against REFERENCE.md's parameter counts, and a forward and backward pass.
//! - `keras_parity`: the same random weights and input through Keras and Orchard, in evaluation and training
//!   mode. It runs the reference framework at test time through the Python named by `ORCHARD_PYTHON`.

mod keras_parity;
mod sweep;

/// Whether every element of `t` is finite.
fn all_finite(t: &tch::Tensor) -> bool {
    t.isfinite().all().int64_value(&[]) == 1
}
