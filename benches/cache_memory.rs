//! Memory per cached pod: heap (counting allocator) and RSS deltas between 1,000 and 10,000 ingested
//! realistic pods (managedFields, several labels, two containers with resources and statuses).
//!
//! `cargo bench --bench cache_memory` prints bytes per pod; the target is ≤ 2 KB.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::watcher::Event;
use machinist::cache::{Cache, PodView, kinds};
use serde_json::json;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn rss_bytes() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: i64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

const DEPLOYMENTS: usize = 100;

fn realistic_pod(i: usize) -> PodView {
    let d = i % DEPLOYMENTS;
    let rs = format!("app-{d}-7d4b9c8f6d");
    let name = format!("{rs}-{i:05x}q");
    serde_json::from_value(json!({
        "metadata": {
            "name": name, "namespace": "load", "uid": format!("6f1c2a3b-0000-4000-8000-{i:012}"),
            "resourceVersion": format!("{}", 100000 + i), "creationTimestamp": "2025-01-01T00:00:00Z",
            "generateName": format!("{rs}-"),
            "labels": { "app.kubernetes.io/name": format!("app-{d}"), "app.kubernetes.io/part-of": "shop",
                        "pod-template-hash": "7d4b9c8f6d", "tier": "web", "team": format!("team-{}", d % 7) },
            "annotations": { "kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z" },
            "ownerReferences": [ { "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                                   "uid": "1111-2222", "controller": true, "blockOwnerDeletion": true } ],
            "managedFields": [
                { "manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                  "time": "2025-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                  "fieldsV1": { "f:metadata": { "f:generateName": {}, "f:labels": { ".": {}, "f:app": {},
                                "f:pod-template-hash": {} }, "f:ownerReferences": { ".": {}, "k:{\"uid\":\"1111\"}": {} } },
                                "f:spec": { "f:containers": { "k:{\"name\":\"app\"}": { ".": {}, "f:image": {},
                                "f:name": {}, "f:resources": { ".": {}, "f:limits": {}, "f:requests": {} } } } } } },
                { "manager": "kubelet", "operation": "Update", "apiVersion": "v1", "subresource": "status",
                  "time": "2025-01-01T00:00:05Z", "fieldsType": "FieldsV1",
                  "fieldsV1": { "f:status": { "f:conditions": {}, "f:containerStatuses": {}, "f:hostIP": {},
                                "f:phase": {}, "f:podIP": {}, "f:podIPs": {}, "f:startTime": {} } } }
            ]
        },
        "spec": {
            "nodeName": format!("node-{}", i % 50), "serviceAccountName": "default",
            "containers": [
                { "name": "app", "image": format!("registry.example.com/shop/app-{d}:1.2.{}", d % 5),
                  "ports": [ { "containerPort": 8080, "protocol": "TCP" } ],
                  "env": [ { "name": "LOG_LEVEL", "value": "info" }, { "name": "PORT", "value": "8080" } ],
                  "resources": { "requests": { "cpu": "250m", "memory": "256Mi" },
                                 "limits": { "cpu": "1", "memory": "512Mi" } } },
                { "name": "proxy", "image": "registry.example.com/mesh/proxy:2.14.1",
                  "resources": { "requests": { "cpu": "100m", "memory": "64Mi" },
                                 "limits": { "cpu": "500m", "memory": "128Mi" } } }
            ]
        },
        "status": {
            "phase": "Running", "hostIP": "10.0.0.1", "podIP": format!("10.1.{}.{}", i / 250, i % 250),
            "startTime": "2025-01-01T00:00:01Z",
            "conditions": [ { "type": "Initialized", "status": "True" }, { "type": "Ready", "status": "True" },
                            { "type": "ContainersReady", "status": "True" }, { "type": "PodScheduled", "status": "True" } ],
            "containerStatuses": [
                { "name": "app", "image": format!("registry.example.com/shop/app-{d}:1.2.{}", d % 5),
                  "imageID": format!("registry.example.com/shop/app-{d}@sha256:{:064x}", d),
                  "ready": true, "restartCount": 0, "started": true,
                  "containerID": format!("containerd://{:064x}", i), "state": { "running": { "startedAt": "2025-01-01T00:00:02Z" } } },
                { "name": "proxy", "image": "registry.example.com/mesh/proxy:2.14.1",
                  "imageID": format!("registry.example.com/mesh/proxy@sha256:{:064x}", 7),
                  "ready": true, "restartCount": 1, "started": true,
                  "containerID": format!("containerd://{:064x}", i + 1), "state": { "running": { "startedAt": "2025-01-01T00:00:02Z" } } }
            ]
        }
    }))
    .expect("valid pod")
}

fn main() {
    let cache = Cache::new_k8s(vec![]);
    // Controllers and namespaces first, as a real start would have them.
    cache.watcher_event::<Namespace>(Event::Init);
    cache.watcher_event(Event::InitApply(
        serde_json::from_value::<Namespace>(json!({ "metadata": { "name": "load" } })).expect("ns"),
    ));
    cache.watcher_event::<Namespace>(Event::InitDone);
    for d in 0..DEPLOYMENTS {
        let dep: Deployment = serde_json::from_value(json!({
            "metadata": { "name": format!("app-{d}"), "namespace": "load" },
            "spec": { "replicas": 100, "selector": {}, "template": {} }
        }))
        .expect("deployment");
        cache.apply(&dep);
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": { "name": format!("app-{d}-7d4b9c8f6d"), "namespace": "load",
                          "ownerReferences": [ { "apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": format!("app-{d}"), "uid": "u", "controller": true } ] },
            "spec": { "selector": {} }
        }))
        .expect("rs");
        cache.apply(&rs);
    }

    let ingest = |range: std::ops::Range<usize>| {
        for i in range {
            let pod = realistic_pod(i);
            cache.watcher_event(Event::Apply(pod));
        }
    };
    cache.watcher_event::<PodView>(Event::Init);
    cache.watcher_event::<PodView>(Event::InitDone);
    // The other kinds are not part of this measurement: mark them listed so reads are served.
    for kind in kinds::ALL.into_iter().filter(|k| ![kinds::PODS, kinds::NAMESPACES].contains(k)) {
        cache.skip_kind(kind);
    }

    ingest(0..1_000);
    let (heap_1k, rss_1k) = (LIVE.load(Ordering::Relaxed), rss_bytes());
    ingest(1_000..10_000);
    let (heap_10k, rss_10k) = (LIVE.load(Ordering::Relaxed), rss_bytes());

    let sample = cache.machine("load", &format!("app-1-7d4b9c8f6d-{:05x}q", 1)).expect("a cached pod");
    let machines = cache.machines("load", &[]).expect("machines");
    assert_eq!(machines.len(), 10_000);
    let heap_per_pod = (heap_10k - heap_1k) as f64 / 9_000.0;
    let rss_per_pod = (rss_10k - rss_1k) as f64 / 9_000.0;
    println!("served machine fragment: {} bytes", sample.get().len());
    println!("heap per cached pod (1,000 → 10,000): {heap_per_pod:.0} bytes");
    println!("RSS per cached pod (1,000 → 10,000): {rss_per_pod:.0} bytes");
    println!("cache_memory: heap_bytes_per_pod={heap_per_pod:.0} rss_bytes_per_pod={rss_per_pod:.0}");

    // Read cost straight from the cache (no HTTP): 10,000 pods, 100 Deployments of 100 pods, one namespace.
    let time = |what: &str, n: u32, f: &dyn Fn() -> usize| {
        let start = std::time::Instant::now();
        let mut items = 0;
        for _ in 0..n {
            items = f();
        }
        let per = start.elapsed() / n;
        println!("read {what}: {per:?} per call ({items} items)");
    };
    let one_label = [("app.kubernetes.io/name".to_string(), "app-7".to_string())];
    let two_labels = [one_label[0].clone(), ("team".to_string(), "team-0".to_string())];
    time("machine(ns, id)", 100_000, &|| cache.machine("load", "app-1-7d4b9c8f6d-00001q").map_or(0, |_| 1));
    time("machines(ns, 1 label)", 10_000, &|| cache.machines("load", &one_label).map_or(0, |l| l.len()));
    time("machines(ns, 2 labels AND)", 10_000, &|| {
        cache.machines("load", &two_labels).map_or(0, |l| l.len())
    });
    time("machines(ns) all", 100, &|| cache.machines("load", &[]).map_or(0, |l| l.len()));
    time("controllers(ns)", 100, &|| cache.controllers("load").map_or(0, |l| l.len()));
    time("controller(ns, name)", 10_000, &|| cache.controller("load", "app-3", None).map_or(0, |_| 1));
}
