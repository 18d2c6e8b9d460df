//! The controllers against a real store: what a user of the sandbox sees after each change.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;
use crate::seed;
use crate::store::{EventType, Store};

const WAIT: Duration = Duration::from_secs(10);

fn store_with(ns: &[&str]) -> Store {
    let s = Store::new();
    for n in ns {
        s.create(&Gvr::namespaces(), "", json!({"metadata": {"name": n}})).expect("namespace");
    }
    s
}

async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn deployment(name: &str, replicas: i64, image: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]}},
        },
    })
}

fn pods_of(store: &Store, ns: &str, owner_uid: &str) -> Vec<Arc<Value>> {
    store.list(&Gvr::pods(), Some(ns)).into_iter().filter(|p| controlled_by(p, owner_uid)).collect()
}

fn running_ready(p: &Value) -> bool {
    p.pointer("/status/phase").and_then(Value::as_str) == Some("Running") && kubelet::is_ready(p)
}

fn cond<'a>(obj: &'a Value, t: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == t)
}

fn replica_sets_of(store: &Store, ns: &str, dep: &Value) -> Vec<Arc<Value>> {
    let uid = meta(dep, "uid");
    store.list(&Gvr::replicasets(), Some(ns)).into_iter().filter(|r| controlled_by(r, uid)).collect()
}

