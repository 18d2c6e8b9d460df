//! Responses of the API server: JSON bodies and `metav1.Status` errors (with `Retry-After` when the error
//! asks for one).
//!
//! It builds bytes and headers only; which response a request gets is decided by the handlers. It also
//! cuts objects down to `meta.k8s.io/v1` PartialObjectMetadata for clients that ask for metadata only.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::status::StatusError;

pub fn json_bytes(code: StatusCode, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = code;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn json_value(code: StatusCode, v: &Value) -> Response {
    json_bytes(code, serde_json::to_vec(v).unwrap_or_default())
}

pub fn status_response(e: &StatusError) -> Response {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = json_value(code, &e.to_json());
    if let Some(secs) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

impl IntoResponse for StatusError {
    fn into_response(self) -> Response {
        status_response(&self)
    }
}

/// An object as `PartialObjectMetadata`: the apiserver keeps only `metadata` (its `TypeMeta` is
/// meta.k8s.io's, whatever the object's kind).
pub fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({}))})
}

/// A response body for a metadata-only request: a list becomes `PartialObjectMetadataList` (its items
/// each a `PartialObjectMetadata`), an object a `PartialObjectMetadata`; a `Status` stays what it is.
pub fn metadata_only(body: &Value) -> Value {
    if body.get("kind").and_then(Value::as_str) == Some("Status") {
        return body.clone();
    }
    match body.get("items").and_then(Value::as_array) {
        Some(items) => json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
            "metadata": body.get("metadata").cloned().unwrap_or_else(|| json!({})),
            "items": items.iter().map(partial_metadata).collect::<Vec<_>>()}),
        None => partial_metadata(body),
    }
}
