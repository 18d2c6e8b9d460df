//! The ReplicaSet and ReplicationController controllers: keep `spec.replicas` active pods from the template,
//! pick pods to delete on scale-down the way Kubernetes does, and report the counts in `status`.
//!
//! It must not start pods (the kubelet does) nor decide replica counts (a Deployment or a user does).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::kubelet::{is_ready, pending_status};
use super::{
    NODE_NAME, controlled_by, generation, is_deleting, meta, owner_ref, random_suffix, spec_replicas,
};
use crate::registry::Gvr;
use crate::status::StatusError;
use crate::store::Store;

/// Which of the two pod-owning kinds a reconcile is for.
pub struct OwnerKind {
    pub gvr: fn() -> Gvr,
    pub kind: &'static str,
}

pub const REPLICA_SET: OwnerKind = OwnerKind { gvr: Gvr::replicasets, kind: "ReplicaSet" };
pub const REPLICATION_CONTROLLER: OwnerKind =
    OwnerKind { gvr: Gvr::replicationcontrollers, kind: "ReplicationController" };

/// A pod that counts towards replicas: not terminating, not finished.
pub fn is_active(pod: &Value) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default();
    !is_deleting(pod) && phase != "Succeeded" && phase != "Failed"
}

/// A new pod for `owner` (a ReplicaSet, ReplicationController or StatefulSet) from its pod template.
pub fn new_pod(owner: &Value, name: &str) -> Value {
    let tmpl = owner.pointer("/spec/template").cloned().unwrap_or_else(|| json!({}));
    let mut metadata = json!({
        "name": name,
        "namespace": meta(owner, "namespace"),
        "ownerReferences": [owner_ref(owner)],
    });
    for k in ["labels", "annotations"] {
        if let Some(v) = tmpl.pointer(&format!("/metadata/{k}")).filter(|v| v.is_object()) {
            metadata[k] = v.clone();
        }
    }
    let mut spec = tmpl.get("spec").cloned().unwrap_or_else(|| json!({}));
    if let Some(s) = spec.as_object_mut() {
        for (k, v) in [
            ("restartPolicy", json!("Always")),
            ("dnsPolicy", json!("ClusterFirst")),
            ("schedulerName", json!("default-scheduler")),
            ("serviceAccountName", json!("default")),
            ("terminationGracePeriodSeconds", json!(30)),
            ("enableServiceLinks", json!(true)),
            ("priority", json!(0)),
        ] {
            s.entry(k).or_insert(v);
        }
        s.insert("nodeName".into(), json!(NODE_NAME));
    }
    let status = pending_status(&spec);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status})
}

/// Kubernetes' order for deleting pods on scale-down (`controller.ActivePods` Less): unscheduled before
/// scheduled, Pending before Unknown before Running, not ready before ready, more restarts first, newer
/// first. `Less` means "delete first".
pub fn deletion_order(a: &Value, b: &Value) -> Ordering {
    let node =
        |p: &Value| !p.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default().is_empty();
    let phase_rank = |p: &Value| match p.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default()
    {
        "Pending" | "" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    };
    let restarts = |p: &Value| {
        p.pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter().filter_map(|c| c.get("restartCount").and_then(Value::as_i64)).max().unwrap_or(0)
            })
            .unwrap_or(0)
    };
    let created = |p: &Value| meta(p, "creationTimestamp").to_string();
    node(a)
        .cmp(&node(b))
        .then(phase_rank(a).cmp(&phase_rank(b)))
        .then(is_ready(a).cmp(&is_ready(b)))
        .then(restarts(b).cmp(&restarts(a)))
        .then(created(b).cmp(&created(a)))
        // Same second: the name decides, so the choice is deterministic.
        .then(meta(b, "name").cmp(meta(a, "name")))
}

