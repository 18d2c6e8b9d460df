//! Keeps `docs/metrics.md` in sync with the families `machinist::metrics::render()` exposes.
//!
//! It touches every metric so vec families appear, then compares both name sets; it must not depend on
//! a running operator.

use std::collections::BTreeSet;

use machinist::metrics::{Startup, init_series, metrics, render};

/// `machinist_*` names from the doc's table rows (`| \`name\` | ...`).
fn documented() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md");
    let text = std::fs::read_to_string(path).expect("docs/metrics.md is readable");
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("machinist_"))
        .map(str::to_owned)
        .collect()
}

/// `machinist_*` families from `# TYPE` lines of the exposition, with their type.
fn exposed() -> BTreeSet<(String, String)> {
    render()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .filter(|(n, _)| n.starts_with("machinist_"))
        .map(|(n, t)| (n.to_owned(), t.to_owned()))
        .collect()
}

fn touch_every_metric() {
    let m = metrics();
    m.http_request_duration.with_label_values(&["GET", "/health/liveness", "200"]).observe(0.001);
    m.cache_objects.with_label_values(&["k8s", "Deployment"]).set(0);
    m.watch_events.with_label_values(&["Deployment", "apply"]).inc();
    m.watch_errors.with_label_values(&["Deployment"]).inc();
    m.watch_relists.with_label_values(&["Deployment"]).inc();
    // Held by the watcher's health entry in the operator; dropping it keeps the series.
    let _ = m.watch_series("deployments", None);
    init_series(&Startup {
        providers: &["k8s"],
        auth_mode: "none",
        watch_stale_after: std::time::Duration::from_secs(600),
    });
    m.provider_requests.with_label_values(&["k8s", "list", "deployments"]).inc();
    m.reconciles.with_label_values(&["rest", "success"]).inc();
    m.reconcile_duration.with_label_values(&["rest"]).observe(0.1);
    m.queue_depth.set(0);
    m.leader.set(0);
    m.api_served.with_label_values(&["gateways"]).set(1);
    m.writes.with_label_values(&["k8s", "scale", "success"]).inc();
    m.ecs_throttled.with_label_values(&["UpdateService"]).inc();
    m.auth_decisions.with_label_values(&["token", "allowed"]).inc();
    m.rate_limited.with_label_values(&["read"]).inc();
}

#[test]
fn every_exposed_family_is_documented_and_every_documented_one_exists() {
    touch_every_metric();
    let exposed = exposed();
    let exposed_names: BTreeSet<String> = exposed.iter().map(|(n, _)| n.clone()).collect();
    let documented = documented();
    assert!(documented.len() >= 10, "the doc's table was not parsed: {documented:?}");

    let undocumented: Vec<_> = exposed_names.difference(&documented).collect();
    assert!(undocumented.is_empty(), "exposed but missing from docs/metrics.md: {undocumented:?}");
    let phantom: Vec<_> = documented.difference(&exposed_names).collect();
    assert!(phantom.is_empty(), "documented in docs/metrics.md but not exposed: {phantom:?}");
}

#[test]
fn documented_types_match_the_exposition() {
    touch_every_metric();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md");
    let text = std::fs::read_to_string(path).expect("docs/metrics.md is readable");
    for (name, kind) in exposed() {
        let row = text
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("no row for {name}"));
        let doc_kind = row.split('|').nth(2).map(str::trim).unwrap_or_default();
        assert_eq!(doc_kind, kind, "{name}: docs say {doc_kind}, exposition says {kind}");
    }
}
