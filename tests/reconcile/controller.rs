//! The ScaleRequest controller against the sandbox: status, conditions, generations, not reverting,
//! missing targets, TTL.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::CustomResourceExt;
use machinist::provider::ControllerTarget;
use machinist::reconcile::controller::{self, Context};
use machinist::reconcile::crd::{Phase, ScaleRequest, ScaleRequestStatus};
use serde_json::json;
use tokio_util_free::Stop;

use super::bed::{Bed, bed, eventually};

/// A stop signal for the controller task (no extra crates: a watch channel).
mod tokio_util_free {
    pub struct Stop(pub tokio::sync::watch::Sender<bool>);
    impl Stop {
        pub fn signal(&self) -> impl std::future::Future<Output = ()> + Send + Sync + 'static {
            let mut rx = self.0.subscribe();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        }
    }
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.send_replace(true);
        }
    }
}

async fn with_controller(b: &Bed) -> Stop {
    let crds: Api<CustomResourceDefinition> = Api::all(b.client.clone());
    match crds.create(&PostParams::default(), &ScaleRequest::crd()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("install the CRD: {e}"),
    }
    let stop = Stop(tokio::sync::watch::channel(false).0);
    let ctx = Context::new(b.client.clone(), b.reconciler.clone(), "test");
    tokio::spawn(controller::run(ctx, vec![b.ns.clone()], stop.signal()));
    stop
}

fn request(name: &str, target: &str, replicas: i32) -> ScaleRequest {
    serde_json::from_value(json!({"apiVersion": "machinist.dev/v1alpha1", "kind": "ScaleRequest",
        "metadata": {"name": name}, "spec": {"target": {"name": target}, "replicas": replicas}}))
    .unwrap()
}

fn condition(s: &ScaleRequestStatus, type_: &str) -> Option<(String, String)> {
    s.conditions.iter().find(|c| c.type_ == type_).map(|c| (c.status.clone(), c.reason.clone()))
}

