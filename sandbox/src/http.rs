//! The axum router: auth, stats and faults middleware, the test hooks, and the dispatch of resource verbs.
//!
//! It turns requests (parsed by `request`) into store calls, and answers with `response`'s helpers; object
//! semantics live in `store`, patch maths in `patch`, server-side apply in `apply`, watches in `watch`,
//! discovery in `discovery`. Those import nothing from here. It must not panic on any input.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use http::{HeaderMap, Method, StatusCode, header};
use serde_json::{Value, json};

use super::faults::FaultsSpec;
use super::hang::Call;
pub use super::request::AppState;
use super::request::{Req, Target, User, classify, is_true, parse_path, parse_query, strict_check};
use super::response::{json_bytes, json_value, metadata_only, status_response};
use super::select::{FieldSelector, LabelSelector};
use super::stats::Access;
use super::status::StatusError;
use super::store::{DeleteOpts, ListQuery, Part, ResourceType};
use super::{apply, discovery, patch, subresource, table, watch};

/// Largest request body accepted.
const BODY_LIMIT: usize = 32 * 1024 * 1024;

/// The whole API server as a router (tests drive it with `oneshot`).
pub fn router(state: Arc<AppState>) -> Router {
    let mut r = Router::new();
    if state.test_hooks {
        r = r
            .route("/sandbox/stats", get(get_stats).delete(reset_stats))
            .route("/sandbox/writes", get(get_writes).delete(reset_writes))
            .route("/sandbox/faults", get(get_faults).post(set_faults).delete(clear_faults));
    }
    r.fallback(dispatch).layer(middleware::from_fn_with_state(state.clone(), guard)).with_state(state)
}

/// Auth, stats and faults, in that order.
async fn guard(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let user = match authenticate(&st, req.headers()) {
        Ok(u) => u,
        Err(e) => return status_response(&e),
    };
    let path = req.uri().path().to_string();
    if path.starts_with("/sandbox/") {
        return next.run(req).await;
    }
    let (verb, group, resource) = classify(req.method(), &path, req.uri().query());
    let (namespace, name) = parse_path(&path)
        .map(|t| (t.namespace.unwrap_or_default(), t.name.unwrap_or_default()))
        .unwrap_or_default();
    let access = Access { verb, group: &group, resource: &resource, namespace: &namespace, name: &name };
    st.stats.record(&access, &user);
    req.extensions_mut().insert(User(user.clone()));
    let changed = st.faults.changed();
    if let Some(plan) = st.faults.plan(&Call { user: &user, verb, resource: &resource, name: &name }) {
        if !plan.latency.is_zero() {
            tokio::time::sleep(plan.latency).await;
        }
        if let Some(hang) = plan.hang {
            tokio::select! {
                _ = tokio::time::sleep(hang) => {}
                _ = changed => {}
            }
        }
        if let Some(e) = plan.error {
            return status_response(&e);
        }
    }
    let response = next.run(req).await;
    st.writes.record(&access, verb, &user, response.status().as_u16());
    response
}

fn authenticate(st: &AppState, headers: &HeaderMap) -> Result<String, StatusError> {
    let got = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if let Some(user) = got.and_then(|g| st.users.read().unwrap_or_else(|e| e.into_inner()).get(g).cloned()) {
        return Ok(user);
    }
    let Some(want) = &st.token else { return Ok("anonymous".into()) };
    // Constant-time enough for a sandbox; the token itself is never logged or recorded.
    if got.is_some_and(|g| {
        g.len() == want.len() && g.bytes().zip(want.bytes()).fold(0, |a, (x, y)| a | (x ^ y)) == 0
    }) {
        Ok("admin".into())
    } else {
        Err(StatusError::new(401, "Unauthorized", "Unauthorized"))
    }
}

async fn get_stats(State(st): State<Arc<AppState>>) -> Response {
    json_value(StatusCode::OK, &st.stats.to_json())
}

async fn reset_stats(State(st): State<Arc<AppState>>) -> Response {
    st.stats.reset();
    json_value(StatusCode::OK, &st.stats.to_json())
}

