//! `orchard init DATA_DIR`: inspects a dataset and writes a commented experiment file chosen for it, the
//! device and the user's weight files (the choices are `orchard_experiment::init`'s).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use orchard_experiment::init::{self, Request, Target};

/// Write a first experiment file for a dataset.
#[derive(Args)]
pub struct InitArgs {
    /// The dataset folder (any layout `orchard data check` reads); every image's header is read.
    #[arg(value_name = "DATA_DIR")]
    pub data: PathBuf,
    /// The experiment file to write (refused if it exists, unless --force).
    #[arg(long, value_name = "EXPERIMENT.toml", default_value = "experiment.toml")]
    pub out: PathBuf,
    /// Fine-tune a member of architecture ARCH (`orchard models list`) from the weight file FILE (Keras .h5,
    /// PyTorch .pth, safetensors); repeat for more members. Each file is loaded into its architecture
    /// first, and refused if any tensor does not fit. Without any, members train from scratch.
    #[arg(long = "weights", value_name = "ARCH=FILE", value_parser = parse_weights)]
    pub weights: Vec<(String, PathBuf)>,
    /// The device the experiment is for: sizes, batches, epochs and members follow it.
    #[arg(long, value_enum, default_value_t = TargetArg::Auto)]
    pub device: TargetArg,
    /// Replace the experiment file if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `--device` of `orchard init`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetArg {
    /// CUDA when this machine has it, else the CPU.
    Auto,
    /// The CPU: small inputs, few epochs.
    Cpu,
    /// A CUDA GPU, here or on the machine that will run the experiment.
    Cuda,
}

fn parse_weights(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((arch, file)) if !arch.is_empty() && !file.is_empty() => Ok((arch.to_string(), PathBuf::from(file))),
        _ => Err(format!("{text:?}: expected ARCH=FILE, e.g. mobilenet_v2=weights/mobilenet_v2-b0353104.pth")),
    }
}

pub fn run(args: InitArgs) -> Result<()> {
    let here = orchard_torch::cuda_libs::available();
    let target = match args.device {
        TargetArg::Cpu => Target::Cpu,
        TargetArg::Cuda => Target::Cuda { here },
        TargetArg::Auto if here => Target::Cuda { here },
        TargetArg::Auto => Target::Cpu,
    };
    let request = Request { data: args.data, file: args.out, weights: args.weights, target, force: args.force };
    let (findings, choice) = init::init(&request)?;
    out!("{}", findings.description)?;
    for (class, n, share) in &findings.rare {
        outln!("  rare class: {class} ({n} rows, {:.1}%)", 100.0 * share)?;
    }
    outln!("chosen:")?;
    for reason in &choice.reasons {
        outln!("  - {reason}")?;
    }
    let members = choice.members.len();
    outln!(
        "wrote {} ({members} member(s) × {} folds = {} units); check it without training: orchard run {} --dry-run",
        request.file.display(),
        choice.folds,
        members * choice.folds,
        request.file.display()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_arch_equals_file() {
        assert_eq!(parse_weights("b7=w/b7.h5").unwrap(), ("b7".to_string(), PathBuf::from("w/b7.h5")));
        assert_eq!(parse_weights("a=b=c").unwrap().1, PathBuf::from("b=c"));
        for bad in ["b7", "=x.h5", "b7="] {
            assert!(parse_weights(bad).unwrap_err().contains("ARCH=FILE"), "{bad}");
        }
    }
}
