//! Every route's status and body shape, every problem, the headers, and the OpenAPI schemas of real replies.

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};

use super::{app, get, k8s_only, schema, send, send_request};
use crate::provider::ProviderError;

fn deployment(name: Option<&str>, namespace: Option<&str>) -> Value {
    let mut metadata = serde_json::Map::new();
    if let Some(name) = name {
        metadata.insert("name".into(), json!(name));
    }
    if let Some(ns) = namespace {
        metadata.insert("namespace".into(), json!(ns));
    }
    json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": { "replicas": 1 } })
}

#[tokio::test]
async fn machine_reads() {
    let app = app();
    for prefix in ["", "/api/v1"] {
        let one = get(&app.router, &format!("{prefix}/k8s/machines/default/web-1")).await.ok();
        assert_eq!(one["id"], "web-1");
        assert_eq!(one["ready"], true);
        assert_eq!(one["controller"]["kind"], "Deployment");
        let all = get(&app.router, &format!("{prefix}/k8s/machines/default")).await.ok();
        assert_eq!(all.as_array().map(Vec::len), Some(2));
    }
    let absent = get(&app.router, "/k8s/machines/default/web-9").await.problem(404, "not-found");
    assert_eq!(absent["instance"], "/k8s/machines/default/web-9");
    assert_eq!(get(&app.router, "/ecs/machines/my_cluster/web-1").await.ok()["id"], "web-1");
}

#[tokio::test]
async fn label_filters_accept_both_encodings_and_and_them() {
    let app = app();
    let ids = |v: Value| -> Vec<String> {
        v.as_array().into_iter().flatten().filter_map(|m| m["id"].as_str().map(String::from)).collect()
    };
    let r = &app.router;
    assert_eq!(ids(get(r, "/k8s/machines/default?labels=tier%3Dfront").await.ok()), ["web-1"]);
    assert_eq!(ids(get(r, "/k8s/machines/default?labels[]=tier=back").await.ok()), ["web-2"]);
    assert_eq!(ids(get(r, "/k8s/machines/default?labels%5B%5D=tier%3Dback").await.ok()), ["web-2"]);
    assert_eq!(ids(get(r, "/k8s/machines/default?labels=app%3Dweb").await.ok()), ["web-1", "web-2"]);
    let both = get(r, "/k8s/machines/default?labels=app%3Dweb&labels[]=tier=front").await.ok();
    assert_eq!(ids(both), ["web-1"]);
    assert!(ids(get(r, "/k8s/machines/default?labels=app%3Dweb&labels=tier%3Dnone").await.ok()).is_empty());
    // Split on the first `=` only: the value keeps the rest.
    assert!(ids(get(r, "/k8s/machines/default?labels=tier%3Dfront%3Dx").await.ok()).is_empty());
    let bad = get(r, "/k8s/machines/default?labels=tier").await.problem(400, "validation-failed");
    assert_eq!(bad["errors"][0]["field"], "labels");
    get(r, "/k8s/machines/default?labels[]=%3Dx").await.problem(400, "validation-failed");
    let services = get(r, "/k8s/services/default?labels=app%3Dweb").await.ok();
    assert_eq!(services[0]["ports"][0]["port"], 3042);
    assert_eq!(get(r, "/k8s/services/default?labels=app%3Dother").await.ok(), json!([]));
}

