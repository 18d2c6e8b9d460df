//! The Prometheus registry and collectors.
//!
//! One process-wide registry, so every layer records without threading a handle through. Labels are
//! bounded (kinds, verbs, routes, results): never a per-object value. The series whose label values are
//! known at start (per watched kind, per source, per tier) are created then at zero ([`init_series`],
//! [`Metrics::watch_series`]), so rates and alerts see a 0 rather than nothing. It decides no health: the
//! watch gauges mirror what `/health/readiness` uses so an alert can apply the same rule.

use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub http_request_duration: HistogramVec,
    pub cache_objects: IntGaugeVec,
    pub watch_events: IntCounterVec,
    pub watch_errors: IntCounterVec,
    pub watch_relists: IntCounterVec,
    watch_last_event: GaugeVec,
    watch_consecutive_errors: IntGaugeVec,
    pub watch_stale_after: Gauge,
    pub build_info: IntGaugeVec,
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
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// The text exposition of every metric, process metrics included.
pub fn render() -> String {
    let m = metrics();
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
            watch_last_event: register(
                &registry,
                GaugeVec::new(
                    Opts::new(
                        "machinist_watch_last_event_timestamp_seconds",
                        "Unix time of a watcher's last event (its start before the first), by kind and scope.",
                    ),
                    &["kind", "scope"],
                )
                .expect("valid gauge"),
            ),
            watch_consecutive_errors: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "machinist_watch_consecutive_errors",
                        "Errors of a watcher since its last event, by kind and scope.",
                    ),
                    &["kind", "scope"],
                )
                .expect("valid gauge"),
            ),
            watch_stale_after: register(
                &registry,
                Gauge::new(
                    "machinist_watch_stale_after_seconds",
                    "A failing watcher with no event for longer than this fails readiness (--watch-stale-after).",
                )
                .expect("valid gauge"),
            ),
            build_info: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new("machinist_build_info", "Always 1; the labels say which build is running."),
                    &["version"],
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
            registry,
        }
    }

    /// The series of one watcher (`scope` is its namespace, `None` for all namespaces), created now: its
    /// last-event time is now (readiness counts a watcher's start as its first event) and its counters of
    /// events, errors and relists exist at zero.
    pub fn watch_series(&self, kind: &str, scope: Option<&str>) -> WatchSeries {
        let scope = scope.unwrap_or(ALL_NAMESPACES);
        for event in WATCH_EVENTS {
            self.watch_events.with_label_values(&[kind, event]);
        }
        self.watch_errors.with_label_values(&[kind]);
        self.watch_relists.with_label_values(&[kind]);
        let series = WatchSeries {
            last_event: self.watch_last_event.with_label_values(&[kind, scope]),
            errors: self.watch_consecutive_errors.with_label_values(&[kind, scope]),
            labels: [kind.to_string(), scope.to_string()],
        };
        series.event();
        series
    }
}

/// The `scope` label of a watcher over all namespaces (never a namespace name: those have no `*`).
pub const ALL_NAMESPACES: &str = "*";

/// The `event` label values of `machinist_watch_events_total`.
const WATCH_EVENTS: [&str; 4] = ["apply", "delete", "init_apply", "init_done"];

/// One watcher's gauges, held by its health entry so the per-event update finds them without a lookup.
#[derive(Debug)]
pub struct WatchSeries {
    last_event: Gauge,
    errors: IntGauge,
    labels: [String; 2],
}

impl WatchSeries {
    pub fn event(&self) {
        self.last_event.set(unix_now());
        self.errors.set(0);
    }

    pub fn error(&self) {
        self.errors.inc();
    }

    /// Drops the series (a watcher that will never run, such as an unserved Gateway API kind).
    pub fn remove(self) {
        let m = metrics();
        let labels = [self.labels[0].as_str(), self.labels[1].as_str()];
        let _ = m.watch_last_event.remove_label_values(&labels);
        let _ = m.watch_consecutive_errors.remove_label_values(&labels);
    }
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default()
}

