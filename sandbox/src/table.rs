//! `meta.k8s.io/v1 Table` responses for `kubectl get`: CRD printer columns, and the columns kubectl shows
//! for the common built-ins (pods, deployments, replica sets, stateful sets, services, namespaces).
//!
//! It owns the small JSONPath subset printer columns use. It must not change objects.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::registry::{PrinterColumn, ResourceType};
use super::store::{Page, Stored};

fn col(name: &str, type_: &str, json_path: &str, priority: i64) -> PrinterColumn {
    PrinterColumn {
        name: name.into(),
        type_: type_.into(),
        json_path: json_path.into(),
        description: String::new(),
        priority,
        format: if name == "Name" { "name".into() } else { String::new() },
    }
}

/// Built-in columns computed in code: (column, cell function).
type Cell = fn(&Value) -> Value;
type CellFn = Box<dyn Fn(&Value) -> Value>;

fn builtin(rt: &ResourceType) -> Option<Vec<(PrinterColumn, Cell)>> {
    let age: (PrinterColumn, Cell) = (col("Age", "string", "", 0), |o| json!(age_of(o)));
    let containers: (PrinterColumn, Cell) =
        (col("Containers", "string", "", 1), |o| json!(pod_spec_list(o, "name")));
    let images: (PrinterColumn, Cell) =
        (col("Images", "string", "", 1), |o| json!(pod_spec_list(o, "image")));
    let selector: (PrinterColumn, Cell) = (col("Selector", "string", "", 1), |o| {
        let sel = o.pointer("/spec/selector/matchLabels").or_else(|| o.pointer("/spec/selector"));
        json!(labels_string(sel))
    });
    Some(match (rt.gvr.group.as_str(), rt.gvr.resource.as_str()) {
        ("", "pods") => vec![
            (col("Ready", "string", "", 0), |o| {
                let cs = o.pointer("/status/containerStatuses").and_then(Value::as_array);
                let total = o.pointer("/spec/containers").and_then(Value::as_array).map_or(0, |c| c.len());
                let ready =
                    cs.map_or(0, |c| c.iter().filter(|s| s.get("ready") == Some(&json!(true))).count());
                json!(format!("{ready}/{total}"))
            }),
            (col("Status", "string", "", 0), |o| {
                if o.pointer("/metadata/deletionTimestamp").is_some() {
                    return json!("Terminating");
                }
                json!(
                    o.pointer("/status/reason")
                        .or(o.pointer("/status/phase"))
                        .and_then(Value::as_str)
                        .unwrap_or("Pending")
                )
            }),
            (col("Restarts", "string", "", 0), |o| {
                let n: i64 =
                    o.pointer("/status/containerStatuses").and_then(Value::as_array).map_or(0, |c| {
                        c.iter().filter_map(|s| s.get("restartCount").and_then(Value::as_i64)).sum()
                    });
                json!(n.to_string())
            }),
            age,
            (col("IP", "string", "", 1), |o| json!(str_or_none(o, "/status/podIP"))),
            (col("Node", "string", "", 1), |o| json!(str_or_none(o, "/spec/nodeName"))),
            (col("Nominated Node", "string", "", 1), |o| json!(str_or_none(o, "/status/nominatedNodeName"))),
            (col("Readiness Gates", "string", "", 1), |_| json!("<none>")),
        ],
        ("apps", "deployments") => vec![
            (col("Ready", "string", "", 0), |o| {
                let r = o.pointer("/status/readyReplicas").and_then(Value::as_i64).unwrap_or(0);
                let d = o.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
                json!(format!("{r}/{d}"))
            }),
            (col("Up-to-date", "integer", "", 0), |o| {
                json!(o.pointer("/status/updatedReplicas").and_then(Value::as_i64).unwrap_or(0))
            }),
            (col("Available", "integer", "", 0), |o| {
                json!(o.pointer("/status/availableReplicas").and_then(Value::as_i64).unwrap_or(0))
            }),
            age,
            containers,
            images,
            selector,
        ],
        ("apps", "replicasets") | ("", "replicationcontrollers") => vec![
            (col("Desired", "integer", "", 0), |o| {
                json!(o.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0))
            }),
            (col("Current", "integer", "", 0), |o| {
                json!(o.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0))
            }),
            (col("Ready", "integer", "", 0), |o| {
                json!(o.pointer("/status/readyReplicas").and_then(Value::as_i64).unwrap_or(0))
            }),
            age,
            containers,
            images,
            selector,
        ],
        ("apps", "statefulsets") => vec![
            (col("Ready", "string", "", 0), |o| {
                let r = o.pointer("/status/readyReplicas").and_then(Value::as_i64).unwrap_or(0);
                let d = o.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
                json!(format!("{r}/{d}"))
            }),
            age,
            containers,
            images,
        ],
        ("", "services") => vec![
            (col("Type", "string", "", 0), |o| json!(str_or_none(o, "/spec/type"))),
            (col("Cluster-IP", "string", "", 0), |o| json!(str_or_none(o, "/spec/clusterIP"))),
            (col("External-IP", "string", "", 0), |_| json!("<none>")),
            (col("Port(s)", "string", "", 0), |o| {
                let ports = o.pointer("/spec/ports").and_then(Value::as_array);
                let s: Vec<String> = ports
                    .map(|p| {
                        p.iter()
                            .map(|p| {
                                let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                                let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                                format!("{port}/{proto}")
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                json!(if s.is_empty() { "<none>".to_string() } else { s.join(",") })
            }),
            age,
            (col("Selector", "string", "", 1), |o| json!(labels_string(o.pointer("/spec/selector")))),
        ],
        ("", "namespaces") => {
            vec![(col("Status", "string", "", 0), |o| json!(str_or_none(o, "/status/phase"))), age]
        }
        ("", "configmaps") => vec![
            (col("Data", "integer", "", 0), |o| {
                let n = |k: &str| o.get(k).and_then(Value::as_object).map_or(0, |m| m.len());
                json!(n("data") + n("binaryData"))
            }),
            age,
        ],
        ("", "secrets") => vec![
            (col("Type", "string", "", 0), |o| {
                json!(o.get("type").and_then(Value::as_str).unwrap_or("Opaque"))
            }),
            (col("Data", "integer", "", 0), |o| {
                json!(o.get("data").and_then(Value::as_object).map_or(0, |m| m.len()))
            }),
            age,
        ],
        ("coordination.k8s.io", "leases") => {
            vec![(col("Holder", "string", "", 0), |o| json!(str_or_none(o, "/spec/holderIdentity"))), age]
        }
        ("", "events") | ("events.k8s.io", "events") => vec![
            (col("Last Seen", "string", "", 0), |o| {
                let t = [
                    "/lastTimestamp",
                    "/eventTime",
                    "/deprecatedLastTimestamp",
                    "/metadata/creationTimestamp",
                ]
                .iter()
                .find_map(|p| o.pointer(p).and_then(Value::as_str));
                json!(t.map(human_age).unwrap_or_else(|| "<unknown>".into()))
            }),
            (col("Type", "string", "", 0), |o| json!(str_or_none(o, "/type"))),
            (col("Reason", "string", "", 0), |o| json!(str_or_none(o, "/reason"))),
            (col("Object", "string", "", 0), |o| {
                let r = o.get("involvedObject").or_else(|| o.get("regarding"));
                let g = |k: &str| r.and_then(|r| r.get(k)).and_then(Value::as_str).unwrap_or_default();
                json!(format!("{}/{}", g("kind").to_ascii_lowercase(), g("name")))
            }),
            (col("Message", "string", "", 0), |o| {
                json!(o.get("message").or_else(|| o.get("note")).and_then(Value::as_str).unwrap_or_default())
            }),
        ],
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            vec![(col("Created At", "date", "", 0), |o| {
                json!(o.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or_default())
            })]
        }
        _ => return None,
    })
}

fn str_or_none(o: &Value, p: &str) -> String {
    o.pointer(p).and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or("<none>").to_string()
}

fn pod_spec_list(o: &Value, field: &str) -> String {
    o.pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|c| c.iter().filter_map(|c| c.get(field).and_then(Value::as_str)).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

fn labels_string(v: Option<&Value>) -> String {
    let s = v
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    if s.is_empty() { "<none>".into() } else { s }
}

fn age_of(o: &Value) -> String {
    o.pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .map(human_age)
        .unwrap_or_else(|| "<unknown>".into())
}

/// `2026-01-01T00:00:00Z` → `5m3s`, the way kubectl prints ages.
pub fn human_age(ts: &str) -> String {
    let Ok(t) = ts.parse::<jiff::Timestamp>() else { return "<invalid>".into() };
    let secs = jiff::Timestamp::now().as_second() - t.as_second();
    human_duration(secs)
}

pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 { format!("{m}m") } else { format!("{m}m{}s", s % 60) }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 { format!("{h}h") } else { format!("{h}h{}m", m % 60) }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 192 {
        if h % 24 == 0 { format!("{d}d") } else { format!("{d}d{}h", h % 24) }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y{}d", d / 365, d % 365)
    }
}

/// Evaluates the JSONPath subset printer columns use: `.a.b`, `.a[0]`, `.a[*].b`, `.a[?(@.k=="v")].b`.
pub fn json_path(obj: &Value, path: &str) -> Vec<Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}').trim();
    let mut cur: Vec<&Value> = vec![obj];
    let mut rest = path.trim_start_matches('$');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            if !key.is_empty() {
                cur = cur.into_iter().filter_map(|v| v.get(key)).collect();
            }
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else { return vec![] };
            let sel = &r[..end];
            rest = &r[end + 1..];
            cur = if sel == "*" {
                cur.into_iter()
                    .flat_map(|v| v.as_array().map(|a| a.iter().collect::<Vec<_>>()).unwrap_or_default())
                    .collect()
            } else if let Ok(i) = sel.parse::<usize>() {
                cur.into_iter().filter_map(|v| v.get(i)).collect()
            } else if let Some(f) = sel.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let Some((k, want)) = f.split_once("==") else { return vec![] };
                let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
                let k = k.trim();
                cur.into_iter()
                    .flat_map(|v| v.as_array().map(|a| a.iter().collect::<Vec<_>>()).unwrap_or_default())
                    .filter(|e| e.get(k).is_some_and(|x| x.as_str() == Some(want) || *x == want))
                    .collect()
            } else {
                let key = sel.trim_matches(|c| c == '\'' || c == '"');
                cur.into_iter().filter_map(|v| v.get(key)).collect()
            };
        } else {
            return vec![];
        }
    }
    cur.into_iter().cloned().collect()
}