#[tokio::test]
async fn controller_reads_and_hints() {
    let app = app();
    let r = &app.router;
    let list = get(r, "/k8s/controllers/default").await.ok();
    assert_eq!(list["controllers"][0]["name"], "web");
    assert_eq!(list["controllers"][0]["providerMetadata"]["kind"], "Deployment");
    assert_eq!(
        get(r, "/k8s/controllers/default?machineId=web-1").await.ok()["controllers"][0]["name"],
        "web"
    );
    assert_eq!(get(r, "/k8s/controllers/default?machineId=other").await.ok(), json!({"controllers": []}));
    let one = get(r, "/k8s/controllers/default/web").await.ok();
    assert_eq!(one["controller"]["machines"].as_array().map(Vec::len), Some(2));

    get(r, "/k8s/controllers/default/web?kind=StatefulSet&apiVersion=apps%2Fv1&extra=1").await.ok();
    get(r, "/k8s/controllers/default/web?kind=ReplicationController").await.ok();
    assert_eq!(
        app.k8s.calls(),
        [
            "controller default/web None",
            "controller default/web Some(StatefulSet)",
            "controller default/web Some(ReplicationController)"
        ]
    );
    let bad = get(r, "/k8s/controllers/default/web?kind=Deployment&apiVersion=v1").await;
    assert_eq!(bad.problem(400, "validation-failed")["errors"][0]["field"], "apiVersion");
    get(r, "/k8s/controllers/default/web?kind=CronJob").await.problem(400, "validation-failed");
    get(r, "/k8s/controllers/default/nope").await.problem(404, "not-found");

    // ecs ignores k8s hints, even ones k8s would refuse.
    get(r, "/ecs/controllers/my_cluster/web?kind=Deployment&apiVersion=apps%2Fv1").await.ok();
    get(r, "/ecs/controllers/my_cluster/web?kind=CronJob").await.ok();
    assert_eq!(app.ecs.calls(), ["controller my_cluster/web None", "controller my_cluster/web None"]);
}

#[tokio::test]
async fn gateway_reads_and_capabilities() {
    let app = app();
    let r = &app.router;
    assert_eq!(get(r, "/k8s/gateway/gateways/default").await.ok()[0]["kind"], "Gateway");
    let route = get(r, "/k8s/gateway/httproutes/default/route-1").await.ok();
    assert!(route["status"]["parents"].is_array());
    get(r, "/k8s/gateway/httproutes/default/absent").await.problem(404, "not-found");
    let no = get(r, "/ecs/gateway/gateways/my_cluster").await.problem(501, "capability-not-supported");
    assert!(no["detail"].as_str().is_some_and(|d| d.contains("ecs")));
    get(r, "/ecs/gateway/httproutes/my_cluster/r").await.problem(501, "capability-not-supported");
    let put = send(r, "PUT", "/ecs/controllers/my_cluster", Some(deployment(Some("web"), None))).await;
    put.problem(501, "capability-not-supported");
    assert!(app.ecs.calls().is_empty());
}

#[tokio::test]
async fn providers_lists_enabled_and_disabled() {
    let app = k8s_only();
    let list = get(&app.router, "/providers").await.ok();
    assert_eq!(list[0]["name"], "k8s");
    assert_eq!(list[0]["enabled"], true);
    assert_eq!(list[0]["capabilities"]["httproutes"], true);
    assert_eq!(list[1]["name"], "ecs");
    assert_eq!(list[1]["enabled"], false);
    assert_eq!(get(&app.router, "/api/v1/providers").await.ok(), list);
    let both = get(&super::app().router, "/providers").await.ok();
    assert_eq!(both[1]["capabilities"]["apply"], false);
    assert_eq!(both[1]["enabled"], true);
}

#[tokio::test]
async fn scale_validates_replicas_and_is_sent_once() {
    let app = app();
    let r = &app.router;
    let uri = "/k8s/controllers/default/web?kind=Deployment&apiVersion=apps%2Fv1";
    let scaled = send(r, "POST", uri, Some(json!({"replicas": 5}))).await.ok();
    assert_eq!(scaled["replicas"], 5);
    send(r, "POST", "/api/v1/k8s/controllers/default/web", Some(json!({"replicas": 0}))).await.ok();
    for bad in [
        json!({"replicas": -1}),
        json!({"replicas": 1.5}),
        json!({"replicas": "3"}),
        json!({"replicas": 1e30}),
        json!({"replicas": 1_000_001}),
        json!({"replicas": null}),
        json!({}),
        json!([3]),
    ] {
        let problem = send(r, "POST", "/k8s/controllers/default/web", Some(bad.clone())).await;
        let body = problem.problem(400, "validation-failed");
        assert!(body["errors"].as_array().is_some_and(|e| !e.is_empty()), "{bad}: {body}");
    }
    assert_eq!(
        app.k8s.calls(),
        ["scale default/web Some(Deployment) 5", "scale default/web None 0"],
        "invalid bodies must not reach the provider"
    );
    let ecs =
        send(r, "POST", "/ecs/controllers/my_cluster/web?kind=Deployment", Some(json!({"replicas": 2})));
    assert_eq!(ecs.await.ok()["replicas"], 2);
    assert_eq!(app.ecs.calls(), ["scale my_cluster/web None 2"]);
}

