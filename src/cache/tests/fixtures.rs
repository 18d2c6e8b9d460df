//! Builders for the k8s objects the tests feed the cache.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::runtime::watcher::Event;
use serde_json::{Value, json};

use crate::cache::Fragment;
use crate::cache::model::{Controller, Machine};
use crate::cache::{Cache, K8sObject, PodView, kinds};

pub fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("fixture is a valid object")
}

pub fn owner(kind: &str, name: &str) -> Value {
    let api = if kind == "ReplicationController" { "v1" } else { "apps/v1" };
    json!([{ "apiVersion": api, "kind": kind, "name": name, "uid": format!("uid-{name}"), "controller": true }])
}

/// A running, ready pod with one container, optionally controlled by `(kind, name)`.
pub fn pod(ns: &str, name: &str, labels: Value, ctrl: Option<(&str, &str)>) -> PodView {
    let mut metadata = json!({ "name": name, "namespace": ns, "labels": labels });
    if let Some((kind, owner_name)) = ctrl {
        metadata["ownerReferences"] = owner(kind, owner_name);
    }
    obj(json!({
        "metadata": metadata,
        "spec": { "containers": [ { "name": "app", "image": "myapp:1.2.0" } ] },
        "status": {
            "phase": "Running",
            "conditions": [ { "type": "Ready", "status": "True" } ],
            "containerStatuses": [ { "name": "app", "image": "myapp:1.2.0", "imageID": "", "ready": true,
                                     "restartCount": 0 } ]
        }
    }))
}

pub fn deployment(ns: &str, name: &str, replicas: i32) -> Deployment {
    obj(json!({
        "metadata": { "name": name, "namespace": ns, "labels": { "app": name } },
        "spec": { "replicas": replicas, "selector": { "matchLabels": { "app": name } },
                  "template": { "spec": { "containers": [] } } },
        "status": { "readyReplicas": replicas }
    }))
}

pub fn statefulset(ns: &str, name: &str, replicas: i32) -> StatefulSet {
    obj(json!({
        "metadata": { "name": name, "namespace": ns },
        "spec": { "replicas": replicas, "selector": {}, "serviceName": name,
                  "template": { "spec": { "containers": [] } } }
    }))
}

pub fn replicaset(ns: &str, name: &str, deployment: Option<&str>) -> ReplicaSet {
    let mut metadata = json!({ "name": name, "namespace": ns });
    if let Some(d) = deployment {
        metadata["ownerReferences"] = owner("Deployment", d);
    }
    obj(json!({ "metadata": metadata, "spec": { "replicas": 2, "selector": {} } }))
}

pub fn service(ns: &str, name: &str, labels: Value, ports: Value) -> Service {
    obj(
        json!({ "metadata": { "name": name, "namespace": ns, "labels": labels }, "spec": { "ports": ports } }),
    )
}

pub fn namespace(name: &str) -> Namespace {
    obj(json!({ "metadata": { "name": name } }))
}

/// Every kind listed once, empty, plus the given namespaces: a synced all-namespaces k8s cache.
pub fn synced(namespaces: &[&str]) -> Cache {
    let cache = Cache::new_k8s(vec![]);
    for kind in kinds::ALL {
        if kind == kinds::NAMESPACES {
            list(&cache, namespaces.iter().map(|n| namespace(n)).collect());
        } else {
            init_done_empty(&cache, kind);
        }
    }
    assert!(cache.synced());
    cache
}

/// One complete (re)list of `K`: Init, InitApply per object, InitDone.
pub fn list<K: K8sObject>(cache: &Cache, objects: Vec<K>) {
    cache.watcher_event::<K>(Event::Init);
    for o in objects {
        cache.watcher_event(Event::InitApply(o));
    }
    cache.watcher_event::<K>(Event::InitDone);
}

/// An empty list of the kind named `kind`.
pub fn init_done_empty(cache: &Cache, kind: &str) {
    match kind {
        kinds::PODS => list::<PodView>(cache, vec![]),
        kinds::DEPLOYMENTS => list::<Deployment>(cache, vec![]),
        kinds::STATEFULSETS => list::<StatefulSet>(cache, vec![]),
        kinds::REPLICASETS => list::<ReplicaSet>(cache, vec![]),
        kinds::REPLICATIONCONTROLLERS => {
            list::<k8s_openapi::api::core::v1::ReplicationController>(cache, vec![])
        }
        kinds::SERVICES => list::<Service>(cache, vec![]),
        kinds::NAMESPACES => list::<Namespace>(cache, vec![]),
        kinds::GATEWAYS => list::<crate::cache::Gateway>(cache, vec![]),
        kinds::HTTPROUTES => list::<crate::cache::HttpRoute>(cache, vec![]),
        other => panic!("unknown kind {other}"),
    }
}

pub fn machine(f: &Fragment) -> Machine {
    serde_json::from_str(f.get()).expect("a served Machine")
}

pub fn controller(f: &Fragment) -> Controller {
    serde_json::from_str(f.get()).expect("a served Controller")
}

pub fn names(frags: &[Fragment]) -> Vec<String> {
    frags
        .iter()
        .map(|f| {
            serde_json::from_str::<Value>(f.get()).expect("json")["name"].as_str().unwrap_or("").to_string()
        })
        .collect()
}

pub fn machine_ids(cache: &Cache, ns: &str, labels: &[(&str, &str)]) -> Vec<String> {
    let filter: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    cache.machines(ns, &filter).expect("machines").iter().map(|f| machine(f).id).collect()
}

pub fn controller_of(cache: &Cache, ns: &str, pod: &str) -> Option<(String, String)> {
    let m = machine(&cache.machine(ns, pod).expect("machine"));
    m.controller.map(|c| (c.kind, c.name))
}
