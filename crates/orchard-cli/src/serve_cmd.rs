//! `orchard serve`: an experiment's ensemble over HTTP. The server is `orchard-serve`; this module turns
//! the flags into its configuration and prints the address once it listens (tests and scripts wait for it).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use crate::args::{DeviceArg, PrecisionArg};

/// Serve an experiment's ensemble.
#[derive(Args)]
pub struct ServeArgs {
    /// The experiment's output directory (holding manifest.json).
    pub dir: PathBuf,
    /// Address to listen on; port 0 picks a free one (the printed line says which).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// The model's name in /v2/models/{name}.
    #[arg(long, default_value = "ensemble")]
    pub name: String,
    /// Images per forward pass, at most.
    #[arg(long, default_value_t = 16)]
    pub max_batch: usize,
    /// How long a request waits for others to share its batch, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub max_delay_ms: u64,
    /// Largest request body, in MiB.
    #[arg(long, default_value_t = 20)]
    pub max_body_mb: usize,
    /// Largest image (width × height), read from its header before decoding.
    #[arg(long, default_value_t = 40_000_000)]
    pub max_pixels: usize,
    /// Requests waiting for the model before new ones get 503.
    #[arg(long, default_value_t = 256)]
    pub queue: usize,
    /// Images in one request, at most (/predict/batch, infer).
    #[arg(long, default_value_t = 64)]
    pub max_images: usize,
    /// Open connections, at most; the next is answered 503 and closed.
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
    /// Seconds a client may take to send a request's head; idle connections are closed after it too.
    #[arg(long, default_value_t = 10.0)]
    pub header_timeout_s: f64,
    /// Seconds a client may take to send a request's body (408 after it).
    #[arg(long, default_value_t = 30.0)]
    pub body_timeout_s: f64,
    /// Milliseconds from a request's body to its answer (decoding, queue, model): 504 after it.
    #[arg(long, default_value_t = 30_000)]
    pub deadline_ms: u64,
    /// A file holding the bearer token every request but the health probes must carry.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArg,
    /// The models' arithmetic (bf16: about 1.5x faster on CPUs with AVX-512 BF16 or AMX; f16 needs CUDA).
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let seconds = |flag: &str, s: f64| {
        if s.is_finite() && s > 0.0 && s <= 86_400.0 {
            Ok(Duration::from_secs_f64(s))
        } else {
            Err(orchard_serve::ServeError::Config(format!("{flag} must be a number of seconds in (0, 86400], not {s}")))
        }
    };
    let config = orchard_serve::Config {
        dir: args.dir,
        addr: args.addr,
        name: args.name,
        max_batch: args.max_batch,
        max_delay: Duration::from_millis(args.max_delay_ms),
        max_body: args.max_body_mb << 20,
        max_pixels: args.max_pixels,
        queue: args.queue,
        max_images: args.max_images,
        max_connections: args.max_connections,
        header_timeout: seconds("--header-timeout-s", args.header_timeout_s)?,
        body_timeout: seconds("--body-timeout-s", args.body_timeout_s)?,
        deadline: Duration::from_millis(args.deadline_ms),
        token_file: args.token_file,
        device: args.device.torch(),
        precision: args.precision.into(),
    };
    orchard_serve::serve(config, |addr| {
        // A reader that went away is no reason to stop serving.
        let _ = writeln!(std::io::stdout(), "listening on http://{addr}");
        let _ = std::io::stdout().flush();
    })?;
    // A reader that went away (`| head -1`) is no reason to fail a clean stop.
    let _ = writeln!(std::io::stdout(), "stopped");
    Ok(())
}