#[tokio::test]
async fn deletes_answer_200_with_a_body() {
    let app = app();
    let r = &app.router;
    let body = send(r, "DELETE", "/k8s/controllers/default/web", None).await.ok();
    assert_eq!(body, json!({"status": "Success", "name": "web", "deleted": true}));
    let svc = send(r, "DELETE", "/k8s/services/default/web", None).await.ok();
    assert_eq!(svc, json!({"status": "Success", "name": "web", "deleted": true}));
    let ecs = send(r, "DELETE", "/ecs/services/my_cluster/web", None).await.ok();
    assert_eq!(ecs, json!({"status": "Success", "name": "web", "deleted": false}));
    let route = send(r, "DELETE", "/k8s/gateway/httproutes/default/route-1", None).await.ok();
    assert_eq!(route["deleted"], true);
    assert_eq!(
        app.k8s.calls(),
        [
            "delete_controller default/web None",
            "delete_service default/web",
            "delete_httproute default/route-1"
        ]
    );
}

#[tokio::test]
async fn label_patch_merges_and_validates() {
    let app = app();
    let r = &app.router;
    let body = json!({"labels": {"team": "a", "old": null}});
    let machine = send(r, "PATCH", "/k8s/machines/default/web-1/labels", Some(body)).await.ok();
    assert_eq!(machine["id"], "web-1");
    assert_eq!(app.k8s.calls(), [r#"patch_labels default/web-1 {"old": None, "team": Some("a")}"#]);
    for bad in [
        json!({"labels": {"bad key": "x"}}),
        json!({"labels": {"ok": "-bad-"}}),
        json!({"labels": {"ok": 3}}),
        json!({"labels": ["a"]}),
        json!({"other": {}}),
    ] {
        send(r, "PATCH", "/k8s/machines/default/web-1/labels", Some(bad))
            .await
            .problem(400, "validation-failed");
    }
    assert_eq!(app.k8s.calls().len(), 1);
    // ECS tags follow ECS rules, not Kubernetes ones.
    send(r, "PATCH", "/ecs/machines/my_cluster/web-1/labels", Some(json!({"labels": {"Team Name": "A b"}})))
        .await
        .ok();
}

#[tokio::test]
async fn manifest_puts_validate_against_route_and_namespace() {
    let app = app();
    let r = &app.router;
    let applied = send(r, "PUT", "/k8s/controllers/default", Some(deployment(Some("web"), None))).await.ok();
    assert_eq!(applied["metadata"]["namespace"], "default");
    send(r, "PUT", "/k8s/controllers/default", Some(deployment(Some("web"), Some("default")))).await.ok();
    let mismatch =
        send(r, "PUT", "/k8s/controllers/default", Some(deployment(Some("web"), Some("prod")))).await;
    assert_eq!(mismatch.problem(400, "validation-failed")["errors"][0]["field"], "metadata.namespace");
    let unnamed = send(r, "PUT", "/k8s/controllers/default", Some(deployment(None, None))).await;
    assert_eq!(unnamed.problem(400, "validation-failed")["errors"][0]["field"], "metadata.name");
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}});
    send(r, "PUT", "/k8s/controllers/default", Some(svc.clone())).await.problem(400, "validation-failed");
    assert_eq!(send(r, "PUT", "/k8s/services/default", Some(svc)).await.ok()["kind"], "Service");
    let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"}});
    send(r, "PUT", "/api/v1/k8s/controllers/default", Some(sts)).await.ok();
    let route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "route-1"}, "spec": {}});
    assert_eq!(
        send(r, "PUT", "/k8s/gateway/httproutes/default", Some(route)).await.ok()["kind"],
        "HTTPRoute"
    );
    // kind and apiVersion default to the route's; a present apiVersion must still match.
    let bare = json!({"metadata": {"name": "web"}});
    let applied = send(r, "PUT", "/k8s/controllers/default", Some(bare)).await.ok();
    assert_eq!((&applied["kind"], &applied["apiVersion"]), (&json!("Deployment"), &json!("apps/v1")));
    let wrong = json!({"apiVersion": "v1", "kind": "Deployment", "metadata": {"name": "web"}});
    send(r, "PUT", "/k8s/controllers/default", Some(wrong)).await.problem(400, "validation-failed");
    assert_eq!(app.k8s.calls().len(), 6, "{:?}", app.k8s.calls());
}

