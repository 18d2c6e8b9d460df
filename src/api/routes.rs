//! The route table, each route declared once: its handler's `#[utoipa::path]` gives the path and method, and
//! `routes!` registers the handler with axum and its operation in the OpenAPI document together.
//!
//! The API routes are declared at their canonical `/{provider}/...` paths; [`router`] also serves them
//! at `/api/v1`. Every API route must be known to `target` (a test checks it), or the guard refuses it.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::problem::Problem;
use crate::api::state::ApiState;
use crate::api::{auth, health, middleware, openapi, reads, target, writes};

/// The largest request body accepted (manifests included).
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;

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

async fn not_found() -> Problem {
    Problem::not_found("no such route")
}

/// The OpenAPI document of [`router`], for `machinist openapi`.
pub fn openapi_json() -> String {
    let mut operations = api().into_openapi();
    operations.merge(operational().into_openapi());
    openapi::render(operations)
}

/// The whole HTTP surface: API routes (at `/` and `/api/v1`), probes, `/metrics`, `/openapi.json`, with
/// problem+json for every error.
pub fn router(state: ApiState) -> Router {
    let (api, mut operations) = api().split_for_parts();
    let (operational, more) = operational().split_for_parts();
    operations.merge(more);
    let state = state.with_openapi(Arc::from(openapi::render(operations)));
    // Only API routes go through the guard, after routing, so that it classifies the route and decoded
    // parameters the handler gets; probes, metrics and OpenAPI are never authenticated or limited.
    let api = api.route_layer(axum::middleware::from_fn_with_state(state.edge.clone(), auth::guard));
    Router::new()
        .merge(operational)
        .merge(api.clone())
        .nest(target::API_PREFIX, api)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(axum::middleware::from_fn(middleware::finish))
        .with_state(state)
}
