//! Sandbox benchmark: start to ready with 10,000 pods; LIST of 10,000 pods against the same bytes served by a
//! static axum handler in the same run; watch fan-out of 1,000 pod changes to 10 watchers.
//!
//! `cargo bench --bench sandbox` (full) or `MACHINIST_BENCH_QUICK=1 cargo bench --bench sandbox` (fewer
//! iterations); `MACHINIST_BENCH_PODS=50000` changes the pod count. Prints figures; it asserts nothing but
//! that each step completes.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{pct, quick};
use futures::StreamExt;
use machinist_sandbox::{Gvr, Sandbox, SandboxOptions};
use serde_json::{Value, json};

const PODS: u32 = 10_000;

/// `MACHINIST_BENCH_PODS` overrides the pod count (e.g. 50000 to check the largest seed).
fn pods() -> u32 {
    std::env::var("MACHINIST_BENCH_PODS").ok().and_then(|v| v.parse().ok()).unwrap_or(PODS)
}
const WATCHERS: usize = 10;
const CHANGES: usize = 1_000;

struct Run {
    p50: Duration,
    p99: Duration,
    mb_s: f64,
    bytes: usize,
}

/// `n` sequential GETs of `url` after 3 warm-up requests.
async fn measure(client: &reqwest::Client, url: &str, n: usize) -> Run {
    for _ in 0..3 {
        let _ = client.get(url).send().await.expect("warm-up").bytes().await.expect("body");
    }
    let mut times = Vec::with_capacity(n);
    let mut total = 0usize;
    let mut bytes = 0usize;
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let body = client.get(url).send().await.expect("GET").bytes().await.expect("body");
        times.push(t.elapsed());
        total += body.len();
        bytes = body.len();
    }
    let wall = start.elapsed();
    times.sort();
    Run {
        p50: pct(&times, 0.5),
        p99: pct(&times, 0.99),
        mb_s: total as f64 / wall.as_secs_f64() / 1e6,
        bytes,
    }
}

/// Serves `body` from a static axum handler on 127.0.0.1, the baseline a LIST is compared with.
async fn static_server(body: Bytes) -> String {
    let app = axum::Router::new().route(
        "/pods",
        axum::routing::get(move || {
            let b = body.clone();
            async move { ([(http::header::CONTENT_TYPE, "application/json")], b) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/pods")
}

/// Opens a watch and returns the time its `CHANGES`-th MODIFIED event for the bench label arrived.
async fn watcher(client: reqwest::Client, url: String, ready: tokio::sync::mpsc::Sender<()>) -> Instant {
    let resp = client.get(&url).send().await.expect("watch");
    assert!(resp.status().is_success(), "watch: {}", resp.status());
    let _ = ready.send(()).await;
    let mut stream = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk.expect("chunk"));
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            let Ok(ev) = serde_json::from_slice::<Value>(&line) else { continue };
            if ev["type"] == "MODIFIED" && ev["object"]["metadata"]["labels"]["bench"] == "fanout" {
                seen += 1;
                if seen == CHANGES {
                    return Instant::now();
                }
            }
        }
    }
    panic!("watch ended after {seen} events");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = quick();
    let iterations = if quick { 15 } else { 100 };
    let pods = pods();
    println!("sandbox benchmark ({} mode): {pods} pods", if quick { "quick" } else { "full" });

    // 1. Start to ready: seeded, serving, and a LIST returns every pod.
    let t0 = Instant::now();
    let sb = Sandbox::start(SandboxOptions { extra_pods: pods, ..SandboxOptions::default() })
        .await
        .expect("sandbox starts");
    let started = t0.elapsed();
    let client = reqwest::Client::new();
    let list_url = format!("{}/api/v1/namespaces/load/pods", sb.url());
    let body = client.get(&list_url).send().await.expect("list").bytes().await.expect("body");
    let ready = t0.elapsed();
    let n = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["items"].as_array().map(Vec::len));
    assert_eq!(n, Some(pods as usize), "the first LIST must return every pod");
    println!("start: Sandbox::start with {pods} pods {started:?}; first full LIST answered at {ready:?}");

    // 2. LIST vs the same bytes from a static handler.
    let static_url = static_server(body.clone()).await;
    let list = measure(&client, &list_url, iterations).await;
    let base = measure(&client, &static_url, iterations).await;
    println!(
        "LIST {pods} pods ({:.1} MB): p50 {:?} p99 {:?} {:.0} MB/s | static handler, same bytes: p50 {:?} p99 {:?} \
         {:.0} MB/s | ratio p50 {:.2}x, throughput {:.2}x ({iterations} sequential requests each)",
        list.bytes as f64 / 1e6,
        list.p50,
        list.p99,
        list.mb_s,
        base.p50,
        base.p99,
        base.mb_s,
        list.p50.as_secs_f64() / base.p50.as_secs_f64(),
        base.mb_s / list.mb_s,
    );

    // 3. Watch fan-out: 10 watchers, 1,000 pod changes made through the store.
    let rv = sb.store.resource_version();
    let watch_url = format!("{}/api/v1/namespaces/load/pods?watch=true&resourceVersion={rv}", sb.url());
    let (tx, mut rx) = tokio::sync::mpsc::channel(WATCHERS);
    let handles: Vec<_> =
        (0..WATCHERS).map(|_| tokio::spawn(watcher(client.clone(), watch_url.clone(), tx.clone()))).collect();
    for _ in 0..WATCHERS {
        rx.recv().await.expect("watcher ready");
    }
    let names: Vec<String> = sb
        .store
        .list(&Gvr::pods(), Some("load"))
        .iter()
        .take(CHANGES)
        .map(|p| p["metadata"]["name"].as_str().unwrap_or_default().to_string())
        .collect();
    let t_changes = Instant::now();
    for name in &names {
        sb.store
            .update(&Gvr::pods(), "load", name, |p| {
                p["metadata"]["labels"]["bench"] = json!("fanout");
                Ok(())
            })
            .expect("update");
    }
    let written = t_changes.elapsed();
    let mut last = t_changes;
    for h in handles {
        let done = tokio::time::timeout(Duration::from_secs(120), h)
            .await
            .expect("watchers finish")
            .expect("watcher");
        last = last.max(done);
    }
    let all = last.duration_since(t_changes);
    println!(
        "watch fan-out: {CHANGES} pod changes to {WATCHERS} watchers: written in {written:?}, all watchers saw all \
         {CHANGES} after {all:?} ({:.0} events/s delivered)",
        (CHANGES * WATCHERS) as f64 / all.as_secs_f64()
    );
    sb.shutdown().await;
}
