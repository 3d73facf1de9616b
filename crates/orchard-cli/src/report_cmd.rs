//! `orchard report RUN_DIR [--out FILE]`: an experiment directory (or one training run's directory) as one
//! self-contained HTML page, `RUN_DIR/report.html` by default. `orchard run` writes the same page when it
//! has gathered. The page is `orchard-report`'s; this command names the libtorch it was built with.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use orchard_report::{Options, GALLERY, REPORT};

/// Write an HTML report of an experiment or a training run.
#[derive(Args)]
pub struct ReportArgs {
    /// An experiment directory (`orchard run`'s output) or a training run's (`orchard train --out`).
    pub run_dir: PathBuf,
    /// The page to write (default: RUN_DIR/report.html).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The dataset folder, when it is no longer where the run's configuration says.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Most validation images in the gallery (the most confident mistakes first); 0 for none.
    #[arg(long, default_value_t = GALLERY)]
    pub gallery: usize,
}

pub fn run(args: ReportArgs) -> Result<()> {
    let path = write(&args.run_dir, args.out, args.data, args.gallery)?;
    outln!("wrote {}", path.display())?;
    Ok(())
}

/// Writes the report of `dir` (to `out`, else `dir/report.html`), warns of what it left out, and returns
/// its path.
pub fn write(dir: &Path, out: Option<PathBuf>, data: Option<PathBuf>, gallery: usize) -> Result<PathBuf> {
    let out = out.unwrap_or_else(|| dir.join(REPORT));
    let options = Options { data, libtorch: Some(env!("ORCHARD_LIBTORCH_VERSION").to_string()), gallery };
    let notes = orchard_report::write(dir, &out, &options).with_context(|| format!("report of {}", dir.display()))?;
    for note in notes {
        eprintln!("warning: the report leaves out {note}");
    }
    Ok(out)
}
