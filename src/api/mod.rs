//! The REST API of API.md: routes, extractors, problem+json errors, OpenAPI.
//!
//! It holds no kube `Client` and no AWS client: reads touch only a provider's cache through
//! `provider::ReadModel`, and the only await is a write through `provider::Writes`.

pub mod auth;
pub mod extract;
pub mod health;
pub mod limits;
pub mod middleware;
pub mod openapi;
pub mod problem;
pub mod reads;
pub mod writes;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, patch, put};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

pub use openapi::openapi_json;
pub use problem::Problem;

use crate::provider::Provider;

/// The largest request body accepted (manifests included).
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The enabled providers; a route naming another one is a 404.
    pub providers: Vec<Arc<dyn Provider>>,
    /// How long a write may take before the answer is 504 + Retry-After.
    pub write_timeout: Duration,
    /// Authentication, authorization and rate limits (default: `none`, API.md's limits).
    pub edge: Arc<auth::Edge>,
    /// Cancelled once this replica is shutting down: readiness fails from then on.
    pub stopping: tokio_util::sync::CancellationToken,
}

impl ApiState {
    pub fn new(providers: Vec<Arc<dyn Provider>>, write_timeout: Duration) -> Self {
        ApiState {
            providers,
            write_timeout,
            edge: Arc::new(auth::Edge::default()),
            stopping: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Readiness fails once `stopping` is cancelled (the shutdown signal).
    pub fn with_stopping(mut self, stopping: tokio_util::sync::CancellationToken) -> Self {
        self.stopping = stopping;
        self
    }

    /// Replaces the default edge (auth mode `none`, default limits).
    pub fn with_edge(mut self, edge: Arc<auth::Edge>) -> Self {
        self.edge = edge;
        self
    }
}

/// The routes served under `/{provider}`: mounted at `/` and again at `/api/v1`.
fn provider_routes(router: Router<ApiState>, prefix: &str) -> Router<ApiState> {
    router
        .route(&format!("{prefix}/providers"), get(reads::providers))
        .route(&format!("{prefix}/{{provider}}/machines/{{scope}}"), get(reads::machines))
        .route(&format!("{prefix}/{{provider}}/machines/{{scope}}/{{id}}"), get(reads::machine))
        .route(
            &format!("{prefix}/{{provider}}/machines/{{scope}}/{{id}}/labels"),
            patch(writes::patch_labels),
        )
        .route(
            &format!("{prefix}/{{provider}}/controllers/{{scope}}"),
            get(reads::controllers).put(writes::apply_controller),
        )
        .route(
            &format!("{prefix}/{{provider}}/controllers/{{scope}}/{{name}}"),
            get(reads::controller).post(writes::scale).delete(writes::delete_controller),
        )
        .route(
            &format!("{prefix}/{{provider}}/services/{{scope}}"),
            get(reads::services).put(writes::apply_service),
        )
        .route(
            &format!("{prefix}/{{provider}}/services/{{scope}}/{{name}}"),
            axum::routing::delete(writes::delete_service),
        )
        .route(&format!("{prefix}/{{provider}}/secrets/{{scope}}"), put(writes::apply_secret))
        .route(&format!("{prefix}/{{provider}}/gateway/gateways/{{scope}}"), get(reads::gateways))
        .route(&format!("{prefix}/{{provider}}/gateway/httproutes/{{scope}}"), put(writes::apply_httproute))
        .route(
            &format!("{prefix}/{{provider}}/gateway/httproutes/{{scope}}/{{name}}"),
            get(reads::httproute).delete(writes::delete_httproute),
        )
}

async fn not_found() -> Problem {
    Problem::not_found("no such route")
}

/// The whole HTTP surface: API routes, probes, `/metrics`, `/openapi.json`, with problem+json for every error.
pub fn router(state: ApiState) -> Router {
    // Only API routes go through the edge: probes, metrics and OpenAPI are never authenticated or limited.
    let api = provider_routes(provider_routes(Router::new(), ""), "/api/v1")
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::guard));
    let router = Router::new()
        .route("/health/startup", get(health::startup))
        .route("/health/liveness", get(health::liveness))
        .route("/health/readiness", get(health::readiness))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(health::openapi));
    router
        .merge(api)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(axum::middleware::from_fn(middleware::finish))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}
