//! The ScaleRequest CRD: the checked-in yaml matches the Rust type, and an API server holding it rejects
//! invalid requests at apply time.

mod common;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, CustomResourceExt, GroupVersionKind};
use machinist::reconcile::crd::ScaleRequest;
use serde_json::{Value, json};

#[test]
fn checked_in_crd_equals_generated() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/scalerequest.yaml");
    let on_disk = std::fs::read_to_string(path).expect("crds/scalerequest.yaml exists");
    let generated = machinist::reconcile::crd_yaml();
    assert!(
        on_disk == generated,
        "crds/scalerequest.yaml is stale: regenerate it with `machinist crd > crds/scalerequest.yaml`"
    );
}

#[test]
fn examples_are_valid_scalerequests() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("examples/") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let sr: ScaleRequest =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(sr.spec.replicas >= 0);
        seen += 1;
    }
    assert!(seen >= 3, "examples/ holds a k8s, a kind-pinned and an ecs request");
}

async fn scalerequests() -> (machinist_sandbox::Sandbox, Api<DynamicObject>) {
    let (sb, client) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &ScaleRequest::crd()).await.expect("the CRD is accepted");
    let gvk = GroupVersionKind::gvk("machinist.dev", "v1alpha1", "ScaleRequest");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "scalerequests");
    (sb, Api::namespaced_with(client, &ns, &ar))
}

fn request(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "machinist.dev/v1alpha1", "kind": "ScaleRequest",
        "metadata": {"name": name}, "spec": spec}))
    .unwrap()
}

#[tokio::test]
async fn the_api_server_rejects_invalid_requests_with_422() {
    let (_sb, api) = scalerequests().await;
    let bad = [
        ("negative", json!({"target": {"name": "web"}, "replicas": -1})),
        ("huge", json!({"target": {"name": "web"}, "replicas": 1_000_000})),
        ("fractional", json!({"target": {"name": "web"}, "replicas": 1.5})),
        ("string", json!({"target": {"name": "web"}, "replicas": "3"})),
        ("bad-name", json!({"target": {"name": "Web_1"}, "replicas": 1})),
        ("unknown-kind", json!({"target": {"name": "web", "kind": "CronJob"}, "replicas": 1})),
        ("unknown-provider", json!({"target": {"name": "web", "provider": "gke"}, "replicas": 1})),
        ("no-target", json!({"replicas": 1})),
        ("negative-ttl", json!({"target": {"name": "web"}, "replicas": 1, "ttlSecondsAfterFinished": -1})),
    ];
    for (name, spec) in bad {
        match api.create(&PostParams::default(), &request(name, spec)).await {
            Err(kube::Error::Api(status)) => assert_eq!(status.code, 422, "{name}: {}", status.message),
            other => panic!("{name}: expected 422, got {other:?}"),
        }
        assert!(api.get_opt(name).await.unwrap().is_none(), "{name}: nothing was stored");
    }
    let good = request("good", json!({"target": {"name": "web", "kind": "StatefulSet"}, "replicas": 0}));
    api.create(&PostParams::default(), &good).await.expect("a valid request is accepted");
}
