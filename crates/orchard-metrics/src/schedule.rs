//! Learning-rate schedules, evaluated at a (possibly fractional) epoch so one definition serves per-epoch and
//! per-step updates: per step, evaluate at `step / steps_per_epoch` ([`Schedule::lr_at_step`]).
//!
//! [`Reference`] is the Keras notebook's `lrfn` to the last bit (same operations in the same order), because
//! reproducing the reference runs is the point; [`OneCycle`] follows torch's `OneCycleLR` step for step;
//! [`WarmupCosine`] is the usual linear warm-up then cosine decay.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

/// The reference notebook's learning-rate function: linear ramp-up from `start` to `max` over `rampup_epochs`,
/// `max` for `sustain_epochs`, then exponential decay towards `min` by `exp_decay` per epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// Learning rate at epoch 0 (`LR_START`).
    pub start: f64,
    /// Peak learning rate (`LR_MAX`, 1e-4 × replicas in the notebook).
    pub max: f64,
    /// Floor the decay approaches (`LR_MIN`).
    pub min: f64,
    /// Epochs of linear ramp-up (`LR_RAMPUP_EPOCHS`).
    pub rampup_epochs: f64,
    /// Epochs held at `max` (`LR_SUSTAIN_EPOCHS`).
    pub sustain_epochs: f64,
    /// Factor per epoch of the decay of `lr - min` (`LR_EXP_DECAY`).
    pub exp_decay: f64,
}

impl Reference {
    /// The notebook's constants for `replicas` data-parallel replicas (8 on a TPU v3-8): LR_START 1e-5,
    /// LR_MAX 1e-4 × replicas, LR_MIN 1e-5, 15 epochs of ramp-up, 3 of sustain, decay 0.8.
    pub fn keras_notebook(replicas: u32) -> Self {
        Reference {
            start: 1e-5,
            max: 1e-4 * f64::from(replicas),
            min: 1e-5,
            rampup_epochs: 15.0,
            sustain_epochs: 3.0,
            exp_decay: 0.8,
        }
    }

    /// Learning rate at `epoch` (0-based), written exactly as the notebook's `lrfn`.
    pub fn lr(&self, epoch: f64) -> f64 {
        if epoch < self.rampup_epochs {
            (self.max - self.start) / self.rampup_epochs * epoch + self.start
        } else if epoch < self.rampup_epochs + self.sustain_epochs {
            self.max
        } else {
            (self.max - self.min) * self.exp_decay.powf(epoch - self.rampup_epochs - self.sustain_epochs) + self.min
        }
    }
}

/// Linear warm-up from `min` to `max` over `warmup` epochs, then cosine decay from `max` to `min` reached at
/// `total` epochs, and `min` afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WarmupCosine {
    /// Epochs of linear warm-up (0 for none).
    pub warmup: f64,
    /// Epoch at which the decay reaches `min`.
    pub total: f64,
    /// Peak learning rate, reached at the end of warm-up.
    pub max: f64,
    /// Learning rate at the start of warm-up and at the end of the decay.
    pub min: f64,
}

impl WarmupCosine {
    /// Learning rate at `epoch`.
    pub fn lr(&self, epoch: f64) -> f64 {
        if epoch < self.warmup {
            self.min + (self.max - self.min) * epoch / self.warmup
        } else if epoch >= self.total || self.total <= self.warmup {
            if epoch >= self.total {
                self.min
            } else {
                self.max
            }
        } else {
            let pct = (epoch - self.warmup) / (self.total - self.warmup);
            self.min + (self.max - self.min) * 0.5 * (1.0 + (PI * pct).cos())
        }
    }
}

/// torch's `OneCycleLR` (two phases, cosine annealing): from `max / div_factor` up to `max` over the first
/// `pct_start` of the cycle, then down to `max / div_factor / final_div_factor`.
///
/// Positions are in the unit of `total` (steps or epochs): at positions `0, 1, …, total - 1` this gives the
/// learning rates torch's scheduler gives after `0, 1, …, total - 1` calls of `step()` with
/// `total_steps = total`; the last one is the minimum.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OneCycle {
    /// Length of the cycle (torch's `total_steps`).
    pub total: f64,
    /// Peak learning rate (torch's `max_lr`).
    pub max: f64,
    /// Share of the cycle spent increasing (torch default 0.3).
    pub pct_start: f64,
    /// Initial learning rate is `max / div_factor` (torch default 25).
    pub div_factor: f64,
    /// Final learning rate is the initial one divided by this (torch default 1e4).
    pub final_div_factor: f64,
}