async fn get_writes(State(st): State<Arc<AppState>>) -> Response {
    json_value(StatusCode::OK, &st.writes.to_json())
}

async fn reset_writes(State(st): State<Arc<AppState>>) -> Response {
    st.writes.reset();
    json_value(StatusCode::OK, &st.writes.to_json())
}

async fn get_faults(State(st): State<Arc<AppState>>) -> Response {
    json_value(StatusCode::OK, &st.faults.to_json())
}

async fn set_faults(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let spec: FaultsSpec = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return status_response(&StatusError::bad_request(format!("invalid faults: {e}"))),
    };
    if spec.compact {
        st.store.compact();
    }
    if spec.close_watches {
        st.close_watches.send_modify(|n| *n += 1);
    }
    st.faults.set(spec);
    json_value(StatusCode::OK, &st.faults.to_json())
}

async fn clear_faults(State(st): State<Arc<AppState>>) -> Response {
    st.faults.clear();
    json_value(StatusCode::OK, &st.faults.to_json())
}

/// Everything that is not a test hook.
async fn dispatch(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let q = parse_query(parts.uri.query());
    if let Some(r) = discovery::serve(&st.store, &parts.method, &path, &parts.headers) {
        return r;
    }
    let Some(t) = parse_path(&path) else { return status_response(&StatusError::no_such_type()) };
    let body = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            return status_response(&StatusError::new(
                413,
                "RequestEntityTooLarge",
                "request body too large",
            ));
        }
    };
    if let Some(r) = review(&st, &parts.method, &t, &body) {
        return r;
    }
    let user = parts.extensions.get::<User>().map(|u| u.0.clone()).unwrap_or_default();
    let req = Req { st: st.clone(), t, q, headers: parts.headers, body, user };
    match handle(&req, &parts.method).await {
        Ok(r) if req.wants_metadata() && !is_true(req.q.get("watch")) && !req.wants_table() => {
            metadata_only_response(r).await
        }
        Ok(r) => r,
        Err(e) => status_response(&e),
    }
}

/// Cuts a handler's JSON answer down to PartialObjectMetadata (watches do it per event instead).
async fn metadata_only_response(r: Response) -> Response {
    let (parts, body) = r.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return status_response(&StatusError::new(500, "InternalError", "cannot read the response body"));
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) => json_value(parts.status, &metadata_only(&v)),
        Err(_) => Response::from_parts(parts, axum::body::Body::from(bytes)),
    }
}

/// POST of a TokenReview or SubjectAccessReview: answered from the review table, never stored.
fn review(st: &AppState, method: &Method, t: &Target, body: &[u8]) -> Option<Response> {
    let reviews = st.reviews.read().unwrap_or_else(|e| e.into_inner());
    let answer = match (method, t.gvr.group.as_str(), t.gvr.resource.as_str()) {
        (&Method::POST, "authentication.k8s.io", "tokenreviews") => reviews.token_review(body),
        (&Method::POST, "authorization.k8s.io", "subjectaccessreviews") => reviews.access_review(body),
        _ => return None,
    };
    Some(match answer {
        Ok(v) => json_value(StatusCode::CREATED, &v),
        Err(e) => status_response(&StatusError::bad_request(e)),
    })
}

