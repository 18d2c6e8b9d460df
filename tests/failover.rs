//! Failover with real processes: two `machinist run` replicas on one sandbox; SIGKILL the leader while
//! ScaleRequests are pending → the other takes over within 17 s (15 s lease + 2 s retry) and every request
//! completes exactly once.

mod common;
use common::replica;

use std::time::{Duration, Instant};

use common::eventually;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, PostParams};
use kube::core::CustomResourceExt;
use machinist::reconcile::crd::ScaleRequest;
use replica::Replica;
use serde_json::json;

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}
    }))
    .unwrap()
}

fn request(name: &str, target: &str, replicas: i32) -> ScaleRequest {
    serde_json::from_value(json!({"apiVersion": "machinist.dev/v1alpha1", "kind": "ScaleRequest",
        "metadata": {"name": name}, "spec": {"target": {"name": target}, "replicas": replicas}}))
    .unwrap()
}

async fn scaled_events(client: &Client, ns: &str, sr: &str) -> usize {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = events.list(&Default::default()).await.expect("list events");
    list.items
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(sr))
        .filter(|e| e.reason.as_deref() == Some("Scaled"))
        .count()
}

async fn applied(srs: &Api<ScaleRequest>, name: &str) -> bool {
    let status = srs.get(name).await.ok().and_then(|sr| sr.status);
    status.is_some_and(|s| s.applied_replicas == Some(3))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_hands_over_and_pending_requests_complete_exactly_once() {
    let (sb, client) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sb.write_kubeconfig(&kubeconfig).unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &ScaleRequest::crd()).await.expect("crd");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    for i in 0..4 {
        deployments.create(&PostParams::default(), &deployment(&format!("w{i}"))).await.expect("deployment");
    }

    let mut a = Replica::start(&kubeconfig, &ns, "replica-a", &[]);
    eventually("replica a leads", Duration::from_secs(30), async || a.leads().await == Some(true)).await;
    let b = Replica::start(&kubeconfig, &ns, "replica-b", &[]);
    eventually("replica b serves", Duration::from_secs(30), async || b.leads().await.is_some()).await;
    assert_eq!(b.leads().await, Some(false), "one leader at a time");

    let srs: Api<ScaleRequest> = Api::namespaced(client.clone(), &ns);
    srs.create(&PostParams::default(), &request("sr-0", "w0", 3)).await.expect("create sr-0");
    eventually("a applies sr-0", Duration::from_secs(20), async || applied(&srs, "sr-0").await).await;

    // SIGKILL: no chance to release the lease, so b must wait for it to expire.
    a.child.start_kill().expect("kill a");
    a.child.wait().await.expect("a exits");
    let killed = Instant::now();
    for i in 1..4 {
        let sr = request(&format!("sr-{i}"), &format!("w{i}"), 3);
        srs.create(&PostParams::default(), &sr).await.expect("create pending request");
    }
    eventually("b leads", Duration::from_secs(30), async || b.leads().await == Some(true)).await;
    let took = killed.elapsed();
    assert!(took <= Duration::from_secs(19), "b took over after {took:?} (target 17 s, plus scrape slack)");

    eventually("b applies the pending requests", Duration::from_secs(30), async || {
        for i in 1..4 {
            if !applied(&srs, &format!("sr-{i}")).await {
                return false;
            }
        }
        true
    })
    .await;
    // The Event follows the status patch, so wait for it; then a second count a little later shows that no
    // replica recorded a second application.
    for i in 0..4 {
        let spec = deployments.get(&format!("w{i}")).await.unwrap().spec;
        assert_eq!(spec.replicas, Some(3));
        let sr = format!("sr-{i}");
        eventually("the Scaled event", Duration::from_secs(10), async || {
            scaled_events(&client, &ns, &sr).await >= 1
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..4 {
        assert_eq!(scaled_events(&client, &ns, &format!("sr-{i}")).await, 1, "sr-{i} applied exactly once");
    }
}
