//! The write routes of API.md: validate the whole request, then one call through `provider::Writes`,
//! bounded by the write timeout.
//!
//! Every write is idempotent, so a 504 is safe to repeat. Secrets are applied and never echoed or logged:
//! this module must not put a request body into a log line or a problem.

use std::collections::BTreeMap;
use std::future::Future;

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};

use crate::api::body;
use crate::api::extract::{JsonBody, ObjectPath, ReadQuery, ScopePath};
use crate::api::names;
use crate::api::problem::{Problem, Problems};
use crate::api::respond::{fragment, require};
use crate::api::state::ApiState;
use crate::provider::{ControllerTarget, FieldError, ManifestKind, Provider};

/// The largest replica count accepted: far above any real workload, far below i32 overflow.
pub const MAX_REPLICAS: u64 = 1_000_000;

/// Seconds a client should wait before repeating a write that timed out.
const TIMEOUT_RETRY_AFTER_SECS: u64 = 2;

async fn bounded<T>(
    state: &ApiState,
    what: &str,
    write: impl Future<Output = crate::provider::Result<T>>,
) -> Result<T, Problem> {
    match tokio::time::timeout(state.write_timeout, write).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(Problem::timeout(
            format!(
                "{what} was not confirmed within {} s; repeating it is safe",
                state.write_timeout.as_secs_f64()
            ),
            TIMEOUT_RETRY_AFTER_SECS,
        )),
    }
}

fn deleted(name: &str, deleted: bool) -> Json<Value> {
    Json(json!({ "status": "Success", "name": name, "deleted": deleted }))
}

fn target(path: &ObjectPath, query: &ReadQuery) -> Result<ControllerTarget, Problem> {
    Ok(ControllerTarget {
        scope: path.scope.clone(),
        name: path.name.clone(),
        kind: query.kind_hint(path.provider.name())?,
    })
}

/// Reads `{"replicas": N}`: an integer from 0 to [`MAX_REPLICAS`].
pub fn parse_replicas(body: &Value) -> Result<i32, Problem> {
    let Some(object) = body.as_object() else {
        return Err(Problem::invalid("body", "must be an object {\"replicas\": N}"));
    };
    let Some(replicas) = object.get("replicas") else {
        return Err(Problem::invalid("replicas", "is required"));
    };
    match replicas.as_u64() {
        Some(n) if n <= MAX_REPLICAS => {
            i32::try_from(n).map_err(|_| Problem::invalid("replicas", "too large"))
        }
        Some(_) => Err(Problem::invalid("replicas", format!("must be at most {MAX_REPLICAS}"))),
        None => Err(Problem::invalid("replicas", "must be an integer >= 0")),
    }
}

