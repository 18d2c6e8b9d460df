//! Test hooks (stats, faults), bearer tokens, and `--state`.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use machinist_sandbox::{Gvr, Sandbox, SandboxOptions};
use serde_json::{Value, json};

use crate::common;

async fn hook(sb: &Sandbox, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut req = common::http().request(method, format!("{}{path}", sb.url()));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("hook");
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.expect("json")
}

fn count(stats: &Value, verb: &str, resource: &str) -> u64 {
    stats["requests"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter(|e| e["verb"] == verb && e["resource"] == resource)
                .filter_map(|e| e["count"].as_u64())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn stats_count_requests_by_verb_resource_and_user() {
    let (sb, c) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    hook(&sb, reqwest::Method::DELETE, "/sandbox/stats", None).await;
    let api: Api<ConfigMap> = Api::namespaced(c, &ns);
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x"}})).expect("cm");
    api.create(&PostParams::default(), &cm).await.expect("create");
    api.get("x").await.expect("get");
    api.get("x").await.expect("get");
    api.list(&ListParams::default()).await.expect("list");
    let s = hook(&sb, reqwest::Method::GET, "/sandbox/stats", None).await;
    assert_eq!(
        (count(&s, "create", "configmaps"), count(&s, "get", "configmaps"), count(&s, "list", "configmaps")),
        (1, 2, 1)
    );
    assert_eq!(s["total"], 4, "hooks themselves are not counted: {s}");
    assert_eq!(s["by_user"]["anonymous"], 4);
    let s = hook(&sb, reqwest::Method::DELETE, "/sandbox/stats", None).await;
    assert_eq!(s["total"], 0);
}

/// What the RBAC test relies on: each entry names the namespace and object, a subresource is recorded as
/// `resource/subresource`, and a server-side apply that creates its object is a `patch` plus a `create` (the
/// two authorization decisions of a real API server); applying it again is a `patch` only.
#[tokio::test]
async fn stats_record_namespace_name_subresource_and_the_create_an_apply_implies() {
    let (sb, c) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    hook(&sb, reqwest::Method::DELETE, "/sandbox/stats", None).await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), &ns);
    let cm =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1"}});
    let params = kube::api::PatchParams::apply("test").force();
    for _ in 0..2 {
        api.patch("applied", &params, &kube::api::Patch::Apply(&cm)).await.expect("apply");
    }
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
    sb.store.create(&Gvr::deployments(), &ns, deploy).expect("seeded through the store: not recorded");
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(c, &ns);
    deployments.get_scale("web").await.expect("get /scale");

    let s = hook(&sb, reqwest::Method::GET, "/sandbox/stats", None).await;
    let entries: Vec<(String, String, String, String, u64)> = s["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|e| {
            let f = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (f("verb"), f("resource"), f("namespace"), f("name"), e["count"].as_u64().unwrap_or(0))
        })
        .collect();
    let want = |verb: &str, resource: &str, name: &str, count: u64| {
        (verb.to_string(), resource.to_string(), ns.clone(), name.to_string(), count)
    };
    assert_eq!(
        entries,
        vec![
            want("create", "configmaps", "applied", 1),
            want("get", "deployments/scale", "web", 1),
            want("patch", "configmaps", "applied", 2),
        ],
        "{s}"
    );
}

#[tokio::test]
async fn a_token_is_required_when_set_and_names_the_user() {
    let opts = SandboxOptions { test_hooks: true, token: Some("s3cret".into()), ..SandboxOptions::default() };
    let (sb, c) = common::start_with(opts).await;
    assert!(sb.kubeconfig_yaml().contains("token: 's3cret'"));
    let r = common::http().get(format!("{}/api/v1/namespaces", sb.url())).send().await.expect("send");
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.expect("status");
    assert_eq!((v["kind"].as_str(), v["reason"].as_str()), (Some("Status"), Some("Unauthorized")));
    let r = common::http()
        .get(format!("{}/api/v1/namespaces", sb.url()))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(c);
    assert!(!nss.list(&ListParams::default()).await.expect("authorized list").items.is_empty());
    let r = common::http()
        .get(format!("{}/sandbox/stats", sb.url()))
        .bearer_auth("s3cret")
        .send()
        .await
        .expect("stats");
    let s: Value = r.json().await.expect("json");
    assert_eq!(s["by_user"]["admin"], 1);
    assert!(!s.to_string().contains("s3cret"), "the token is never recorded");
}

