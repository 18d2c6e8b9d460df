//! Reconciler benchmark against an in-process sandbox: a burst of ScaleRequests, measured from create to
//! the `/scale` write (seen on a Deployment watch) and to `Applied=True` (seen on a ScaleRequest watch);
//! a burst of REST scales (`K8sWrites::scale`, the call behind POST /k8s/controllers); and, in the same run,
//! a bare kube-rs `/scale` PATCH burst as the floor. Target: the reconciler adds ≤ 500 ms p99 over it.
//!
//! `cargo bench --bench reconcile` (200 targets) or `MACHINIST_BENCH_QUICK=1 cargo bench --bench reconcile`
//! (50). Prints figures; it asserts only that every write completes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::CustomResourceExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use machinist::cache::Cache;
use machinist::provider::k8s::client::client_with;
use machinist::provider::k8s::watch::spawn_watchers;
use machinist::provider::k8s::write::{K8sScaler, K8sWrites, RetryBudget};
use machinist::provider::{ControllerTarget, Writes};
use machinist::reconcile::controller::{self, Context};
use machinist::reconcile::crd::ScaleRequest;
use machinist::reconcile::run::{Reconciler, Scalers};
use machinist::sandbox::{Gvr, Sandbox, SandboxOptions};
use serde_json::json;
use tokio::sync::mpsc;

const NS: &str = "bench";

fn targets() -> usize {
    if std::env::var("MACHINIST_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0") { 50 } else { 200 }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn line(what: &str, mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    let (p50, p99) = (pct(&times, 0.50), pct(&times, 0.99));
    println!("{what:<44} n={:<4} p50 {:>8.1} ms   p99 {:>8.1} ms", times.len(), ms(p50), ms(p99));
    (p50, p99)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn name(i: usize) -> String {
    format!("d-{i:04}")
}

async fn client(sb: &Sandbox) -> Client {
    let kc = kube::config::Kubeconfig::from_yaml(&sb.kubeconfig_yaml()).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.expect("config");
    client_with(cfg, false).expect("client")
}

/// First time each deployment shows `spec.replicas == want`, from a watch started before the burst.
fn watch_replicas(client: Client, want: i32) -> mpsc::UnboundedReceiver<(String, Instant)> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let api: Api<Deployment> = Api::namespaced(client, NS);
        let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
        while let Ok(Some(event)) = events.try_next().await {
            if let Event::Apply(d) | Event::InitApply(d) = event
                && d.spec.replicas == Some(want)
                && tx.send((d.name_any(), Instant::now())).is_err()
            {
                return;
            }
        }
    });
    rx
}

fn watch_applied(client: Client) -> mpsc::UnboundedReceiver<(String, Instant)> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let api: Api<ScaleRequest> = Api::namespaced(client, NS);
        let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
        while let Ok(Some(event)) = events.try_next().await {
            if let Event::Apply(sr) | Event::InitApply(sr) = event
                && sr
                    .status
                    .as_ref()
                    .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Applied" && c.status == "True"))
                && tx.send((sr.name_any(), Instant::now())).is_err()
            {
                return;
            }
        }
    });
    rx
}

/// Collect the first time of each of `n` names, or give up after `within`.
async fn collect(
    rx: &mut mpsc::UnboundedReceiver<(String, Instant)>,
    prefix: &str,
    n: usize,
    within: Duration,
) -> HashMap<String, Instant> {
    let mut seen = HashMap::new();
    let deadline = tokio::time::Instant::now() + within;
    while seen.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((name, at))) if name.starts_with(prefix) => {
                seen.entry(name).or_insert(at);
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    assert_eq!(seen.len(), n, "every write completed");
    seen
}