fn cell(c: &PrinterColumn, obj: &Value) -> Value {
    let vals = json_path(obj, &c.json_path);
    let Some(first) = vals.first() else { return Value::Null };
    match c.type_.as_str() {
        "date" => first.as_str().map(|s| json!(human_age(s))).unwrap_or(Value::Null),
        "integer" | "number" | "boolean" if vals.len() == 1 => first.clone(),
        _ => {
            let parts: Vec<String> = vals
                .iter()
                .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
                .collect();
            json!(parts.join(","))
        }
    }
}

/// A Table of these objects. `q` carries `includeObject` (None, Metadata: default, Object).
pub fn table(
    rt: &ResourceType,
    items: &[Arc<Stored>],
    page: Option<&Page>,
    q: &HashMap<String, String>,
) -> Value {
    let name_col = col("Name", "string", ".metadata.name", 0);
    let mut defs = vec![name_col];
    let mut cells: Vec<CellFn> = vec![Box::new(|o: &Value| {
        json!(o.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default())
    })];
    if let Some(cols) = builtin(rt) {
        for (c, f) in cols {
            defs.push(c);
            cells.push(Box::new(f));
        }
    } else if rt.printer_columns.is_empty() {
        defs.push(col("Age", "date", ".metadata.creationTimestamp", 0));
        cells.push(Box::new(|o: &Value| json!(age_of(o))));
    } else {
        for c in &rt.printer_columns {
            let c2 = c.clone();
            defs.push(c.clone());
            cells.push(Box::new(move |o: &Value| cell(&c2, o)));
        }
    }
    if rt.kind == "Event" {
        // kubectl shows events without NAME unless -o wide, as the real server's columns say.
        let mut name = defs.remove(0);
        name.priority = 1;
        defs.push(name);
        let f = cells.remove(0);
        cells.push(f);
    }
    let include = q.get("includeObject").map(String::as_str).unwrap_or("Metadata");
    let rows: Vec<Value> = items
        .iter()
        .map(|s| {
            let o = &*s.value;
            let mut row = json!({"cells": cells.iter().map(|f| f(o)).collect::<Vec<_>>()});
            match include {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => {
                    row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                        "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({}))})
                }
            }
            row
        })
        .collect();
    let col_defs: Vec<Value> = defs
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": if c.type_ == "date" { "string" } else { c.type_.as_str() },
                "format": c.format, "description": c.description, "priority": c.priority})
        })
        .collect();
    let mut meta = json!({});
    if let Some(p) = page {
        meta["resourceVersion"] = json!(p.resource_version.to_string());
        if let Some(c) = &p.continue_token {
            meta["continue"] = json!(c);
        }
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": col_defs, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_path_subset() {
        let o = json!({"spec": {"replicas": 3}, "status": {"conditions": [
            {"type": "Ready", "status": "True"}, {"type": "Synced", "status": "False"}]}});
        assert_eq!(json_path(&o, ".spec.replicas"), vec![json!(3)]);
        assert_eq!(json_path(&o, ".status.conditions[?(@.type==\"Synced\")].status"), vec![json!("False")]);
        assert_eq!(json_path(&o, ".status.conditions[*].type"), vec![json!("Ready"), json!("Synced")]);
        assert_eq!(json_path(&o, ".status.conditions[0].status"), vec![json!("True")]);
        assert!(json_path(&o, ".nope.x").is_empty());
        assert!(json_path(&o, ".a[").is_empty());
    }

    #[test]
    fn ages_print_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(3600 * 3 + 60), "3h1m");
        assert_eq!(human_duration(86_400 * 3), "3d");
    }
}

