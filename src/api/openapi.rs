//! The OpenAPI 3 document: assembles the operations the route table collected (`api::routes`) with the
//! document's info, shared schemas and headers, and serves it at `/openapi.json`.
//!
//! Paths are documented at the canonical `/{provider}/...` and copied under `/api/v1`; the headers every
//! response carries are added here once. It lists no handler itself, so it cannot describe a route the router
//! does not serve.

use axum::extract::State;
use axum::response::Response;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::Operation;
use utoipa::openapi::{Object, RefOr, Type};
use utoipa::{Modify, OpenApi};

use crate::api::body::{
    ControllerEnvelope, ControllerList, Deleted, KubeObject, LabelsPatch, ScaleBody, SecretApplied, Status,
};
use crate::api::respond::json_bytes;
use crate::api::state::ApiState;
use crate::cache::model::Controller;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "machinist",
        version = "v1",
        description = "One REST API over Kubernetes and AWS ECS workloads. Every route under `/{provider}` is \
            also served at `/api/v1/{provider}`. Every response carries `X-API-Version: v1` and `X-Request-Id`; \
            every error is `application/problem+json` (RFC 9457) with a `type` of `urn:problem:machinist:<slug>`; \
            429 and 503 and 504 carry `Retry-After` (at most 30 s)."
    ),
    components(schemas(
        crate::cache::model::Machine,
        Controller,
        crate::cache::model::Service,
        crate::api::problem::ProblemDetails,
        ControllerList,
        ControllerEnvelope,
        ScaleBody,
        LabelsPatch,
        Deleted,
        SecretApplied,
        KubeObject,
        Status,
        crate::cache::model::ProviderInfo,
    ))
)]
struct ApiDoc;

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch]
        .into_iter()
        .filter_map(Option::as_mut)
}

/// `X-API-Version` and `X-Request-Id` on every response, `Retry-After` on error ranges.
struct CommonHeaders;

impl Modify for CommonHeaders {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in operations(item) {
                for (status, response) in operation.responses.responses.iter_mut() {
                    let RefOr::T(response) = response else { continue };
                    let mut version = Header::default();
                    version.description = Some("Always `v1`.".into());
                    response.headers.insert("X-API-Version".into(), version);
                    let mut id = Header::default();
                    id.description = Some("The caller's request id, or a generated one.".into());
                    response.headers.insert("X-Request-Id".into(), id);
                    if status == "4XX" || status == "5XX" || status == "503" {
                        let mut retry = Header::new(Object::with_type(Type::Integer));
                        retry.description = Some("Seconds to wait, at most 30 (on 429, 503 and 504).".into());
                        response.headers.insert("Retry-After".into(), retry);
                    }
                }
            }
        }
    }
}

/// Copies every `/{provider}` route and `/providers` under `/api/v1`, with distinct operation ids.
struct VersionedPaths;

impl Modify for VersionedPaths {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let copies: Vec<(String, utoipa::openapi::PathItem)> = openapi
            .paths
            .paths
            .iter()
            .filter(|(path, _)| path.starts_with("/{provider}") || path.as_str() == "/providers")
            .map(|(path, item)| {
                let mut item = item.clone();
                for operation in operations(&mut item) {
                    operation.operation_id = operation.operation_id.as_ref().map(|id| format!("{id}_v1"));
                }
                (format!("/api/v1{path}"), item)
            })
            .collect();
        openapi.paths.paths.extend(copies);
    }
}

/// The whole document as JSON: the info and shared schemas, then `operations` (what `api::routes`
/// collected), the common headers, and the `/api/v1` copies.
pub fn render(operations: utoipa::openapi::OpenApi) -> String {
    let mut doc = ApiDoc::openapi();
    doc.merge(operations);
    CommonHeaders.modify(&mut doc);
    VersionedPaths.modify(&mut doc);
    doc.to_pretty_json().unwrap_or_else(|_| "{}".to_string())
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI 3 document", body = Object)))]
pub async fn document(State(state): State<ApiState>) -> Response {
    json_bytes(state.openapi.as_bytes().to_vec())
}
