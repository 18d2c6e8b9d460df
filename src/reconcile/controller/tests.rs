//! Unit tests of the controller: which request for a target counts as the newest.

use kube::runtime::watcher::Event;
use serde_json::json;

use super::*;
use crate::reconcile::run::Scalers;

fn request(name: &str, target: &str, created: &str, phase: Option<&str>) -> ScaleRequest {
    let mut sr = json!({"apiVersion": "machinist.dev/v1alpha1", "kind": "ScaleRequest",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "creationTimestamp": created},
        "spec": {"target": {"name": target}, "replicas": 3}});
    if let Some(phase) = phase {
        sr["status"] = json!({"phase": phase});
    }
    serde_json::from_value(sr).expect("a ScaleRequest")
}

/// A controller context whose request stores hold `requests`, as listed by the watch.
fn context_with(requests: &[&ScaleRequest]) -> Arc<Context> {
    let client = Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
    let ctx = Context::new(client, Reconciler::new(Scalers::default()), "test");
    let (store, mut writer) = kube::runtime::reflector::store::<ScaleRequest>();
    writer.apply_watcher_event(&Event::Init);
    for sr in requests {
        writer.apply_watcher_event(&Event::InitApply((*sr).clone()));
    }
    writer.apply_watcher_event(&Event::InitDone);
    ctx.requests.lock().unwrap().push(store);
    ctx
}

#[tokio::test]
async fn the_newest_request_for_the_same_target_is_the_one_that_counts() {
    let old = request("old", "web", "2026-01-01T00:00:00Z", None);
    let new = request("new", "web", "2026-01-01T00:00:05Z", None);
    let failed = request("failed", "web", "2026-01-01T00:00:09Z", Some("Failed"));
    let other = request("other", "api", "2026-01-01T00:00:09Z", None);
    let ctx = context_with(&[&old, &new, &failed, &other]);
    assert_eq!(ctx.newer_request_for(&old).map(|r| r.name_any()), Some("new".to_string()));
    assert!(ctx.newer_request_for(&new).is_none(), "a failed request wins nothing");
    assert!(ctx.newer_request_for(&other).is_none(), "another target");
}

/// Found by the hung-leader chaos test: a request created in the same second as one that had already
/// succeeded for the same target ended Superseded by it, "created later" (the name broke the tie).
#[tokio::test]
async fn within_one_second_an_applied_request_does_not_beat_one_not_applied_yet() {
    let done = request("warm", "web", "2026-01-01T00:00:00Z", Some("Succeeded"));
    let mut applying = request("zeta", "db", "2026-01-01T00:00:00Z", Some("Applying"));
    applying.status.as_mut().unwrap().applied_replicas = Some(3);
    let db = request("db", "db", "2026-01-01T00:00:00Z", None);
    let after = request("again", "web", "2026-01-01T00:00:00Z", None);
    let pending_a = request("a", "api", "2026-01-01T00:00:00Z", None);
    let pending_b = request("b", "api", "2026-01-01T00:00:00Z", None);
    let ctx = context_with(&[&done, &after, &pending_a, &pending_b, &applying, &db]);
    assert!(ctx.newer_request_for(&after).is_none(), "the finished request of the same second wins nothing");
    assert!(ctx.newer_request_for(&db).is_none(), "nor does an applied one still waiting to be ready");
    assert_eq!(ctx.newer_request_for(&pending_a).map(|r| r.name_any()), Some("b".to_string()));
    assert!(ctx.newer_request_for(&pending_b).is_none(), "one of two pending requests is applied");
}
