//! The experiment file (`orchard run EXPERIMENT`), everything in it but the `[ensemble]` table: read,
//! its members resolved into training configurations and validated. It lives here, without libtorch, so
//! that the fuzz target `experiment_toml` reaches the same code `orchard run` does; `orchard-ensemble`
//! reads the `[ensemble]` table (`spec::EnsembleTable`) and `orchard-experiment` puts the two together.
//!
//! ```toml
//! data = "demo/data"          # dataset folder (any layout `orchard data check` reads)
//! out = "demo/experiment"     # the experiment's directory
//! folds = 3                   # K; the fold assignment is stratified and seeded
//! seed = 0
//! tta = "flips"               # none, flips or dihedral: for out-of-fold and test predictions
//! skip_bad = false            # true: drop training rows whose image does not decode (OUT/skipped.csv)
//!
//! [ensemble]                  # as `orchard ensemble`'s flags; default: greedy weight search
//! method = "search"
//! [[ensemble.compare]]        # optional: other blends scored beside it
//! name = "equal"
//! method = "mean"
//!
//! [predict]                   # optional: batch, device (default auto), workers, precision of the gather step
//! device = "cpu"
//! precision = "f32"           # f32 (default), bf16 (faster on AVX-512 BF16/AMX CPUs and GPUs), f16 (CUDA)
//!
//! [defaults]                  # a training configuration (the layout of `orchard train --config`)
//! epochs = 3                  # applied to every member, under the member's own settings
//! batch_norm_momentum = 0.9
//! [defaults.schedule.function]
//! kind = "constant"
//! lr = 0.001
//!
//! [[member]]
//! name = "b0"                 # the member's directory name: OUT/members/b0
//! arch = "efficientnet_b0"    # shorthand for [model] arch
//! size = 64                   # shorthand for [data] size: N, or [height, width]
//! batch = 16                  # ... and any other training setting
//! ```
//!
//! A member is its `[defaults]` merged with its own table (tables merge key by key, the member winning),
//! read as a `TrainConfig`, so a typo is refused as `orchard train --config` refuses it. The experiment
//! owns the fold settings, the run directories and which rows are dropped: `out`, `data.dir`, `data.folds`,
//! `data.fold`, `data.folds_csv` and `data.skip_bad` may not appear in `[defaults]` or a member (`skip_bad`
//! at the top sets the last for all).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::{Table, Value};

use crate::config::{Device, Precision};
use crate::{TrainConfig, Tta};

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    data: PathBuf,
    out: PathBuf,
    #[serde(default = "default_folds")]
    folds: usize,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    tta: Tta,
    #[serde(default)]
    skip_bad: bool,
    #[serde(default)]
    ensemble: Table,
    #[serde(default)]
    predict: PredictSettings,
    #[serde(default)]
    defaults: Table,
    #[serde(default, rename = "member")]
    members: Vec<Table>,
}

fn default_folds() -> usize {
    5
}

/// How the gather step predicts.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PredictSettings {
    /// Images per batch (default: each run's validation batch).
    pub batch: Option<usize>,
    /// `cpu`, `cuda`, `cuda:N` or `auto` (the default: CUDA when available).
    pub device: Device,
    /// Decode threads (default: one per core).
    pub workers: Option<usize>,
    /// Arithmetic of the inference form that predicts (`orchard predict --precision`): f32 by default, as
    /// bf16 moves validation AUC by about 0.001–0.003 (bench/precision_auc.sh).
    pub precision: Precision,
}

/// One member: a name and its training configuration, the fold settings not yet filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub name: String,
    pub config: TrainConfig,
}

/// An experiment file read and validated, all but its `[ensemble]` table, which is left as written.
#[derive(Clone, Debug)]
pub struct ExperimentFile {
    pub data: PathBuf,
    pub out: PathBuf,
    /// Number of folds K (at least 2).
    pub folds: usize,
    /// Seed of the fold assignment.
    pub seed: u64,
    pub tta: Tta,
    pub skip_bad: bool,
    /// The `[ensemble]` table as written (its `compare` blends included).
    pub ensemble_table: Table,
    pub predict: PredictSettings,
    /// At least one, names distinct, each a valid training configuration.
    pub members: Vec<Member>,
}

/// Settings the experiment owns (dotted paths into a member's table).
const OWNED: [&str; 6] = ["out", "data.dir", "data.folds", "data.fold", "data.folds_csv", "data.skip_bad"];

