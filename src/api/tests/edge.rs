//! The edge (auth, limits, request ids, metric labels) against hostile spellings, with fake providers.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use serde_json::json;

use super::fake::Fake;
use super::{App, get, send, send_request};
use crate::api::auth::{AuthMode, Edge, EdgeConfig, token_hash};
use crate::api::limits::{RateLimitConfig, TierLimits};
use crate::api::{ApiState, router};
use crate::provider::Provider;

fn hex(hash: [u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// Static mode over both fakes: `reader-token` reads, `writer-token` writes, and `ci-read` / `ci-write` are
/// two tokens of the same identity `ci` with different rights.
pub fn static_app(limits: RateLimitConfig) -> (App, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tokens.yaml");
    let entry = |id: &str, token: &str, rights: &str| {
        format!("- {{identity: {id}, sha256: {}, rights: [{rights}]}}\n", hex(token_hash(token)))
    };
    let text = format!(
        "tokens:\n{}{}{}{}",
        entry("reader", "reader-token", "read"),
        entry("writer", "writer-token", "read, write"),
        entry("ci", "ci-read", "read"),
        entry("ci", "ci-write", "read, write"),
    );
    std::fs::write(&path, text).expect("tokens file");
    let config = EdgeConfig { mode: AuthMode::Static, tokens_file: Some(path), limits };
    let edge = Edge::new(&config, None).expect("edge");
    let k8s = Fake::k8s();
    let ecs = Fake::ecs();
    let providers: Vec<Arc<dyn Provider>> = vec![k8s.clone(), ecs.clone()];
    let state = ApiState::new(providers, Duration::from_secs(5)).with_edge(Arc::new(edge));
    (App { router: router(state), k8s, ecs }, dir)
}

fn unlimited() -> RateLimitConfig {
    let off = TierLimits { identity: 0, ip: 0, global: 0 };
    RateLimitConfig { reads: off, writes: off, trusted_proxy_hops: 1 }
}

pub async fn call(
    app: &App,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> super::Reply {
    // `oneshot` has no peer address: a trusted proxy's header gives every request the same client IP.
    let mut builder = Request::builder().method(method).uri(uri).header("x-forwarded-for", "192.0.2.1");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let request = match body {
        Some(body) => builder.header("content-type", "application/json").body(Body::from(body.to_string())),
        None => builder.body(Body::empty()),
    };
    send_request(&app.router, request.expect("request")).await
}

#[tokio::test]
async fn percent_encoded_segments_are_authenticated_like_their_canonical_spelling() {
    let (app, _dir) = static_app(unlimited());
    for uri in
        ["/%6B8s/controllers/default", "/api/v1/%6B8s/controllers/default", "/k8s/controllers/%64efault"]
    {
        call(&app, "GET", uri, None, None).await.problem(401, "unauthorized");
        call(&app, "GET", uri, Some("reader-token"), None).await.ok();
    }
    let scale = Some(json!({"replicas": 0}));
    for uri in ["/%6B8s/controllers/default/web", "/api/v1/%6b8s/controllers/default/%77eb"] {
        call(&app, "POST", uri, None, scale.clone()).await.problem(401, "unauthorized");
        call(&app, "POST", uri, Some("reader-token"), scale.clone()).await.problem(403, "forbidden");
    }
    assert_eq!(app.k8s.attempts(), 0, "no write reached the provider: {:?}", app.k8s.calls());
    call(&app, "POST", "/%6B8s/controllers/default/web", Some("writer-token"), scale).await.ok();
    assert_eq!(app.k8s.calls(), ["scale default/web None 0"]);
}

#[tokio::test]
async fn writes_outside_the_watched_scope_reach_no_provider() {
    let app = super::app();
    let r = &app.router;
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}});
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"}});
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}});
    let route =
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "r"}});
    let cases = [
        ("PUT", "/k8s/secrets/other", Some(secret)),
        ("PUT", "/k8s/controllers/other", Some(deployment)),
        ("PUT", "/k8s/services/other", Some(service)),
        ("PUT", "/k8s/gateway/httproutes/other", Some(route)),
        ("PATCH", "/k8s/machines/other/web-1/labels", Some(json!({"labels": {"a": "b"}}))),
        ("POST", "/k8s/controllers/other/web?kind=Deployment", Some(json!({"replicas": 1}))),
        ("DELETE", "/k8s/controllers/other/web", None),
        ("DELETE", "/k8s/services/other/web", None),
        ("DELETE", "/k8s/gateway/httproutes/other/r", None),
        ("DELETE", "/ecs/services/other/web", None),
        ("POST", "/ecs/controllers/other/web", Some(json!({"replicas": 1}))),
    ];
    for (method, uri, body) in cases {
        send(r, method, uri, body).await.problem(404, "scope-not-watched");
    }
    assert_eq!((app.k8s.attempts(), app.ecs.attempts()), (0, 0), "a write reached a provider");
}