async fn wait_status(
    api: &Api<ScaleRequest>,
    name: &str,
    what: &str,
    within: Duration,
    check: impl Fn(&ScaleRequestStatus) -> bool,
) -> ScaleRequestStatus {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let status = api.get(name).await.expect("get sr").status.unwrap_or_default();
        if check(&status) {
            return status;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_request_is_applied_reports_ready_and_reapplies_only_on_a_new_generation() {
    let b = bed().await;
    let _stop = with_controller(&b).await;
    b.deployment("web", 1).await;
    let srs: Api<ScaleRequest> = Api::namespaced(b.client.clone(), &b.ns);
    srs.create(&PostParams::default(), &request("scale-web", "web", 3)).await.expect("create sr");

    let s = wait_status(&srs, "scale-web", "Applied", Duration::from_secs(15), |s| {
        condition(s, "Applied").is_some_and(|(st, _)| st == "True")
    })
    .await;
    assert_eq!((s.previous_replicas, s.applied_replicas, s.observed_generation), (Some(1), Some(3), Some(1)));
    assert_eq!(s.message.as_deref(), Some("scaled Deployment web from 1 to 3"));
    assert_eq!(b.replicas("web").await, 3);
    assert_eq!(condition(&s, "ConflictingAutoscaler").map(|c| c.0), Some("False".into()));

    // The workload reports the replicas ready: Ready, Succeeded.
    b.set_ready("web", 3).await;
    let s = wait_status(&srs, "scale-web", "Ready", Duration::from_secs(15), |s| {
        s.phase == Some(Phase::Succeeded)
    })
    .await;
    assert_eq!(condition(&s, "Ready"), Some(("True".into(), "ReplicasReady".into())));
    // Each transition left an Event on the request (what `kubectl describe sr` lists).
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(b.client.clone(), &b.ns);
    let reasons: Vec<String> = events
        .list(&Default::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("scale-web"))
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        reasons.contains(&"Scaled".to_string()) && reasons.contains(&"ReplicasReady".to_string()),
        "{reasons:?}"
    );

    // A later scale by someone else is not reverted.
    let target = ControllerTarget { scope: b.ns.clone(), name: "web".into(), kind: None };
    b.writes().scale(target, 5).await.expect("rest scale");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(b.replicas("web").await, 5, "the finished request did not revert a later change");

    // A new generation applies again.
    let patch = json!({"spec": {"replicas": 2}});
    srs.patch("scale-web", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("bump generation");
    let s = wait_status(&srs, "scale-web", "generation 2 applied", Duration::from_secs(15), |s| {
        s.observed_generation == Some(2) && s.applied_replicas == Some(2)
    })
    .await;
    assert_eq!(s.previous_replicas, Some(5));
    assert_eq!(b.replicas("web").await, 2);
}

#[tokio::test]
async fn a_missing_target_fails_then_succeeds_once_it_appears() {
    let b = bed().await;
    let _stop = with_controller(&b).await;
    let srs: Api<ScaleRequest> = Api::namespaced(b.client.clone(), &b.ns);
    srs.create(&PostParams::default(), &request("scale-late", "late", 2)).await.expect("create sr");
    let s = wait_status(&srs, "scale-late", "TargetNotFound", Duration::from_secs(15), |s| {
        s.phase == Some(Phase::Failed)
    })
    .await;
    assert_eq!(condition(&s, "Applied"), Some(("False".into(), "TargetNotFound".into())));

    b.deployment("late", 1).await;
    let s =
        wait_status(&srs, "scale-late", "applied after the target appeared", Duration::from_secs(40), |s| {
            s.applied_replicas == Some(2)
        })
        .await;
    assert_eq!(condition(&s, "Applied"), Some(("True".into(), "Scaled".into())));
    assert_eq!(b.replicas("late").await, 2);
}

#[tokio::test]
async fn an_hpa_on_the_target_is_reported_as_a_conflicting_autoscaler() {
    let b = bed().await;
    let _stop = with_controller(&b).await;
    b.deployment("web", 1).await;
    let hpas: Api<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler> =
        Api::namespaced(b.client.clone(), &b.ns);
    let hpa = serde_json::from_value(json!({"metadata": {"name": "web-hpa"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": 1, "maxReplicas": 5}}))
    .unwrap();
    hpas.create(&PostParams::default(), &hpa).await.expect("create hpa");
    let srs: Api<ScaleRequest> = Api::namespaced(b.client.clone(), &b.ns);
    srs.create(&PostParams::default(), &request("scale-web", "web", 2)).await.expect("create sr");
    let s =
        wait_status(&srs, "scale-web", "Applied", Duration::from_secs(15), |s| s.applied_replicas.is_some())
            .await;
    assert_eq!(
        condition(&s, "ConflictingAutoscaler"),
        Some(("True".into(), "HorizontalPodAutoscaler".into()))
    );
}

/// Requests reconciled at once share HPA lists (one per namespace in flight); each must still report the
/// autoscaler of its own target, and only that one.
#[tokio::test]
async fn a_burst_of_requests_reports_each_targets_own_autoscaler() {
    let b = bed().await;
    let _stop = with_controller(&b).await;
    let names: Vec<String> = (0..12).map(|i| format!("app-{i}")).collect();
    for name in &names {
        b.deployment(name, 1).await;
    }
    let hpas: Api<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler> =
        Api::namespaced(b.client.clone(), &b.ns);
    for target in ["app-3", "app-7"] {
        let hpa = serde_json::from_value(json!({"metadata": {"name": format!("{target}-hpa")},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                     "minReplicas": 1, "maxReplicas": 5}}))
        .unwrap();
        hpas.create(&PostParams::default(), &hpa).await.expect("create hpa");
    }
    let srs: Api<ScaleRequest> = Api::namespaced(b.client.clone(), &b.ns);
    let creates = names.iter().map(|name| {
        let srs = srs.clone();
        let sr = request(&format!("scale-{name}"), name, 2);
        async move { srs.create(&PostParams::default(), &sr).await.expect("create sr") }
    });
    futures::future::join_all(creates).await;
    for name in &names {
        let sr = format!("scale-{name}");
        let s = wait_status(&srs, &sr, "Applied", Duration::from_secs(30), |s| s.applied_replicas.is_some())
            .await;
        let expected = if name == "app-3" || name == "app-7" {
            ("True".to_string(), "HorizontalPodAutoscaler".to_string())
        } else {
            ("False".to_string(), "NoAutoscaler".to_string())
        };
        assert_eq!(condition(&s, "ConflictingAutoscaler"), Some(expected), "{sr}");
        assert_eq!(b.replicas(name).await, 2, "{name}");
    }
}

#[tokio::test]
async fn a_finished_request_is_deleted_after_its_ttl() {
    let b = bed().await;
    let _stop = with_controller(&b).await;
    b.deployment("web", 1).await;
    b.set_ready("web", 1).await;
    let srs: Api<ScaleRequest> = Api::namespaced(b.client.clone(), &b.ns);
    let mut sr = request("short-lived", "web", 1);
    sr.spec.ttl_seconds_after_finished = Some(1);
    srs.create(&PostParams::default(), &sr).await.expect("create sr");
    let api = srs.clone();
    eventually("the request is collected", Duration::from_secs(20), move || {
        let api = api.clone();
        async move { api.get_opt("short-lived").await.ok().flatten().is_none() }
    })
    .await;
}

#[tokio::test]
async fn a_new_generation_clears_the_outcome_of_the_old_one() {
    let b = bed().await;
    let _stop = with_controller(&b).await;
    b.deployment("web", 1).await;
    let srs: Api<ScaleRequest> = Api::namespaced(b.client.clone(), &b.ns);
    srs.create(&PostParams::default(), &request("retarget", "web", 2)).await.expect("create sr");
    wait_status(&srs, "retarget", "Applied", Duration::from_secs(15), |s| s.applied_replicas == Some(2))
        .await;
    let patch = json!({"spec": {"target": {"name": "ghost"}}});
    srs.patch("retarget", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("retarget");
    let s = wait_status(&srs, "retarget", "generation 2 failed", Duration::from_secs(15), |s| {
        s.observed_generation == Some(2) && s.phase == Some(Phase::Failed)
    })
    .await;
    assert_eq!((s.applied_replicas, s.previous_replicas), (None, None), "{s:?}");
    assert_eq!(condition(&s, "Applied"), Some(("False".into(), "TargetNotFound".into())));
    assert!(condition(&s, "Ready").is_none(), "no Ready of generation 1 left: {s:?}");
}

/// Finding 4 of issue 12: a request for 5 whose count is replaced in the queue by a REST write of 7 ends
/// `Superseded`, not `Succeeded` with the winner's 7 as its own, and its condition names the write that won.
#[tokio::test]
async fn a_request_beaten_by_a_newer_rest_write_ends_superseded_naming_the_winner() {
    let b = bed().await;
    let _stop = with_controller(&b).await;
    b.deployment("web", 1).await;
    // The first /scale PUT takes 2 s: the writes behind it wait in the queue meanwhile.
    let hang =
        json!({"hangs": [{"ms": 2000, "count": 1, "verbs": ["update"], "resources": ["deployments/scale"]}]});
    let r = crate::common::http().post(format!("{}/sandbox/faults", b.sb.url())).json(&hang).send().await;
    assert!(r.expect("faults").status().is_success());
    let target = ControllerTarget { scope: b.ns.clone(), name: "web".into(), kind: None };
    let first = {
        let target = target.clone();
        async { b.writes().scale(target, 3).await }
    };
    let race = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let srs: Api<ScaleRequest> = Api::namespaced(b.client.clone(), &b.ns);
        srs.create(&PostParams::default(), &request("for-5", "web", 5)).await.expect("create sr");
        // The request's 5 is queued behind the hung 3; then a REST write of 7 replaces it.
        tokio::time::sleep(Duration::from_millis(800)).await;
        b.writes().scale(target.clone(), 7).await
    };
    let (first, last) = tokio::join!(first, race);
    first.expect("the first write");
    last.expect("the REST write of 7");

    let srs: Api<ScaleRequest> = Api::namespaced(b.client.clone(), &b.ns);
    let s = wait_status(&srs, "for-5", "finished", Duration::from_secs(15), |s| {
        s.phase.is_some_and(Phase::finished)
    })
    .await;
    assert_eq!(s.phase, Some(Phase::Superseded), "{s:?}");
    assert_eq!(s.applied_replicas, None, "the winner's count is not reported as this request's: {s:?}");
    let applied = s.conditions.iter().find(|c| c.type_ == "Applied").expect("Applied condition");
    assert_eq!((applied.status.as_str(), applied.reason.as_str()), ("False", "Superseded"));
    assert!(applied.message.contains("a REST write set 7 replicas"), "{}", applied.message);
    assert_eq!(b.replicas("web").await, 7);
}

/// Finding 7 of issue 12: a request deleted while it was failing (and being retried with backoff) leaves no
/// per-request state behind.
#[tokio::test]
async fn the_retry_state_of_a_request_deleted_mid_failure_is_pruned() {
    let b = bed().await;
    let crds: Api<CustomResourceDefinition> = Api::all(b.client.clone());
    match crds.create(&PostParams::default(), &ScaleRequest::crd()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("install the CRD: {e}"),
    }
    let stop = Stop(tokio::sync::watch::channel(false).0);
    let ctx = Context::new(b.client.clone(), b.reconciler.clone(), "test");
    tokio::spawn(controller::run(ctx.clone(), vec![b.ns.clone()], stop.signal()));
    let srs: Api<ScaleRequest> = Api::namespaced(b.client.clone(), &b.ns);
    srs.create(&PostParams::default(), &request("orphan", "does-not-exist", 3)).await.expect("create sr");
    eventually("the request fails and is retried", Duration::from_secs(15), async || {
        ctx.tracked_requests() == 1
    })
    .await;
    srs.delete("orphan", &Default::default()).await.expect("delete sr");
    eventually("its retry state is pruned", Duration::from_secs(20), async || ctx.tracked_requests() == 0)
        .await;
}

/// Requests created while no controller ran (a failover) are reconciled in no particular order; the newest
/// request for a target still wins: the older ones end Superseded without being written, naming it.
#[tokio::test]
async fn the_newest_request_for_a_target_wins_whatever_the_reconcile_order() {
    let b = bed().await;
    let crds: Api<CustomResourceDefinition> = Api::all(b.client.clone());
    match crds.create(&PostParams::default(), &ScaleRequest::crd()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("install the CRD: {e}"),
    }
    let srs: Api<ScaleRequest> = Api::namespaced(b.client.clone(), &b.ns);
    for t in 0..8 {
        b.deployment(&format!("t{t}"), 1).await;
    }
    for t in 0..8 {
        srs.create(&PostParams::default(), &request(&format!("old-{t}"), &format!("t{t}"), 2)).await.unwrap();
    }
    // creationTimestamp has one-second resolution: the newer requests are created a second later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for t in 0..8 {
        srs.create(&PostParams::default(), &request(&format!("new-{t}"), &format!("t{t}"), 3)).await.unwrap();
    }
    let _stop = with_controller(&b).await;
    for t in 0..8 {
        let old = wait_status(&srs, &format!("old-{t}"), "old finished", Duration::from_secs(30), |s| {
            s.phase.is_some_and(Phase::finished)
        })
        .await;
        assert_eq!(old.phase, Some(Phase::Superseded), "old-{t}: {old:?}");
        assert_eq!(old.applied_replicas, None, "old-{t} was not written: {old:?}");
        let applied = old.conditions.iter().find(|c| c.type_ == "Applied").expect("Applied");
        assert!(applied.message.contains(&format!("new-{t}")), "{}", applied.message);
        wait_status(&srs, &format!("new-{t}"), "new applied", Duration::from_secs(30), |s| {
            s.applied_replicas == Some(3)
        })
        .await;
        assert_eq!(b.replicas(&format!("t{t}")).await, 3, "t{t} ends at the newest request's count");
    }
}
