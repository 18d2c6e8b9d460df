//! Drives one operator through everything it can do on Kubernetes, against a sandbox that records every
//! request (and the `create` a server-side apply implies), and returns what it recorded.
//!
//! Seeding and checks go through the sandbox's store, never its HTTP API, so every recorded request is the
//! operator's. Each step asserts the status a client sees: a route that failed early would record less than
//! the operator really needs.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use machinist::app::OperatorBuilder;
use machinist_sandbox::review::Reviews;
use machinist_sandbox::{Gvr, Sandbox, SandboxOptions};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The Lease namespace, and the watched namespace of single-namespace installs (as the overlay's Role).
pub const INSTALL_NS: &str = "machinist";
const TOKEN: &str = "rbac-test-token";

/// One request as RBAC sees it; `namespace` and `name` are empty when the request has none.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Access {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

/// How the operator is installed.
#[derive(Clone, Copy, Debug)]
pub struct Mode {
    /// `--namespaces machinist` (the single-namespace overlay) instead of all namespaces.
    pub single_namespace: bool,
    /// `--auth-mode kubernetes`: every REST call is reviewed by TokenReview and SubjectAccessReview.
    pub kubernetes_auth: bool,
}

fn sr_gvr() -> Gvr {
    Gvr::new("machinist.dev", "v1alpha1", "scalerequests")
}

fn events_gvr() -> Gvr {
    Gvr::new("events.k8s.io", "v1", "events")
}

fn labels(app: &str) -> Value {
    json!({"app": app})
}

fn pod_template(app: &str) -> Value {
    json!({"metadata": {"labels": labels(app)}, "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}})
}

fn apps_workload(kind: &str, name: &str) -> Value {
    let mut o = json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "labels": labels(name)},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels(name)}, "template": pod_template(name)}});
    if kind == "StatefulSet" {
        o["spec"]["serviceName"] = json!(name);
    }
    o
}

/// Workloads of every kind, a Service and a Gateway, straight into the store.
fn seed(sb: &Sandbox, ns: &str) {
    let store = &sb.store;
    store.create(&Gvr::deployments(), ns, apps_workload("Deployment", "web")).expect("deployment");
    store.create(&Gvr::statefulsets(), ns, apps_workload("StatefulSet", "db")).expect("statefulset");
    store.create(&Gvr::replicasets(), ns, apps_workload("ReplicaSet", "rs")).expect("replicaset");
    let rc = json!({"apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": "rc", "labels": labels("rc")},
        "spec": {"replicas": 1, "selector": labels("rc"), "template": pod_template("rc")}});
    store.create(&Gvr::replicationcontrollers(), ns, rc).expect("replicationcontroller");
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "old"},
        "spec": {"selector": labels("web"), "ports": [{"port": 80}]}});
    store.create(&Gvr::services(), ns, svc).expect("service");
    let gw = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "gw"},
        "spec": {"gatewayClassName": "sandbox", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}});
    store.create(&Gvr::gateways(), ns, gw).expect("gateway");
}

/// A REST client of the operator that checks every answer's status.
struct Rest {
    base: String,
    http: reqwest::Client,
    token: Option<&'static str>,
}

impl Rest {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("REST request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    #[track_caller]
    fn ok(what: &str, (status, body): (u16, Value)) -> Value {
        assert_eq!(status, 200, "{what}: {body}");
        body
    }

    async fn expect_ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let what = format!("{method} {path}");
        Rest::ok(&what, self.call(method, path, body).await)
    }
}

