//! Real watchers against the in-process sandbox fill the cache: freshness after a `/scale` patch, and
//! recovery after every watch is cut and the history compacted (410), without ever serving a partial list.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use machinist::cache::Cache;
use machinist::cache::model::{Controller, Machine};
use machinist::provider::k8s::{client, watch};
use machinist_sandbox::{Sandbox, SandboxOptions};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(20);

async fn machinist_client(sb: &Sandbox) -> Client {
    let kc = Kubeconfig::from_yaml(&sb.kubeconfig_yaml()).expect("kubeconfig parses");
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("config");
    client::client_with(cfg, false).expect("client")
}

async fn setup() -> (Sandbox, Client, Arc<Cache>, watch::Watchers) {
    let opts =
        SandboxOptions { test_hooks: true, pod_start_delay: Duration::from_millis(50), ..Default::default() };
    let (sb, kube_client) = common::start_with(opts).await;
    let cache = Arc::new(Cache::new_k8s(vec![]));
    let watchers = watch::spawn_watchers(machinist_client(&sb).await, cache.clone(), &[]);
    (sb, kube_client, cache, watchers)
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name, "labels": { "app": name } },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [ { "name": "app", "image": "myapp:1.2.0",
                    "resources": { "requests": { "cpu": "250m", "memory": "64Mi" } } } ] }
            }
        }
    }))
    .expect("deployment")
}

fn bare_pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "labels": { "app": "bare" } },
        "spec": { "containers": [ { "name": "app", "image": "bare:1" } ] }
    }))
    .expect("pod")
}

fn controller(cache: &Cache, ns: &str, name: &str) -> Option<Controller> {
    let frag = cache.controller(ns, name, None).ok()?;
    Some(serde_json::from_str(frag.get()).expect("a served Controller"))
}

fn machines(cache: &Cache, ns: &str) -> Vec<Machine> {
    match cache.machines(ns, &[]) {
        Ok(list) => list.iter().map(|f| serde_json::from_str(f.get()).expect("a served Machine")).collect(),
        Err(_) => Vec::new(),
    }
}

