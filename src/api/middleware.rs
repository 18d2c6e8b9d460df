//! What every response goes through: the request id, problem rendering, `X-API-Version`, request metrics
//! and the access log.
//!
//! Metrics and logs use the route template (`MatchedPath`), never the raw path, and a method outside the
//! standard set is `other`, so label values stay bounded whatever callers send and no object name reaches a
//! metric. A caller's `X-Request-Id` is kept only when it is short and of a safe charset, so it cannot forge
//! log lines. This module must not read or log request bodies.

use std::time::Instant;

use axum::extract::{MatchedPath, OriginalUri, Request};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::api::problem::{self, PROBLEM_CONTENT_TYPE, Problem};

/// An authenticated caller, which the edge puts in the response extensions for the access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity(pub String);

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

/// A random UUID (version 4) for a request that brought no usable id, written without a `String`: this runs
/// for nearly every request.
fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bits = fastrand::u128(..) & !(0xf << 76) & !(0x3 << 62) | (0x4 << 76) | (0x2 << 62);
    let mut out = [0u8; 36];
    let mut nibble = 0;
    for (i, byte) in out.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            *byte = b'-';
        } else {
            *byte = HEX[((bits >> (124 - 4 * nibble)) & 0xf) as usize];
            nibble += 1;
        }
    }
    HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static("-"))
}

/// The caller's `X-Request-Id` when it is safe, otherwise a new one.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    let mut ids = headers.get_all(REQUEST_ID_HEADER).iter();
    match (ids.next(), ids.next()) {
        (Some(id), None) if is_safe_request_id(id.as_bytes()) => id.clone(),
        _ => new_request_id(),
    }
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

/// The one layer every response goes through: keeps the caller's `X-Request-Id` when it is safe (else makes
/// one) and echoes it, renders problems with their `instance`, turns any other error response into a problem,
/// stamps `X-API-Version`, records the request duration and logs the request.
///
/// One layer, not two, and nothing copied that a request without an error does not need: the two layers it
/// replaced were about a fifth of what a small read cost (BENCHMARKS.md, "Issue 14, second pass").
pub async fn finish(mut request: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = request_id(request.headers());
    request.headers_mut().insert(REQUEST_ID_HEADER, id.clone());
    let method = method_label(request.method());
    let route = request.extensions().get::<MatchedPath>().cloned();
    let uri = match request.extensions().get::<OriginalUri>() {
        Some(original) => original.0.clone(),
        None => request.uri().clone(),
    };

    let mut response = next.run(request).await;

    if let Some(problem) = response.extensions_mut().remove::<Problem>() {
        response = merge_headers(problem.render(uri.path()), response);
    } else if !response.status().is_success() && !is_problem(&response) {
        response = merge_headers(problem::for_status(response.status()).render(uri.path()), response);
    }
    response.headers_mut().insert(API_VERSION_HEADER, HeaderValue::from_static("v1"));

    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let status = response.status();
    let elapsed = start.elapsed();
    crate::metrics::metrics()
        .http_request_duration
        .with_label_values(&[method, route, status.as_str()])
        .observe(elapsed.as_secs_f64());
    let identity = response.extensions().get::<Identity>().map_or("-", |i| i.0.as_str());
    let request_id = id.to_str().unwrap_or("");
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
    if is_operational(route) {
        log_request!(debug);
    } else {
        log_request!(info);
    }
    response.headers_mut().insert(REQUEST_ID_HEADER, id);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_request_id_is_a_version_4_uuid() {
        let ids: Vec<String> =
            (0..64).map(|_| new_request_id().to_str().expect("ascii").to_string()).collect();
        for id in &ids {
            let groups: Vec<&str> = id.split('-').collect();
            let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
            assert_eq!(lens, [8, 4, 4, 4, 12], "{id}");
            assert!(
                id.bytes().all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{id}"
            );
            assert!(groups[2].starts_with('4'), "version 4: {id}");
            assert!(matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'), "RFC 4122 variant: {id}");
            assert!(is_safe_request_id(id.as_bytes()));
        }
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }
}
