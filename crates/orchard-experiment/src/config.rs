//! The experiment file: what `orchard_files::experiment_file` reads (the members resolved into training
//! configurations, without libtorch, so the fuzz target `experiment_toml` reaches it) and the `[ensemble]`
//! table `orchard_ensemble::spec::EnsembleTable` reads, put together. The file's layout is documented in
//! `orchard_files::experiment_file`. Relative paths are taken from the current directory, as `orchard
//! train` takes them (`orchard run --data DIR --out DIR` overrides both).

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use orchard_ensemble::spec::{CombinerSpec, Compare, EnsembleTable};
use orchard_files::experiment_file::ExperimentFile;
pub use orchard_files::experiment_file::{Member, PredictSettings};

use crate::{ExperimentError, Result};

/// A validated experiment: the file's settings (reached through `Deref`: `experiment.data`,
/// `experiment.members`, …) and its ensemble.
#[derive(Clone, Debug)]
pub struct Experiment {
    /// The file it was read from, for messages.
    pub file: PathBuf,
    /// Everything but the ensemble, as `orchard_files::experiment_file` read it.
    pub settings: ExperimentFile,
    pub ensemble: CombinerSpec,
    /// Blends reported beside the ensemble (`[[ensemble.compare]]`).
    pub compare: Vec<Compare>,
}

impl Deref for Experiment {
    type Target = ExperimentFile;

    fn deref(&self) -> &ExperimentFile {
        &self.settings
    }
}

impl DerefMut for Experiment {
    fn deref_mut(&mut self) -> &mut ExperimentFile {
        &mut self.settings
    }
}

impl Experiment {
    /// Points the experiment and every member at another dataset folder.
    pub fn set_data(&mut self, dir: PathBuf) {
        for member in &mut self.settings.members {
            member.config.data.dir = dir.clone();
        }
        self.settings.data = dir;
    }

    /// Makes the experiment's paths (and its members') absolute against the working directory, so that
    /// the configurations saved in its units name the same files from wherever they are resumed.
    pub fn absolutize(&mut self) {
        let settings = &mut self.settings;
        for path in [&mut settings.data, &mut settings.out] {
            *path = std::path::absolute(&*path).unwrap_or_else(|_| path.clone());
        }
        for member in &mut settings.members {
            member.config.absolutize();
        }
    }

    /// Drops the training rows whose image does not decode, in every member alike (`orchard run --skip-bad`).
    pub fn set_skip_bad(&mut self) {
        for member in &mut self.settings.members {
            member.config.data.skip_bad = true;
        }
        self.settings.skip_bad = true;
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
        let settings = ExperimentFile::parse(text).map_err(bad)?;
        let ensemble = EnsembleTable::parse(settings.ensemble_table.clone(), &settings.member_names()).map_err(bad)?;
        Ok(Experiment { file: path.to_path_buf(), settings, ensemble: ensemble.spec, compare: ensemble.compare })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchard_files::{TrainConfig, Tta};
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
head_init = "glorot"

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
        let head_init = orchard_files::config::HeadInit::Glorot;
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
