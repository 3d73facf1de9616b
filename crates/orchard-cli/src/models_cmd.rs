//! `orchard models …`: what architectures exist and how large they are.

use anyhow::Result;
use clap::{Args, Subcommand};
use tch::{nn, Device};

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Name, default input size (WxH) and parameter counts with a 1000-class top and without (Keras' count:
    /// trainable weights plus batch-norm moving statistics).
    List(ModelsListArgs),
}

#[derive(Args)]
pub struct ModelsListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Classes of the ImageNet top that Keras counts "with top" parameters for.
const IMAGENET_CLASSES: i64 = 1000;

pub fn run(command: ModelsCommand) -> Result<()> {
    match command {
        ModelsCommand::List(args) => list(args.json),
    }
}

/// One row of `models list`.
#[derive(serde::Serialize)]
struct Row {
    name: &'static str,
    /// Default input size, (height, width).
    input_size: (i64, i64),
    params_with_top: i64,
    params_without_top: i64,
}

fn list(json: bool) -> Result<()> {
    let mut rows = Vec::new();
    for name in orchard_models::names() {
        // Counted the Keras way: every number the model holds (trainable weights, batch-norm moving
        // statistics, input-normalisation state). The top is the dense layer over the pooled features.
        let vs = nn::VarStore::new(Device::Cpu);
        let model = orchard_models::build(name, &vs.root(), None)?;
        let without_top: i64 = vs.variables().values().map(|t| t.numel() as i64).sum();
        let features = model.spec().num_features;
        let with_top = without_top + features * IMAGENET_CLASSES + IMAGENET_CLASSES;
        rows.push(Row {
            name,
            input_size: model.spec().default_size,
            params_with_top: with_top,
            params_without_top: without_top,
        });
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&rows)?)?;
    } else {
        outln!("{:<22} {:>9} {:>16} {:>16}", "model", "input", "params (top)", "params (no top)")?;
        for r in &rows {
            let size = format!("{}x{}", r.input_size.1, r.input_size.0);
            outln!("{:<22} {:>9} {:>16} {:>16}", r.name, size, r.params_with_top, r.params_without_top)?;
        }
    }
    Ok(())
}