/// Reads `{"labels": {"k": "v" | null}}`, validating keys and values the way the provider will.
pub fn parse_labels(provider: &str, body: &Value) -> Result<BTreeMap<String, Option<String>>, Problem> {
    let Some(labels) = body.as_object().and_then(|o| o.get("labels")) else {
        return Err(Problem::invalid("labels", "is required: {\"labels\": {\"key\": \"value\"}}"));
    };
    let Some(labels) = labels.as_object() else {
        return Err(Problem::invalid("labels", "must be an object"));
    };
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for (key, value) in labels {
        let field = format!("labels.{}", names::truncate(key));
        let value = match value {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            _ => {
                errors.push(FieldError { field, message: "must be a string or null".into() });
                continue;
            }
        };
        let error = if provider == "k8s" {
            names::k8s_label_key_error(key)
                .or_else(|| value.as_deref().and_then(names::k8s_label_value_error))
        } else if key.is_empty() || key.len() > 128 {
            Some("a tag key must be 1-128 characters".into())
        } else if value.as_ref().is_some_and(|v| v.len() > 256) {
            Some("a tag value must be at most 256 characters".into())
        } else {
            None
        };
        match error {
            Some(message) => errors.push(FieldError { field, message }),
            None => {
                out.insert(key.clone(), value);
            }
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(Problem::validation(errors)) }
}

/// Checks a manifest against its route and the URL's namespace, fills in the namespace, returns the name.
pub fn check_manifest(scope: &str, kind: ManifestKind, manifest: &mut Value) -> Result<String, Problem> {
    let allowed: &[(&str, &str)] = match kind {
        ManifestKind::Controller => &[("apps/v1", "Deployment"), ("apps/v1", "StatefulSet")],
        ManifestKind::Service => &[("v1", "Service")],
        ManifestKind::Secret => &[("v1", "Secret")],
        ManifestKind::HttpRoute => &[("gateway.networking.k8s.io/v1", "HTTPRoute")],
    };
    let Some(object) = manifest.as_object_mut() else {
        return Err(Problem::invalid("body", "must be a Kubernetes object"));
    };
    let mut errors = Vec::new();
    // Absent kind/apiVersion default to the route's (the first allowed kind): a present one must match.
    let kind_field = match object.get("kind") {
        None => allowed[0].1.to_string(),
        Some(Value::String(k)) => k.clone(),
        Some(_) => String::new(),
    };
    let api_version = match object.get("apiVersion") {
        None => allowed.iter().find(|(_, k)| *k == kind_field).map_or(allowed[0].0, |(v, _)| *v).to_string(),
        Some(Value::String(v)) => v.clone(),
        Some(_) => String::new(),
    };
    if allowed.iter().any(|(v, k)| *k == kind_field && *v == api_version) {
        object.insert("kind".into(), Value::String(kind_field));
        object.insert("apiVersion".into(), Value::String(api_version));
    } else {
        let expected = allowed.iter().map(|(v, k)| format!("{v} {k}")).collect::<Vec<_>>().join(" or ");
        errors.push(FieldError { field: "kind".into(), message: format!("this route takes {expected}") });
    }
    let metadata = object.entry("metadata").or_insert_with(|| json!({}));
    let Some(metadata) = metadata.as_object_mut() else {
        errors.push(FieldError { field: "metadata".into(), message: "must be an object".into() });
        return Err(Problem::validation(errors));
    };
    let name = match metadata.get("name").and_then(Value::as_str) {
        Some(name) if names::is_dns1123_subdomain(name) => name.to_string(),
        Some(_) => {
            errors.push(FieldError {
                field: "metadata.name".into(),
                message: "must be a Kubernetes object name (RFC 1123 subdomain)".into(),
            });
            String::new()
        }
        None => {
            errors.push(FieldError { field: "metadata.name".into(), message: "is required".into() });
            String::new()
        }
    };
    match metadata.get("namespace") {
        None | Some(Value::Null) => {
            metadata.insert("namespace".into(), Value::String(scope.to_string()));
        }
        Some(Value::String(ns)) if ns == scope => {}
        Some(_) => errors.push(FieldError {
            field: "metadata.namespace".into(),
            message: format!("must be absent or {scope:?}, the namespace of the URL"),
        }),
    }
    if errors.is_empty() { Ok(name) } else { Err(Problem::validation(errors)) }
}

async fn apply(
    state: &ApiState,
    provider: &dyn Provider,
    scope: String,
    kind: ManifestKind,
    mut manifest: Value,
) -> Result<(String, Value), Problem> {
    if kind == ManifestKind::HttpRoute {
        require(provider, |c| c.httproutes, "HTTPRoutes")?;
    } else {
        require(provider, |c| c.apply, "applying manifests")?;
    }
    let name = check_manifest(&scope, kind, &mut manifest)?;
    let applied = bounded(state, "the apply", provider.writes().apply(scope, kind, manifest)).await?;
    Ok((name, applied))
}

/// Sets the replicas of a controller (through the reconciler); idempotent.
#[utoipa::path(post, path = "/{provider}/controllers/{scope}/{name}", tag = "controllers",
    params(("provider" = String, Path, description = "k8s or ecs"),
           ("scope" = String, Path, description = "namespace (k8s) or cluster (ecs)"),
           ("name" = String, Path, description = "controller name"),
           ("kind" = Option<String>, Query, description = "k8s hint; ignored on ecs"),
           ("apiVersion" = Option<String>, Query, description = "k8s hint; ignored on ecs")),
    request_body = body::ScaleBody,
    responses((status = 200, description = "The controller with its new replicas", body = crate::cache::model::Controller),
              Problems))]
