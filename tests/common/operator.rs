//! REST-level test harness: a sandbox (test hooks on) plus the whole operator (`app::OperatorBuilder`) on
//! 127.0.0.1:0, optionally with the ECS provider against the emulator. It owns only setup, teardown and small
//! HTTP helpers; what a test asserts lives in the test files.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kube::Client;
use machinist::app::{AppError, OperatorBuilder};
use machinist::provider::ecs::EcsSettings;
use machinist_sandbox::{Gvr, Sandbox, SandboxOptions};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running operator over a running sandbox. Dropping it stops the operator.
pub struct Operator {
    /// `http://127.0.0.1:PORT` of the REST API (no trailing slash).
    pub base: String,
    pub sandbox: Sandbox,
    /// A kube client of the sandbox, retry off.
    pub kube: Client,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), AppError>>>,
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Sandbox options for REST tests: test hooks on, no demo data, pods start after 50 ms.
pub fn quick_sandbox() -> SandboxOptions {
    SandboxOptions {
        test_hooks: true,
        pod_start_delay: Duration::from_millis(50),
        ..SandboxOptions::default()
    }
}

/// Start a sandbox with `opts` and the operator with `machinist run --http-listen 127.0.0.1:0
/// --leader-election false <extra>`; returns once the REST API listens (not once caches synced).
pub async fn start(opts: SandboxOptions, extra: &[&str]) -> Operator {
    let sandbox = Sandbox::start(opts).await.expect("sandbox starts");
    start_on(sandbox, extra, None).await
}

/// The operator over an already started sandbox (a test may seed it first); `ecs` enables the ECS provider
/// with these settings (add `--provider k8s,ecs` to `extra`).
pub async fn start_on(sandbox: Sandbox, extra: &[&str], ecs: Option<EcsSettings>) -> Operator {
    install_crd(&sandbox);
    let kube = crate::common::client_for(&sandbox, false).await;
    let flags = ["--http-listen", "127.0.0.1:0", "--leader-election", "false"];
    let mut operator = OperatorBuilder::from_flags(flags.iter().chain(extra).copied())
        .expect("operator arguments parse")
        .kubeconfig_yaml(sandbox.kubeconfig_yaml());
    if let Some(ecs) = ecs {
        operator = operator.ecs(ecs);
    }
    let shutdown = CancellationToken::new();
    let spawned = tokio::time::timeout(Duration::from_secs(60), operator.spawn(shutdown.clone()))
        .await
        .expect("operator listens within 60 s")
        .unwrap_or_else(|e| panic!("operator failed: {e}"));
    let (addr, task) = (spawned.addr, spawned.task);
    Operator {
        base: format!("http://{addr}"),
        sandbox,
        kube,
        http: reqwest::Client::builder().build().expect("reqwest client"),
        shutdown,
        task: Some(task),
    }
}

/// The ScaleRequest CRD, as a real install has it (without it the ScaleRequest controller keeps relisting).
pub fn install_crd(sandbox: &Sandbox) {
    let crd: Value = serde_yaml::from_str(&machinist::reconcile::crd_yaml()).expect("CRD yaml parses");
    let name = crd["metadata"]["name"].as_str().unwrap_or_default().to_string();
    if sandbox.store.get(&Gvr::crds(), "", &name).is_none() {
        sandbox.store.create(&Gvr::crds(), "", crd).expect("CRD installs");
    }
}

/// A response as a client sees it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The problem `type` slug (`not-found` for `urn:problem:machinist:not-found`).
    pub fn slug(&self) -> &str {
        self.body["type"].as_str().unwrap_or("").trim_start_matches("urn:problem:machinist:")
    }

    /// Asserts a problem+json with this status and slug; returns self for more checks.
    #[track_caller]
    pub fn problem(&self, status: u16, slug: &str) -> &Self {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.slug(), slug, "{}", self.text);
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{self:?}");
        assert_eq!(self.body["status"], status, "{}", self.text);
        assert!(self.body["title"].is_string() && self.body["detail"].is_string(), "{}", self.text);
        self
    }

    /// Asserts a 400 problem, `bad-request` or `validation-failed` (field errors).
    #[track_caller]
    pub fn bad_input(&self) -> &Self {
        assert!(["bad-request", "validation-failed"].contains(&self.slug()), "{}", self.text);
        self.problem(400, self.slug())
    }

    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, 200, "{}", self.text);
        &self.body
    }
}

