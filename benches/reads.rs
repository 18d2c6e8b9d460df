//! Read-path benchmark: the operator against a sandbox holding 3,000 pods in namespace `load` and 10,000 in
//! all; p50/p99 and throughput of three REST reads at 32 concurrent connections next to a hello-world axum
//! handler in the same run (and, for the controller list, next to an axum handler serving the very same
//! bytes from memory); Kubernetes API calls made while serving them (must be 0); p99 freshness from a
//! pod label change in the API server to the REST read showing it.
//!
//! `cargo bench --bench reads` (full) or `MACHINIST_BENCH_QUICK=1 cargo bench --bench reads` (smaller seed,
//! fewer requests). Prints figures; it asserts only that each step completes, that reads are answered from
//! the cache (0 API calls), and that a change becomes visible at all. Memory per cached pod is measured by
//! `benches/cache_memory.rs`: here the sandbox shares the process, so an RSS delta would mix both.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    CONCURRENCY, hello_baseline, load, pct, print_floor_ratio, print_run, quick, same_bytes_baseline,
};

use machinist::reconcile::crd::ScaleRequest;
use machinist_sandbox::{Gvr, Sandbox, SandboxOptions, Store};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Copies the pods of `load` into namespaces `bulk-0…` until `extra` more pods exist. They are bare pods
/// (no owner): they only make the cache and the watch streams carry the full 10,000.
fn seed_bulk(store: &Store, extra: usize) {
    let source = store.list(&Gvr::pods(), Some("load"));
    assert!(!source.is_empty(), "the load namespace is seeded");
    let mut items = Vec::with_capacity(extra);
    let mut ns_index = 0;
    while items.len() < extra {
        let ns = format!("bulk-{ns_index}");
        store.create(&Gvr::namespaces(), "", json!({"metadata": {"name": ns}})).expect("namespace");
        for pod in source.iter().take(extra - items.len()) {
            let mut pod = (**pod).clone();
            if let Some(meta) = pod["metadata"].as_object_mut() {
                for key in ["uid", "resourceVersion", "creationTimestamp", "ownerReferences", "managedFields"]
                {
                    meta.remove(key);
                }
                meta.insert("namespace".into(), json!(ns));
            }
            items.push((Gvr::pods(), ns.clone(), pod));
        }
        ns_index += 1;
    }
    store.create_many(items).expect("bulk pods");
}

async fn api_calls(client: &reqwest::Client, sandbox: &str) -> Value {
    client
        .get(format!("{sandbox}/sandbox/stats"))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats json")
}

/// Starts the operator (k8s provider, no leader election) against the sandbox; returns its REST base URL.
async fn operator(sb: &Sandbox, shutdown: CancellationToken) -> String {
    let operator = common::operator(&["--leader-election", "false", "--provider", "k8s"]);
    common::spawn_operator(operator.kubeconfig_yaml(sb.kubeconfig_yaml()), shutdown).await
}

