//! Argument groups and value types several commands share, each defined once and parsed once into a type:
//! the device, an image size, the dataset folder, and the enumerations of names (`--precision bf16`,
//! `--tta flips`, ...) whose `--help` lists the choices.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, ValueEnum};
use orchard_data::augment::AugmentConfig;
use orchard_files::config::{Device, Precision, MAX_SIZE};
use orchard_files::{Task, Tta};
use orchard_torch::Layout;

/// `--device`.
#[derive(Args, Clone, Debug, Default)]
pub struct DeviceArg {
    /// cpu, cuda, cuda:N or auto (CUDA when available, else the CPU; the default).
    #[arg(long, value_parser = available_device)]
    pub device: Option<Device>,
}

/// A device flag's value, which this machine must have: refused while the arguments are parsed (exit code
/// 2, nothing created), as libtorch would panic at the first tensor put on a missing CUDA device.
pub fn available_device(text: &str) -> Result<Device, String> {
    let device: Device = text.parse()?;
    match orchard_torch::unavailable(device) {
        Some(problem) => Err(problem),
        None => Ok(device),
    }
}

impl DeviceArg {
    /// The device asked for, `auto` when none was.
    pub fn device(&self) -> Device {
        self.device.unwrap_or_default()
    }

    /// libtorch's device.
    pub fn torch(&self) -> tch::Device {
        orchard_torch::device(self.device())
    }
}

/// A flag's number that no run can use (NaN, an infinity, a negative rate, a zero batch) is refused while
/// the arguments are parsed, naming the flag, with exit code 2 and nothing created: these parse one.
pub mod number {
    /// A finite number `>= 0`: learning rates, weight decay, warm-up epochs.
    pub fn non_negative(text: &str) -> Result<f64, String> {
        let v = finite(text)?;
        if v < 0.0 {
            return Err("must be >= 0".into());
        }
        Ok(v)
    }

    /// A finite number `> 0`: a gradient-norm threshold.
    pub fn positive(text: &str) -> Result<f64, String> {
        let v = finite(text)?;
        if v <= 0.0 {
            return Err("must be > 0".into());
        }
        Ok(v)
    }

    /// A number in `[0, 1)`: dropout, drop path, label smoothing, EMA decay, batch-norm momentum.
    pub fn fraction(text: &str) -> Result<f64, String> {
        let v = finite(text)?;
        if !(0.0..1.0).contains(&v) {
            return Err("must lie in [0, 1)".into());
        }
        Ok(v)
    }

    /// An integer `>= MIN`: batches, epochs, workers, folds.
    pub fn at_least<const MIN: u64, T: TryFrom<u64>>(text: &str) -> Result<T, String> {
        let v: u64 = text.trim().parse().map_err(|_| "not a whole number".to_string())?;
        if v < MIN {
            return Err(format!("must be at least {MIN}"));
        }
        T::try_from(v).map_err(|_| "too large".into())
    }

    fn finite(text: &str) -> Result<f64, String> {
        match text.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            Ok(_) => Err("not a finite number".into()),
            Err(_) => Err("not a number".into()),
        }
    }
}

/// `--data`, when a configuration file may give the dataset folder instead.
#[derive(Args, Clone, Debug, Default)]
pub struct DataArg {
    /// Dataset folder (any layout `orchard data check` reads).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// An image size as a flag gives it: `N` (square) or `WxH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    pub width: usize,
    pub height: usize,
}

impl Size {
    /// `(width, height)`, the order of the input pipeline.
    pub fn wh(self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// `(height, width)`, the order of tensors and of training configurations.
    pub fn hw(self) -> (usize, usize) {
        (self.height, self.width)
    }
}

impl FromStr for Size {
    type Err = String;

