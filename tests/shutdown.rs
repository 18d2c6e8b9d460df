//! Graceful shutdown of the real `machinist run` binary: SIGTERM during a burst of REST reads resets no
//! request, and the leader Lease is released so the other replica takes over at once.
//!
//! Two processes share one in-process sandbox through a kubeconfig file; this file must not reach into
//! the operator's internals (it sees only what an operator of the deployment would: HTTP and metrics).

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use machinist::sandbox::SandboxOptions;

/// A port free right now on 127.0.0.1 (`--http-listen 127.0.0.1:0` would not tell us which it got).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

struct Replica {
    child: Child,
    port: u16,
}

impl Replica {
    fn start(kubeconfig: &std::path::Path, identity: &str) -> Replica {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_machinist"))
            .args(["run", "--http-listen", &format!("127.0.0.1:{port}"), "--identity", identity])
            .args(["--lease-namespace", "default", "--leader-election", "true"])
            .env("KUBECONFIG", kubeconfig)
            .env("PLT_K8S_NAMESPACES", "")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("machinist binary starts");
        Replica { child, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `Some(true)` when the replica's `/metrics` says `machinist_leader 1`, `None` when it does not answer.
async fn is_leader(http: &reqwest::Client, r: &Replica) -> Option<bool> {
    let text = http.get(r.url("/metrics")).send().await.ok()?.text().await.ok()?;
    Some(text.lines().any(|l| l.trim() == "machinist_leader 1"))
}

async fn wait_ready(http: &reqwest::Client, r: &Replica) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok =
            http.get(r.url("/health/readiness")).send().await.is_ok_and(|resp| resp.status().is_success());
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "replica on port {} never became ready", r.port);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_burst_resets_no_request_and_hands_over_the_lease() {
    let (sb, _client) =
        common::start_with(SandboxOptions { test_hooks: true, ..SandboxOptions::default() }).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, sb.kubeconfig_yaml()).expect("write kubeconfig");

    let a = Replica::start(&kubeconfig, "replica-a");
    let b = Replica::start(&kubeconfig, "replica-b");
    // A fresh connection per request: a reused idle keep-alive connection closed by the server is a
    // client-side race, not the product failing to drain; here every failure must be a real one.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    wait_ready(&http, &a).await;
    wait_ready(&http, &b).await;

    let deadline = Instant::now() + Duration::from_secs(60);
    let (leader, follower) = loop {
        match (is_leader(&http, &a).await, is_leader(&http, &b).await) {
            (Some(true), Some(false)) => break (a, b),
            (Some(false), Some(true)) => break (b, a),
            (Some(true), Some(true)) => panic!("both replicas report machinist_leader 1"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "no replica became leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // The burst: several workers reading in a loop until the listener is gone.
    let read_url = leader.url("/api/v1/k8s/controllers/default");
    let mut workers = Vec::new();
    for _ in 0..8 {
        let http = http.clone();
        let url = read_url.clone();
        workers.push(tokio::spawn(async move {
            let (mut completed, mut resets) = (0u32, Vec::new());
            let stop = Instant::now() + Duration::from_secs(30);
            while Instant::now() < stop {
                match http.get(&url).send().await {
                    Ok(resp) => {
                        let status = resp.status();
                        match resp.bytes().await {
                            Ok(_) if status.is_success() => completed += 1,
                            Ok(_) => resets.push(format!("status {status}")),
                            Err(e) => resets.push(format!("body cut off: {e:?}")),
                        }
                    }
                    // Refused connect after the listener closed: never accepted, which is fine.
                    Err(e) if e.is_connect() => break,
                    Err(e) => resets.push(format!("{e:?}")),
                }
            }
            (completed, resets)
        }));
    }

    // Let the burst get going, then SIGTERM the leader mid-burst.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let terminated_at = Instant::now();
    let status = Command::new("kill").args(["-TERM", &leader.pid().to_string()]).status().expect("kill runs");
    assert!(status.success(), "kill -TERM failed");

    // The follower takes over within 3 s: the lease was released, not left to expire (15 s).
    let mut took_over = None;
    while terminated_at.elapsed() < Duration::from_secs(10) {
        if is_leader(&http, &follower).await == Some(true) {
            took_over = Some(terminated_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut completed = 0;
    let mut failures = Vec::new();
    for w in workers {
        let (c, f) = w.await.expect("worker task");
        completed += c;
        failures.extend(f);
    }
    // Every finding at once, so one run tells the whole story.
    let mut problems = Vec::new();
    if completed == 0 {
        problems.push("the burst completed no request before SIGTERM".to_string());
    }
    if !failures.is_empty() {
        problems.push(format!(
            "{} of {} requests failed mid-flight after SIGTERM (first: {})",
            failures.len(),
            failures.len() as u32 + completed,
            failures[0]
        ));
    }
    match took_over {
        None => problems.push("the follower never became leader within 10 s of SIGTERM".to_string()),
        Some(t) if t >= Duration::from_secs(3) => {
            problems.push(format!("follower became leader only after {t:?}"))
        }
        Some(_) => {}
    }
    assert!(problems.is_empty(), "graceful shutdown failed: {problems:#?}");

    // The terminated leader exits on its own, well within the drain deadline.
    let mut leader = leader;
    let exit_deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = leader.child.try_wait().expect("try_wait") {
            assert!(status.success(), "leader exited with {status} after SIGTERM");
            break;
        }
        assert!(Instant::now() < exit_deadline, "leader still running 20 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(follower);
    sb.shutdown().await;
}
