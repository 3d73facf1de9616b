//! What `GET /metrics` reports, in Prometheus' text format: requests and their latency by endpoint and
//! status, time waiting for the model, batch sizes, the queue and connections, and the process' own figures
//! (resident memory, CPU time, open files) from the `prometheus` crate's Linux collector.

use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Every metric of one server.
pub struct Metrics {
    registry: Registry,
    /// Answers by endpoint (the route's template, `unmatched` for unknown paths) and status code.
    pub requests: IntCounterVec,
    /// Time from the request's head to its answer, by endpoint.
    pub latency: HistogramVec,
    /// Time a job waited in the queue before its batch started.
    pub queue_wait: Histogram,
    /// Images per forward pass.
    pub batch_images: Histogram,
    /// Time of one batch's forward passes (every fold model of every member).
    pub forward: Histogram,
    /// Jobs waiting for the model thread.
    pub queued: IntGauge,
    /// Jobs dropped unanswered because their deadline passed while they waited.
    pub expired: IntCounter,
    /// Open client connections.
    pub connections: IntGauge,
    /// Connections turned away because the connection limit was reached.
    pub refused_connections: IntCounter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let seconds = exponential_buckets(0.001, 2.0, 16).expect("valid buckets");
        let requests = IntCounterVec::new(
            Opts::new("orchard_http_requests_total", "HTTP requests answered, by endpoint and status code"),
            &["endpoint", "code"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("orchard_http_request_duration_seconds", "Time to answer a request, by endpoint")
                .buckets(seconds.clone()),
            &["endpoint"],
        )
        .expect("valid metric");
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric")
        };
        let queue_wait =
            histogram("orchard_queue_wait_seconds", "Time a request waited for its batch to start", seconds.clone());
        let batch_images = histogram(
            "orchard_batch_images",
            "Images per forward pass",
            exponential_buckets(1.0, 2.0, 8).expect("valid buckets"),
        );
        let forward = histogram("orchard_forward_seconds", "Time of one batch's forward passes", seconds);
        let queued = IntGauge::new("orchard_queue_jobs", "Requests waiting for the model").expect("valid metric");
        let expired = IntCounter::new("orchard_expired_jobs_total", "Requests whose deadline passed in the queue")
            .expect("valid metric");
        let connections = IntGauge::new("orchard_open_connections", "Open client connections").expect("valid metric");
        let refused_connections =
            IntCounter::new("orchard_refused_connections_total", "Connections refused at the connection limit")
                .expect("valid metric");
        let metrics = Metrics {
            registry,
            requests,
            latency,
            queue_wait,
            batch_images,
            forward,
            queued,
            expired,
            connections,
            refused_connections,
        };
        let r = &metrics.registry;
        r.register(Box::new(metrics.requests.clone())).expect("unique metric");
        r.register(Box::new(metrics.latency.clone())).expect("unique metric");
        r.register(Box::new(metrics.queue_wait.clone())).expect("unique metric");
        r.register(Box::new(metrics.batch_images.clone())).expect("unique metric");
        r.register(Box::new(metrics.forward.clone())).expect("unique metric");
        r.register(Box::new(metrics.queued.clone())).expect("unique metric");
        r.register(Box::new(metrics.expired.clone())).expect("unique metric");
        r.register(Box::new(metrics.connections.clone())).expect("unique metric");
        r.register(Box::new(metrics.refused_connections.clone())).expect("unique metric");
        r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self())).expect("unique metric");
        metrics
    }

    /// Every metric in the text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding into memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// The text format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_counted() {
        let m = Metrics::new();
        m.requests.with_label_values(&["/predict", "200"]).inc_by(3);
        m.batch_images.observe(5.0);
        let text = m.render();
        assert!(text.contains("orchard_http_requests_total{code=\"200\",endpoint=\"/predict\"} 3"), "{text}");
        assert!(text.contains("orchard_batch_images_bucket{le=\"8\"} 1"), "{text}");
        assert!(text.contains("orchard_batch_images_bucket{le=\"4\"} 0"), "{text}");
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
    }
}