#[tokio::test]
async fn rights_belong_to_the_token_not_the_identity() {
    let (app, _dir) = static_app(unlimited());
    let uri = "/k8s/controllers/default/web";
    let body = Some(json!({"replicas": 3}));
    call(&app, "POST", uri, Some("ci-read"), body.clone()).await.problem(403, "forbidden");
    call(&app, "DELETE", uri, Some("ci-read"), None).await.problem(403, "forbidden");
    assert_eq!(app.k8s.attempts(), 0);
    call(&app, "POST", uri, Some("ci-write"), body).await.ok();
}

#[tokio::test]
async fn per_ip_and_global_limits_apply_before_authentication() {
    let mut limits = unlimited();
    limits.reads.ip = 3;
    let (app, _dir) = static_app(limits);
    for i in 0..3 {
        call(&app, "GET", "/k8s/machines/default", Some(&format!("made-up-{i}")), None)
            .await
            .problem(401, "unauthorized");
    }
    call(&app, "GET", "/k8s/machines/default", Some("made-up-x"), None)
        .await
        .problem(429, "rate-limit-exceeded");
    let mut limits = unlimited();
    limits.writes.global = 2;
    let (app, _dir) = static_app(limits);
    for _ in 0..2 {
        call(&app, "DELETE", "/k8s/services/default/web", None, None).await.problem(401, "unauthorized");
    }
    call(&app, "DELETE", "/k8s/services/default/web", None, None).await.problem(429, "rate-limit-exceeded");
}

#[tokio::test]
async fn unknown_methods_share_one_metric_label() {
    let app = super::app();
    for method in ["XMETHOD1", "XMETHOD2", "XMETHOD3"] {
        let reply = send(&app.router, method, "/k8s/machines/default", None).await;
        assert!(reply.status.is_client_error(), "{method}: {}", reply.status);
    }
    let metrics = get(&app.router, "/metrics").await.text;
    assert!(!metrics.contains("XMETHOD"), "a caller's method became a label value");
    assert!(metrics.contains(r#"method="other""#), "{metrics}");
}

#[tokio::test]
async fn request_ids_outside_the_safe_charset_are_replaced() {
    let app = super::app();
    let with_id = |id: &'static [u8]| {
        Request::builder()
            .uri("/k8s/machines/default")
            .header("x-request-id", axum::http::HeaderValue::from_bytes(id).expect("header value"))
            .body(Body::empty())
            .expect("request")
    };
    let kept = send_request(&app.router, with_id(b"abc-123_x.y:z")).await;
    assert_eq!(kept.header("x-request-id"), Some("abc-123_x.y:z"));
    let long = Box::leak("a".repeat(129).into_boxed_str()).as_bytes();
    for bad in [&b"a b"[..], b"x\ty", b"evil\" status=200", b"id\xff", b"", long] {
        let reply = send_request(&app.router, with_id(bad)).await;
        let id = reply.header("x-request-id").unwrap_or_default().to_string();
        assert!(!id.is_empty() && id.as_bytes() != bad, "{:?} was echoed", String::from_utf8_lossy(bad));
        assert!(
            id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b)),
            "{id}"
        );
    }
}
