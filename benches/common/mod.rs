//! Load generation shared by the REST benchmarks: a closed-loop GET load over a pooled client, percentiles,
//! and the hello-world axum floor every figure is compared with (ratios hold on a noisy machine; absolute
//! times do not).

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const CONCURRENCY: usize = 32;

pub fn quick() -> bool {
    std::env::var("MACHINIST_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub struct Run {
    pub p50: Duration,
    pub p99: Duration,
    pub rps: f64,
    pub done: usize,
    pub bytes: usize,
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(CONCURRENCY).build().expect("client")
}

/// `total` GETs spread over `CONCURRENCY` tasks sharing one pooled client, stopped early at `budget`.
/// Each task cycles through `urls` from a different start so that every URL is exercised.
pub async fn load(client: &reqwest::Client, urls: Arc<Vec<String>>, total: usize, budget: Duration) -> Run {
    // Warm the pool: one request per connection.
    let warm: Vec<_> = (0..CONCURRENCY)
        .map(|i| {
            let (c, u) = (client.clone(), urls[i % urls.len()].clone());
            tokio::spawn(async move { c.get(&u).send().await.map(|r| r.status()) })
        })
        .collect();
    for w in warm {
        let status = w.await.expect("warm-up task").expect("warm-up GET");
        assert!(status.is_success(), "warm-up GET: {status}");
    }
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + budget;
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (client, urls, next) = (client.clone(), urls.clone(), next.clone());
            tokio::spawn(async move {
                let mut times = Vec::new();
                let mut bytes = 0;
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total || Instant::now() > deadline {
                        break;
                    }
                    let url = &urls[n % urls.len()];
                    let t = Instant::now();
                    let resp = client.get(url).send().await.expect("GET");
                    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
                    let body = resp.bytes().await.expect("body");
                    times.push(t.elapsed());
                    bytes = body.len();
                }
                (times, bytes)
            })
        })
        .collect();
    let mut times = Vec::with_capacity(total);
    let mut bytes = 0;
    for t in tasks {
        let (mut t, b) = t.await.expect("load task");
        times.append(&mut t);
        bytes = bytes.max(b);
    }
    let wall = start.elapsed();
    times.sort();
    Run {
        p50: pct(&times, 0.5),
        p99: pct(&times, 0.99),
        rps: times.len() as f64 / wall.as_secs_f64(),
        done: times.len(),
        bytes,
    }
}

/// Serves a fixed string on 127.0.0.1: the floor for an axum GET on this machine.
pub async fn hello_server() -> String {
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello, world" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/")
}

/// Loads the hello-world server with the same client and prints its figures: the baseline of `print_run`.
pub async fn hello_baseline(client: &reqwest::Client, total: usize, budget: Duration) -> Run {
    let hello = load(client, Arc::new(vec![hello_server().await]), total, budget).await;
    println!(
        "hello-world axum: {} requests: p50 {:?} p99 {:?} {:.0} req/s",
        hello.done, hello.p50, hello.p99, hello.rps
    );
    hello
}

pub fn print_run(what: &str, r: &Run, base: &Run) {
    println!(
        "{what}: {} requests, body {:.1} KB: p50 {:?} p99 {:?} {:.0} req/s | ratio to hello-world: p50 {:.1}x, \
         p99 {:.1}x, throughput {:.2}x",
        r.done,
        r.bytes as f64 / 1e3,
        r.p50,
        r.p99,
        r.rps,
        r.p50.as_secs_f64() / base.p50.as_secs_f64(),
        r.p99.as_secs_f64() / base.p99.as_secs_f64(),
        r.rps / base.rps,
    );
}

/// `machinist run` as the benchmarks start it, with `provider_flags` after the common flags (ephemeral port,
/// no rate limiter: the benchmarks measure the read path, and the limiter would answer 429 long before a
/// load ends). The caller adds its cluster, then [`spawn_operator`] starts it.
pub fn operator(provider_flags: &[&str]) -> machinist::app::OperatorBuilder {
    let argv = [
        "--http-listen",
        "127.0.0.1:0",
        "--rate-limit-reads-identity",
        "0",
        "--rate-limit-reads-ip",
        "0",
        "--rate-limit-reads-global",
        "0",
    ];
    machinist::app::OperatorBuilder::from_flags(argv.iter().chain(provider_flags).copied())
        .expect("operator flags")
}

/// Starts `operator` in this process; returns its REST base URL once it listens.
pub async fn spawn_operator(
    operator: machinist::app::OperatorBuilder,
    shutdown: tokio_util::sync::CancellationToken,
) -> String {
    let spawned = operator.spawn(shutdown).await.unwrap_or_else(|e| panic!("operator: {e}"));
    format!("http://{}", spawned.addr)
}
