//! Object metadata helpers for the store: type-meta checks, defaults, generation rules, CRD status, owner
//! index upkeep, uids and timestamps.
//!
//! Pure functions over JSON values; they must not take the store's lock or send events.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};

use super::registry::{Gvr, ResourceType};
use super::schema;
use super::status::StatusError;

/// 400 when the body names another apiVersion or kind than the URL.
pub fn check_type_meta(rt: &ResourceType, o: &Map<String, Value>) -> Result<(), StatusError> {
    let want_av = rt.gvr.api_version();
    if let Some(av) = o.get("apiVersion").and_then(Value::as_str).filter(|a| !a.is_empty())
        && av != want_av
    {
        return Err(StatusError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({want_av})"
        )));
    }
    if let Some(k) = o.get("kind").and_then(Value::as_str).filter(|k| !k.is_empty())
        && k != rt.kind
    {
        return Err(StatusError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            rt.kind
        )));
    }
    Ok(())
}

pub fn validate_cr(rt: &ResourceType, name: &str, s: &Value, obj: &mut Value) -> Result<(), StatusError> {
    schema::prune_root(s, obj);
    let errs = schema::validate(s, obj);
    if errs.is_empty() { Ok(()) } else { Err(StatusError::invalid(&rt.kind, name, errs)) }
}

/// A change outside metadata and status (what bumps `generation`).
pub fn spec_changed(old: &Value, new: &Value) -> bool {
    let (Some(a), Some(b)) = (old.as_object(), new.as_object()) else { return old != new };
    let skip = |k: &str| matches!(k, "metadata" | "status" | "apiVersion" | "kind");
    let keys: HashSet<&String> = a.keys().chain(b.keys()).filter(|k| !skip(k)).collect();
    keys.into_iter().any(|k| a.get(k) != b.get(k))
}

/// Defaults a real API server fills that clients read back.
/// Rewrites Kubernetes applies on every write: a Secret's `stringData` moves into `data` (base64), a
/// Service port without `targetPort` or `protocol` gets the defaults.
pub fn normalize(rt: &ResourceType, o: &mut Map<String, Value>) {
    if rt.gvr == Gvr::new("", "v1", "secrets")
        && let Some(Value::Object(plain)) = o.remove("stringData")
    {
        let data = o.entry("data").or_insert_with(|| json!({}));
        if !data.is_object() {
            *data = json!({});
        }
        if let Some(d) = data.as_object_mut() {
            for (k, v) in plain {
                let text = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                d.insert(k, json!(super::proto::base64(text.as_bytes())));
            }
        }
    }
    if rt.gvr == Gvr::services()
        && let Some(ports) = o.get_mut("spec").and_then(|s| s.get_mut("ports")).and_then(Value::as_array_mut)
    {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            p.entry("protocol").or_insert_with(|| json!("TCP"));
            if !p.contains_key("targetPort")
                && let Some(port) = p.get("port").cloned()
            {
                p.insert("targetPort".into(), port);
            }
        }
    }
}

pub fn defaults(services: &mut u32, rt: &ResourceType, o: &mut Map<String, Value>) {
    normalize(rt, o);
    let g = &rt.gvr;
    if *g == Gvr::namespaces() {
        let status = o.entry("status").or_insert_with(|| json!({}));
        if status.get("phase").is_none() && status.is_object() {
            status["phase"] = json!("Active");
        }
        let spec = o.entry("spec").or_insert_with(|| json!({}));
        if spec.is_object() && spec.get("finalizers").is_none() {
            spec["finalizers"] = json!(["kubernetes"]);
        }
    }
    if rt.scale.is_some() && rt.crd.is_none() {
        let spec = o.entry("spec").or_insert_with(|| json!({}));
        if spec.is_object() && spec.get("replicas").is_none() {
            spec["replicas"] = json!(1);
        }
    }
    if *g == Gvr::services() {
        let spec = o.entry("spec").or_insert_with(|| json!({}));
        if spec.is_object() {
            if spec.get("type").is_none() {
                spec["type"] = json!("ClusterIP");
            }
            if spec.get("clusterIP").is_none() {
                *services += 1;
                let n = *services;
                let ip = format!("10.96.{}.{}", (n / 250) % 250, n % 250 + 1);
                spec["clusterIP"] = json!(ip);
                spec["clusterIPs"] = json!([ip]);
            }
        }
    }
}

pub fn crd_status(crd: &Value, types: &[ResourceType]) -> Value {
    let t = now();
    let stored: Vec<&str> = types.iter().filter(|t| t.storage).map(|t| t.gvr.version.as_str()).collect();
    json!({
        "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or_else(|| json!({})),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": t},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": t},
        ],
        "storedVersions": stored,
    })
}

pub fn index_owners(
    owners: &mut HashMap<String, HashSet<(Gvr, String, String)>>,
    gvr: &Gvr,
    ns: &str,
    name: &str,
    old: Option<&Value>,
    new: Option<&Value>,
) {
    let uids = |v: Option<&Value>| -> Vec<String> {
        v.and_then(|v| v.pointer("/metadata/ownerReferences"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter().filter_map(|r| r.get("uid").and_then(Value::as_str)).map(str::to_string).collect()
            })
            .unwrap_or_default()
    };
    let (before, after) = (uids(old), uids(new));
    if before == after {
        return;
    }
    let key = (gvr.clone(), ns.to_string(), name.to_string());
    for u in before.iter().filter(|u| !after.contains(u)) {
        if let Some(set) = owners.get_mut(u) {
            set.remove(&key);
            if set.is_empty() {
                owners.remove(u);
            }
        }
    }
    for u in after {
        owners.entry(u).or_default().insert(key.clone());
    }
}

/// RFC 3339 to the second, as Kubernetes writes timestamps.
pub fn now() -> String {
    let secs = jiff::Timestamp::now().as_second();
    jiff::Timestamp::from_second(secs).map(|t| t.to_string()).unwrap_or_default()
}

pub fn new_uid() -> String {
    let x = fastrand::u128(..);
    let h = format!("{x:032x}");
    format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5).map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char).collect()
}
