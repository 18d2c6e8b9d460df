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

/// The `/providers` entry of `k8s`.
async fn k8s_capabilities(base: &str) -> serde_json::Value {
    let providers: serde_json::Value = common::http()
        .get(format!("{base}/providers"))
        .send()
        .await
        .expect("providers")
        .json()
        .await
        .expect("json");
    providers
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "k8s"))
        .map(|p| p["capabilities"].clone())
        .unwrap_or_default()
}

async fn served_gauge(base: &str, api: &str) -> Option<i64> {
    let text = common::http().get(format!("{base}/metrics")).send().await.ok()?.text().await.ok()?;
    let line = format!("machinist_k8s_api_served{{api=\"{api}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&line)).and_then(|v| v.trim().parse().ok())
}

/// Finding 5: a cluster without the Gateway API and without the ScaleRequest CRD. `/providers` and
/// `machinist_k8s_api_served` say what is missing, the Gateway API routes answer 501
/// `capability-not-supported` (before: `[]` and 404), and CRDs installed later are picked up without a
/// restart: their objects are served and ScaleRequests reconciled.
#[tokio::test]
async fn missing_crds_are_reported_answer_501_and_are_picked_up_once_installed() {
    let sb = machinist_sandbox::Sandbox::start(quick_sandbox()).await.expect("sandbox");
    let gateway_crds: Vec<serde_json::Value> = sb
        .store
        .list(&Gvr::crds(), None)
        .into_iter()
        .filter(|c| c["spec"]["group"] == "gateway.networking.k8s.io")
        .map(|c| (*c).clone())
        .collect();
    assert!(!gateway_crds.is_empty());
    for crd in &gateway_crds {
        sb.store.delete(&Gvr::crds(), "", crd["metadata"]["name"].as_str().unwrap()).expect("remove CRD");
    }
    let ns = common::fresh_namespace(&sb);
    create_in(&sb, Gvr::deployments(), &ns, workload("Deployment", "web", 1, json!({"app": "web"})));
    let flags = ["--http-listen", "127.0.0.1:0", "--leader-election", "false", "--namespaces", &ns];
    let stop = tokio_util::sync::CancellationToken::new();
    let spawned = machinist::app::OperatorBuilder::from_flags(flags)
        .expect("flags")
        .kubeconfig_yaml(sb.kubeconfig_yaml())
        .spawn(stop.clone())
        .await
        .expect("operator starts");
    let base = format!("http://{}", spawned.addr);
    let _stop = stop.drop_guard();

    common::eventually("/providers reports the missing APIs", Duration::from_secs(20), async || {
        let c = k8s_capabilities(&base).await;
        c["gateways"] == false && c["httproutes"] == false && c["scaleRequests"] == false
    })
    .await;
    assert_eq!(served_gauge(&base, "gateways").await, Some(0));
    assert_eq!(served_gauge(&base, "scalerequests").await, Some(0));
    let http = common::http();
    let r = http.get(format!("{base}/k8s/gateway/gateways/{ns}")).send().await.expect("get");
    assert_eq!(r.status(), 501);
    let body: serde_json::Value = r.json().await.expect("problem");
    assert_eq!(body["type"], "urn:problem:machinist:capability-not-supported", "{body}");
    let route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "r"}, "spec": {"parentRefs": [{"name": "gw"}]}});
    let r = http.put(format!("{base}/k8s/gateway/httproutes/{ns}")).json(&route).send().await.expect("put");
    assert_eq!(r.status(), 501);
    let readiness = http.get(format!("{base}/health/readiness")).send().await.expect("readiness");
    assert_eq!(readiness.status(), 200, "a missing optional API does not take the replica out");

    // Installed later: picked up within the rediscovery interval.
    for crd in gateway_crds {
        sb.store.create(&Gvr::crds(), "", crd).expect("install CRD");
    }
    operator::install_crd(&sb);
    let gateway = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw"},
        "spec": {"gatewayClassName": "sandbox", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}});
    create_in(&sb, Gvr::gateways(), &ns, gateway);
    common::eventually("the Gateway API is served and watched", Duration::from_secs(30), async || {
        let r = http.get(format!("{base}/k8s/gateway/gateways/{ns}")).send().await.expect("get");
        r.status() == 200 && r.text().await.unwrap_or_default().contains("\"gw\"")
    })
    .await;
    let r = http.put(format!("{base}/k8s/gateway/httproutes/{ns}")).json(&route).send().await.expect("put");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    common::eventually("/providers reports the ScaleRequest CRD", Duration::from_secs(30), async || {
        k8s_capabilities(&base).await["scaleRequests"] == true
    })
    .await;
    assert_eq!(served_gauge(&base, "httproutes").await, Some(1));
    let sr = json!({"apiVersion": "machinist.dev/v1alpha1", "kind": "ScaleRequest", "metadata": {"name": "sr"},
        "spec": {"target": {"name": "web"}, "replicas": 2}});
    create_in(&sb, Gvr::new("machinist.dev", "v1alpha1", "scalerequests"), &ns, sr);
    common::eventually("the ScaleRequest is reconciled", Duration::from_secs(60), async || {
        sb.store.get(&Gvr::deployments(), &ns, "web").is_some_and(|d| d["spec"]["replicas"] == 2)
    })
    .await;
}

fn create_in(sb: &machinist_sandbox::Sandbox, gvr: Gvr, ns: &str, obj: serde_json::Value) {
    sb.store.create(&gvr, ns, obj).expect("create");
}
