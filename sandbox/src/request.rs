//! One API request as the handlers see it: the shared server state ([`AppState`]), the parsed path
//! ([`Target`]) and query, the body decoded as JSON, YAML or protobuf, and the audit classification that
//! stats and faults use.
//!
//! Parsing only: it answers nothing (responses are `response`'s) and dispatches nothing (that is `http`).
//! It must not panic on any input.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use http::{HeaderMap, Method, header};
use serde_json::Value;

use super::faults::Faults;
use super::registry::Gvr;
use super::stats::Stats;
use super::status::StatusError;
use super::store::{ResourceType, Store, WriteOpts};
use super::write_log::WriteLog;

/// What every handler shares.
pub struct AppState {
    pub store: Store,
    pub token: Option<String>,
    pub test_hooks: bool,
    pub stats: Stats,
    pub writes: WriteLog,
    pub faults: Faults,
    /// Bearer tokens of further users (`Sandbox::kubeconfig_yaml_as`), token → user name.
    pub users: std::sync::RwLock<HashMap<String, String>>,
    /// Bumped to end every open watch.
    pub close_watches: tokio::sync::watch::Sender<u64>,
    pub bookmark_every: Duration,
    /// TokenReview / SubjectAccessReview answers.
    pub reviews: std::sync::RwLock<super::review::Reviews>,
}

impl AppState {
    pub fn new(store: Store, token: Option<String>, test_hooks: bool) -> AppState {
        AppState {
            store,
            token,
            test_hooks,
            stats: Stats::default(),
            writes: WriteLog::default(),
            faults: Faults::default(),
            users: Default::default(),
            close_watches: tokio::sync::watch::channel(0).0,
            bookmark_every: Duration::from_secs(5),
            reviews: Default::default(),
        }
    }
}

/// A request's user, after authentication.
#[derive(Clone, Debug)]
pub struct User(pub String);

/// (audit verb, group, resource[/subresource]) of a request, for stats and faults.
pub fn classify(method: &Method, path: &str, query: Option<&str>) -> (&'static str, String, String) {
    let Some(t) = parse_path(path) else {
        return (verb_of(method, false, false), String::new(), "nonresource".into());
    };
    let q = parse_query(query);
    let watching = is_true(q.get("watch"));
    let resource = match &t.sub {
        Some(s) => format!("{}/{s}", t.gvr.resource),
        None => t.gvr.resource.clone(),
    };
    let verb = if watching { "watch" } else { verb_of(method, t.name.is_some(), true) };
    (verb, t.gvr.group, resource)
}

fn verb_of(method: &Method, named: bool, resource: bool) -> &'static str {
    match *method {
        Method::GET | Method::HEAD if named || !resource => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named || !resource => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}

pub fn is_true(v: Option<&String>) -> bool {
    matches!(v.map(String::as_str), Some("true" | "1"))
}

/// A resource path, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub gvr: Gvr,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
}

/// `/api/v1/...` or `/apis/g/v/...` into a target; None for discovery and unknown shapes.
pub fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    if segs.iter().any(|s| s.is_empty()) {
        return None;
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    if rest.is_empty() || rest.iter().any(|s| s.is_empty()) {
        return None;
    }
    let own = |s: &&str| s.to_string();
    let namespaced = rest[0] == "namespaces"
        && rest.len() >= 3
        && !(group.is_empty() && rest.len() == 3 && matches!(rest[2], "status" | "finalize"));
    let (ns, res, tail) =
        if namespaced { (Some(rest[1]), rest[2], &rest[3..]) } else { (None, rest[0], &rest[1..]) };
    if tail.len() > 2 {
        return None;
    }
    Some(Target {
        gvr: Gvr::new(group, version, res),
        namespace: ns.map(|n| n.to_string()),
        name: tail.first().map(own),
        sub: tail.get(1).map(own),
    })
}

