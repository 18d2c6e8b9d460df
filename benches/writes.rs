//! Write-path benchmark: a burst of ScaleRequests against Deployments in the sandbox, timed from the burst
//! start to each Deployment's `spec.replicas` change in the API server and to the request's `Applied=True`;
//! a burst of REST `POST /k8s/controllers/{ns}/{name}` scales; each next to a burst of bare kube-rs `/scale`
//! PATCHes made in the same run (the floor).
//!
//! Two processes, as production runs: the sandbox and the load generator in this one, the operator as
//! `machinist run` in its own, so its CPU time is its own. `cargo bench --bench writes` (200 requests) or
//! `MACHINIST_BENCH_QUICK=1 cargo bench --bench writes` (30). `MACHINIST_BENCH_ONE_CORE=1` gives the
//! operator one core (`taskset -c 0`) and the cluster and load the other (`taskset -c 1`), the budget of
//! an operator limited to one CPU; its target is then +100 ms, not +500 ms.
//! Prints figures; it asserts only that every write lands. Before each burst after the floor it waits for
//! the sandbox to settle (every Deployment ready at its count, no store change for 300 ms), so a burst is not
//! timed against the pods and status updates the previous one set off. With `RUST_LOG` set the operator
//! logs to stderr at that level.

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{pct, quick};
use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use kube::core::CustomResourceExt;
use machinist::reconcile::crd::ScaleRequest;
use machinist_sandbox::{Gvr, Sandbox, SandboxOptions, Store, seed};
use serde_json::{Value, json};

const NS: &str = "bench";
const ONE_CORE: &str = "MACHINIST_BENCH_ONE_CORE";

/// With `MACHINIST_BENCH_ONE_CORE=1`, re-runs this benchmark under `taskset -c 1` (the operator gets CPU 0,
/// see [`Operator::start`]) and exits with its status. Pinning from outside keeps every thread (tokio
/// workers, blocking pool) on its core.
fn one_core() -> bool {
    let wanted = std::env::var(ONE_CORE).is_ok_and(|v| !v.is_empty() && v != "0");
    if wanted && std::env::var_os("MACHINIST_BENCH_PINNED").is_none() {
        let exe = std::env::current_exe().expect("own path");
        let status = Command::new("taskset")
            .arg("-c")
            .arg("1")
            .arg(exe)
            .args(std::env::args_os().skip(1))
            .env("MACHINIST_BENCH_PINNED", "1")
            .status()
            .expect("taskset (util-linux) runs");
        std::process::exit(status.code().unwrap_or(1));
    }
    wanted
}

fn summary(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (pct(&v, 0.5), pct(&v, 0.99))
}

/// CPU time (user + system) a process has used, from `/proc/<pid>/stat` (Linux; zero elsewhere).
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<u64> = after.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    // utime and stime, fields 14 and 15 of the whole line, in clock ticks (100 per second on Linux).
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// CPU time of the operator and of this process (sandbox and load) at one moment.
struct Cpu {
    operator: Duration,
    cluster: Duration,
}

impl Cpu {
    fn now(op: &Operator) -> Cpu {
        Cpu { operator: cpu_time(&op.0.id().to_string()), cluster: cpu_time("self") }
    }
}

fn cpu_line(what: &str, before: &Cpu, wall: Duration, op: &Operator) {
    let after = Cpu::now(op);
    let cores = |d: Duration| d.as_secs_f64() / wall.as_secs_f64().max(1e-9);
    let (o, c) =
        (after.operator.saturating_sub(before.operator), after.cluster.saturating_sub(before.cluster));
    println!(
        "{what}: operator CPU time {o:?} ({:.2} cores busy), sandbox and load {c:?} ({:.2} cores), over {wall:?} wall",
        cores(o),
        cores(c)
    );
}

fn name(i: usize) -> String {
    format!("w-{i:03}")
}