pub async fn scale(
    State(state): State<ApiState>,
    path: ObjectPath,
    query: ReadQuery,
    JsonBody(body): JsonBody,
) -> Result<Response, Problem> {
    require(&*path.provider, |c| c.scale, "scaling")?;
    let target = target(&path, &query)?;
    let replicas = parse_replicas(&body)?;
    Ok(fragment(&bounded(&state, "the scale", path.provider.writes().scale(target, replicas)).await?))
}

/// Deletes a controller (background propagation).
#[utoipa::path(delete, path = "/{provider}/controllers/{scope}/{name}", tag = "controllers",
    params(("provider" = String, Path, description = "k8s or ecs"),
           ("scope" = String, Path, description = "namespace (k8s) or cluster (ecs)"),
           ("name" = String, Path, description = "controller name"),
           ("kind" = Option<String>, Query, description = "k8s hint; ignored on ecs"),
           ("apiVersion" = Option<String>, Query, description = "k8s hint; ignored on ecs")),
    responses((status = 200, description = "Deleted", body = body::Deleted),
              Problems))]
pub async fn delete_controller(
    State(state): State<ApiState>,
    path: ObjectPath,
    query: ReadQuery,
) -> Result<Json<Value>, Problem> {
    require(&*path.provider, |c| c.controllers, "deleting controllers")?;
    let target = target(&path, &query)?;
    bounded(&state, "the delete", path.provider.writes().delete_controller(target)).await?;
    Ok(deleted(&path.name, true))
}

/// Merges labels into a machine's labels; `null` removes a key.
#[utoipa::path(patch, path = "/{provider}/machines/{scope}/{id}/labels", tag = "machines",
    params(("provider" = String, Path, description = "k8s or ecs"),
           ("scope" = String, Path, description = "namespace (k8s) or cluster (ecs)"),
           ("id" = String, Path, description = "pod name or task id")),
    request_body = body::LabelsPatch,
    responses((status = 200, description = "The machine", body = crate::cache::model::Machine),
              Problems))]
pub async fn patch_labels(
    State(state): State<ApiState>,
    path: ObjectPath,
    JsonBody(body): JsonBody,
) -> Result<Response, Problem> {
    require(&*path.provider, |c| c.labels, "labels")?;
    let labels = parse_labels(path.provider.name(), &body)?;
    let write = path.provider.writes().patch_machine_labels(path.scope.clone(), path.name.clone(), labels);
    Ok(fragment(&bounded(&state, "the label patch", write).await?))
}

/// Deletes a service; on ecs a no-op answering `"deleted": false`.
#[utoipa::path(delete, path = "/{provider}/services/{scope}/{name}", tag = "services",
    params(("provider" = String, Path, description = "k8s or ecs"),
           ("scope" = String, Path, description = "namespace (k8s) or cluster (ecs)"),
           ("name" = String, Path, description = "service name")),
    responses((status = 200, description = "Deleted (or not, on ecs)", body = body::Deleted),
              Problems))]
pub async fn delete_service(State(state): State<ApiState>, path: ObjectPath) -> Result<Json<Value>, Problem> {
    require(&*path.provider, |c| c.services, "services")?;
    let write = path.provider.writes().delete_service(path.scope.clone(), path.name.clone());
    let was_deleted = bounded(&state, "the delete", write).await?;
    Ok(deleted(&path.name, was_deleted))
}