/// Poll `check` every 5 ms until it holds; the time it took.
async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_fill_the_cache_and_a_scale_becomes_visible() {
    let (sb, kc, cache, watchers) = setup().await;
    let ns = common::fresh_namespace(&sb);
    let deployments: Api<Deployment> = Api::namespaced(kc.clone(), &ns);
    deployments.create(&PostParams::default(), &deployment("web", 2)).await.expect("create");
    Api::<Pod>::namespaced(kc.clone(), &ns)
        .create(&PostParams::default(), &bare_pod("lonely"))
        .await
        .expect("pod");

    eventually("the first sync", LIMIT, || cache.synced()).await;
    eventually("two ready machines of web", LIMIT, || {
        controller(&cache, &ns, "web")
            .is_some_and(|c| c.machines.len() == 2 && c.machines.iter().all(|m| m.ready))
    })
    .await;
    let web = controller(&cache, &ns, "web").expect("web");
    assert_eq!(web.provider_metadata.get("kind").map(String::as_str), Some("Deployment"));
    for m in &web.machines {
        let owner = m.controller.as_ref().expect("a deployment pod has a controller");
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("Deployment", "web"),
            "top owner, not the RS"
        );
        assert_eq!(m.status, "Running");
        assert!(m.image_digest.as_deref().is_some_and(|d| d.starts_with("sha256:")), "{m:?}");
        assert_eq!(m.resources.requests.get("cpu").map(String::as_str), Some("250m"));
    }
    eventually("the bare pod", LIMIT, || machines(&cache, &ns).iter().any(|m| m.id == "lonely")).await;
    let lonely = machines(&cache, &ns).into_iter().find(|m| m.id == "lonely").expect("lonely");
    assert_eq!(lonely.controller, None);
    let names: Vec<String> = cache
        .controllers(&ns)
        .expect("controllers")
        .iter()
        .map(|f| serde_json::from_str::<Controller>(f.get()).expect("controller").name)
        .collect();
    assert_eq!(names, ["web"], "the Deployment's ReplicaSet is not listed");

    // Freshness: a kube-rs /scale patch, then the new machines in the cache within 1 s.
    let patched = Instant::now();
    deployments
        .patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 5 } })))
        .await
        .expect("scale");
    // The count comes from the Deployment watcher and the machines from the pod watcher: wait for both.
    let took = eventually("web at 5 replicas with five machines", LIMIT, || {
        controller(&cache, &ns, "web").is_some_and(|c| c.replicas == 5 && c.machines.len() == 5)
    })
    .await;
    let since_patch = patched.elapsed();
    println!("scale to visible: {took:?} after the patch returned ({since_patch:?} after it was sent)");
    // Generous for a loaded CI box; the freshness figure itself is measured by `benches/reads.rs`.
    assert!(since_patch < Duration::from_secs(5), "new machines took {since_patch:?}");

    // Scale down and delete are seen too.
    deployments.delete("web", &DeleteParams::background()).await.expect("delete");
    eventually("web gone", LIMIT, || controller(&cache, &ns, "web").is_none()).await;
    assert!(watchers.health.check(Duration::from_secs(600)).is_ok());
    watchers.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_closed_watches_and_410_the_cache_converges_and_never_serves_a_partial_list() {
    let (sb, kc, cache, watchers) = setup().await;
    let ns = common::fresh_namespace(&sb);
    let pods: Api<Pod> = Api::namespaced(kc.clone(), &ns);
    Api::<Deployment>::namespaced(kc.clone(), &ns)
        .create(&PostParams::default(), &deployment("web", 20))
        .await
        .expect("create");
    pods.create(&PostParams::default(), &bare_pod("doomed")).await.expect("pod");
    // Wait for the ReplicaSet too: until it arrives, web's pods point at it and web shows none.
    eventually("21 machines, 20 of web", LIMIT, || {
        cache.synced()
            && machines(&cache, &ns).len() == 21
            && controller(&cache, &ns, "web").is_some_and(|c| c.machines.len() == 20)
    })
    .await;

    // A reader that checks every answer while the watches are cut and the cache relists.
    let stop = Arc::new(AtomicBool::new(false));
    let smallest = Arc::new(AtomicUsize::new(usize::MAX));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (cache, ns, stop, smallest, reads) =
            (cache.clone(), ns.clone(), stop.clone(), smallest.clone(), reads.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let list = cache.machines(&ns, &[]).expect("reads never fail during a relist");
                let web = cache.controller(&ns, "web", None).expect("web stays served");
                let web: Controller = serde_json::from_str(web.get()).expect("controller");
                // Between events the list holds 20..=23 machines, web always its 20: fewer is a partial list.
                smallest.fetch_min(list.len().min(web.machines.len()), Ordering::Relaxed);
                reads.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        })
    };

    let relists_before = relists("pods");
    let url = format!("{}/sandbox/faults", sb.url());
    let r = common::http().post(&url).json(&json!({ "compact": true, "close_watches": true })).send().await;
    assert!(r.expect("faults").status().is_success());
    // Changes while the watch is down: one pod goes, three come.
    pods.delete("doomed", &DeleteParams::default()).await.expect("delete");
    for i in 0..3 {
        pods.create(&PostParams::default(), &bare_pod(&format!("new-{i}"))).await.expect("pod");
    }

    eventually("the cache converges after the relist", LIMIT, || {
        let ids: Vec<String> = machines(&cache, &ns).into_iter().map(|m| m.id).collect();
        ids.len() == 23
            && !ids.iter().any(|i| i == "doomed")
            && (0..3).all(|i| ids.contains(&format!("new-{i}")))
    })
    .await;
    eventually("a relist after the 410", LIMIT, || relists("pods") > relists_before).await;
    stop.store(true, Ordering::Relaxed);
    reader.await.expect("reader");
    assert!(reads.load(Ordering::Relaxed) > 0);
    let smallest = smallest.load(Ordering::Relaxed);
    assert!(smallest >= 20, "a partial list was served: {smallest} machines");
    eventually("healthy watchers", LIMIT, || watchers.health.check(Duration::from_secs(600)).is_ok()).await;
    watchers.abort();
}