#[tokio::test]
async fn secrets_are_applied_and_never_echoed() {
    let app = app();
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
        "stringData": {"password": "hunter2"}});
    let reply = send(&app.router, "PUT", "/k8s/secrets/default", Some(secret)).await;
    assert_eq!(reply.ok(), json!({"status": "Success", "name": "creds"}));
    assert!(!reply.text.contains("hunter2"));
    let bad = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "x"},
        "stringData": {"password": "hunter2"}});
    let reply = send(&app.router, "PUT", "/k8s/secrets/default", Some(bad)).await;
    reply.problem(400, "validation-failed");
    assert!(!reply.text.contains("hunter2"));
    let malformed = Request::builder()
        .method("PUT")
        .uri("/k8s/secrets/default")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"stringData": {"password": "hunter2""#))
        .unwrap_or_default();
    let reply = send_request(&app.router, malformed).await;
    reply.problem(400, "bad-request");
    assert!(!reply.text.contains("hunter2"));
}

#[tokio::test]
async fn provider_and_scope_problems() {
    let app = k8s_only();
    let r = &app.router;
    get(r, "/ecs/machines/my_cluster").await.problem(404, "provider-not-enabled");
    send(r, "POST", "/ecs/controllers/c/web", Some(json!({"replicas": 1})))
        .await
        .problem(404, "provider-not-enabled");
    get(r, "/azure/machines/default").await.problem(404, "not-found");
    get(r, "/k8s/machines/other").await.problem(404, "scope-not-watched");
    get(r, "/api/v1/k8s/controllers/other").await.problem(404, "scope-not-watched");
}

#[tokio::test]
async fn path_segments_must_be_kubernetes_names() {
    let app = app();
    let r = &app.router;
    get(r, "/k8s/machines/Default").await.problem(400, "bad-request");
    get(r, "/k8s/machines/default/web_1").await.problem(400, "bad-request");
    get(r, &format!("/k8s/machines/default/{}", "a".repeat(254))).await.problem(400, "bad-request");
    get(r, &format!("/k8s/machines/{}", "a".repeat(64))).await.problem(400, "bad-request");
    get(r, "/k8s/machines/default/a%2Fb").await.problem(400, "bad-request");
    get(r, "/k8s/machines/default/..").await.problem(400, "bad-request");
    send(r, "POST", "/k8s/controllers/default/We", Some(json!({"replicas": 1})))
        .await
        .problem(400, "bad-request");
    send(r, "DELETE", "/k8s/services/-x/web", None).await.problem(400, "bad-request");
    get(r, "/ecs/machines/my.cluster").await.problem(400, "bad-request");
    assert!(app.k8s.calls().is_empty() && app.ecs.calls().is_empty());
}

async fn failing(fail: super::fake::Failure) -> super::Reply {
    let app = app();
    *app.k8s.fail.lock().unwrap_or_else(|e| e.into_inner()) = Some(fail);
    get(&app.router, "/k8s/machines/default").await
}