/// `a=b&c=d` with percent-decoding; later keys win.
pub fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in q.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(decode(k), decode(v));
    }
    out
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(x) => {
                        out.push(x);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One parsed resource request.
pub struct Req {
    pub st: Arc<AppState>,
    pub t: Target,
    pub q: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The authenticated user, for stats recorded past the middleware.
    pub user: String,
}

impl Req {
    /// `fieldValidation=Strict`.
    pub fn strict(&self) -> bool {
        self.q.get("fieldValidation").is_some_and(|v| v == "Strict")
    }
    pub fn ns(&self) -> &str {
        self.t.namespace.as_deref().unwrap_or("")
    }
    pub fn dry_run(&self) -> bool {
        self.q.get("dryRun").is_some_and(|v| v == "All")
    }
    pub fn opts(&self) -> WriteOpts {
        WriteOpts { dry_run: self.dry_run() }
    }
    pub fn wants_table(&self) -> bool {
        self.headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.split(',').next().is_some_and(|first| first.contains("as=Table")))
    }
    /// `Accept: application/json;as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1` first: the client
    /// wants objects cut down to apiVersion, kind and metadata.
    pub fn wants_metadata(&self) -> bool {
        wants_metadata(&self.headers)
    }
    pub fn content_type(&self) -> String {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
            .unwrap_or_default()
    }
    /// The request body as JSON (or YAML when it says so).
    pub fn body_value(&self) -> Result<Value, StatusError> {
        let ct = self.content_type();
        if ct == "application/vnd.kubernetes.protobuf" {
            return super::proto::decode(&self.body);
        }
        if ct.contains("protobuf") || ct.contains("cbor") {
            return Err(StatusError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml; got {ct}"
                ),
            ));
        }
        let v: Value = if ct.contains("yaml") {
            serde_yaml::from_slice(&self.body)
                .map_err(|e| StatusError::bad_request(format!("error decoding YAML: {e}")))?
        } else {
            serde_json::from_slice(&self.body).map_err(|e| {
                StatusError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
            })?
        };
        if !v.is_object() {
            return Err(StatusError::bad_request("the body of the request was not a JSON object"));
        }
        Ok(v)
    }
}

/// Whether the preferred media type of `Accept` is a PartialObjectMetadata (or its list).
pub fn wants_metadata(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split(',').next())
        .is_some_and(|first| first.split(';').any(|p| p.trim().starts_with("as=PartialObjectMetadata")))
}

/// `fieldValidation=Strict` on a type with a schema: fields the schema does not declare are an error.
pub fn strict_check(strict: bool, rt: &ResourceType, obj: &Value) -> Result<(), StatusError> {
    let Some(schema) = rt.schema.as_ref().filter(|_| strict) else { return Ok(()) };
    let unknown = super::schema::unknown_fields(schema, obj);
    if unknown.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
    Err(StatusError::bad_request(format!("strict decoding error: {}", list.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_like_the_api_server_routes() {
        let t = parse_path("/api/v1/namespaces/default/pods/web/status").expect("pod status");
        assert_eq!(t.gvr, Gvr::pods());
        assert_eq!(
            (t.namespace.as_deref(), t.name.as_deref(), t.sub.as_deref()),
            (Some("default"), Some("web"), Some("status"))
        );
        let t = parse_path("/api/v1/namespaces/default").expect("a namespace");
        assert_eq!((t.gvr.resource.as_str(), t.name.as_deref()), ("namespaces", Some("default")));
        let t = parse_path("/api/v1/namespaces/x/status").expect("namespace status");
        assert_eq!((t.name.as_deref(), t.sub.as_deref()), (Some("x"), Some("status")));
        let t = parse_path("/apis/apps/v1/deployments").expect("all deployments");
        assert_eq!((t.namespace, t.name), (None, None));
        assert!(parse_path("/apis/apps/v1").is_none());
        assert!(parse_path("/api/v1/namespaces/a/pods/b/c/d").is_none());
        assert!(parse_path("/api//v1").is_none());
    }

    #[test]
    fn queries_decode_and_verbs_follow_audit_names() {
        let q = parse_query(Some("&labelSelector=app%3Dweb%2Ctier+in+(a)&watch=1&bad=%zz%"));
        assert_eq!(q.get("labelSelector").map(String::as_str), Some("app=web,tier in (a)"));
        assert_eq!(q.get("bad").map(String::as_str), Some("%zz%"));
        assert_eq!(classify(&Method::GET, "/api/v1/pods", Some("watch=true")).0, "watch");
        assert_eq!(classify(&Method::GET, "/api/v1/namespaces/a/pods", None).0, "list");
        assert_eq!(
            classify(&Method::PATCH, "/apis/apps/v1/namespaces/a/deployments/d/scale", None).2,
            "deployments/scale"
        );
    }
}
