//! Orchard's input pipeline: everything between a folder of photos and a batch of pixels.
//!
//! The flow is `dataset` (read and validate a Kaggle-style layout) → `decode` (JPEG/PNG to RGB, at reduced
//! DCT scale when the target is small) → `resize` → `augment` (seeded per sample) → `loader` (parallel
//! workers, bounded prefetch, batches of u8 NHWC pixels), with `cache` (decode once into a memory-mapped
//! file), `folds` (stratified k-fold) and `synth` / `elpv` (demo and real data) beside it.
//!
//! This crate does not link libtorch: batches are plain pixel buffers, and `orchard-torch` hands them to
//! libtorch without copying them.

pub mod augment;
pub mod dataset;
pub mod decode;
pub mod elpv;
pub mod folds;
pub mod image;
pub mod resize;
pub mod synth;
pub mod cache;
pub mod loader;
pub mod normalize;
pub mod pipeline;
