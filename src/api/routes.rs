//! The route table, each route declared once: its handler's `#[utoipa::path]` gives the path and method, and
//! `routes!` registers the handler with axum and its operation in the OpenAPI document together.
//!
//! The API routes are declared at their canonical `/{provider}/...` paths; `api::router` also serves them
//! at `/api/v1`. Every API route must be known to `target` (a test checks it), or the guard refuses it.

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{ApiState, health, openapi, reads, writes};

/// The API routes (behind the guard): `/providers` and everything under `/{provider}`.
pub fn api() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(reads::providers))
        .routes(routes!(reads::machines))
        .routes(routes!(reads::machine))
        .routes(routes!(writes::patch_labels))
        .routes(routes!(reads::controllers, writes::apply_controller))
        .routes(routes!(reads::controller, writes::scale, writes::delete_controller))
        .routes(routes!(reads::services, writes::apply_service))
        .routes(routes!(writes::delete_service))
        .routes(routes!(writes::apply_secret))
        .routes(routes!(reads::gateways))
        .routes(routes!(writes::apply_httproute))
        .routes(routes!(reads::httproute, writes::delete_httproute))
}

/// Probes, metrics and the OpenAPI document: never authenticated or limited.
pub fn operational() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(health::startup))
        .routes(routes!(health::liveness))
        .routes(routes!(health::readiness))
        .routes(routes!(health::metrics))
        .routes(routes!(openapi::document))
}