/// Polls `check` every 100 ms until it holds; generous limits, the box may be loaded.
async fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts the operator, drives it through reads, every write route, ScaleRequests (applied, ready, expired by
/// their TTL; a missing target whose Event repeats as a series), leader election and shutdown, and returns
/// every request the sandbox recorded.
pub async fn drive(mode: Mode) -> BTreeSet<Access> {
    let opts = SandboxOptions {
        test_hooks: true,
        pod_start_delay: Duration::from_millis(50),
        ..SandboxOptions::default()
    };
    let sb = Sandbox::start(opts).await.expect("sandbox starts");
    let ns = if mode.single_namespace { INSTALL_NS } else { "apps" };
    for n in BTreeSet::from([INSTALL_NS, ns]) {
        sb.store.create(&Gvr::namespaces(), "", json!({"metadata": {"name": n}})).expect("namespace");
    }
    let crd: Value = serde_yaml::from_str(&machinist::reconcile::crd::crd_yaml()).expect("crd yaml");
    sb.store.create(&Gvr::crds(), "", crd).expect("install the ScaleRequest CRD");
    seed(&sb, ns);
    if mode.kubernetes_auth {
        let reviews: Reviews = serde_yaml::from_str(&format!(
            "users: [{{token: {TOKEN}, name: caller, groups: [ops]}}]\n\
             rules: [{{subjects: [ops], verbs: ['*'], apiGroups: [machinist.dev], resources: ['*']}}]\n"
        ))
        .expect("reviews");
        sb.set_reviews(reviews);
    }

    let http = crate::common::http();
    let stats_url = format!("{}/sandbox/stats", sb.url());
    http.delete(&stats_url).send().await.expect("reset stats").error_for_status().expect("reset ok");

    let mut argv = vec![
        "--http-listen=127.0.0.1:0",
        "--identity=rbac-test",
        // Nothing routes to it: shutting down need not wait for load balancers.
        "--shutdown-delay=0",
        "--lease-namespace",
        INSTALL_NS,
    ];
    if mode.single_namespace {
        argv.extend(["--namespaces", INSTALL_NS]);
    }
    if mode.kubernetes_auth {
        argv.push("--auth-mode=kubernetes");
    }
    let operator =
        OperatorBuilder::from_flags(argv).expect("`run` flags parse").kubeconfig_yaml(sb.kubeconfig_yaml());
    let shutdown = CancellationToken::new();
    let spawned = operator.spawn(shutdown.clone());
    let spawned =
        tokio::time::timeout(Duration::from_secs(60), spawned).await.expect("listens").expect("address");
    let (addr, operator) = (spawned.addr, spawned.task);
    let base = format!("http://{addr}");
    wait_ready_and_leading(&http, &base).await;

    let rest = Rest { base, http: http.clone(), token: mode.kubernetes_auth.then_some(TOKEN) };
    rest_routes(&rest, &sb, ns).await;
    scale_requests(&sb, ns).await;
    deletes(&rest, ns).await;

    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(30), operator).await.expect("operator stops");
    stopped.expect("operator task").expect("operator exits cleanly");
    let lease = sb.store.get(&Gvr::leases(), INSTALL_NS, "machinist-leader").expect("the Lease exists");
    assert!(lease["spec"].get("holderIdentity").is_none_or(Value::is_null), "released on shutdown: {lease}");

    let stats: Value = http.get(&stats_url).send().await.expect("stats").json().await.expect("stats json");
    sb.shutdown().await;
    stats["requests"]
        .as_array()
        .expect("requests array")
        .iter()
        .filter(|r| r["resource"] != "nonresource")
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            Access {
                verb: s("verb"),
                group: s("group"),
                resource: s("resource"),
                namespace: s("namespace"),
                name: s("name"),
            }
        })
        .collect()
}

async fn wait_ready_and_leading(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = http.get(format!("{base}/health/readiness")).send().await;
        let metrics = http.get(format!("{base}/metrics")).send().await;
        let leader = match metrics {
            Ok(r) => r.text().await.unwrap_or_default().lines().any(|l| l.trim() == "machinist_leader 1"),
            Err(_) => false,
        };
        if leader && ready.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        assert!(Instant::now() < deadline, "operator never became ready and leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads, scales of every kind, labels, manifest and HTTPRoute PUTs, Service and HTTPRoute deletes.
async fn rest_routes(rest: &Rest, sb: &Sandbox, ns: &str) {
    use reqwest::Method;
    for path in ["controllers", "services", "machines", "gateway/gateways"] {
        rest.expect_ok(Method::GET, &format!("/api/v1/k8s/{path}/{ns}"), None).await;
    }

    // A pod of `web` (the sandbox's controllers create it) to relabel.
    let mut pod = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while pod.is_empty() {
        let (_, list) = rest.call(Method::GET, &format!("/k8s/machines/{ns}?labels=app%3Dweb"), None).await;
        if let Some(id) = list.as_array().and_then(|a| a.first()).and_then(|m| m["id"].as_str()) {
            pod = id.to_string();
        } else {
            assert!(Instant::now() < deadline, "no pod of web appeared: {list}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let labelled = rest
        .expect_ok(
            Method::PATCH,
            &format!("/k8s/machines/{ns}/{pod}/labels"),
            Some(json!({"labels": {"team": "blue"}})),
        )
        .await;
    assert_eq!(labelled["labels"]["team"], "blue", "{labelled}");

    // Each scale is sent twice: the first writes /scale with the cached resourceVersion as precondition, the
    // repeat finds the cache already at the count and confirms it with a GET of /scale.
    for (name, kind) in
        [("web", "Deployment"), ("db", "StatefulSet"), ("rs", "ReplicaSet"), ("rc", "ReplicationController")]
    {
        for _ in 0..2 {
            let c = rest
                .expect_ok(
                    Method::POST,
                    &format!("/k8s/controllers/{ns}/{name}?kind={kind}"),
                    Some(json!({"replicas": 2})),
                )
                .await;
            assert_eq!(c["replicas"], 2, "{kind} {name}: {c}");
        }
    }

    // Manifest PUTs: each creates (a server-side apply authorized as `create` and `patch`), and a repeated
    // PUT patches an existing object.
    let controllers = format!("/k8s/controllers/{ns}");
    for _ in 0..2 {
        rest.expect_ok(Method::PUT, &controllers, Some(apps_workload("Deployment", "api"))).await;
    }
    rest.expect_ok(Method::PUT, &controllers, Some(apps_workload("StatefulSet", "cache"))).await;
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api"},
        "spec": {"selector": labels("api"), "ports": [{"port": 9000}]}});
    rest.expect_ok(Method::PUT, &format!("/k8s/services/{ns}"), Some(svc)).await;
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
        "type": "Opaque", "stringData": {"token": "not-a-real-secret"}});
    rest.expect_ok(Method::PUT, &format!("/k8s/secrets/{ns}"), Some(secret)).await;
    let route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "api"},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "api", "port": 9000}]}]}});
    rest.expect_ok(Method::PUT, &format!("/k8s/gateway/httproutes/{ns}"), Some(route)).await;
    rest.expect_ok(Method::GET, &format!("/k8s/gateway/httproutes/{ns}/api"), None).await;
    rest.expect_ok(Method::DELETE, &format!("/k8s/gateway/httproutes/{ns}/api"), None).await;
    rest.expect_ok(Method::DELETE, &format!("/k8s/services/{ns}/old"), None).await;
    assert!(sb.store.get(&Gvr::services(), ns, "old").is_none(), "the Service is gone");
}