/// What the operator is configured with, for the series [`init_series`] creates.
pub struct Startup<'a> {
    pub providers: &'a [&'a str],
    pub auth_mode: &'a str,
    pub watch_stale_after: std::time::Duration,
}

/// Sets the build info and the stale threshold, and creates at zero the series whose labels are known from
/// the configuration. Per-kind watch series are created by [`Metrics::watch_series`] as watchers start.
pub fn init_series(startup: &Startup<'_>) {
    let m = metrics();
    m.build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    m.watch_stale_after.set(startup.watch_stale_after.as_secs_f64());
    for source in ["crd", "rest"] {
        m.reconciles.with_label_values(&[source, "success"]);
        m.reconcile_duration.with_label_values(&[source]);
    }
    for provider in startup.providers {
        m.writes.with_label_values(&[provider, "scale", "success"]);
    }
    if startup.auth_mode != "none" {
        for result in ["allowed", "unauthenticated", "forbidden", "error"] {
            m.auth_decisions.with_label_values(&[startup.auth_mode, result]);
        }
    }
    for tier in ["identity", "ip", "global"] {
        m.rate_limited.with_label_values(&[tier]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_and_a_prefix() {
        let _series = metrics().watch_series("Pod", None);
        metrics().http_request_duration.with_label_values(&["GET", "/health/liveness", "200"]).observe(0.001);
        let text = render();
        assert!(text.contains("machinist_watch_last_event_timestamp_seconds{kind=\"Pod\",scope=\"*\"}"));
        for line in text.lines().filter(|l| l.starts_with("# HELP ")) {
            let mut parts = line.splitn(4, ' ');
            let name = parts.nth(2).unwrap_or_default();
            assert!(name.starts_with("machinist_") || name.starts_with("process_"), "{name}");
            assert!(parts.next().is_some_and(|help| !help.is_empty()), "{name} has no help");
        }
    }

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn a_watchers_series_follow_its_events_and_errors() {
        let before = unix_now();
        let series = metrics().watch_series("Service", Some("team-a"));
        let at = "{kind=\"Service\",scope=\"team-a\"}";
        let text = render();
        assert!(
            sample(&text, &format!("machinist_watch_last_event_timestamp_seconds{at}")).unwrap() >= before
        );
        assert_eq!(sample(&text, &format!("machinist_watch_consecutive_errors{at}")), Some(0.0));
        assert_eq!(
            sample(&text, "machinist_watch_events_total{event=\"delete\",kind=\"Service\"}"),
            Some(0.0),
            "counters exist at zero before the first event"
        );
        series.error();
        series.error();
        assert_eq!(sample(&render(), &format!("machinist_watch_consecutive_errors{at}")), Some(2.0));
        series.event();
        assert_eq!(sample(&render(), &format!("machinist_watch_consecutive_errors{at}")), Some(0.0));
        series.remove();
        assert!(!render().contains(&format!("machinist_watch_consecutive_errors{at}")));
    }

    #[test]
    fn startup_series_exist_before_first_use() {
        init_series(&Startup {
            providers: &["k8s"],
            auth_mode: "static",
            watch_stale_after: std::time::Duration::from_secs(600),
        });
        let text = render();
        let version = env!("CARGO_PKG_VERSION");
        assert!(text.contains(&format!("machinist_build_info{{version=\"{version}\"}} 1")), "{text}");
        assert_eq!(sample(&text, "machinist_watch_stale_after_seconds"), Some(600.0));
        // The registry is global and other tests of this binary count on it, so only presence is certain.
        assert!(sample(&text, "machinist_reconcile_total{result=\"success\",source=\"crd\"}").is_some());
        assert!(
            sample(&text, "machinist_auth_decisions_total{mode=\"static\",result=\"forbidden\"}").is_some()
        );
        assert!(sample(&text, "machinist_rate_limited_total{tier=\"ip\"}").is_some());
    }
}
