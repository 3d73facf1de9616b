//! The choices of `orchard init`, each with the reason the file and the command print:
//!
//! - members: with weight files, one member per file, fine-tuned (the reference notebook's schedule,
//!   compressed to fewer epochs on a CPU, one head-only epoch first with the head at 10× the backbone's
//!   learning rate, input sizes the device can afford); without, small from-scratch members on a CPU
//!   (MobileNetV2, EfficientNet-B0 and -Lite0 at 128 px, 12 epochs) and bigger ones on CUDA (B0 and
//!   ResNet50V2 at 256, B3 at 320, 40 epochs). No size exceeds the images' median short side.
//! - folds: 5, fewer when the rarest class could not put 4 images in every validation fold (the assignment
//!   is stratified, so each fold gets its share of every class);
//! - TTA: the four flips (the reference); the eight symmetries on CUDA when the images are square;
//! - ensemble: weights searched on the out-of-fold predictions, plain averaging reported beside it.

use std::path::PathBuf;

use orchard_files::{Task, Tta};
use orchard_metrics::schedule::{Reference, Schedule, WarmupCosine};

use super::Findings;

/// The device the experiment is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Cpu,
    /// `here`: whether this machine has it (a file may be prepared for another machine).
    Cuda {
        here: bool,
    },
}

/// One member as chosen.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberChoice {
    pub name: String,
    pub arch: String,
    /// Square input side.
    pub size: usize,
    pub batch: usize,
    pub weights: Option<PathBuf>,
    /// Whether the architecture has stochastic depth (which short runs from scratch turn off).
    pub drop_path: bool,
}

/// Everything chosen, with the reasons in the order they are told.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub target: Target,
    pub members: Vec<MemberChoice>,
    /// Fine-tuning from weight files rather than training from scratch.
    pub pretrained: bool,
    pub epochs: u32,
    pub schedule: Schedule,
    /// Epochs with the backbone frozen (the head's warm-up).
    pub freeze_epochs: u32,
    pub folds: usize,
    pub tta: Tta,
    /// `search` with several members, `mean` with one.
    pub ensemble: &'static str,
    pub reasons: Vec<String>,
}

/// Chooses an experiment for `findings` on `target`, from `weights` ((architecture, file) pairs) when any.
pub fn choose(findings: &Findings, weights: &[(String, PathBuf)], target: Target) -> Choice {
    let cuda = matches!(target, Target::Cuda { .. });
    let short = findings.median_size.map(|(w, h)| w.min(h));
    let mut reasons = Vec::new();
    reasons.push(match target {
        Target::Cpu => "device: the CPU: small inputs and few epochs (--device cuda chooses for a GPU)".into(),
        Target::Cuda { here: true } => "device: CUDA: larger inputs and the reference's 40 epochs".into(),
        Target::Cuda { here: false } => {
            "device: CUDA, as asked, though this machine has none: check it there with --dry-run".into()
        }
    });
    let pretrained = !weights.is_empty();
    let (members, epochs, schedule, freeze_epochs) = if pretrained {
        let members = fine_tuned(weights, cuda, short);
        let epochs = if cuda { 40 } else { 10 };
        let schedule = reference_schedule(epochs);
        reasons.push(format!(
            "members: one per weight file, fine-tuned for {epochs} epochs with the reference notebook's schedule \
             (linear ramp-up, sustain, exponential decay{}), Adam",
            if epochs == 40 { "" } else { ", compressed from its 40 epochs" }
        ));
        reasons.push(
            "head warm-up: the first epoch trains only the new head (backbone frozen), at 10× the backbone's \
             learning rate throughout, so the random head does not disturb the pretrained features"
                .into(),
        );
        (members, epochs, schedule, 1)
    } else {
        let (members, epochs, schedule) = from_scratch(cuda, short);
        reasons.push(format!(
            "members: no weight files, so {} architectures trained from scratch for {epochs} epochs (warm-up then \
             cosine decay{})",
            if cuda { "mid-sized" } else { "small" },
            if cuda {
                ""
            } else {
                "; no dropout or stochastic depth, batch-norm momentum 0.9: short runs learn faster"
            }
        ));
        (members, epochs, schedule, 0)
    };
    let sizes: Vec<String> = members.iter().map(|m| format!("{} {} px batch {}", m.name, m.size, m.batch)).collect();
    reasons.push(format!(
        "input sizes: {}{}",
        sizes.join(", "),
        short.map_or_else(String::new, |s| format!(" (the images' median short side is {s} px: no member upscales)"))
    ));
    let folds = folds(findings, &mut reasons);
    let square = findings.median_size.is_some_and(|(w, h)| w.abs_diff(h) * 10 <= w.max(h));
    let tta = if cuda && square { Tta::Dihedral } else { Tta::Flips };
    reasons.push(match tta {
        Tta::Dihedral => "TTA: the eight symmetries of the square (square images, and a GPU to afford 8 passes)".into(),
        _ => "TTA: the four flips, as the reference (leaves have no up or left)".into(),
    });
    let ensemble = if members.len() > 1 { "search" } else { "mean" };
    reasons.push(if members.len() > 1 {
        "ensemble: member weights searched on the out-of-fold predictions (cross-validated over the folds), plain \
         averaging reported beside it"
            .into()
    } else {
        "ensemble: one member, its fold models averaged".into()
    });
    Choice { target, members, pretrained, epochs, schedule, freeze_epochs, folds, tta, ensemble, reasons }
}

