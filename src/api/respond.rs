//! Building 200 responses from pre-serialized fragments without re-serializing them, and the capability
//! check every route makes first.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::api::problem::Problem;
use crate::cache::model::Capabilities;
use crate::provider::{Fragment, Provider};

pub fn json_bytes(body: Vec<u8>) -> Response {
    json_body(body.into())
}

/// A JSON body already in a shared buffer: served without a copy.
pub fn json_body(body: bytes::Bytes) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pub fn push_array(out: &mut Vec<u8>, fragments: &[Fragment]) {
    out.push(b'[');
    for (i, fragment) in fragments.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(fragment.get().as_bytes());
    }
    out.push(b']');
}

pub fn array(fragments: &[Fragment]) -> Response {
    let mut out = Vec::with_capacity(fragments.iter().map(|f| f.get().len() + 1).sum::<usize>() + 2);
    push_array(&mut out, fragments);
    json_bytes(out)
}

/// `{"<key>": <fragment>}`.
pub fn wrapped(key: &str, fragment: &Fragment) -> Response {
    json_bytes(format!("{{\"{key}\":{}}}", fragment.get()).into_bytes())
}

pub fn fragment(fragment: &Fragment) -> Response {
    json_bytes(fragment.get().as_bytes().to_vec())
}

/// 501 unless the provider has the capability `check` picks.
pub fn require(provider: &dyn Provider, check: fn(&Capabilities) -> bool, what: &str) -> Result<(), Problem> {
    if check(&provider.capabilities()) {
        Ok(())
    } else {
        Err(Problem::capability_not_supported(provider.name(), what))
    }
}
