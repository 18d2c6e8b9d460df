//! The chaos scenarios of issue 12, each run against its own sandbox with targeted faults, returning the
//! figures it measured. `tests/chaos.rs` runs them in `cargo test` and asserts the goals; `benches/chaos.rs`
//! runs them at full size and prints the figures (BENCHMARKS.md quotes them).
//!
//! Nothing here asserts a goal: a scenario panics only when it cannot run (a setup call fails, or a wait
//! exceeds its generous limit).
#![allow(dead_code)]

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use machinist::cache::Cache;
use machinist::provider::k8s::{client, watch};
use machinist::reconcile::crd::ScaleRequest;
use machinist_sandbox::{Gvr, Sandbox, SandboxOptions};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

// ---- shared plumbing

async fn sandbox() -> Sandbox {
    let opts =
        SandboxOptions { test_hooks: true, pod_start_delay: Duration::from_millis(50), ..Default::default() };
    Sandbox::start(opts).await.expect("sandbox starts")
}

async fn config_of(kubeconfig: &str) -> Config {
    let kc = Kubeconfig::from_yaml(kubeconfig).expect("kubeconfig parses");
    Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("config")
}

/// An admin client of the sandbox, retry off.
async fn admin(sb: &Sandbox) -> Client {
    let mut config = config_of(&sb.kubeconfig_yaml()).await;
    config.default_retry = false;
    Client::try_from(config).expect("client")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("reqwest client")
}

async fn hook(sb: &Sandbox, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut req = http().request(method, format!("{}{path}", sb.url()));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.expect("sandbox hook");
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.expect("json")
}

fn namespace(sb: &Sandbox) -> String {
    let name = format!("chaos-{:08x}", fastrand::u32(..));
    sb.store.create(&Gvr::namespaces(), "", json!({"metadata": {"name": name}})).expect("namespace");
    name
}

fn install_crd(sb: &Sandbox) {
    let crd: Value = serde_yaml::from_str(&machinist::reconcile::crd_yaml()).expect("CRD yaml parses");
    let name = crd["metadata"]["name"].as_str().unwrap_or_default().to_string();
    if sb.store.get(&Gvr::crds(), "", &name).is_none() {
        sb.store.create(&Gvr::crds(), "", crd).expect("CRD installs");
    }
}

fn deployment(name: &str, replicas: i32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}})
}

fn scale_request(name: &str, target: &str, replicas: i32) -> ScaleRequest {
    serde_json::from_value(json!({"apiVersion": "machinist.dev/v1alpha1", "kind": "ScaleRequest",
        "metadata": {"name": name}, "spec": {"target": {"name": target}, "replicas": replicas}}))
    .expect("scale request")
}

async fn wait_until(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

/// A real `machinist run` process against the sandbox, as the chart runs it.
struct Replica {
    child: Child,
    base: String,
}

impl Replica {
    fn start(kubeconfig: &Path, ns: &str, identity: &str) -> Replica {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_machinist"))
            .arg("run")
            .env("KUBECONFIG", kubeconfig)
            .env("PLT_LISTEN", format!("127.0.0.1:{port}"))
            .env("PLT_K8S_NAMESPACES", ns)
            .env("PLT_LEASE_NAMESPACE", ns)
            .env("POD_NAME", identity)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into()))
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("machinist run starts");
        Replica { child, base: format!("http://127.0.0.1:{port}") }
    }

    /// `Some(true)` while it reports holding the lease; `None` while it does not answer.
    async fn leads(&self) -> Option<bool> {
        let r = http().get(format!("{}/metrics", self.base)).timeout(Duration::from_secs(2)).send().await;
        let text = r.ok()?.text().await.ok()?;
        text.lines().find(|l| l.starts_with("machinist_leader ")).map(|l| l.ends_with(" 1"))
    }
}

// ---- hung leader

/// What the hung-leader scenario measured.
#[derive(Debug)]
pub struct HungLeader {
    /// From the hang to the old leader reporting it no longer leads.
    pub stopped_leading: Duration,
    /// From the hang to the other replica leading.
    pub other_leads: Duration,
    /// From the hang to the last request applied by the new leader.
    pub all_applied: Duration,
    /// Writes (`/scale`, ScaleRequest status) by the old leader after the new leader's first write.
    pub two_writer_moments: usize,
    pub writes_by_old: usize,
    pub writes_by_new: usize,
}

