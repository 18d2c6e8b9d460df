//! The container image, built by `tools/image.sh` from the repository's Dockerfile, runs as the Helm chart
//! deploys it: the chart is rendered with the pinned helm and the container gets exactly its Deployment's
//! args, env and securityContext (UID 65532, read-only root filesystem, no capabilities, no privilege
//! escalation, an emptyDir-like /tmp), with podman, against a sandbox this test starts on 127.0.0.1. It must
//! pass readiness, serve a read, write a scale (the cluster changes) and exit 0 within the chart's
//! terminationGracePeriodSeconds after SIGTERM.
//!
//! Two things stand in for what a cluster provides: the kubeconfig of the sandbox, mounted read-only, instead
//! of the in-cluster service account (the sandbox serves plain HTTP); and host networking (the only network
//! podman has here, ../shared/CONTAINERS.md), so `PLT_LISTEN` gets a free port on 127.0.0.1 instead of the
//! chart's 0.0.0.0:3042, which in a pod is the pod's own. The image carries the test build of the binary
//! (`tools/image.sh` with MACHINIST_BINARY): same Dockerfile, no second compile of the tree.
//!
//! Skipped, with a message, where podman is not installed; `.ci/run` installs it (and runc, mmdebstrap).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use machinist_sandbox::{Gvr, SandboxOptions};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use serde_yaml::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const IMAGE: &str = "localhost/machinist:image-test";

