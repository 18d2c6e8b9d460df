//! Server-side apply and `metadata.managedFields`: field sets per manager, conflicts, ownership.
//!
//! Field paths follow fieldsV1 (`f:name`, `k:{"name":"x"}`, `.`); lists merge by key where `schema::merge_key`
//! says so and are atomic otherwise. It must not store anything itself: it returns objects to the store.

use std::collections::BTreeSet;

use axum::response::Response;
use http::StatusCode;
use serde_json::{Map, Value, json};

use super::registry::Gvr;
use super::request::Req;
use super::response::json_value;
use super::schema::merge_key;
use super::stats::Access;
use super::status::StatusError;
use super::store::{Part, ResourceType, WriteOpts, now};

/// A field path: `["f:spec", "f:containers", "k:{\"name\":\"app\"}", "f:image"]`.
pub type FieldPath = Vec<String>;

/// One managedFields entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Managed {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub fields: BTreeSet<FieldPath>,
}

/// The leaf paths a value sets. `metadata` contributes only labels, annotations, finalizers and
/// ownerReferences; `status` never counts.
pub fn field_set(obj: &Value) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    let Some(o) = obj.as_object() else { return out };
    for (k, v) in o {
        match k.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                for mk in ["labels", "annotations", "finalizers", "ownerReferences"] {
                    if let Some(mv) = v.get(mk) {
                        walk(mv, mk, &mut vec!["f:metadata".into(), format!("f:{mk}")], &mut out);
                    }
                }
            }
            _ => walk(v, k, &mut vec![format!("f:{k}")], &mut out),
        }
    }
    out
}

fn walk(v: &Value, field: &str, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    match v {
        Value::Object(o) if !o.is_empty() => {
            for (k, child) in o {
                path.push(format!("f:{k}"));
                walk(child, k, path, out);
                path.pop();
            }
        }
        Value::Array(items) => match keyed(field, items) {
            Some(key) => {
                for item in items {
                    path.push(element_key(key, item));
                    path.push(".".into());
                    out.insert(path.clone());
                    path.pop();
                    walk(item, "", path, out);
                    path.pop();
                }
                if items.is_empty() {
                    out.insert(path.clone());
                }
            }
            None => {
                out.insert(path.clone());
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

fn keyed(field: &str, items: &[Value]) -> Option<&'static str> {
    merge_key(field, items).filter(|k| !items.is_empty() && items.iter().all(|i| i.get(*k).is_some()))
}

fn element_key(key: &str, item: &Value) -> String {
    format!("k:{}", json!({key: item.get(key).cloned().unwrap_or(Value::Null)}))
}

/// The value at a path, if present.
pub fn value_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for seg in path {
        if seg == "." {
            continue;
        }
        if let Some(f) = seg.strip_prefix("f:") {
            cur = cur.get(f)?;
        } else if let Some(k) = seg.strip_prefix("k:") {
            let want: Map<String, Value> = serde_json::from_str(k).ok()?;
            cur = cur.as_array()?.iter().find(|e| want.iter().all(|(wk, wv)| e.get(wk) == Some(wv)))?;
        } else {
            return None;
        }
    }
    Some(cur)
}

/// Removes the field (or list element) a path names.
fn remove_at(v: &mut Value, path: &[String]) {
    let path: Vec<&String> = path.iter().filter(|s| *s != ".").collect();
    let Some((last, parents)) = path.split_last() else { return };
    let mut cur = v;
    for seg in parents {
        let next = if let Some(f) = seg.strip_prefix("f:") {
            cur.get_mut(f)
        } else if let Some(k) = seg.strip_prefix("k:") {
            let Ok(want) = serde_json::from_str::<Map<String, Value>>(k) else { return };
            cur.as_array_mut()
                .and_then(|a| a.iter_mut().find(|e| want.iter().all(|(wk, wv)| e.get(wk) == Some(wv))))
        } else {
            None
        };
        let Some(n) = next else { return };
        cur = n;
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(o) = cur.as_object_mut() {
            o.remove(f);
        }
    } else if let Some(k) = last.strip_prefix("k:")
        && let Ok(want) = serde_json::from_str::<Map<String, Value>>(k)
        && let Some(a) = cur.as_array_mut()
    {
        a.retain(|e| !want.iter().all(|(wk, wv)| e.get(wk) == Some(wv)));
    }
}

/// fieldsV1 tree of a set of paths.
pub fn to_fields_v1(fields: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for p in fields {
        let mut cur = &mut root;
        for seg in p {
            let e = cur.entry(seg.clone()).or_insert_with(|| json!({}));
            let Some(next) = e.as_object_mut() else { break };
            cur = next;
        }
    }
    Value::Object(root)
}

/// Leaf paths of a fieldsV1 tree.
pub fn from_fields_v1(v: &Value) -> BTreeSet<FieldPath> {
    fn go(v: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        match v.as_object() {
            Some(o) if !o.is_empty() => {
                for (k, child) in o {
                    path.push(k.clone());
                    go(child, path, out);
                    path.pop();
                }
            }
            _ => {
                if !path.is_empty() {
                    out.insert(path.clone());
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    go(v, &mut vec![], &mut out);
    out
}

pub fn read_managed(obj: &Value) -> Vec<Managed> {
    let Some(entries) = obj.pointer("/metadata/managedFields").and_then(Value::as_array) else {
        return vec![];
    };
    entries
        .iter()
        .map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            Managed {
                manager: s("manager"),
                operation: s("operation"),
                api_version: s("apiVersion"),
                time: s("time"),
                subresource: e.get("subresource").and_then(Value::as_str).map(str::to_string),
                fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
            }
        })
        .collect()
}

pub fn write_managed(obj: &mut Value, entries: &[Managed]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&e.fields)});
            if let Some(s) = &e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    if list.is_empty() {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    } else {
        obj["metadata"]["managedFields"] = Value::Array(list);
    }
}

/// Records a non-apply write by `manager`: it takes ownership of the fields it changed.
pub fn record_update(
    new: &mut Value,
    old: Option<&Value>,
    manager: Option<&String>,
    gvr: &Gvr,
    operation: &str,
) {
    let Some(manager) = manager.filter(|m| !m.is_empty()) else { return };
    let changed: BTreeSet<FieldPath> = field_set(new)
        .into_iter()
        .filter(|p| old.is_none_or(|o| value_at(o, p) != value_at(new, p)))
        .collect();
    if changed.is_empty() {
        return;
    }
    let mut entries = read_managed(new);
    for e in entries.iter_mut().filter(|e| e.manager != *manager) {
        e.fields.retain(|p| !changed.contains(p));
    }
    match entries.iter_mut().find(|e| e.manager == *manager && e.operation == operation) {
        Some(e) => {
            e.fields.extend(changed);
            e.time = now();
        }
        None => entries.push(Managed {
            manager: manager.clone(),
            operation: operation.into(),
            api_version: gvr.api_version(),
            time: now(),
            subresource: None,
            fields: changed,
        }),
    }
    write_managed(new, &entries);
}

/// Merges an applied configuration into an object: maps recursively, keyed lists by key, the rest replaced.
fn merge_applied(target: &mut Value, cfg: &Value, field: &str) {
    match cfg {
        Value::Object(c) => {
            if !target.is_object() {
                *target = json!({});
            }
            let Some(t) = target.as_object_mut() else { return };
            for (k, v) in c {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_applied(t.entry(k.clone()).or_insert(Value::Null), v, k);
                }
            }
        }
        Value::Array(items) => match keyed(field, items) {
            Some(key) if target.is_array() => {
                let Some(cur) = target.as_array_mut() else { return };
                for item in items {
                    match cur.iter_mut().find(|e| e.get(key) == item.get(key)) {
                        Some(e) => merge_applied(e, item, ""),
                        None => cur.push(item.clone()),
                    }
                }
            }
            _ => *target = cfg.clone(),
        },
        other => *target = other.clone(),
    }
}