#[tokio::main]
async fn main() {
    let n = targets();
    let sb =
        Sandbox::start(SandboxOptions { pod_start_delay: Duration::from_millis(200), ..Default::default() })
            .await
            .expect("sandbox");
    sb.store.create(&Gvr::namespaces(), "", json!({"metadata": {"name": NS}})).expect("namespace");
    let client = client(&sb).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    for i in 0..n {
        let d: Deployment = serde_json::from_value(json!({"metadata": {"name": name(i)},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name(i)}},
                     "template": {"metadata": {"labels": {"app": name(i)}},
                                  "spec": {"containers": [{"name": "app", "image": "nginx"}]}}}}))
        .unwrap();
        deployments.create(&PostParams::default(), &d).await.expect("create deployment");
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &ScaleRequest::crd()).await.expect("crd");

    let cache = Arc::new(Cache::new_k8s(vec![NS.into()]));
    let watchers = spawn_watchers(client.clone(), cache.clone(), &[NS.to_string()]);
    while !cache.synced() || cache.resolve_controller(NS, &name(n - 1), None).is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let scaler = K8sScaler::new(client.clone(), cache.clone(), RetryBudget::default());
    let reconciler = Reconciler::new(Scalers { k8s: Some(Arc::new(scaler)), ecs: None });
    let writes = K8sWrites::new(client.clone(), cache.clone(), reconciler.clone(), Duration::from_secs(10));
    let ctx = Context::new(client.clone(), reconciler.clone(), "bench");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(controller::run(ctx, vec![NS.into()], async move {
        let _ = stopped.await;
    }));
    println!("reconcile bench: {n} targets, sandbox in-process, dev-or-bench profile as built");

    // Floor: a bare kube-rs /scale PATCH per target, all at once.
    let floor = futures::stream::iter(0..n)
        .map(|i| {
            let api = deployments.clone();
            async move {
                let started = Instant::now();
                let patch = json!({"spec": {"replicas": 2}});
                api.patch_scale(&name(i), &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .expect("patch");
                started.elapsed()
            }
        })
        .buffer_unordered(n)
        .collect::<Vec<_>>()
        .await;
    let (_, floor_p99) = line("floor: kube-rs PATCH /scale (burst)", floor);

    // ScaleRequests: create all at once, then time the write and Applied=True.
    let mut written = watch_replicas(client.clone(), 3);
    let mut applied = watch_applied(client.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let srs: Api<ScaleRequest> = Api::namespaced(client.clone(), NS);
    let created: HashMap<String, Instant> = futures::stream::iter(0..n)
        .map(|i| {
            let srs = srs.clone();
            async move {
                let sr: ScaleRequest = serde_json::from_value(json!({"apiVersion": "machinist.dev/v1alpha1",
                    "kind": "ScaleRequest", "metadata": {"name": format!("sr-{i:04}")},
                    "spec": {"target": {"name": name(i)}, "replicas": 3}}))
                .unwrap();
                let at = Instant::now();
                srs.create(&PostParams::default(), &sr).await.expect("create sr");
                (name(i), at)
            }
        })
        .buffer_unordered(n)
        .collect()
        .await;
    let written = collect(&mut written, "d-", n, Duration::from_secs(120)).await;
    let applied = collect(&mut applied, "sr-", n, Duration::from_secs(120)).await;
    let to_write: Vec<Duration> =
        created.iter().map(|(d, at)| written[d].saturating_duration_since(*at)).collect();
    let to_applied: Vec<Duration> = created
        .iter()
        .map(|(d, at)| applied[&format!("sr-{}", &d[2..])].saturating_duration_since(*at))
        .collect();
    let (_, write_p99) = line("ScaleRequest create → /scale write", to_write);
    let (_, applied_p99) = line("ScaleRequest create → Applied=True", to_applied);

    // REST: K8sWrites::scale per target, all at once.
    let rest = futures::stream::iter(0..n)
        .map(|i| {
            let writes = &writes;
            async move {
                let started = Instant::now();
                let target = ControllerTarget { scope: NS.into(), name: name(i), kind: None };
                writes.scale(target, 4).await.expect("rest scale");
                started.elapsed()
            }
        })
        .buffer_unordered(n)
        .collect::<Vec<_>>()
        .await;
    let (_, rest_p99) = line("REST scale (K8sWrites::scale, burst)", rest);

    // Controller overhead alone: requests for the count the targets already have (no write, so no
    // simulated pods churn): create → Applied=True.
    let mut applied = watch_applied(client.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let created: HashMap<String, Instant> = futures::stream::iter(0..n)
        .map(|i| {
            let srs = srs.clone();
            async move {
                let sr: ScaleRequest = serde_json::from_value(json!({"apiVersion": "machinist.dev/v1alpha1",
                    "kind": "ScaleRequest", "metadata": {"name": format!("noop-{i:04}")},
                    "spec": {"target": {"name": name(i)}, "replicas": 4}}))
                .unwrap();
                let at = Instant::now();
                srs.create(&PostParams::default(), &sr).await.expect("create sr");
                (format!("noop-{i:04}"), at)
            }
        })
        .buffer_unordered(n)
        .collect()
        .await;
    let noop = collect(&mut applied, "noop-", n, Duration::from_secs(120)).await;
    let to_noop: Vec<Duration> =
        created.iter().map(|(sr, at)| noop[sr].saturating_duration_since(*at)).collect();
    line("no-op ScaleRequest create → Applied=True", to_noop);

    let over = |p99: Duration| ms(p99) - ms(floor_p99);
    println!(
        "p99 over the floor: create→write {:+.1} ms, create→Applied {:+.1} ms, REST {:+.1} ms (target ≤ +500 ms)",
        over(write_p99),
        over(applied_p99),
        over(rest_p99)
    );
    // Stop the controller and let its reconciles finish before the runtime goes away.
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), running).await;
    watchers.abort();
}