#[tokio::test]
async fn every_provider_error_maps_to_its_problem() {
    let reply = failing(|| ProviderError::NotReady { provider: "k8s", retry_after_secs: 3 }).await;
    reply.problem(503, "cache-not-ready");
    assert_eq!(reply.header("retry-after"), Some("3"));
    let reply = failing(|| ProviderError::NotReady { provider: "k8s", retry_after_secs: 600 }).await;
    assert_eq!(reply.header("retry-after"), Some("30"), "Retry-After is capped at 30 s");
    failing(|| ProviderError::NotFound("machine x".into())).await.problem(404, "not-found");
    let reply = failing(|| ProviderError::invalid("labels", "too many tags")).await;
    let body = reply.problem(400, "validation-failed");
    assert_eq!(body["errors"], json!([{"field": "labels", "message": "too many tags"}]));
    failing(|| ProviderError::Conflict("changed".into())).await.problem(409, "conflict");
    failing(|| ProviderError::CapabilityNotSupported("no".into()))
        .await
        .problem(501, "capability-not-supported");
    let reply = failing(|| ProviderError::Timeout { detail: "slow".into(), retry_after_secs: 2 }).await;
    reply.problem(504, "timeout");
    assert_eq!(reply.header("retry-after"), Some("2"));
    let reply = failing(|| ProviderError::Upstream("ECS answered 500 InternalError".into())).await;
    assert!(reply.problem(502, "upstream-error")["detail"].as_str().is_some_and(|d| d.contains("500")));
    let reply =
        failing(|| ProviderError::Throttled { detail: "throttled".into(), retry_after_secs: 4 }).await;
    assert_eq!(reply.problem(429, "rate-limit-exceeded")["retry_after"], 4);
    assert_eq!(reply.header("retry-after"), Some("4"));
    let reply =
        failing(|| ProviderError::ScopeNotWatched { scope_kind: "namespace", scope: "x".into() }).await;
    reply.problem(404, "scope-not-watched");
}

#[tokio::test]
async fn a_slow_write_gives_504_with_retry_after() {
    let app = app();
    *app.k8s.write_delay.lock().unwrap_or_else(|e| e.into_inner()) = Duration::from_secs(5);
    let started = std::time::Instant::now();
    let reply = send(&app.router, "POST", "/k8s/controllers/default/web", Some(json!({"replicas": 1}))).await;
    reply.problem(504, "timeout");
    assert!(
        reply
            .header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|s| (1..=30).contains(&s))
    );
    assert!(started.elapsed() < Duration::from_secs(4), "the write timeout bounds the wait");
}

