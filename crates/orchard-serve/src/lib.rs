//! `orchard serve`: a finished experiment's ensemble answering HTTP requests, computing for an uploaded
//! image exactly what the experiment's gather step computed for a test image — each member the mean of its
//! fold models' probabilities with the experiment's TTA, then the fitted blend.
//!
//! The modules, in the order a request meets them: `http` (routes, Open Inference Protocol v2 and
//! `/predict`, JSON errors), `prepare` (header checks and decoding, on tokio's blocking pool), `batcher`
//! (the one thread that owns the models, gathering requests into batches) and `ensemble` (the models and
//! the blend). I/O threads never wait on a forward pass: they wait on a oneshot reply.

mod batcher;
mod ensemble;
mod http;
mod prepare;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use ensemble::Answer;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    File(#[from] orchard_files::FileError),
    #[error(transparent)]
    Infer(#[from] orchard_infer::InferError),
    #[error(transparent)]
    Ensemble(#[from] orchard_ensemble::EnsembleError),
    /// The experiment cannot be served as it is (classes that disagree, a blend that needs the whole test
    /// set, ...).
    #[error("{0}")]
    Experiment(String),
    /// Limits that cannot work.
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

impl ServeError {
    /// True when the user's experiment or options are at fault (the CLI exits with code 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            ServeError::File(e) => e.is_bad_input(),
            ServeError::Infer(e) => e.is_bad_input(),
            ServeError::Ensemble(_) | ServeError::Experiment(_) | ServeError::Config(_) => true,
            ServeError::Bind { .. } | ServeError::Io(_) => false,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, ServeError>;

/// What to serve and how.
#[derive(Clone, Debug)]
pub struct Config {
    /// The experiment's output directory (holding `manifest.json`).
    pub dir: PathBuf,
    pub addr: SocketAddr,
    /// The model's name in `/v2/models/{name}`.
    pub name: String,
    /// Images per forward pass, at most (one request's images are never split).
    pub max_batch: usize,
    /// How long the first request of a batch waits for others.
    pub max_delay: Duration,
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// Largest image (width × height) accepted, read from its header before decoding.
    pub max_pixels: usize,
    /// Requests waiting for the model thread before new ones are refused with 503.
    pub queue: usize,
    pub device: tch::Device,
}

/// Loads the experiment, binds `config.addr`, calls `ready` with the bound address, then serves until
/// SIGTERM or SIGINT, after which the requests in flight are answered before it returns.
pub fn serve(config: Config, ready: impl FnOnce(SocketAddr)) -> Result<()> {
    if config.max_batch == 0 || config.queue == 0 || config.max_pixels == 0 {
        return Err(ServeError::Config("max batch, queue and max pixels must be at least 1".into()));
    }
    let model = batcher::start(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_io().enable_time().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|source| ServeError::Bind { addr: config.addr, source })?;
        ready(listener.local_addr()?);
        axum::serve(listener, http::router(&config, model)).with_graceful_shutdown(stop()).await?;
        Ok(())
    })
}

/// Resolves on SIGTERM (what `kill` and container runtimes send) or SIGINT (Ctrl-C).
async fn stop() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler installs");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
