//! API edge benchmark: authenticated read overhead on a cache hit. Three operators run against one sandbox in
//! the same process, with auth mode `none`, `static` and `kubernetes` (review results cached after the first
//! request), and the same GET is sent to each in turn so that load on the box affects all three alike.
//!
//! `cargo bench --bench auth` (full) or `MACHINIST_BENCH_QUICK=1 cargo bench --bench auth`. Prints p50/p99
//! per mode and the p99 overhead against `none` (target ≤ 1 ms); it asserts that every request is a 200.
//! The rate limiter is off in all three (`benches/common`): the figure is the cost of authentication.
//!
//! Then a flood: 10,000 GETs (2,000 in quick mode) with distinct made-up tokens from one client address
//! (127.0.0.2) against a fourth operator in `kubernetes` mode with `--rate-limit-reads-ip=600`, while a valid
//! caller reads from 127.0.0.1. It prints how many TokenReviews reached the API server (the sandbox counts
//! them) and the valid caller's p99 during the flood as a ratio to its p99 with no flood, in the same run.

mod common;

use std::time::{Duration, Instant};

use common::{pct, quick};
use machinist::api::auth::token_hash;
use machinist_sandbox::review::Reviews;
use machinist_sandbox::{Gvr, Sandbox, SandboxOptions};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// An operator with these extra `run` flags, once its readiness probe passes.
async fn operator(sb: &Sandbox, flags: &[&str], stop: &CancellationToken) -> String {
    let mut argv = vec!["--leader-election=false"];
    argv.extend_from_slice(flags);
    let operator = common::operator(&argv).kubeconfig_yaml(sb.kubeconfig_yaml());
    let base = common::spawn_operator(operator, stop.clone()).await;
    let http = reqwest::Client::new();
    for _ in 0..600 {
        let r = http.get(format!("{base}/health/readiness")).send().await;
        if r.is_ok_and(|r| r.status().is_success()) {
            return base;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("operator with {flags:?} never became ready");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = quick();
    let rounds = if quick { 500 } else { 5000 };
    println!("auth benchmark ({} mode): {rounds} reads per auth mode", if quick { "quick" } else { "full" });

    let sb = Sandbox::start(SandboxOptions { test_hooks: true, ..SandboxOptions::default() })
        .await
        .expect("sandbox");
    let ns = "bench";
    sb.store.create(&Gvr::namespaces(), "", json!({"metadata": {"name": ns}})).expect("namespace");
    let dep = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    });
    sb.store.create(&Gvr::new("apps", "v1", "deployments"), ns, dep).expect("deployment");
    let reviews: Reviews = serde_yaml::from_str(
        "users: [{token: bench-token, name: bench}]\n\
         rules: [{subjects: [bench], verbs: ['*'], apiGroups: ['*'], resources: ['*']}]\n",
    )
    .expect("reviews");
    sb.set_reviews(reviews);

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tokens.yaml");
    let hash: String = token_hash("bench-token").iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&file, format!("tokens:\n- {{identity: bench, sha256: {hash}, rights: [read]}}\n"))
        .expect("tokens file");
    let tokens_flag = format!("--auth-tokens-file={}", file.display());

    let stop = CancellationToken::new();
    let modes = [
        ("none", operator(&sb, &[], &stop).await),
        ("static", operator(&sb, &["--auth-mode=static", &tokens_flag], &stop).await),
        ("kubernetes", operator(&sb, &["--auth-mode=kubernetes"], &stop).await),
    ];
    let http = reqwest::Client::new();
    let get = |base: &str| http.get(format!("{base}/k8s/machines/{ns}")).bearer_auth("bench-token");
    for (mode, base) in &modes {
        for _ in 0..20 {
            let r = get(base).send().await.expect("warm-up");
            assert!(r.status().is_success(), "{mode}: {}", r.status());
            r.bytes().await.expect("body");
        }
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(rounds); modes.len()];
    for round in 0..rounds {
        // Rotating the order keeps one mode from always following another.
        for k in 0..modes.len() {
            let i = (round + k) % modes.len();
            let t = Instant::now();
            let r = get(&modes[i].1).send().await.expect("GET");
            let status = r.status();
            r.bytes().await.expect("body");
            times[i].push(t.elapsed());
            assert!(status.is_success(), "{}: {status}", modes[i].0);
        }
    }
    for t in &mut times {
        t.sort();
    }
    let none_p99 = pct(&times[0], 0.99);
    for (i, (mode, _)) in modes.iter().enumerate() {
        let (p50, p99) = (pct(&times[i], 0.5), pct(&times[i], 0.99));
        let overhead = p99.as_secs_f64() * 1000.0 - none_p99.as_secs_f64() * 1000.0;
        println!(
            "{mode:>10}: p50 {:.3} ms, p99 {:.3} ms, p99 overhead vs none {overhead:+.3} ms (target <= 1 ms){}",
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0,
            if i > 0 && overhead > 1.0 { "  OVER TARGET" } else { "" }
        );
    }

    flood(&sb, ns, quick, &stop).await;
    stop.cancel();
    sb.shutdown().await;
}

