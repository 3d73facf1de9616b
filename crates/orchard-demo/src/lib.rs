//! Datasets to try Orchard on, written in the layouts `orchard-data` reads.
//!
//! `synth` draws a procedural stand-in for Kaggle's Plant Pathology 2020 (apple leaves with rust and scab
//! lesions, deterministic for a seed) for `orchard data synth`, the demo and the tests; `elpv` imports the
//! real ELPV solar-cell photos from PyPI's `elpv-dataset` package for `orchard data import-elpv`.
//!
//! Both produce datasets rather than read them, so they live apart from the input path: `orchard-data`
//! stays what every training and prediction run loads, and the drawing library (tiny-skia) and the
//! importers' file formats stay out of it. This crate uses `orchard-data` only as any other writer of a
//! dataset would (JPEG encoding, the dataset's problem reports), and does not link libtorch.

pub mod elpv;
pub mod synth;