fn podman_installed() -> bool {
    match Command::new("podman").arg("--version").output() {
        Ok(out) => out.status.success(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => panic!("cannot run podman: {e}"),
    }
}

/// `tools/podman.sh ARGS` (podman with this machine's settings and the repository's own storage).
fn podman(args: &[&str]) -> Output {
    Command::new(Path::new(ROOT).join("tools/podman.sh"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run tools/podman.sh {args:?}: {e}"))
}

fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The chart's Deployment with default values, as `helm install` would create it.
fn chart_deployment() -> Value {
    let helm = common::tool("target/tools/helm/helm");
    let out = Command::new(helm)
        .args(["template", "machinist", "charts/machinist", "--namespace", "ops"])
        .current_dir(ROOT)
        .output()
        .expect("run helm");
    assert!(out.status.success(), "helm template: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("rendered YAML parses"))
        .find(|d| d["kind"].as_str() == Some("Deployment"))
        .expect("the chart renders a Deployment")
}

/// Removes the container when the test ends, however it ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.0]);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_as_the_chart_deploys_it() {
    if !podman_installed() {
        eprintln!(
            "SKIPPED: podman is not installed, so the image cannot be built or run here \
             (Debian: apt-get install podman runc mmdebstrap; .ci/run installs them)"
        );
        return;
    }

    let built = Instant::now();
    let out = Command::new(Path::new(ROOT).join("tools/image.sh"))
        .env("IMAGE", IMAGE)
        .env("MACHINIST_BINARY", env!("CARGO_BIN_EXE_machinist"))
        .current_dir(ROOT)
        .output()
        .expect("run tools/image.sh");
    assert!(
        out.status.success(),
        "tools/image.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("image built in {:.1} s", built.elapsed().as_secs_f64());
    // runAsNonRoot: the kubelet refuses an image whose user is root or not numeric.
    let user = podman_ok(&["image", "inspect", "--format", "{{.Config.User}}", IMAGE]);
    assert_eq!(user.trim(), "65532:65532");

    let deployment = chart_deployment();
    let pod = &deployment["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().expect("grace period"));
    let sc = &c["securityContext"];
    assert_eq!(pod["securityContext"]["runAsUser"].as_u64(), Some(65532));
    assert_eq!(pod["securityContext"]["runAsGroup"].as_u64(), Some(65532));
    assert_eq!(sc["readOnlyRootFilesystem"], Value::Bool(true));
    assert_eq!(sc["allowPrivilegeEscalation"], Value::Bool(false));
    assert_eq!(sc["capabilities"]["drop"][0].as_str(), Some("ALL"));

    let (sb, _client) = common::start_with(SandboxOptions { demo: true, ..SandboxOptions::default() }).await;
    // The release namespace, where the chart's Lease lives.
    sb.store.create(&Gvr::namespaces(), "", json!({"metadata": {"name": "ops"}})).expect("namespace ops");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, sb.kubeconfig_yaml()).expect("kubeconfig");

    let port = free_port();
    let mut env = BTreeMap::new();
    for e in c["env"].as_sequence().expect("env") {
        let name = e["name"].as_str().expect("name").to_string();
        let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("metadata.name") => "machinist-6f7d9-image".to_string(),
            Some("metadata.namespace") => "ops".to_string(),
            Some(other) => panic!("unexpected fieldRef {other}"),
            None => e["value"].as_str().unwrap_or_else(|| panic!("{name} has no value")).to_string(),
        };
        env.insert(name, value);
    }
    assert_eq!(env.get("PLT_LISTEN").map(String::as_str), Some("0.0.0.0:3042"));
    env.insert("PLT_LISTEN".into(), format!("127.0.0.1:{port}"));
    env.insert("KUBECONFIG".into(), "/etc/machinist/kubeconfig".into());

    let name = format!("machinist-image-test-{}", std::process::id());
    let mount = format!("{}:/etc/machinist/kubeconfig:ro", kubeconfig.display());
    let user = format!(
        "{}:{}",
        pod["securityContext"]["runAsUser"].as_u64().expect("uid"),
        pod["securityContext"]["runAsGroup"].as_u64().expect("gid")
    );
    let mut run: Vec<String> = ["run", "--detach", "--name", &name, "--network", "host", "--user", &user]
        .into_iter()
        .map(String::from)
        .collect();
    run.extend(["--read-only".into(), "--cap-drop".into(), "ALL".into()]);
    run.extend(["--security-opt".into(), "no-new-privileges".into()]);
    // The chart's emptyDir for /tmp (sizeLimit 16Mi).
    run.extend(["--tmpfs".into(), "/tmp:rw,size=16m,mode=1777".into(), "--volume".into(), mount]);
    for (k, v) in &env {
        run.extend(["--env".into(), format!("{k}={v}")]);
    }
    run.push(IMAGE.into());
    run.extend(c["args"].as_sequence().expect("args").iter().map(|a| a.as_str().expect("arg").to_string()));
    let run: Vec<&str> = run.iter().map(String::as_str).collect();
    let started = Instant::now();
    podman_ok(&run);
    let container = Container(name.clone());

    let http = common::http();
    let base = format!("http://127.0.0.1:{port}");
    let logs = || {
        let out = podman(&["logs", &container.0]);
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = http.get(format!("{base}/health/readiness")).send().await;
        if ready.as_ref().is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "not ready within 60 s: {ready:?}\n{}", logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("podman run -> /health/readiness 200: {:.2} s", started.elapsed().as_secs_f64());

    let read = http.get(format!("{base}/k8s/controllers/demo/frontend")).send().await.expect("read");
    assert_eq!(read.status(), 200);
    let body: Json = read.json().await.expect("JSON");
    assert_eq!(body["controller"]["name"], "frontend", "{body}");
    assert_eq!(body["controller"]["replicas"], 3, "{body}");

    let scale =
        http.post(format!("{base}/k8s/controllers/demo/frontend")).json(&json!({"replicas": 5})).send().await;
    let scale = scale.expect("scale");
    assert_eq!(scale.status(), 200, "{}", scale.text().await.unwrap_or_default());
    let replicas =
        sb.store.get(&Gvr::deployments(), "demo", "frontend").expect("frontend")["spec"]["replicas"].clone();
    assert_eq!(replicas, 5, "the Deployment in the cluster was scaled");

    let text = logs();
    assert!(text.contains("machinist starting"), "the startup line:\n{text}");
    assert!(!text.contains('\u{1b}'), "no escape codes in a pod's log:\n{text}");

    let stopping = Instant::now();
    podman_ok(&["kill", "--signal", "TERM", &container.0]);
    let exit = loop {
        let state =
            podman_ok(&["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", &container.0]);
        if let Some(code) = state.trim().strip_prefix("exited ") {
            break code.to_string();
        }
        assert!(stopping.elapsed() < grace, "still running {grace:?} after SIGTERM: {state}\n{}", logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = stopping.elapsed();
    assert_eq!(exit, "0", "exit code after SIGTERM\n{}", logs());
    assert!(took < grace, "exited after {took:?}, beyond terminationGracePeriodSeconds {grace:?}");
    eprintln!("SIGTERM -> exit 0: {:.2} s (grace period {} s)", took.as_secs_f64(), grace.as_secs());
    drop(container);
    sb.shutdown().await;
}
