//! ECS benchmark, against the moto-based emulator (`tools/ecs-emulator`, created on first use):
//! - refresh cost of one cluster of 200 services / 2,000 tasks: ECS calls and seconds, first and unchanged;
//! - REST read latency from the ECS cache through the operator, next to a hello-world axum handler measured
//!   in the same run with the same client;
//! - staleness: an UpdateService made outside machinist until the REST read shows the new task count, with a
//!   1 s poll interval and the default read budget (target: p99 <= interval + 1 s).
//!
//! `cargo bench --bench ecs` or `MACHINIST_BENCH_QUICK=1 cargo bench --bench ecs` (fewer requests and
//! samples; the cluster is the same size). Asserts only that each step completes and the call budget holds.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{LaunchType, PropagateTags, Tag};
use common::{hello_baseline, load, pct, print_floor_ratio, print_run, quick, same_bytes_baseline};
use machinist::provider::ecs::{ClientOptions, EcsProvider, EcsSettings};
use machinist_sandbox::ecs_emulator::{self as emulator, Emulator};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const SERVICES: usize = 200;
const TASKS_PER_SERVICE: i32 = 10;
const INTERVAL: Duration = Duration::from_secs(1);

async fn seed(ecs: &aws_sdk_ecs::Client, cluster: &str, services: usize, tasks: i32) {
    ecs.create_cluster().cluster_name(cluster).send().await.expect("create cluster");
    emulator::register_task_definition(ecs, "app", "nginx:1.25", "256", "512")
        .await
        .expect("task definition");
    let names: Vec<String> = (0..services).map(|i| format!("svc-{i:03}")).collect();
    for chunk in names.chunks(8) {
        let creates = chunk.iter().map(|name| {
            ecs.create_service()
                .cluster(cluster)
                .service_name(name)
                .task_definition("app")
                .desired_count(tasks)
                .launch_type(LaunchType::Fargate)
                .propagate_tags(PropagateTags::Service)
                .tags(Tag::builder().key("app").value(name).build())
                .send()
        });
        for created in futures::future::join_all(creates).await {
            created.expect("create service");
        }
    }
}

/// The operator with only the ECS provider, over `clusters` of the emulator's default account.
async fn operator(emu: &Emulator, clusters: &[&str], shutdown: CancellationToken) -> String {
    let clusters = clusters.iter().map(|c| c.to_string()).collect();
    let settings =
        EcsSettings::with_client(ClientOptions::emulator(&emu.endpoint(), None), clusters, INTERVAL);
    common::spawn_operator(common::operator(&["--provider", "ecs"]).ecs(settings), shutdown).await
}

