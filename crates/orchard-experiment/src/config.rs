//! The experiment file.
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
//! [[ensemble.compare]]        # optional: other blends scored beside it (see `compare`)
//! name = "equal"
//! method = "mean"
//!
//! [predict]                   # optional: batch, device (default auto), workers of the gather step
//! device = "cpu"
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
//! at the top sets the last for all). Relative paths are taken from the current directory, as `orchard
//! train` takes them (`orchard run --data DIR --out DIR` overrides both).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use orchard_ensemble::spec::CombinerSpec;
use orchard_files::config::Device;
use orchard_files::{TrainConfig, Tta};
use serde::Deserialize;
use toml::{Table, Value};

use crate::compare::{self, Compare};
use crate::{ExperimentError, Result};

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
    /// A `CombinerSpec` and its `compare` blends.
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
}

/// A validated experiment.
#[derive(Clone, Debug)]
pub struct Experiment {
    /// The file it was read from, for messages.
    pub file: PathBuf,
    pub data: PathBuf,
    pub out: PathBuf,
    /// Number of folds K.
    pub folds: usize,
    /// Seed of the fold assignment.
    pub seed: u64,
    pub tta: Tta,
    /// Drop the training rows whose image does not decode, in every unit alike (listed in `OUT/skipped.csv`).
    pub skip_bad: bool,
    pub ensemble: CombinerSpec,
    /// Blends reported beside the ensemble (`[[ensemble.compare]]`).
    pub compare: Vec<Compare>,
    pub predict: PredictSettings,
    pub members: Vec<Member>,
}

/// One member: a name and its training configuration, the fold settings not yet filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub name: String,
    pub config: TrainConfig,
}

/// Settings the experiment owns (dotted paths into a member's table).
const OWNED: [&str; 6] = ["out", "data.dir", "data.folds", "data.fold", "data.folds_csv", "data.skip_bad"];

impl Experiment {
    /// Points the experiment and every member at another dataset folder.
    pub fn set_data(&mut self, dir: PathBuf) {
        for member in &mut self.members {
            member.config.data.dir = dir.clone();
        }
        self.data = dir;
    }

    /// Makes the experiment's paths (and its members') absolute against the working directory, so that
    /// the configurations saved in its units name the same files from wherever they are resumed.
    pub fn absolutize(&mut self) {
        for path in [&mut self.data, &mut self.out] {
            *path = std::path::absolute(&*path).unwrap_or_else(|_| path.clone());
        }
        for member in &mut self.members {
            member.config.absolutize();
        }
    }

    /// Drops the training rows whose image does not decode, in every member alike (`orchard run --skip-bad`).
    pub fn set_skip_bad(&mut self) {
        for member in &mut self.members {
            member.config.data.skip_bad = true;
        }
        self.skip_bad = true;
    }

    /// Reads and validates an experiment file.
    pub fn read(path: &Path) -> Result<Experiment> {
        let text = orchard_files::input::read_to_string(path, orchard_files::input::TEXT)
            .map_err(|e| ExperimentError::File { path: path.to_path_buf(), message: e.to_string() })?;
        Experiment::parse(&text, path)
    }

    /// Parses the text of an experiment file; `path` names it in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Experiment> {
        let bad = |message: String| ExperimentError::File { path: path.to_path_buf(), message };
        let mut file: File = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let compare = file.ensemble.remove("compare");
        let ensemble = CombinerSpec::deserialize(Value::Table(std::mem::take(&mut file.ensemble)))
            .map_err(|e| bad(format!("[ensemble]: {}", e.message())))?;
        if file.folds < 2 {
            return Err(bad(format!(
                "folds = {}: an experiment needs at least 2 folds (its ensemble is fitted on out-of-fold rows)",
                file.folds
            )));
        }
        for (key, value) in [("batch", file.predict.batch), ("workers", file.predict.workers)] {
            if value == Some(0) {
                return Err(bad(format!("[predict]: {key} = 0 must be at least 1")));
            }
        }
        if file.members.is_empty() {
            return Err(bad("no [[member]]: an experiment needs at least one".into()));
        }
        if let Some(key) = owned_key(&file.defaults) {
            return Err(bad(format!(
                "[defaults]: {key} is set by the experiment (one fold assignment and one directory per unit)"
            )));
        }
        ensemble.combiner().map_err(|e| bad(format!("[ensemble]: {e}")))?;
        let mut names = BTreeSet::new();
        let mut members = Vec::new();
        for (i, table) in file.members.iter().enumerate() {
            let member = resolve_member(table, &file.defaults, &file.data, file.folds, file.skip_bad)
                .map_err(|m| bad(format!("member {}: {m}", label(table, i))))?;
            if !names.insert(member.name.clone()) {
                return Err(bad(format!("two members are named {:?}", member.name)));
            }
            members.push(member);
        }
        let member_names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
        let compare = compare.map(|c| compare::parse(c, &member_names)).transpose().map_err(bad)?.unwrap_or_default();
        Ok(Experiment {
            file: path.to_path_buf(),
            data: file.data,
            out: file.out,
            folds: file.folds,
            seed: file.seed,
            tta: file.tta,
            skip_bad: file.skip_bad,
            ensemble,
            compare,
            predict: file.predict,
            members,
        })
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
fn section<'a>(table: &'a mut Table, key: &str) -> std::result::Result<&'a mut Table, String> {
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
) -> std::result::Result<Member, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use orchard_metrics::schedule::Schedule;

    const FILE: &str = r#"
