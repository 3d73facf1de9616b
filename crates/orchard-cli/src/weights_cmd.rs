//! `orchard weights …`: convert any weight file Orchard reads into its native checkpoint, and show what a
//! file holds (for users whose import fails: the names, shapes and dtypes the loader compared).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use orchard_models::weights::{self, native, LoadOptions, NativeHeader};
use tch::{nn, Device};

use crate::usage::UsageError;

#[derive(Subcommand)]
pub enum WeightsCommand {
    /// Convert a Keras .h5, PyTorch .pth/.pt or .safetensors file into an Orchard checkpoint (.safetensors
    /// with a header naming the architecture and classes). All or nothing: a mismatch lists every missing,
    /// unexpected and mis-shaped tensor.
    Import(ImportArgs),
    /// List a weight file's tensors: name, shape, dtype (and, for Keras files, the Orchard variable each
    /// maps to).
    Inspect(InspectArgs),
}

#[derive(Args)]
pub struct ImportArgs {
    /// Registered architecture (see `orchard models list`).
    #[arg(long)]
    pub arch: String,
    /// The file to convert; its format is detected from its first bytes.
    #[arg(long)]
    pub from: PathBuf,
    /// The checkpoint to write (written to a temporary file, then renamed).
    #[arg(long)]
    pub out: PathBuf,
    /// Import the backbone only; with --classes, a fresh head of that many classes is added.
    #[arg(long)]
    pub no_top: bool,
    /// Classes of the head; default: the file's head (none for a file without one, or with --no-top). A
    /// head for a file without one starts fresh.
    #[arg(long)]
    pub classes: Option<i64>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// The weight file.
    pub file: PathBuf,
}

pub fn run(command: WeightsCommand) -> Result<()> {
    match command {
        WeightsCommand::Import(args) => import(args),
        WeightsCommand::Inspect(args) => inspect(args),
    }
}

fn import(args: ImportArgs) -> Result<()> {
    let spec = orchard_models::spec(&args.arch).map_err(|e| UsageError(e.to_string()))?;
    let file = weights::read(&args.from)?;
    let in_file = weights::head_classes(&file, &spec);
    let classes = match (args.classes, args.no_top) {
        (Some(n), _) if n < 1 => {
            return Err(UsageError(format!("--classes {n}: a head needs at least one class")).into())
        }
        (Some(n), false) if in_file.is_some_and(|m| m != n) => {
            return Err(UsageError(format!(
                "--classes {n}, but {} has a head of {} classes: add --no-top to replace it",
                args.from.display(),
                in_file.unwrap_or_default()
            ))
            .into());
        }
        (Some(n), _) => Some(n),
        (None, true) => None,
        (None, false) => in_file,
    };
    // A head asked of a file without one is necessarily fresh.
    let no_top = args.no_top || (classes.is_some() && in_file.is_none());
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = orchard_models::build(spec.name, &vs.root(), classes)?;
    let loaded = weights::load_into(&vs, "", &spec, &file, LoadOptions { no_top, imagenet_statistics: None })?;
    let mut variables: Vec<_> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    native::write(&args.out, &variables, &NativeHeader::new(&spec, classes))
        .with_context(|| format!("writing {}", args.out.display()))?;
    let head = classes.map_or("no head".to_string(), |n| format!("a head of {n} classes"));
    let fresh = if no_top && classes.is_some() { " (fresh)" } else { "" };
    outln!(
        "{}: {} tensors of {} ({}) loaded into {} with {head}{fresh}; {} variables written to {}",
        args.from.display(),
        loaded,
        file.tensors.len(),
        file.format,
        spec.name,
        variables.len(),
        args.out.display()
    )?;
    Ok(())
}

fn inspect(args: InspectArgs) -> Result<()> {
    let file = weights::read(&args.file)?;
    outln!("{}: {}, {} tensors", args.file.display(), file.format, file.tensors.len())?;
    if let Some(header) = &file.header {
        outln!("header: {}", serde_json::to_string(header)?)?;
    }
    let mut numbers = 0;
    for (name, tensor) in &file.tensors {
        numbers += tensor.numel();
        let shape = format!("{:?}", tensor.size());
        let dtype = native::kind_name(tensor.kind());
        match (file.format.is_keras(), weights::orchard_name(file.format, name)) {
            (true, Some(orchard)) => outln!("{name:<60} {shape:<20} {dtype:<5} -> {orchard}")?,
            (true, None) => outln!("{name:<60} {shape:<20} {dtype:<5} -> (no Orchard counterpart)")?,
            (false, _) => outln!("{name:<60} {shape:<20} {dtype}")?,
        }
    }
    outln!("{numbers} numbers in all")?;
    Ok(())
}
