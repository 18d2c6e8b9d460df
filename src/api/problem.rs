//! RFC 9457 problem+json: the one error type of the REST layer and the only place that picks an error status.
//!
//! Handlers, extractors and fallbacks return [`Problem`]; the response carries the problem in its extensions
//! and [`crate::api::middleware`] renders the body once the request path (`instance`) is known. This module
//! must never put a request body, a credential or a provider's raw response into a problem.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::provider::{FieldError, ProviderError};

/// Upper bound of every `Retry-After` we send: our clients honour at most 30 s.
pub const MAX_RETRY_AFTER_SECS: u64 = 30;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// An error response: one allocation, so that `Result<_, Problem>` stays small on the happy path.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem(Box<ProblemDetails>);

impl std::ops::Deref for Problem {
    type Target = ProblemDetails;

    fn deref(&self) -> &ProblemDetails {
        &self.0
    }
}

impl std::ops::DerefMut for Problem {
    fn deref_mut(&mut self) -> &mut ProblemDetails {
        &mut self.0
    }
}

/// The problem+json body. `instance` is filled in by the middleware from the request path.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = Problem)]
pub struct ProblemDetails {
    /// `urn:problem:machinist:<slug>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The request path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// `validation-failed` only: every invalid field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub errors: Vec<FieldError>,
    /// `rate-limit-exceeded` only: seconds to wait, as in the `Retry-After` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// Sent as the `Retry-After` header (429, 503, 504).
    #[serde(skip)]
    pub retry_after_header: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, detail: impl Into<String>) -> Self {
        Problem(Box::new(ProblemDetails {
            kind: format!("urn:problem:machinist:{slug}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            instance: None,
            errors: Vec::new(),
            retry_after: None,
            retry_after_header: None,
        }))
    }

    pub fn slug(&self) -> &str {
        self.kind.rsplit(':').next().unwrap_or("")
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail =
            errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
        let mut problem = Problem::new(StatusCode::BAD_REQUEST, "validation-failed", detail);
        problem.errors = errors;
        problem
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Problem::validation(vec![FieldError { field: field.into(), message: message.into() }])
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    pub fn provider_not_enabled(provider: &str) -> Self {
        Problem::new(
            StatusCode::NOT_FOUND,
            "provider-not-enabled",
            format!("provider {provider} is not enabled on this machinist"),
        )
    }

    pub fn capability_not_supported(provider: &str, what: &str) -> Self {
        Problem::new(
            StatusCode::NOT_IMPLEMENTED,
            "capability-not-supported",
            format!("provider {provider} does not support {what}"),
        )
    }

    pub fn cache_not_ready(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "cache-not-ready", detail)
            .with_retry_after(retry_after_secs)
    }

    /// Readiness of a replica that got SIGTERM: its clients should go to another one.
    pub fn shutting_down(retry_after_secs: u64) -> Self {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting-down",
            "this replica is shutting down; it serves until load balancers stop routing to it",
        )
        .with_retry_after(retry_after_secs)
    }

    pub fn timeout(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        Problem::new(StatusCode::GATEWAY_TIMEOUT, "timeout", detail).with_retry_after(retry_after_secs)
    }

    /// Sets the `Retry-After` header, clamped to 1..=30 s so that clients neither spin nor give up.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_header = Some(secs.clamp(1, MAX_RETRY_AFTER_SECS));
        self
    }

    /// The problem+json response for this problem as seen at `instance`.
    pub fn render(mut self, instance: &str) -> Response {
        self.instance = Some(instance.to_string());
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&*self.0).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        if let Some(secs) = self.retry_after_header {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl IntoResponse for Problem {
    /// The body is rendered by the middleware, which knows the request path; the status is set now so that
    /// anything in between (logging, metrics) sees it.
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

impl From<ProviderError> for Problem {
    fn from(error: ProviderError) -> Self {
        let detail = error.to_string();
        match error {
            ProviderError::NotReady { retry_after_secs, .. } => {
                Problem::cache_not_ready(detail, retry_after_secs)
            }
            ProviderError::ScopeNotWatched { .. } => {
                Problem::new(StatusCode::NOT_FOUND, "scope-not-watched", detail)
            }
            ProviderError::NotFound(_) => Problem::not_found(detail),
            ProviderError::Invalid { errors, message } => {
                let mut problem = Problem::validation(errors);
                problem.detail = message;
                problem
            }
            ProviderError::Conflict(_) => Problem::new(StatusCode::CONFLICT, "conflict", detail),
            ProviderError::CapabilityNotSupported(_) => {
                Problem::new(StatusCode::NOT_IMPLEMENTED, "capability-not-supported", detail)
            }
            ProviderError::Timeout { retry_after_secs, .. } => Problem::timeout(detail, retry_after_secs),
            ProviderError::Upstream(_) => Problem::new(StatusCode::BAD_GATEWAY, "upstream-error", detail),
            // 500: our clients retry 429/502/503/504, and retrying cannot grant a permission.
            ProviderError::Forbidden(_) => {
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "upstream-forbidden", detail)
            }
            ProviderError::Throttled { retry_after_secs, .. } => {
                let mut problem = Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate-limit-exceeded", detail)
                    .with_retry_after(retry_after_secs);
                problem.retry_after = problem.retry_after_header;
                problem
            }
        }
    }
}

/// The `4XX` and `5XX` problem responses every API route documents, declared once.
pub struct Problems;

impl utoipa::IntoResponses for Problems {
    fn responses() -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let problem = |description: &str| {
            let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
            ResponseBuilder::new()
                .description(description)
                .content(PROBLEM_CONTENT_TYPE, content)
                .build()
                .into()
        };
        [
            ("4XX".to_string(), problem("Problem: the request was refused (429 carries Retry-After)")),
            (
                "5XX".to_string(),
                problem("Problem: the provider or machinist failed (503 and 504 carry Retry-After)"),
            ),
        ]
        .into_iter()
        .collect()
    }
}

/// The problem for an error response some layer produced without one (axum's 405, a body limit), so that
/// every non-2xx is problem+json.
pub fn for_status(status: StatusCode) -> Problem {
    let (slug, detail) = match status {
        StatusCode::NOT_FOUND => ("not-found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => ("method-not-allowed", "method not allowed on this route"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload-too-large", "request body too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported-media-type", "expected application/json"),
        StatusCode::UNAUTHORIZED => ("unauthorized", "authentication required"),
        StatusCode::FORBIDDEN => ("forbidden", "not allowed"),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "request timed out"),
        s if s.is_client_error() => ("bad-request", "bad request"),
        _ => ("internal-error", "internal error"),
    };
    Problem::new(status, slug, detail)
}
