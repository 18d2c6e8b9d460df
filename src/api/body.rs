//! The JSON bodies the OpenAPI document names that are not served shapes of `cache::model`: envelopes,
//! request bodies and small answers. Types only, for the documentation; handlers build these bodies
//! themselves (reads copy pre-serialized fragments).

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

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
