//! `orchard bench serve`: requests/second and latency percentiles of `orchard serve` on loopback at several
//! concurrencies, the gain from batching (the same server with `--max-batch 1` beside it), and the server's
//! memory with many idle connections open.
//!
//! Both servers are this executable, started here and stopped (SIGTERM, then waited for) when the bench ends.
//! The machine is shared and noisy, so they are measured back to back, the order alternating between rounds,
//! and compared by medians over rounds. The clients are plain threads, each with its own keep-alive `ureq`
//! agent and one request in flight: exactly "C concurrent clients", and no async runtime of the client's own
//! competing for the cores the server is measured on.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use orchard_files::atomic;

use super::{mib, reset_peak_memory_of, status_kib};
use crate::args::DeviceArg;
use crate::children;
use crate::usage::UsageError;

/// How long the idle connections are held open before the server's memory is read.
const IDLE_HOLD: Duration = Duration::from_secs(2);
/// Longest wait for one answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for a server to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Args)]
pub struct BenchServeArgs {
    /// The experiment's output directory (holding manifest.json): the bench starts `orchard serve` on it twice,
    /// batched and with --max-batch 1. Not with --url.
    #[arg(value_name = "EXPERIMENT_DIR", required_unless_present = "url")]
    pub dir: Option<PathBuf>,
    /// Drive the server already running at http://HOST:PORT instead: no batch-1 comparison, and its idle
    /// connections are opened but its memory is not known.
    #[arg(long, conflicts_with_all = ["dir", "max_batch", "max_delay_ms", "device"])]
    pub url: Option<String>,
    /// The image every request posts to /predict (JPEG or PNG).
    #[arg(long)]
    pub image: PathBuf,
    /// Concurrent clients, comma-separated: a row of the table for each (and each server).
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    pub concurrency: Vec<usize>,
    /// Timed requests per round, concurrency and server.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// Untimed requests before them (same clients, same connections).
    #[arg(long, default_value_t = 16)]
    pub warmup: usize,
    /// Rounds: each measures every concurrency on both servers, back to back.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// The batched server's --max-batch (the other's is 1).
    #[arg(long, default_value_t = 16)]
    pub max_batch: usize,
    /// Both servers' --max-delay-ms.
    #[arg(long, default_value_t = 5)]
    pub max_delay_ms: u64,
    /// Idle TCP connections opened to the (batched) server while its memory is read; 0 skips that.
    #[arg(long, default_value_t = 1000)]
    pub idle: usize,
    #[command(flatten)]
    pub device: DeviceArg,
    /// Also write the results as Markdown to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: BenchServeArgs) -> Result<()> {
    let image = check(&args)?;
    let clients = args.concurrency.iter().copied().max().unwrap_or(1);
    let files = raise_open_files();
    let needed = (args.idle + clients + 64) as u64;
    if files < needed {
        return Err(UsageError(format!(
            "--idle {} with --concurrency up to {clients} needs about {needed} open files; this process may \
             open {files} (raise the hard limit, `ulimit -Hn`)",
            args.idle
        ))
        .into());
    }
    let load_average = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into());

    // The servers: started here (batched first), or the one at --url.
    let mut servers = Vec::new();
    if let Some(dir) = &args.dir {
        let queue = clients.max(256);
        for max_batch in [args.max_batch, 1] {
            servers.push(Server::start(dir, max_batch, queue, &args)?);
        }
    } else if let Some(url) = &args.url {
        servers.push(Server::at(url.trim_end_matches('/')));
    }
    for server in &servers {
        server.probe(&image, &args.image)?;
    }
    let at_start: Vec<Memory> = servers.iter().map(|s| server_memory(s.pid())).collect();

    // Rounds × concurrencies × servers, the servers' order alternating.
    let mut loads: Vec<Vec<Vec<Load>>> = vec![vec![Vec::new(); servers.len()]; args.concurrency.len()];
    for round in 0..args.rounds {
        for (c, &clients) in args.concurrency.iter().enumerate() {
            let mut order: Vec<usize> = (0..servers.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for s in order {
                let load = load(&servers[s].url, &image, clients, args.warmup, args.requests);
                eprintln!(
                    "bench serve: round {}/{}, concurrency {clients}, {}: {:.1} req/s, p50 {:.1} ms{}",
                    round + 1,
                    args.rounds,
                    servers[s].label,
                    load.rate(),
                    percentile(&sorted(load.latencies_ms.clone()), 0.5),
                    if load.errors.is_empty() { String::new() } else { format!(", {} ERRORS", load.errors.len()) }
                );
                loads[c][s].push(load);
            }
        }
    }
    let after_load: Vec<Memory> = servers.iter().map(|s| server_memory(s.pid())).collect();
    let idle = (args.idle > 0).then(|| idle(&servers[0], args.idle, &image));

    let report = Report {
        args: &args,
        image_bytes: image.len(),
        load_average,
        servers: &servers,
        loads,
        at_start,
        after_load,
        idle,
    };
    let text = report.markdown();
    out!("{text}")?;
    if let Some(out) = &args.out {
        atomic::write(out, text.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
    }
    let problems = report.problems();
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("THE BENCH FAILED, its figures are not to be quoted: {}", problems.join("; "))
    }
}

