//! Shared integration-test setup: an in-process sandbox on 127.0.0.1:0 and a kube `Client` built from the
//! kubeconfig it prints, exactly as a user's program would build one.
//!
//! Each test should work in its own namespace (`fresh_namespace`), so tests run in parallel on one sandbox
//! or on several. The submodules: `operator` (the whole operator over a sandbox, and REST helpers), `ecs`
//! (the ECS emulator), `kubectl` (the pinned kubectl), `replica` (a real `machinist run` process).
//! Every test binary loads the whole tree with `mod common;` and uses what it needs, so the rest is dead
//! code there.
#![allow(dead_code)]

pub mod ecs;
pub mod kubectl;
pub mod operator;
pub mod replica;

use std::time::{Duration, Instant};

use kube::Client;
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use machinist_sandbox::{Gvr, Sandbox, SandboxOptions};
use serde_json::json;

/// A sandbox with test hooks on, no demo data, no token.
pub async fn start() -> (Sandbox, Client) {
    start_with(SandboxOptions { test_hooks: true, ..SandboxOptions::default() }).await
}

/// A sandbox with these options, and a client with kube's default retry turned off (tests that inject
/// faults must see them).
pub async fn start_with(opts: SandboxOptions) -> (Sandbox, Client) {
    let sb = Sandbox::start(opts).await.expect("sandbox starts");
    let client = client_for(&sb, false).await;
    (sb, client)
}

/// A kube client from the sandbox's kubeconfig; `retry` picks kube-client's default retry policy.
pub async fn client_for(sb: &Sandbox, retry: bool) -> Client {
    let kc = Kubeconfig::from_yaml(&sb.kubeconfig_yaml()).expect("kubeconfig parses");
    let mut cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("config");
    cfg.default_retry = retry;
    Client::try_from(cfg).expect("client")
}

/// Creates a namespace with a random suffix and returns its name.
pub fn fresh_namespace(sb: &Sandbox) -> String {
    let name = format!("t-{:08x}", fastrand::u32(..));
    sb.store.create(&Gvr::namespaces(), "", json!({"metadata": {"name": name}})).expect("namespace");
    name
}

/// A plain HTTP client for raw requests (bad input, watches, test hooks).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder().build().expect("reqwest client")
}

/// A tool `tools/install-tools.sh` installs (`target/tools/helm/helm`, `.venv/tools/bin/yamllint`, ...),
/// installed first if missing. A file lock keeps test binaries and `.ci/run` from installing at once.
pub fn tool(rel: &str) -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join(rel);
    if !path.is_file() {
        let dir = root.join("target/tools");
        std::fs::create_dir_all(&dir).expect("create target/tools");
        let lock = std::fs::File::create(dir.join(".install.lock")).expect("create the install lock file");
        lock.lock().expect("take the install lock");
        if !path.is_file() {
            let status = std::process::Command::new(root.join("tools/install-tools.sh"))
                .current_dir(root)
                .status()
                .expect("run tools/install-tools.sh");
            assert!(status.success(), "tools/install-tools.sh failed: {status}");
        }
    }
    assert!(path.is_file(), "{rel} missing after tools/install-tools.sh");
    path
}

/// Polls `check` every 50 ms until it holds; fails the test after `within` (limits are generous: CI is a
/// loaded 2-core machine, and a wait that ends early costs nothing).
pub async fn eventually(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