data = "d"
out = "o"
folds = 3
tta = "dihedral"
[ensemble]
method = "rank"
[defaults]
epochs = 4
batch = 8
[defaults.schedule.function]
kind = "constant"
lr = 0.001
[defaults.data]
cache = true
[defaults.model]
head_init = "torch"

[[member]]
name = "b0"
arch = "efficientnet_b0"
size = 32

[[member]]
name = "mnv2-wide"
arch = "mobilenet_v2"
size = [24, 40]
epochs = 2
[member.data]
cache = false
[member.schedule.function]
kind = "constant"
lr = 0.01
"#;

    #[test]
    fn members_are_their_defaults_under_their_own_settings() {
        let e = Experiment::parse(FILE, Path::new("e.toml")).unwrap();
        assert_eq!((e.folds, e.tta, e.ensemble.method.as_str()), (3, Tta::Dihedral, "rank"));
        let [a, b] = &e.members[..] else { panic!("two members") };
        assert_eq!(
            (a.name.as_str(), a.config.model.arch.as_str(), a.config.data.size),
            ("b0", "efficientnet_b0", Some((32, 32)))
        );
        assert_eq!((a.config.epochs, a.config.batch, a.config.data.cache), (4, 8, true));
        assert_eq!(
            (b.config.data.size, b.config.epochs, b.config.batch, b.config.data.cache),
            (Some((24, 40)), 2, 8, false)
        );
        assert_eq!(b.config.schedule.function, Schedule::Constant { lr: 0.01 });
        let head_init = orchard_files::config::HeadInit::Torch;
        assert_eq!((a.config.model.head_init, b.config.model.head_init), (head_init, head_init));
        assert_eq!((b.config.data.dir.as_path(), b.config.data.folds), (Path::new("d"), Some(3)));
        let defaults =
            Experiment::parse("data = \"d\"\nout = \"o\"\n[[member]]\nname = \"m\"\n", Path::new("e.toml")).unwrap();
        assert_eq!((defaults.folds, defaults.tta, defaults.ensemble.method.as_str()), (5, Tta::None, "search"));
        assert_eq!(
            defaults.members[0].config,
            TrainConfig { data: defaults.members[0].config.data.clone(), ..TrainConfig::default() }
        );
    }

    #[test]
    fn blends_to_compare_are_read_with_the_members_names() {
        let text = FILE.replace(
            "method = \"rank\"\n",
            "method = \"rank\"\n[[ensemble.compare]]\nname = \"fixed\"\nmethod = \"weighted\"\nweights = { mnv2-wide = 3 }\n",
        );
        let e = Experiment::parse(&text, Path::new("e.toml")).unwrap();
        assert_eq!((e.ensemble.method.as_str(), e.compare.len()), ("rank", 1));
        assert_eq!((e.compare[0].name.as_str(), e.compare[0].spec.weights.clone()), ("fixed", Some(vec![0.0, 3.0])));
        assert!(Experiment::parse(FILE, Path::new("e.toml")).unwrap().compare.is_empty());
        let err = Experiment::parse(&text.replace("mnv2-wide = 3", "b1 = 3"), Path::new("e.toml")).unwrap_err();
        assert!(err.to_string().contains("[[ensemble.compare]] \"fixed\": weights name \"b1\""), "{err}");
        let err = Experiment::parse(&FILE.replace("method = \"rank\"", "methd = \"rank\""), Path::new("e.toml"));
        assert!(err.unwrap_err().to_string().contains("[ensemble]: unknown field `methd`"));
    }

    #[test]
    fn mistakes_name_the_file_and_the_member() {
        let cases = [
            (FILE.replace("epochs = 2", "epohcs = 2"), "member \"mnv2-wide\": unknown field `epohcs`"),
            (FILE.replace("cache = false", "fold = 1"), "member \"mnv2-wide\": data.fold is set by the experiment"),
            (
                FILE.replace("[defaults.data]", "[defaults.data]\nfolds_csv = \"f.csv\""),
                "[defaults]: data.folds_csv is set by the experiment",
            ),
            (FILE.replace("name = \"mnv2-wide\"", "name = \"b0\""), "two members are named \"b0\""),
            (FILE.replace("name = \"mnv2-wide\"", "name = \"../x\""), "must be a non-empty file name"),
            (FILE.replace("method = \"rank\"", "method = \"weighted\""), "[ensemble]: method weighted needs weights"),
            (FILE.replace("folds = 3", "folds = 1"), "at least 2 folds"),
            (FILE.replace("tta = \"dihedral\"", "tta = \"rot\""), "unknown variant `rot`"),
            (FILE.replace("epochs = 2", "epochs = 0"), "member \"mnv2-wide\": invalid training configuration: epochs"),
            (
                FILE.replace("lr = 0.01", "lr = -1.0"),
                "member \"mnv2-wide\": invalid training configuration: schedule.function: lr = -1 must be",
            ),
            (
                FILE.replace("batch = 8", "batch = 8\n[defaults.optimizer]\nmomentum = nan"),
                "member \"b0\": invalid training configuration: optimizer.momentum: NaN must lie in [0, 1)",
            ),
            (FILE.replace("[defaults]", "[predict]\nworkers = 0\n[defaults]"), "[predict]: workers = 0"),
        ];
        for (text, want) in cases {
            let err = Experiment::parse(&text, Path::new("exp.toml")).unwrap_err().to_string();
            assert!(err.starts_with("exp.toml: ") && err.contains(want), "{want}: {err}");
        }
    }
}
