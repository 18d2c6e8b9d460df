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

/// Serves `body` (as `application/json`) from memory on 127.0.0.1: the floor for a read whose answer is
/// those very bytes. Only axum, tokio and a refcount bump per response: what no cache can beat.
pub async fn bytes_server(body: bytes::Bytes) -> String {
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([(http::header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/")
}

/// Fetches `url` once and loads a [`bytes_server`] serving the same body with the same client.
pub async fn same_bytes_baseline(client: &reqwest::Client, url: &str, total: usize, budget: Duration) -> Run {
    let body = client.get(url).send().await.expect("GET").bytes().await.expect("body");
    let floor = load(client, Arc::new(vec![bytes_server(body).await]), total, budget).await;
    println!(
        "same bytes from memory (axum): {} requests, body {:.1} KB: p50 {:?} p99 {:?} {:.0} req/s",
        floor.done,
        floor.bytes as f64 / 1e3,
        floor.p50,
        floor.p99,
        floor.rps
    );
    floor
}

/// `print_run`'s ratios, to the same-bytes floor.
pub fn print_floor_ratio(what: &str, r: &Run, floor: &Run) {
    println!(
        "{what} vs same bytes from memory: p50 {:.2}x, p99 {:.2}x, throughput {:.2}x",
        r.p50.as_secs_f64() / floor.p50.as_secs_f64(),
        r.p99.as_secs_f64() / floor.p99.as_secs_f64(),
        r.rps / floor.rps,
    );
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

/// One wrk run (`--latency`): what its summary printed.
#[derive(Clone, Copy, Debug)]
pub struct Wrk {
    pub p50: Duration,
    pub p99: Duration,
    pub rps: f64,
    pub requests: u64,
    /// Non-2xx/3xx answers plus socket errors; a load that fails is not a figure.
    pub errors: u64,
}

/// Whether Debian's `wrk` is on PATH (`apt-get install wrk`).
pub fn wrk_available() -> bool {
    std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("wrk") || !o.stderr.is_empty())
}

fn wrk_duration(s: &str) -> Option<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.parse().ok()?;
    let secs = match unit {
        "us" => v / 1e6,
        "ms" => v / 1e3,
        "s" => v,
        "m" => v * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// `wrk -t<threads> -c<connections> -d<secs>s --latency <url>`, parsed. Panics on a run with errors.
pub fn wrk(url: &str, threads: u32, connections: u32, secs: u32) -> Wrk {
    let out = std::process::Command::new("wrk")
        .args([
            format!("-t{threads}"),
            format!("-c{connections}"),
            format!("-d{secs}s"),
            "--latency".into(),
            url.into(),
        ])
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut w = Wrk { p50: Duration::ZERO, p99: Duration::ZERO, rps: 0.0, requests: 0, errors: 0 };
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", d] => w.p50 = wrk_duration(d).unwrap_or_default(),
            ["99%", d] => w.p99 = wrk_duration(d).unwrap_or_default(),
            ["Requests/sec:", r] => w.rps = r.parse().unwrap_or(0.0),
            [n, "requests", "in", ..] => w.requests = n.parse().unwrap_or(0),
            ["Non-2xx", "or", "3xx", "responses:", n] => w.errors += n.parse::<u64>().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                w.errors +=
                    rest.iter().filter_map(|t| t.trim_end_matches(',').parse::<u64>().ok()).sum::<u64>()
            }
            _ => {}
        }
    }
    assert!(out.status.success() && w.requests > 0, "wrk {url} failed: {text}");
    assert_eq!(w.errors, 0, "wrk {url}: errors in the load: {text}");
    w
}

/// One wrk figure, with its ratios to the floors of the same run.
pub fn print_wrk(what: &str, r: &Wrk, floors: &[(&str, &Wrk)]) {
    let mut line = format!(
        "{what}: {} requests, p50 {:.2} ms, p99 {:.2} ms, {:.0} req/s",
        r.requests,
        r.p50.as_secs_f64() * 1e3,
        r.p99.as_secs_f64() * 1e3,
        r.rps
    );
    for (name, f) in floors {
        line.push_str(&format!(
            " | vs {name}: p50 {:.2}x, p99 {:.2}x, throughput {:.2}x",
            r.p50.as_secs_f64() / f.p50.as_secs_f64(),
            r.p99.as_secs_f64() / f.p99.as_secs_f64(),
            r.rps / f.rps
        ));
    }
    println!("{line}");
}
