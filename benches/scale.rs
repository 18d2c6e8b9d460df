//! Two-process benchmark, as production runs: `machinist sandbox --apiserver-only --no-demo --pods N` is the
//! cluster and `machinist run` (its own process) watches it. Measures what a user pays:
//! - reads under wrk (`-t2 -c32 --latency`) of `GET /k8s/controllers/load` and `GET /k8s/machines/load/{id}`,
//!   each next to floors served in this run by axum on tokio: hello-world, and the very same response bytes
//!   from memory; API calls the operator made while serving them (must be 0);
//! - the operator's RSS (`/proc/<pid>/status`) at two cache sizes, RSS per cached pod between them and end
//!   to end, and the time from the operator's start to its first readiness.
//!
//! `cargo bench --bench scale` (3,000 pods for reads; 10,000 and 100,000 for memory) or
//! `MACHINIST_BENCH_QUICK=1 cargo bench --bench scale` (500 pods for reads; 1,000 and 5,000 for memory; 1 s
//! loads). Needs Debian's `wrk` for the read phase (skipped with a message without it). Prints figures; it
//! asserts only that each step completes and that reads make no API call.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{bytes_server, hello_server, print_wrk, quick, wrk, wrk_available};
use machinist::reconcile::crd::ScaleRequest;
use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_machinist");

