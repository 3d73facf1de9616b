//! Training one ensemble member on one fold, from the command line or from a program.
//!
//! This crate owns
//! - [`config`]: the serialisable run configuration (TOML) with documented defaults;
//! - [`optim`]: Adam (Keras' formula, the reference), AdamW and SGD with state we can checkpoint;
//! - [`loss`]: softmax and sigmoid cross-entropy with label smoothing, soft targets and class weights;
//! - [`ema`]: the exponential moving average of the weights;
//! - [`checkpoint`] and [`history`]: atomic checkpoints and the per-epoch metric files;
//! - [`trainer`]: the loop itself ([`train`]), with validation, early stopping and resumption.
//!
//! ```no_run
//! use orchard_train::{config::TrainConfig, progress::Console, train};
//!
//! let mut config = TrainConfig::default();
//! config.data.dir = "demo/data".into();
//! config.data.folds = Some(5);
//! let summary = train(config, "runs/b0-fold0".as_ref(), false, &mut Console::new()).unwrap();
//! println!("best val AUC {:?} at epoch {:?}", summary.best, summary.best_epoch);
//! ```

pub mod amp;
pub mod checkpoint;
pub mod config;
pub mod ema;
pub mod history;
pub mod loss;
pub mod optim;
mod pretrained;
pub mod progress;
mod targets;
pub mod trainer;

pub use config::TrainConfig;
pub use trainer::{train, RunState, Summary, TrainError};
