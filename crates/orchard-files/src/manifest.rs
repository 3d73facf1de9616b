//! The manifest of a finished experiment, `OUT/manifest.json`: everything needed to compute the ensemble's
//! prediction for a new image as the experiment validated it — each member's architecture, input size,
//! pixel normalisation, output function and fold checkpoints, the test-time augmentation, the blend with
//! its weights (or fitted meta-model) and the classes. The gather step writes it; a server loads it.
//!
//! It is versioned ([`FORMAT`]) and checked on reading, every mistake named: a server faces it before
//! anything else, and a manifest edited by hand or written by another version must fail there, not later
//! with a shape error inside a model.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::tta::Tta;
use crate::{atomic, FileError, Task};

/// The manifest's file name in the experiment directory.
pub const MANIFEST: &str = "manifest.json";
/// The version of the manifest this build writes and reads.
pub const FORMAT: u32 = 1;

/// A finished experiment, as a server needs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The format version.
    pub format: u32,
    /// The class names, in the order of every member's outputs and of the blend's.
    pub classes: Vec<String>,
    /// Multi-class (blended rows renormalised to sum to 1) or multi-label.
    pub task: Task,
    /// The copies of each image every member's probabilities are averaged over.
    pub tta: Tta,
    pub members: Vec<MemberModel>,
    /// How the members' probabilities become the ensemble's.
    pub blend: Blend,
}

/// One member: an architecture trained on every fold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberModel {
    pub name: String,
    /// Registered architecture name.
    pub arch: String,
    /// Input size (height, width) the member trained and is evaluated at.
    pub size: (usize, usize),
    /// How 0–255 pixels are scaled for it: `(pixel − mean) / std` per channel (RGB).
    pub normalization: PixelNormalization,
    /// Softmax rows (multi-class) when true, independent sigmoids (multi-label) otherwise.
    pub softmax: bool,
    /// Its fold models' checkpoints, relative to the experiment directory; their probabilities are averaged.
    pub checkpoints: Vec<PathBuf>,
}

/// Per-channel pixel statistics on the 0–255 scale.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PixelNormalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// How members' probabilities are combined (the formulas are `orchard_ensemble::combine`'s). Weights are one
/// per member, normalised to sum to 1; a searched blend is recorded as the weighted mean (or rank average)
/// it found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Blend {
    Mean {
        weights: Vec<f64>,
    },
    Rank {
        weights: Vec<f64>,
    },
    Geometric {
        weights: Vec<f64>,
    },
    Power {
        power: f64,
        weights: Vec<f64>,
    },
    /// A logistic-regression meta-model over the features `ln(max(p, log_floor))` of every member's every
    /// class, member by member.
    Stack {
        log_floor: f64,
        model: StackModel,
    },
}

/// A fitted stacking meta-model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StackModel {
    /// Multi-class: `softmax(x · coefficients[c] + intercepts[c])` over the classes `present` (indices into
    /// the manifest's classes; classes absent when it was fitted get 0).
    Softmax { present: Vec<usize>, coefficients: Vec<Vec<f64>>, intercepts: Vec<f64> },
    /// Multi-label: one binary model per class.
    Sigmoid { classes: Vec<BinaryModel> },
}

/// One label's model: `sigmoid(x · coefficients + intercept)`, or a constant for a label that was always or
/// never present when it was fitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BinaryModel {
    Constant { p: f64 },
    Logistic { coefficients: Vec<f64>, intercept: f64 },
}

impl Manifest {
    /// Writes `dir/manifest.json`, atomically.
    pub fn write(&self, dir: &Path) -> Result<(), FileError> {
        let path = dir.join(MANIFEST);
        let json = serde_json::to_string_pretty(self).expect("a manifest serialises") + "\n";
        atomic::write(&path, json.as_bytes()).map_err(|source| FileError::Write { path, source })
    }

    /// Reads and checks `dir/manifest.json`.
    pub fn read(dir: &Path) -> Result<Manifest, FileError> {
        let path = dir.join(MANIFEST);
        let manifest: Manifest = crate::read_json(&path)?;
        manifest.check().map_err(|message| FileError::Format { path, message })?;
        Ok(manifest)
    }

    /// The checkpoints of member `m`, as paths under the experiment directory `dir`.
    pub fn checkpoints(&self, dir: &Path, m: usize) -> Vec<PathBuf> {
        self.members[m].checkpoints.iter().map(|c| dir.join(c)).collect()
    }

