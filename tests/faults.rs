//! When Kubernetes misbehaves rather than fails (issue 12): hung calls, hung lease renewals, late watch
//! events. Each test drives the whole operator (or one part of it) over the sandbox with a targeted fault
//! and asserts what a user sees: REST answers, the objects in the cluster, the sandbox's record of writes.

mod common;
use common::operator;

use std::time::{Duration, Instant};

use machinist_sandbox::Gvr;
use operator::{all_ready, create, quick_sandbox, workload};
use serde_json::json;

/// Finding 1: a `/scale` PUT that hangs holds its target only until `--write-timeout`; the next write to
/// that target then goes through at once (before, every later write queued behind the hung one: 504).
#[tokio::test]
async fn a_hung_scale_put_frees_its_target_for_the_next_write() {
    let op = operator::start(quick_sandbox(), &["--write-timeout", "2"]).await;
    let ns = common::fresh_namespace(&op.sandbox);
    create(&op, Gvr::deployments(), &ns, workload("Deployment", "web", 1, json!({"app": "web"})));
    op.wait_for(30, &format!("/k8s/machines/{ns}"), all_ready(1)).await;

    // The next PUT of /scale hangs for an hour (longer than any timeout); later ones are served.
    op.sandbox_faults(
        json!({"hangs": [{"count": 1, "verbs": ["update"], "resources": ["deployments/scale"]}]}),
    )
    .await;
    let started = Instant::now();
    let r = op.post(&format!("/k8s/controllers/{ns}/web"), json!({"replicas": 3})).await;
    r.problem(504, "timeout");
    assert!(started.elapsed() < Duration::from_secs(5), "answered after {:?}", started.elapsed());

    let started = Instant::now();
    let r = op.post(&format!("/k8s/controllers/{ns}/web"), json!({"replicas": 4})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["replicas"], 4, "{}", r.text);
    assert!(started.elapsed() < Duration::from_millis(1500), "the next write waited {:?}", started.elapsed());
    let dep = op.sandbox.store.get(&Gvr::deployments(), &ns, "web").expect("deployment");
    assert_eq!(dep["spec"]["replicas"], 4);
}
