//! Discovery (`/api`, `/apis`, `/api/v1`, `/apis/{g}`, `/apis/{g}/{v}`, and the aggregated
//! `apidiscovery.k8s.io/v2` documents of `/api` and `/apis` kubectl 1.30+ and kube-rs ask for first),
//! `/version`, health, and the minimal `/openapi/v3` that lets `kubectl apply` validate client-side and
//! `apply --server-side` work.
//!
//! Everything is computed from the registry at request time, so a CRD is discoverable as soon as it exists.
//! It must not serve objects.

use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::{Map, Value, json};

use super::registry::{Registry, ResourceType};
use super::response::{json_bytes, json_value, status_response};
use super::status::StatusError;
use super::store::Store;

const VERBS: [&str; 8] = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/// The response for a discovery path, or None when the path is a resource path.
pub fn serve(store: &Store, method: &Method, path: &str, headers: &HeaderMap) -> Option<Response> {
    let path = path.trim_end_matches('/');
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let is_get = *method == Method::GET || *method == Method::HEAD;
    if is_get && wants_aggregated(headers) {
        let doc = match segs.as_slice() {
            ["api"] => Some(aggregated(&store.registry(), true)),
            ["apis"] => Some(aggregated(&store.registry(), false)),
            _ => None,
        };
        if let Some(doc) = doc {
            let mut r = json_value(StatusCode::OK, &doc);
            // client-go decides by the Content-Type whether it got the aggregated document.
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(AGGREGATED_TYPE));
            return Some(r);
        }
    }
    let body = match segs.as_slice() {
        ["version"] => Some(version()),
        ["healthz"] | ["readyz"] | ["livez"] => {
            return Some(if is_get { json_bytes(StatusCode::OK, "ok") } else { not_allowed() });
        }
        ["api"] => Some(json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})),
        ["apis"] => Some(group_list(&store.registry())),
        ["api", v] => Some(resource_list(&store.registry(), "", v)?),
        ["apis", g] => Some(group(&store.registry(), g)?),
        ["apis", g, v] => Some(resource_list(&store.registry(), g, v)?),
        ["openapi", "v3"] => Some(openapi_index(&store.registry())),
        ["openapi", "v3", rest @ ..] => {
            let gv = rest.join("/");
            let doc = openapi_doc(&store.registry(), &gv);
            return Some(match doc {
                Some(d) if is_get => json_value(StatusCode::OK, &d),
                Some(_) => not_allowed(),
                None => status_response(&StatusError::no_such_type()),
            });
        }
        ["openapi", "v2"] if accepts_json(headers) => Some(openapi_v2(&store.registry())),
        ["openapi", ..] | [""] => return Some(status_response(&StatusError::no_such_type())),
        _ => None,
    };
    match body {
        Some(b) if is_get => Some(json_value(StatusCode::OK, &b)),
        Some(_) => Some(not_allowed()),
        None => None,
    }
}

const AGGREGATED_TYPE: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether `Accept` asks for `apidiscovery.k8s.io/v2` (or v2beta1) before plain JSON. The apiserver picks
/// the first media type it can serve, in the client's order.
fn wants_aggregated(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else { return false };
    for option in accept.split(',') {
        let params: Vec<&str> = option.split(';').map(str::trim).collect();
        if params.contains(&"g=apidiscovery.k8s.io") {
            if params.iter().any(|p| p.starts_with("as=APIGroupDiscovery"))
                && params.iter().any(|p| *p == "v=v2" || *p == "v=v2beta1")
            {
                return true;
            }
            continue;
        }
        if matches!(params.first(), Some(&("application/json" | "*/*" | "application/*"))) {
            return false;
        }
    }
    false
}

/// No Accept, or one that takes JSON.
fn accepts_json(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_none_or(|a| {
        a.split(',').any(|o| matches!(o.split(';').next().map(str::trim), Some("application/json" | "*/*")))
    })
}

