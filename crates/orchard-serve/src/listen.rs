//! The accept loop: HTTP/1.1 connections served by hyper with a deadline for each request's head (slow
//! clients and idle connections are closed), at most `max_connections` at once (the next is answered 503 and
//! closed, so a flood of idle sockets cannot take every file descriptor), and a graceful stop that finishes
//! the requests in flight.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::metrics::Metrics;

/// How connections are served.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    /// How long a client may take to send a request's head (from the connection's start or the previous
    /// answer).
    pub header_timeout: Duration,
    /// How long a stop waits for the requests in flight.
    pub drain: Duration,
}

/// Serves `router` on `listener` until `stop` resolves, then waits (at most `limits.drain`) for the
/// connections' requests in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    stop: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, or the client gave up before we accepted: wait a little.
                    eprintln!("orchard serve: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.refused_connections.inc();
            tokio::spawn(turn_away(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection =
            graceful.watch(http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone())));
        let metrics = metrics.clone();
        metrics.connections.inc();
        tokio::spawn(async move {
            // A client that vanishes or stalls mid-request ends its own connection, no one else's.
            let _ = connection.await;
            metrics.connections.dec();
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain, graceful.shutdown()).await.is_err() {
        eprintln!("orchard serve: requests still in flight after {:?}; stopping anyway", limits.drain);
    }
}

/// Answers a connection over the limit with a 503 and closes it.
async fn turn_away(mut stream: TcpStream) {
    let body = r#"{"error":"too many connections; try again"}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

/// Raises this process' open-file limit to what `connections` sockets need, up to the hard limit; returns
/// the limit now in force.
pub fn raise_file_limit(connections: usize) -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        // Room for the model's files, the runtime and the listener besides the connections.
        let want = (connections as u64 + 256).min(limit.rlim_max);
        if want > limit.rlim_cur {
            let raised = libc::rlimit { rlim_cur: want, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return want;
            }
        }
    }
    limit.rlim_cur
}

/// A real server on loopback for tests, and a raw HTTP exchange with it.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use std::io::{Read, Write};

    /// `router` served on a free loopback port until dropped.
    pub struct TestServer {
        pub addr: std::net::SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        runtime: tokio::runtime::Runtime,
        server: Option<tokio::task::JoinHandle<()>>,
    }

    impl TestServer {
        pub fn start(router: Router, limits: Limits, metrics: Arc<Metrics>) -> TestServer {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
            let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = runtime.spawn(serve(listener, router, limits, metrics, async {
                let _ = stopped.await;
            }));
            TestServer { addr, stop: Some(stop), runtime, server: Some(server) }
        }

        /// Sends `request` on a fresh connection and reads until the server closes it.
        pub fn exchange(&self, request: &str) -> String {
            let mut stream = std::net::TcpStream::connect(self.addr).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let mut out = String::new();
            let _ = stream.read_to_string(&mut out);
            out
        }

        /// `GET path` with `headers` (each ending in CRLF), closing the connection after the answer.
        pub fn get(&self, path: &str, headers: &str) -> String {
            self.exchange(&format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{headers}\r\n"))
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            let _ = self.stop.take().unwrap().send(());
            let server = self.server.take().unwrap();
            self.runtime.block_on(server).unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::TestServer;
    use super::*;
    use axum::routing::get;
    use std::io::{Read, Write};

    #[test]
    fn over_the_limit_is_turned_away_and_slow_heads_are_cut_off() {
        let limits =
            Limits { max_connections: 2, header_timeout: Duration::from_millis(500), drain: Duration::from_secs(1) };
        let router = Router::new().route("/", get(|| async { "hello" }));
        let metrics = Arc::new(Metrics::new());
        let server = TestServer::start(router, limits, metrics.clone());

        let ok = server.get("/", "");
        assert!(ok.starts_with("HTTP/1.1 200") && ok.ends_with("hello"), "{ok}");
        // Two idle connections take both places: the third is answered 503 at once.
        let idle: Vec<_> = (0..2).map(|_| std::net::TcpStream::connect(server.addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(100));
        let busy = server.get("/", "");
        assert!(busy.starts_with("HTTP/1.1 503") && busy.contains("too many connections"), "{busy}");
        assert_eq!(metrics.refused_connections.get(), 1);
        // A client that never finishes its head is cut off after the header timeout, freeing its place.
        let started = std::time::Instant::now();
        for mut stream in idle {
            stream.write_all(b"GET / HTT").unwrap();
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest);
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        std::thread::sleep(Duration::from_millis(100));
        let again = server.get("/", "");
        assert!(again.starts_with("HTTP/1.1 200"), "{again}");
        for _ in 0..50 {
            if metrics.connections.get() == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(metrics.connections.get(), 0);
    }
}