async fn handle(r: &Req, method: &Method) -> Result<Response, StatusError> {
    let store = &r.st.store;
    let rt = store.resource_type(&r.t.gvr).ok_or_else(StatusError::no_such_type)?;
    match (&r.t.namespace, rt.namespaced) {
        (Some(_), false) => return Err(StatusError::no_such_type()),
        (None, true) if r.t.name.is_some() => return Err(StatusError::no_such_type()),
        _ => {}
    }
    if let Some(ns) = &r.t.namespace
        && let Some(msg) = super::registry::check_name(super::registry::NameRule::Label, ns)
        && *method == Method::POST
    {
        return Err(StatusError::invalid("Namespace", ns, vec![("metadata.namespace".into(), msg)]));
    }
    let mut sub = r.t.sub.as_deref();
    match (sub, r.t.name.as_deref()) {
        (None, _) => {}
        (Some("status"), _) if rt.status => {}
        (Some("scale"), _) if rt.scale.is_some() => {}
        (Some(s), Some(n)) if rt.extra_subresources.contains(&s) => {
            let method = if *method == Method::HEAD { Method::GET } else { method.clone() };
            match s {
                "ephemeralcontainers" => return subresource::ephemeral_containers(r, &rt, &method, n),
                "token" => return subresource::token_request(r, &rt, &method, n),
                // A CSR's approval is its status conditions: the same write, another authorization.
                _ => sub = Some("status"),
            }
        }
        (Some(_), _) => return Err(StatusError::no_such_type()),
    }
    let name = r.t.name.clone();
    // HEAD is a GET whose body hyper drops.
    let method = if *method == Method::HEAD { Method::GET } else { method.clone() };
    match (method, name, sub) {
        (Method::GET, None, _) if is_true(r.q.get("watch")) => watch::serve(r, &rt).await,
        (Method::GET, None, _) => list(r, &rt),
        (Method::GET, Some(n), Some("scale")) => {
            let obj = store
                .get(&rt.gvr, r.ns(), &n)
                .ok_or_else(|| StatusError::not_found(&rt.gvr.qualified(), &n))?;
            Ok(json_value(StatusCode::OK, &patch::scale_of(&rt, &obj)))
        }
        (Method::GET, Some(n), _) => {
            let s = store
                .get_stored(&rt.gvr, r.ns(), &n)
                .ok_or_else(|| StatusError::not_found(&rt.gvr.qualified(), &n))?;
            if r.wants_table() {
                return Ok(json_value(
                    StatusCode::OK,
                    &table::table(&rt, std::slice::from_ref(&s), None, &r.q),
                ));
            }
            Ok(json_bytes(StatusCode::OK, s.json.clone()))
        }
        (Method::POST, None, None) => create(r, &rt),
        (Method::PUT, Some(n), s) => replace(r, &rt, &n, s),
        (Method::PATCH, Some(n), s) => patch::handle(r, &rt, &n, s, &r.opts()),
        (Method::DELETE, Some(n), None) => delete(r, &rt, &n),
        (Method::DELETE, None, None) => delete_collection(r, &rt),
        _ => Err(StatusError::method_not_allowed()),
    }
}

fn list_query(r: &Req) -> Result<ListQuery, StatusError> {
    let labels = LabelSelector::parse(r.q.get("labelSelector").map(String::as_str).unwrap_or(""))?;
    let fields = FieldSelector::parse(r.q.get("fieldSelector").map(String::as_str).unwrap_or(""))?;
    let limit = match r.q.get("limit").filter(|l| !l.is_empty()) {
        None => None,
        Some(l) => {
            Some(l.parse::<usize>().map_err(|_| StatusError::bad_request(format!("invalid limit {l:?}")))?)
        }
    };
    Ok(ListQuery { labels, fields, limit, continue_token: r.q.get("continue").cloned() })
}

fn list(r: &Req, rt: &ResourceType) -> Result<Response, StatusError> {
    let q = list_query(r)?;
    let page = r.st.store.list_page(&rt.gvr, r.t.namespace.as_deref(), &q)?;
    if r.wants_table() {
        return Ok(json_value(StatusCode::OK, &table::table(rt, &page.items, Some(&page), &r.q)));
    }
    let mut meta = json!({"resourceVersion": page.resource_version.to_string()});
    if let Some(c) = &page.continue_token {
        meta["continue"] = json!(c);
    }
    let head =
        json!({"kind": rt.list_kind(), "apiVersion": rt.gvr.api_version(), "metadata": meta}).to_string();
    // Concatenate the cached bytes: no object is serialized again.
    let total: usize = page.items.iter().map(|s| s.json.len() + 1).sum();
    let mut out = Vec::with_capacity(head.len() + total + 16);
    out.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    out.extend_from_slice(b",\"items\":[");
    for (i, s) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&s.json);
    }
    out.extend_from_slice(b"]}");
    Ok(json_bytes(StatusCode::OK, out))
}