#[cfg(test)]
mod table_tests {
    use super::*;
    use crate::registry::{Gvr, Registry};

    fn rows(gvr: Gvr, obj: Value) -> (Vec<String>, Vec<Value>) {
        let reg = Registry::builtin();
        let rt = reg.get(&gvr).expect("type");
        let stored = Arc::new(Stored { json: bytes::Bytes::new(), value: Arc::new(obj) });
        let t = table(rt, &[stored], None, &HashMap::new());
        let names = t["columnDefinitions"]
            .as_array()
            .map(|c| c.iter().filter_map(|c| c["name"].as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        (names, t["rows"][0]["cells"].as_array().cloned().unwrap_or_default())
    }

    #[test]
    fn builtin_tables_show_kubectl_columns() {
        let (cols, cells) = rows(
            Gvr::pods(),
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
                "status": {"phase": "Running", "podIP": "10.0.0.9", "containerStatuses": [
                    {"ready": true, "restartCount": 2}, {"ready": false, "restartCount": 1}]}}),
        );
        assert_eq!(cols[..5], ["Name", "Ready", "Status", "Restarts", "Age"]);
        assert_eq!(cells[..4], [json!("p"), json!("1/2"), json!("Running"), json!("3")]);
        assert_eq!(cells[5], "10.0.0.9");
        let (cols, cells) = rows(
            Gvr::events(),
            json!({"metadata": {"name": "e"}, "type": "Warning", "reason": "Failed",
                "involvedObject": {"kind": "Pod", "name": "p"}, "message": "boom"}),
        );
        assert_eq!(cols, ["Last Seen", "Type", "Reason", "Object", "Message", "Name"]);
        assert_eq!(
            cells[1..],
            [json!("Warning"), json!("Failed"), json!("pod/p"), json!("boom"), json!("e")]
        );
        let (_, cells) = rows(
            Gvr::new("", "v1", "configmaps"),
            json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}}),
        );
        assert_eq!(cells[1], 2);
    }
}