/// Every argument checked before anything starts; the image's bytes.
fn check(args: &BenchServeArgs) -> Result<Vec<u8>> {
    let usage = |message: String| -> Result<Vec<u8>> { Err(UsageError(message).into()) };
    let image = match orchard_files::input::read(&args.image, orchard_files::input::IMAGE) {
        Ok(bytes) => bytes,
        Err(e) => return usage(format!("--image {}: cannot read it: {e}", args.image.display())),
    };
    if !(image.starts_with(&[0xFF, 0xD8, 0xFF]) || image.starts_with(b"\x89PNG\r\n\x1a\n")) {
        return usage(format!("--image {}: not a JPEG or PNG", args.image.display()));
    }
    if args.concurrency.is_empty() || args.concurrency.contains(&0) {
        return usage("--concurrency: every value must be at least 1".into());
    }
    let clients = args.concurrency.iter().copied().max().unwrap_or(1);
    if args.requests < clients {
        return usage(format!(
            "--requests {} is fewer than --concurrency {clients}: some clients would send nothing",
            args.requests
        ));
    }
    if args.rounds == 0 {
        return usage("--rounds must be at least 1".into());
    }
    if let Some(dir) = &args.dir {
        if args.max_batch < 2 {
            return usage(format!("--max-batch {}: at least 2, to compare with batch size 1", args.max_batch));
        }
        if !dir.join("manifest.json").is_file() {
            return usage(format!(
                "EXPERIMENT_DIR {}: no manifest.json there (an experiment's output directory holds one once \
                 gathered)",
                dir.display()
            ));
        }
    }
    if let Some(url) = &args.url {
        if address(url).is_none() {
            return usage(format!("--url {url}: expected http://HOST:PORT (plain HTTP)"));
        }
    }
    if let Some(out) = &args.out {
        let folder = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !folder.is_dir() {
            return usage(format!("--out {}: no folder {}", out.display(), folder.display()));
        }
    }
    Ok(image)
}

/// `HOST:PORT` of an `http://HOST:PORT[/]` URL, resolved.
fn address(url: &str) -> Option<SocketAddr> {
    let rest = url.strip_prefix("http://")?.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') {
        return None;
    }
    rest.to_socket_addrs().ok()?.next()
}

/// Raises this process's soft limit on open files to the hard limit (the servers started here inherit it);
/// the limit now.
fn raise_open_files() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `getrlimit` and `setrlimit` only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// A server the bench drives: one it started (stopped when dropped), or the one at --url.
struct Server {
    label: String,
    url: String,
    child: Option<(Child, BufReader<ChildStdout>)>,
}