fn applied(sr: &ScaleRequest, replicas: i32) -> bool {
    sr.status.as_ref().is_some_and(|s| s.applied_replicas == Some(replicas))
}

/// Two `machinist run` replicas; the leader's Lease and `/scale` calls start to hang (an hour, longer than any
/// timeout) while `requests` ScaleRequests are pending. The old leader must stop writing on its own, the
/// other take over, and the sandbox's record of writes must show no stretch with two writers.
pub async fn hung_leader(requests: usize) -> HungLeader {
    let sb = sandbox().await;
    let kube = admin(&sb).await;
    let ns = namespace(&sb);
    install_crd(&sb);
    for i in 0..requests {
        sb.store.create(&Gvr::deployments(), &ns, deployment(&format!("w{i}"), 1)).expect("deployment");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (kc_a, kc_b) = (dir.path().join("a.kubeconfig"), dir.path().join("b.kubeconfig"));
    std::fs::write(&kc_a, sb.kubeconfig_yaml_as("replica-a")).expect("kubeconfig a");
    std::fs::write(&kc_b, sb.kubeconfig_yaml_as("replica-b")).expect("kubeconfig b");

    let a = Replica::start(&kc_a, &ns, "replica-a");
    wait_until("replica a leads", Duration::from_secs(60), async || a.leads().await == Some(true)).await;
    let b = Replica::start(&kc_b, &ns, "replica-b");
    wait_until("replica b serves", Duration::from_secs(60), async || b.leads().await == Some(false)).await;
    let srs: Api<ScaleRequest> = Api::namespaced(kube.clone(), &ns);
    srs.create(&Default::default(), &scale_request("warm", "w0", 2)).await.expect("create warm");
    wait_until("a applies the first request", Duration::from_secs(30), async || {
        srs.get("warm").await.is_ok_and(|sr| applied(&sr, 2))
    })
    .await;

    hook(&sb, reqwest::Method::DELETE, "/sandbox/writes", None).await;
    let fault = json!({"hangs": [{"users": ["replica-a"], "resources": ["leases", "deployments/scale"]}]});
    hook(&sb, reqwest::Method::POST, "/sandbox/faults", Some(fault)).await;
    let hung = Instant::now();
    for i in 0..requests {
        srs.create(&Default::default(), &scale_request(&format!("sr-{i}"), &format!("w{i}"), 3))
            .await
            .expect("create request");
    }
    let mut stopped_leading = None;
    let mut other_leads = None;
    while stopped_leading.is_none() || other_leads.is_none() {
        assert!(hung.elapsed() < Duration::from_secs(60), "no handover within 60 s");
        if stopped_leading.is_none() && a.leads().await == Some(false) {
            stopped_leading = Some(hung.elapsed());
        }
        if other_leads.is_none() && b.leads().await == Some(true) {
            other_leads = Some(hung.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_until("every request applied", Duration::from_secs(90), async || {
        let list = srs.list(&ListParams::default()).await.expect("list requests");
        list.items.iter().filter(|sr| applied(sr, 3)).count() == requests
    })
    .await;
    let all_applied = hung.elapsed();

    let writes = hook(&sb, reqwest::Method::GET, "/sandbox/writes", None).await;
    hook(&sb, reqwest::Method::DELETE, "/sandbox/faults", None).await;
    let mut seen_new = false;
    let (mut two_writer_moments, mut writes_by_old, mut writes_by_new) = (0, 0, 0);
    for w in writes["writes"].as_array().expect("writes") {
        if !matches!(w["resource"].as_str(), Some("deployments/scale" | "scalerequests/status")) {
            continue;
        }
        match w["user"].as_str() {
            Some("replica-a") => {
                writes_by_old += 1;
                two_writer_moments += usize::from(seen_new);
            }
            Some("replica-b") => {
                writes_by_new += 1;
                seen_new = true;
            }
            _ => {}
        }
    }
    drop((a, b));
    HungLeader {
        stopped_leading: stopped_leading.unwrap_or_default(),
        other_leads: other_leads.unwrap_or_default(),
        all_applied,
        two_writer_moments,
        writes_by_old,
        writes_by_new,
    }
}

// ---- compaction and cut watches

/// What the relist scenario measured.
#[derive(Debug)]
pub struct Relists {
    pub pods: usize,
    pub changed: usize,
    /// From the last change's answer to every change visible in the cache.
    pub visible_after: Duration,
    pub reads: usize,
    /// Reads that returned fewer pods than exist (none are created or deleted).
    pub partial_reads: usize,
}

/// `pods` pods in namespace `load`; while `changes` of them get a new label, the sandbox drops its watch
/// history and cuts every watch twice (every watcher relists after a 410). A reader counts every answer that
/// holds fewer pods than exist.
pub async fn compaction_and_cut_watches(pods: u32, changes: usize) -> Relists {
    let opts = SandboxOptions { test_hooks: true, extra_pods: pods, ..Default::default() };
    let sb = Sandbox::start(opts).await.expect("sandbox starts");
    let kube = admin(&sb).await;
    let config = config_of(&sb.kubeconfig_yaml()).await;
    let watch_client = client::watch_client(config, client::Timeouts::default()).expect("watch client");
    let cache = Arc::new(Cache::new_k8s(vec![]));
    let watchers = watch::spawn_watchers(watch_client, cache.clone(), &[]);
    let ns = machinist_sandbox::seed::LOAD_NAMESPACE;
    let total = pods as usize;
    let count = |labels: &[(String, String)]| cache.machines(ns, labels).map(|l| l.len()).unwrap_or(0);
    wait_until("the cache holds every pod", Duration::from_secs(120), async || count(&[]) == total).await;

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let partial = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (cache, stop, reads, partial) = (cache.clone(), stop.clone(), reads.clone(), partial.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = cache.machines(ns, &[]).map(|l| l.len()).unwrap_or(0);
                reads.fetch_add(1, Ordering::Relaxed);
                partial.fetch_add(usize::from(n < total), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };

    let api: Api<Pod> = Api::namespaced(kube, ns);
    let names: Vec<String> =
        cache.machines(ns, &[]).expect("machines").iter().take(changes).map(|f| id_of(f.get())).collect();
    let cut = json!({"compact": true, "close_watches": true});
    for (i, name) in names.iter().enumerate() {
        if i == changes / 4 || i == 3 * changes / 4 {
            hook(&sb, reqwest::Method::POST, "/sandbox/faults", Some(cut.clone())).await;
        }
        let patch = json!({"metadata": {"labels": {"chaos": "changed"}}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("label a pod");
    }
    let last = Instant::now();
    let changed = [("chaos".to_string(), "changed".to_string())];
    wait_until("every change visible", Duration::from_secs(60), async || count(&changed) == names.len())
        .await;
    let visible_after = last.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    reader.await.expect("reader");
    watchers.abort();
    Relists {
        pods: total,
        changed: names.len(),
        visible_after,
        reads: reads.load(Ordering::Relaxed),
        partial_reads: partial.load(Ordering::Relaxed),
    }
}

fn id_of(machine: &str) -> String {
    let v: Value = serde_json::from_str(machine).expect("machine json");
    v["id"].as_str().unwrap_or_default().to_string()
}

// ---- errors on /scale with three writers

/// One REST write as its caller saw it.
#[derive(Clone, Debug)]
pub struct WriteSeen {
    pub submitted: Instant,
    pub answered: Instant,
    pub requested: i64,
    pub status: u16,
    /// The count a 200 answered (a superseded write answers the newer count).
    pub accepted: Option<i64>,
    pub problem: String,
    pub retry_after: bool,
}

/// What the error scenario measured.
#[derive(Debug)]
pub struct ScaleErrors {
    pub writes: Vec<WriteSeen>,
    pub final_replicas: i64,
    /// The counts the target may end at: the last accepted write's, or one submitted after it that answered
    /// a retryable error (it may have landed).
    pub allowed_final: Vec<i64>,
    /// `/scale` calls the sandbox served or refused meanwhile.
    pub scale_calls: u64,
}

impl ScaleErrors {
    pub fn ok(&self) -> usize {
        self.writes.iter().filter(|w| w.status == 200).count()
    }

    /// Answers that are neither 200 nor a retryable problem (429, 502, 503, 504 with problem+json).
    pub fn not_retryable(&self) -> Vec<&WriteSeen> {
        self.writes
            .iter()
            .filter(|w| {
                let retryable = matches!(w.status, 429 | 502 | 503 | 504) && !w.problem.is_empty();
                w.status != 200 && !retryable
            })
            .collect()
    }
}

/// A whole operator in this process over `sb` (`machinist run` with `extra` flags); its REST base URL.
async fn operator(sb: &Sandbox, extra: &[&str]) -> (String, tokio_util::sync::CancellationToken) {
    let mut flags = vec!["--http-listen", "127.0.0.1:0", "--shutdown-delay", "0"];
    flags.extend_from_slice(extra);
    let builder = machinist::app::OperatorBuilder::from_flags(flags)
        .expect("arguments parse")
        .kubeconfig_yaml(sb.kubeconfig_yaml());
    let stop = tokio_util::sync::CancellationToken::new();
    let spawned = builder.spawn(stop.clone()).await.expect("the operator starts");
    (format!("http://{}", spawned.addr), stop)
}

/// 30 % of the sandbox's `/scale` calls answer 500 or 429 while three writers scale one Deployment through
/// the REST API, `per_writer` writes each, one after the other.
pub async fn scale_errors_with_three_writers(per_writer: usize) -> ScaleErrors {
    let sb = sandbox().await;
    let ns = namespace(&sb);
    install_crd(&sb);
    sb.store.create(&Gvr::deployments(), &ns, deployment("web", 1)).expect("deployment");
    let (base, stop) =
        operator(&sb, &["--namespaces", &ns, "--leader-election", "false", "--write-timeout", "5"]).await;
    let url = format!("{base}/k8s/controllers/{ns}/web");
    wait_until("the operator serves web", Duration::from_secs(60), async || {
        http().get(&url).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    // 15 %, then 17.65 % of the rest: 30 % of the calls fail.
    let faults = json!({"errors": [
        {"code": 500, "rate": 0.15, "resources": ["deployments/scale"]},
        {"code": 429, "rate": 0.1765, "resources": ["deployments/scale"], "retry_after_secs": 1}]});
    hook(&sb, reqwest::Method::DELETE, "/sandbox/stats", None).await;
    hook(&sb, reqwest::Method::POST, "/sandbox/faults", Some(faults)).await;

    let writers = (0..3).map(|w| {
        let url = url.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            for i in 0..per_writer {
                let requested = 1 + ((w * 7 + i * 3) % 9) as i64;
                let submitted = Instant::now();
                let r = http().post(&url).json(&json!({"replicas": requested})).send().await.expect("send");
                let status = r.status().as_u16();
                let retry_after = r.headers().contains_key("retry-after");
                let problem = r
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .filter(|ct| ct.starts_with("application/problem+json"))
                    .map(String::from)
                    .unwrap_or_default();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                let accepted = (status == 200).then(|| body["replicas"].as_i64()).flatten();
                let problem = if problem.is_empty() { String::new() } else { body["type"].to_string() };
                seen.push(WriteSeen {
                    submitted,
                    answered: Instant::now(),
                    requested,
                    status,
                    accepted,
                    problem,
                    retry_after,
                });
            }
            seen
        })
    });
    let mut writes = Vec::new();
    for w in writers {
        writes.extend(w.await.expect("writer"));
    }
    let stats = hook(&sb, reqwest::Method::GET, "/sandbox/stats", None).await;
    hook(&sb, reqwest::Method::DELETE, "/sandbox/faults", None).await;
    // Let anything still in flight land (an execution lasts at most the 5 s write timeout).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let final_replicas = sb
        .store
        .get(&Gvr::deployments(), &ns, "web")
        .and_then(|d| d["spec"]["replicas"].as_i64())
        .unwrap_or(-1);
    let last = writes.iter().filter(|w| w.status == 200).max_by_key(|w| w.answered).cloned();
    let mut allowed_final: Vec<i64> = Vec::new();
    if let Some(last) = &last {
        allowed_final.extend(last.accepted);
        for w in writes.iter().filter(|w| w.submitted > last.submitted) {
            allowed_final.push(w.accepted.unwrap_or(w.requested));
        }
    }
    let scale_calls = stats["requests"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter(|e| e["resource"] == "deployments/scale")
                .filter_map(|e| e["count"].as_u64())
                .sum()
        })
        .unwrap_or(0);
    stop.cancel();
    ScaleErrors { writes, final_replicas, allowed_final, scale_calls }
}

// ---- SIGKILL during a burst of ScaleRequests

/// What the burst scenario measured.
#[derive(Debug)]
pub struct KilledBurst {
    pub requests: usize,
    pub targets: usize,
    /// From the first request created to the last one finished (Succeeded or Superseded).
    pub last_finished: Duration,
    /// From the burst start to the last `Applied=True` condition (Superseded requests have none).
    pub last_applied: Duration,
    pub succeeded: usize,
    pub superseded: usize,
    /// Requests that ended in any other phase (or did not end).
    pub other: Vec<String>,
    /// The most `/scale` writes one target got, and how many requests named it.
    pub max_writes_per_target: (u64, usize),
    /// Targets written more often than requests named them.
    pub targets_written_twice_for_one_request: usize,
}

/// Two replicas; a burst of `requests` ScaleRequests over `requests / 2` Deployments (two requests per
/// target, with different counts); the leader is SIGKILLed 300 ms into the burst. Every request must end
/// Succeeded or Superseded, and no target get more `/scale` writes than requests named it.
pub async fn sigkill_during_a_burst(requests: usize) -> KilledBurst {
    use machinist::reconcile::crd::Phase;

    let sb = sandbox().await;
    let kube = admin(&sb).await;
    let ns = namespace(&sb);
    install_crd(&sb);
    let targets = (requests / 2).max(1);
    for t in 0..targets {
        sb.store.create(&Gvr::deployments(), &ns, deployment(&format!("t{t}"), 1)).expect("deployment");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, sb.kubeconfig_yaml()).expect("kubeconfig");
    let mut a = Replica::start(&kubeconfig, &ns, "replica-a");
    wait_until("replica a leads", Duration::from_secs(60), async || a.leads().await == Some(true)).await;
    let b = Replica::start(&kubeconfig, &ns, "replica-b");
    wait_until("replica b serves", Duration::from_secs(60), async || b.leads().await == Some(false)).await;
    hook(&sb, reqwest::Method::DELETE, "/sandbox/writes", None).await;

    let srs: Api<ScaleRequest> = Api::namespaced(kube.clone(), &ns);
    let started = Instant::now();
    let creator = {
        let srs = srs.clone();
        tokio::spawn(async move {
            for i in 0..requests {
                let (target, replicas) = (i % targets, 2 + (i / targets) as i32);
                let sr = scale_request(&format!("sr-{i}"), &format!("t{target}"), replicas);
                srs.create(&Default::default(), &sr).await.expect("create request");
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.child.start_kill().expect("SIGKILL a");
    a.child.wait().await.expect("a exits");
    creator.await.expect("creator");

    let finished = |sr: &ScaleRequest| {
        sr.status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(|p| matches!(p, Phase::Succeeded | Phase::Superseded))
    };
    wait_until("every request finished", Duration::from_secs(180), async || {
        let list = srs.list(&ListParams::default()).await.expect("list requests");
        list.items.len() == requests && list.items.iter().all(finished)
    })
    .await;
    let last_finished = started.elapsed();

    let list = srs.list(&ListParams::default()).await.expect("list requests");
    let (mut succeeded, mut superseded, mut other) = (0, 0, Vec::new());
    let mut last_applied = Duration::ZERO;
    let since_start = |t: &str| -> Option<Duration> {
        let at: jiff::Timestamp = t.parse().ok()?;
        let now = jiff::Timestamp::now();
        let ago = now.duration_since(at).unsigned_abs();
        Some(started.elapsed().saturating_sub(ago))
    };
    for sr in &list.items {
        let status = sr.status.clone().unwrap_or_default();
        match status.phase {
            Some(Phase::Succeeded) => succeeded += 1,
            Some(Phase::Superseded) => superseded += 1,
            p => other.push(format!("{} {p:?}", sr.metadata.name.clone().unwrap_or_default())),
        }
        let applied = status.conditions.iter().find(|c| c.type_ == "Applied" && c.status == "True");
        if let Some(at) = applied.and_then(|c| since_start(&c.last_transition_time)) {
            last_applied = last_applied.max(at);
        }
    }
    let writes = hook(&sb, reqwest::Method::GET, "/sandbox/writes", None).await;
    let mut per_target: std::collections::HashMap<String, u64> = Default::default();
    for w in writes["writes"].as_array().expect("writes") {
        if w["resource"] == "deployments/scale" && w["namespace"] == ns.as_str() {
            *per_target.entry(w["name"].as_str().unwrap_or_default().to_string()).or_default() += 1;
        }
    }
    let per_request = requests.div_ceil(targets);
    let max_writes = per_target.values().copied().max().unwrap_or(0);
    let twice = per_target.values().filter(|n| **n as usize > per_request).count();
    drop(b);
    KilledBurst {
        requests,
        targets,
        last_finished,
        last_applied,
        succeeded,
        superseded,
        other,
        max_writes_per_target: (max_writes, per_request),
        targets_written_twice_for_one_request: twice,
    }
}

// ---- ECS throttling

/// What the ECS throttling scenario measured.
#[derive(Debug)]
pub struct EcsThrottled {
    pub throttled_for: Duration,
    pub k8s_reads: usize,
    pub k8s_reads_failed: usize,
    pub readiness_checks: usize,
    pub readiness_failed: usize,
    /// From the fault's end to the ECS provider's health reason clearing (a successful refresh).
    pub ecs_recovered_after: Duration,
    pub interval: Duration,
    pub throttled_calls: u64,
}

/// The operator with both providers; every ECS call is throttled for `throttled_for` while a client keeps
/// reading Kubernetes controllers and `/health/readiness`.
pub async fn ecs_throttling(throttled_for: Duration, interval: Duration) -> EcsThrottled {
    use machinist::provider::ecs::{ClientOptions, EcsSettings};
    use machinist_sandbox::ecs_emulator::{self as emulator, Emulator, Fault};

    let emu = Emulator::start().await.expect("ECS emulator");
    let account = format!("{:012}", fastrand::u64(100_000_000_000..999_999_999_999));
    let ecs = emulator::admin_client(&emu.endpoint(), Some(&account)).await.expect("admin client");
    ecs.create_cluster().cluster_name("ops").send().await.expect("cluster");
    emulator::register_task_definition(&ecs, "app", "nginx:1.25", "256", "512").await.expect("definition");
    ecs.create_service()
        .cluster("ops")
        .service_name("web")
        .task_definition("app")
        .desired_count(2)
        .send()
        .await
        .expect("service");
    let sb = sandbox().await;
    let ns = namespace(&sb);
    install_crd(&sb);
    sb.store.create(&Gvr::deployments(), &ns, deployment("web", 1)).expect("deployment");
    let settings = EcsSettings::with_client(
        ClientOptions::emulator(&emu.endpoint(), Some(&account)),
        vec!["ops".into()],
        interval,
    );
    let flags = [
        "--http-listen",
        "127.0.0.1:0",
        "--shutdown-delay",
        "0",
        "--leader-election",
        "false",
        "--provider",
        "k8s,ecs",
        "--namespaces",
        &ns,
    ];
    let stop = tokio_util::sync::CancellationToken::new();
    let spawned = machinist::app::OperatorBuilder::from_flags(flags)
        .expect("flags")
        .kubeconfig_yaml(sb.kubeconfig_yaml())
        .ecs(settings)
        .spawn(stop.clone())
        .await
        .expect("operator");
    let base = format!("http://{}", spawned.addr);
    let ecs_reason = async || -> Option<String> {
        let v: Value = http().get(format!("{base}/providers")).send().await.ok()?.json().await.ok()?;
        let ecs = v.as_array()?.iter().find(|p| p["name"] == "ecs")?.clone();
        Some(ecs["health"]["reason"].as_str().unwrap_or("").to_string())
    };
    wait_until("both providers ready", Duration::from_secs(60), async || {
        http().get(format!("{base}/health/readiness")).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;

    let throttled_before =
        machinist::metrics::metrics().ecs_throttled.with_label_values(&["ListServices"]).get();
    emu.inject(&Fault::throttling(&account, -1)).await.expect("inject");
    let began = Instant::now();
    let (mut k8s_reads, mut k8s_reads_failed, mut readiness_checks, mut readiness_failed) = (0, 0, 0, 0);
    while began.elapsed() < throttled_for {
        let r = http().get(format!("{base}/k8s/controllers/{ns}")).send().await;
        k8s_reads += 1;
        k8s_reads_failed += usize::from(!r.is_ok_and(|r| r.status() == 200));
        let r = http().get(format!("{base}/health/readiness")).send().await;
        readiness_checks += 1;
        readiness_failed += usize::from(!r.is_ok_and(|r| r.status() == 200));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ecs_reason().await.is_some_and(|r| r.contains("throttled")), "the fault took effect");
    emu.clear_faults(&account).await.expect("clear");
    let cleared = Instant::now();
    wait_until("ECS recovers", Duration::from_secs(60), async || {
        ecs_reason().await.is_some_and(|r| r.is_empty())
    })
    .await;
    let ecs_recovered_after = cleared.elapsed();
    let throttled_calls =
        machinist::metrics::metrics().ecs_throttled.with_label_values(&["ListServices"]).get()
            - throttled_before;
    stop.cancel();
    EcsThrottled {
        throttled_for,
        k8s_reads,
        k8s_reads_failed,
        readiness_checks,
        readiness_failed,
        ecs_recovered_after,
        interval,
        throttled_calls,
    }
}
