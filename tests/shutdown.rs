//! Graceful shutdown of a real `machinist run` process (issue 7): SIGTERM during a burst of REST reads from
//! keep-alive and one-connection-per-request clients. Readiness answers 503 `shutting-down` at once while the
//! replica keeps serving for the shutdown delay; every request sent meanwhile gets a complete answer; slow
//! writes in flight when the listener closes finish; the Lease is released at once (a second replica leads
//! within seconds, not after the 15 s expiry); the process exits 0.
//!
//! Timing: the delay is 6 s. Burst clients stop starting requests 2 s before it ends, so no request races the
//! listener's close. Every time limit is an "eventually" with seconds of slack; the only ordering asserted is
//! one the server guarantees (the listener cannot close before signal + delay).

mod common;
use common::operator;
use common::replica;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::eventually;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use machinist_sandbox::Gvr;
use operator::workload;
use replica::Replica;
use serde_json::{Value, json};

/// `--shutdown-delay` of the replica under test.
const DELAY: Duration = Duration::from_secs(6);
/// `DRAIN_DEADLINE` of `src/app.rs`: what in-flight requests get after the delay.
const DRAIN: Duration = Duration::from_secs(10);
/// Sandbox latency of each `/scale` call; a REST scale makes two (GET, PUT), so a slow write takes 8 s and
/// one started during the delay is still running when the listener closes.
const SCALE_LATENCY_MS: u64 = 4000;

/// `machinist run` with a shutdown delay, writes allowed to wait for the slow sandbox, and no read limits
/// (the burst is far above the default per-IP read limit; this test is about shutdown, not 429s).
fn replica(kubeconfig: &std::path::Path, ns: &str, identity: &str, delay: Duration) -> Replica {
    let delay = delay.as_secs().to_string();
    Replica::start(
        kubeconfig,
        ns,
        identity,
        &[
            ("PLT_SHUTDOWN_DELAY_SECS", &delay),
            ("PLT_WRITE_TIMEOUT_SECS", "30"),
            ("PLT_RATE_LIMIT_READS_IP", "0"),
            ("PLT_RATE_LIMIT_READS_GLOBAL", "0"),
            ("PLT_RATE_LIMIT_READS_IDENTITY", "0"),
            ("RUST_LOG", "warn,machinist::serve=info"),
        ],
    )
}

/// One request of the burst, as its client saw it.
#[derive(Debug)]
struct Outcome {
    started: Instant,
    /// `Err` for anything but a 200 with a complete JSON body: a reset, a refused connection, a cut body.
    result: Result<(), String>,
    /// The response said `Connection: close`.
    closing: bool,
}

