//! Leader election against the sandbox's coordination.k8s.io/v1 Leases.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::CustomResourceExt;
use machinist::provider::k8s::lease::{Elector, LeaseConfig};
use machinist::reconcile::controller::{self, Context};
use machinist::reconcile::crd::{Phase, ScaleRequest, ScaleRequestStatus};
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};

use super::bed::{bed, eventually};
use super::common;

#[tokio::test]
async fn two_electors_one_leader_and_release_hands_over_within_three_seconds() {
    let (sb, client) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let config = |id: &str| LeaseConfig {
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
        ..LeaseConfig::new(ns.clone(), id)
    };
    let (a, mut a_leads) = Elector::new(client.clone(), config("a"));
    let (stop_a, a_stopped) = oneshot::channel::<()>();
    let a_task = tokio::spawn(a.run(async move {
        let _ = a_stopped.await;
    }));
    tokio::time::timeout(Duration::from_secs(5), a_leads.wait_for(|l| *l)).await.expect("a leads").unwrap();

    let (b, mut b_leads) = Elector::new(client.clone(), config("b"));
    let (_stop_b, b_stopped) = oneshot::channel::<()>();
    tokio::spawn(b.run(async move {
        let _ = b_stopped.await;
    }));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(*a_leads.borrow() && !*b_leads.borrow(), "exactly one leader");

    let released = tokio::time::Instant::now();
    stop_a.send(()).unwrap();
    a_task.await.unwrap();
    tokio::time::timeout(Duration::from_secs(3), b_leads.wait_for(|l| *l))
        .await
        .expect("b leads within 3 s")
        .unwrap();
    assert!(released.elapsed() < Duration::from_secs(3));
}

async fn sandbox(
    sb: &machinist_sandbox::Sandbox,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut req = common::http().request(method, format!("{}{path}", sb.url()));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.expect("sandbox hook");
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.expect("json")
}

fn scale_writes(writes: &Value) -> usize {
    writes["writes"]
        .as_array()
        .map_or(0, |w| w.iter().filter(|w| w["resource"] == "deployments/scale").count())
}

async fn install_crd(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    match crds.create(&PostParams::default(), &ScaleRequest::crd()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("install the CRD: {e}"),
    }
}

fn request(name: &str, target: &str, replicas: i32) -> ScaleRequest {
    serde_json::from_value(json!({"apiVersion": "machinist.dev/v1alpha1", "kind": "ScaleRequest",
        "metadata": {"name": name}, "spec": {"target": {"name": target}, "replicas": replicas}}))
    .unwrap()
}

/// Finding 2: on leadership loss the running reconcile is aborted at once, and its write with it: a `/scale`
/// PUT that hung while this replica led never lands when the hang ends (before, the controller shut down
/// gracefully, waiting for the reconcile, and the write landed after the leader had stepped down).
#[tokio::test]
async fn losing_leadership_aborts_the_running_reconcile_and_its_write_never_lands() {
    let b = bed().await;
    install_crd(&b.client).await;
    b.deployment("web", 1).await;
    sandbox(
        &b.sb,
        reqwest::Method::POST,
        "/sandbox/faults",
        Some(json!({"hangs": [{"verbs": ["update"], "resources": ["deployments/scale"]}]})),
    )
    .await;
    sandbox(&b.sb, reqwest::Method::DELETE, "/sandbox/writes", None).await;

    let (leading, leader) = watch::channel(true);
    let ctx = Context::new(b.client.clone(), b.reconciler.clone(), "a");
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(controller::run_while_leader(ctx, vec![b.ns.clone()], leader, async move {
        let _ = stopped.await;
    }));
    let srs: Api<ScaleRequest> = Api::namespaced(b.client.clone(), &b.ns);
    srs.create(&PostParams::default(), &request("sr", "web", 3)).await.expect("create sr");
    eventually("the /scale PUT hangs in the sandbox", Duration::from_secs(15), async || {
        let stats = sandbox(&b.sb, reqwest::Method::GET, "/sandbox/stats", None).await;
        stats["requests"]
            .as_array()
            .is_some_and(|r| r.iter().any(|e| e["verb"] == "update" && e["resource"] == "deployments/scale"))
    })
    .await;

    leading.send_replace(false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The hang ends: a PUT still waiting on it would now land.
    sandbox(&b.sb, reqwest::Method::DELETE, "/sandbox/faults", None).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes = sandbox(&b.sb, reqwest::Method::GET, "/sandbox/writes", None).await;
    assert_eq!(scale_writes(&writes), 0, "the deposed leader's write landed: {writes}");
    assert_eq!(b.replicas("web").await, 1);
    let status = srs.get("sr").await.expect("get sr").status.unwrap_or_default();
    assert_eq!(status.applied_replicas, None, "no status written after the loss: {status:?}");
}

/// Finding 2: the status write carries the resourceVersion the reconcile read, so a deposed leader's late
/// write from its older copy fails with 409 instead of overwriting the new leader's status.
#[tokio::test]
async fn a_status_write_from_an_older_copy_fails_instead_of_landing() {
    let (sb, client) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    install_crd(&client).await;
    let srs: Api<ScaleRequest> = Api::namespaced(client.clone(), &ns);
    srs.create(&PostParams::default(), &request("sr", "web", 3)).await.expect("create sr");
    let old_copy = srs.get("sr").await.expect("get sr");

    // The new leader finished the request meanwhile.
    let newer = json!({"status": {"phase": "Succeeded", "observedGeneration": 1, "appliedReplicas": 3}});
    srs.patch_status("sr", &PatchParams::default(), &Patch::Merge(&newer)).await.expect("newer status");

    let late = ScaleRequestStatus {
        phase: Some(Phase::Applying),
        observed_generation: Some(1),
        applied_replicas: Some(2),
        ..Default::default()
    };
    let err = controller::write_status(&srs, &old_copy, &late).await.expect_err("a stale write fails");
    assert!(matches!(err, controller::ControllerError::Stale(_)), "{err}");
    let status = srs.get("sr").await.expect("get sr").status.unwrap_or_default();
    assert_eq!((status.phase, status.applied_replicas), (Some(Phase::Succeeded), Some(3)));
}