impl Server {
    /// `orchard serve DIR --addr 127.0.0.1:0 --max-batch B …`, once it listens.
    fn start(dir: &Path, max_batch: usize, queue: usize, args: &BenchServeArgs) -> Result<Server> {
        let exe = std::env::current_exe().context("cannot find this executable to start orchard serve")?;
        let mut command = Command::new(exe);
        command.arg("serve").arg(dir).arg("--addr").arg("127.0.0.1:0");
        command.args(["--max-batch", &max_batch.to_string(), "--max-delay-ms", &args.max_delay_ms.to_string()]);
        command.args(["--queue", &queue.to_string()]);
        // The bench measures how fast requests are answered, however long they queue: a batch-1 server at
        // concurrency 64 keeps requests waiting past the default 30 s deadline, which would answer them 504.
        command.args(["--deadline-ms", "3600000"]);
        if let Some(device) = args.device.device {
            command.args(["--device", &device.to_string()]);
        }
        command.stdout(Stdio::piped());
        children::die_with_parent(&mut command);
        let label = format!("max batch {max_batch}");
        let mut child = command.spawn().with_context(|| format!("cannot start orchard serve ({label})"))?;
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut server = Server { label, url: String::new(), child: Some((child, stdout)) };
        let mut line = String::new();
        let (_, stdout) = server.child.as_mut().expect("started");
        let read = stdout.read_line(&mut line);
        if let Some(url) = line.trim_end().strip_prefix("listening on ") {
            server.url = url.to_string();
            return Ok(server);
        }
        let status = server.stop();
        let how = status.map_or_else(|| "could not be waited for".into(), children::describe);
        let said = match read {
            Ok(_) if !line.is_empty() => format!(", its first line {:?}", line.trim_end()),
            Err(e) => format!(", its output unreadable ({e})"),
            Ok(_) => String::new(),
        };
        let message = format!("orchard serve {} ({}) did not start: it {how}{said}", dir.display(), server.label);
        if status.and_then(|s| s.code()) == Some(2) {
            Err(UsageError(message).into())
        } else {
            Err(anyhow!(message))
        }
    }

    fn at(url: &str) -> Server {
        Server { label: url.to_string(), url: url.to_string(), child: None }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|(child, _)| child.id())
    }

    /// One request before the bench: an image the server refuses is the user's mistake, said once.
    fn probe(&self, image: &[u8], path: &Path) -> Result<()> {
        match post(&agent(), &format!("{}/predict", self.url), image) {
            Ok(_) => Ok(()),
            Err(Failure::Status(status, body)) if (400..500).contains(&status) => {
                Err(UsageError(format!("--image {}: {} refused it: {status} {body}", path.display(), self.label))
                    .into())
            }
            Err(failure) => bail!("no answer from {}/predict: {failure}", self.url),
        }
    }

    /// SIGTERM, then its exit status (killed if it has not stopped within `STOP_TIMEOUT`).
    fn stop(&mut self) -> Option<ExitStatus> {
        let (child, _) = self.child.as_mut()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        // SAFETY: `kill` sends a signal to our own child, which has not been waited for (so its pid is ours).
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => break,
            }
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a request that did not get a 200 got.
#[derive(Debug)]
enum Failure {
    Status(u16, String),
    Transport(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(status, body) => write!(f, "status {status}: {body}"),
            Failure::Transport(e) => f.write_str(e),
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(REQUEST_TIMEOUT)).build().into()
}

/// POSTs `body`; on a 200, the answer's `x-orchard-batch-size` (None when absent). The answer is read to the
/// end, so the connection is kept for the next request.
fn post(agent: &ureq::Agent, url: &str, body: &[u8]) -> Result<Option<usize>, Failure> {
    let mut response = agent.post(url).send(body).map_err(|e| Failure::Transport(e.to_string()))?;
    let batch = response.headers().get("x-orchard-batch-size").and_then(|v| v.to_str().ok()?.parse().ok());
    let text =
        response.body_mut().read_to_string().map_err(|e| Failure::Transport(format!("reading the answer: {e}")))?;
    match response.status().as_u16() {
        200 => Ok(batch),
        status => Err(Failure::Status(status, text.chars().take(300).collect())),
    }
}

