//! Probes and metrics: `/health/*`, `/metrics`.
//!
//! Liveness depends on nothing but this process serving; startup and readiness read each provider's
//! `health()`. None of them may call an API server.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::api::problem::Problem;
use crate::api::state::ApiState;
use crate::cache::model::Health;

/// Seconds a probe-facing client should wait before asking again.
const NOT_READY_RETRY_AFTER_SECS: u64 = 5;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthReport {
    /// `ok`.
    pub status: String,
    pub providers: Vec<ProviderHealth>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProviderHealth {
    pub name: String,
    #[serde(flatten)]
    pub health: Health,
}

fn check(state: &ApiState, probe: &str, ok: fn(&Health) -> bool) -> Result<Json<HealthReport>, Problem> {
    let providers: Vec<ProviderHealth> = state
        .providers
        .iter()
        .map(|p| ProviderHealth { name: p.name().to_string(), health: p.health() })
        .collect();
    let failing: Vec<String> = providers
        .iter()
        .filter(|p| !ok(&p.health))
        .map(|p| match &p.health.reason {
            Some(reason) => format!("{} ({reason})", p.name),
            None => format!("{} (healthy: {}, synced: {})", p.name, p.health.healthy, p.health.synced),
        })
        .collect();
    if failing.is_empty() {
        Ok(Json(HealthReport { status: "ok".into(), providers }))
    } else {
        Err(Problem::cache_not_ready(
            format!("{probe} failing for: {}", failing.join(", ")),
            NOT_READY_RETRY_AFTER_SECS,
        ))
    }
}

/// 200 once every enabled provider has synced its cache once.
#[utoipa::path(get, path = "/health/startup", tag = "health",
    responses((status = 200, description = "Started", body = HealthReport),
              (status = 503, description = "A cache has not synced yet", body = crate::api::problem::ProblemDetails, content_type = "application/problem+json")))]
pub async fn startup(State(state): State<ApiState>) -> Result<Json<HealthReport>, Problem> {
    check(&state, "startup", |h| h.synced)
}

/// 200 while every enabled provider is healthy and synced, and this replica is not shutting down.
#[utoipa::path(get, path = "/health/readiness", tag = "health",
    responses((status = 200, description = "Ready", body = HealthReport),
              (status = 503, description = "A provider is unhealthy or not synced (`cache-not-ready`), or this replica got SIGTERM (`shutting-down`)", body = crate::api::problem::ProblemDetails, content_type = "application/problem+json")))]
pub async fn readiness(State(state): State<ApiState>) -> Result<Json<HealthReport>, Problem> {
    // Checked first: a terminating replica must leave the Service's endpoints even when its caches are fine.
    if state.stopping.is_cancelled() {
        return Err(Problem::shutting_down(NOT_READY_RETRY_AFTER_SECS));
    }
    check(&state, "readiness", |h| h.healthy && h.synced)
}

/// 200 while the process serves; depends on nothing else.
#[utoipa::path(get, path = "/health/liveness", tag = "health",
    responses((status = 200, description = "Alive", body = crate::api::body::Status)))]
pub async fn liveness() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain")))]
pub async fn metrics() -> Response {
    let mut response = crate::metrics::render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(crate::metrics::CONTENT_TYPE));
    response
}
