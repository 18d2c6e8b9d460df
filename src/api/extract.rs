//! Extractors whose rejections are problems: the provider and path segments of the guard's [`Target`], read
//! queries, JSON bodies.
//!
//! Everything a handler receives has been checked, so a bad name or body gives 400 before any provider
//! is touched. This module must not log or echo request bodies (Secrets pass through it).

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::{StatusCode, header, request::Parts};
use bytes::Bytes;

use crate::api::names::truncate;
use crate::api::problem::{self, Problem};
use crate::api::state::ApiState;
use crate::api::target::{KNOWN_PROVIDERS, Target};
use crate::provider::{ControllerKind, Provider};

/// `/{provider}/.../{scope}`: an enabled provider and a valid scope name.
pub struct ScopePath {
    pub provider: Arc<dyn Provider>,
    pub scope: String,
}

/// `/{provider}/.../{scope}/{name}` (or `{id}`): an enabled provider, a valid scope and a valid object name.
pub struct ObjectPath {
    pub provider: Arc<dyn Provider>,
    pub scope: String,
    pub name: String,
}

/// Resolves the `{provider}` segment: unknown names and disabled providers are both 404, told apart by slug.
pub fn resolve_provider(state: &ApiState, name: &str) -> Result<Arc<dyn Provider>, Problem> {
    if let Some(provider) = state.providers.iter().find(|p| p.name() == name) {
        return Ok(provider.clone());
    }
    if KNOWN_PROVIDERS.contains(&name) {
        Err(Problem::provider_not_enabled(name))
    } else {
        Err(Problem::not_found(format!("no such route: unknown provider {:?}", truncate(name))))
    }
}

/// The provider of the request's [`Target`], the one the guard authorized: handlers never read the path
/// again. A write's scope is admitted here, before any handler code, so that nothing is written outside the
/// watched scopes.
/// It takes the `Target` out of the request (one path extractor a handler) rather than copying it.
fn target_provider(parts: &mut Parts, state: &ApiState) -> Result<(Target, Arc<dyn Provider>), Problem> {
    let Some(target) = parts.extensions.remove::<Target>() else {
        tracing::error!(path = parts.uri.path(), "a handler ran without the guard's classification");
        return Err(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal-error",
            "request not classified",
        ));
    };
    let provider = resolve_provider(state, target.provider)?;
    if target.access.is_write() {
        provider.reads().admit_write(target.scope())?;
    }
    Ok((target, provider))
}

impl FromRequestParts<ApiState> for ScopePath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Problem> {
        let (target, provider) = target_provider(parts, state)?;
        Ok(ScopePath { provider, scope: target.access.namespace })
    }
}

impl FromRequestParts<ApiState> for ObjectPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Problem> {
        let (target, provider) = target_provider(parts, state)?;
        Ok(ObjectPath { provider, scope: target.access.namespace, name: target.access.name })
    }
}

/// The query of a read: label filters, `machineId`, and the `kind`/`apiVersion` hints. Unknown keys are
/// ignored (clients send back whatever `providerMetadata` held).
#[derive(Debug, Default)]
pub struct ReadQuery {
    pub labels: Vec<(String, String)>,
    pub machine_id: Option<String>,
    pub kind: Option<String>,
    pub api_version: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for ReadQuery {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let Query(pairs) =
            Query::<Vec<(String, String)>>::from_request_parts(parts, state).await.map_err(|rejection| {
                Problem::bad_request(format!("invalid query string: {}", rejection.body_text()))
            })?;
        let mut query = ReadQuery::default();
        for (key, value) in pairs {
            match key.as_str() {
                "labels" | "labels[]" => {
                    let Some((k, v)) = value.split_once('=') else {
                        return Err(Problem::invalid(
                            key,
                            format!("{:?} is not key=value", truncate(&value)),
                        ));
                    };
                    if k.is_empty() {
                        return Err(Problem::invalid(key, "a label filter needs a key"));
                    }
                    query.labels.push((k.to_string(), v.to_string()));
                }
                "machineId" => query.machine_id = Some(value),
                "kind" => query.kind = Some(value),
                "apiVersion" => query.api_version = Some(value),
                _ => {}
            }
        }
        Ok(query)
    }
}

impl ReadQuery {
    /// The kind a k8s controller route is pinned to. ECS ignores the hints (the control plane sends k8s ones
    /// to every provider); on k8s an unknown kind or a mismatching apiVersion is a 400.
    pub fn kind_hint(&self, provider: &str) -> Result<Option<ControllerKind>, Problem> {
        if provider != "k8s" {
            return Ok(None);
        }
        let Some(kind) = self.kind.as_deref() else { return Ok(None) };
        let parsed = ControllerKind::K8S_RESOLUTION_ORDER
            .into_iter()
            .find(|k| k.as_str() == kind)
            .ok_or_else(|| {
                Problem::invalid(
                    "kind",
                    format!(
                        "{:?} is not one of Deployment, StatefulSet, ReplicaSet, ReplicationController",
                        truncate(kind)
                    ),
                )
            })?;
        if let Some(api_version) = self.api_version.as_deref()
            && api_version != parsed.api_version()
        {
            return Err(Problem::invalid(
                "apiVersion",
                format!("{kind} is served as {}, not {:?}", parsed.api_version(), truncate(api_version)),
            ));
        }
        Ok(Some(parsed))
    }
}

/// A JSON request body, parsed to a value for the handler to validate field by field.
pub struct JsonBody(pub serde_json::Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "the body must be JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            let mut problem = problem::for_status(rejection.status());
            problem.detail = rejection.body_text();
            problem
        })?;
        // serde_json's syntax errors name a line and column, never the content: safe for Secret bodies.
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| Problem::bad_request(format!("malformed JSON body: {e}")))
    }
}