/// Waits until `GET /k8s/machines/{ns}` returns `n` machines.
async fn wait_synced(client: &reqwest::Client, base: &str, ns: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let got = match client.get(format!("{base}/k8s/machines/{ns}")).send().await {
            Ok(r) if r.status().is_success() => r.json::<Vec<Value>>().await.map(|v| v.len()).unwrap_or(0),
            _ => 0,
        };
        if got == n {
            return;
        }
        assert!(Instant::now() < deadline, "cache of {ns} not synced: {got} of {n} machines");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = quick();
    let (in_load, in_all) = if quick { (1_000u32, 2_000usize) } else { (3_000, 10_000) };
    let (requests, budget) =
        if quick { (2_000, Duration::from_secs(10)) } else { (20_000, Duration::from_secs(60)) };
    let samples = if quick { 30 } else { 200 };
    println!(
        "reads benchmark ({} mode): {in_load} pods in namespace load, {in_all} in all, {CONCURRENCY} connections",
        if quick { "quick" } else { "full" }
    );

    let sb =
        Sandbox::start(SandboxOptions { extra_pods: in_load, test_hooks: true, ..SandboxOptions::default() })
            .await
            .expect("sandbox starts");
    seed_bulk(&sb.store, in_all - in_load as usize);
    // The ScaleRequest controller retries its LIST until the CRD exists; install it so those retries do not
    // count as calls made by reads.
    let crd = serde_json::to_value(<ScaleRequest as kube::core::CustomResourceExt>::crd()).expect("crd json");
    sb.store.create(&Gvr::crds(), "", crd).expect("install the ScaleRequest CRD");
    let pods_now = sb.store.list(&Gvr::pods(), None).len();
    println!("seeded: {pods_now} pods in the sandbox");

    let shutdown = CancellationToken::new();
    let t0 = Instant::now();
    let base = operator(&sb, shutdown.clone()).await;
    let client = common::client();
    wait_synced(&client, &base, "load", in_load as usize).await;
    let machines: Vec<Value> = client
        .get(format!("{base}/k8s/machines/load"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    println!("operator: cache of namespace load synced {:?} after start", t0.elapsed());

    let ids: Vec<String> = machines.iter().filter_map(|m| m["id"].as_str().map(str::to_string)).collect();
    let apps: Vec<String> = {
        let mut a: Vec<String> = machines
            .iter()
            .filter_map(|m| m["labels"]["app.kubernetes.io/name"].as_str().map(str::to_string))
            .collect();
        a.sort();
        a.dedup();
        a
    };
    assert!(!ids.is_empty() && !apps.is_empty(), "machines carry ids and app labels");

    let hello = hello_baseline(&client, requests, budget).await;

    let stats_url = sb.url();
    let before = api_calls(&client, &stats_url).await;

    let controllers_url = format!("{base}/k8s/controllers/load");
    let controllers = load(&client, Arc::new(vec![controllers_url.clone()]), requests, budget).await;
    print_run("GET /k8s/controllers/load", &controllers, &hello);
    let floor = same_bytes_baseline(&client, &controllers_url, requests, budget).await;
    print_floor_ratio("GET /k8s/controllers/load", &controllers, &floor);
    let by_label: Vec<String> = apps
        .iter()
        .map(|a| format!("{base}/k8s/machines/load?labels=app.kubernetes.io%2Fname%3D{a}"))
        .collect();
    let labelled = load(&client, Arc::new(by_label), requests, budget).await;
    print_run(
        "GET /k8s/machines/load?labels=app.kubernetes.io/name=<app> (~100 of the pods)",
        &labelled,
        &hello,
    );
    let by_id: Vec<String> = ids.iter().map(|id| format!("{base}/k8s/machines/load/{id}")).collect();
    let one = load(&client, Arc::new(by_id), requests, budget).await;
    print_run("GET /k8s/machines/load/{id}", &one, &hello);

    let after = api_calls(&client, &stats_url).await;
    let reads = controllers.done + labelled.done + one.done;
    let calls = after["total"].as_u64().unwrap_or(0).saturating_sub(before["total"].as_u64().unwrap_or(0));
    println!(
        "API calls to the sandbox during {reads} REST reads: {calls} ({:.4} per read; by verb before {} after {})",
        calls as f64 / reads as f64,
        before["by_verb"],
        after["by_verb"]
    );

    // Freshness: a label written in the API server, polled through the REST read every millisecond.
    let mut fresh = Vec::with_capacity(samples);
    for i in 0..samples {
        let id = &ids[i % ids.len()];
        let value = format!("v{i}");
        let t = Instant::now();
        sb.store
            .update(&Gvr::pods(), "load", id, |p| {
                p["metadata"]["labels"]["bench-fresh"] = json!(value);
                Ok(())
            })
            .expect("label the pod");
        let url = format!("{base}/k8s/machines/load/{id}");
        loop {
            let m: Value = client.get(&url).send().await.expect("GET").json().await.expect("json");
            if m["labels"]["bench-fresh"] == value.as_str() {
                fresh.push(t.elapsed());
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "label {value} on {id} never became visible");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    fresh.sort();
    let p99 = pct(&fresh, 0.99);
    println!(
        "freshness, store write to REST read ({samples} samples, 1 ms polling): p50 {:?} p99 {p99:?} max {:?} \
         (target p99 <= 250 ms: {})",
        pct(&fresh, 0.5),
        fresh.last().copied().unwrap_or_default(),
        if p99 <= Duration::from_millis(250) { "met" } else { "NOT met" }
    );

    assert_eq!(calls, 0, "reads must be served from the cache");
    shutdown.cancel();
    sb.shutdown().await;
}
