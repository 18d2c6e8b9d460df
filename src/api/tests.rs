//! Router tests: `oneshot` against `router(state)` with fake providers answering from canned fragments.

mod edge;
mod fake;
mod props;
mod routes;
mod schema;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use self::fake::Fake;
use crate::api::{ApiState, router};
use crate::provider::Provider;

pub struct App {
    pub router: Router,
    pub k8s: Arc<Fake>,
    pub ecs: Arc<Fake>,
}

/// Both providers enabled, with a short write timeout so timeout tests stay quick.
pub fn app() -> App {
    let k8s = Fake::k8s();
    let ecs = Fake::ecs();
    let providers: Vec<Arc<dyn Provider>> = vec![k8s.clone(), ecs.clone()];
    App { router: router(ApiState::new(providers, Duration::from_millis(300))), k8s, ecs }
}

pub fn k8s_only() -> App {
    let k8s = Fake::k8s();
    let ecs = Fake::ecs();
    let providers: Vec<Arc<dyn Provider>> = vec![k8s.clone()];
    App { router: router(ApiState::new(providers, Duration::from_secs(5))), k8s, ecs }
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json reply with this status and slug, and returns its body.
    #[track_caller]
    pub fn problem(&self, status: u16, slug: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{}", self.text);
        let body = self.json();
        assert_eq!(body["type"], format!("urn:problem:machinist:{slug}"), "{body}");
        assert_eq!(body["status"], status);
        assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()));
        body
    }

    #[track_caller]
    pub fn ok(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "body: {}", self.text);
        self.json()
    }
}

pub async fn send_request(router: &Router, request: Request<Body>) -> Reply {
    let response = router.clone().oneshot(request).await.unwrap_or_else(|e| match e {});
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    Reply { status, headers, text: String::from_utf8_lossy(&bytes).into_owned() }
}

/// `method uri` with an optional JSON body.
pub async fn send(router: &Router, method: &str, uri: &str, body: Option<Value>) -> Reply {
    let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
    let builder = Request::builder().method(method).uri(uri);
    let request = match body {
        Some(body) => builder.header("content-type", "application/json").body(Body::from(body.to_string())),
        None => builder.body(Body::empty()),
    };
    send_request(router, request.unwrap_or_default()).await
}

pub async fn get(router: &Router, uri: &str) -> Reply {
    send(router, "GET", uri, None).await
}
