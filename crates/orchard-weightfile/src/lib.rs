//! The bytes of untrusted weight files, parsed without libtorch.
//!
//! [`torch`] reads PyTorch's `.pth` files (zip and legacy) through the restricted [`pickle`] machine;
//! [`safetensors`] reads `.safetensors` files. Both return [`RawTensor`]s: a name, a [`Dtype`], a shape and
//! the tensor's contiguous little-endian bytes, which `orchard-models` turns into libtorch tensors. Nothing
//! here links libtorch, so the parsers can be fuzzed on their own (`fuzz/` at the repository root), and every
//! allocation is bounded by the size of the file being read.

pub mod dtype;
pub mod pickle;
pub mod safetensors;
pub mod torch;

use std::borrow::Cow;

pub use dtype::Dtype;

/// A tensor read from a file: contiguous, row-major, little-endian bytes of `dtype`.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor<'a> {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<i64>,
    /// Exactly `shape`'s element count times the element size; borrowed from the file where it lies there
    /// contiguously.
    pub data: Cow<'a, [u8]>,
}
