//! `orchard ensemble`, `orchard score` and `orchard submission check`: combining members' prediction CSVs,
//! scoring a prediction CSV against the truth, and checking a submission before upload. The work is in
//! `orchard-ensemble`; this file turns flags into its configurations and prints results.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use orchard_data::dataset::{read_skipped, read_truth_with, ImageCheck, LoadOptions};
use orchard_ensemble::aligned;
use orchard_ensemble::run::{self, Combiner, Oof};
use orchard_ensemble::spec::CombinerSpec;
use orchard_ensemble::submission::{self, Format, Sample, TestIds};
use orchard_files::{Predictions, Task, Truth};

use crate::args::{self, TaskArg};
use crate::usage::UsageError;

/// Combine members' prediction CSVs into one prediction or submission.
#[derive(Args)]
pub struct EnsembleArgs {
    /// A member's test predictions (`image_id` + one probability column per class); repeat per member.
    #[arg(long = "pred", required = true)]
    pub preds: Vec<PathBuf>,
    /// How the members are combined.
    #[arg(long, value_enum, default_value_t = MethodArg::Mean)]
    pub method: MethodArg,
    /// One weight per member, comma-separated (required by weighted; optional for rank, geometric, power).
    #[arg(long, value_delimiter = ',')]
    pub weights: Option<Vec<f64>>,
    /// Exponent of the power mean.
    #[arg(long)]
    pub power: Option<f64>,
    /// A member's out-of-fold predictions, in the same member order as --pred; repeat per member.
    #[arg(long = "oof")]
    pub oofs: Vec<PathBuf>,
    /// The labels: a Kaggle one-hot train CSV, an image,label(s) CSV, or a dataset folder.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// A `skipped.csv` of a run or experiment trained with --skip-bad: its ids are left out of the truth
    /// (and of --folds), as they are out of the run's out-of-fold predictions; repeatable.
    #[arg(long)]
    pub skipped: Vec<PathBuf>,
    /// Folds CSV (`image_id,fold`, as `orchard data folds` writes); search and stack need it.
    #[arg(long)]
    pub folds: Option<PathBuf>,
    /// Search algorithm.
    #[arg(long, value_enum, default_value_t = SearchArg::Greedy)]
    pub search: SearchArg,
    /// What the search blends.
    #[arg(long, value_enum, default_value_t = SearchSpaceArg::Probabilities)]
    pub search_space: SearchSpaceArg,
    /// Greedy search: selection steps.
    #[arg(long, default_value_t = 50)]
    pub iterations: usize,
    /// Greedy search: bags of random member subsets (0: no bagging).
    #[arg(long, default_value_t = 0)]
    pub bags: usize,
    /// Seed of the search.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stacking: inverse strength of the L2 penalty (scikit-learn's C).
    #[arg(long, default_value_t = 1.0)]
    pub c: f64,
    /// The task (default: the truth's, else multi-label for a label-list sample submission, else multi-class
    /// when every prediction row sums to 1).
    #[arg(long, value_enum)]
    pub task: Option<TaskArg>,
    /// Output CSV: the combined predictions, or the submission with --sample-submission.
    #[arg(long)]
    pub out: PathBuf,
    /// Write a submission in this sample submission's column order (and id order, unless --test is given).
    #[arg(long)]
    pub sample_submission: Option<PathBuf>,
    /// Test table whose id order the submission follows.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Write the summary here as JSON, and as text beside it (.txt).
    #[arg(long)]
    pub summary: Option<PathBuf>,
}

/// Score a prediction CSV against the truth.
#[derive(Args)]
pub struct ScoreArgs {
    /// The labels: a Kaggle one-hot train CSV, an image,label(s) CSV, or a dataset folder.
    #[arg(long)]
    pub truth: PathBuf,
    /// Predictions (`image_id` + one probability column per class) for the same ids.
    #[arg(long)]
    pub pred: PathBuf,
    /// A `skipped.csv` of a run trained with --skip-bad: its ids are left out of the truth; repeatable.
    #[arg(long)]
    pub skipped: Vec<PathBuf>,
}

/// The truth at `path` without the ids of the `skipped` files (a dataset folder then loaded with its bad
/// rows dropped, as the run that wrote them loaded it), saying on stderr how many rows each took out.
fn read_truth_without(path: &Path, skipped: &[PathBuf]) -> Result<Truth> {
    let options = LoadOptions { skip_bad: !skipped.is_empty(), images: ImageCheck::Exists };
    let mut truth = read_truth_with(path, &options)?;
    for file in skipped {
        let ids = read_skipped(file)?;
        let gone = truth.without(&ids);
        eprintln!(
            "left out of the truth: {gone} row(s) of the {} id(s) {} lists (dropped by --skip-bad)",
            ids.len(),
            file.display()
        );
    }
    Ok(truth)
}

#[derive(Subcommand)]
pub enum SubmissionCommand {
    /// Check a submission against the sample submission and the test ids; exit 2 listing every problem.
    Check(CheckArgs),
}

#[derive(Args)]
pub struct CheckArgs {
    /// The competition's sample_submission.csv.
    #[arg(long)]
    pub sample: PathBuf,
    /// The test table (test.csv); default: the sample submission's ids.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// The submission to check.
    #[arg(long)]
    pub pred: PathBuf,
    /// The task: multi-class rows must sum to 1.
    #[arg(long, value_enum, default_value_t = TaskArg::MultiClass)]
    pub task: TaskArg,
    /// Allowed labels of a label-list submission, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<String>>,
}

