//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]` and the served types.
//!
//! Paths are documented at the canonical `/{provider}/...` and copied under `/api/v1`; the headers every
//! response carries are added here once. This module must not describe a route the router does not serve.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::Serialize;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::Operation;
use utoipa::openapi::{Object, RefOr, Type};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::api::{health, reads, writes};
use crate::cache::model::Controller;

/// `GET /{provider}/controllers/{scope}`.
#[derive(Serialize, ToSchema)]
pub struct ControllerList {
    pub controllers: Vec<Controller>,
}

/// `GET /{provider}/controllers/{scope}/{name}`.
#[derive(Serialize, ToSchema)]
pub struct ControllerEnvelope {
    pub controller: Controller,
}

/// The body of a scale: set the replicas to this count (idempotent).
#[derive(Serialize, ToSchema)]
pub struct ScaleBody {
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub replicas: i32,
}

/// Labels to merge into a machine's labels; a `null` value removes the key.
#[derive(Serialize, ToSchema)]
pub struct LabelsPatch {
    pub labels: BTreeMap<String, Option<String>>,
}

/// The answer of every DELETE.
#[derive(Serialize, ToSchema)]
pub struct Deleted {
    /// `Success`.
    pub status: String,
    pub name: String,
    /// `false` when nothing was deleted (ECS services are never deleted).
    pub deleted: bool,
}

/// The answer of a Secret PUT: the Secret itself is never echoed.
#[derive(Serialize, ToSchema)]
pub struct SecretApplied {
    /// `Success`.
    pub status: String,
    pub name: String,
}

/// `{"status": "ok"}`.
#[derive(Serialize, ToSchema)]
pub struct Status {
    pub status: String,
}

/// A Kubernetes object as JSON (Gateway, HTTPRoute, applied manifests), `managedFields` dropped.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeObject {
    pub api_version: String,
    pub kind: String,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
}

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
    paths(
        reads::machine, reads::machines, reads::controllers, reads::controller, reads::services,
        reads::gateways, reads::httproute, reads::providers,
        writes::scale, writes::delete_controller, writes::patch_labels, writes::delete_service,
        writes::delete_httproute, writes::apply_controller, writes::apply_service, writes::apply_secret,
        writes::apply_httproute,
        health::startup, health::readiness, health::liveness, health::metrics, health::openapi,
    ),
    components(schemas(
        crate::cache::model::Machine, Controller, crate::cache::model::Service, crate::api::problem::Problem,
        ControllerList, ControllerEnvelope, ScaleBody, LabelsPatch, Deleted, SecretApplied, KubeObject, Status,
        health::HealthReport, crate::cache::model::ProviderInfo,
    )),
    modifiers(&CommonHeaders, &VersionedPaths),
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

static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| ApiDoc::openapi().to_pretty_json().unwrap_or_else(|_| "{}".to_string()));

/// The OpenAPI document as JSON, for `/openapi.json` and `machinist openapi`.
pub fn openapi_json() -> String {
    DOCUMENT.clone()
}
