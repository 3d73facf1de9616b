//! Training one ensemble member on one fold, from the command line or from a program.
//!
//! This crate owns (the run's configuration, metrics files and state are `orchard-files`')
//! - [`optim`]: Adam (Keras' formula, the reference), AdamW and SGD with state we can checkpoint;
//! - [`loss`]: softmax and sigmoid cross-entropy with label smoothing, soft targets and class weights;
//! - [`ema`]: the exponential moving average of the weights;
//! - [`estimate`]: a run's memory and time, measured on a few steps before it starts;
//! - [`network`]: a classifier set up to train (device, memory layout, variables in a stable order);
//! - [`replicas`]: data-parallel training over several processes (libtorch's c10d), the seam between the
//!   backward pass and the optimizer step;
//! - [`trainer`]: the loop itself ([`train`]), with validation, early stopping and resumption.
//!
//! ```no_run
//! use orchard_files::TrainConfig;
//! use orchard_train::{progress::Console, train};
//!
//! let mut config = TrainConfig::default();
//! config.data.dir = "demo/data".into();
//! config.data.folds = Some(5);
//! let summary = train(config, "runs/b0-fold0".as_ref(), false, &mut Console::new()).unwrap();
//! println!("best val AUC {:?} at epoch {:?}", summary.best, summary.best_epoch);
//! ```

pub mod amp;
pub mod ema;
pub mod estimate;
pub mod loss;
pub mod network;
pub mod optim;
pub mod pretrained;
pub mod progress;
pub mod replicas;
mod targets;
pub mod trainer;

pub use trainer::{train, train_on, train_with, Loaded, Summary, TrainError};