/// Status of a ReplicaSet or ReplicationController over its active pods; zero counts are left out as the API
/// server's `omitempty` does.
pub fn status_for(owner: &Value, active: &[&Value]) -> Value {
    let ready = active.iter().filter(|p| is_ready(p)).count();
    // A ReplicaSet's selector is a LabelSelector; a ReplicationController's is a plain map.
    let sel = owner.pointer("/spec/selector");
    let structured =
        sel.is_some_and(|s| s.get("matchLabels").is_some() || s.get("matchExpressions").is_some());
    let selector = if structured { sel.and_then(|s| s.get("matchLabels")) } else { sel };
    let labeled = active
        .iter()
        .filter(|p| {
            selector.and_then(Value::as_object).is_none_or(|sel| {
                sel.iter().all(|(k, v)| p.pointer("/metadata/labels").and_then(|l| l.get(k)) == Some(v))
            })
        })
        .count();
    let mut s = json!({"replicas": active.len()});
    for (k, n) in [("fullyLabeledReplicas", labeled), ("readyReplicas", ready), ("availableReplicas", ready)]
    {
        if n > 0 {
            s[k] = json!(n);
        }
    }
    s["observedGeneration"] = json!(generation(owner));
    // The workload's existing conditions (e.g. ReplicaFailure set by someone else) are kept.
    if let Some(c) = owner.pointer("/status/conditions") {
        s["conditions"] = c.clone();
    }
    s
}

/// One pass: create or delete pods towards `spec.replicas`, then write the observed counts.
pub fn reconcile(
    store: &Store,
    kind: &OwnerKind,
    ns: &str,
    name: &str,
    owned: &HashMap<String, Vec<Arc<Value>>>,
) -> Result<(), StatusError> {
    let gvr = (kind.gvr)();
    let Some(owner) = store.get(&gvr, ns, name) else { return Ok(()) };
    if is_deleting(&owner) {
        return Ok(());
    }
    let uid = meta(&owner, "uid");
    let pods: Vec<&Value> = owned
        .get(uid)
        .map(|v| v.iter().map(|p| p.as_ref()).filter(|p| controlled_by(p, uid)).collect())
        .unwrap_or_default();
    let mut active: Vec<&Value> = pods.iter().copied().filter(|p| is_active(p)).collect();
    let want = spec_replicas(&owner) as usize;
    if active.len() < want {
        for _ in active.len()..want {
            create_pod(store, &owner, name)?;
        }
    } else if active.len() > want {
        active.sort_by(|a, b| deletion_order(a, b));
        for p in &active[..active.len() - want] {
            match store.delete(&Gvr::pods(), ns, meta(p, "name")) {
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    super::write_status(store, &gvr, &owner, status_for(&owner, &active))
}

/// Creates one pod named `<owner>-<5 random chars>`, retrying on the rare name collision.
fn create_pod(store: &Store, owner: &Value, owner_name: &str) -> Result<(), StatusError> {
    let mut last = None;
    for _ in 0..5 {
        let pod = new_pod(owner, &format!("{owner_name}-{}", random_suffix()));
        match store.create(&Gvr::pods(), meta(owner, "namespace"), pod) {
            Ok(_) => return Ok(()),
            Err(e) if e.code == 409 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| StatusError::internal("cannot name a pod")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: bool, phase: &str, ready: bool, restarts: i64, created: &str) -> Value {
        json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"nodeName": if node { NODE_NAME } else { "" }},
            "status": {"phase": phase,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                "containerStatuses": [{"name": "c", "restartCount": restarts}]},
        })
    }

    #[test]
    fn scale_down_order_matches_kubernetes() {
        let t0 = "2026-01-01T00:00:00Z";
        let t1 = "2026-01-01T00:00:05Z";
        let mut pods = [
            pod("old-ready", true, "Running", true, 0, t0),
            pod("new-ready", true, "Running", true, 0, t1),
            pod("crashing", true, "Running", true, 3, t0),
            pod("unready", true, "Running", false, 0, t0),
            pod("pending", true, "Pending", false, 0, t0),
            pod("unscheduled", false, "Pending", false, 0, t0),
        ];
        pods.sort_by(deletion_order);
        let names: Vec<&str> = pods.iter().map(|p| meta(p, "name")).collect();
        assert_eq!(names, ["unscheduled", "pending", "unready", "crashing", "new-ready", "old-ready"]);
    }

    #[test]
    fn replication_controller_selectors_are_plain_maps() {
        let rc = json!({"metadata": {"generation": 3}, "spec": {"selector": {"app": "x"}}});
        let good = json!({"metadata": {"labels": {"app": "x"}}});
        let other = json!({"metadata": {"labels": {"app": "y"}}});
        let s = status_for(&rc, &[&good, &other]);
        assert_eq!(s, json!({"replicas": 2, "fullyLabeledReplicas": 1, "observedGeneration": 3}));
    }
}
