//! Extractors whose rejections are problems: provider + validated path segments, read queries, JSON bodies.
//!
//! Everything a handler receives has been checked here, so a bad name or body gives 400 before any provider
//! is touched. This module must not log or echo request bodies (Secrets pass through it).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::{StatusCode, header, request::Parts};
use bytes::Bytes;

use crate::api::ApiState;
use crate::api::problem::{self, Problem};
use crate::provider::{ControllerKind, Provider};

/// The providers a path can name; any other first segment is an unknown route.
pub const KNOWN_PROVIDERS: [&str; 2] = ["k8s", "ecs"];

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

async fn path_params(parts: &mut Parts) -> Result<HashMap<String, String>, Problem> {
    Path::<HashMap<String, String>>::from_request_parts(parts, &())
        .await
        .map(|Path(params)| params)
        .map_err(|rejection| Problem::bad_request(format!("invalid path: {}", rejection.body_text())))
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

fn scope_from(
    state: &ApiState,
    params: &HashMap<String, String>,
) -> Result<(Arc<dyn Provider>, String), Problem> {
    let provider_name = params.get("provider").map(String::as_str).unwrap_or("");
    let provider = resolve_provider(state, provider_name)?;
    let scope = params.get("scope").cloned().unwrap_or_default();
    validate_scope(provider.name(), &scope)?;
    Ok((provider, scope))
}

impl FromRequestParts<ApiState> for ScopePath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Problem> {
        let params = path_params(parts).await?;
        let (provider, scope) = scope_from(state, &params)?;
        Ok(ScopePath { provider, scope })
    }
}

impl FromRequestParts<ApiState> for ObjectPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Problem> {
        let params = path_params(parts).await?;
        let (provider, scope) = scope_from(state, &params)?;
        let name = params.get("name").or_else(|| params.get("id")).cloned().unwrap_or_default();
        validate_object_name(provider.name(), &name)?;
        Ok(ObjectPath { provider, scope, name })
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

/// Shortens user input quoted in a problem detail.
pub fn truncate(value: &str) -> &str {
    match value.char_indices().nth(64) {
        Some((i, _)) => &value[..i],
        None => value,
    }
}

fn is_alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// RFC 1123 label: what Kubernetes requires of a namespace.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|&c| is_alnum_lower(c) || c == b'-')
        && is_alnum_lower(b[0])
        && is_alnum_lower(b[b.len() - 1])
}

/// RFC 1123 subdomain: what Kubernetes requires of most object names.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// ECS cluster, service and task names: letters, digits, `-` and `_`, up to 255.
pub fn is_ecs_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

pub fn validate_scope(provider: &str, scope: &str) -> Result<(), Problem> {
    let (valid, what) = match provider {
        "ecs" => (is_ecs_name(scope), "an ECS cluster name"),
        _ => (is_dns1123_label(scope), "a Kubernetes namespace name (RFC 1123 label)"),
    };
    if valid { Ok(()) } else { Err(Problem::bad_request(format!("{:?} is not {what}", truncate(scope)))) }
}

pub fn validate_object_name(provider: &str, name: &str) -> Result<(), Problem> {
    let (valid, what) = match provider {
        "ecs" => (is_ecs_name(name), "an ECS name"),
        _ => (is_dns1123_subdomain(name), "a Kubernetes object name (RFC 1123 subdomain)"),
    };
    if valid { Ok(()) } else { Err(Problem::bad_request(format!("{:?} is not {what}", truncate(name)))) }
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// A Kubernetes label key: `[prefix/]name`, the prefix a DNS subdomain.
pub fn k8s_label_key_error(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && !is_dns1123_subdomain(prefix)
    {
        return Some("the prefix must be a DNS subdomain".into());
    }
    if !is_label_name(name) {
        return Some(
            "the name must be 1-63 characters of [A-Za-z0-9-_.], starting and ending alphanumeric".into(),
        );
    }
    None
}

/// A Kubernetes label value: empty, or like a label name.
pub fn k8s_label_value_error(value: &str) -> Option<String> {
    if value.is_empty() || is_label_name(value) {
        None
    } else {
        Some("must be empty or 1-63 characters of [A-Za-z0-9-_.], starting and ending alphanumeric".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_dns1123_label("default"));
        assert!(!is_dns1123_label("Default"));
        assert!(!is_dns1123_label("-a"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain("web-7d4b9c.x2k4p"));
        assert!(!is_dns1123_subdomain("a..b"));
        assert!(!is_dns1123_subdomain(&"a.".repeat(127)));
        assert!(is_ecs_name("My_Cluster-1"));
        assert!(!is_ecs_name("a.b"));
    }

    #[test]
    fn label_keys_and_values() {
        assert_eq!(k8s_label_key_error("app.kubernetes.io/name"), None);
        assert!(k8s_label_key_error("bad key").is_some());
        assert!(k8s_label_key_error("Bad_/x").is_some());
        assert_eq!(k8s_label_value_error(""), None);
        assert!(k8s_label_value_error("-x").is_some());
    }
}
