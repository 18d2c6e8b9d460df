//! The exact requests of the `/scale` write and of server-side apply, against a scripted fake API server
//! on 127.0.0.1 (controller-rs style: where the request itself is the behaviour).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};

use super::*;
use crate::cache::kinds;
use crate::reconcile::run::{Reconciler, Scalers};

#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    uri: String,
    content_type: String,
    body: Value,
}

#[derive(Default)]
struct Fake {
    replicas: i32,
    rv: u64,
    /// Answers to give to the next PUTs of /scale before behaving normally.
    script: Vec<(u16, u32)>,
    /// Before each PUT, someone else changes the workload this many times (a 409 each).
    racers: u32,
    seen: Vec<Seen>,
}

type Shared = Arc<Mutex<Fake>>;

fn status(code: u16, reason: &str, retry_after: u32) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
        "message": format!("scripted {reason}"), "details": {"retryAfterSeconds": retry_after}});
    (StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(body))
        .into_response()
}

fn deployment_json(f: &Fake) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "resourceVersion": f.rv.to_string(),
                     "labels": {"app": "web"}, "managedFields": [{"manager": "kubectl"}]},
        "spec": {"replicas": f.replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}},
        "status": {"replicas": f.replicas, "readyReplicas": f.replicas}})
}

async fn handle(
    State(fake): State<Shared>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut f = fake.lock().unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let content_type =
        headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    f.seen.push(Seen { method: method.clone(), uri: uri.to_string(), content_type, body: body.clone() });
    let path = uri.path();
    let scale = |f: &Fake| {
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": f.rv.to_string()},
            "spec": {"replicas": f.replicas}, "status": {"replicas": f.replicas}})
    };
    match (method, path) {
        (Method::GET, "/apis/apps/v1/namespaces/default/deployments/web/scale") => axum::Json(scale(&f)).into_response(),
        (Method::PUT, "/apis/apps/v1/namespaces/default/deployments/web/scale") => {
            if f.racers > 0 {
                f.racers -= 1;
                f.rv += 1;
            }
            if !f.script.is_empty() {
                let (code, retry) = f.script.remove(0);
                return status(code, "Scripted", retry);
            }
            if body["metadata"]["resourceVersion"].as_str() != Some(f.rv.to_string().as_str()) {
                return status(409, "Conflict", 0);
            }
            f.replicas = body["spec"]["replicas"].as_i64().unwrap_or(-1) as i32;
            f.rv += 1;
            axum::Json(scale(&f)).into_response()
        }
        (Method::GET, "/apis/apps/v1/namespaces/default/deployments/web") => axum::Json(deployment_json(&f)).into_response(),
        (Method::PATCH, "/apis/apps/v1/namespaces/default/deployments/web") => {
            let mut applied = body.clone();
            applied["metadata"]["resourceVersion"] = json!(f.rv.to_string());
            applied["metadata"]["managedFields"] = json!([{"manager": "machinist", "operation": "Apply"}]);
            axum::Json(applied).into_response()
        }
        (Method::PATCH, "/api/v1/namespaces/default/secrets/creds") => {
            axum::Json(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "default"},
                "data": {"password": "c2VjcmV0"}}))
            .into_response()
        }
        _ => status(404, "NotFound", 0),
    }
}

struct Bed {
    fake: Shared,
    cache: Arc<Cache>,
    client: Client,
}

async fn bed(replicas: i32) -> Bed {
    let fake: Shared = Arc::new(Mutex::new(Fake { replicas, rv: 100, ..Default::default() }));
    let app = Router::new().fallback(handle).with_state(Arc::clone(&fake));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    let client = crate::provider::k8s::client::client_with(config, false).unwrap();
    let cache = Arc::new(Cache::new_k8s(vec!["default".into()]));
    for kind in kinds::ALL {
        cache.skip_kind(kind);
    }
    let object: Deployment = serde_json::from_value(deployment_json(&fake.lock().unwrap())).unwrap();
    cache.apply(&object);
    Bed { fake, cache, client }
}

fn fast() -> RetryBudget {
    RetryBudget {
        attempts: 5,
        base: Duration::from_millis(2),
        max: Duration::from_millis(20),
        max_throttle_wait: Duration::from_secs(5),
    }
}

fn puts(fake: &Shared) -> Vec<Seen> {
    fake.lock().unwrap().seen.iter().filter(|s| s.method == Method::PUT).cloned().collect()
}

#[tokio::test]
async fn scale_puts_only_replicas_with_the_resource_version_it_read() {
    let b = bed(3).await;
    let scaler = K8sScaler::new(b.client.clone(), Arc::clone(&b.cache), fast());
    let scaled = scaler.scale("default".into(), "web".into(), None, 5).await.unwrap();
    assert_eq!((scaled.previous, scaled.applied, scaled.kind), (3, 5, ControllerKind::Deployment));
    let puts = puts(&b.fake);
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0].body["metadata"]["resourceVersion"], "100");
    assert_eq!(puts[0].body["spec"], json!({"replicas": 5}));
    assert_eq!(puts[0].body["kind"], "Scale");
    // Read-your-writes: the cache serves the new count before the watch would have told it.
    let served: Value = serde_json::from_str(scaled.controller.unwrap().get()).unwrap();
    assert_eq!(served["replicas"], 5);
    assert_eq!(b.cache.resolve_controller("default", "web", None).unwrap().replicas, 5);
}

