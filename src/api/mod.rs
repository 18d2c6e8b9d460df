//! The REST API of API.md: the route table, the edge every API route goes through (classification, auth,
//! rate limits), extractors, problem+json errors, OpenAPI.
//!
//! It holds no kube `Client` and no AWS client: reads touch only a provider's cache through
//! `provider::ReadModel`, writes go through `provider::Writes`, and callers' tokens through
//! `provider::Reviewer`.

pub mod auth;
pub mod body;
pub mod extract;
pub mod health;
pub mod limits;
pub mod middleware;
pub mod names;
pub mod openapi;
pub mod problem;
pub mod reads;
pub mod respond;
pub mod routes;
pub mod target;
pub mod writes;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;

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
    /// The OpenAPI document, rendered once by [`router`] from the routes it serves.
    pub openapi: Arc<str>,
}

impl ApiState {
    pub fn new(providers: Vec<Arc<dyn Provider>>, write_timeout: Duration) -> Self {
        ApiState {
            providers,
            write_timeout,
            edge: Arc::new(auth::Edge::default()),
            stopping: tokio_util::sync::CancellationToken::new(),
            openapi: Arc::from(""),
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

async fn not_found() -> Problem {
    Problem::not_found("no such route")
}

/// The OpenAPI document of [`router`], for `machinist openapi`.
pub fn openapi_json() -> String {
    let mut operations = routes::api().into_openapi();
    operations.merge(routes::operational().into_openapi());
    openapi::render(operations)
}

/// The whole HTTP surface: API routes (at `/` and `/api/v1`), probes, `/metrics`, `/openapi.json`, with
/// problem+json for every error.
pub fn router(mut state: ApiState) -> Router {
    let (api, mut operations) = routes::api().split_for_parts();
    let (operational, more) = routes::operational().split_for_parts();
    operations.merge(more);
    state.openapi = Arc::from(openapi::render(operations));
    // Only API routes go through the guard, after routing, so that it classifies the route and decoded
    // parameters the handler gets; probes, metrics and OpenAPI are never authenticated or limited.
    let api = api.route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::guard));
    Router::new()
        .merge(operational)
        .merge(api.clone())
        .nest(target::API_PREFIX, api)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(axum::middleware::from_fn(middleware::finish))
        .layer(axum::middleware::from_fn(middleware::request_id))
        .with_state(state)
}
