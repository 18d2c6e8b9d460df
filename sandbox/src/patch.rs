//! PATCH: JSON merge patch, strategic merge patch, JSON patch, and the `/scale` subresource.
//!
//! It owns the patch maths; server-side apply and managedFields live in `apply`. It must not touch the
//! store outside the closures it hands to `Store::update_with`.

use serde_json::{Map, Value, json};

use axum::response::Response;
use http::StatusCode;

use super::apply::{self, record_update};
use super::request::Req;
use super::response::json_value;
use super::schema::merge_key;
use super::status::StatusError;
use super::store::{Part, ResourceType, WriteOpts};

/// Which patch a Content-Type asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

pub fn kind_of(content_type: &str) -> Result<PatchKind, StatusError> {
    match content_type {
        "application/json-patch+json" => Ok(PatchKind::Json),
        "application/merge-patch+json" => Ok(PatchKind::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
        "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
        other => Err(StatusError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json; got {other:?}"
            ),
        )),
    }
}

/// A parsed patch body.
pub enum ParsedPatch {
    Json(json_patch::Patch),
    Merge(Value),
    Strategic(Value),
}

pub fn parse(kind: PatchKind, body: &[u8]) -> Result<ParsedPatch, StatusError> {
    let bad = |e: serde_json::Error| StatusError::bad_request(format!("error decoding patch: {e}"));
    match kind {
        PatchKind::Json => Ok(ParsedPatch::Json(serde_json::from_slice(body).map_err(bad)?)),
        PatchKind::Merge | PatchKind::Strategic => {
            let v: Value = serde_json::from_slice(body).map_err(bad)?;
            if !v.is_object() {
                return Err(StatusError::bad_request("a merge patch must be a JSON object"));
            }
            Ok(if kind == PatchKind::Merge { ParsedPatch::Merge(v) } else { ParsedPatch::Strategic(v) })
        }
        PatchKind::Apply => Err(StatusError::bad_request("apply patches are not parsed here")),
    }
}

/// Applies a parsed patch to a document.
pub fn apply_to(doc: &mut Value, p: &ParsedPatch) -> Result<(), StatusError> {
    match p {
        ParsedPatch::Json(ops) => json_patch::patch(doc, &ops.0).map_err(|e| {
            StatusError::new(
                422,
                "Invalid",
                format!("the server rejected our request due to an error in our request: {e}"),
            )
        }),
        ParsedPatch::Merge(m) => {
            json_patch::merge(doc, m);
            Ok(())
        }
        ParsedPatch::Strategic(m) => {
            strategic(doc, m);
            Ok(())
        }
    }
}

/// PATCH on an object, its `/status` or its `/scale`.
pub fn handle(
    r: &Req,
    rt: &ResourceType,
    name: &str,
    sub: Option<&str>,
    opts: &WriteOpts,
) -> Result<Response, StatusError> {
    let ct = content_type(r);
    let kind = kind_of(&ct)?;
    if kind == PatchKind::Strategic && rt.crd.is_some() {
        return Err(StatusError::new(
            415,
            "UnsupportedMediaType",
            "strategic merge patch is not supported for custom resources; use application/merge-patch+json",
        ));
    }
    if kind == PatchKind::Apply {
        return apply::server_side_apply(r, rt, name, sub, opts);
    }
    let p = parse(kind, &r.body)?;
    let ns = r.t.namespace.clone().unwrap_or_default();
    if sub == Some("scale") {
        let rt2 = rt.clone();
        let obj = r.st.store.update_with(&rt.gvr, &ns, name, Part::Main, opts, move |cur| {
            let mut scale = scale_of(&rt2, cur);
            apply_to(&mut scale, &p)?;
            set_from_scale(&rt2, cur, &scale)
        })?;
        return Ok(json_value(StatusCode::OK, &scale_of(rt, &obj)));
    }
    let part = if sub == Some("status") { Part::Status } else { Part::Main };
    let manager = r.q.get("fieldManager").cloned();
    let gvr = rt.gvr.clone();
    let (strict, rt2) = (r.strict(), rt.clone());
    let obj = r.st.store.update_with(&rt.gvr, &ns, name, part, opts, move |cur| {
        let old = cur.clone();
        apply_to(cur, &p)?;
        if !cur.is_object() {
            return Err(StatusError::bad_request("the patch did not produce an object"));
        }
        super::request::strict_check(strict, &rt2, cur)?;
        record_update(cur, Some(&old), manager.as_ref(), &gvr, "Update");
        Ok(())
    })?;
    Ok(json_value(StatusCode::OK, &obj))
}

