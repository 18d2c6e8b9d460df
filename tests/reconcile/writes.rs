//! REST writes through `K8sWrites`: scale via the queue, no clobbering, idempotence, server-side apply.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use machinist::cache::ReadError;
use machinist::provider::{ControllerTarget, ManifestKind, ProviderError};
use serde_json::{Value, json};

use super::bed::{bed, eventually};

fn target(ns: &str, name: &str) -> ControllerTarget {
    ControllerTarget { scope: ns.to_string(), name: name.to_string(), kind: None }
}

fn served(fragment: &machinist::provider::Fragment) -> Value {
    serde_json::from_str(fragment.get()).unwrap()
}

#[tokio::test]
async fn rest_scale_answers_the_new_count_and_reads_see_it() {
    let b = bed().await;
    b.deployment("web", 1).await;
    let answer = b.writes().scale(target(&b.ns, "web"), 3).await.expect("scale");
    assert_eq!(served(&answer)["replicas"], 3);
    assert_eq!(b.replicas("web").await, 3);
    // Read-your-writes: the very next read from the cache shows it.
    let read = b.cache.controller(&b.ns, "web", None).unwrap();
    assert_eq!(served(&read)["replicas"], 3);
}

#[tokio::test]
async fn the_same_post_three_times_is_idempotent() {
    let b = bed().await;
    b.deployment("web", 1).await;
    b.writes().scale(target(&b.ns, "web"), 4).await.expect("first");
    let rv = b.deployments().get("web").await.unwrap().metadata.resource_version;
    for _ in 0..2 {
        let answer = b.writes().scale(target(&b.ns, "web"), 4).await.expect("repeat");
        assert_eq!(served(&answer)["replicas"], 4);
    }
    assert_eq!(
        b.deployments().get("web").await.unwrap().metadata.resource_version,
        rv,
        "nothing was written"
    );
}