    fn from_str(text: &str) -> Result<Size, String> {
        let bad = || format!("size {text:?}: expected N or WxH with positive integers, e.g. 224 or 768x512");
        let number = |s: &str| s.trim().parse::<usize>().map_err(|_| bad());
        let (width, height) = match text.split_once(['x', 'X']) {
            Some((w, h)) => (number(w)?, number(h)?),
            None => (number(text)?, number(text)?),
        };
        if width == 0 || height == 0 {
            return Err(bad());
        }
        if width > MAX_SIZE || height > MAX_SIZE {
            return Err(format!("size {text:?}: over the limit of {MAX_SIZE} pixels a side"));
        }
        Ok(Size { width, height })
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// The name a value of a `ValueEnum` has on the command line (`channels-last`, `bf16`, ...).
pub fn name<T: ValueEnum>(value: T) -> String {
    value.to_possible_value().map_or_else(String::new, |v| v.get_name().to_string())
}

/// `--layout`: the memory order of images and convolution weights.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutArg {
    /// NHWC under an NCHW shape (`torch.channels_last`): faster convolutions on CPUs and tensor cores.
    ChannelsLast,
    /// NCHW, contiguous.
    Contiguous,
}

impl From<LayoutArg> for Layout {
    fn from(layout: LayoutArg) -> Layout {
        match layout {
            LayoutArg::ChannelsLast => Layout::ChannelsLast,
            LayoutArg::Contiguous => Layout::Contiguous,
        }
    }
}

/// `--precision`: the arithmetic of forward and backward passes.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrecisionArg {
    /// f32 throughout (the reference).
    F32,
    /// bf16 autocast (CPUs with AVX-512 bf16 or AMX; CUDA).
    Bf16,
    /// f16 autocast with loss scaling (CUDA).
    F16,
}

impl From<PrecisionArg> for Precision {
    fn from(p: PrecisionArg) -> Precision {
        match p {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::Bf16 => Precision::Bf16,
            PrecisionArg::F16 => Precision::F16,
        }
    }
}

/// `--augment`: training-time augmentation.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AugmentArg {
    /// Random left-right and up-down flips (the reference).
    Flips,
    /// One of the eight symmetries of the square (the flips on non-square inputs).
    Dihedral,
    /// None.
    None,
}

impl From<AugmentArg> for AugmentConfig {
    fn from(a: AugmentArg) -> AugmentConfig {
        match a {
            AugmentArg::Flips => AugmentConfig::reference(),
            AugmentArg::Dihedral => AugmentConfig { dihedral: true, ..AugmentConfig::default() },
            AugmentArg::None => AugmentConfig::default(),
        }
    }
}

/// `--tta`: test-time augmentation.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TtaArg {
    /// The images as they are.
    None,
    /// The four flips.
    Flips,
    /// The eight symmetries of the square (the flips on non-square inputs).
    Dihedral,
}

impl From<TtaArg> for Tta {
    fn from(t: TtaArg) -> Tta {
        match t {
            TtaArg::None => Tta::None,
            TtaArg::Flips => Tta::Flips,
            TtaArg::Dihedral => Tta::Dihedral,
        }
    }
}

/// `--task`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskArg {
    /// One class per image: rows of probabilities sum to 1.
    MultiClass,
    /// Any set of classes per image.
    MultiLabel,
}

impl From<TaskArg> for Task {
    fn from(t: TaskArg) -> Task {
        match t {
            TaskArg::MultiClass => Task::MultiClass,
            TaskArg::MultiLabel => Task::MultiLabel,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_square_and_rectangular_and_refuse_nonsense() {
        assert_eq!("224".parse::<Size>().unwrap().wh(), (224, 224));
        let s: Size = "768x512".parse().unwrap();
        assert_eq!((s.wh(), s.hw(), s.to_string()), ((768, 512), (512, 768), "768x512".to_string()));
        for bad in ["0", "x", "12x", "-3", "99999", "2x0"] {
            assert!(bad.parse::<Size>().is_err(), "{bad}");
        }
        assert_eq!("99999".parse::<Size>().unwrap_err(), "size \"99999\": over the limit of 16384 pixels a side");
    }

    #[test]
    fn numbers_no_run_can_use_are_refused() {
        use number::*;
        assert_eq!(non_negative("0"), Ok(0.0));
        for bad in ["-1", "nan", "inf", "-inf", "x"] {
            assert!(non_negative(bad).is_err(), "{bad}");
        }
        assert!(positive("0").is_err() && positive("1e-3").is_ok());
        assert!(fraction("1").is_err() && fraction("0.999").is_ok() && fraction("NaN").is_err());
        assert_eq!(at_least::<1, usize>("3"), Ok(3));
        assert_eq!(at_least::<2, usize>("1").unwrap_err(), "must be at least 2");
        assert!(at_least::<1, u32>("5000000000").is_err() && at_least::<1, u32>("-1").is_err());
    }
}