/// Deletes an HTTPRoute.
#[utoipa::path(delete, path = "/{provider}/gateway/httproutes/{scope}/{name}", tag = "gateway",
    params(("provider" = String, Path, description = "k8s"),
           ("scope" = String, Path, description = "namespace"),
           ("name" = String, Path, description = "HTTPRoute name")),
    responses((status = 200, description = "Deleted", body = body::Deleted),
              Problems))]
pub async fn delete_httproute(
    State(state): State<ApiState>,
    path: ObjectPath,
) -> Result<Json<Value>, Problem> {
    require(&*path.provider, |c| c.httproutes, "HTTPRoutes")?;
    let write = path.provider.writes().delete_httproute(path.scope.clone(), path.name.clone());
    bounded(&state, "the delete", write).await?;
    Ok(deleted(&path.name, true))
}

/// Creates or updates a Deployment or StatefulSet by server-side apply.
#[utoipa::path(put, path = "/{provider}/controllers/{scope}", tag = "controllers",
    params(("provider" = String, Path, description = "k8s (ecs answers 501)"),
           ("scope" = String, Path, description = "namespace")),
    request_body(content = body::KubeObject, description = "an apps/v1 Deployment or StatefulSet"),
    responses((status = 200, description = "The applied object", body = body::KubeObject),
              Problems))]
pub async fn apply_controller(
    State(state): State<ApiState>,
    path: ScopePath,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, Problem> {
    let (_, applied) = apply(&state, &*path.provider, path.scope, ManifestKind::Controller, body).await?;
    Ok(Json(applied))
}

/// Creates or updates a Service by server-side apply.
#[utoipa::path(put, path = "/{provider}/services/{scope}", tag = "services",
    params(("provider" = String, Path, description = "k8s (ecs answers 501)"),
           ("scope" = String, Path, description = "namespace")),
    request_body(content = body::KubeObject, description = "a v1 Service"),
    responses((status = 200, description = "The applied object", body = body::KubeObject),
              Problems))]
pub async fn apply_service(
    State(state): State<ApiState>,
    path: ScopePath,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, Problem> {
    let (_, applied) = apply(&state, &*path.provider, path.scope, ManifestKind::Service, body).await?;
    Ok(Json(applied))
}

/// Creates or updates a Secret by server-side apply; the Secret is never echoed.
#[utoipa::path(put, path = "/{provider}/secrets/{scope}", tag = "secrets",
    params(("provider" = String, Path, description = "k8s (ecs answers 501)"),
           ("scope" = String, Path, description = "namespace")),
    request_body(content = body::KubeObject, description = "a v1 Secret"),
    responses((status = 200, description = "Applied", body = body::SecretApplied),
              Problems))]
pub async fn apply_secret(
    State(state): State<ApiState>,
    path: ScopePath,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, Problem> {
    let (name, _) = apply(&state, &*path.provider, path.scope, ManifestKind::Secret, body).await?;
    Ok(Json(json!({ "status": "Success", "name": name })))
}

/// Creates or updates an HTTPRoute by server-side apply.
#[utoipa::path(put, path = "/{provider}/gateway/httproutes/{scope}", tag = "gateway",
    params(("provider" = String, Path, description = "k8s (ecs answers 501)"),
           ("scope" = String, Path, description = "namespace")),
    request_body(content = body::KubeObject, description = "a gateway.networking.k8s.io/v1 HTTPRoute"),
    responses((status = 200, description = "The applied HTTPRoute", body = body::KubeObject),
              Problems))]
pub async fn apply_httproute(
    State(state): State<ApiState>,
    path: ScopePath,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, Problem> {
    let (_, applied) = apply(&state, &*path.provider, path.scope, ManifestKind::HttpRoute, body).await?;
    Ok(Json(applied))
}
