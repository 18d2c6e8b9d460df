//! Subresources beyond `/status` and `/scale`: `pods/ephemeralcontainers` (only
//! `spec.ephemeralContainers` moves, and containers once added stay as they are), `serviceaccounts/token`
//! (TokenRequest: a JWT-shaped token the sandbox then accepts as `system:serviceaccount:NS:NAME`), and the
//! CSR's `/approval` (mapped onto `/status` by the router).
//!
//! It must not sign anything: the tokens are opaque to everyone but this sandbox.

use axum::response::Response;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::patch;
use super::request::Req;
use super::response::json_value;
use super::status::StatusError;
use super::store::{Part, ResourceType};

/// Shortest token lifetime the apiserver grants (it refuses shorter requests).
const MIN_EXPIRATION_SECS: i64 = 600;
const DEFAULT_EXPIRATION_SECS: i64 = 3600;

/// GET, PATCH or PUT of `pods/NAME/ephemeralcontainers`.
pub fn ephemeral_containers(
    r: &Req,
    rt: &ResourceType,
    method: &Method,
    name: &str,
) -> Result<Response, StatusError> {
    let store = &r.st.store;
    let ns = r.ns().to_string();
    let desired = match *method {
        Method::GET => {
            let pod = store.get(&rt.gvr, &ns, name).ok_or_else(|| StatusError::not_found("pods", name))?;
            return Ok(json_value(StatusCode::OK, &pod));
        }
        Method::PATCH => {
            let kind = patch::kind_of(&content_type(r))?;
            if kind == patch::PatchKind::Apply {
                return Err(StatusError::new(
                    415,
                    "UnsupportedMediaType",
                    "apply patches are not supported on pods/ephemeralcontainers",
                ));
            }
            Desired::Patch(patch::parse(kind, &r.body)?)
        }
        Method::PUT => Desired::Replace(r.body_value()?),
        _ => return Err(StatusError::method_not_allowed()),
    };
    let pod_name = name.to_string();
    let obj = store.update_with(&rt.gvr, &ns, name, Part::Main, &r.opts(), move |cur| {
        let wanted = match desired {
            Desired::Patch(p) => {
                let mut pod = cur.clone();
                patch::apply_to(&mut pod, &p)?;
                pod
            }
            Desired::Replace(body) => body,
        };
        let new = wanted.pointer("/spec/ephemeralContainers").cloned().unwrap_or_else(|| json!([]));
        let old = cur.pointer("/spec/ephemeralContainers").cloned().unwrap_or_else(|| json!([]));
        check_ephemeral(&pod_name, &old, &new)?;
        if cur.get("spec").is_none_or(|s| !s.is_object()) {
            cur["spec"] = json!({});
        }
        cur["spec"]["ephemeralContainers"] = new;
        Ok(())
    })?;
    Ok(json_value(StatusCode::OK, &obj))
}

/// What a write to `ephemeralcontainers` asks for: the pod after a patch, or the pod in the body.
enum Desired {
    Patch(patch::ParsedPatch),
    Replace(Value),
}

/// Ephemeral containers may be added, never changed or removed; each needs a name and an image.
fn check_ephemeral(pod: &str, old: &Value, new: &Value) -> Result<(), StatusError> {
    let invalid = |field: String, msg: &str| StatusError::invalid("Pod", pod, vec![(field, msg.to_string())]);
    let Some(new_list) = new.as_array() else {
        return Err(invalid("spec.ephemeralContainers".into(), "Invalid value: must be a list"));
    };
    for (i, c) in new_list.iter().enumerate() {
        for k in ["name", "image"] {
            if c.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
                return Err(invalid(format!("spec.ephemeralContainers[{i}].{k}"), "Required value"));
            }
        }
    }
    for c in old.as_array().into_iter().flatten() {
        let same = new_list.iter().find(|n| n.get("name") == c.get("name"));
        if same != Some(c) {
            return Err(invalid(
                "spec.ephemeralContainers".into(),
                "Forbidden: existing ephemeral containers may not be changed or removed",
            ));
        }
    }
    Ok(())
}

