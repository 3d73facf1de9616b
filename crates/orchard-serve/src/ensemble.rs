//! The experiment's models as the manifest lists them, and the computation gather made for each test image:
//! per member the mean over its fold models of the TTA-averaged probabilities, then the blend. It lives on
//! the batcher's thread (libtorch modules are not shared between threads).

use std::path::Path;
use std::sync::Arc;

use orchard_data::image::RgbImage;
use orchard_data::loader::Batch;
use orchard_data::pipeline::{Pipeline, Source};
use orchard_files::config::Precision;
use orchard_files::manifest::{Blend, Manifest};
use orchard_files::{Task, Tta};
use orchard_infer::model::RunModel;
use tch::{Device, Kind};

use crate::{Result, ServeError};

/// What a server needs to know of the ensemble outside the model thread.
#[derive(Clone)]
pub struct Description {
    pub classes: Vec<String>,
    pub members: Vec<String>,
    /// Each member's evaluation pipeline: how an uploaded image becomes its input.
    pub pipelines: Vec<Pipeline>,
}

/// One image's answer.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The ensemble's probabilities, one per class.
    pub probabilities: Vec<f64>,
    /// Each member's, in the manifest's order.
    pub members: Vec<Vec<f64>>,
}

struct Member {
    folds: Vec<RunModel>,
}

/// The loaded ensemble.
pub struct Ensemble {
    members: Vec<Member>,
    classes: Vec<String>,
    task: Task,
    tta: Tta,
    blend: Blend,
}

impl Ensemble {
    /// Loads every fold model of every member of the experiment in `dir` onto `device`, in `precision`.
    pub fn load(dir: &Path, device: Device, precision: Precision) -> Result<(Ensemble, Description)> {
        let manifest = Manifest::read(dir)?;
        if matches!(manifest.blend, Blend::Rank { .. }) {
            return Err(ServeError::Experiment(
                "a rank-average blend ranks the whole test set; it cannot score one image: not served yet".into(),
            ));
        }
        let mut members = Vec::new();
        let mut pipelines = Vec::new();
        for m in 0..manifest.members.len() {
            let mut folds = Vec::new();
            for checkpoint in manifest.checkpoints(dir, m) {
                let run = checkpoint.parent().unwrap_or(dir);
                let model = RunModel::load_in(run, device, precision)?;
                if model.classes() != manifest.classes {
                    return Err(ServeError::Experiment(format!(
                        "{}: classes {:?} differ from the manifest's {:?}",
                        run.display(),
                        model.classes(),
                        manifest.classes
                    )));
                }
                folds.push(model);
            }
            pipelines.push(folds[0].pipeline(Source::Files(Arc::new(Vec::new()))));
            members.push(Member { folds });
        }
        let description = Description {
            classes: manifest.classes.clone(),
            members: manifest.members.iter().map(|m| m.name.clone()).collect(),
            pipelines,
        };
        let ensemble = Ensemble {
            members,
            classes: manifest.classes,
            task: manifest.task,
            tta: manifest.tta,
            blend: manifest.blend,
        };
        Ok((ensemble, description))
    }

    /// Answers for `images`, each given as its input to every member (`images[i][m]`), in one forward pass
    /// per fold model.
    pub fn predict(&self, images: &[&[RgbImage]]) -> Result<Vec<Answer>> {
        let k = self.classes.len();
        let n = images.len();
        let mut member_probs: Vec<Vec<f64>> = Vec::new();
        for (m, member) in self.members.iter().enumerate() {
            let first = &images[0][m];
            let mut pixels = Vec::with_capacity(n * first.data.len());
            images.iter().for_each(|i| pixels.extend_from_slice(&i[m].data));
            let batch = Batch {
                indices: (0..n).collect(),
                pixels,
                width: first.width,
                height: first.height,
                targets: Vec::new(),
                classes: 0,
            };
            let mut sum = vec![0.0; n * k];
            for fold in &member.folds {
                let predictor = fold.predictor();
                let mean_std = predictor.model.spec().normalization.mean_std();
                let xs = orchard_torch::images(&batch, mean_std, predictor.device, predictor.layout);
                let probs = tch::no_grad(|| predictor.predict_tensor(&xs, self.tta));
                let probs = probs.to_kind(Kind::Double).to_device(Device::Cpu).flatten(0, -1);
                let probs = Vec::<f64>::try_from(probs).expect("f64 probabilities");
                sum.iter_mut().zip(&probs).for_each(|(s, p)| *s += p);
            }
            sum.iter_mut().for_each(|s| *s /= member.folds.len() as f64);
            member_probs.push(sum);
        }
        let slices: Vec<&[f64]> = member_probs.iter().map(|m| m.as_slice()).collect();
        let blended = orchard_ensemble::run::apply(&self.blend, &slices, k, self.task)?;
        Ok((0..n)
            .map(|i| Answer {
                probabilities: blended[i * k..(i + 1) * k].to_vec(),
                members: member_probs.iter().map(|m| m[i * k..(i + 1) * k].to_vec()).collect(),
            })
            .collect())
    }
}