fn content_type(r: &Req) -> String {
    r.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// PUT on `/scale`.
pub fn put_scale(
    r: &Req,
    rt: &ResourceType,
    name: &str,
    body: Value,
    opts: &WriteOpts,
) -> Result<Response, StatusError> {
    let ns = r.t.namespace.clone().unwrap_or_default();
    let rt2 = rt.clone();
    let obj =
        r.st.store
            .update_with(&rt.gvr, &ns, name, Part::Main, opts, move |cur| set_from_scale(&rt2, cur, &body))?;
    Ok(json_value(StatusCode::OK, &scale_of(rt, &obj)))
}

/// Copies `spec.replicas` (and the resourceVersion precondition) from a Scale into the object.
fn set_from_scale(rt: &ResourceType, cur: &mut Value, scale: &Value) -> Result<(), StatusError> {
    let Some(spec) = &rt.scale else { return Err(StatusError::no_such_type()) };
    let name = cur.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let replicas = match scale.pointer("/spec/replicas") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_i64().filter(|n| *n >= 0 && *n <= i32::MAX as i64).ok_or_else(|| {
            StatusError::invalid(
                "Scale",
                &name,
                vec![(
                    "spec.replicas".into(),
                    format!("Invalid value: {v}: must be greater than or equal to 0"),
                )],
            )
        })?,
    };
    if let Some(rv) =
        scale.pointer("/metadata/resourceVersion").and_then(Value::as_str).filter(|s| !s.is_empty())
    {
        cur["metadata"]["resourceVersion"] = json!(rv);
    }
    set_path(cur, &spec.spec_replicas, json!(replicas));
    Ok(())
}

/// The autoscaling/v1 Scale of an object.
pub fn scale_of(rt: &ResourceType, obj: &Value) -> Value {
    let spec = rt.scale.clone().unwrap_or(super::registry::ScaleSpec {
        spec_replicas: "spec.replicas".into(),
        status_replicas: "status.replicas".into(),
        label_selector: None,
    });
    let m = |k: &str| obj.pointer(&format!("/metadata/{k}")).cloned().unwrap_or(Value::Null);
    let selector = match &spec.label_selector {
        Some(p) => get_path(obj, p).and_then(Value::as_str).unwrap_or_default().to_string(),
        None => {
            let sel = obj.pointer("/spec/selector");
            let labels =
                sel.and_then(|s| s.get("matchLabels")).or(sel.filter(|_| rt.kind == "ReplicationController"));
            labels
                .and_then(Value::as_object)
                .map(|l| {
                    l.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        }
    };
    let mut meta = json!({"name": m("name"), "uid": m("uid"), "resourceVersion": m("resourceVersion"),
        "creationTimestamp": m("creationTimestamp")});
    if rt.namespaced {
        meta["namespace"] = m("namespace");
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": meta,
        "spec": {"replicas": get_path(obj, &spec.spec_replicas).and_then(Value::as_i64).unwrap_or(0)},
        "status": {"replicas": get_path(obj, &spec.status_replicas).and_then(Value::as_i64).unwrap_or(0), "selector": selector},
    })
}

/// `spec.replicas` → the value there.
pub fn get_path<'a>(v: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').filter(|s| !s.is_empty()).try_fold(v, |cur, seg| cur.get(seg))
}

fn set_path(v: &mut Value, dotted: &str, value: Value) {
    let segs: Vec<&str> = dotted.split('.').filter(|s| !s.is_empty()).collect();
    let mut cur = v;
    for (i, seg) in segs.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Some(o) = cur.as_object_mut() else { return };
        if i + 1 == segs.len() {
            o.insert(seg.to_string(), value);
            return;
        }
        cur = o.entry(seg.to_string()).or_insert_with(|| json!({}));
    }
}

/// Lists of scalars that strategic merge treats as sets.
const SET_LISTS: &[&str] = &["finalizers"];

