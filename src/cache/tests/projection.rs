//! What a single object becomes: the Machine, Controller and Service shapes of API.md.

use serde_json::{Value, json};

use super::fixtures::*;
use crate::cache::{Gateway, HttpRoute, PodView, ReadError};

fn rich_pod() -> PodView {
    obj(json!({
        "metadata": {
            "name": "web-7d4b9c-x2k4p", "namespace": "default",
            "labels": { "app.kubernetes.io/name": "myapp", "tier": "web" },
            "ownerReferences": owner("ReplicaSet", "web-7d4b9c"),
            "managedFields": [ { "manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1",
                                 "fieldsV1": { "f:metadata": {} } } ]
        },
        "spec": { "containers": [
            { "name": "app", "image": "myapp:1.2.0",
              "resources": { "requests": { "cpu": "500m", "memory": "256Mi" },
                             "limits": { "cpu": "1", "memory": "512Mi" } } },
            { "name": "sidecar", "image": "proxy:3",
              "resources": { "requests": { "cpu": "250m", "memory": "256Mi" },
                             "limits": { "cpu": "500m", "memory": "512Mi" } } }
        ] },
        "status": {
            "phase": "Running",
            "startTime": "2025-01-01T00:00:00Z",
            "conditions": [ { "type": "PodScheduled", "status": "True" }, { "type": "Ready", "status": "True" } ],
            "containerStatuses": [
                { "name": "sidecar", "image": "proxy:3", "imageID": "docker-pullable://proxy@sha256:bbbb",
                  "ready": true, "restartCount": 2 },
                { "name": "app", "image": "myapp:1.2.0", "imageID": "docker-pullable://myapp@sha256:4f1c",
                  "ready": true, "restartCount": 0 }
            ]
        }
    }))
}

#[test]
fn pod_projects_to_the_served_machine() {
    let cache = synced(&["default"]);
    cache.apply(&replicaset("default", "web-7d4b9c", Some("web")));
    cache.apply(&rich_pod());
    let frag = cache.machine("default", "web-7d4b9c-x2k4p").expect("machine");
    let v: Value = serde_json::from_str(frag.get()).expect("json");
    assert_eq!(
        v,
        json!({
            "id": "web-7d4b9c-x2k4p", "status": "Running", "ready": true,
            "startTime": "2025-01-01T00:00:00.000Z",
            "image": "myapp:1.2.0", "imageDigest": "sha256:4f1c",
            "labels": { "app.kubernetes.io/name": "myapp", "tier": "web" },
            "controller": { "name": "web", "kind": "Deployment", "apiVersion": "apps/v1" },
            "resources": { "limits": { "cpu": "1500m", "memory": "1Gi" },
                           "requests": { "cpu": "750m", "memory": "512Mi" } },
            "containers": [
                { "name": "app", "image": "myapp:1.2.0", "imageDigest": "sha256:4f1c", "ready": true,
                  "restartCount": 0 },
                { "name": "sidecar", "image": "proxy:3", "imageDigest": "sha256:bbbb", "ready": true,
                  "restartCount": 2 }
            ]
        })
    );
}

#[test]
fn pending_pod_without_status_is_unknown_not_ready_and_has_no_digest() {
    let cache = synced(&["default"]);
    cache.apply(&obj::<PodView>(json!({
        "metadata": { "name": "bare", "namespace": "default" },
        "spec": { "containers": [ { "name": "app", "image": "myapp:1" } ] }
    })));
    let v: Value =
        serde_json::from_str(cache.machine("default", "bare").expect("machine").get()).expect("json");
    assert_eq!(v["status"], "Unknown");
    assert_eq!(v["ready"], false);
    assert_eq!(v["startTime"], Value::Null);
    assert_eq!(v["controller"], Value::Null, "a bare pod has controller null");
    assert_eq!(v["labels"], json!({}), "labels is an object, never null");
    assert_eq!(v["resources"], json!({}));
    assert!(v.get("imageDigest").is_none(), "imageDigest omitted until known: {v}");
}

/// The narrow decode reads only what it serves: nulls, missing lists, unknown and unread fields (however large
/// or odd) do not keep a pod out of the cache, and what it skips is not kept.
#[test]
fn a_sparse_pod_with_nulls_and_unread_fields_is_served() {
    let cache = synced(&["default"]);
    let text = r#"{"metadata": {"name": "sparse", "namespace": "default", "labels": null, "ownerReferences": null,
            "annotations": {"big": "\u00e9\ud83d\ude00"}, "managedFields": [{"fieldsV1": {"f:x": {"a": [1, 2.5e3, null]}}}]},
        "spec": {"containers": null, "volumes": [{"name": "v", "emptyDir": {}}], "nodeName": 7},
        "status": {"phase": "", "conditions": [{"type": "Ready"}], "containerStatuses": [{"name": "app"}],
                   "startTime": null, "unknownField": {"deep": [[[]]]}}}"#;
    let pod: PodView = serde_json::from_str(text).expect("a sparse pod decodes");
    assert_eq!(pod.metadata.annotations, None, "annotations are skipped unread");
    assert_eq!(pod.metadata.managed_fields, None, "managedFields are skipped unread");
    cache.apply(&pod);
    let v: Value =
        serde_json::from_str(cache.machine("default", "sparse").expect("machine").get()).expect("json");
    assert_eq!(v["status"], "Unknown", "an empty phase is Unknown");
    assert_eq!(v["ready"], false, "a Ready condition without a status is not ready");
    assert_eq!(v["labels"], json!({}));
    assert_eq!(v["containers"], json!([]));
    assert_eq!(v["controller"], Value::Null);
}