/// One measurement: `requests` timed requests from some clients, one server.
#[derive(Clone, Default)]
struct Load {
    requests: usize,
    secs: f64,
    /// Of the timed requests answered 200.
    latencies_ms: Vec<f64>,
    /// The answers' batch sizes, summed, and how many answers gave one.
    batch_sum: usize,
    batches: usize,
    /// Every failed request's failure, warmup included.
    errors: Vec<String>,
}

impl Load {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.secs
    }

    fn merge(&mut self, other: Load) {
        self.latencies_ms.extend(other.latencies_ms);
        self.batch_sum += other.batch_sum;
        self.batches += other.batches;
        self.errors.extend(other.errors);
    }
}

/// `warmup` untimed then `requests` timed POSTs of `image` to `url`/predict from `clients` threads, each with
/// its own keep-alive connection; the clock runs from when all have warmed up to when the last answer came.
fn load(url: &str, image: &[u8], clients: usize, warmup: usize, requests: usize) -> Load {
    let predict = format!("{url}/predict");
    let (warm, timed) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let ready = Barrier::new(clients + 1);
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(|| {
                    let agent = agent();
                    let mut load = Load::default();
                    while warm.fetch_add(1, Ordering::Relaxed) < warmup {
                        if let Err(failure) = post(&agent, &predict, image) {
                            load.errors.push(format!("warmup: {failure}"));
                        }
                    }
                    ready.wait();
                    while timed.fetch_add(1, Ordering::Relaxed) < requests {
                        let start = Instant::now();
                        match post(&agent, &predict, image) {
                            Ok(batch) => {
                                load.latencies_ms.push(start.elapsed().as_secs_f64() * 1e3);
                                load.batch_sum += batch.unwrap_or(0);
                                load.batches += usize::from(batch.is_some());
                            }
                            Err(failure) => load.errors.push(failure.to_string()),
                        }
                    }
                    load
                })
            })
            .collect();
        ready.wait();
        let start = Instant::now();
        let mut total = Load { requests, ..Load::default() };
        for thread in threads {
            total.merge(thread.join().expect("a client thread does not panic"));
        }
        total.secs = start.elapsed().as_secs_f64();
        total
    })
}

/// A process's resident memory now and at its peak, in KiB, and its open files (sockets included).
#[derive(Clone, Copy, Default)]
struct Memory {
    rss: Option<f64>,
    hwm: Option<f64>,
    files: Option<usize>,
}

fn server_memory(pid: Option<u32>) -> Memory {
    match pid {
        Some(pid) => Memory {
            rss: status_kib(Some(pid), "VmRSS"),
            hwm: status_kib(Some(pid), "VmHWM"),
            files: std::fs::read_dir(format!("/proc/{pid}/fd")).ok().map(Iterator::count),
        },
        None => Memory::default(),
    }
}

/// The idle-connections measurement.
struct Idle {
    asked: usize,
    opened: usize,
    /// Connect failures, by message.
    refused: BTreeMap<String, usize>,
    /// Still open when the memory was read (not closed by the server).
    still_open: usize,
    predict: Result<(), String>,
    before: Memory,
    after: Memory,
}

/// Opens `n` TCP connections to `server` that send nothing, holds them `IDLE_HOLD`, checks that /predict still
/// answers, and reads the server's memory before and with them open (its peak counter reset first).
fn idle(server: &Server, n: usize, image: &[u8]) -> Idle {
    let pid = server.pid();
    settle_open_files(pid);
    reset_peak_memory_of(pid);
    let before = server_memory(pid);
    let mut refused = BTreeMap::new();
    let mut streams = Vec::with_capacity(n);
    let addr = address(&server.url);
    for _ in 0..n {
        let stream = addr
            .ok_or_else(|| "no address".to_string())
            .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(5)).map_err(|e| e.to_string()));
        match stream {
            Ok(stream) => streams.push(stream),
            Err(e) => *refused.entry(e).or_insert(0) += 1,
        }
    }
    std::thread::sleep(IDLE_HOLD);
    // Read before /predict: its own connection would otherwise be counted or not depending on when it closes.
    let after = server_memory(pid);
    let predict = post(&agent(), &format!("{}/predict", server.url), image).map(drop).map_err(|f| f.to_string());
    let still_open = streams.iter().filter(|s| is_open(s)).count();
    Idle { asked: n, opened: streams.len(), refused, still_open, predict, before, after }
}

