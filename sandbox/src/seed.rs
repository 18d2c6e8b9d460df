//! Seed data: the demo workloads `machinist sandbox` starts with, and `--pods N` load pods.
//!
//! It writes objects through the store like a user would; it must not depend on the controllers running
//! (the load pods are created already Running, with the statuses the controllers would compute).

use serde_json::{Value, json};

use super::controllers::{self, deployment, kubelet, meta, replicaset};
use super::registry::Gvr;
use super::status::StatusError;
use super::store::Store;

/// The namespace `load_pods` fills.
pub const LOAD_NAMESPACE: &str = "load";
/// Pods per load Deployment.
pub const LOAD_REPLICAS: u32 = 100;

/// Creates `obj` unless an object of that name exists (a `--state` file may have brought it back).
fn ensure(store: &Store, gvr: &Gvr, ns: &str, obj: Value) -> Result<(), StatusError> {
    match store.create(gvr, ns, obj) {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn labels(app: &str, ns: &str, version: &str) -> Value {
    json!({
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/instance": format!("{app}-{ns}"),
        "plt.dev/version": version,
    })
}

fn selector(app: &str, ns: &str) -> Value {
    json!({"app.kubernetes.io/name": app, "app.kubernetes.io/instance": format!("{app}-{ns}")})
}

/// A container; `res` is (cpu request, memory request, cpu limit, memory limit).
fn container(name: &str, image: &str, ports: &[(&str, u16)], res: Option<(&str, &str, &str, &str)>) -> Value {
    let mut c = json!({"name": name, "image": image, "imagePullPolicy": "IfNotPresent"});
    if !ports.is_empty() {
        c["ports"] = ports
            .iter()
            .map(|(n, p)| json!({"name": n, "containerPort": p, "protocol": "TCP"}))
            .collect::<Vec<_>>()
            .into();
    }
    if let Some((rc, rm, lc, lm)) = res {
        c["resources"] = json!({"requests": {"cpu": rc, "memory": rm}, "limits": {"cpu": lc, "memory": lm}});
    }
    c
}

fn app_container(image: &str, res: Option<(&str, &str, &str, &str)>) -> Value {
    container("app", image, &[("app", 3042), ("metrics", 9090)], res)
}

fn pod_template(app: &str, ns: &str, version: &str, containers: Vec<Value>) -> Value {
    json!({"metadata": {"labels": labels(app, ns, version)}, "spec": {"containers": containers}})
}

/// A Deployment of a Platformatic-style app.
pub fn app_deployment(ns: &str, app: &str, version: &str, replicas: u32, containers: Vec<Value>) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app, "namespace": ns, "labels": labels(app, ns, version)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector(app, ns)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            "template": pod_template(app, ns, version, containers),
        },
    })
}

/// A Service with the `app` (3042) and `metrics` (9090) ports, in that order.
fn app_service(ns: &str, app: &str, version: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": app, "namespace": ns, "labels": labels(app, ns, version)},
        "spec": {
            "selector": selector(app, ns),
            "ports": [
                {"name": "app", "port": 3042, "targetPort": "app", "protocol": "TCP"},
                {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    })
}

/// Every demo object, in creation order, with its type and namespace.
pub fn demo_objects() -> Vec<(Gvr, &'static str, Value)> {
    let d = "demo";
    let small = Some(("100m", "128Mi", "500m", "256Mi"));
    let mut out = vec![
        (
            Gvr::deployments(),
            d,
            app_deployment(
                d,
                "frontend",
                "1.4.2",
                3,
                vec![
                    app_container("platformatic/frontend:1.4.2", small),
                    container(
                        "log-shipper",
                        "fluent/fluent-bit:3.0",
                        &[],
                        Some(("50m", "64Mi", "100m", "128Mi")),
                    ),
                ],
            ),
        ),
        (
            Gvr::deployments(),
            d,
            app_deployment(
                d,
                "api",
                "2.0.1",
                2,
                vec![
                    app_container("platformatic/api:2.0.1", Some(("250m", "256Mi", "250m", "256Mi"))),
                    container("envoy", "envoyproxy/envoy:v1.30.1", &[("admin", 9901)], small),
                ],
            ),
        ),
        (
            Gvr::deployments(),
            d,
            app_deployment(d, "worker", "0.9.0", 1, vec![app_container("platformatic/worker:0.9.0", None)]),
        ),
        (
            Gvr::deployments(),
            "default",
            app_deployment(
                "default",
                "hello",
                "1.0.0",
                1,
                vec![app_container("nginx:1.27", Some(("50m", "32Mi", "200m", "64Mi")))],
            ),
        ),
        (Gvr::services(), d, app_service(d, "frontend", "1.4.2")),
        (Gvr::services(), d, app_service(d, "api", "2.0.1")),
        (Gvr::services(), "default", app_service("default", "hello", "1.0.0")),
        (
            Gvr::services(),
            d,
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "cache", "namespace": d, "labels": labels("cache", d, "7.2.4")},
                "spec": {"clusterIP": "None", "selector": selector("cache", d),
                    "ports": [{"name": "redis", "port": 6379, "targetPort": 6379, "protocol": "TCP"}]}}),
        ),
        (
            Gvr::statefulsets(),
            d,
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": "cache", "namespace": d, "labels": labels("cache", d, "7.2.4")},
                "spec": {"replicas": 2, "serviceName": "cache", "selector": {"matchLabels": selector("cache", d)},
                    "podManagementPolicy": "OrderedReady", "updateStrategy": {"type": "RollingUpdate"},
                    "template": pod_template("cache", d, "7.2.4", vec![container("redis", "redis:7.2.4",
                        &[("redis", 6379)], Some(("100m", "128Mi", "200m", "256Mi")))])}}),
        ),
        (
            Gvr::replicasets(),
            d,
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": "legacy-batch", "namespace": d, "labels": labels("legacy-batch", d, "0.1.0")},
                "spec": {"replicas": 2, "selector": {"matchLabels": selector("legacy-batch", d)},
                    "template": pod_template("legacy-batch", d, "0.1.0",
                        vec![app_container("platformatic/batch:0.1.0", small)])}}),
        ),
        (
            Gvr::replicationcontrollers(),
            d,
            json!({"apiVersion": "v1", "kind": "ReplicationController",
                "metadata": {"name": "legacy-rc", "namespace": d, "labels": labels("legacy-rc", d, "0.0.9")},
                "spec": {"replicas": 1, "selector": selector("legacy-rc", d),
                    "template": pod_template("legacy-rc", d, "0.0.9",
                        vec![app_container("platformatic/legacy:0.0.9", None)])}}),
        ),
        (
            Gvr::pods(),
            d,
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "debug", "namespace": d, "labels": {"app.kubernetes.io/name": "debug"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "shell", "image": "busybox:1.36",
                    "command": ["sleep", "infinity"]}]}}),
        ),
        (
            Gvr::gateways(),
            d,
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "demo-gateway", "namespace": d},
                "spec": {"gatewayClassName": "sandbox",
                    "listeners": [{"name": "http", "protocol": "HTTP", "port": 80,
                        "allowedRoutes": {"namespaces": {"from": "Same"}}}]}}),
        ),
        (
            Gvr::httproutes(),
            d,
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": {"name": "frontend", "namespace": d, "labels": labels("frontend", d, "1.4.2")},
                "spec": {"parentRefs": [{"name": "demo-gateway"}], "hostnames": ["frontend.demo.local"],
                    "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                        "backendRefs": [{"name": "frontend", "port": 3042}]}]}}),
        ),
    ];
    out.insert(
        0,
        (
            controllers::gateway::gatewayclasses(),
            "",
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                "metadata": {"name": "sandbox"},
                "spec": {"controllerName": controllers::GATEWAY_CONTROLLER}}),
        ),
    );
    out
}