/// A child process killed when dropped, so a failed assertion leaves nothing running.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// `machinist sandbox --apiserver-only --no-demo --pods n`; returns it and the path of its kubeconfig.
async fn sandbox(dir: &Path, pods: u32) -> (Proc, PathBuf, String) {
    let kubeconfig = dir.join(format!("sandbox-{pods}.kubeconfig"));
    // A sandbox of an earlier phase may have left its file: only this one's counts.
    let _ = std::fs::remove_file(&kubeconfig);
    let child = Command::new(EXE)
        .args(["sandbox", "--apiserver-only", "--no-demo", "--test-hooks", "--pods", &pods.to_string()])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start machinist sandbox");
    let proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(600);
    let server = loop {
        if let Ok(text) = std::fs::read_to_string(&kubeconfig)
            && let Some(line) = text.lines().find(|l| l.trim_start().starts_with("server:"))
        {
            break line.trim_start().trim_start_matches("server:").trim().to_string();
        }
        assert!(Instant::now() < deadline, "the sandbox wrote no kubeconfig");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The ScaleRequest controller retries its LIST until the CRD exists: install it so those retries are not
    // counted as calls made by reads.
    let crd = serde_json::to_value(<ScaleRequest as kube::core::CustomResourceExt>::crd()).expect("crd json");
    let created = reqwest::Client::new()
        .post(format!("{server}/apis/apiextensions.k8s.io/v1/customresourcedefinitions"))
        .json(&crd)
        .send()
        .await
        .expect("POST the CRD");
    // 409: the sandbox installs it itself.
    let status = created.status();
    assert!(status.is_success() || status.as_u16() == 409, "install the ScaleRequest CRD: {status}");
    (proc, kubeconfig, server)
}

/// `machinist run` against the kubeconfig, on a free port; returns it and its REST base URL.
fn operator(kubeconfig: &Path) -> (Proc, String) {
    let port = free_port();
    let child = Command::new(EXE)
        .args(["run", "--provider", "k8s", "--leader-election", "false"])
        .args(["--http-listen", &format!("127.0.0.1:{port}")])
        // No rate limiter: the benchmark measures the read path; the limiter would answer 429 first.
        .args([
            "--rate-limit-reads-identity",
            "0",
            "--rate-limit-reads-ip",
            "0",
            "--rate-limit-reads-global",
            "0",
        ])
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start machinist run");
    (Proc(child), format!("http://127.0.0.1:{port}"))
}

/// Polls `/health/startup` until 200; the time from `t0`.
async fn until_ready(client: &reqwest::Client, base: &str, t0: Instant) -> Duration {
    let deadline = t0 + Duration::from_secs(600);
    loop {
        if client.get(format!("{base}/health/startup")).send().await.is_ok_and(|r| r.status().is_success()) {
            return t0.elapsed();
        }
        assert!(Instant::now() < deadline, "the operator never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `VmRSS` and `VmHWM` (peak) of a process, in bytes.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn json(client: &reqwest::Client, url: &str) -> Value {
    client.get(url).send().await.expect("GET").json().await.expect("json")
}

async fn machine_count(client: &reqwest::Client, base: &str) -> usize {
    json(client, &format!("{base}/k8s/machines/load")).await.as_array().map_or(0, Vec::len)
}

/// The read phase: one cluster of `pods` pods, wrk against the operator and the floors.
async fn reads(client: &reqwest::Client, dir: &Path, pods: u32, secs: u32) {
    let (_sandbox, kubeconfig, server) = sandbox(dir, pods).await;
    let (_op, base) = operator(&kubeconfig);
    let ready = until_ready(client, &base, Instant::now()).await;
    assert_eq!(machine_count(client, &base).await, pods as usize, "every pod is cached");
    println!("reads: {pods} pods in namespace load; operator ready after {ready:?}");

    let controllers_url = format!("{base}/k8s/controllers/load");
    let body = client.get(&controllers_url).send().await.expect("GET").bytes().await.expect("body");
    let n_controllers =
        serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["controllers"].as_array().map(Vec::len));
    let machines = json(client, &format!("{base}/k8s/machines/load")).await;
    let id = machines[0]["id"].as_str().expect("a machine id").to_string();
    let machine_url = format!("{base}/k8s/machines/load/{id}");
    let machine_body = client.get(&machine_url).send().await.expect("GET").bytes().await.expect("body");

    let stats = format!("{server}/sandbox/stats");
    let before = json(client, &stats).await;
    let hello = wrk(&hello_server().await, 2, 32, secs);
    print_wrk("hello-world axum", &hello, &[]);
    let list_floor = wrk(&bytes_server(body.clone()).await, 2, 32, secs);
    print_wrk(&format!("same {:.1} KB from memory (axum)", body.len() as f64 / 1e3), &list_floor, &[]);
    let list = wrk(&controllers_url, 2, 32, secs);
    print_wrk(
        &format!(
            "GET /k8s/controllers/load ({} controllers, {:.1} KB)",
            n_controllers.unwrap_or(0),
            body.len() as f64 / 1e3
        ),
        &list,
        &[("same bytes", &list_floor), ("hello-world", &hello)],
    );
    let one_floor = wrk(&bytes_server(machine_body.clone()).await, 2, 32, secs);
    print_wrk(&format!("same {:.1} KB from memory (axum)", machine_body.len() as f64 / 1e3), &one_floor, &[]);
    let one = wrk(&machine_url, 2, 32, secs);
    print_wrk("GET /k8s/machines/load/{id}", &one, &[("hello-world", &hello), ("same bytes", &one_floor)]);
    let after = json(client, &stats).await;
    let calls = after["total"].as_u64().unwrap_or(0).saturating_sub(before["total"].as_u64().unwrap_or(0));
    let reads = list.requests + one.requests;
    println!(
        "API calls to the sandbox during {reads} REST reads: {calls} (by verb before {} after {})",
        before["by_verb"], after["by_verb"]
    );
    report_goal(
        "controller list p99 vs same bytes",
        list.p99.as_secs_f64() / list_floor.p99.as_secs_f64(),
        1.25,
        false,
    );
    report_goal("controller list throughput vs same bytes", list.rps / list_floor.rps, 0.8, true);
    report_goal("machine by id throughput vs hello-world", one.rps / hello.rps, 0.6, true);
    assert_eq!(calls, 0, "reads must be served from the cache");
}

fn report_goal(what: &str, ratio: f64, goal: f64, at_least: bool) {
    let met = if at_least { ratio >= goal } else { ratio <= goal };
    println!(
        "goal: {what} {ratio:.2}x ({} {goal}x): {}",
        if at_least { ">=" } else { "<=" },
        if met { "met" } else { "NOT met" }
    );
}

/// One memory point: RSS of the operator with `pods` cached, and its time to first readiness.
async fn memory(client: &reqwest::Client, dir: &Path, pods: u32) -> (u64, Duration) {
    let (_sandbox, kubeconfig, _) = sandbox(dir, pods).await;
    // The sandbox is started and listening: the operator's clock starts at its own launch.
    let t0 = Instant::now();
    let (op, base) = operator(&kubeconfig);
    let ready = until_ready(client, &base, t0).await;
    // Let the post-sync work (status, gauges, the allocator's own trimming) settle before sampling.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (now, peak) = rss(op.0.id());
    assert_eq!(machine_count(client, &base).await, pods as usize, "every pod is cached");
    println!(
        "{pods} pods: operator RSS {:.1} MB (peak {:.1} MB), {:.0} bytes per pod end to end; first sync to ready {ready:?}",
        now as f64 / 1e6,
        peak as f64 / 1e6,
        now as f64 / f64::from(pods)
    );
    (now, ready)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = quick();
    let (read_pods, small, large, secs) =
        if quick { (500, 500, 2_000, 1) } else { (3_000, 10_000, 100_000, 10) };
    println!(
        "scale benchmark ({} mode): two processes (machinist sandbox --apiserver-only, machinist run)",
        if quick { "quick" } else { "full" }
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let client = common::client();

    if wrk_available() {
        reads(&client, dir.path(), read_pods, secs).await;
    } else {
        println!("reads: SKIPPED, `wrk` is not installed (Debian: apt-get install wrk)");
    }

    let (rss_small, _) = memory(&client, dir.path(), small).await;
    let (rss_large, ready_large) = memory(&client, dir.path(), large).await;
    let per_pod = rss_large.saturating_sub(rss_small) as f64 / f64::from(large - small);
    println!("RSS per cached pod ({small} → {large} pods): {per_pod:.0} bytes");
    if !quick {
        report_goal("RSS per cached pod (bytes, goal 2000)", per_pod / 2000.0, 1.0, false);
        report_goal("RSS at 100,000 pods (MB, goal 250)", rss_large as f64 / 250e6, 1.0, false);
        report_goal(
            "first sync to ready at 100,000 pods (s, goal 3)",
            ready_large.as_secs_f64() / 3.0,
            1.0,
            false,
        );
    }
}