/// Waits (at most 3 s) until the server's open files stop changing: the load phase's keep-alive connections
/// close on the server's side a moment after their clients drop them, and must not count as idle ones.
fn settle_open_files(pid: Option<u32>) {
    let count = || server_memory(pid).files;
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last = count();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let now = count();
        if now == last {
            return;
        }
        last = now;
    }
}

/// Whether the peer has neither closed `stream` nor written to it.
fn is_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8];
    stream.set_nonblocking(true).is_ok()
        && matches!(stream.peek(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

/// Nearest-rank percentile of sorted values (NaN when there are none).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(values: &[f64]) -> f64 {
    let v = sorted(values.to_vec());
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Everything measured, as Markdown.
struct Report<'a> {
    args: &'a BenchServeArgs,
    image_bytes: usize,
    load_average: String,
    servers: &'a [Server],
    /// [concurrency][server][round].
    loads: Vec<Vec<Vec<Load>>>,
    at_start: Vec<Memory>,
    after_load: Vec<Memory>,
    idle: Option<Idle>,
}

impl Report<'_> {
    fn markdown(&self) -> String {
        let args = self.args;
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let mut out = String::from("## orchard bench serve\n\n");
        let image = format!("`{}` ({} bytes)", args.image.display(), self.image_bytes);
        match &args.dir {
            Some(dir) => {
                let device = args.device.device.map_or_else(String::new, |d| format!(" --device {d}"));
                out += &format!(
                    "- Experiment `{}`, image {image}.\n- Servers: `orchard serve --max-batch {} --max-delay-ms {}{device}` \
                     and the same with `--max-batch 1`, both on 127.0.0.1.\n",
                    dir.display(),
                    args.max_batch,
                    args.max_delay_ms
                );
            }
            None => out += &format!("- Server at {}, image {image}.\n", self.servers[0].url),
        }
        out += &format!(
            "- Clients: threads of the bench, each with one keep-alive connection and one request in flight, on the \
             same machine as the servers ({cores} cores, shared; load average {} at the start).\n\
             - {} rounds; in each, for every concurrency, {} untimed then {} timed requests to each server, back to \
             back (the order alternating between rounds). req/s: median over rounds (range in brackets); \
             latencies: percentiles of every round's timed requests pooled; gain: median over rounds of the \
             batched server's req/s over the batch-1 server's.\n\n",
            self.load_average, args.rounds, args.warmup, args.requests
        );
        out += "| concurrency | server | req/s | gain | p50 ms | p95 ms | p99 ms | mean batch | errors |\n";
        out += "|---:|---|---:|---:|---:|---:|---:|---:|---:|\n";
        for (c, &clients) in args.concurrency.iter().enumerate() {
            let rates = |s: usize| self.loads[c][s].iter().map(Load::rate).collect::<Vec<f64>>();
            for (s, server) in self.servers.iter().enumerate() {
                let loads = &self.loads[c][s];
                let rate = rates(s);
                let range = if rate.len() > 1 {
                    let r = sorted(rate.clone());
                    format!(" ({:.1}–{:.1})", r[0], r[r.len() - 1])
                } else {
                    String::new()
                };
                let gain = if s == 0 && self.servers.len() == 2 {
                    let ratios: Vec<f64> = rate.iter().zip(rates(1)).map(|(b, one)| b / one).collect();
                    format!("{:.2}×", median(&ratios))
                } else {
                    String::new()
                };
                let latencies = sorted(loads.iter().flat_map(|l| l.latencies_ms.iter().copied()).collect());
                let (batch_sum, batches) = loads.iter().fold((0, 0), |(s, n), l| (s + l.batch_sum, n + l.batches));
                let batch =
                    if batches == 0 { "–".to_string() } else { format!("{:.2}", batch_sum as f64 / batches as f64) };
                let errors: usize = loads.iter().map(|l| l.errors.len()).sum();
                out += &format!(
                    "| {clients} | {} | {:.1}{range} | {gain} | {:.1} | {:.1} | {:.1} | {batch} | {errors} |\n",
                    server.label,
                    median(&rate),
                    percentile(&latencies, 0.50),
                    percentile(&latencies, 0.95),
                    percentile(&latencies, 0.99)
                );
            }
        }
        if self.servers.iter().any(|s| s.pid().is_some()) {
            out += "\nMemory of each server process (VmRSS; peak: VmHWM):\n\n";
            for (s, server) in self.servers.iter().enumerate() {
                out += &format!(
                    "- {}: {} once listening, {} after the load, peak {}\n",
                    server.label,
                    mib(self.at_start[s].rss),
                    mib(self.after_load[s].rss),
                    mib(self.after_load[s].hwm)
                );
            }
        }
        if let Some(idle) = &self.idle {
            out += &format!("\n{}\n", self.idle_line(idle));
        }
        out
    }

    fn idle_line(&self, idle: &Idle) -> String {
        let mut line = format!(
            "idle connections: {} of {} opened to {} and held {} s, {} still open then; /predict meanwhile: {}",
            idle.opened,
            idle.asked,
            self.servers[0].label,
            IDLE_HOLD.as_secs(),
            idle.still_open,
            match &idle.predict {
                Ok(()) => "200".to_string(),
                Err(e) => format!("FAILED ({e})"),
            }
        );
        if let (Some(before), Some(after)) = (idle.before.rss, idle.after.rss) {
            let per = if idle.opened > 0 { (after - before) / idle.opened as f64 } else { f64::NAN };
            line += &format!(
                "; VmRSS {} before, {} with them open ({per:+.1} KiB per connection); VmHWM {} before, {} with \
                 them open (peak counter reset before opening them); the server's open files {} before, {} with \
                 them open",
                mib(Some(before)),
                mib(Some(after)),
                mib(idle.before.hwm),
                mib(idle.after.hwm),
                idle.before.files.map_or_else(|| "unknown".into(), |n| n.to_string()),
                idle.after.files.map_or_else(|| "unknown".into(), |n| n.to_string()),
            );
        } else {
            line += "; memory not known (the server was not started by the bench)";
        }
        for (error, count) in &idle.refused {
            line += &format!("\n- REFUSED: {count} connections: {error}");
        }
        line
    }

    /// What makes the figures unquotable, in words.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (c, &clients) in self.args.concurrency.iter().enumerate() {
            for (s, server) in self.servers.iter().enumerate() {
                let mut errors: BTreeMap<&str, usize> = BTreeMap::new();
                for error in self.loads[c][s].iter().flat_map(|l| &l.errors) {
                    *errors.entry(error).or_insert(0) += 1;
                }
                for (error, count) in errors {
                    problems.push(format!("{count} requests failed ({clients} clients, {}): {error}", server.label));
                }
            }
        }
        if let Some(idle) = &self.idle {
            if idle.opened < idle.asked {
                problems.push(format!("{} of {} idle connections refused", idle.asked - idle.opened, idle.asked));
            }
            if let Err(e) = &idle.predict {
                problems.push(format!("/predict failed with the idle connections open: {e}"));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_and_medians_average_the_middle_pair() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!([0.5, 0.95, 0.99, 1.0].map(|p| percentile(&v, p)), [50.0, 95.0, 99.0, 100.0]);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert!(percentile(&[], 0.5).is_nan());
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn urls_are_plain_http_host_and_port() {
        assert_eq!(address("http://127.0.0.1:8080"), Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(address("http://127.0.0.1:8080/"), Some("127.0.0.1:8080".parse().unwrap()));
        for bad in ["https://127.0.0.1:8080", "127.0.0.1:8080", "http://127.0.0.1", "http://127.0.0.1:80/predict"] {
            assert_eq!(address(bad), None, "{bad}");
        }
    }
}
