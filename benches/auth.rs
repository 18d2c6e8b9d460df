//! API edge benchmark: authenticated read overhead on a cache hit. Three operators run against one sandbox in
//! the same process, with auth mode `none`, `static` and `kubernetes` (review results cached after the first
//! request), and the same GET is sent to each in turn so that load on the box affects all three alike.
//!
//! `cargo bench --bench auth` (full) or `MACHINIST_BENCH_QUICK=1 cargo bench --bench auth`. Prints p50/p99
//! per mode and the p99 overhead against `none` (target ≤ 1 ms); it asserts that every request is a 200.
//! The rate limiter is off in all three (`benches/common`): the figure is the cost of authentication.

mod common;

use std::time::{Duration, Instant};

use common::{pct, quick};
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use machinist::api::auth::token_hash;
use machinist::app::Overrides;
use machinist::sandbox::review::Reviews;
use machinist::sandbox::{Gvr, Sandbox, SandboxOptions};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// An operator with these extra `run` flags, once its readiness probe passes.
async fn operator(sb: &Sandbox, flags: &[&str], stop: &CancellationToken) -> String {
    let mut argv = vec!["--leader-election=false"];
    argv.extend_from_slice(flags);
    let kc = Kubeconfig::from_yaml(&sb.kubeconfig_yaml()).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("config");
    let overrides =
        |ready| Overrides { kube_config: Some(config), ready: Some(ready), ..Overrides::default() };
    let base = common::spawn_operator(&argv, overrides, stop.clone()).await;
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

    let sb = Sandbox::start(SandboxOptions::default()).await.expect("sandbox");
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
    stop.cancel();
    sb.shutdown().await;
}
