//! What the handlers share: the enabled providers, the write timeout, the edge (auth and limits), the
//! shutdown token and the rendered OpenAPI document.
//!
//! State only: it serves nothing and decides nothing (routes are `routes`', decisions the edge's).

use std::sync::Arc;
use std::time::Duration;

use crate::api::auth;
use crate::provider::Provider;

/// What the handlers share. Axum clones the state for every extractor of every request, so it is one `Arc`:
/// a clone is a reference count, not a `Vec` allocation and a cancellation token's lock (both showed in the
/// profile of `GET /k8s/machines/{scope}/{id}`, BENCHMARKS.md "scale").
#[derive(Clone)]
pub struct ApiState(Arc<Shared>);

/// The fields behind [`ApiState`].
#[derive(Clone)]
pub struct Shared {
    /// The enabled providers; a route naming another one is a 404.
    pub providers: Vec<Arc<dyn Provider>>,
    /// How long a write may take before the answer is 504 + Retry-After.
    pub write_timeout: Duration,
    /// Authentication, authorization and rate limits (default: `none`, API.md's limits).
    pub edge: Arc<auth::Edge>,
    /// Cancelled once this replica is shutting down: readiness fails from then on.
    pub stopping: tokio_util::sync::CancellationToken,
    /// The OpenAPI document, rendered once by [`router`](crate::api::router) from the routes it serves.
    pub openapi: Arc<str>,
}

impl std::ops::Deref for ApiState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl ApiState {
    pub fn new(providers: Vec<Arc<dyn Provider>>, write_timeout: Duration) -> Self {
        ApiState(Arc::new(Shared {
            providers,
            write_timeout,
            edge: Arc::new(auth::Edge::default()),
            stopping: tokio_util::sync::CancellationToken::new(),
            openapi: Arc::from(""),
        }))
    }

    /// Readiness fails once `stopping` is cancelled (the shutdown signal).
    pub fn with_stopping(mut self, stopping: tokio_util::sync::CancellationToken) -> Self {
        Arc::make_mut(&mut self.0).stopping = stopping;
        self
    }

    /// Replaces the default edge (auth mode `none`, default limits).
    pub fn with_edge(mut self, edge: Arc<auth::Edge>) -> Self {
        Arc::make_mut(&mut self.0).edge = edge;
        self
    }

    /// Sets the rendered OpenAPI document (the router renders it from the routes it serves).
    pub(crate) fn with_openapi(mut self, openapi: Arc<str>) -> Self {
        Arc::make_mut(&mut self.0).openapi = openapi;
        self
    }
}