#[tokio::test]
async fn scaling_never_clobbers_fields_changed_by_others() {
    let b = bed().await;
    b.deployment("web", 1).await;
    // Someone else changes labels, annotations and the image; the cache may or may not have seen it yet.
    let other = json!({"metadata": {"labels": {"team": "blue"}, "annotations": {"note": "keep me"}},
        "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}});
    b.deployments().patch("web", &PatchParams::default(), &Patch::Strategic(&other)).await.unwrap();
    b.writes().scale(target(&b.ns, "web"), 5).await.expect("scale");
    let d = b.deployments().get("web").await.unwrap();
    assert_eq!(d.metadata.labels.unwrap()["team"], "blue");
    assert_eq!(d.metadata.annotations.unwrap()["note"], "keep me");
    let spec = d.spec;
    assert_eq!(spec.replicas, Some(5));
    assert_eq!(spec.template.spec.unwrap().containers[0].image.as_deref(), Some("nginx:1.27"));
}

/// The first /scale attempt uses the cached count and resourceVersion as its precondition. With the cache
/// left behind (watchers stopped) by a change from someone else, that attempt is refused (409); the write
/// reads the object, lands, and reports the count the cluster really had, not the cached one.
#[tokio::test]
async fn a_write_from_a_stale_cache_lands_and_reports_the_real_previous_count() {
    let b = bed().await;
    b.deployment("web", 1).await;
    b.stop_watchers();
    let patch = json!({"spec": {"replicas": 2}, "metadata": {"labels": {"team": "blue"}}});
    b.deployments().patch("web", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let key = machinist::provider::scale::TargetKey {
        provider: machinist::provider::scale::TargetProvider::K8s,
        scope: b.ns.clone(),
        kind: None,
        name: "web".into(),
    };
    let scaled = b
        .reconciler
        .scale_within(machinist::provider::scale::Source::Rest, Duration::from_secs(10), &key, 5)
        .await
        .expect("scale");
    assert_eq!((scaled.previous, scaled.applied), (2, 5));
    let d = b.deployments().get("web").await.unwrap();
    assert_eq!(d.spec.replicas, Some(5));
    assert_eq!(d.metadata.labels.unwrap()["team"], "blue");
    // Read-your-writes even without watchers: the write fed the confirmed object to the cache.
    assert_eq!(served(&b.cache.controller(&b.ns, "web", None).unwrap())["replicas"], 5);
}

#[tokio::test]
async fn concurrent_writers_end_at_the_last_confirmed_count_and_no_conflict_surfaces() {
    let b = bed().await;
    b.deployment("web", 1).await;
    // A racer keeps changing the Deployment (so /scale PUTs meet 409s) while three writers scale it.
    let racer = {
        let api = b.deployments();
        tokio::spawn(async move {
            for i in 0..40 {
                let patch = json!({"metadata": {"annotations": {"racer": i.to_string()}}});
                let _ = api.patch("web", &PatchParams::default(), &Patch::Merge(&patch)).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let order = std::sync::Mutex::new(Vec::new());
    let write = |n: i32| {
        let (writes, order, ns) = (b.writes(), &order, b.ns.clone());
        async move {
            let answer = writes.scale(target(&ns, "web"), n).await.expect("no error surfaces");
            order.lock().unwrap().push(served(&answer)["replicas"].as_i64().unwrap());
        }
    };
    for round in 0..3 {
        tokio::join!(write(2 + round), write(7 + round), write(4 + round));
    }
    racer.await.unwrap();
    let last = *order.lock().unwrap().last().unwrap();
    assert_eq!(i64::from(b.replicas("web").await), last, "final replicas = the last confirmed write");
    let d = b.deployments().get("web").await.unwrap();
    assert_eq!(d.metadata.annotations.unwrap()["racer"], "39", "the racer's writes all survived");
}

#[tokio::test]
async fn scaling_what_does_not_exist_is_not_found() {
    let b = bed().await;
    let err = b.writes().scale(target(&b.ns, "ghost"), 2).await.unwrap_err();
    assert!(matches!(err, ProviderError::NotFound(ref m) if m.contains("ghost")), "{err:?}");
    let err = b.writes().delete_controller(target(&b.ns, "ghost")).await.unwrap_err();
    assert!(matches!(err, ProviderError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn delete_controller_removes_it_from_cluster_and_cache() {
    let b = bed().await;
    b.deployment("web", 1).await;
    b.writes().delete_controller(target(&b.ns, "web")).await.expect("delete");
    assert!(b.deployments().get_opt("web").await.unwrap().is_none());
    assert!(matches!(b.cache.controller(&b.ns, "web", None), Err(ReadError::NotFound(_))));
}

fn deployment_manifest(image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "labels": {"app": "api"}},
        "spec": {"selector": {"matchLabels": {"app": "api"}},
                 "template": {"metadata": {"labels": {"app": "api"}},
                              "spec": {"containers": [{"name": "app", "image": image}]}}}})
}

#[tokio::test]
async fn manifest_apply_twice_changes_nothing_and_keeps_replicas_set_by_others() {
    let b = bed().await;
    let first = b
        .writes()
        .apply(b.ns.clone(), ManifestKind::Controller, deployment_manifest("nginx:1.25"))
        .await
        .unwrap();
    assert_eq!(first["metadata"]["name"], "api");
    assert!(first["metadata"].get("managedFields").is_none());
    // An autoscaler (another manager) sets the replicas.
    b.writes().scale(target(&b.ns, "api"), 6).await.expect("scale");
    // The simulated workload controller updates the status as pods start: wait until it settles, so any
    // change of resourceVersion after this point is the apply's.
    let rv = b.settled_resource_version("api").await;
    let before = serde_json::to_value(b.deployments().get("api").await.unwrap()).unwrap();
    let again = b
        .writes()
        .apply(b.ns.clone(), ManifestKind::Controller, deployment_manifest("nginx:1.25"))
        .await
        .unwrap();
    let after = serde_json::to_value(b.deployments().get("api").await.unwrap()).unwrap();
    assert_eq!(
        again["metadata"]["resourceVersion"].as_str(),
        rv.as_deref(),
        "the same apply changes nothing:\nBEFORE {before:#}\nAFTER {after:#}"
    );
    assert_eq!(b.replicas("api").await, 6, "replicas omitted from the manifest stay as others set them");
    // A real change is applied, and the replicas still stay.
    b.writes()
        .apply(b.ns.clone(), ManifestKind::Controller, deployment_manifest("nginx:1.27"))
        .await
        .unwrap();
    assert_eq!(b.replicas("api").await, 6);
    let cache = b.cache.clone();
    let ns = b.ns.clone();
    eventually("the cache serves the applied deployment", Duration::from_secs(5), move || {
        let (cache, ns) = (cache.clone(), ns.clone());
        async move { cache.controller(&ns, "api", None).is_ok() }
    })
    .await;
}

#[tokio::test]
async fn manifests_for_the_wrong_route_or_namespace_are_rejected_and_change_nothing() {
    let b = bed().await;
    let mut other_ns = deployment_manifest("nginx:1.25");
    other_ns["metadata"]["namespace"] = json!("elsewhere");
    let err = b.writes().apply(b.ns.clone(), ManifestKind::Controller, other_ns).await.unwrap_err();
    assert!(matches!(err, ProviderError::Invalid { .. }), "{err:?}");
    let err =
        b.writes().apply(b.ns.clone(), ManifestKind::Service, deployment_manifest("x")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Invalid { .. }), "{err:?}");
    assert!(b.deployments().get_opt("api").await.unwrap().is_none());
}

#[tokio::test]
async fn a_secret_is_applied_and_never_echoed() {
    let b = bed().await;
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
        "stringData": {"password": "hunter2"}});
    let answer = b.writes().apply(b.ns.clone(), ManifestKind::Secret, secret).await.expect("apply secret");
    assert_eq!(answer, Value::Null);
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(b.client.clone(), &b.ns);
    assert!(api.get_opt("creds").await.unwrap().is_some());
}

#[tokio::test]
async fn label_patch_merges_removes_and_validates() {
    let b = bed().await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(b.client.clone(), &b.ns);
    let pod = serde_json::from_value(json!({"metadata": {"name": "p1", "labels": {"a": "1", "b": "2"}},
        "spec": {"containers": [{"name": "app", "image": "nginx"}]}}))
    .unwrap();
    pods.create(&Default::default(), &pod).await.unwrap();
    let (cache, ns) = (b.cache.clone(), b.ns.clone());
    eventually("the cache sees the pod", Duration::from_secs(10), move || {
        let (cache, ns) = (cache.clone(), ns.clone());
        async move { cache.machine(&ns, "p1").is_ok() }
    })
    .await;
    let labels: BTreeMap<String, Option<String>> = [
        ("a".to_string(), Some("10".to_string())),
        ("b".to_string(), None),
        ("c".to_string(), Some("3".into())),
    ]
    .into();
    let machine = b.writes().patch_machine_labels(b.ns.clone(), "p1".into(), labels).await.expect("patch");
    assert_eq!(served(&machine)["labels"], json!({"a": "10", "c": "3"}));
    let bad: BTreeMap<String, Option<String>> = [("bad key".to_string(), Some("x".to_string()))].into();
    let err = b.writes().patch_machine_labels(b.ns.clone(), "p1".into(), bad).await.unwrap_err();
    assert!(matches!(err, ProviderError::Invalid { .. }));
    let live = pods.get("p1").await.unwrap().metadata.labels.unwrap();
    assert_eq!(live.get("c").map(String::as_str), Some("3"));
    assert!(!live.contains_key("bad key"));
}

#[tokio::test]
async fn httproute_put_leaves_other_managers_labels_and_annotations_byte_identical() {
    let b = bed().await;
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "httproutes");
    let routes: Api<DynamicObject> = Api::namespaced_with(b.client.clone(), &b.ns, &ar);
    let route = |path: &str| {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "r1"},
            "spec": {"parentRefs": [{"name": "gw"}],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": path}}],
                                "backendRefs": [{"name": "web", "port": 80}]}]}})
    };
    b.writes().apply(b.ns.clone(), ManifestKind::HttpRoute, route("/a")).await.expect("first put");
    // Another manager adds its own labels and annotations.
    let theirs = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "r1", "labels": {"owner": "mesh"}, "annotations": {"mesh.io/config": "{\"a\": [1, 2]}"}}});
    routes.patch("r1", &PatchParams::apply("mesh"), &Patch::Apply(&theirs)).await.expect("other manager");
    let before = routes.get("r1").await.unwrap();
    b.writes().apply(b.ns.clone(), ManifestKind::HttpRoute, route("/b")).await.expect("second put");
    let after = routes.get("r1").await.unwrap();
    assert_eq!(
        serde_json::to_string(&after.metadata.labels).unwrap(),
        serde_json::to_string(&before.metadata.labels).unwrap()
    );
    assert_eq!(
        serde_json::to_string(&after.metadata.annotations).unwrap(),
        serde_json::to_string(&before.metadata.annotations).unwrap()
    );
    assert_eq!(after.data["spec"]["rules"][0]["matches"][0]["path"]["value"], "/b");
    b.writes().delete_httproute(b.ns.clone(), "r1".into()).await.expect("delete");
    assert!(routes.get_opt("r1").await.unwrap().is_none());
    let err = b.writes().delete_httproute(b.ns.clone(), "r1".into()).await.unwrap_err();
    assert!(matches!(err, ProviderError::NotFound(_)));
}