/// `grow` scales `web` and is deleted by its TTL once ready; `missing` waits for a target that never comes,
/// and a new generation of it repeats the same Event, which the recorder patches as a series.
async fn scale_requests(sb: &Sandbox, ns: &str) {
    let sr = |name: &str, target: &str, replicas: i32, ttl: Option<i64>| {
        let mut spec = json!({"target": {"kind": "Deployment", "name": target}, "replicas": replicas});
        if let Some(ttl) = ttl {
            spec["ttlSecondsAfterFinished"] = json!(ttl);
        }
        json!({"apiVersion": "machinist.dev/v1alpha1", "kind": "ScaleRequest", "metadata": {"name": name},
               "spec": spec})
    };
    sb.store.create(&sr_gvr(), ns, sr("grow", "web", 3, Some(0))).expect("ScaleRequest grow");
    sb.store.create(&sr_gvr(), ns, sr("missing", "nope", 1, None)).expect("ScaleRequest missing");

    eventually(90, "ScaleRequest grow to succeed and expire", || {
        sb.store.get(&sr_gvr(), ns, "grow").is_none()
    })
    .await;
    let web = sb.store.get(&Gvr::deployments(), ns, "web").expect("web");
    assert_eq!(web["spec"]["replicas"], 3, "grow scaled web: {web}");

    let observed = |generation: i64| {
        move || {
            sb.store.get(&sr_gvr(), ns, "missing").is_some_and(|o| {
                o["status"]["phase"] == "Failed" && o["status"]["observedGeneration"] == generation
            })
        }
    };
    eventually(60, "ScaleRequest missing to fail", observed(1)).await;
    sb.store
        .update(&sr_gvr(), ns, "missing", |o| {
            o["spec"]["replicas"] = json!(2);
            Ok(())
        })
        .expect("a new generation of missing");
    eventually(60, "the new generation of missing to fail", observed(2)).await;
    eventually(30, "the repeated TargetNotFound Event to become a series", || {
        sb.store.list(&events_gvr(), Some(ns)).iter().any(|e| {
            e["regarding"]["name"] == "missing" && e["series"]["count"].as_i64().is_some_and(|c| c >= 2)
        })
    })
    .await;
}

/// Deletes a controller of every kind.
async fn deletes(rest: &Rest, ns: &str) {
    for (name, kind) in
        [("web", "Deployment"), ("db", "StatefulSet"), ("rs", "ReplicaSet"), ("rc", "ReplicationController")]
    {
        let path = format!("/k8s/controllers/{ns}/{name}?kind={kind}");
        let body = rest.expect_ok(reqwest::Method::DELETE, &path, None).await;
        assert_eq!(body["deleted"], true, "{kind} {name}: {body}");
    }
}
