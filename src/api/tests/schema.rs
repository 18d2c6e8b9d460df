//! A small JSON Schema checker for the subset utoipa emits (`$ref`, `type`, `properties`, `required`,
//! `items`, `additionalProperties`, `oneOf`/`anyOf`/`allOf`, `enum`, `minimum`/`maximum`), and the lookup
//! of a route's response schema in the OpenAPI document.

use serde_json::Value;

/// The schema of the `status` response of `method template`, falling back to the `4XX`/`5XX` range.
pub fn response_schema<'a>(doc: &'a Value, template: &str, method: &str, status: u16) -> Option<&'a Value> {
    let responses = doc.get("paths")?.get(template)?.get(method)?.get("responses")?;
    let range = format!("{}XX", status / 100);
    let response = responses.get(status.to_string()).or_else(|| responses.get(&range))?;
    let content = response.get("content")?;
    let (_, media) = content.as_object()?.iter().next()?;
    media.get("schema")
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            doc.pointer(pointer).map(|s| resolve(doc, s)).unwrap_or(&Value::Null)
        }
        None => schema,
    }
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    }
}

/// Every violation of `schema` by `value`, each prefixed with its JSON path.
pub fn validate(doc: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let schema = resolve(doc, schema);
    let mut errors = Vec::new();
    if schema.is_null() {
        return vec![format!("{at}: unresolvable schema")];
    }
    if let Some(types) = schema.get("type") {
        let ok = match types {
            Value::String(t) => type_matches(t, value),
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).any(|t| type_matches(t, value)),
            _ => true,
        };
        if !ok {
            errors.push(format!("{at}: {value} is not of type {types}"));
            return errors;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        errors.push(format!("{at}: {value} not in enum"));
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            errors.push(format!("{at}: {n} < {min}"));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            errors.push(format!("{at}: {n} > {max}"));
        }
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for sub in all {
            errors.extend(validate(doc, sub, value, at));
        }
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        let passing = one.iter().filter(|s| validate(doc, s, value, at).is_empty()).count();
        if passing != 1 {
            errors.push(format!("{at}: {passing} oneOf branches match {value}"));
        }
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array)
        && !any.iter().any(|s| validate(doc, s, value, at).is_empty())
    {
        errors.push(format!("{at}: no anyOf branch matches"));
    }
    if let Some(object) = value.as_object() {
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(name) {
                    errors.push(format!("{at}: missing required {name}"));
                }
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (key, field) in object {
            let path = format!("{at}.{key}");
            match properties.and_then(|p| p.get(key)) {
                Some(sub) => errors.extend(validate(doc, sub, field, &path)),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => errors.push(format!("{path}: not allowed")),
                    Some(sub @ Value::Object(_)) => errors.extend(validate(doc, sub, field, &path)),
                    _ => {}
                },
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            errors.extend(validate(doc, items, item, &format!("{at}[{i}]")));
        }
    }
    errors
}

#[test]
fn the_checker_rejects_what_it_should() {
    let doc = serde_json::json!({ "components": { "schemas": { "P": {
        "type": "object", "required": ["a"],
        "properties": { "a": { "type": "integer", "minimum": 0 }, "b": { "type": ["string", "null"] } },
        "additionalProperties": false } } } });
    let schema = serde_json::json!({ "$ref": "#/components/schemas/P" });
    assert!(validate(&doc, &schema, &serde_json::json!({"a": 1, "b": null}), "$").is_empty());
    assert!(!validate(&doc, &schema, &serde_json::json!({"b": "x"}), "$").is_empty());
    assert!(!validate(&doc, &schema, &serde_json::json!({"a": -1}), "$").is_empty());
    assert!(!validate(&doc, &schema, &serde_json::json!({"a": 1, "c": 1}), "$").is_empty());
    assert!(!validate(&doc, &schema, &serde_json::json!({"a": "1"}), "$").is_empty());
}