/// Namespaces `default` and `demo` and the demo workloads (see `demo_objects`). Installs the Gateway API CRDs
/// when the server has not.
pub fn demo(store: &Store) -> Result<(), StatusError> {
    for ns in ["default", "demo"] {
        ensure(store, &Gvr::namespaces(), "", namespace(ns))?;
    }
    if store.resource_type(&Gvr::gateways()).is_none() {
        for crd in super::gateway::crds() {
            ensure(store, &Gvr::crds(), "", crd)?;
        }
    }
    for (gvr, ns, obj) in demo_objects() {
        ensure(store, &gvr, ns, obj)?;
    }
    Ok(())
}

/// `n` Running pods in namespace `load`, spread over Deployments `load-00000…` of about 100 replicas each,
/// with their ReplicaSets and statuses as the controllers would have left them. Deployments that already
/// exist are kept as they are.
pub fn load_pods(store: &Store, n: u32) -> Result<(), StatusError> {
    if n == 0 {
        return Ok(());
    }
    ensure(store, &Gvr::namespaces(), "", namespace(LOAD_NAMESPACE))?;
    let deps = n.div_ceil(LOAD_REPLICAS);
    let (base, extra) = (n / deps, n % deps);
    let offset = fastrand::u64(..);
    let ns = LOAD_NAMESPACE;
    let _paused = controllers::pause();
    let mut pods = Vec::with_capacity(n as usize);
    let mut fixups = Vec::with_capacity(deps as usize);
    let mut seq = 0u64;
    for d in 0..deps {
        let name = format!("load-{d:05}");
        if store.get(&Gvr::deployments(), ns, &name).is_some() {
            continue;
        }
        let replicas = base + u32::from(d < extra);
        let res = Some(("50m", "64Mi", "100m", "128Mi"));
        let dep = store.create(
            &Gvr::deployments(),
            ns,
            app_deployment(ns, &name, "1.0.0", replicas, vec![app_container("platformatic/load:1.0.0", res)]),
        )?;
        let tmpl = dep.pointer("/spec/template").cloned().unwrap_or_else(|| json!({}));
        let hash = deployment::template_hash(&tmpl);
        let mut rs = deployment::new_replica_set(&dep, &hash, i64::from(replicas), 1);
        // The ReplicaSet's uid is needed for the pods' ownerReferences; its status is written after them.
        rs = (*store.create(&Gvr::replicasets(), ns, rs)?).clone();
        let mut mine = Vec::with_capacity(replicas as usize);
        for _ in 0..replicas {
            let pod_name = format!("{}-{}", meta(&rs, "name"), controllers::nth_suffix(offset, seq));
            seq += 1;
            let mut pod = replicaset::new_pod(&rs, &pod_name);
            pod["status"] = kubelet::running_status(&pod, &kubelet::next_pod_ip());
            mine.push(pod);
        }
        let refs: Vec<&Value> = mine.iter().collect();
        rs["status"] = replicaset::status_for(&rs, &refs);
        pods.extend(mine.into_iter().map(|p| (Gvr::pods(), ns.to_string(), p)));
        fixups.push(((*dep).clone(), rs));
    }
    store.create_many(pods)?;
    for (dep, rs) in fixups {
        let status = rs["status"].clone();
        let rs_now = store.update_status(&Gvr::replicasets(), ns, meta(&rs, "name"), |r| {
            r["status"] = status;
            Ok(())
        })?;
        let dstatus = deployment::status_for(&dep, Some(&rs_now), &[]);
        store.update_status(&Gvr::deployments(), ns, meta(&dep, "name"), |d| {
            d["status"] = dstatus;
            Ok(())
        })?;
    }
    Ok(())
}