#[tokio::test]
async fn http_level_errors_are_problems() {
    let app = app();
    let r = &app.router;
    let unknown = get(r, "/nothing/here").await.problem(404, "not-found");
    assert_eq!(unknown["instance"], "/nothing/here");
    get(r, "/k8s/machines/default/web-1/labels/extra").await.problem(404, "not-found");
    let wrong = send(r, "PUT", "/k8s/machines/default/web-1", None).await;
    wrong.problem(405, "method-not-allowed");
    assert!(wrong.header("allow").is_some_and(|a| a.contains("GET")));
    let text = Request::builder()
        .method("POST")
        .uri("/k8s/controllers/default/web")
        .header("content-type", "text/plain")
        .body(Body::from(r#"{"replicas":1}"#))
        .unwrap_or_default();
    send_request(r, text).await.problem(415, "unsupported-media-type");
    let malformed = Request::builder()
        .method("POST")
        .uri("/k8s/controllers/default/web")
        .header("content-type", "application/json")
        .body(Body::from("{\"replicas\":"))
        .unwrap_or_default();
    send_request(r, malformed).await.problem(400, "bad-request");
    let huge = format!(
        r#"{{"apiVersion":"v1","kind":"Secret","metadata":{{"name":"s"}},"data":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let large = Request::builder()
        .method("PUT")
        .uri("/k8s/secrets/default")
        .header("content-type", "application/json")
        .body(Body::from(huge))
        .unwrap_or_default();
    send_request(r, large).await.problem(413, "payload-too-large");
    assert!(app.k8s.calls().is_empty());
}

#[tokio::test]
async fn every_response_carries_version_and_request_id() {
    let app = app();
    for uri in ["/k8s/machines/default", "/nothing", "/k8s/machines/Bad", "/health/liveness"] {
        let reply = get(&app.router, uri).await;
        assert_eq!(reply.header("x-api-version"), Some("v1"), "{uri}");
        assert!(reply.header("x-request-id").is_some_and(|id| id.len() >= 16), "{uri}");
    }
    let request = Request::builder()
        .uri("/k8s/machines/default")
        .header("x-request-id", "caller-id-42")
        .body(Body::empty())
        .unwrap_or_default();
    assert_eq!(send_request(&app.router, request).await.header("x-request-id"), Some("caller-id-42"));
    let a = get(&app.router, "/providers").await;
    let b = get(&app.router, "/providers").await;
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
}

#[tokio::test]
async fn health_probes_follow_provider_health() {
    let app = app();
    let r = &app.router;
    let ready = get(r, "/health/readiness").await.ok();
    assert_eq!(ready["providers"][0]["name"], "k8s");
    assert_eq!(ready["providers"][0]["synced"], true);
    get(r, "/health/startup").await.ok();

    app.ecs.health.lock().unwrap_or_else(|e| e.into_inner()).healthy = false;
    get(r, "/health/startup").await.ok();
    let reply = get(r, "/health/readiness").await;
    assert!(reply.problem(503, "cache-not-ready")["detail"].as_str().is_some_and(|d| d.contains("ecs")));
    assert!(reply.header("retry-after").is_some());

    app.k8s.health.lock().unwrap_or_else(|e| e.into_inner()).synced = false;
    get(r, "/health/startup").await.problem(503, "cache-not-ready");
    assert_eq!(get(r, "/health/liveness").await.ok(), json!({"status": "ok"}));
}

#[tokio::test]
async fn readiness_fails_once_the_replica_is_stopping_and_liveness_does_not() {
    let stopping = tokio_util::sync::CancellationToken::new();
    let providers: Vec<std::sync::Arc<dyn crate::provider::Provider>> = vec![super::fake::Fake::k8s()];
    let router = crate::api::router(
        crate::api::ApiState::new(providers, Duration::from_secs(5)).with_stopping(stopping.clone()),
    );
    get(&router, "/health/readiness").await.ok();
    stopping.cancel();
    let reply = get(&router, "/health/readiness").await;
    reply.problem(503, "shutting-down");
    assert!(reply.header("retry-after").is_some());
    get(&router, "/health/startup").await.ok();
    get(&router, "/health/liveness").await.ok();
    get(&router, "/k8s/machines/default").await.ok();
}

#[tokio::test]
async fn metrics_use_route_templates() {
    let app = app();
    get(&app.router, "/k8s/machines/default/web-2").await.ok();
    let reply = get(&app.router, "/metrics").await;
    assert_eq!(reply.status, 200);
    assert!(reply.header("content-type").is_some_and(|c| c.starts_with("text/plain; version=0.0.4")));
    let line = reply
        .text
        .lines()
        .find(|l| l.starts_with("machinist_http_request_duration_seconds_count") && l.contains("web-2"));
    assert!(line.is_none(), "raw paths must not become label values");
    assert!(reply.text.lines().any(|l| l.starts_with("machinist_http_request_duration_seconds_count")
        && l.contains(r#"route="/{provider}/machines/{scope}/{id}""#)
        && l.contains(r#"status="200""#)));
}

/// Calls every route (successes and problems) and checks each reply against the schema the OpenAPI
/// document gives for that route, method and status.
#[tokio::test]
async fn replies_match_the_openapi_schemas() {
    let app = app();
    let doc: Value = serde_json::from_str(&crate::api::openapi_json()).unwrap_or_default();
    let served = get(&app.router, "/openapi.json").await.ok();
    assert_eq!(served, doc);
    assert_eq!(doc["openapi"].as_str().map(|v| v.starts_with('3')), Some(true));
    let route =
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "r"}});
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}});
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}});
    let cases: Vec<(&str, &str, &str, Option<Value>)> = vec![
        ("get", "/{provider}/machines/{scope}/{id}", "/k8s/machines/default/web-1", None),
        ("get", "/{provider}/machines/{scope}/{id}", "/k8s/machines/default/nope", None),
        ("get", "/api/v1/{provider}/machines/{scope}/{id}", "/api/v1/ecs/machines/my_cluster/web-1", None),
        ("get", "/{provider}/machines/{scope}", "/k8s/machines/default?labels=app%3Dweb", None),
        ("get", "/{provider}/machines/{scope}", "/k8s/machines/default?labels=x", None),
        (
            "patch",
            "/{provider}/machines/{scope}/{id}/labels",
            "/k8s/machines/default/web-1/labels",
            Some(json!({"labels": {"a": "b"}})),
        ),
        ("get", "/{provider}/controllers/{scope}", "/k8s/controllers/default", None),
        ("get", "/{provider}/controllers/{scope}", "/k8s/controllers/nope", None),
        ("get", "/{provider}/controllers/{scope}/{name}", "/k8s/controllers/default/web", None),
        (
            "post",
            "/{provider}/controllers/{scope}/{name}",
            "/k8s/controllers/default/web",
            Some(json!({"replicas": 3})),
        ),
        (
            "post",
            "/{provider}/controllers/{scope}/{name}",
            "/k8s/controllers/default/web",
            Some(json!({"replicas": -3})),
        ),
        ("delete", "/{provider}/controllers/{scope}/{name}", "/k8s/controllers/default/web", None),
        (
            "put",
            "/{provider}/controllers/{scope}",
            "/k8s/controllers/default",
            Some(deployment(Some("w"), None)),
        ),
        (
            "put",
            "/{provider}/controllers/{scope}",
            "/ecs/controllers/my_cluster",
            Some(deployment(Some("w"), None)),
        ),
        ("get", "/{provider}/services/{scope}", "/k8s/services/default", None),
        ("put", "/{provider}/services/{scope}", "/k8s/services/default", Some(svc)),
        ("delete", "/{provider}/services/{scope}/{name}", "/ecs/services/my_cluster/web", None),
        ("put", "/{provider}/secrets/{scope}", "/k8s/secrets/default", Some(secret)),
        ("get", "/{provider}/gateway/gateways/{scope}", "/k8s/gateway/gateways/default", None),
        ("put", "/{provider}/gateway/httproutes/{scope}", "/k8s/gateway/httproutes/default", Some(route)),
        (
            "get",
            "/{provider}/gateway/httproutes/{scope}/{name}",
            "/k8s/gateway/httproutes/default/route-1",
            None,
        ),
        (
            "delete",
            "/{provider}/gateway/httproutes/{scope}/{name}",
            "/k8s/gateway/httproutes/default/route-1",
            None,
        ),
        ("get", "/providers", "/providers", None),
        ("get", "/health/startup", "/health/startup", None),
        ("get", "/health/readiness", "/health/readiness", None),
        ("get", "/health/liveness", "/health/liveness", None),
        ("get", "/openapi.json", "/openapi.json", None),
    ];
    for (method, template, uri, body) in cases {
        let reply = send(&app.router, &method.to_uppercase(), uri, body).await;
        let schema = schema::response_schema(&doc, template, method, reply.status.as_u16())
            .unwrap_or_else(|| panic!("no schema for {method} {template} {}", reply.status));
        let errors = schema::validate(&doc, schema, &reply.json(), "$");
        assert!(errors.is_empty(), "{method} {uri} ({}): {errors:?}\n{}", reply.status, reply.text);
    }
    let metrics = doc.pointer("/paths/~1metrics/get/responses/200/content");
    assert!(metrics.is_some_and(|c| c.get("text/plain").is_some()));
}

/// The router behind a real HTTP/1.1 server on 127.0.0.1, as `machinist run` serves it.
#[tokio::test]
async fn serves_over_tcp() {
    let app = app();
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(listener) => listener,
        Err(e) => panic!("bind 127.0.0.1:0: {e}"),
    };
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let server = tokio::spawn(axum::serve(listener, app.router.clone()).into_future());
    let client = reqwest::Client::new();
    let reply =
        client.get(format!("http://{addr}/api/v1/k8s/machines/default?labels[]=tier=front")).send().await;
    let reply = reply.unwrap_or_else(|e| panic!("GET: {e}"));
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.headers().get("x-api-version").and_then(|v| v.to_str().ok()), Some("v1"));
    assert!(reply.headers().contains_key("x-request-id"));
    let body: Value = reply.json().await.unwrap_or_default();
    assert_eq!(body[0]["id"], "web-1");
    let reply = client
        .delete(format!("http://{addr}/k8s/controllers/default/web"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("DELETE: {e}"));
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.json::<Value>().await.unwrap_or_default()["deleted"], true);
    server.abort();
}