/// An operator in `kubernetes` mode with the rate limiter on (`benches/common` turns it off) and the per-IP
/// read tier at 600 per minute, once ready.
async fn limited_operator(sb: &Sandbox, stop: &CancellationToken) -> String {
    let argv = [
        "--http-listen=127.0.0.1:0",
        "--leader-election=false",
        "--auth-mode=kubernetes",
        "--rate-limit-reads-ip=600",
    ];
    let operator = machinist::app::OperatorBuilder::from_flags(argv).expect("operator flags");
    let base = common::spawn_operator(operator.kubeconfig_yaml(sb.kubeconfig_yaml()), stop.clone()).await;
    for _ in 0..600 {
        let r = reqwest::get(format!("{base}/health/readiness")).await;
        if r.is_ok_and(|r| r.status().is_success()) {
            return base;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the limited operator never became ready");
}

/// TokenReviews the sandbox has served since its stats were reset.
async fn token_reviews(sb: &Sandbox) -> u64 {
    let stats: serde_json::Value =
        reqwest::get(format!("{}/sandbox/stats", sb.url())).await.expect("stats").json().await.expect("json");
    stats["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["verb"] == "create" && r["resource"] == "tokenreviews")
        .map(|r| r["count"].as_u64().unwrap_or(0))
        .sum()
}

/// `rounds` sequential reads by the valid caller; their latencies, sorted.
async fn valid_reads(http: &reqwest::Client, url: &str, rounds: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        let r = http.get(url).bearer_auth("bench-token").send().await.expect("GET");
        let status = r.status();
        r.bytes().await.expect("body");
        times.push(t.elapsed());
        assert!(status.is_success(), "the valid caller got {status}");
    }
    times.sort();
    times
}

async fn flood(sb: &Sandbox, ns: &str, quick: bool, stop: &CancellationToken) {
    let total = if quick { 2_000 } else { 10_000 };
    let base = limited_operator(sb, stop).await;
    let url = format!("{base}/k8s/machines/{ns}");
    let valid = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 1]))
        .build()
        .expect("client");
    let attacker = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .pool_max_idle_per_host(common::CONCURRENCY)
        .build()
        .expect("client");
    valid_reads(&valid, &url, 50).await;
    // The valid caller stays under its own per-IP limit (600/min): 50 + 250 + at most 250 reads.
    let quiet = valid_reads(&valid, &url, 250).await;

    reqwest::Client::new().delete(format!("{}/sandbox/stats", sb.url())).send().await.expect("reset stats");
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..common::CONCURRENCY)
        .map(|_| {
            let (http, url, next, refused) = (attacker.clone(), url.clone(), next.clone(), refused.clone());
            tokio::spawn(async move {
                use std::sync::atomic::Ordering::Relaxed;
                while next.fetch_add(1, Relaxed) < total {
                    let token = format!("made-up-{:032x}", fastrand::u128(..));
                    let r = http.get(&url).bearer_auth(token).send().await.expect("flood GET");
                    assert!(!r.status().is_success(), "a made-up token was let in");
                    if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
                        refused.fetch_add(1, Relaxed);
                    }
                    r.bytes().await.expect("body");
                }
            })
        })
        .collect();
    let mut during = Vec::new();
    while during.len() < 250 && tasks.iter().any(|t| !t.is_finished()) {
        during.extend(valid_reads(&valid, &url, 10).await);
    }
    for task in tasks {
        task.await.expect("flood task");
    }
    let elapsed = started.elapsed();
    during.sort();
    let reviews = token_reviews(sb).await;
    let (p99_quiet, p99_flood) = (pct(&quiet, 0.99), pct(&during, 0.99));
    println!(
        "flood: {total} requests with distinct made-up tokens from one address in {:.1} s ({} refused 429); \
         TokenReviews that reached the API server: {reviews} (per-IP read limit 600/min)",
        elapsed.as_secs_f64(),
        refused.load(std::sync::atomic::Ordering::Relaxed)
    );
    println!(
        "valid caller during the flood: p99 {:.3} ms over {} reads vs {:.3} ms with no flood: ratio {:.2}",
        p99_flood.as_secs_f64() * 1000.0,
        during.len(),
        p99_quiet.as_secs_f64() * 1000.0,
        p99_flood.as_secs_f64() / p99_quiet.as_secs_f64().max(1e-9)
    );
}
