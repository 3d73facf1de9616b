//! The command line: every command and where its flags are defined. `--help` is generated from the doc
//! comments. Each command's raw arguments live with the command (`*_cmd.rs`, `bench/`), which validates
//! them into the libraries' configurations; shared groups and value types are in `args`.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "orchard", version, about = "Train, evaluate, combine and serve ensembles of CNN image classifiers")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Make, import, check and split datasets.
    #[command(subcommand)]
    Data(crate::data_cmd::DataCommand),
    /// Measure speed (images/second) and peak memory.
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
    /// List the registered architectures.
    #[command(subcommand)]
    Models(crate::models_cmd::ModelsCommand),
    /// Print the reference learning-rate schedule, one `EPOCH LR` line per epoch (epochs from 0).
    Schedule(crate::schedule_cmd::ScheduleArgs),
    /// Train one ensemble member on one fold.
    Train(Box<crate::train_cmd::TrainArgs>),
    /// Start N data-parallel processes of a command on this node (torchrun's variables) and wait for them.
    Launch(crate::launch_cmd::LaunchArgs),
    /// Combine members' prediction CSVs (mean, weighted, rank, geometric, power, searched weights, stacking).
    Ensemble(crate::ensemble_cmd::EnsembleArgs),
    /// Print mean column-wise ROC AUC, per-class AUC, accuracy and log loss of a prediction CSV.
    Score(crate::ensemble_cmd::ScoreArgs),
    /// Check a submission CSV.
    #[command(subcommand)]
    Submission(crate::ensemble_cmd::SubmissionCommand),
    /// Import weight files into Orchard checkpoints, and inspect them.
    #[command(subcommand)]
    Weights(crate::weights_cmd::WeightsCommand),
    /// Classify images with an architecture and a weight file (top classes, or logits as JSON).
    Classify(crate::classify_cmd::ClassifyArgs),
    /// Per-image class probabilities of trained runs (test split or out-of-fold), with optional TTA.
    Predict(crate::predict_cmd::PredictArgs),
    /// Soft targets for self-distillation: alpha · out-of-fold prediction + (1 − alpha) · label.
    Distill(crate::distill_cmd::DistillArgs),
    /// Inspect a dataset and write a commented experiment file chosen for it, the device and weight files.
    Init(crate::init_cmd::InitArgs),
    /// Run an experiment (members × folds, resumable), then predict, ensemble and write the submission.
    Run(crate::run_cmd::RunArgs),
    /// Write an experiment's units as a Slurm job array or a Kubernetes Indexed Job.
    Plan(crate::plan_cmd::PlanArgs),
    /// Write a self-contained HTML report of an experiment or a training run.
    Report(crate::report_cmd::ReportArgs),
    /// Serve an experiment's ensemble over HTTP (Open Inference Protocol v2 and POST /predict).
    Serve(crate::serve_cmd::ServeArgs),
}
