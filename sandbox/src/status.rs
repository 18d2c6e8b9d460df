//! `metav1.Status` errors: the one error type every sandbox layer returns to a client.
//!
//! It owns the canonical reasons and the JSON shape; it must not know about HTTP routing.

use serde_json::{Value, json};

/// A Kubernetes `metav1.Status` failure: HTTP code, canonical reason and message.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct StatusError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `details` (name, group, kind, causes), when Kubernetes fills it.
    pub details: Option<Value>,
    /// Seconds for a `Retry-After` header (429).
    pub retry_after: Option<u64>,
}

impl StatusError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> StatusError {
        StatusError { code, reason, message: message.into(), details: None, retry_after: None }
    }

    pub fn with_details(mut self, details: Value) -> StatusError {
        self.details = Some(details);
        self
    }

    pub fn not_found(resource: &str, name: &str) -> StatusError {
        StatusError::new(404, "NotFound", format!("{resource} \"{name}\" not found"))
            .with_details(json!({"name": name, "kind": plural_of(resource)}))
    }

    pub fn no_such_type() -> StatusError {
        StatusError::new(404, "NotFound", "the server could not find the requested resource")
    }

    pub fn already_exists(resource: &str, name: &str) -> StatusError {
        StatusError::new(409, "AlreadyExists", format!("{resource} \"{name}\" already exists"))
            .with_details(json!({"name": name, "kind": plural_of(resource)}))
    }

    pub fn conflict(resource: &str, name: &str, why: &str) -> StatusError {
        StatusError::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {resource} \"{name}\": {why}"),
        )
        .with_details(json!({"name": name, "kind": plural_of(resource)}))
    }

    pub fn bad_request(message: impl Into<String>) -> StatusError {
        StatusError::new(400, "BadRequest", message)
    }

    /// 422 with one `details.causes` entry per `(field, message)`.
    pub fn invalid(kind: &str, name: &str, causes: Vec<(String, String)>) -> StatusError {
        let summary: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        let causes: Vec<Value> = causes
            .into_iter()
            .map(
                |(field, message)| json!({"reason": "FieldValueInvalid", "message": message, "field": field}),
            )
            .collect();
        StatusError::new(422, "Invalid", format!("{kind} \"{name}\" is invalid: {}", summary.join(", ")))
            .with_details(json!({"name": name, "kind": kind, "causes": causes}))
    }

    pub fn expired(message: impl Into<String>) -> StatusError {
        StatusError::new(410, "Expired", message)
    }

    pub fn method_not_allowed() -> StatusError {
        StatusError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn internal(message: impl Into<String>) -> StatusError {
        StatusError::new(500, "InternalError", message)
    }

    /// The `metav1.Status` body.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        if let Some(secs) = self.retry_after {
            let d = v.get("details").cloned().unwrap_or_else(|| json!({}));
            let mut d = d;
            d["retryAfterSeconds"] = json!(secs);
            v["details"] = d;
        }
        v
    }
}

/// `deployments.apps` → `deployments`: the `details.kind` Kubernetes reports is the plural resource.
fn plural_of(resource: &str) -> &str {
    resource.split('.').next().unwrap_or(resource)
}
