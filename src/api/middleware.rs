//! What every response goes through: the request id, problem rendering, `X-API-Version`, request metrics
//! and the access log.
//!
//! Metrics and logs use the route template (`MatchedPath`), never the raw path, and a method outside the
//! standard set is `other`, so label values stay bounded whatever callers send and no object name reaches a
//! metric. A caller's `X-Request-Id` is kept only when it is short and of a safe charset, so it cannot forge
//! log lines. This module must not read or log request bodies.

use std::time::Instant;

use axum::extract::{MatchedPath, OriginalUri, Request};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::api::problem::{self, PROBLEM_CONTENT_TYPE, Problem};

pub const API_VERSION_HEADER: &str = "x-api-version";
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The longest caller-sent request id kept.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Whether a caller's request id may be kept and logged: 1 to 128 of `[A-Za-z0-9._:-]`.
pub fn is_safe_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A random UUID (version 4) for a request that brought no usable id.
fn new_request_id() -> String {
    let bits = fastrand::u128(..) & !(0xf << 76) & !(0x3 << 62) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// Keeps the caller's `X-Request-Id` when it is safe, otherwise replaces it with a new one, and echoes the
/// one used on the response.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let ids = request.headers().get_all(REQUEST_ID_HEADER);
    let mut iter = ids.iter();
    let kept = match (iter.next(), iter.next()) {
        (Some(id), None) if is_safe_request_id(id.as_bytes()) => Some(id.clone()),
        _ => None,
    };
    let id = kept
        .unwrap_or_else(|| HeaderValue::from_str(&new_request_id()).unwrap_or(HeaderValue::from_static("-")));
    request.headers_mut().insert(REQUEST_ID_HEADER, id.clone());
    let mut response = next.run(request).await;
    response.headers_mut().insert(REQUEST_ID_HEADER, id);
    response
}

/// The method as a metric label: the standard methods by name, anything else `other`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Renders problems with their `instance`, turns any other error response into a problem, stamps
/// `X-API-Version`, records the request duration and logs the request.
pub async fn finish(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(request.method());
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
        .with_label_values(&[method, route.as_str(), status.as_str()])
        .observe(elapsed.as_secs_f64());
    // The kubelet probes every few seconds and Prometheus scrapes: at INFO they would bury the API's requests.
    macro_rules! log_request {
        ($level:ident) => {
            tracing::$level!(
                method,
                route = %route,
                identity = %identity,
                status = status.as_u16(),
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                request_id = %request_id,
                "request"
            )
        };
    }
    if is_operational(&route) {
        log_request!(debug);
    } else {
        log_request!(info);
    }
    response
}

/// Probes and the metrics scrape: logged at DEBUG.
fn is_operational(route: &str) -> bool {
    route.starts_with("/health/") || route == "/metrics"
}

fn is_problem(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_CONTENT_TYPE.as_bytes()))
}

/// Keeps the headers the original error response carried (`Allow` on a 405) that the problem did not set,
/// and its extensions (the caller's identity and the guard's classification, for the access log).
fn merge_headers(mut problem: Response, mut original: Response) -> Response {
    *problem.extensions_mut() = std::mem::take(original.extensions_mut());
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