/// K, and why: 5, fewer when the rarest class could not give each validation fold 4 images.
fn folds(findings: &Findings, reasons: &mut Vec<String>) -> usize {
    let d = &findings.description;
    let rarest = d.class_counts.iter().map(|(_, n)| *n).min().unwrap_or(0);
    let k = (rarest / 4).clamp(2, 5).min(d.samples.max(2));
    let stratified = match d.task {
        Task::MultiClass => "stratified by class",
        Task::MultiLabel => "stratified iteratively over the labels",
    };
    let rare: Vec<String> =
        findings.rare.iter().map(|(c, n, share)| format!("{c} ({n} rows, {:.1}%)", 100.0 * share)).collect();
    let mut why = format!("folds: {k}, {stratified}");
    if !rare.is_empty() {
        why += &format!("; rare classes (under {:.0}% of rows): {}", 100.0 * super::RARE, rare.join(", "));
    }
    let per_fold = rarest / k;
    why += &match k {
        5 => format!("; every validation fold holds at least {per_fold} of the rarest class"),
        _ => format!("; fewer than 5 so that every validation fold holds at least {per_fold} of the rarest class"),
    };
    if rarest < 2 {
        why += "; a class with fewer than 2 rows has no AUC in the folds without it: add images of it";
    }
    reasons.push(why);
    k
}

/// The notebook's schedule (LR_MAX per replica), its ramp-up and sustain scaled to `epochs` of its 40.
fn reference_schedule(epochs: u32) -> Schedule {
    let notebook = Reference::keras_notebook(1);
    let scale = f64::from(epochs) / 40.0;
    Schedule::Reference(Reference {
        rampup_epochs: notebook.rampup_epochs * scale,
        sustain_epochs: notebook.sustain_epochs * scale,
        ..notebook
    })
}

/// `size` no larger than the images' short side (when known, in steps of 32) nor smaller than `arch` takes.
fn fit(arch: &str, size: usize, short: Option<usize>) -> usize {
    let min = orchard_models::spec(arch).map_or(32, |s| s.min_size as usize).max(32);
    let cap = short.map_or(size, |s| size.min(s / 32 * 32));
    cap.max(min.div_ceil(32) * 32)
}

fn fine_tuned(weights: &[(String, PathBuf)], cuda: bool, short: Option<usize>) -> Vec<MemberChoice> {
    let mut members: Vec<MemberChoice> = Vec::new();
    for (arch, file) in weights {
        let default = orchard_models::spec(arch).map_or(224, |s| s.default_size.0 as usize);
        let wanted = if cuda { default.clamp(512, 768) } else { default.min(224) };
        let size = fit(arch, wanted, short);
        let batch = if cuda && size > 384 { 8 } else { 16 };
        let base = short_name(arch);
        let taken = members.iter().filter(|m| m.name == base || m.name.starts_with(&format!("{base}-"))).count();
        let name = if taken == 0 { base } else { format!("{base}-{}", taken + 1) };
        members.push(MemberChoice {
            name,
            arch: arch.clone(),
            size,
            batch,
            weights: Some(file.clone()),
            drop_path: false,
        });
    }
    members
}

fn from_scratch(cuda: bool, short: Option<usize>) -> (Vec<MemberChoice>, u32, Schedule) {
    let picks: &[(&str, &str, usize)] = if cuda {
        &[("b0", "efficientnet_b0", 256), ("b3", "efficientnet_b3", 320), ("r50v2", "resnet50_v2", 256)]
    } else {
        &[("mnv2", "mobilenet_v2", 128), ("b0", "efficientnet_b0", 128), ("lite0", "efficientnet_lite0", 128)]
    };
    let members = picks
        .iter()
        .map(|&(name, arch, size)| MemberChoice {
            name: name.into(),
            arch: arch.into(),
            size: fit(arch, size, short),
            batch: if cuda { 32 } else { 16 },
            weights: None,
            drop_path: arch.starts_with("efficientnet"),
        })
        .collect();
    let (epochs, warmup, max) = if cuda { (40, 2.0, 1e-3) } else { (12, 1.0, 2e-3) };
    let schedule = Schedule::WarmupCosine(WarmupCosine { warmup, total: f64::from(epochs), max, min: max / 100.0 });
    (members, epochs, schedule)
}

