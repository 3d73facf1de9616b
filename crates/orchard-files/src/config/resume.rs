//! What makes a run resumable from its directory alone: the saved configuration holds absolute paths (so it
//! means the same from any working directory), and a configuration given on resuming must describe the same
//! run, only its budget and machine-facing settings changed.

use std::path::{Path, PathBuf};

use super::{Device, TrainConfig};

/// The settings a resumed run may change; every other one must equal the saved run's.
pub const CHANGEABLE_ON_RESUME: &str = "epochs, patience, device, workers, eval_batch and quiet";

impl TrainConfig {
    /// Makes every path absolute against the working directory (without resolving links or needing the
    /// files to exist), so that the configuration saved with a run still names the same files when the run
    /// is resumed from elsewhere.
    pub fn absolutize(&mut self) {
        let paths = [&mut self.data.folds_csv, &mut self.data.soft_targets, &mut self.model.weights, &mut self.out];
        for path in paths.into_iter().flatten() {
            *path = absolute(path);
        }
        if !self.data.dir.as_os_str().is_empty() {
            self.data.dir = absolute(&self.data.dir);
        }
    }

    /// Checks that a run saved with `saved` may continue under this configuration: it must be the same run.
    /// Only the epoch budget, patience and the machine-facing settings (`out`, `device`, `workers`,
    /// `eval_batch`, `quiet`) may change; the error names every other setting that differs, by its dotted
    /// key. Paths compare absolute, so a run saved with relative ones resumes from where it was started.
    pub fn check_resumable(&self, saved: &TrainConfig) -> Result<(), String> {
        let normalise = |c: &TrainConfig| {
            let mut c = TrainConfig {
                out: None,
                epochs: 0,
                patience: None,
                quiet: false,
                workers: None,
                eval_batch: None,
                device: Device::Auto,
                ..c.clone()
            };
            c.absolutize();
            c
        };
        let (a, b) = (normalise(saved), normalise(self));
        if a == b {
            return Ok(());
        }
        let value = |c: TrainConfig| toml::Value::try_from(c).unwrap_or(toml::Value::Table(toml::Table::new()));
        let mut differing = Vec::new();
        differences("", &value(a), &value(b), &mut differing);
        Err(format!("its configuration differs in {}; only {CHANGEABLE_ON_RESUME} may change", differing.join(", ")))
    }
}

/// The dotted keys at which `a` and `b` differ, sorted: tables compared key by key, other values whole.
fn differences(prefix: &str, a: &toml::Value, b: &toml::Value, out: &mut Vec<String>) {
    match (a, b) {
        (toml::Value::Table(a), toml::Value::Table(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => differences(&path, x, y, out),
                    _ => out.push(path),
                }
            }
        }
        _ if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

/// `path` made absolute against the working directory, as it is when that cannot be read.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_run_may_change_only_machine_settings_and_its_budget() {
        let saved = TrainConfig::default();
        let now = TrainConfig { epochs: 40, patience: Some(3), device: Device::Cpu, workers: Some(2), ..saved.clone() };
        now.check_resumable(&saved).unwrap();
        let mut other = TrainConfig { batch: 8, seed: 1, ..saved.clone() };
        other.optimizer.weight_decay = 0.5;
        assert_eq!(
            other.check_resumable(&saved).unwrap_err(),
            "its configuration differs in batch, optimizer.weight_decay, seed; only epochs, patience, device, \
             workers, eval_batch and quiet may change"
        );
    }

    #[test]
    fn paths_become_absolute_and_compare_so() {
        let mut c = TrainConfig::default();
        c.data.dir = "data".into();
        c.model.weights = Some("w/b0.pth".into());
        c.out = Some("/runs/a".into());
        let saved = c.clone();
        c.absolutize();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(c.data.dir, cwd.join("data"));
        assert_eq!(c.model.weights.as_deref(), Some(cwd.join("w/b0.pth").as_path()));
        assert_eq!(c.out.as_deref(), Some(Path::new("/runs/a")));
        assert_eq!(c.data.folds_csv, None);
        c.check_resumable(&saved).unwrap();
        c.data.dir = "/elsewhere/data".into();
        assert!(c.check_resumable(&saved).unwrap_err().contains("differs in data.dir;"));
    }
}