async fn get_json(client: &reqwest::Client, url: &str) -> Option<Value> {
    let resp = client.get(url).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

/// Polls `url` until `check` holds; returns how long that took. Panics after `limit`.
async fn until(
    client: &reqwest::Client,
    url: &str,
    limit: Duration,
    check: impl Fn(&Value) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        if get_json(client, url).await.is_some_and(|v| check(&v)) {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{url} did not reach the expected state within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sorted durations from an UpdateService of `fresh/svc-000` made outside machinist until the operator at
/// `base` serves the new task count; each change lands at a different phase of the poll cycle.
async fn staleness(
    client: &reqwest::Client,
    base: &str,
    admin: &aws_sdk_ecs::Client,
    samples: usize,
) -> Vec<Duration> {
    let url = format!("{base}/ecs/machines/fresh");
    let mut current = 0;
    until(client, &url, Duration::from_secs(60), |v| v.as_array().is_some_and(|m| !m.is_empty())).await;
    if let Some(m) = get_json(client, &url).await.and_then(|v| v.as_array().map(Vec::len)) {
        current = m;
    }
    let mut stale = Vec::with_capacity(samples);
    for i in 0..samples {
        let desired: usize = if current == 1 { 2 } else { 1 };
        let t = Instant::now();
        admin
            .update_service()
            .cluster("fresh")
            .service("svc-000")
            .desired_count(desired as i32)
            .send()
            .await
            .expect("external scale");
        until(client, &url, Duration::from_secs(120), |v| v.as_array().is_some_and(|m| m.len() == desired))
            .await;
        stale.push(t.elapsed());
        current = desired;
        tokio::time::sleep(Duration::from_millis(137 * (i as u64 % 7))).await;
    }
    stale.sort();
    stale
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = quick();
    let (requests, budget) =
        if quick { (2_000, Duration::from_secs(10)) } else { (20_000, Duration::from_secs(60)) };
    let samples = if quick { 5 } else { 20 };
    println!(
        "ECS benchmark ({} mode): {SERVICES} services x {TASKS_PER_SERVICE} tasks, poll interval {INTERVAL:?}",
        if quick { "quick" } else { "full" }
    );

    let emu = Emulator::start().await.expect("ECS emulator (run tools/ecs-emulator/setup.sh)");
    let admin = emulator::admin_client(&emu.endpoint(), None).await.expect("admin client");
    let t = Instant::now();
    seed(&admin, "big", SERVICES, TASKS_PER_SERVICE).await;
    seed(&admin, "fresh", 1, 1).await;
    println!("seeded the emulator in {:?}", t.elapsed());

    // Refresh cost, with no pollers running and a budget that never waits: calls and emulator time only.
    let client = ClientOptions::emulator(&emu.endpoint(), None);
    let mut settings = EcsSettings::with_client(client, vec!["big".into()], INTERVAL);
    settings.read_rate = 1_000.0;
    settings.read_burst = 1_000;
    let provider = EcsProvider::connect(settings).await.expect("connect");
    let mut per_refresh = 0;
    for pass in ["first", "unchanged"] {
        let before = provider.calls().snapshot();
        let t = Instant::now();
        provider.refresh("big").await.expect("refresh");
        let took = t.elapsed();
        let after = provider.calls().snapshot();
        let by_op: Vec<(String, u64)> =
            after.iter().map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0))).collect();
        let calls: u64 = by_op.iter().map(|(_, n)| n).sum();
        println!(
            "refresh of {SERVICES} services / 2000 tasks ({pass}): {calls} ECS calls in {took:?} {by_op:?}"
        );
        assert!(calls <= 65, "a full refresh must fit in 65 calls, took {calls}");
        per_refresh = calls;
    }
    println!(
        "at the default budget (5 reads/s, burst 65) one such refresh every {:.1} s is sustainable",
        per_refresh as f64 / 5.0
    );
    drop(provider);

    let shutdown = CancellationToken::new();
    let t = Instant::now();
    let base = operator(&emu, &["big", "fresh"], shutdown.clone()).await;
    let client = common::client();
    until(&client, &format!("{base}/ecs/controllers/big"), Duration::from_secs(300), |v| {
        v["controllers"].as_array().is_some_and(|c| c.len() == SERVICES)
    })
    .await;
    println!("operator: cache of cluster big synced {:?} after start", t.elapsed());
    let machines = get_json(&client, &format!("{base}/ecs/machines/big")).await.expect("machines");
    let ids: Vec<String> = machines
        .as_array()
        .expect("a machine list")
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), SERVICES * TASKS_PER_SERVICE as usize, "every task is a machine");

    let hello = hello_baseline(&client, requests, budget).await;
    let controllers_url = format!("{base}/ecs/controllers/big");
    let controllers = load(&client, Arc::new(vec![controllers_url.clone()]), requests, budget).await;
    print_run("GET /ecs/controllers/big (200 services)", &controllers, &hello);
    let floor = same_bytes_baseline(&client, &controllers_url, requests, budget).await;
    print_floor_ratio("GET /ecs/controllers/big (200 services)", &controllers, &floor);
    let by_label: Vec<String> =
        (0..SERVICES).map(|i| format!("{base}/ecs/machines/big?labels=app%3Dsvc-{i:03}")).collect();
    let labelled = load(&client, Arc::new(by_label), requests, budget).await;
    print_run("GET /ecs/machines/big?labels=app=<service> (10 tasks)", &labelled, &hello);
    let by_id: Vec<String> = ids.iter().map(|id| format!("{base}/ecs/machines/big/{id}")).collect();
    let one = load(&client, Arc::new(by_id), requests, budget).await;
    print_run("GET /ecs/machines/big/{id}", &one, &hello);

    let alongside = staleness(&client, &base, &admin, samples).await;
    shutdown.cancel();

    // The same measurement with the small cluster alone: the interval, not the shared budget, bounds it.
    let shutdown = CancellationToken::new();
    let base = operator(&emu, &["fresh"], shutdown.clone()).await;
    let alone = staleness(&client, &base, &admin, samples).await;
    for (what, stale) in [("cluster fresh alone", alone), ("cluster big polled alongside", alongside)] {
        let p99 = pct(&stale, 0.99);
        println!(
            "staleness, external UpdateService to REST read ({what}; {samples} samples, interval {INTERVAL:?}, \
             default budget): p50 {:?} p99 {p99:?} max {:?} (target p99 <= interval + 1 s: {})",
            pct(&stale, 0.5),
            stale.last().copied().unwrap_or_default(),
            if p99 <= INTERVAL + Duration::from_secs(1) { "met" } else { "NOT met" }
        );
    }
    shutdown.cancel();
}