impl Operator {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Reply {
        let mut req = self.http.request(method, self.url(path));
        if let Some(body) = body {
            req = req.json(&body);
        }
        reply(req.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// A raw body with a content type (bad JSON tests).
    pub async fn send_raw(&self, method: reqwest::Method, path: &str, body: &str) -> Reply {
        let req = self
            .http
            .request(method, self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string());
        reply(req.send().await.expect("request sent")).await
    }

    /// `GET /sandbox/stats` total requests the sandbox served, by verb.
    pub async fn sandbox_stats(&self) -> Value {
        let r = self.http.get(format!("{}/sandbox/stats", self.sandbox.url())).send().await.expect("stats");
        r.json().await.expect("stats JSON")
    }

    pub async fn sandbox_faults(&self, spec: Value) {
        let r = self
            .http
            .post(format!("{}/sandbox/faults", self.sandbox.url()))
            .json(&spec)
            .send()
            .await
            .expect("faults");
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
    }

    /// Waits until `GET path` answers 200 and `check` accepts the body; returns that body.
    pub async fn wait_for(&self, secs: u64, path: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut last = None;
        while Instant::now() < deadline {
            let r = self.get(path).await;
            if r.status == 200 && check(&r.body) {
                return r.body;
            }
            last = Some(r);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out after {secs} s waiting on GET {path}; last: {last:?}");
    }
}

impl Operator {
    /// Waits until `GET path` answers `status`; returns that reply.
    pub async fn wait_status(&self, secs: u64, path: &str, status: u16) -> Reply {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let r = self.get(path).await;
            if r.status == status || Instant::now() > deadline {
                assert_eq!(r.status, status, "GET {path} after {secs} s: {}", r.text);
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub async fn reply(r: reqwest::Response) -> Reply {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, headers, body, text }
}

/// RFC 3339 UTC with milliseconds, as API.md prescribes for every time.
pub fn is_millis_rfc3339(s: &str) -> bool {
    let re = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$").expect("regex");
    re.is_match(s)
}

fn assert_string_map(v: &Value, what: &str) {
    let map = v.as_object().unwrap_or_else(|| panic!("{what} must be an object, got {v}"));
    assert!(map.values().all(Value::is_string), "{what} values are strings: {v}");
}

/// The Machine shape of API.md, for any provider.
#[track_caller]
pub fn assert_machine_shape(m: &Value) {
    assert!(m["id"].as_str().is_some_and(|s| !s.is_empty()), "id: {m}");
    let status = m["status"].as_str().unwrap_or_else(|| panic!("status is a string: {m}"));
    assert!(["Pending", "Running", "Succeeded", "Failed", "Unknown"].contains(&status), "status: {m}");
    assert!(m["ready"].is_boolean(), "ready is a real boolean: {m}");
    assert!(m["image"].is_string(), "image: {m}");
    if let Some(t) = m.get("startTime").filter(|t| !t.is_null()) {
        assert!(t.as_str().is_some_and(is_millis_rfc3339), "startTime: {m}");
    }
    if let Some(d) = m.get("imageDigest") {
        assert!(d.as_str().is_some_and(|d| d.starts_with("sha256:")), "imageDigest: {m}");
    }
    assert_string_map(&m["labels"], "labels");
    let c = &m["controller"];
    assert!(
        c.is_null() || (c["name"].is_string() && c["kind"].is_string() && c["apiVersion"].is_string()),
        "{m}"
    );
    let r = m["resources"].as_object().unwrap_or_else(|| panic!("resources is an object: {m}"));
    for (k, v) in r {
        assert!(k == "limits" || k == "requests", "resources.{k}: {m}");
        assert_string_map(v, "resources quantities");
    }
    let containers = m["containers"].as_array().unwrap_or_else(|| panic!("containers: {m}"));
    assert!(!containers.is_empty(), "{m}");
    for c in containers {
        assert!(c["name"].is_string() && c["image"].is_string(), "container: {c}");
        assert!(c["ready"].is_boolean(), "container ready: {c}");
        assert!(c["restartCount"].is_u64(), "restartCount: {c}");
    }
}

/// The Controller shape of API.md, machines included.
#[track_caller]
pub fn assert_controller_shape(c: &Value) {
    assert!(c["name"].is_string(), "name: {c}");
    assert!(c["replicas"].is_u64(), "replicas is an integer: {c}");
    assert!(c["readyReplicas"].is_u64(), "readyReplicas is an integer: {c}");
    assert_string_map(&c["labels"], "labels");
    assert_string_map(&c["providerMetadata"], "providerMetadata");
    let machines = c["machines"].as_array().unwrap_or_else(|| panic!("machines: {c}"));
    machines.iter().for_each(assert_machine_shape);
}

/// The Service shape of API.md.
#[track_caller]
pub fn assert_service_shape(s: &Value) {
    assert!(s["name"].is_string(), "name: {s}");
    assert_string_map(&s["labels"], "labels");
    for p in s["ports"].as_array().unwrap_or_else(|| panic!("ports: {s}")) {
        assert!(p["port"].is_u64() && p["protocol"].is_string(), "port: {p}");
    }
}

/// The headers every response carries.
#[track_caller]
pub fn assert_common_headers(r: &Reply) {
    assert_eq!(r.header("x-api-version"), Some("v1"), "{r:?}");
    assert!(r.header("x-request-id").is_some_and(|v| !v.is_empty()), "{r:?}");
}

// Seeding and list helpers shared by the k8s REST tests.

/// Two containers (`app` with `image`, and a sidecar) with requests and limits.
pub fn containers(image: &str) -> Value {
    json!([
        {"name": "app", "image": image, "ports": [{"containerPort": 8080}],
         "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}}},
        {"name": "sidecar", "image": "busybox:1.36", "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}}}
    ])
}

/// A Deployment, StatefulSet or ReplicaSet manifest selecting on `labels["app"]`.
pub fn workload(kind: &str, name: &str, replicas: u32, labels: Value) -> Value {
    let mut selector = serde_json::Map::new();
    selector.insert("app".into(), labels["app"].clone());
    let mut o = json!({
        "apiVersion": "apps/v1", "kind": kind,
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": containers("nginx:1.25")}}
        }
    });
    if kind == "StatefulSet" {
        o["spec"]["serviceName"] = json!(name);
    }
    o
}

/// Creates `obj` straight in the sandbox store (as another client would).
pub fn create(op: &Operator, gvr: Gvr, ns: &str, obj: Value) {
    op.sandbox.store.create(&gvr, ns, obj).expect("seed object");
}

/// The body as a bare array (panics with the body otherwise).
pub fn items(v: &Value) -> &Vec<Value> {
    v.as_array().unwrap_or_else(|| panic!("a bare array: {v}"))
}

/// A check: exactly `n` machines, all ready.
pub fn all_ready(n: usize) -> impl Fn(&Value) -> bool {
    move |v| v.as_array().is_some_and(|a| a.len() == n && a.iter().all(|m| m["ready"] == true))
}

/// Machines whose id starts with `prefix`.
pub fn by_id<'a>(machines: &'a [Value], prefix: &str) -> Vec<&'a Value> {
    machines.iter().filter(|m| m["id"].as_str().is_some_and(|id| id.starts_with(prefix))).collect()
}

/// The ids of a list of machines.
pub fn ids(list: &Value) -> BTreeSet<String> {
    items(list).iter().filter_map(|m| m["id"].as_str().map(String::from)).collect()
}