/// A member's name from its architecture: `efficientnet_b7` → `b7`, `resnet152_v2` → `r152v2`,
/// `inception_resnet_v2` → `irv2`, `mobilenet_v2` → `mnv2`, `efficientnet_lite0` → `lite0`.
pub fn short_name(arch: &str) -> String {
    if arch == "inception_resnet_v2" {
        return "irv2".into();
    }
    if let Some(rest) = arch.strip_prefix("efficientnet_") {
        return rest.into();
    }
    if let Some(rest) = arch.strip_prefix("resnet") {
        return format!("r{}", rest.replace('_', ""));
    }
    if let Some(rest) = arch.strip_prefix("mobilenet_") {
        return format!("mn{rest}");
    }
    arch.replace('_', "-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchard_data::dataset::{Description, Layout, Split};

    fn findings(counts: &[usize], size: (usize, usize)) -> Findings {
        let class_counts: Vec<(String, usize)> =
            counts.iter().enumerate().map(|(i, n)| (format!("c{i}"), *n)).collect();
        let total: usize = counts.iter().sum();
        let rare = class_counts
            .iter()
            .filter(|(_, n)| (*n as f64 / total as f64) < super::super::RARE)
            .map(|(c, n)| (c.clone(), *n, *n as f64 / total as f64))
            .collect();
        let description = Description {
            root: "d".into(),
            layout: Layout::OneHot,
            task: Task::MultiClass,
            split: Split::Train,
            samples: total,
            labelled: total,
            class_counts,
            labels_per_sample: vec![],
            images: None,
        };
        Findings { description, rare, median_size: Some(size) }
    }

    #[test]
    fn plant_pathology_on_cuda_with_the_reference_weights_gets_the_reference_recipe() {
        let pp = findings(&[516, 91, 622, 592], (2048, 1365));
        let weights: Vec<(String, PathBuf)> =
            ["efficientnet_b7", "efficientnet_b6", "resnet152_v2", "inception_resnet_v2"]
                .iter()
                .map(|a| (a.to_string(), PathBuf::from(format!("{a}.h5"))))
                .collect();
        let c = choose(&pp, &weights, Target::Cuda { here: true });
        let names: Vec<(&str, usize, usize)> = c.members.iter().map(|m| (m.name.as_str(), m.size, m.batch)).collect();
        assert_eq!(names, [("b7", 600, 8), ("b6", 528, 8), ("r152v2", 512, 8), ("irv2", 512, 8)]);
        assert_eq!((c.epochs, c.freeze_epochs, c.folds, c.tta, c.ensemble), (40, 1, 5, Tta::Flips, "search"));
        assert_eq!(c.schedule, Schedule::Reference(Reference::keras_notebook(1)));
        let folds = c.reasons.iter().find(|r| r.starts_with("folds")).unwrap();
        assert!(folds.contains("rare classes (under 10% of rows): c1 (91 rows, 5.0%)"), "{folds}");
        assert!(folds.contains("at least 18 of the rarest class"), "{folds}");
    }

    #[test]
    fn a_small_dataset_on_a_cpu_gets_small_members_fewer_folds_and_no_upscaling() {
        let small = findings(&[20, 3, 25, 22], (96, 64));
        let c = choose(&small, &[], Target::Cpu);
        let members: Vec<(&str, usize, usize)> = c.members.iter().map(|m| (m.arch.as_str(), m.size, m.batch)).collect();
        assert_eq!(members, [("mobilenet_v2", 64, 16), ("efficientnet_b0", 64, 16), ("efficientnet_lite0", 64, 16)]);
        assert_eq!((c.epochs, c.freeze_epochs, c.folds, c.tta), (12, 0, 2, Tta::Flips));
        assert!(matches!(c.schedule, Schedule::WarmupCosine(w) if w.total == 12.0));
        assert!(!c.members[0].drop_path && c.members[1].drop_path);

        // Compressed reference schedule on the CPU: 10 of its 40 epochs.
        let tuned = choose(&small, &[("mobilenet_v2".into(), "m.pth".into())], Target::Cpu);
        assert_eq!((tuned.epochs, tuned.ensemble, tuned.members[0].size), (10, "mean", 64));
        let Schedule::Reference(r) = tuned.schedule else { panic!("{:?}", tuned.schedule) };
        assert_eq!((r.rampup_epochs, r.sustain_epochs, r.max), (3.75, 0.75, 1e-4));
        // Square images on a GPU: the eight symmetries.
        assert_eq!(choose(&findings(&[50, 50], (300, 300)), &[], Target::Cuda { here: false }).tta, Tta::Dihedral);
    }

    #[test]
    fn members_are_named_after_their_architectures() {
        let names: Vec<String> = [
            "efficientnet_b7",
            "resnet152_v2",
            "inception_resnet_v2",
            "mobilenet_v2",
            "resnet50",
            "efficientnet_lite0",
        ]
        .iter()
        .map(|a| short_name(a))
        .collect();
        assert_eq!(names, ["b7", "r152v2", "irv2", "mnv2", "r50", "lite0"]);
        let twice =
            fine_tuned(&[("mobilenet_v2".into(), "a".into()), ("mobilenet_v2".into(), "b".into())], false, None);
        assert_eq!((twice[0].name.as_str(), twice[1].name.as_str()), ("mnv2", "mnv2-2"));
    }
}
