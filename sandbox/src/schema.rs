//! Validation of custom resources against their CRD's `openAPIV3Schema` (structural subset), and the merge
//! keys Kubernetes declares for built-in list fields (strategic merge patch and server-side apply both
//! merge lists by them).
//!
//! Covers type, required, properties, items, additionalProperties, minimum/maximum, enum, pattern,
//! minLength/maxLength, minItems/maxItems, `x-kubernetes-int-or-string` and
//! `x-kubernetes-preserve-unknown-fields`. It must not mutate objects; it only reports `(field, message)`.

use serde_json::Value;

/// Every violation as `(field path, message)`; empty when the object is valid. `metadata`, `apiVersion` and
/// `kind` are the server's business and are skipped at the root.
pub fn validate(schema: &Value, obj: &Value) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    if let (Some(props), Some(o)) = (schema.get("properties").and_then(Value::as_object), obj.as_object()) {
        for (k, v) in o {
            if matches!(k.as_str(), "metadata" | "apiVersion" | "kind") {
                continue;
            }
            if let Some(s) = props.get(k) {
                walk(s, v, k, &mut errs);
            }
        }
        required(schema, o, "", &mut errs);
    } else {
        walk(schema, obj, "", &mut errs);
    }
    errs
}

fn required(
    schema: &Value,
    o: &serde_json::Map<String, Value>,
    path: &str,
    errs: &mut Vec<(String, String)>,
) {
    for r in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
        if let Some(r) = r.as_str()
            && !o.contains_key(r)
        {
            errs.push((join(path, r), "Required value".into()));
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn walk(schema: &Value, v: &Value, path: &str, errs: &mut Vec<(String, String)>) {
    let int_or_string = schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
    if v.is_null() && schema.get("nullable").and_then(Value::as_bool) == Some(true) {
        return;
    }
    if int_or_string {
        if !(v.is_string() || type_name(v) == "integer") {
            errs.push((
                path.into(),
                format!("Invalid value: \"{}\": must be an integer or a string", type_name(v)),
            ));
        }
        return;
    }
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(v);
        let ok = actual == t || (t == "number" && actual == "integer");
        if !ok {
            errs.push((
                path.into(),
                format!("Invalid value: \"{actual}\": {path} in body must be of type {t}: \"{actual}\""),
            ));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
        errs.push((path.into(), format!("Unsupported value: {v}: supported values: {}", list.join(", "))));
    }
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
                let excl = schema.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
                if x < min || (excl && x == min) {
                    errs.push((
                        path.into(),
                        format!(
                            "Invalid value: {v}: {path} in body should be greater than or equal to {min}"
                        ),
                    ));
                }
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
                let excl = schema.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
                if x > max || (excl && x == max) {
                    errs.push((
                        path.into(),
                        format!("Invalid value: {v}: {path} in body should be less than or equal to {max}"),
                    ));
                }
            }
        }
        Value::String(s) => {
            if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
                match regex::Regex::new(p) {
                    Ok(re) if !re.is_match(s) => errs.push((
                        path.into(),
                        format!("Invalid value: \"{s}\": {path} in body should match '{p}'"),
                    )),
                    _ => {}
                }
            }
            let len = s.chars().count() as u64;
            if let Some(m) = schema.get("minLength").and_then(Value::as_u64)
                && len < m
            {
                errs.push((
                    path.into(),
                    format!("Invalid value: \"{s}\": {path} in body should be at least {m} chars long"),
                ));
            }
            if let Some(m) = schema.get("maxLength").and_then(Value::as_u64)
                && len > m
            {
                errs.push((path.into(), format!("Too long: may not be more than {m} bytes")));
            }
        }
        Value::Array(items) => {
            if let Some(m) = schema.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < m
            {
                errs.push((
                    path.into(),
                    format!("Invalid value: {}: {path} in body should have at least {m} items", items.len()),
                ));
            }
            if let Some(m) = schema.get("maxItems").and_then(Value::as_u64)
                && (items.len() as u64) > m
            {
                errs.push((path.into(), format!("Too many: {}: must have at most {m} items", items.len())));
            }
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(s, item, &format!("{path}[{i}]"), errs);
                }
            }
        }
        Value::Object(o) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties");
            for (k, child) in o {
                if let Some(s) = props.and_then(|p| p.get(k)) {
                    walk(s, child, &join(path, k), errs);
                } else if let Some(s) = extra.filter(|e| e.is_object()) {
                    walk(s, child, &join(path, k), errs);
                }
            }
            required(schema, o, path, errs);
        }
        _ => {}
    }
}

