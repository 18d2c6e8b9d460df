//! RBAC is sufficient: every (verb, group, resource[/subresource]) the operator sends to the API server is
//! granted by `config/base/clusterrole.yaml` or the leader-election Role.
//!
//! Partial: it covers startup, the cache's list/watch, REST reads and leader election (acquire and
//! release). The write routes, ScaleRequests and the reverse check (every grant is used) are not here yet.
//! The test itself sends nothing to the sandbox's API while stats record (seeding goes through the store),
//! so every recorded request is the operator's.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use clap::Parser;
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use machinist::app::{Overrides, run_operator};
use machinist::config::{Cli, Command};
use machinist::sandbox::Gvr;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

type Triple = (String, String, String);

/// (verb, group, resource) granted by the rules of every Role/ClusterRole document in `file`.
fn granted(file: &str) -> BTreeSet<Triple> {
    let text = std::fs::read_to_string(format!("{ROOT}/{file}")).expect("rbac file");
    let mut out = BTreeSet::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc).expect("yaml document");
        for rule in v.get("rules").and_then(Value::as_array).into_iter().flatten() {
            let list = |k: &str| -> Vec<String> {
                rule.get(k)
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default()
            };
            for g in list("apiGroups") {
                for r in list("resources") {
                    for verb in list("verbs") {
                        out.insert((verb, g.clone(), r.clone()));
                    }
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_the_operator_makes_is_granted() {
    let (sb, _client) = common::start().await;
    for ns in ["machinist", "apps"] {
        sb.store.create(&Gvr::namespaces(), "", json!({"metadata": {"name": ns}})).expect("namespace");
    }
    let crd: Value = serde_yaml::from_str(&machinist::reconcile::crd::crd_yaml()).expect("crd yaml");
    sb.store.create(&Gvr::crds(), "", crd).expect("install the ScaleRequest CRD");

    let http = common::http();
    let stats_url = format!("{}/sandbox/stats", sb.url());
    http.delete(&stats_url).send().await.expect("reset stats").error_for_status().expect("reset ok");

    let kc = Kubeconfig::from_yaml(&sb.kubeconfig_yaml()).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("config");
    let cli = Cli::parse_from([
        "machinist",
        "run",
        "--http-listen",
        "127.0.0.1:0",
        "--identity",
        "rbac-test",
        "--lease-namespace",
        "machinist",
        "--shutdown-delay",
        "0",
    ]);
    let Command::Run(args) = cli.command else { panic!("`run` parses to Command::Run") };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let shutdown = CancellationToken::new();
    let overrides = Overrides { kube_config: Some(config), ecs: None, ready: Some(tx) };
    let operator = tokio::spawn(run_operator(args, overrides, shutdown.clone()));
    let addr = tokio::time::timeout(Duration::from_secs(60), rx).await.expect("listens").expect("address");

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = http.get(format!("http://{addr}/health/readiness")).send().await;
        let metrics = http.get(format!("http://{addr}/metrics")).send().await;
        let leader = match metrics {
            Ok(r) => r.text().await.unwrap_or_default().lines().any(|l| l.trim() == "machinist_leader 1"),
            Err(_) => false,
        };
        if leader && ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(Instant::now() < deadline, "operator never became ready and leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for path in ["/api/v1/k8s/controllers/apps", "/api/v1/k8s/services/apps", "/api/v1/k8s/controllers/_all"]
    {
        let _ = http.get(format!("http://{addr}{path}")).send().await.expect("REST read");
    }
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), operator).await.expect("operator stops");

    let stats: Value = http.get(&stats_url).send().await.expect("stats").json().await.expect("stats json");
    let used: BTreeSet<Triple> = stats["requests"]
        .as_array()
        .expect("requests array")
        .iter()
        .filter(|r| r["resource"] != "nonresource")
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (s("verb"), s("group"), s("resource"))
        })
        .collect();
    assert!(
        used.iter().any(|(_, g, r)| g == "coordination.k8s.io" && r == "leases"),
        "no lease traffic: {used:?}"
    );
    assert!(used.iter().any(|(v, _, _)| v == "watch"), "no watch traffic: {used:?}");

    let mut grants = granted("config/base/clusterrole.yaml");
    grants.extend(granted("config/base/leader-election.yaml"));
    let missing: Vec<_> = used.difference(&grants).collect();
    assert!(
        missing.is_empty(),
        "the operator made requests its RBAC does not grant: {missing:?}\ngranted: {grants:?}"
    );
    sb.shutdown().await;
}
