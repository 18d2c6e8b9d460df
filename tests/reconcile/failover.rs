//! Two replicas on one sandbox, each with its own client, cache, reconciler, elector and controller. The
//! leader is killed (its tasks aborted, no lease release: what SIGKILL leaves) while requests are pending;
//! the other takes over within 17 s and every request completes exactly once.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, PostParams};
use machinist::cache::Cache;
use machinist::provider::k8s::lease::{Elector, LeaseConfig};
use machinist::provider::k8s::watch::spawn_watchers;
use machinist::provider::k8s::write::{K8sScaler, RetryBudget};
use machinist::reconcile::controller::{self, Context};
use machinist::reconcile::crd::{Phase, ScaleRequest};
use machinist::reconcile::run::{Reconciler, Scalers};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::bed::{bed, eventually};
use super::common;

struct Replica {
    leader: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Replica {
    async fn start(client: Client, ns: &str, identity: &str) -> Replica {
        let cache = Arc::new(Cache::new_k8s(vec![ns.to_string()]));
        let watchers = spawn_watchers(client.clone(), cache.clone(), &[ns.to_string()]);
        let c = cache.clone();
        eventually("the replica's cache syncs", Duration::from_secs(20), move || {
            let c = c.clone();
            async move { c.synced() }
        })
        .await;
        let scaler = K8sScaler::new(client.clone(), cache.clone(), RetryBudget::default());
        let reconciler = Reconciler::new(Scalers { k8s: Some(Arc::new(scaler)), ecs: None });
        let (elector, leader) = Elector::new(client.clone(), LeaseConfig::new(ns, identity));
        let ctx = Context::new(client.clone(), reconciler, identity);
        let never = std::future::pending::<()>;
        let mut tasks = watchers.handles;
        tasks.push(tokio::spawn(elector.run(never())));
        tasks.push(tokio::spawn(controller::run_while_leader(
            ctx,
            vec![ns.to_string()],
            leader.clone(),
            never(),
        )));
        Replica { leader, tasks }
    }

    fn kill(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn request(name: &str, target: &str, replicas: i32) -> ScaleRequest {
    serde_json::from_value(json!({"apiVersion": "machinist.dev/v1alpha1", "kind": "ScaleRequest",
        "metadata": {"name": name}, "spec": {"target": {"name": target}, "replicas": replicas}}))
    .unwrap()
}

async fn scaled_events(client: &Client, ns: &str, sr: &str) -> usize {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&Default::default())
        .await
        .expect("list events")
        .items
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(sr))
        .filter(|e| e.reason.as_deref() == Some("Scaled"))
        .count()
}

async fn applied(srs: &Api<ScaleRequest>, name: &str) -> bool {
    srs.get(name)
        .await
        .ok()
        .and_then(|sr| sr.status)
        .is_some_and(|s| s.applied_replicas.is_some() && s.phase.is_some_and(|p| p != Phase::Failed))
}

#[tokio::test]
async fn killing_the_leader_hands_over_and_pending_requests_complete_exactly_once() {
    let b = bed().await;
    let crds: Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = Api::all(b.client.clone());
    crds.create(&PostParams::default(), &<ScaleRequest as kube::core::CustomResourceExt>::crd())
        .await
        .expect("crd");
    for i in 0..4 {
        b.deployment(&format!("w{i}"), 1).await;
    }
    let a = Replica::start(common::client_for(&b.sb, false).await, &b.ns, "a").await;
    let mut a_leads = a.leader.clone();
    tokio::time::timeout(Duration::from_secs(10), a_leads.wait_for(|l| *l)).await.expect("a leads").unwrap();
    let replica_b = Replica::start(common::client_for(&b.sb, false).await, &b.ns, "b").await;

    let srs: Api<ScaleRequest> = Api::namespaced(b.client.clone(), &b.ns);
    srs.create(&PostParams::default(), &request("sr-0", "w0", 3)).await.expect("create sr-0");
    let s = srs.clone();
    eventually("a applies sr-0", Duration::from_secs(15), move || {
        let s = s.clone();
        async move { applied(&s, "sr-0").await }
    })
    .await;
    assert!(!*replica_b.leader.borrow(), "one leader at a time");

    a.kill();
    let killed = tokio::time::Instant::now();
    for i in 1..4 {
        srs.create(&PostParams::default(), &request(&format!("sr-{i}"), &format!("w{i}"), 3))
            .await
            .expect("create");
    }
    let mut b_leads = replica_b.leader.clone();
    tokio::time::timeout(Duration::from_secs(25), b_leads.wait_for(|l| *l)).await.expect("b leads").unwrap();
    let took = killed.elapsed();
    assert!(took <= Duration::from_secs(19), "took over in {took:?} (15 s lease + 2 s retry, plus slack)");

    let s = srs.clone();
    eventually("b applies the pending requests", Duration::from_secs(20), move || {
        let s = s.clone();
        async move {
            for i in 1..4 {
                if !applied(&s, &format!("sr-{i}")).await {
                    return false;
                }
            }
            true
        }
    })
    .await;
    for i in 0..4 {
        assert_eq!(b.replicas(&format!("w{i}")).await, 3);
        assert_eq!(
            scaled_events(&b.client, &b.ns, &format!("sr-{i}")).await,
            1,
            "sr-{i} applied exactly once"
        );
    }
    let sr0 = srs.get("sr-0").await.unwrap().status.unwrap();
    assert_eq!(sr0.previous_replicas, Some(1), "b did not re-apply what a had applied");
    replica_b.kill();
}