#[tokio::test]
async fn a_conflict_is_reread_and_retried_and_never_surfaces() {
    let b = bed(3).await;
    b.fake.lock().unwrap().racers = 3;
    let scaler = K8sScaler::new(b.client.clone(), Arc::clone(&b.cache), fast());
    let scaled = scaler.scale("default".into(), "web".into(), None, 6).await.unwrap();
    assert_eq!(scaled.applied, 6);
    let seen = b.fake.lock().unwrap().seen.clone();
    let gets = seen.iter().filter(|s| s.method == Method::GET && s.uri.ends_with("/scale")).count();
    let puts = puts(&b.fake);
    // The first PUT takes the cached resourceVersion (no GET); each 409 re-reads /scale before the next PUT.
    assert_eq!((gets, puts.len()), (3, 4), "each 409 re-reads /scale before the next PUT");
    assert_eq!(puts[0].body["metadata"]["resourceVersion"], "100");
    assert_eq!(puts[3].body["metadata"]["resourceVersion"], "103");
    assert_eq!(b.fake.lock().unwrap().replicas, 6);
}

#[tokio::test]
async fn conflicts_beyond_the_budget_become_a_conflict_error() {
    let b = bed(3).await;
    b.fake.lock().unwrap().racers = 50;
    let scaler = K8sScaler::new(b.client.clone(), Arc::clone(&b.cache), fast());
    let err = scaler.scale("default".into(), "web".into(), None, 6).await.unwrap_err();
    assert!(matches!(err, ProviderError::Conflict(_)), "{err:?}");
    assert_eq!(puts(&b.fake).len(), 5);
}

#[tokio::test]
async fn throttling_waits_the_retry_after_then_succeeds() {
    let b = bed(3).await;
    b.fake.lock().unwrap().script = vec![(429, 1), (503, 0)];
    let scaler = K8sScaler::new(b.client.clone(), Arc::clone(&b.cache), fast());
    let started = Instant::now();
    let scaled = scaler.scale("default".into(), "web".into(), None, 2).await.unwrap();
    assert_eq!(scaled.applied, 2);
    assert!(started.elapsed() >= Duration::from_millis(950), "waited {:?}", started.elapsed());
    assert_eq!(puts(&b.fake).len(), 3);
}

#[tokio::test]
async fn a_target_already_at_the_count_is_not_written() {
    let b = bed(4).await;
    let scaler = K8sScaler::new(b.client.clone(), Arc::clone(&b.cache), fast());
    let scaled = scaler.scale("default".into(), "web".into(), None, 4).await.unwrap();
    assert_eq!((scaled.previous, scaled.applied), (4, 4));
    assert!(puts(&b.fake).is_empty());
}

#[tokio::test]
async fn a_missing_target_is_not_found_without_any_request() {
    let b = bed(4).await;
    let scaler = K8sScaler::new(b.client.clone(), Arc::clone(&b.cache), fast());
    let err = scaler.scale("default".into(), "api".into(), None, 4).await.unwrap_err();
    assert!(matches!(err, ProviderError::NotFound(_)));
    assert!(b.fake.lock().unwrap().seen.is_empty());
}

fn writes(b: &Bed) -> K8sWrites {
    let scaler = Arc::new(K8sScaler::new(b.client.clone(), Arc::clone(&b.cache), fast()));
    let reconciler = Reconciler::new(Scalers { k8s: Some(scaler), ecs: None });
    K8sWrites::new(b.client.clone(), Arc::clone(&b.cache), reconciler, Duration::from_secs(10))
}

#[tokio::test]
async fn manifest_apply_is_server_side_apply_by_machinist_with_force() {
    let b = bed(3).await;
    let w = writes(&b);
    let manifest = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "resourceVersion": "1", "labels": {"app": "web"}},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}}});
    let applied = w.apply("default".into(), ManifestKind::Controller, manifest).await.unwrap();
    let seen = b.fake.lock().unwrap().seen.last().cloned().unwrap();
    assert_eq!(seen.method, Method::PATCH);
    assert!(seen.uri.contains("fieldManager=machinist") && seen.uri.contains("force=true"), "{}", seen.uri);
    assert_eq!(seen.content_type, "application/apply-patch+yaml");
    assert_eq!(
        seen.body["metadata"],
        json!({"name": "web", "namespace": "default", "labels": {"app": "web"}})
    );
    assert!(seen.body["spec"].get("replicas").is_none(), "an omitted replicas stays omitted");
    assert!(applied["metadata"].get("managedFields").is_none());
}

#[tokio::test]
async fn a_secret_is_applied_but_never_echoed_nor_cached() {
    let b = bed(3).await;
    let w = writes(&b);
    let manifest = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
        "stringData": {"password": "secret"}});
    let answer = w.apply("default".into(), ManifestKind::Secret, manifest).await.unwrap();
    assert_eq!(answer, Value::Null);
    let seen = b.fake.lock().unwrap().seen.last().cloned().unwrap();
    assert!(seen.uri.starts_with("/api/v1/namespaces/default/secrets/creds"));
}

#[tokio::test]
async fn rest_scale_goes_through_the_queue_and_answers_the_controller() {
    let b = bed(3).await;
    let w = writes(&b);
    let target = ControllerTarget { scope: "default".into(), name: "web".into(), kind: None };
    let fragment = w.scale(target.clone(), 7).await.unwrap();
    let served: Value = serde_json::from_str(fragment.get()).unwrap();
    assert_eq!((served["name"].as_str(), served["replicas"].as_i64()), (Some("web"), Some(7)));
    // The same request again: same answer, nothing written.
    let again: Value = serde_json::from_str(w.scale(target, 7).await.unwrap().get()).unwrap();
    assert_eq!(again["replicas"], 7);
    assert_eq!(puts(&b.fake).len(), 1);
}
