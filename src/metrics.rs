//! The Prometheus registry and collectors.
//!
//! One process-wide registry, so every layer records without threading a handle through. Labels are
//! bounded (kinds, verbs, routes, results): never a per-object value. Gauges that describe state
//! (seconds since a watcher's last event) are computed at scrape time, so the hot path only bumps atomics.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub http_request_duration: HistogramVec,
    pub cache_objects: IntGaugeVec,
    pub watch_events: IntCounterVec,
    pub watch_errors: IntCounterVec,
    pub watch_relists: IntCounterVec,
    watch_since_last_event: GaugeVec,
    pub provider_requests: IntCounterVec,
    pub reconciles: IntCounterVec,
    pub reconcile_duration: HistogramVec,
    pub queue_depth: IntGauge,
    pub leader: IntGauge,
    pub api_served: IntGaugeVec,
    pub writes: IntCounterVec,
    pub ecs_throttled: IntCounterVec,
    pub auth_decisions: IntCounterVec,
    pub rate_limited: IntCounterVec,
    last_event: Mutex<HashMap<String, Instant>>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// The text exposition of every metric, process metrics included.
pub fn render() -> String {
    let m = metrics();
    m.refresh_scrape_time_gauges();
    let mut buf = Vec::new();
    // Encoding our own well-formed families into a Vec cannot fail.
    let _ = TextEncoder::new().encode(&m.registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry.register(Box::new(c.clone())).expect("metric names are unique and valid");
    c
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(registry, IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter"))
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets);
    register(registry, HistogramVec::new(opts, labels).expect("valid histogram"))
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("process collector registers once");
        let fast = vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
        let slow = vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
        Metrics {
            http_request_duration: histogram(
                &registry,
                "machinist_http_request_duration_seconds",
                "Duration of REST requests, by method, route template and status code.",
                &["method", "route", "status"],
                fast,
            ),
            cache_objects: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "machinist_cache_objects",
                        "Objects held in the in-memory cache, by provider and kind.",
                    ),
                    &["provider", "kind"],
                )
                .expect("valid gauge"),
            ),
            watch_events: counter(
                &registry,
                "machinist_watch_events_total",
                "Watch events received, by kind and event (apply, delete, init_apply, init_done).",
                &["kind", "event"],
            ),
            watch_errors: counter(
                &registry,
                "machinist_watch_errors_total",
                "Watcher errors (each one restarts the watch with backoff), by kind.",
                &["kind"],
            ),
            watch_relists: counter(
                &registry,
                "machinist_watch_relists_total",
                "Full relists of a watcher (initial list, or after 410 Gone), by kind.",
                &["kind"],
            ),
            watch_since_last_event: register(
                &registry,
                GaugeVec::new(
                    Opts::new(
                        "machinist_watch_seconds_since_last_event",
                        "Seconds since a watcher last received an event (bookmarks included), by kind.",
                    ),
                    &["kind"],
                )
                .expect("valid gauge"),
            ),
            provider_requests: counter(
                &registry,
                "machinist_provider_requests_total",
                "Requests machinist made to a provider API, by provider, verb and resource.",
                &["provider", "verb", "resource"],
            ),
            reconciles: counter(
                &registry,
                "machinist_reconcile_total",
                "Reconciles of scale requests, by source (crd, rest) and result.",
                &["source", "result"],
            ),
            reconcile_duration: histogram(
                &registry,
                "machinist_reconcile_duration_seconds",
                "Duration of one reconcile, by source (crd, rest).",
                &["source"],
                slow,
            ),
            queue_depth: register(
                &registry,
                IntGauge::new("machinist_reconcile_queue_depth", "Targets waiting in the reconciler queue.")
                    .expect("valid gauge"),
            ),
            leader: register(
                &registry,
                IntGauge::new("machinist_leader", "1 while this replica holds the leader Lease, else 0.")
                    .expect("valid gauge"),
            ),
            api_served: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "machinist_k8s_api_served",
                        "1 while the cluster serves the optional API (Gateway API kinds, the ScaleRequest CRD), \
                         0 while discovery says it does not.",
                    ),
                    &["api"],
                )
                .expect("valid gauge"),
            ),
            writes: counter(
                &registry,
                "machinist_provider_writes_total",
                "Writes machinist made to a provider, by provider, operation and result.",
                &["provider", "op", "result"],
            ),
            ecs_throttled: counter(
                &registry,
                "machinist_ecs_throttled_total",
                "ECS calls answered with a throttling error, by operation.",
                &["operation"],
            ),
            auth_decisions: counter(
                &registry,
                "machinist_auth_decisions_total",
                "Authentication and authorization decisions, by mode and result.",
                &["mode", "result"],
            ),
            rate_limited: counter(
                &registry,
                "machinist_rate_limited_total",
                "Requests refused by a rate limit, by tier.",
                &["tier"],
            ),
            last_event: Mutex::new(HashMap::new()),
            registry,
        }
    }

    /// Records that a watcher of `kind` saw an event now.
    pub fn watch_seen(&self, kind: &str) {
        let mut last = self.last_event.lock().unwrap_or_else(|e| e.into_inner());
        match last.get_mut(kind) {
            Some(at) => *at = Instant::now(),
            None => {
                last.insert(kind.to_owned(), Instant::now());
            }
        }
    }

    /// Seconds since a watcher of `kind` last saw an event; `None` before its first.
    pub fn seconds_since_last_event(&self, kind: &str) -> Option<f64> {
        let last = self.last_event.lock().unwrap_or_else(|e| e.into_inner());
        last.get(kind).map(|at| at.elapsed().as_secs_f64())
    }

    fn refresh_scrape_time_gauges(&self) {
        let last = self.last_event.lock().unwrap_or_else(|e| e.into_inner());
        for (kind, at) in last.iter() {
            self.watch_since_last_event.with_label_values(&[kind.as_str()]).set(at.elapsed().as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_and_a_prefix() {
        metrics().watch_seen("pods");
        metrics().http_request_duration.with_label_values(&["GET", "/health/liveness", "200"]).observe(0.001);
        let text = render();
        assert!(text.contains("machinist_watch_seconds_since_last_event{kind=\"pods\"}"));
        for line in text.lines().filter(|l| l.starts_with("# HELP ")) {
            let mut parts = line.splitn(4, ' ');
            let name = parts.nth(2).unwrap_or_default();
            assert!(name.starts_with("machinist_") || name.starts_with("process_"), "{name}");
            assert!(parts.next().is_some_and(|help| !help.is_empty()), "{name} has no help");
        }
    }

    #[test]
    fn seconds_since_last_event_grows() {
        metrics().watch_seen("services");
        let first = metrics().seconds_since_last_event("services").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(metrics().seconds_since_last_event("services").unwrap() > first);
        assert!(metrics().seconds_since_last_event("never-seen").is_none());
    }
}