fn create(r: &Req, rt: &ResourceType) -> Result<Response, StatusError> {
    let body = r.body_value()?;
    strict_check(r.strict(), rt, &body)?;
    let mut body = body;
    if rt.gvr == super::registry::Gvr::csrs() {
        subresource::stamp_csr(&mut body, &r.user)?;
    }
    apply::record_update(&mut body, None, r.q.get("fieldManager"), &rt.gvr, "Update");
    let obj = r.st.store.create_with(&rt.gvr, r.ns(), body, &r.opts())?;
    Ok(json_value(StatusCode::CREATED, &obj))
}

fn replace(r: &Req, rt: &ResourceType, name: &str, sub: Option<&str>) -> Result<Response, StatusError> {
    let body = r.body_value()?;
    if sub == Some("scale") {
        return patch::put_scale(r, rt, name, body, &r.opts());
    }
    let body_name = body.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    if body_name != name {
        return Err(StatusError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if let Some(ns) = body.pointer("/metadata/namespace").and_then(Value::as_str)
        && !ns.is_empty()
        && ns != r.ns()
    {
        return Err(StatusError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    strict_check(r.strict(), rt, &body)?;
    let part = if sub == Some("status") { Part::Status } else { Part::Main };
    let manager = r.q.get("fieldManager").cloned();
    let gvr = rt.gvr.clone();
    let obj = r.st.store.update_with(&rt.gvr, r.ns(), name, part, &r.opts(), move |cur| {
        let mut body = body;
        // PUT without a resourceVersion is an unconditional update.
        if body.pointer("/metadata/resourceVersion").and_then(Value::as_str).is_none_or(str::is_empty) {
            body["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
        }
        if body.pointer("/metadata/managedFields").is_none()
            && let Some(mf) = cur.pointer("/metadata/managedFields")
        {
            body["metadata"]["managedFields"] = mf.clone();
        }
        apply::record_update(&mut body, Some(cur), manager.as_ref(), &gvr, "Update");
        *cur = body;
        Ok(())
    })?;
    Ok(json_value(StatusCode::OK, &obj))
}

fn delete_opts(r: &Req) -> Result<DeleteOpts, StatusError> {
    // Decoded like any request body: JSON, YAML or the protobuf helm's typed clients send.
    let body: Value =
        if r.body.iter().all(|b| b.is_ascii_whitespace()) { json!({}) } else { r.body_value()? };
    let s = |p: &str| body.pointer(p).and_then(Value::as_str).map(str::to_string);
    let dry_run = r.dry_run()
        || body.get("dryRun").and_then(Value::as_array).is_some_and(|a| a.iter().any(|v| v == "All"));
    let propagation =
        s("/propagationPolicy").or_else(|| r.q.get("propagationPolicy").cloned()).or_else(|| {
            (body.get("orphanDependents").and_then(Value::as_bool) == Some(true))
                .then(|| "Orphan".to_string())
        });
    Ok(DeleteOpts {
        dry_run,
        propagation,
        precondition_uid: s("/preconditions/uid"),
        precondition_rv: s("/preconditions/resourceVersion"),
    })
}

fn delete(r: &Req, rt: &ResourceType, name: &str) -> Result<Response, StatusError> {
    let opts = delete_opts(r)?;
    let obj = r.st.store.delete_with(&rt.gvr, r.ns(), name, &opts)?;
    Ok(json_value(StatusCode::OK, &obj))
}

fn delete_collection(r: &Req, rt: &ResourceType) -> Result<Response, StatusError> {
    let opts = delete_opts(r)?;
    let q = ListQuery { limit: None, continue_token: None, ..list_query(r)? };
    let page = r.st.store.list_page(&rt.gvr, r.t.namespace.as_deref(), &q)?;
    let mut items = Vec::new();
    for s in &page.items {
        let ns = s.value.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
        let n = s.value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        match r.st.store.delete_with(&rt.gvr, ns, n, &opts) {
            Ok(v) => items.push((*v).clone()),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let list = json!({"kind": rt.list_kind(), "apiVersion": rt.gvr.api_version(),
        "metadata": {"resourceVersion": r.st.store.resource_version().to_string()}, "items": items});
    Ok(json_value(StatusCode::OK, &list))
}