/// The combiner the flags describe.
fn combiner(args: &EnsembleArgs) -> Result<(Combiner, String)> {
    let spec = CombinerSpec {
        method: args::name(args.method),
        weights: args.weights.clone(),
        power: args.power,
        search: args::name(args.search),
        search_space: args::name(args.search_space),
        iterations: args.iterations,
        bags: args.bags,
        seed: args.seed,
        c: args.c,
    };
    Ok((spec.combiner()?, spec.label()))
}

pub fn run_ensemble(args: EnsembleArgs) -> Result<()> {
    let (combiner, label) = combiner(&args)?;
    if !args.oofs.is_empty() && args.truth.is_none() {
        return Err(UsageError("--oof needs --truth to score against".into()).into());
    }
    let test = aligned::read_aligned(&args.preds)?;
    if !args.skipped.is_empty() && args.truth.is_none() {
        return Err(UsageError("--skipped leaves rows out of the truth: it needs --truth".into()).into());
    }
    let truth = args.truth.as_deref().map(|t| read_truth_without(t, &args.skipped)).transpose()?;
    let oof = match &truth {
        Some(truth) if !args.oofs.is_empty() => {
            let members = aligned::read_aligned(&args.oofs)?;
            let aligned_truth = truth.aligned(&args.oofs[0], &members.ids, &members.classes)?;
            let folds = args.folds.as_deref().map(|f| truth.folds(f, &members.ids)).transpose()?;
            Some(Oof { members, truth: aligned_truth, folds })
        }
        _ => None,
    };
    let sample = args.sample_submission.as_deref().map(Sample::read).transpose()?;
    let task = match (&args.task, &truth, &sample) {
        (Some(t), _, _) => Task::from(*t),
        (None, Some(truth), _) => truth.task,
        (None, None, Some(Sample { format: Format::Labels { .. }, .. })) => Task::MultiLabel,
        (None, None, _) => {
            let sums_to_one = test
                .members
                .iter()
                .all(|m| m.chunks_exact(test.n_classes()).all(|r| (r.iter().sum::<f64>() - 1.0).abs() <= 1e-4));
            if sums_to_one {
                Task::MultiClass
            } else {
                Task::MultiLabel
            }
        }
    };

    let mut outcome = run::run(&combiner, &label, &test, oof.as_ref(), task)?;
    match &sample {
        Some(sample) => {
            let test_ids = match &args.test {
                Some(path) => TestIds::read(path)?,
                None => TestIds::of_sample(sample),
            };
            submission::write_outcome(&args.out, sample, &test_ids, &mut outcome, oof.as_ref(), &args.preds[0], task)?;
        }
        None => outcome.predictions.write(&args.out)?,
    }
    if let Some(path) = &args.summary {
        outcome.summary.write(path).with_context(|| format!("writing the summary {}", path.display()))?;
    }
    out!("{}", outcome.summary)?;
    outln!("wrote {} ({} rows)", args.out.display(), outcome.predictions.rows())?;
    Ok(())
}

pub fn run_score(args: ScoreArgs) -> Result<()> {
    let truth = read_truth_without(&args.truth, &args.skipped)?;
    let pred = Predictions::read(&args.pred)?;
    let targets = truth.aligned(&args.pred, &pred.ids, &pred.classes)?;
    let k = pred.classes.len();
    let auc = orchard_metrics::mean_column_auc(&targets, &pred.values, k)?;
    let text = |v: Option<f64>| v.map_or_else(|| "undefined".to_string(), |v| v.to_string());
    outln!("mean_auc: {}", text(auc.mean))?;
    for (class, v) in pred.classes.iter().zip(&auc.per_class) {
        outln!("auc_{class}: {}", text(*v))?;
    }
    if truth.task == Task::MultiClass {
        outln!("accuracy: {}", orchard_metrics::accuracy(&targets, &pred.values, k)?)?;
        outln!("log_loss: {}", orchard_metrics::log_loss(&targets, &pred.values, k)?)?;
    }
    Ok(())
}

pub fn run_submission(command: SubmissionCommand) -> Result<()> {
    let SubmissionCommand::Check(args) = command;
    let task = Task::from(args.task);
    let sample = Sample::read(&args.sample)?;
    let test = match &args.test {
        Some(path) => TestIds::read(path)?,
        None => TestIds::of_sample(&sample),
    };
    let report = submission::check(&sample, &test, &args.pred, task, args.classes.as_deref())?;
    outln!("{}: ok, {} rows, columns {}", args.pred.display(), report.rows, report.columns.join(","))?;
    Ok(())
}

/// `--method` of `ensemble`.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum MethodArg {
    /// Arithmetic mean.
    Mean,
    /// Weighted mean (needs --weights).
    Weighted,
    /// Mean of per-class ranks.
    Rank,
    /// Geometric mean.
    Geometric,
    /// Power mean (needs --power).
    Power,
    /// Weights chosen on out-of-fold AUC (needs --oof, --truth, --folds).
    Search,
    /// A logistic-regression meta-model (needs --oof, --truth, --folds).
    Stack,
}

/// `--search` of `ensemble`.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum SearchArg {
    /// Caruana's greedy forward selection.
    Greedy,
    /// A pattern search over the simplex.
    Simplex,
}

/// `--search-space` of `ensemble`.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum SearchSpaceArg {
    /// A weighted mean of the probabilities.
    Probabilities,
    /// A weighted average of per-class ranks.
    Ranks,
}