/// Prunes a whole object: `apiVersion`, `kind` and `metadata` are always kept.
pub fn prune_root(schema: &Value, obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    let props = schema.get("properties").and_then(Value::as_object);
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true);
    o.retain(|k, v| {
        if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            return true;
        }
        match props.and_then(|p| p.get(k)) {
            Some(ps) => {
                prune(ps, v);
                true
            }
            None => preserve,
        }
    });
}

/// The dotted paths pruning would drop (`fieldValidation=Strict` refuses them).
pub fn unknown_fields(schema: &Value, obj: &Value) -> Vec<String> {
    let mut pruned = obj.clone();
    prune_root(schema, &mut pruned);
    let mut out = Vec::new();
    removed(obj, &pruned, "", &mut out);
    out
}

fn removed(before: &Value, after: &Value, path: &str, out: &mut Vec<String>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for (k, v) in b {
                let p = join(path, k);
                match a.get(k) {
                    Some(av) => removed(v, av, &p, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(b), Value::Array(a)) => {
            for (i, (bv, av)) in b.iter().zip(a).enumerate() {
                removed(bv, av, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Drops fields the schema does not declare, as the API server prunes them, unless
/// `x-kubernetes-preserve-unknown-fields` says to keep them.
pub fn prune(schema: &Value, v: &mut Value) {
    if schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true) {
        return;
    }
    match v {
        Value::Object(o) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties").filter(|e| e.is_object());
            if props.is_none()
                && extra.is_none()
                && schema.get("type").and_then(Value::as_str) != Some("object")
            {
                return;
            }
            o.retain(|k, child| {
                if let Some(s) = props.and_then(|p| p.get(k)) {
                    prune(s, child);
                    true
                } else if let Some(s) = extra {
                    prune(s, child);
                    true
                } else {
                    schema.get("additionalProperties").and_then(Value::as_bool) == Some(true)
                }
            });
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for item in items {
                    prune(s, item);
                }
            }
        }
        _ => {}
    }
}

/// The merge key Kubernetes declares for a list field, if it merges by key.
pub fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "volumeMounts"
        | "imagePullSecrets"
        | "volumeDevices" => Some("name"),
        "ports" => {
            if items.iter().any(|i| i.get("containerPort").is_some()) {
                Some("containerPort")
            } else {
                Some("port")
            }
        }
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        "hostAliases" => Some("ip"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["replicas"],
            "properties": {"replicas": {"type": "integer", "minimum": 0, "maximum": 10},
                           "mode": {"type": "string", "enum": ["a", "b"]},
                           "name": {"type": "string", "pattern": "^[a-z]+$"},
                           "port": {"x-kubernetes-int-or-string": true}}}}})
    }

    #[test]
    fn reports_each_violation_with_its_field() {
        let errs =
            validate(&schema(), &json!({"spec": {"replicas": 11, "mode": "c", "name": "A1", "port": true}}));
        let fields: Vec<&str> = errs.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["spec.mode", "spec.name", "spec.port", "spec.replicas"]);
        assert_eq!(validate(&schema(), &json!({"spec": {}}))[0].0, "spec.replicas");
        assert!(validate(&schema(), &json!({"spec": {"replicas": 3, "port": "http"}})).is_empty());
        assert_eq!(validate(&schema(), &json!({"spec": {"replicas": "3"}})).len(), 1);
    }

    #[test]
    fn unknown_fields_are_named_by_path() {
        let s = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "items": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "integer"}}}}}}}});
        let obj = json!({"apiVersion": "x/v1", "metadata": {"name": "n"}, "spec": {"junk": 1, "items": [{"a": 1, "b": 2}]}, "extra": 1});
        assert_eq!(unknown_fields(&s, &obj), ["extra", "spec.items[0].b", "spec.junk"]);
    }

    #[test]
    fn prunes_unknown_fields_but_keeps_preserved_ones() {
        let s = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"a": {"type": "integer"},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}});
        let mut v = json!({"spec": {"a": 1, "b": 2, "free": {"x": 1}}, "status": {}});
        prune(&s, &mut v);
        assert_eq!(v, json!({"spec": {"a": 1, "free": {"x": 1}}}));
    }
}