fn relists(kind: &str) -> u64 {
    machinist::metrics::metrics().watch_relists.with_label_values(&[kind]).get()
}

fn gateway_api(kind: &str, plural: &str) -> kube::api::ApiResource {
    kube::api::ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_namespaces_are_the_only_scopes_and_routes_are_served_with_status() {
    let opts =
        SandboxOptions { test_hooks: true, pod_start_delay: Duration::from_millis(50), ..Default::default() };
    let (sb, kc) = common::start_with(opts).await;
    let (ns, other) = (common::fresh_namespace(&sb), common::fresh_namespace(&sb));
    for n in [&ns, &other] {
        Api::<Deployment>::namespaced(kc.clone(), n)
            .create(&PostParams::default(), &deployment("web", 1))
            .await
            .expect("create");
    }
    let cache = Arc::new(Cache::new_k8s(vec![ns.clone()]));
    let watchers =
        watch::spawn_watchers(machinist_client(&sb).await, cache.clone(), std::slice::from_ref(&ns));
    eventually("web in the watched namespace", LIMIT, || {
        controller(&cache, &ns, "web").is_some_and(|c| c.machines.len() == 1)
    })
    .await;
    assert!(matches!(cache.machines(&other, &[]), Err(machinist::cache::ReadError::ScopeNotWatched { .. })));

    let (gw_ar, route_ar) = (gateway_api("Gateway", "gateways"), gateway_api("HTTPRoute", "httproutes"));
    let gateways: Api<kube::api::DynamicObject> = Api::namespaced_with(kc.clone(), &ns, &gw_ar);
    let routes: Api<kube::api::DynamicObject> = Api::namespaced_with(kc.clone(), &ns, &route_ar);
    let gw: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": { "name": "gw" },
        "spec": { "gatewayClassName": "sandbox", "listeners": [ { "name": "http", "port": 80, "protocol": "HTTP" } ] }
    }))
    .expect("gateway");
    gateways.create(&PostParams::default(), &gw).await.expect("gateway");
    let route: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": { "name": "r", "annotations": { "kubectl.kubernetes.io/last-applied-configuration": "{}" } },
        "spec": { "parentRefs": [ { "name": "gw" } ], "rules": [ { "backendRefs": [] } ] }
    }))
    .expect("route");
    routes.create(&PostParams::default(), &route).await.expect("route");

    eventually("the route, accepted, in the cache", LIMIT, || {
        cache.httproute(&ns, "r").is_ok_and(|f| {
            let v: serde_json::Value = serde_json::from_str(f.get()).expect("json");
            v.pointer("/status/parents/0/conditions")
                .and_then(|c| c.as_array())
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Accepted" && c["status"] == "True"))
        })
    })
    .await;
    let v: serde_json::Value =
        serde_json::from_str(cache.httproute(&ns, "r").expect("route").get()).expect("json");
    assert!(v["metadata"].get("managedFields").is_none());
    assert_eq!(v["metadata"]["annotations"], json!({}), "last-applied-configuration is dropped");
    // Gateways and routes come from two independent watchers: the route being accepted says nothing about
    // whether the gateway watcher has delivered yet.
    eventually("the gateway in the cache", LIMIT, || cache.gateways(&ns).is_ok_and(|g| g.len() == 1)).await;

    routes.delete("r", &DeleteParams::default()).await.expect("delete");
    eventually("the route gone", LIMIT, || cache.httproute(&ns, "r").is_err()).await;
    assert!(watchers.health.watcher_ids().iter().all(|id| id.ends_with(&format!("/{ns}"))));
    watchers.abort();
}