/// PATCH with `application/apply-patch+yaml`.
pub fn server_side_apply(
    r: &Req,
    rt: &ResourceType,
    name: &str,
    sub: Option<&str>,
    opts: &WriteOpts,
) -> Result<Response, StatusError> {
    let manager = r.q.get("fieldManager").filter(|m| !m.is_empty()).cloned().ok_or_else(|| {
        StatusError::invalid(
            "PatchOptions",
            "",
            vec![("fieldManager".into(), "Required value: is required for apply patch".into())],
        )
    })?;
    let force = matches!(r.q.get("force").map(String::as_str), Some("true" | "1"));
    let mut cfg: Value = serde_yaml::from_slice(&r.body)
        .map_err(|e| StatusError::bad_request(format!("error decoding YAML: {e}")))?;
    if !cfg.is_object() {
        return Err(StatusError::bad_request("the applied configuration must be an object"));
    }
    for (k, want) in [("apiVersion", rt.gvr.api_version()), ("kind", rt.kind.clone())] {
        match cfg.get(k).and_then(Value::as_str) {
            Some(v) if v == want => {}
            Some(v) => {
                return Err(StatusError::bad_request(format!(
                    "the {k} in the data ({v}) does not match the expected {k} ({want})"
                )));
            }
            None => {
                return Err(StatusError::bad_request(format!("{k} must be set in an applied configuration")));
            }
        }
    }
    super::request::strict_check(r.strict(), rt, &cfg)?;
    let body_name = cfg.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    // The API server fills an absent name from the URL (apply configurations built for one object often
    // carry only the fields they own); only a different name is an error.
    if body_name.is_empty() {
        if !cfg.get("metadata").is_some_and(Value::is_object) {
            cfg["metadata"] = json!({});
        }
        cfg["metadata"]["name"] = json!(name);
    } else if body_name != name {
        return Err(StatusError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let ns = r.t.namespace.clone().unwrap_or_default();
    let status_only = sub == Some("status");
    let fields = if status_only {
        let mut s = BTreeSet::new();
        if let Some(st) = cfg.get("status") {
            walk(st, "status", &mut vec!["f:status".into()], &mut s);
        }
        s
    } else {
        field_set(&cfg)
    };
    let gvr = rt.gvr.clone();
    let mk = move |cur: Option<&Value>| -> Result<Value, StatusError> {
        let mut entries = cur.map(read_managed).unwrap_or_default();
        let mut obj = match cur {
            None => {
                let mut o = cfg.clone();
                if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("managedFields");
                }
                o
            }
            Some(cur) => {
                let mut conflicts: Vec<(FieldPath, String)> = Vec::new();
                for e in entries.iter().filter(|e| e.manager != manager && e.operation == "Apply") {
                    for p in e.fields.intersection(&fields) {
                        if p.last().is_some_and(|s| s == ".") {
                            continue;
                        }
                        if value_at(cur, p) != value_at(&cfg, p) {
                            conflicts.push((p.clone(), e.manager.clone()));
                        }
                    }
                }
                if !conflicts.is_empty() && !force {
                    return Err(conflict_error(&gvr, name, &conflicts));
                }
                for (p, m) in &conflicts {
                    for e in entries.iter_mut().filter(|e| e.manager == *m) {
                        e.fields.remove(p);
                    }
                }
                let mut obj = cur.clone();
                let previous = entries
                    .iter()
                    .find(|e| e.manager == manager && e.operation == "Apply")
                    .map(|e| e.fields.clone())
                    .unwrap_or_default();
                for p in previous.difference(&fields) {
                    let owned_elsewhere = entries
                        .iter()
                        .filter(|e| e.manager != manager)
                        .any(|e| e.fields.iter().any(|q| q.starts_with(p) || p.starts_with(q)));
                    if !owned_elsewhere {
                        remove_at(&mut obj, p);
                    }
                }
                let mut applied = cfg.clone();
                if let Some(m) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("managedFields");
                    m.remove("resourceVersion");
                }
                merge_applied(&mut obj, &applied, "");
                obj
            }
        };
        // Re-applying the same configuration must be a no-op: no new time, no new resourceVersion, no event.
        let unchanged = cur.is_some_and(|c| without_managed(c) == without_managed(&obj));
        match entries.iter_mut().find(|e| e.manager == manager && e.operation == "Apply") {
            Some(e) if unchanged && e.fields == fields => {}
            Some(e) => {
                e.fields = fields.clone();
                e.time = now();
            }
            None => entries.push(Managed {
                manager: manager.clone(),
                operation: "Apply".into(),
                api_version: gvr.api_version(),
                time: now(),
                subresource: status_only.then(|| "status".to_string()),
                fields: fields.clone(),
            }),
        }
        write_managed(&mut obj, &entries);
        Ok(obj)
    };
    if status_only {
        let obj = r.st.store.update_with(&rt.gvr, &ns, name, Part::Status, opts, |cur| {
            *cur = mk(Some(&cur.clone()))?;
            Ok(())
        })?;
        return Ok(json_value(StatusCode::OK, &obj));
    }
    let (obj, created) = r.st.store.upsert_with(&rt.gvr, &ns, name, opts, mk)?;
    if created {
        // An apply that creates is authorized as `create` too: record that decision like a request's.
        let access =
            Access { verb: "create", group: &rt.gvr.group, resource: &rt.gvr.resource, namespace: &ns, name };
        r.st.stats.record(&access, &r.user);
    }
    Ok(json_value(if created { StatusCode::CREATED } else { StatusCode::OK }, &obj))
}