/// Strategic merge patch: JSON merge, but lists with a merge key merge element by element, and the
/// `$patch`, `$retainKeys`, `$setElementOrder` and `$deleteFromPrimitiveList` directives are honoured.
pub fn strategic(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = strip(patch);
        return;
    }
    if !target.is_object() {
        *target = json!({});
    }
    let Some(t) = target.as_object_mut() else { return };
    for (k, v) in p {
        if k.starts_with("$setElementOrder/") || k == "$retainKeys" || k == "$patch" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(cur)), Some(gone)) = (t.get_mut(field), v.as_array()) {
                cur.retain(|x| !gone.contains(x));
            }
            continue;
        }
        match v {
            Value::Null => {
                t.remove(k);
            }
            Value::Object(o) if o.get("$patch").and_then(Value::as_str) == Some("delete") => {
                t.remove(k);
            }
            Value::Object(_) => strategic(t.entry(k.clone()).or_insert(Value::Null), v),
            Value::Array(items) => merge_list(t.entry(k.clone()).or_insert(Value::Null), k, items),
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(keep) = p.get("$retainKeys").and_then(Value::as_array) {
        t.retain(|k, _| keep.iter().any(|x| x.as_str() == Some(k)));
    }
}

fn merge_list(target: &mut Value, field: &str, items: &[Value]) {
    let is_directive = |i: &Value| i.get("$patch").is_some() && i.as_object().is_some_and(|o| o.len() == 1);
    if items.iter().any(|i| is_directive(i) && i["$patch"] == "replace") {
        *target = Value::Array(items.iter().filter(|i| !is_directive(i)).map(strip).collect());
        return;
    }
    let key = merge_key(field, items).filter(|k| items.iter().all(|i| i.get(*k).is_some()));
    match key {
        Some(key) => {
            if !target.is_array() {
                *target = json!([]);
            }
            let Some(cur) = target.as_array_mut() else { return };
            for item in items {
                let pos = cur.iter().position(|c| c.get(key) == item.get(key));
                let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                match (pos, delete) {
                    (Some(i), true) => {
                        cur.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => strategic(&mut cur[i], item),
                    (None, false) => cur.push(strip(item)),
                }
            }
        }
        None if SET_LISTS.contains(&field) => {
            if !target.is_array() {
                *target = json!([]);
            }
            if let Some(cur) = target.as_array_mut() {
                for i in items {
                    if !cur.contains(i) {
                        cur.push(i.clone());
                    }
                }
            }
        }
        None => *target = Value::Array(items.iter().map(strip).collect()),
    }
}

/// Removes `$` directives from a value being inserted as is.
fn strip(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect::<Map<_, _>>(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategic_merges_containers_by_name_and_ports_by_number() {
        let mut doc = json!({"spec": {"containers": [
            {"name": "app", "image": "a:1", "ports": [{"containerPort": 80, "name": "http"}]},
            {"name": "side", "image": "s:1"}]}});
        strategic(
            &mut doc,
            &json!({"spec": {"containers": [
            {"name": "app", "image": "a:2", "ports": [{"containerPort": 9090, "name": "metrics"}]},
            {"name": "side", "$patch": "delete"}]}}),
        );
        assert_eq!(
            doc,
            json!({"spec": {"containers": [{"name": "app", "image": "a:2",
            "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 9090, "name": "metrics"}]}]}})
        );
    }

    #[test]
    fn strategic_directives_and_plain_lists() {
        let mut doc =
            json!({"metadata": {"finalizers": ["a", "b"], "labels": {"x": "1", "y": "2"}}, "args": ["1"]});
        strategic(
            &mut doc,
            &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["c"],
            "labels": {"x": null}, "$setElementOrder/finalizers": ["b", "c"]}, "args": ["2"]}),
        );
        assert_eq!(doc, json!({"metadata": {"finalizers": ["b", "c"], "labels": {"y": "2"}}, "args": ["2"]}));
    }

    #[test]
    fn json_patch_test_failure_is_invalid() {
        let p = parse(
            PatchKind::Json,
            br#"[{"op":"test","path":"/a","value":2},{"op":"replace","path":"/a","value":3}]"#,
        );
        let mut doc = json!({"a": 1});
        let e = p.and_then(|p| apply_to(&mut doc, &p)).unwrap_err();
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert_eq!(doc, json!({"a": 1}));
        assert_eq!(parse(PatchKind::Merge, b"[1]").err().map(|e| e.code), Some(400));
    }
}