    /// Checks that the parts fit together; the message names the field at fault.
    pub fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!("format {} is not the version this build reads ({FORMAT})", self.format));
        }
        if self.classes.is_empty() {
            return Err("classes: the list is empty".into());
        }
        if self.members.is_empty() {
            return Err("members: the list is empty".into());
        }
        for (i, m) in self.members.iter().enumerate() {
            let at = |what: String| format!("members[{i}] ({}): {what}", m.name);
            if m.size.0 == 0 || m.size.1 == 0 {
                return Err(at(format!("size {:?} has a zero side", m.size)));
            }
            if m.normalization.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
                || m.normalization.mean.iter().any(|v| !v.is_finite())
            {
                return Err(at("normalization: std must be positive and every value finite".into()));
            }
            if m.checkpoints.is_empty() {
                return Err(at("checkpoints: the list is empty".into()));
            }
            for c in &m.checkpoints {
                if c.as_os_str().is_empty() || !c.components().all(|p| matches!(p, Component::Normal(_))) {
                    return Err(at(format!("checkpoint {} is not a relative path inside the experiment", c.display())));
                }
            }
        }
        self.check_blend()
    }

    fn check_blend(&self) -> Result<(), String> {
        let members = self.members.len();
        let weights = |w: &[f64]| -> Result<(), String> {
            if w.len() != members {
                return Err(format!("blend: {} weights for {members} members", w.len()));
            }
            if w.iter().any(|w| !(w.is_finite() && *w >= 0.0)) || w.iter().sum::<f64>() <= 0.0 {
                return Err("blend: weights must be finite, non-negative and not all zero".into());
            }
            Ok(())
        };
        let features = members * self.classes.len();
        match &self.blend {
            Blend::Mean { weights: w } | Blend::Rank { weights: w } | Blend::Geometric { weights: w } => weights(w),
            Blend::Power { power, weights: w } if power.is_finite() && *power != 0.0 => weights(w),
            Blend::Power { power, .. } => Err(format!("blend: power {power} must be finite and non-zero")),
            Blend::Stack { log_floor, .. } if !(log_floor.is_finite() && *log_floor > 0.0) => {
                Err(format!("blend: log_floor {log_floor} must be positive"))
            }
            Blend::Stack { model: StackModel::Softmax { present, coefficients, intercepts }, .. } => {
                if present.is_empty() || present.iter().any(|&c| c >= self.classes.len()) {
                    return Err("blend: present classes must be indices of the classes".into());
                }
                if coefficients.len() != present.len() || intercepts.len() != present.len() {
                    return Err("blend: one row of coefficients and one intercept per present class".into());
                }
                if coefficients.iter().any(|row| row.len() != features) {
                    return Err(format!("blend: every coefficient row needs {features} values (members × classes)"));
                }
                Ok(())
            }
            Blend::Stack { model: StackModel::Sigmoid { classes }, .. } => {
                if classes.len() != self.classes.len() {
                    return Err(format!("blend: {} binary models for {} classes", classes.len(), self.classes.len()));
                }
                match classes
                    .iter()
                    .find(|m| matches!(m, BinaryModel::Logistic { coefficients, .. } if coefficients.len() != features))
                {
                    Some(_) => {
                        Err(format!("blend: every binary model needs {features} coefficients (members × classes)"))
                    }
                    None => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        let member = |name: &str| MemberModel {
            name: name.into(),
            arch: "mobilenet_v2".into(),
            size: (64, 96),
            normalization: PixelNormalization { mean: [123.675, 116.28, 103.53], std: [58.395, 57.12, 57.375] },
            softmax: true,
            checkpoints: (0..3).map(|f| PathBuf::from(format!("members/{name}/fold{f}/best.ckpt"))).collect(),
        };
        Manifest {
            format: FORMAT,
            classes: vec!["healthy".into(), "rust".into()],
            task: Task::MultiClass,
            tta: Tta::Flips,
            members: vec![member("a"), member("b")],
            blend: Blend::Mean { weights: vec![0.25, 0.75] },
        }
    }

    #[test]
    fn a_written_manifest_reads_back_with_paths_under_the_experiment() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = manifest();
        m.write(dir.path()).unwrap();
        assert_eq!(Manifest::read(dir.path()).unwrap(), m);
        assert_eq!(m.checkpoints(dir.path(), 1)[2], dir.path().join("members/b/fold2/best.ckpt"));
        m.blend = Blend::Stack {
            log_floor: 1e-7,
            model: StackModel::Sigmoid {
                classes: vec![
                    BinaryModel::Constant { p: 1.0 },
                    BinaryModel::Logistic { coefficients: vec![0.5; 4], intercept: -1.0 },
                ],
            },
        };
        m.write(dir.path()).unwrap();
        assert_eq!(Manifest::read(dir.path()).unwrap(), m);
        let text = std::fs::read_to_string(dir.path().join(MANIFEST)).unwrap();
        assert!(text.contains("\"method\": \"stack\"") && text.contains("\"kind\": \"logistic\""), "{text}");
    }

    #[test]
    fn mistakes_are_named() {
        type Change = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|m| m.format = 2), "format 2 is not the version"),
            (
                Box::new(|m| m.members[1].checkpoints[0] = "../elsewhere/best.ckpt".into()),
                "members[1] (b): checkpoint ../elsewhere",
            ),
            (Box::new(|m| m.members[0].checkpoints[0] = "/abs/best.ckpt".into()), "not a relative path"),
            (Box::new(|m| m.members[0].normalization.std[1] = 0.0), "members[0] (a): normalization"),
            (Box::new(|m| m.blend = Blend::Mean { weights: vec![1.0] }), "blend: 1 weights for 2 members"),
            (Box::new(|m| m.blend = Blend::Power { power: 0.0, weights: vec![1.0, 1.0] }), "power 0 must be finite"),
            (
                Box::new(|m| {
                    m.blend = Blend::Stack {
                        log_floor: 1e-7,
                        model: StackModel::Softmax {
                            present: vec![0, 1],
                            coefficients: vec![vec![0.0; 3]; 2],
                            intercepts: vec![0.0; 2],
                        },
                    }
                }),
                "needs 4 values",
            ),
        ];
        for (change, want) in cases {
            let mut m = manifest();
            change(&mut m);
            let err = m.check().unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MANIFEST), "{\"format\": 1, \"classes\": [], \"extra\": 1}").unwrap();
        let err = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("manifest.json") && err.contains("unknown field `extra`"), "{err}");
    }
}
