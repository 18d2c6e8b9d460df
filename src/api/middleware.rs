//! What every response goes through: problem rendering, `X-API-Version`, request metrics and the access log.
//!
//! Metrics and logs use the route template (`MatchedPath`), never the raw path, so label values stay bounded
//! and no object name reaches a metric. This module must not read or log request bodies.

use std::time::Instant;

use axum::extract::{MatchedPath, OriginalUri, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::api::problem::{self, PROBLEM_CONTENT_TYPE, Problem};

pub const API_VERSION_HEADER: &str = "x-api-version";
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Renders problems with their `instance`, turns any other error response into a problem, stamps
/// `X-API-Version`, records the request duration and logs the request.
pub async fn finish(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let path = request
        .extensions()
        .get::<OriginalUri>()
        .map(|u| u.0.path().to_string())
        .unwrap_or_else(|| request.uri().path().to_string());
    let request_id =
        request.headers().get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();

    let mut response = next.run(request).await;

    if let Some(problem) = response.extensions_mut().remove::<Problem>() {
        response = merge_headers(problem.render(&path), response);
    } else if !response.status().is_success() && !is_problem(&response) {
        response = merge_headers(problem::for_status(response.status()).render(&path), response);
    }
    response.headers_mut().insert(API_VERSION_HEADER, HeaderValue::from_static("v1"));

    let identity = response
        .extensions()
        .get::<crate::api::auth::Identity>()
        .map(|i| i.0.clone())
        .unwrap_or_else(|| "-".to_string());
    let status = response.status();
    let elapsed = start.elapsed();
    crate::metrics::metrics()
        .http_request_duration
        .with_label_values(&[method.as_str(), route.as_str(), status.as_str()])
        .observe(elapsed.as_secs_f64());
    tracing::info!(
        method = %method,
        route = %route,
        identity = %identity,
        status = status.as_u16(),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        request_id = %request_id,
        "request"
    );
    response
}

fn is_problem(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_CONTENT_TYPE.as_bytes()))
}

/// Keeps the headers the original error response carried (`Allow` on a 405) that the problem did not set.
fn merge_headers(mut problem: Response, original: Response) -> Response {
    for (name, value) in original.headers() {
        if name != header::CONTENT_TYPE
            && name != header::CONTENT_LENGTH
            && !problem.headers().contains_key(name)
        {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem
}