fn set_replicas(store: &Store, gvr: &Gvr, ns: &str, name: &str, n: i64) {
    store
        .update(gvr, ns, name, |o| {
            o["spec"]["replicas"] = json!(n);
            Ok(())
        })
        .expect("scale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_gets_a_hashed_replica_set_and_running_pods_with_kubelet_status() {
    let store = store_with(&["default"]);
    let _c = spawn(store.clone(), Duration::from_millis(50));
    let dep =
        store.create(&Gvr::deployments(), "default", deployment("web", 3, "nginx:1.27")).expect("create");
    let rs = wait_for("a replica set", || replica_sets_of(&store, "default", &dep).pop()).await;
    let hash = rs.pointer("/metadata/labels/pod-template-hash").and_then(Value::as_str).expect("hash label");
    assert_eq!(meta(&rs, "name"), format!("web-{hash}"));
    assert_eq!(controller_of(&rs), Some(("Deployment", "web", meta(&dep, "uid"))));
    let pods = wait_for("3 running pods", || {
        let p = pods_of(&store, "default", meta(&rs, "uid"));
        (p.len() == 3 && p.iter().all(|p| running_ready(p))).then_some(p)
    })
    .await;
    let p = &pods[0];
    let name = meta(p, "name");
    let suffix = name.strip_prefix(&format!("{}-", meta(&rs, "name"))).expect("prefix");
    assert_eq!(suffix.len(), 5, "{name}");
    assert_eq!(p.pointer("/metadata/labels/pod-template-hash").and_then(Value::as_str), Some(hash));
    assert_eq!(p["spec"]["nodeName"], NODE_NAME);
    assert!(p["status"]["podIP"].as_str().is_some_and(|ip| ip.starts_with("10.")));
    assert!(p["status"]["hostIP"].is_string() && p["status"]["startTime"].is_string());
    assert_eq!(p["status"]["qosClass"], "BestEffort");
    for t in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        let c = cond(p, t).unwrap_or_else(|| panic!("condition {t}"));
        assert_eq!(c["status"], "True");
        assert!(c["lastTransitionTime"].is_string());
    }
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(cs["name"], "app");
    assert_eq!(cs["image"], "nginx:1.27");
    assert_eq!(cs["imageID"], kubelet::image_id("nginx:1.27"));
    assert_eq!(cs["restartCount"], 0);
    assert_eq!(cs["ready"], true);
    assert!(cs["state"]["running"]["startedAt"].is_string());
    let dep = wait_for("deployment status", || {
        let d = store.get(&Gvr::deployments(), "default", "web")?;
        (status_i64(&d, "availableReplicas") == 3).then_some(d)
    })
    .await;
    assert_eq!(dep["status"]["readyReplicas"], 3);
    assert_eq!(dep["status"]["updatedReplicas"], 3);
    assert_eq!(dep["status"]["replicas"], 3);
    assert_eq!(dep["status"]["observedGeneration"], 1);
    assert_eq!(cond(&dep, "Available").map(|c| c["status"].clone()), Some(json!("True")));
    assert_eq!(cond(&dep, "Progressing").map(|c| c["reason"].clone()), Some(json!("NewReplicaSetAvailable")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_deletes_the_newest_then_the_unready_pods() {
    let store = store_with(&["default"]);
    let _c = spawn(store.clone(), Duration::from_millis(10));
    let rs = json!({"metadata": {"name": "rs"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}});
    let rs = store.create(&Gvr::replicasets(), "default", rs).expect("create");
    let uid = meta(&rs, "uid").to_string();
    let running = |n: usize| {
        let store = store.clone();
        let uid = uid.clone();
        move || {
            let p = pods_of(&store, "default", &uid);
            (p.len() == n && p.iter().all(|p| running_ready(p))).then_some(p)
        }
    };
    let first = wait_for("2 pods", running(2)).await;
    // creationTimestamp has one-second resolution: make the third pod strictly newer.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    set_replicas(&store, &Gvr::replicasets(), "default", "rs", 3);
    let three = wait_for("3 pods", running(3)).await;
    let newest: Vec<String> = three
        .iter()
        .map(|p| meta(p, "name").to_string())
        .filter(|n| !first.iter().any(|f| meta(f, "name") == n))
        .collect();
    assert_eq!(newest.len(), 1);
    set_replicas(&store, &Gvr::replicasets(), "default", "rs", 2);
    let left = wait_for("2 pods again", running(2)).await;
    assert!(left.iter().all(|p| meta(p, "name") != newest[0]), "the newest pod must go first");
    let unready = meta(&left[0], "name").to_string();
    set_pod_condition(&store, "default", &unready, false, false).expect("unready");
    set_replicas(&store, &Gvr::replicasets(), "default", "rs", 1);
    let last = wait_for("1 pod", || {
        let p = pods_of(&store, "default", &uid);
        (p.len() == 1).then_some(p)
    })
    .await;
    assert_ne!(meta(&last[0], "name"), unready, "the unready pod must go before a ready one");
    let rs = wait_for("rs status", || {
        let r = store.get(&Gvr::replicasets(), "default", "rs")?;
        (status_i64(&r, "replicas") == 1 && status_i64(&r, "readyReplicas") == 1).then_some(r)
    })
    .await;
    assert_eq!(rs["status"]["observedGeneration"], rs["metadata"]["generation"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_change_rolls_out_within_surge_and_keeps_old_replica_set_at_zero() {
    let store = store_with(&["default"]);
    let mut events = store.subscribe();
    let _c = spawn(store.clone(), Duration::from_millis(30));
    store.create(&Gvr::deployments(), "default", deployment("web", 4, "app:1")).expect("create");
    let dep = wait_for("first rollout", || {
        let d = store.get(&Gvr::deployments(), "default", "web")?;
        (status_i64(&d, "availableReplicas") == 4).then_some(d)
    })
    .await;
    let old_rs = replica_sets_of(&store, "default", &dep).pop().expect("rs");
    store
        .update(&Gvr::deployments(), "default", "web", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("app:2");
            Ok(())
        })
        .expect("update");
    let dep = wait_for("second rollout", || {
        let d = store.get(&Gvr::deployments(), "default", "web")?;
        let done = d["status"]["observedGeneration"] == 2
            && status_i64(&d, "updatedReplicas") == 4
            && status_i64(&d, "replicas") == 4
            && status_i64(&d, "availableReplicas") == 4;
        done.then_some(d)
    })
    .await;
    let rses = replica_sets_of(&store, "default", &dep);
    assert_eq!(rses.len(), 2);
    let new_rs = rses.iter().find(|r| meta(r, "name") != meta(&old_rs, "name")).expect("new rs");
    assert_eq!(spec_replicas(new_rs), 4);
    let old_now = store.get(&Gvr::replicasets(), "default", meta(&old_rs, "name")).expect("old rs kept");
    assert_eq!(spec_replicas(&old_now), 0);
    assert_eq!(
        new_rs.pointer("/metadata/annotations/deployment.kubernetes.io~1revision").and_then(Value::as_str),
        Some("2")
    );
    let pods = store.list(&Gvr::pods(), Some("default"));
    assert_eq!(pods.len(), 4);
    assert!(pods.iter().all(|p| p["spec"]["containers"][0]["image"] == "app:2"));
    // Replay the rollout: the ReplicaSets never asked for more than replicas + maxSurge (4 + 1) pods, and once
    // the first rollout was done, never fewer than replicas - maxUnavailable (4 - 1) pods were ready.
    let mut specs: std::collections::HashMap<String, i64> = Default::default();
    let mut live: std::collections::HashMap<String, bool> = Default::default();
    let (mut max_spec, mut min_ready, mut settled) = (0, usize::MAX, false);
    while let Ok(ev) = events.try_recv() {
        if ev.gvr == Gvr::replicasets() {
            specs.insert(ev.name.clone(), spec_replicas(&ev.object));
            max_spec = max_spec.max(specs.values().sum::<i64>());
            continue;
        }
        if ev.gvr != Gvr::pods() {
            continue;
        }
        match ev.event_type {
            EventType::Deleted => {
                live.remove(&ev.name);
            }
            _ => {
                live.insert(ev.name.clone(), kubelet::is_ready(&ev.object));
            }
        }
        let ready = live.values().filter(|r| **r).count();
        settled |= ready == 4;
        if settled {
            min_ready = min_ready.min(ready);
        }
    }
    assert!(max_spec <= 5, "surge exceeded: replica sets asked for {max_spec} pods");
    assert!(min_ready >= 3, "availability dropped to {min_ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_creates_ordinals_in_order_and_removes_from_the_highest() {
    let store = store_with(&["default"]);
    let mut events = store.subscribe();
    let _c = spawn(store.clone(), Duration::from_millis(20));
    let sts = json!({"metadata": {"name": "db"}, "spec": {"replicas": 3, "serviceName": "db",
        "selector": {"matchLabels": {"app": "db"}},
        "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "redis:7"}]}}}});
    store.create(&Gvr::statefulsets(), "default", sts).expect("create");
    let s = wait_for("3 ready", || {
        let s = store.get(&Gvr::statefulsets(), "default", "db")?;
        (status_i64(&s, "readyReplicas") == 3).then_some(s)
    })
    .await;
    assert_eq!(s["status"]["currentRevision"], s["status"]["updateRevision"]);
    assert!(s["status"]["updateRevision"].as_str().is_some_and(|r| r.starts_with("db-")));
    let pod = store.get(&Gvr::pods(), "default", "db-1").expect("db-1");
    assert_eq!(pod["spec"]["hostname"], "db-1");
    assert_eq!(pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"], "db-1");
    set_replicas(&store, &Gvr::statefulsets(), "default", "db", 1);
    wait_for("1 pod", || (store.list(&Gvr::pods(), Some("default")).len() == 1).then_some(())).await;
    assert!(store.get(&Gvr::pods(), "default", "db-0").is_some());
    let (mut added, mut deleted) = (vec![], vec![]);
    while let Ok(ev) = events.try_recv() {
        if ev.gvr == Gvr::pods() {
            match ev.event_type {
                EventType::Added => added.push(ev.name.clone()),
                EventType::Deleted => deleted.push(ev.name.clone()),
                EventType::Modified => {}
            }
        }
    }
    assert_eq!(added, ["db-0", "db-1", "db-2"]);
    assert_eq!(deleted, ["db-2", "db-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_can_be_made_unready_failing_and_ready_again() {
    let store = store_with(&["default"]);
    let _c = spawn(store.clone(), Duration::from_millis(10));
    store.create(&Gvr::deployments(), "default", deployment("web", 2, "app:1")).expect("create");
    let avail = |n: i64| {
        let store = store.clone();
        move || {
            let d = store.get(&Gvr::deployments(), "default", "web")?;
            (status_i64(&d, "availableReplicas") == n && status_i64(&d, "readyReplicas") == n).then_some(d)
        }
    };
    wait_for("2 available", avail(2)).await;
    let pod = meta(&store.list(&Gvr::pods(), Some("default"))[0], "name").to_string();
    set_pod_condition(&store, "default", &pod, false, false).expect("unready");
    wait_for("1 available", avail(1)).await;
    let p = store.get(&Gvr::pods(), "default", &pod).expect("pod");
    assert_eq!(cond(&p, "Ready").map(|c| c["status"].clone()), Some(json!("False")));
    assert_eq!(p["status"]["phase"], "Running");
    set_pod_condition(&store, "default", &pod, false, true).expect("failing");
    set_pod_condition(&store, "default", &pod, false, true).expect("failing again");
    let p = store.get(&Gvr::pods(), "default", &pod).expect("pod");
    assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 2);
    assert_eq!(p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"], "CrashLoopBackOff");
    assert_eq!(p["status"]["phase"], "Running", "restartPolicy Always keeps the pod Running");
    set_pod_condition(&store, "default", &pod, true, false).expect("ready");
    wait_for("2 available again", avail(2)).await;
    let p = store.get(&Gvr::pods(), "default", &pod).expect("pod");
    assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 2, "restarts are history");
    // A bare pod that must not restart fails for good.
    let bare = json!({"metadata": {"name": "once"}, "spec": {"restartPolicy": "Never",
        "containers": [{"name": "c", "image": "busybox"}]}});
    store.create(&Gvr::pods(), "default", bare).expect("bare pod");
    wait_for("bare pod running", || store.get(&Gvr::pods(), "default", "once").filter(|p| running_ready(p)))
        .await;
    set_pod_condition(&store, "default", "once", false, true).expect("fail");
    let p = store.get(&Gvr::pods(), "default", "once").expect("pod");
    assert_eq!(p["status"]["phase"], "Failed");
    let err = set_pod_condition(&store, "default", "nope", true, false).expect_err("absent pod");
    assert_eq!(err.code, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_status_follows_its_parent_gateway() {
    let store = store_with(&["demo"]);
    for crd in crate::gateway::crds() {
        store.create(&Gvr::crds(), "", crd).expect("crd");
    }
    let _c = spawn(store.clone(), Duration::from_millis(10));
    let route = json!({"metadata": {"name": "r"}, "spec": {"parentRefs": [{"name": "gw"}],
        "rules": [{"backendRefs": [{"name": "svc", "port": 3042}]}]}});
    store.create(&Gvr::httproutes(), "demo", route).expect("route");
    let parent_cond = |t: &'static str| {
        let store = store.clone();
        move || -> Option<Value> {
            let r = store.get(&Gvr::httproutes(), "demo", "r")?;
            let p = r.pointer("/status/parents/0")?;
            (p["controllerName"] == GATEWAY_CONTROLLER).then_some(())?;
            cond(&json!({"status": p}), t).cloned()
        }
    };
    let c = wait_for("route status", parent_cond("Accepted")).await;
    assert_eq!(c["status"], "False");
    assert_eq!(c["reason"], "NoMatchingParent");
    store
        .create(
            &Gvr::services(),
            "demo",
            json!({"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 3042}]}}),
        )
        .expect("svc");
    let gw = json!({"metadata": {"name": "gw"}, "spec": {"gatewayClassName": "sandbox",
        "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]}});
    store.create(&Gvr::gateways(), "demo", gw).expect("gateway");
    let c = wait_for("accepted", || parent_cond("Accepted")().filter(|c| c["status"] == "True")).await;
    assert_eq!(c["observedGeneration"], 1);
    let r = wait_for("resolved", || parent_cond("ResolvedRefs")().filter(|c| c["status"] == "True")).await;
    assert_eq!(r["reason"], "ResolvedRefs");
    let route = store.get(&Gvr::httproutes(), "demo", "r").expect("route");
    assert_eq!(route["status"]["parents"][0]["parentRef"]["name"], "gw");
    let gw = wait_for("gateway programmed", || {
        let g = store.get(&Gvr::gateways(), "demo", "gw")?;
        (g["status"]["listeners"][0]["attachedRoutes"] == 1).then_some(g)
    })
    .await;
    assert_eq!(cond(&gw, "Programmed").map(|c| c["status"].clone()), Some(json!("True")));
    assert_eq!(cond(&gw, "Accepted").map(|c| c["status"].clone()), Some(json!("True")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_deployment_removes_its_replica_sets_and_pods() {
    let store = store_with(&["default"]);
    let _c = spawn(store.clone(), Duration::from_millis(10));
    store.create(&Gvr::deployments(), "default", deployment("web", 2, "app:1")).expect("create");
    wait_for("2 pods", || (store.list(&Gvr::pods(), Some("default")).len() == 2).then_some(())).await;
    store.delete(&Gvr::deployments(), "default", "web").expect("delete");
    wait_for("all gone", || {
        (store.list(&Gvr::pods(), Some("default")).is_empty()
            && store.list(&Gvr::replicasets(), Some("default")).is_empty())
        .then_some(())
    })
    .await;
    // Nothing comes back.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(store.list(&Gvr::pods(), Some("default")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_pods_are_running_at_once_and_the_controllers_leave_them_alone() {
    let store = store_with(&[]);
    let _c = spawn(store.clone(), Duration::from_millis(10));
    seed::load_pods(&store, 350).expect("seed");
    let pods = store.list(&Gvr::pods(), Some(seed::LOAD_NAMESPACE));
    assert_eq!(pods.len(), 350);
    assert!(pods.iter().all(|p| running_ready(p)));
    let deps = store.list(&Gvr::deployments(), Some(seed::LOAD_NAMESPACE));
    assert_eq!(deps.len(), 4);
    let total: i64 = deps.iter().map(|d| spec_replicas(d)).sum();
    assert_eq!(total, 350);
    assert!(deps.iter().all(|d| status_i64(d, "availableReplicas") == spec_replicas(d)));
    let rv = store.resource_version();
    // Give the controllers time to look at every seeded object: they must find nothing to change.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(store.resource_version(), rv, "the controllers rewrote seeded objects");
    assert_eq!(store.list(&Gvr::pods(), Some(seed::LOAD_NAMESPACE)).len(), 350);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_seed_comes_up_running_with_routes_accepted() {
    let store = store_with(&[]);
    let _c = spawn(store.clone(), Duration::from_millis(10));
    seed::demo(&store).expect("demo");
    seed::demo(&store).expect("seeding twice is harmless");
    let frontend = wait_for("frontend", || {
        let d = store.get(&Gvr::deployments(), "demo", "frontend")?;
        (status_i64(&d, "availableReplicas") == 3).then_some(d)
    })
    .await;
    assert_eq!(frontend["spec"]["template"]["spec"]["containers"].as_array().map(Vec::len), Some(2));
    assert_eq!(frontend["metadata"]["labels"]["plt.dev/version"], "1.4.2");
    wait_for("statefulset", || store.get(&Gvr::pods(), "demo", "cache-1").filter(|p| running_ready(p))).await;
    wait_for("debug pod", || store.get(&Gvr::pods(), "demo", "debug").filter(|p| running_ready(p))).await;
    for (gvr, name) in [(Gvr::replicasets(), "legacy-batch"), (Gvr::replicationcontrollers(), "legacy-rc")] {
        wait_for(name, || {
            let o = store.get(&gvr, "demo", name)?;
            (status_i64(&o, "readyReplicas") == spec_replicas(&o)).then_some(())
        })
        .await;
    }
    let svc = store.get(&Gvr::services(), "demo", "frontend").expect("service");
    assert_eq!(svc["spec"]["ports"][0]["name"], "app");
    assert_eq!(svc["spec"]["ports"][0]["port"], 3042);
    assert_eq!(svc["spec"]["ports"][1]["name"], "metrics");
    assert_eq!(svc["spec"]["ports"][1]["port"], 9090);
    wait_for("route accepted", || {
        let r = store.get(&Gvr::httproutes(), "demo", "frontend")?;
        let ok = r.pointer("/status/parents/0/conditions")?.as_array()?.iter().all(|c| c["status"] == "True");
        ok.then_some(())
    })
    .await;
    assert!(store.get(&Gvr::pods(), "default", "").is_none());
    assert!(!store.list(&Gvr::pods(), Some("default")).is_empty(), "hello runs in default");
}

// One thread: the controllers cannot run until the test awaits, so the burst below overflows their event
// channel for certain and they must recover by relisting.
#[tokio::test(flavor = "current_thread")]
async fn controllers_resync_after_lagging_behind_a_burst_of_events() {
    let store = store_with(&["default"]);
    let _c = spawn(store.clone(), Duration::from_millis(10));
    store.create(&Gvr::deployments(), "default", deployment("web", 2, "app:1")).expect("create");
    let burst: Vec<_> = (0..20_000)
        .map(|i| {
            (
                Gvr::new("", "v1", "configmaps"),
                "default".to_string(),
                json!({"metadata": {"name": format!("cm-{i}")}}),
            )
        })
        .collect();
    store.create_many(burst).expect("burst");
    wait_for("2 running pods after the lag", || {
        let d = store.get(&Gvr::deployments(), "default", "web")?;
        (status_i64(&d, "availableReplicas") == 2).then_some(())
    })
    .await;
    let running = store.list(&Gvr::pods(), Some("default")).iter().filter(|p| running_ready(p)).count();
    assert_eq!(running, 2);
}

/// A pass yields every few milliseconds; the owner index it built survives the yield when nothing changed.
/// It used to be dropped at every yield, so a pass over many ReplicaSets of many pods listed every pod once
/// per ReplicaSet: with 100,000 seeded pods an idle sandbox kept a core busy for minutes.
#[tokio::test(flavor = "current_thread")]
async fn a_pass_over_unchanged_objects_indexes_each_kind_once() {
    let store = store_with(&[]);
    seed::load_pods(&store, 10_000).expect("seed");
    let rv = store.resource_version();
    let mut c = Controllers::new(store.clone(), Duration::from_millis(10));
    c.resync();
    let started = Instant::now();
    c.reconcile_queue().await;
    let pass = started.elapsed();
    assert_eq!(store.resource_version(), rv, "nothing needed a change");
    assert!(pass > PASS_SLICE, "the pass yielded at least once ({pass:?})");
    // One index of the pods and one of the ReplicaSets in the load namespace.
    assert_eq!(c.index_builds, 2, "pass of {pass:?}");
}