/// GETs `paths` in turn until `stop` is set and reached. `keep_alive`: one pooled connection reused;
/// otherwise a new connection per request.
async fn burst_client(
    base: String,
    paths: Vec<String>,
    keep_alive: bool,
    stop: Arc<OnceLock<Instant>>,
) -> Vec<Outcome> {
    let builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
    let builder =
        if keep_alive { builder.pool_max_idle_per_host(1) } else { builder.pool_max_idle_per_host(0) };
    let http = builder.build().expect("reqwest client");
    let mut outcomes = Vec::new();
    for path in paths.iter().cycle() {
        if stop.get().is_some_and(|at| Instant::now() >= *at) {
            break;
        }
        let started = Instant::now();
        let (result, closing) = match http.get(format!("{base}{path}")).send().await {
            Ok(r) => {
                let status = r.status();
                let closing = r.headers().get("connection").is_some_and(|v| v == "close");
                let result = match r.bytes().await {
                    Ok(body) if status == 200 => serde_json::from_slice::<Value>(&body)
                        .map(drop)
                        .map_err(|e| format!("GET {path}: incomplete JSON body: {e}")),
                    Ok(body) => Err(format!("GET {path}: {status} {}", String::from_utf8_lossy(&body))),
                    Err(e) => Err(format!("GET {path}: the body was cut: {e:?}")),
                };
                (result, closing)
            }
            Err(e) => (Err(format!("GET {path}: {e:?}")), false),
        };
        outcomes.push(Outcome { started, result, closing });
        // A burst, but not one that starves a 2-core machine.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    outcomes
}

/// `POST /k8s/controllers/{ns}/{name}` `{"replicas": n}`: the status and when it answered.
async fn scale(
    base: String,
    ns: String,
    name: &'static str,
    replicas: u32,
) -> (Result<Value, String>, Instant) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
    let url = format!("{base}/k8s/controllers/{ns}/{name}");
    let result = async {
        let r = http
            .post(&url)
            .json(&json!({"replicas": replicas}))
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = r.status();
        let text = r.text().await.map_err(|e| format!("body cut: {e:?}"))?;
        if status != 200 {
            return Err(format!("{status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
    }
    .await;
    (result, Instant::now())
}

async fn sandbox_scale_gets(http: &reqwest::Client, sandbox: &str) -> u64 {
    let stats: Value = match http.get(format!("{sandbox}/sandbox/stats")).send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    stats["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["verb"] == "get" && r["resource"] == "deployments/scale")
        .filter_map(|r| r["count"].as_u64())
        .sum()
}

async fn lease_holder(leases: &Api<Lease>) -> Option<String> {
    let lease = leases.get_opt(machinist::provider::k8s::lease::LEASE_NAME).await.ok().flatten()?;
    lease.spec.and_then(|s| s.holder_identity).filter(|h| !h.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_burst_fails_readiness_keeps_serving_drains_and_releases_the_lease() {
    let (sb, kube) = common::start().await;
    operator::install_crd(&sb);
    let ns = common::fresh_namespace(&sb);
    for name in ["w0", "w1", "w2"] {
        sb.store
            .create(&Gvr::deployments(), &ns, workload("Deployment", name, 1, json!({"app": name})))
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sb.write_kubeconfig(&kubeconfig).unwrap();
    let http = common::http();

    let mut a = replica(&kubeconfig, &ns, "shutdown-a", DELAY);
    eventually("replica a leads", Duration::from_secs(60), async || a.leads().await == Some(true)).await;
    let controllers = format!("{}/k8s/controllers/{ns}", a.base);
    eventually("a's cache has the deployments", Duration::from_secs(60), async || {
        let Ok(r) = http.get(&controllers).send().await else { return false };
        let body: Value = r.json().await.unwrap_or(Value::Null);
        let names: Vec<&str> =
            body["controllers"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
        ["w0", "w1", "w2"].iter().all(|w| names.contains(w))
    })
    .await;
    let ready = format!("{}/health/readiness", a.base);
    eventually("a is ready", Duration::from_secs(60), async || {
        http.get(&ready).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    let b = replica(&kubeconfig, &ns, "shutdown-b", Duration::ZERO);
    eventually("replica b serves", Duration::from_secs(60), async || b.leads().await.is_some()).await;
    assert_eq!(b.leads().await, Some(false), "one leader at a time");

    // The burst: three keep-alive clients and three that open a connection per request.
    let paths: Vec<String> =
        ["/k8s/controllers/{ns}", "/k8s/machines/{ns}", "/api/v1/k8s/controllers/{ns}/w0"]
            .iter()
            .map(|p| p.replace("{ns}", &ns))
            .collect();
    let stop = Arc::new(OnceLock::new());
    let clients: Vec<_> = (0..6)
        .map(|i| tokio::spawn(burst_client(a.base.clone(), paths.clone(), i % 2 == 0, stop.clone())))
        .collect();

    // A slow write in flight at the signal: each /scale call now takes 4 s in the sandbox (nothing else does).
    let faults = format!("{}/sandbox/faults", sb.url());
    let body = json!({"latency_ms": SCALE_LATENCY_MS, "latency_resources": ["deployments/scale"]});
    let r = http.post(&faults).json(&body).send().await.expect("faults");
    assert_eq!(r.status(), 200);
    let gets_before = sandbox_scale_gets(&http, &sb.url()).await;
    let write_1 = tokio::spawn(scale(a.base.clone(), ns.clone(), "w1", 2));
    eventually("the slow write reached the sandbox", Duration::from_secs(20), async || {
        sandbox_scale_gets(&http, &sb.url()).await > gets_before
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await; // let the burst run before the signal, too

    a.sigterm();
    let sent = Instant::now();
    stop.set(sent + DELAY - Duration::from_secs(2)).unwrap();

    // Readiness: 503 `shutting-down` as soon as the signal is handled; the listener stays open.
    let not_ready_at = loop {
        match http.get(&ready).send().await {
            Ok(r) if r.status() == 200 => {}
            Ok(r) => {
                let reply = operator::reply(r).await;
                reply.problem(503, "shutting-down");
                assert!(reply.header("retry-after").is_some(), "{reply:?}");
                break Instant::now();
            }
            Err(e) => panic!(
                "readiness after SIGTERM: {e:?}: the replica stopped listening instead of failing readiness"
            ),
        }
        assert!(sent.elapsed() < DELAY, "readiness still 200 {DELAY:?} after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let live = http.get(format!("{}/health/liveness", a.base)).send().await.expect("liveness answers");
    assert_eq!(live.status(), 200, "liveness stays 200 while shutting down: the kubelet must not restart it");

    // A slow write that starts during the delay, and so is still running when the listener closes.
    let write_2 = tokio::spawn(scale(a.base.clone(), ns.clone(), "w2", 2));

    // The leader steps down at once, not after the delay: the Lease is free while a still serves...
    let leases: Api<Lease> = Api::namespaced(kube.clone(), &ns);
    eventually("a releases the Lease", Duration::from_secs(10), async || {
        lease_holder(&leases).await.as_deref() != Some("shutdown-a")
    })
    .await;
    let released = sent.elapsed();
    let r = http.get(&ready).send().await.expect("a still serves once it released the Lease");
    assert_eq!(r.status(), 503);
    // ... and b takes over within its 2 s retry period; waiting for expiry would take 13 s or more.
    eventually("b leads", Duration::from_secs(12), async || b.leads().await == Some(true)).await;
    let b_leads = sent.elapsed();

    // Every request of the burst got a complete answer; those sent after readiness failed said
    // `Connection: close`, so keep-alive clients moved to new connections while a still accepted them.
    let mut outcomes = Vec::new();
    for client in clients {
        let mine = client.await.expect("client task");
        assert!(mine.iter().any(|o| o.started >= sent), "a client sent nothing during the delay");
        outcomes.extend(mine);
    }
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.result.is_err()).collect();
    let during = outcomes.iter().filter(|o| o.started >= sent).count();
    println!(
        "burst: {} requests, {during} after SIGTERM, {} failed; lease released {released:?} and b led \
         {b_leads:?} after SIGTERM",
        outcomes.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "{} requests failed, first: {:?}", failed.len(), failed.first());
    let kept_alive = outcomes.iter().filter(|o| o.started > not_ready_at && !o.closing).count();
    assert_eq!(kept_alive, 0, "responses after readiness failed must say Connection: close");

    // Only after the delay does the listener close (the server cannot close it sooner).
    let live = format!("{}/health/liveness", a.base);
    let once = || reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
    let mut closed_at = None;
    eventually("a stops accepting", DELAY + DRAIN + Duration::from_secs(20), async || {
        match once().get(&live).send().await {
            Ok(r) => {
                assert_eq!(r.status(), 200);
                false
            }
            Err(_) => {
                closed_at = Some(Instant::now());
                true
            }
        }
    })
    .await;
    let closed = closed_at.expect("set when the listener closed").duration_since(sent);
    assert!(closed >= DELAY, "the listener closed {closed:?} after SIGTERM, before the {DELAY:?} delay");
    println!("listener closed {closed:?} after SIGTERM (seen by a probe every 50 ms)");

    // The slow writes were in flight across the close; both answer 200 and took effect.
    for (write, name) in [(write_1, "w1"), (write_2, "w2")] {
        let (result, at) = write.await.expect("write task");
        let body = result.unwrap_or_else(|e| panic!("slow write to {name} during shutdown: {e}"));
        assert_eq!(body["replicas"], 2, "{body}");
        println!("slow write to {name} answered {:?} after SIGTERM", at.duration_since(sent));
    }
    let deployments: Api<Deployment> = Api::namespaced(kube.clone(), &ns);
    for name in ["w1", "w2"] {
        let spec = deployments.get(name).await.expect("deployment").spec;
        assert_eq!(spec.replicas, Some(2), "{name}");
    }

    let status = tokio::time::timeout(DELAY + DRAIN + Duration::from_secs(30), a.child.wait())
        .await
        .expect("a exits within delay + drain + 30 s")
        .expect("wait for a");
    println!("a exited {:?} after SIGTERM: {status}", sent.elapsed());
    assert!(status.success(), "machinist run exits 0 after SIGTERM: {status}");
    sb.shutdown().await;
}