/// The aggregated discovery document: `/api` (the core group alone) or `/apis` (every other group), each
/// group with its versions, preferred first, and each version with its resources and subresources.
fn aggregated(reg: &Registry, core: bool) -> Value {
    let groups: Vec<(String, Vec<String>)> =
        if core { vec![(String::new(), vec!["v1".to_string()])] } else { reg.groups().into_iter().collect() };
    let items: Vec<Value> = groups
        .iter()
        .map(|(g, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = reg.in_group_version(g, v).map(aggregated_resource).collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let mut meta = json!({"creationTimestamp": null});
            if !g.is_empty() {
                meta["name"] = json!(g);
            }
            json!({"metadata": meta, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
        "items": items})
}

fn aggregated_resource(t: &ResourceType) -> Value {
    let kind = json!({"group": t.gvr.group, "version": t.gvr.version, "kind": t.kind});
    let mut r = json!({"resource": t.gvr.resource, "responseKind": kind,
        "scope": if t.namespaced { "Namespaced" } else { "Cluster" }, "singularResource": t.singular,
        "verbs": VERBS});
    if !t.short_names.is_empty() {
        r["shortNames"] = json!(t.short_names);
    }
    if !t.categories.is_empty() {
        r["categories"] = json!(t.categories);
    }
    let mut subs = Vec::new();
    if t.status {
        subs.push(
            json!({"subresource": "status", "responseKind": kind, "verbs": ["get", "patch", "update"]}),
        );
    }
    if t.scale.is_some() {
        subs.push(json!({"subresource": "scale",
            "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
            "verbs": ["get", "patch", "update"]}));
    }
    for sub in &t.extra_subresources {
        let (g, v, k, verbs) = extra_kind(t, sub);
        subs.push(json!({"subresource": sub, "responseKind": {"group": g, "version": v, "kind": k},
            "verbs": verbs}));
    }
    if !subs.is_empty() {
        r["subresources"] = json!(subs);
    }
    r
}

/// (group, version, kind, verbs) of a subresource other than status and scale.
fn extra_kind<'a>(t: &'a ResourceType, sub: &str) -> (&'a str, &'a str, &'a str, Vec<&'static str>) {
    match sub {
        "token" => ("authentication.k8s.io", "v1", "TokenRequest", vec!["create"]),
        _ => (&t.gvr.group, &t.gvr.version, &t.kind, vec!["get", "patch", "update"]),
    }
}

fn not_allowed() -> Response {
    status_response(&StatusError::method_not_allowed())
}

pub fn version() -> Value {
    json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0", "gitCommit": "machinist-sandbox",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.0",
        "compiler": "gc", "platform": "linux/amd64"})
}

fn versions_of(reg: &Registry, g: &str) -> Vec<Value> {
    reg.groups()
        .get(g)
        .map(|vs| vs.iter().map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v})).collect())
        .unwrap_or_default()
}

fn group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg
        .groups()
        .keys()
        .map(|g| {
            let versions = versions_of(reg, g);
            json!({"name": g, "versions": versions, "preferredVersion": versions.first().cloned().unwrap_or(Value::Null)})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn group(reg: &Registry, g: &str) -> Option<Value> {
    let versions = versions_of(reg, g);
    let first = versions.first().cloned()?;
    Some(
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": versions, "preferredVersion": first}),
    )
}

fn resource_list(reg: &Registry, g: &str, v: &str) -> Option<Value> {
    let types: Vec<&ResourceType> = reg.in_group_version(g, v).collect();
    if types.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for t in types {
        let mut r = json!({"name": t.gvr.resource, "singularName": t.singular, "namespaced": t.namespaced,
            "kind": t.kind, "verbs": VERBS});
        if !t.short_names.is_empty() {
            r["shortNames"] = json!(t.short_names);
        }
        if !t.categories.is_empty() {
            r["categories"] = json!(t.categories);
        }
        resources.push(r);
        if t.status {
            resources.push(json!({"name": format!("{}/status", t.gvr.resource), "singularName": "",
                "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get", "patch", "update"]}));
        }
        if t.scale.is_some() {
            resources.push(json!({"name": format!("{}/scale", t.gvr.resource), "singularName": "",
                "namespaced": t.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale",
                "verbs": ["get", "patch", "update"]}));
        }
        for sub in &t.extra_subresources {
            let (g, v, kind, verbs) = extra_kind(t, sub);
            resources.push(json!({"name": format!("{}/{sub}", t.gvr.resource), "singularName": "",
                "namespaced": t.namespaced, "group": g, "version": v, "kind": kind, "verbs": verbs}));
        }
    }
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": if g.is_empty() { v.to_string() } else { format!("{g}/{v}") }, "resources": resources}),
    )
}