impl OneCycle {
    /// torch's defaults (pct_start 0.3, div_factor 25, final_div_factor 1e4) for a cycle of `total` steps.
    pub fn new(total: f64, max: f64) -> Self {
        OneCycle { total, max, pct_start: 0.3, div_factor: 25.0, final_div_factor: 1e4 }
    }

    /// Learning rate at position `t`, computed with torch's operations in torch's order.
    pub fn lr(&self, t: f64) -> f64 {
        fn anneal(start: f64, end: f64, pct: f64) -> f64 {
            let cos_out = (PI * pct).cos() + 1.0;
            end + (start - end) / 2.0 * cos_out
        }
        let initial = self.max / self.div_factor;
        let min = initial / self.final_div_factor;
        let up_end = self.pct_start * self.total - 1.0;
        let down_end = self.total - 1.0;
        if t <= up_end {
            anneal(initial, self.max, t / up_end)
        } else {
            anneal(self.max, min, (t - up_end) / (down_end - up_end))
        }
    }
}

/// Any of the schedules, as stored in a run's configuration and checkpoint (tagged by `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// The reference notebook's function.
    Reference(Reference),
    /// Linear warm-up then cosine decay.
    WarmupCosine(WarmupCosine),
    /// torch's one-cycle policy.
    OneCycle(OneCycle),
    /// A fixed learning rate.
    Constant {
        /// The learning rate.
        lr: f64,
    },
}

impl Schedule {
    /// Learning rate at `epoch` (0-based; fractional between epochs for per-step updates).
    pub fn lr(&self, epoch: f64) -> f64 {
        match self {
            Schedule::Reference(s) => s.lr(epoch),
            Schedule::WarmupCosine(s) => s.lr(epoch),
            Schedule::OneCycle(s) => s.lr(epoch),
            Schedule::Constant { lr } => *lr,
        }
    }

    /// The same schedule with its peak learning rate multiplied by `factor` (the reference's `LR_MAX ×
    /// replicas`); the other rates stay as they are.
    pub fn peak_scaled(&self, factor: f64) -> Schedule {
        match *self {
            Schedule::Reference(s) => Schedule::Reference(Reference { max: s.max * factor, ..s }),
            Schedule::WarmupCosine(s) => Schedule::WarmupCosine(WarmupCosine { max: s.max * factor, ..s }),
            Schedule::OneCycle(s) => Schedule::OneCycle(OneCycle { max: s.max * factor, ..s }),
            Schedule::Constant { lr } => Schedule::Constant { lr: lr * factor },
        }
    }

