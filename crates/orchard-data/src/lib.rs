//! Orchard's input pipeline: everything between a folder of photos and a batch of pixels.
//!
//! The flow is `dataset` (read and validate a Kaggle-style layout) → `decode` (JPEG/PNG to RGB, at reduced
//! DCT scale when the target is small) → `resize` → `augment` (seeded per sample) → `loader` (parallel
//! workers, bounded prefetch, batches of u8 NHWC pixels), with `cache` (decode once into a memory-mapped
//! file) beside it. The files a dataset is described by (CSV tables, folds) and the problems reported about
//! them are `orchard-files`'. Datasets to try it on (the procedural demo leaves and the ELPV importer) are
//! written by `orchard-demo`, outside the input path.
//!
//! This crate does not link libtorch: batches are plain pixel buffers, and `orchard-torch` hands them to
//! libtorch without copying them.

pub mod augment;
pub mod cache;
pub mod dataset;
pub mod decode;
pub mod image;
pub mod loader;
pub mod pipeline;
pub mod resize;