#[tokio::test]
async fn faults_inject_errors_429_with_retry_after_and_latency() {
    let (sb, c) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let api: Api<ConfigMap> = Api::namespaced(c, &ns);
    hook(
        &sb,
        reqwest::Method::POST,
        "/sandbox/faults",
        Some(json!({"errors": [{"code": 429, "count": 2, "verbs": ["list"], "retry_after_secs": 3}]})),
    )
    .await;
    let r = common::http()
        .get(format!("{}/api/v1/namespaces/{ns}/configmaps", sb.url()))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("3"));
    let err = api.list(&ListParams::default()).await.expect_err("throttled");
    assert!(matches!(err, kube::Error::Api(s) if s.code == 429 && s.reason == "TooManyRequests"));
    api.list(&ListParams::default()).await.expect("count exhausted");
    hook(&sb, reqwest::Method::POST, "/sandbox/faults", Some(json!({"error_rate": {"500": 1.0}}))).await;
    let err = api.get("x").await.expect_err("500");
    assert!(matches!(err, kube::Error::Api(s) if s.code == 500 && s.reason == "InternalError"));
    hook(&sb, reqwest::Method::POST, "/sandbox/faults", Some(json!({"latency_ms": 300}))).await;
    let t = Instant::now();
    api.list(&ListParams::default()).await.expect("slow list");
    assert!(t.elapsed() >= Duration::from_millis(300));
    let f = hook(&sb, reqwest::Method::DELETE, "/sandbox/faults", None).await;
    assert_eq!(f["latency_ms"], 0);
    let t = Instant::now();
    api.list(&ListParams::default()).await.expect("fast list");
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn hooks_are_absent_unless_enabled() {
    let (sb, _c) = common::start_with(SandboxOptions::default()).await;
    let r = common::http().get(format!("{}/sandbox/stats", sb.url())).send().await.expect("send");
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn state_file_persists_objects_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.json");
    let opts = SandboxOptions { state_file: Some(path.clone()), ..SandboxOptions::default() };
    let sb = Sandbox::start(opts.clone()).await.expect("start");
    let ns = common::fresh_namespace(&sb);
    let cm = sb.store.create(
        &Gvr::new("", "v1", "configmaps"),
        &ns,
        json!({"metadata": {"name": "kept"}, "data": {"a": "1"}}),
    );
    let uid = cm.expect("cm")["metadata"]["uid"].clone();
    let rv = sb.store.resource_version();
    sb.shutdown().await;
    assert!(path.exists());
    let sb = Sandbox::start(opts).await.expect("restart");
    let back = sb.store.get(&Gvr::new("", "v1", "configmaps"), &ns, "kept").expect("loaded");
    assert_eq!((back["metadata"]["uid"].clone(), back["data"]["a"].clone()), (uid, json!("1")));
    assert!(sb.store.resource_version() >= rv, "resourceVersions keep growing");
    assert!(sb.store.resource_type(&Gvr::httproutes()).is_some(), "CRDs come back");
    let c = common::client_for(&sb, false).await;
    let api: Api<ConfigMap> = Api::namespaced(c, &ns);
    assert_eq!(api.get("kept").await.expect("served").data.unwrap_or_default()["a"], "1");
}

#[tokio::test]
async fn the_written_kubeconfig_is_private_and_usable() {
    let (sb, _c) = common::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/kubeconfig");
    sb.write_kubeconfig(&path).expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0, "only the user may read it");
    }
    let text = std::fs::read_to_string(&path).expect("read");
    let kc = kube::config::Kubeconfig::from_yaml(&text).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.expect("config");
    let client = kube::Client::try_from(cfg).expect("client");
    let v = client.apiserver_version().await.expect("version");
    assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "32"));
    assert!(sb.banner(Some(&path)).contains(&format!("export KUBECONFIG={}", path.display())));
}