/// `api/v1` or `apis/apps/v1` for each served group/version.
fn gv_paths(reg: &Registry) -> Vec<String> {
    let mut out = vec!["api/v1".to_string()];
    for (g, vs) in reg.groups() {
        for v in vs {
            out.push(format!("apis/{g}/{v}"));
        }
    }
    out
}

fn openapi_index(reg: &Registry) -> Value {
    let mut paths = Map::new();
    for gv in gv_paths(reg) {
        let hash = openapi_doc(reg, &gv).map(|d| fnv(&d.to_string())).unwrap_or_default();
        paths.insert(gv.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={hash:016X}")}));
    }
    json!({"paths": paths})
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

/// The minimal OpenAPI v3 document of one group/version: each operation names its GVK.
fn openapi_doc(reg: &Registry, gv: &str) -> Option<Value> {
    let (g, v) = match gv.split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => ("", *v),
        ["apis", g, v] => (*g, *v),
        _ => return None,
    };
    let types: Vec<&ResourceType> = reg.in_group_version(g, v).collect();
    if types.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for t in &types {
        if let Some((name, schema)) = component_schema(t) {
            schemas.insert(name, schema);
        }
    }
    for t in types {
        let op = json!({"x-kubernetes-group-version-kind": {"group": g, "version": v, "kind": t.kind},
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}], "responses": {}});
        let base = if g.is_empty() { format!("/api/{v}") } else { format!("/apis/{g}/{v}") };
        let coll = if t.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", t.gvr.resource)
        } else {
            format!("{base}/{}", t.gvr.resource)
        };
        paths.insert(coll.clone(), json!({"get": op, "post": op}));
        paths.insert(format!("{coll}/{{name}}"), json!({"get": op, "put": op, "patch": op, "delete": op}));
    }
    Some(json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0"}, "paths": paths,
        "components": {"schemas": schemas}}))
}

/// A CRD version's schema as the apiserver publishes it: named `io.example.v1.Kind` (the group reversed),
/// tagged with its GVK (how `kubectl explain` finds it), with apiVersion, kind and metadata declared.
/// Built-in types have no schema here: kubectl then uses the types compiled into it.
fn component_schema(t: &ResourceType) -> Option<(String, Value)> {
    let mut schema = t.schema.clone()?;
    let o = schema.as_object_mut()?;
    let props = o.entry("properties").or_insert_with(|| json!({}));
    if let Some(p) = props.as_object_mut() {
        p.entry("apiVersion").or_insert_with(|| {
            json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."})
        });
        p.entry("kind").or_insert_with(|| {
            json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."})
        });
        p.insert("metadata".into(), json!({"type": "object", "description": "Standard object's metadata."}));
    }
    o.insert(
        "x-kubernetes-group-version-kind".into(),
        json!([{"group": t.gvr.group, "version": t.gvr.version, "kind": t.kind}]),
    );
    let reversed: Vec<&str> = t.gvr.group.split('.').rev().collect();
    Some((format!("{}.{}.{}", reversed.join("."), t.gvr.version, t.kind), schema))
}

/// `/openapi/v2` in JSON: each CRD's schema under `definitions`. Only what a JSON client can read: kubectl
/// asks for protobuf here and falls back to v3 when refused.
fn openapi_v2(reg: &Registry) -> Value {
    let mut definitions = Map::new();
    for t in reg.all() {
        if let Some((name, schema)) = component_schema(t) {
            definitions.insert(name, schema);
        }
    }
    json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.32.0"}, "paths": {},
        "definitions": definitions})
}