    /// Checks every number a run would meet: rates and epochs finite and not negative, factors positive
    /// (a negative or NaN rate would train, or fail at the first step, instead of being refused up front).
    /// The error names the field as the TOML file does (`max`, `warmup`, ...).
    pub fn validate(&self) -> Result<(), String> {
        // (rates and epochs: >= 0; factors: > 0), each with its name in the file.
        type Named = Vec<(&'static str, f64)>;
        let (rates, epochs, factors): (Named, Named, Named) = match *self {
            Schedule::Reference(s) => (
                vec![("start", s.start), ("max", s.max), ("min", s.min)],
                vec![("rampup_epochs", s.rampup_epochs), ("sustain_epochs", s.sustain_epochs)],
                vec![("exp_decay", s.exp_decay)],
            ),
            Schedule::WarmupCosine(s) => {
                (vec![("max", s.max), ("min", s.min)], vec![("warmup", s.warmup)], vec![("total", s.total)])
            }
            Schedule::OneCycle(s) => (
                vec![("max", s.max)],
                vec![],
                vec![("total", s.total), ("div_factor", s.div_factor), ("final_div_factor", s.final_div_factor)],
            ),
            Schedule::Constant { lr } => (vec![("lr", lr)], vec![], vec![]),
        };
        for (name, value) in rates.into_iter().chain(epochs) {
            if !value.is_finite() || value < 0.0 {
                return Err(format!("{name} = {value} must be a finite number >= 0"));
            }
        }
        for (name, value) in factors {
            if !value.is_finite() || value <= 0.0 {
                return Err(format!("{name} = {value} must be a finite number > 0"));
            }
        }
        match *self {
            Schedule::Reference(s) if s.exp_decay > 1.0 => {
                Err(format!("exp_decay = {} must be at most 1 (a decay)", s.exp_decay))
            }
            Schedule::OneCycle(s) if !(s.pct_start > 0.0 && s.pct_start < 1.0) => {
                Err(format!("pct_start = {} must lie in (0, 1)", s.pct_start))
            }
            _ => Ok(()),
        }
    }

    /// Learning rate for global optimizer step `step` when an epoch has `steps_per_epoch` steps: the schedule
    /// at the fractional epoch `step / steps_per_epoch`.
    pub fn lr_at_step(&self, step: u64, steps_per_epoch: u64) -> f64 {
        self.lr(step as f64 / steps_per_epoch.max(1) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_hand_values() {
        let s = Reference::keras_notebook(1);
        assert_eq!(s.lr(0.0), 1e-5);
        assert_eq!(s.lr(15.0), 1e-4);
        assert_eq!(s.lr(17.0), 1e-4);
        assert!((s.lr(19.0) - (9e-5 * 0.8 + 1e-5)).abs() < 1e-20);
        assert!((Reference::keras_notebook(8).lr(7.5) - ((8e-4 - 1e-5) / 15.0 * 7.5 + 1e-5)).abs() < 1e-20);
    }

    #[test]
    fn the_reference_peak_scaled_by_the_replicas_is_the_notebooks_for_that_many() {
        let one = Schedule::Reference(Reference::keras_notebook(1));
        assert_eq!(one.peak_scaled(8.0), Schedule::Reference(Reference::keras_notebook(8)));
        assert_eq!(Schedule::Constant { lr: 0.5 }.peak_scaled(4.0), Schedule::Constant { lr: 2.0 });
    }

    #[test]
    fn negative_and_non_finite_numbers_are_refused_by_name() {
        assert_eq!(Schedule::Reference(Reference::keras_notebook(1)).validate(), Ok(()));
        assert_eq!(Schedule::Constant { lr: 0.0 }.validate(), Ok(()));
        assert_eq!(Schedule::Constant { lr: -1.0 }.validate().unwrap_err(), "lr = -1 must be a finite number >= 0");
        let cosine = WarmupCosine { warmup: f64::NAN, total: 3.0, max: 1e-3, min: 0.0 };
        assert!(Schedule::WarmupCosine(cosine).validate().unwrap_err().starts_with("warmup = NaN"));
        let cycle = OneCycle { max: f64::INFINITY, ..OneCycle::new(3.0, 1e-3) };
        assert!(Schedule::OneCycle(cycle).validate().unwrap_err().starts_with("max = inf"));
        let cycle = OneCycle { pct_start: 1.0, ..OneCycle::new(3.0, 1e-3) };
        assert!(Schedule::OneCycle(cycle).validate().unwrap_err().starts_with("pct_start = 1"));
        let decay = Reference { exp_decay: 1.5, ..Reference::keras_notebook(1) };
        assert!(Schedule::Reference(decay).validate().unwrap_err().starts_with("exp_decay = 1.5"));
    }

    #[test]
    fn warmup_cosine_endpoints() {
        let s = WarmupCosine { warmup: 2.0, total: 10.0, max: 1e-3, min: 1e-5 };
        assert_eq!(s.lr(0.0), 1e-5);
        assert_eq!(s.lr(2.0), 1e-3);
        assert!((s.lr(6.0) - (1e-5 + (1e-3 - 1e-5) * 0.5)).abs() < 1e-18);
        assert_eq!(s.lr(10.0), 1e-5);
        assert_eq!(s.lr(50.0), 1e-5);
    }

    #[test]
    fn one_cycle_endpoints() {
        let s = OneCycle::new(100.0, 0.1);
        assert!((s.lr(0.0) - 0.004).abs() < 1e-15);
        assert!((s.lr(29.0) - 0.1).abs() < 1e-15);
        assert!((s.lr(99.0) - 0.004 / 1e4).abs() < 1e-18);
    }

    #[test]
    fn schedule_serde_round_trip_and_steps() {
        let s = Schedule::Reference(Reference::keras_notebook(8));
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"kind\":\"reference\""), "{json}");
        assert_eq!(serde_json::from_str::<Schedule>(&json).unwrap(), s);
        assert_eq!(s.lr_at_step(30, 10), s.lr(3.0));
        assert_eq!(Schedule::Constant { lr: 0.5 }.lr(3.0), 0.5);
    }
}