fn without_managed(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
        m.remove("resourceVersion");
    }
    v
}

fn conflict_error(gvr: &Gvr, name: &str, conflicts: &[(FieldPath, String)]) -> StatusError {
    let dotted = |p: &FieldPath| -> String {
        p.iter()
            .filter(|s| *s != ".")
            .map(|s| match s.strip_prefix("f:") {
                Some(f) => format!(".{f}"),
                None => format!("[{}]", s.trim_start_matches("k:")),
            })
            .collect()
    };
    let lines: Vec<String> =
        conflicts.iter().map(|(p, m)| format!("conflict with \"{m}\": {}", dotted(p))).collect();
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(p, m)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\""), "field": dotted(p)}))
        .collect();
    let n = conflicts.len();
    let plural = if n == 1 { "conflict" } else { "conflicts" };
    StatusError::new(409, "Conflict", format!("Apply failed with {n} {plural}: {}", lines.join("\n")))
        .with_details(json!({"name": name, "group": gvr.group, "kind": gvr.resource, "causes": causes}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_sets_round_trip_through_fields_v1() {
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "x", "labels": {"a": "b"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": "i", "args": ["x"]}]}}}});
        let fs = field_set(&obj);
        assert!(fs.contains(&vec!["f:spec".to_string(), "f:replicas".to_string()]));
        assert!(fs.contains(&vec!["f:metadata".to_string(), "f:labels".to_string(), "f:a".to_string()]));
        let image: FieldPath =
            ["f:spec", "f:template", "f:spec", "f:containers", r#"k:{"name":"app"}"#, "f:image"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        assert!(fs.contains(&image));
        assert_eq!(value_at(&obj, &image), Some(&json!("i")));
        assert_eq!(from_fields_v1(&to_fields_v1(&fs)), fs);
    }
}