#[test]
fn ready_follows_the_ready_condition_and_digest_appears_with_image_id() {
    let cache = synced(&["default"]);
    let mut p = pod("default", "p", json!({}), None);
    let status = p.status.as_mut().expect("status");
    status.conditions.as_mut().expect("conditions")[0].status = "False".into();
    cache.apply(&p);
    let m = machine(&cache.machine("default", "p").expect("machine"));
    assert!(!m.ready);
    assert_eq!(m.image_digest, None);

    let status = p.status.as_mut().expect("status");
    status.conditions.as_mut().expect("conditions")[0].status = "True".into();
    status.container_statuses.as_mut().expect("statuses")[0].image_id = "sha256:abcd".into();
    cache.apply(&p);
    let m = machine(&cache.machine("default", "p").expect("machine"));
    assert!(m.ready);
    assert_eq!(m.image_digest.as_deref(), Some("sha256:abcd"));
    assert_eq!(m.containers[0].image_digest.as_deref(), Some("sha256:abcd"));
}

#[test]
fn time_format_is_utc_with_milliseconds() {
    let ts: jiff::Timestamp = "2025-03-04T05:06:07.891234+02:00".parse().expect("ts");
    assert_eq!(crate::cache::format_time(ts), "2025-03-04T03:06:07.891Z");
    let ts: jiff::Timestamp = "2025-01-01T00:00:00Z".parse().expect("ts");
    assert_eq!(crate::cache::format_time(ts), "2025-01-01T00:00:00.000Z");
}

#[test]
fn service_keeps_port_order_and_defaults_protocol() {
    let cache = synced(&["default"]);
    cache.apply(&service(
        "default",
        "web",
        json!({ "app": "web" }),
        json!([ { "name": "http", "port": 3042 }, { "port": 53, "protocol": "UDP" }, { "name": "a", "port": 1 } ]),
    ));
    let svcs = cache.services("default", &[]).expect("services");
    let v: Value = serde_json::from_str(svcs[0].get()).expect("json");
    assert_eq!(
        v,
        json!({ "name": "web", "labels": { "app": "web" }, "ports": [
            { "name": "http", "port": 3042, "protocol": "TCP" },
            { "port": 53, "protocol": "UDP" },
            { "name": "a", "port": 1, "protocol": "TCP" } ] })
    );
}

fn gateway_api_object(kind: &str, name: &str) -> kube::api::DynamicObject {
    obj(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": kind,
        "metadata": {
            "name": name, "namespace": "default", "uid": "u-1", "resourceVersion": "42",
            "labels": { "team": "a" },
            "annotations": { "kubectl.kubernetes.io/last-applied-configuration": "{...}", "keep": "me" },
            "managedFields": [ { "manager": "kubectl" } ],
            "generation": 3
        },
        "spec": { "parentRefs": [ { "name": "gw" } ] },
        "status": { "parents": [ { "conditions": [ { "type": "Accepted", "status": "True" } ] } ] }
    }))
}

#[test]
fn gateway_api_objects_are_served_trimmed_with_status() {
    let cache = synced(&["default"]);
    cache.apply(&HttpRoute(gateway_api_object("HTTPRoute", "r1")));
    cache.apply(&Gateway(gateway_api_object("Gateway", "gw")));
    let v: Value =
        serde_json::from_str(cache.httproute("default", "r1").expect("route").get()).expect("json");
    assert_eq!(
        v,
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": { "name": "r1", "namespace": "default", "labels": { "team": "a" },
                          "annotations": { "keep": "me" }, "uid": "u-1", "resourceVersion": "42" },
            "spec": { "parentRefs": [ { "name": "gw" } ] },
            "status": { "parents": [ { "conditions": [ { "type": "Accepted", "status": "True" } ] } ] }
        })
    );
    let gws = cache.gateways("default").expect("gateways");
    assert_eq!(gws.len(), 1);
    assert!(gws[0].get().contains("\"kind\":\"Gateway\""));
    assert!(matches!(cache.httproute("default", "nope"), Err(ReadError::NotFound(_))));
}

#[test]
fn controller_shape_has_defaults_and_provider_metadata() {
    let cache = synced(&["default"]);
    cache.apply(&obj::<k8s_openapi::api::apps::v1::Deployment>(json!({
        "metadata": { "name": "nospec", "namespace": "default" },
        "spec": { "selector": {}, "template": {} }
    })));
    let v: Value =
        serde_json::from_str(cache.controller("default", "nospec", None).expect("controller").get())
            .expect("json");
    assert_eq!(
        v,
        json!({ "name": "nospec", "replicas": 1, "readyReplicas": 0, "labels": {},
                "providerMetadata": { "kind": "Deployment", "apiVersion": "apps/v1" }, "machines": [] })
    );
}
