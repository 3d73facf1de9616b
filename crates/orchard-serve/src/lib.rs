//! `orchard serve`: a finished experiment's ensemble answering HTTP requests, computing for an uploaded
//! image exactly what the experiment's gather step computed for a test image — each member the mean of its
//! fold models' probabilities with the experiment's TTA, then the fitted blend.
//!
//! The modules, in the order a request meets them: `listen` (connections: limit, head timeout, graceful
//! stop), `guard` (metrics, bearer token, JSON errors, panics), `http` (routes: Open Inference Protocol v2,
//! `/predict`, `/predict/batch`, `/metrics`, `/openapi.json`; bodies read under limits), `prepare` (header
//! checks and decoding, on tokio's blocking pool), `batcher` (the one thread that owns the models, gathering
//! requests into batches) and `ensemble` (the models and the blend). I/O threads never wait on a forward
//! pass: they wait on a oneshot reply.

mod batcher;
mod ensemble;
mod error;
mod guard;
mod http;
mod listen;
mod metrics;
mod prepare;
pub mod request;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
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
    /// Images in one request, at most.
    pub max_images: usize,
    /// Open connections, at most; the next is answered 503 and closed.
    pub max_connections: usize,
    /// How long a client may take to send a request's head (idle connections are closed after it too).
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body.
    pub body_timeout: Duration,
    /// How long a request may take from its body's arrival to its answer (decoding, queue, model): 504
    /// after it, and a job still queued is dropped uncomputed.
    pub deadline: Duration,
    /// A file holding the bearer token clients must send (`Authorization: Bearer ...`); health probes need
    /// none.
    pub token_file: Option<PathBuf>,
    pub device: tch::Device,
    /// The models' arithmetic (bf16: each inference form cast once).
    pub precision: orchard_files::config::Precision,
}

/// Loads the experiment, binds `config.addr`, calls `ready` with the bound address, then serves until
/// SIGTERM or SIGINT, after which the requests in flight are answered before it returns.
pub fn serve(config: Config, ready: impl FnOnce(SocketAddr)) -> Result<()> {
    let counts = [config.max_batch, config.queue, config.max_pixels, config.max_images, config.max_connections];
    if counts.contains(&0) {
        return Err(ServeError::Config(
            "max batch, queue, max pixels, max images and max connections must be at least 1".into(),
        ));
    }
    let timeouts = [config.header_timeout, config.body_timeout, config.deadline];
    if timeouts.contains(&Duration::ZERO) {
        return Err(ServeError::Config("the header and body timeouts and the deadline must be above zero".into()));
    }
    let token = config.token_file.as_deref().map(read_token).transpose()?;
    let files = listen::raise_file_limit(config.max_connections);
    if files < config.max_connections as u64 {
        eprintln!("orchard serve: only {files} open files allowed: fewer connections than --max-connections fit");
    }
    let metrics = Arc::new(metrics::Metrics::new());
    let model = batcher::start(&config, metrics.clone())?;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    // Decoding runs on the blocking pool: as many threads as cores, not tokio's default of 512.
    let runtime =
        tokio::runtime::Builder::new_multi_thread().max_blocking_threads(cores).enable_io().enable_time().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|source| ServeError::Bind { addr: config.addr, source })?;
        ready(listener.local_addr()?);
        let limits = listen::Limits {
            max_connections: config.max_connections,
            header_timeout: config.header_timeout,
            drain: config.deadline + config.body_timeout,
        };
        let router = http::router(&config, token, model, metrics.clone());
        listen::serve(listener, router, limits, metrics, stop()).await;
        Ok(())
    })
}

/// The bearer token in `path` (surrounding whitespace dropped), which must not be empty.
fn read_token(path: &std::path::Path) -> Result<String> {
    let text = orchard_files::input::read_to_string(path, orchard_files::input::TEXT)
        .map_err(|e| ServeError::Config(format!("cannot read the token file {}: {e}", path.display())))?;
    let token = text.trim();
    if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ServeError::Config(format!(
            "{}: the token file must hold one token (no spaces or line breaks inside it)",
            path.display()
        )));
    }
    Ok(token.to_string())
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