impl ExperimentFile {
    /// Parses and validates the text of an experiment file; the error says what is wrong (without the
    /// file's name, which the caller adds).
    pub fn parse(text: &str) -> Result<ExperimentFile, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.folds < 2 {
            return Err(format!(
                "folds = {}: an experiment needs at least 2 folds (its ensemble is fitted on out-of-fold rows)",
                file.folds
            ));
        }
        for (key, value) in [("batch", file.predict.batch), ("workers", file.predict.workers)] {
            if value == Some(0) {
                return Err(format!("[predict]: {key} = 0 must be at least 1"));
            }
        }
        if file.members.is_empty() {
            return Err("no [[member]]: an experiment needs at least one".into());
        }
        if let Some(key) = owned_key(&file.defaults) {
            return Err(format!(
                "[defaults]: {key} is set by the experiment (one fold assignment and one directory per unit)"
            ));
        }
        let mut names = BTreeSet::new();
        let mut members = Vec::new();
        for (i, table) in file.members.iter().enumerate() {
            let member = resolve_member(table, &file.defaults, &file.data, file.folds, file.skip_bad)
                .map_err(|m| format!("member {}: {m}", label(table, i)))?;
            if !names.insert(member.name.clone()) {
                return Err(format!("two members are named {:?}", member.name));
            }
            members.push(member);
        }
        Ok(ExperimentFile {
            data: file.data,
            out: file.out,
            folds: file.folds,
            seed: file.seed,
            tta: file.tta,
            skip_bad: file.skip_bad,
            ensemble_table: file.ensemble,
            predict: file.predict,
            members,
        })
    }

    /// The members' names, in member order.
    pub fn member_names(&self) -> Vec<String> {
        self.members.iter().map(|m| m.name.clone()).collect()
    }
}

/// How messages name the `i`-th member table: its name, else its position.
fn label(table: &Table, i: usize) -> String {
    match table.get("name").and_then(Value::as_str) {
        Some(name) => format!("{name:?}"),
        None => format!("#{}", i + 1),
    }
}

/// The first experiment-owned setting `table` sets.
fn owned_key(table: &Table) -> Option<&'static str> {
    OWNED.into_iter().find(|key| {
        let mut value: Option<&Value> = None;
        for (depth, part) in key.split('.').enumerate() {
            value = if depth == 0 { table.get(part) } else { value.and_then(|v| v.get(part)) };
        }
        value.is_some()
    })
}

/// Merges `over` into `base`: tables key by key (recursively), anything else replaced.
fn merge(base: &mut Table, over: &Table) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// The sub-table `key` of `table`, created when missing.
fn section<'a>(table: &'a mut Table, key: &str) -> Result<&'a mut Table, String> {
    table
        .entry(key)
        .or_insert_with(|| Value::Table(Table::new()))
        .as_table_mut()
        .ok_or_else(|| format!("{key} must be a table"))
}

/// A member table with its defaults, shorthands expanded, read as a training configuration.
fn resolve_member(
    table: &Table,
    defaults: &Table,
    data: &Path,
    folds: usize,
    skip_bad: bool,
) -> Result<Member, String> {
    let mut table = table.clone();
    let name = match table.remove("name") {
        Some(Value::String(name)) => name,
        Some(other) => return Err(format!("name must be a string, not {other}")),
        None => return Err("has no name".into()),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) || name.starts_with('.')
    {
        return Err(format!("name {name:?} must be a non-empty file name of letters, digits, '_', '-' and '.'"));
    }
    if let Some(key) = owned_key(&table) {
        return Err(format!("{key} is set by the experiment (one fold assignment and one directory per unit)"));
    }
    let mut merged = defaults.clone();
    for (short, section_name, key) in
        [("arch", "model", "arch"), ("weights", "model", "weights"), ("size", "data", "size")]
    {
        if let Some(value) = table.remove(short) {
            let value = match (short, value) {
                ("size", Value::Integer(n)) => Value::Array(vec![Value::Integer(n), Value::Integer(n)]),
                (_, v) => v,
            };
            section(&mut table, section_name)?.insert(key.into(), value);
        }
    }
    merge(&mut merged, &table);
    let mut config: TrainConfig =
        Value::Table(merged).try_into().map_err(|e: toml::de::Error| e.message().to_string())?;
    config.data.dir = data.to_path_buf();
    config.data.folds = Some(folds);
    config.data.skip_bad = skip_bad;
    config.validate().map_err(|e| e.to_string())?;
    Ok(Member { name, config })
}