/// POST `serviceaccounts/NAME/token`.
pub fn token_request(
    r: &Req,
    rt: &ResourceType,
    method: &Method,
    name: &str,
) -> Result<Response, StatusError> {
    if *method != Method::POST {
        return Err(StatusError::method_not_allowed());
    }
    let ns = r.ns().to_string();
    let sa =
        r.st.store.get(&rt.gvr, &ns, name).ok_or_else(|| StatusError::not_found("serviceaccounts", name))?;
    let mut req = r.body_value()?;
    let expiration = match req.pointer("/spec/expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECS,
        Some(v) => {
            v.as_i64().ok_or_else(|| StatusError::bad_request("spec.expirationSeconds must be an integer"))?
        }
    };
    if expiration < MIN_EXPIRATION_SECS {
        return Err(StatusError::invalid(
            "TokenRequest",
            name,
            vec![(
                "spec.expirationSeconds".into(),
                "Invalid value: may not specify a duration less than 10 minutes".into(),
            )],
        ));
    }
    let audiences = req
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .cloned()
        .unwrap_or_else(|| vec![json!("https://kubernetes.default.svc.cluster.local")]);
    let now = jiff::Timestamp::now().as_second();
    let exp = now + expiration;
    let user = format!("system:serviceaccount:{ns}:{name}");
    let sa_uid = sa.pointer("/metadata/uid").cloned().unwrap_or(Value::Null);
    let claims = json!({"aud": audiences, "exp": exp, "iat": now, "nbf": now,
        "iss": "https://kubernetes.default.svc.cluster.local", "sub": user,
        "jti": super::meta::new_uid(),
        "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": name, "uid": sa_uid}}});
    let header = json!({"alg": "RS256", "kid": "machinist-sandbox"});
    let signature: Vec<u8> = (0..32).map(|_| fastrand::u8(..)).collect();
    let token = format!(
        "{}.{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes()),
        base64url(&signature)
    );
    r.st.users.write().unwrap_or_else(|e| e.into_inner()).insert(token.clone(), user);
    let expires = jiff::Timestamp::from_second(exp).map(|t| t.to_string()).unwrap_or_default();
    req["apiVersion"] = json!("authentication.k8s.io/v1");
    req["kind"] = json!("TokenRequest");
    if !req.get("metadata").is_some_and(Value::is_object) {
        req["metadata"] = json!({});
    }
    req["metadata"]["name"] = json!(name);
    req["metadata"]["namespace"] = json!(ns);
    req["metadata"]["creationTimestamp"] = Value::Null;
    if !req.get("spec").is_some_and(Value::is_object) {
        req["spec"] = json!({});
    }
    req["spec"]["audiences"] = json!(audiences);
    req["spec"]["expirationSeconds"] = json!(expiration);
    req["status"] = json!({"token": token, "expirationTimestamp": expires});
    Ok(json_value(StatusCode::CREATED, &req))
}

/// A new CertificateSigningRequest: `request` and `signerName` are required, and the requester's identity
/// is the apiserver's to write, never the client's.
pub fn stamp_csr(csr: &mut Value, user: &str) -> Result<(), StatusError> {
    let name = csr.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let mut causes = Vec::new();
    for k in ["request", "signerName"] {
        if csr.pointer(&format!("/spec/{k}")).and_then(Value::as_str).is_none_or(str::is_empty) {
            causes.push((format!("spec.{k}"), "Required value".to_string()));
        }
    }
    if !causes.is_empty() {
        return Err(StatusError::invalid("CertificateSigningRequest", &name, causes));
    }
    csr["spec"]["username"] = json!(user);
    csr["spec"]["groups"] = json!(["system:authenticated"]);
    Ok(())
}

fn content_type(r: &Req) -> String {
    r.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Unpadded base64url, as JWTs use.
fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_the_rfc_4648_vectors() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foob"), "Zm9vYg");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn ephemeral_containers_are_added_never_changed() {
        let a = json!([{"name": "debug", "image": "busybox"}]);
        assert!(check_ephemeral("p", &json!([]), &a).is_ok());
        let b = json!([{"name": "debug", "image": "busybox"}, {"name": "two", "image": "x"}]);
        assert!(check_ephemeral("p", &a, &b).is_ok());
        assert_eq!(check_ephemeral("p", &a, &json!([])).map_err(|e| e.code), Err(422));
        assert_eq!(
            check_ephemeral("p", &a, &json!([{"name": "debug", "image": "other"}])).map_err(|e| e.code),
            Err(422)
        );
        assert_eq!(check_ephemeral("p", &json!([]), &json!([{"name": "x"}])).map_err(|e| e.code), Err(422));
    }
}