/// Polls the store (in process: no HTTP on the observed path) until each Deployment has `replicas`;
/// returns the time each one got there, measured from `t0`.
async fn until_replicas(store: &Store, n: usize, replicas: i64, t0: Instant) -> Vec<Duration> {
    let mut seen: HashMap<usize, Duration> = HashMap::new();
    let deadline = t0 + Duration::from_secs(120);
    while seen.len() < n {
        for i in 0..n {
            if seen.contains_key(&i) {
                continue;
            }
            let r = store.get(&Gvr::deployments(), NS, &name(i)).and_then(|d| d["spec"]["replicas"].as_i64());
            if r == Some(replicas) {
                seen.insert(i, t0.elapsed());
            }
        }
        assert!(Instant::now() < deadline, "{} of {n} Deployments reached {replicas}", seen.len());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    seen.into_values().collect()
}

/// Waits until every Deployment runs `replicas` ready pods and the sandbox's store has not changed for
/// 300 ms: the pods, ReplicaSet and status updates a burst sets off (and the operator's watchers
/// digesting them) must not be timed as part of the next burst.
async fn until_settled(store: &Store, n: usize, replicas: i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = (0..n)
            .filter(|&i| {
                store.get(&Gvr::deployments(), NS, &name(i)).is_some_and(|d| {
                    d["status"]["readyReplicas"].as_i64() == Some(replicas)
                        && d["status"]["replicas"].as_i64() == Some(replicas)
                })
            })
            .count();
        if ready == n {
            let rv = store.resource_version();
            tokio::time::sleep(Duration::from_millis(300)).await;
            if store.resource_version() == rv {
                return;
            }
            continue;
        }
        assert!(Instant::now() < deadline, "{ready} of {n} Deployments settled at {replicas} ready replicas");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `machinist run` against the sandbox, in its own process (killed when dropped).
struct Operator(Child);

impl Operator {
    /// On CPU 0 alone when `pinned`; returns it and its REST base URL.
    fn start(kubeconfig: &std::path::Path, pinned: bool) -> (Operator, String) {
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let mut cmd = if pinned {
            let mut c = Command::new("taskset");
            c.args(["-c", "0", env!("CARGO_BIN_EXE_machinist")]);
            c
        } else {
            Command::new(env!("CARGO_BIN_EXE_machinist"))
        };
        let child = cmd
            .args(["run", "--leader-election", "false", "--provider", "k8s", "--namespaces", NS])
            .args(["--http-listen", &format!("127.0.0.1:{port}")])
            // As `common::operator`: no read limiter (the readiness poll below), writes at their defaults.
            .args(["--rate-limit-reads-identity", "0", "--rate-limit-reads-ip", "0"])
            .args(["--rate-limit-reads-global", "0"])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .spawn()
            .expect("start machinist run");
        (Operator(child), format!("http://127.0.0.1:{port}"))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn applied(sr: &ScaleRequest) -> bool {
    sr.status
        .as_ref()
        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Applied" && c.status == "True"))
}

fn line(what: &str, (p50, p99): (Duration, Duration), floor: (Duration, Duration)) {
    println!(
        "{what}: p50 {p50:?} p99 {p99:?} | floor p50 {:?} p99 {:?} | added over the floor: p50 {:?} p99 {:?}",
        floor.0,
        floor.1,
        p50.saturating_sub(floor.0),
        p99.saturating_sub(floor.1)
    );
}

/// The durations the spawned requests of a burst measured, in spawn order.
async fn each_elapsed(tasks: Vec<tokio::task::JoinHandle<Duration>>) -> Vec<Duration> {
    let mut times = Vec::with_capacity(tasks.len());
    for t in tasks {
        times.push(t.await.expect("request task"));
    }
    times
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .with_writer(std::io::stderr)
            .init();
    }
    let pinned = one_core();
    let quick = quick();
    let n = if quick { 30 } else { 200 };
    println!(
        "writes benchmark ({} mode{}): {n} Deployments, bursts of {n}",
        if quick { "quick" } else { "full" },
        if pinned { ", operator pinned to CPU 0, sandbox and load to CPU 1" } else { "" }
    );

    let sb = Sandbox::start(SandboxOptions::default()).await.expect("sandbox starts");
    sb.store.create(&Gvr::namespaces(), "", json!({"metadata": {"name": NS}})).expect("namespace");
    let deps: Vec<(Gvr, String, Value)> = (0..n)
        .map(|i| (Gvr::deployments(), NS.to_string(), seed::app_deployment(NS, &name(i), "1.0.0", 1, vec![])))
        .collect();
    sb.store.create_many(deps).expect("deployments");
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, sb.kubeconfig_yaml()).expect("write the kubeconfig");
    let kc = Kubeconfig::from_yaml(&sb.kubeconfig_yaml()).expect("kubeconfig parses");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &ScaleRequest::crd()).await.expect("install the CRD");

    let (op, base) = Operator::start(&kubeconfig, pinned);
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("http client");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = match http.get(format!("{base}/k8s/controllers/{NS}")).send().await {
            Ok(r) if r.status().is_success() => r
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v["controllers"].as_array().map(Vec::len))
                .unwrap_or(0),
            _ => 0,
        };
        if got == n {
            break;
        }
        assert!(Instant::now() < deadline, "operator cache: {got} of {n} controllers");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Floor: the same burst as bare kube-rs /scale PATCHes (replicas 1 -> 2).
    let deploys: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), NS);
    let cpu = Cpu::now(&op);
    let t0 = Instant::now();
    let patches: Vec<_> = (0..n)
        .map(|i| {
            let api = deploys.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let patch = json!({"spec": {"replicas": 2}});
                api.patch_scale(&name(i), &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .expect("scale");
                t.elapsed()
            })
        })
        .collect();
    // The observer runs while the burst is in flight, so early writes are not timed at the burst's end.
    let (written, floor_resp) = tokio::join!(until_replicas(&sb.store, n, 2, t0), each_elapsed(patches));
    let floor_write = summary(written);
    cpu_line(&format!("floor, {n} /scale PATCHes"), &cpu, t0.elapsed(), &op);
    let floor_resp = summary(floor_resp);
    println!(
        "floor, {n} concurrent kube-rs /scale PATCHes: response p50 {:?} p99 {:?}; burst start to replicas \
         written p50 {:?} p99 {:?}",
        floor_resp.0, floor_resp.1, floor_write.0, floor_write.1
    );

    until_settled(&sb.store, n, 2).await;

    // ScaleRequests (replicas 2 -> 3), watched for Applied=True while the burst is created.
    let srs: Api<ScaleRequest> = Api::namespaced(client.clone(), NS);
    let watch_srs = srs.clone();
    let (synced_tx, synced_rx) = tokio::sync::oneshot::channel::<()>();
    let applied_at = tokio::spawn(async move {
        let mut synced = Some(synced_tx);
        let mut done: HashMap<String, Instant> = HashMap::new();
        let stream = kube::runtime::watcher(watch_srs, kube::runtime::watcher::Config::default());
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            let ev = ev.expect("ScaleRequest watch");
            if let kube::runtime::watcher::Event::InitDone = ev
                && let Some(tx) = synced.take()
            {
                let _ = tx.send(());
            }
            if let kube::runtime::watcher::Event::Apply(sr) | kube::runtime::watcher::Event::InitApply(sr) =
                ev
                && applied(&sr)
            {
                let key = sr.metadata.name.clone().unwrap_or_default();
                done.entry(key).or_insert_with(Instant::now);
                if done.len() == n {
                    return done;
                }
            }
        }
        panic!("the ScaleRequest watch ended");
    });
    synced_rx.await.expect("the ScaleRequest watch syncs");
    let cpu = Cpu::now(&op);
    let t0 = Instant::now();
    let creates: Vec<_> = (0..n)
        .map(|i| {
            let api = srs.clone();
            tokio::spawn(async move {
                let sr: ScaleRequest = serde_json::from_value(json!({
                    "apiVersion": "machinist.dev/v1alpha1", "kind": "ScaleRequest",
                    "metadata": {"name": format!("sr-{i:03}")},
                    "spec": {"target": {"name": name(i)}, "replicas": 3}}))
                .expect("a valid ScaleRequest");
                api.create(&PostParams::default(), &sr).await.expect("create ScaleRequest");
            })
        })
        .collect();
    let (written, ()) = tokio::join!(until_replicas(&sb.store, n, 3, t0), async {
        for c in creates {
            c.await.expect("create task");
        }
    });
    let sr_write = summary(written);
    let done = tokio::time::timeout(Duration::from_secs(120), applied_at)
        .await
        .expect("every ScaleRequest is Applied within 120 s")
        .expect("watch task");
    let sr_applied = summary(done.values().map(|t| t.duration_since(t0)).collect());
    cpu_line(&format!("{n} ScaleRequests, burst start to the last Applied=True"), &cpu, t0.elapsed(), &op);
    line(&format!("{n} ScaleRequests, burst start to /scale written"), sr_write, floor_write);
    line(&format!("{n} ScaleRequests, burst start to Applied=True seen by a watch"), sr_applied, floor_write);

    until_settled(&sb.store, n, 3).await;

    // REST scale (replicas 3 -> 4): response latency of concurrent POSTs, and when the writes landed.
    let t0 = Instant::now();
    let posts: Vec<_> = (0..n)
        .map(|i| {
            let (http, url) = (http.clone(), format!("{base}/k8s/controllers/{NS}/{}", name(i)));
            tokio::spawn(async move {
                let t = Instant::now();
                let resp = http.post(&url).json(&json!({"replicas": 4})).send().await.expect("POST");
                assert!(resp.status().is_success(), "POST {url}: {}", resp.status());
                t.elapsed()
            })
        })
        .collect();
    let (written, rest) = tokio::join!(until_replicas(&sb.store, n, 4, t0), each_elapsed(posts));
    let rest_write = summary(written);
    line(&format!("{n} concurrent REST POST scales, response"), summary(rest), floor_resp);
    line(&format!("{n} concurrent REST POST scales, burst start to /scale written"), rest_write, floor_write);

    let added = sr_applied.1.saturating_sub(floor_write.1);
    let target = Duration::from_millis(if pinned { 100 } else { 500 });
    println!(
        "target: the reconciler adds <= {target:?} p99 over the floor (ScaleRequest to Applied=True{}): added {added:?}, {}",
        if pinned { ", one core" } else { "" },
        if added <= target { "met" } else { "NOT met" }
    );
    drop(op);
    sb.shutdown().await;
}
