//! What the handlers share: the enabled providers, the write timeout, the edge (auth and limits), the
//! shutdown token and the rendered OpenAPI document.
//!
//! State only: it serves nothing and decides nothing (routes are `routes`', decisions the edge's).

use std::sync::Arc;
use std::time::Duration;

use crate::api::auth;
use crate::provider::Provider;

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
