//! The Deployment controller: one ReplicaSet per pod template (`<deploy>-<pod-template-hash>`), rolling
//! updates within maxSurge / maxUnavailable, Recreate, and the status `kubectl rollout status` reads.
//!
//! It only scales ReplicaSets; it must not touch pods (the ReplicaSet controller owns them).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::{
    controlled_by, generation, is_deleting, meta, owner_ref, safe_encode, set_condition, spec_replicas,
};
use crate::registry::Gvr;
use crate::status::StatusError;
use crate::store::Store;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX: &str = "deployment.kubernetes.io/max-replicas";

/// The `pod-template-hash` of a pod template: stable across field order, changes with any template change.
pub fn template_hash(template: &Value) -> String {
    let mut t = template.clone();
    // The label is added to the template copy inside the ReplicaSet; it must not feed its own hash.
    if let Some(l) = t.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        l.remove("pod-template-hash");
    }
    safe_encode(super::stable_hash(&t))
}

/// An intOrString of maxSurge/maxUnavailable resolved against `total`; percentages round up for surge and
/// down for unavailability, as Kubernetes does.
pub fn int_or_percent(v: Option<&Value>, default: &str, total: i64, round_up: bool) -> i64 {
    let v = v.cloned().unwrap_or_else(|| json!(default));
    match &v {
        Value::Number(n) => n.as_i64().unwrap_or(0).max(0),
        Value::String(s) => match s.strip_suffix('%').and_then(|p| p.trim().parse::<i64>().ok()) {
            Some(p) => {
                let x = p.max(0) * total;
                if round_up { (x + 99) / 100 } else { x / 100 }
            }
            None => s.parse().unwrap_or(0),
        },
        _ => 0,
    }
}

/// (maxSurge, maxUnavailable) of a Deployment; both zero is not allowed, so unavailability becomes 1.
pub fn fenceposts(dep: &Value) -> (i64, i64) {
    let desired = spec_replicas(dep);
    if strategy(dep) == "Recreate" {
        return (0, 0);
    }
    let ru = dep.pointer("/spec/strategy/rollingUpdate");
    let surge = int_or_percent(ru.and_then(|r| r.get("maxSurge")), "25%", desired, true);
    let unavailable = int_or_percent(ru.and_then(|r| r.get("maxUnavailable")), "25%", desired, false);
    if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable.min(desired)) }
}

fn strategy(dep: &Value) -> &str {
    dep.pointer("/spec/strategy/type").and_then(Value::as_str).unwrap_or("RollingUpdate")
}

/// What the rollout planner needs of one ReplicaSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsInfo {
    pub name: String,
    pub spec: i64,
    pub available: i64,
}

/// One rolling-update step (Kubernetes' `reconcileNewReplicaSet` then `reconcileOldReplicaSets`): the new
/// `spec.replicas` of each ReplicaSet that changes. `olds` are sorted oldest first.
pub fn rolling_step(
    desired: i64,
    surge: i64,
    unavailable: i64,
    new: &RsInfo,
    olds: &[RsInfo],
) -> Vec<(String, i64)> {
    let total: i64 = new.spec + olds.iter().map(|o| o.spec).sum::<i64>();
    if new.spec > desired {
        return vec![(new.name.clone(), desired)];
    }
    if new.spec < desired {
        let max_total = desired + surge;
        if total < max_total {
            let up = (max_total - total).min(desired - new.spec);
            return vec![(new.name.clone(), new.spec + up)];
        }
    }
    let min_available = desired - unavailable;
    let new_unavailable = new.spec - new.available;
    let max_scaled_down = total - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return vec![];
    }
    let before = olds;
    let mut olds: Vec<RsInfo> = olds.to_vec();
    // First the old pods that are not available anyway: removing them costs no availability.
    let mut cleaned = 0;
    for o in olds.iter_mut() {
        if cleaned >= max_scaled_down {
            break;
        }
        if o.spec == 0 || o.spec == o.available {
            continue;
        }
        let n = (max_scaled_down - cleaned).min(o.spec - o.available);
        o.spec -= n;
        cleaned += n;
    }
    let available: i64 = new.available + olds.iter().map(|o| o.available.min(o.spec)).sum::<i64>();
    if available > min_available {
        let mut budget = (available - min_available).min(max_scaled_down - cleaned);
        for o in olds.iter_mut() {
            if budget <= 0 {
                break;
            }
            let n = o.spec.min(budget);
            o.spec -= n;
            budget -= n;
        }
    }
    olds.iter().zip(before).filter(|(o, b)| o.spec != b.spec).map(|(o, _)| (o.name.clone(), o.spec)).collect()
}

/// A ReplicaSet for `dep`'s current template.
pub fn new_replica_set(dep: &Value, hash: &str, replicas: i64, revision: i64) -> Value {
    let mut tmpl = dep.pointer("/spec/template").cloned().unwrap_or_else(|| json!({}));
    if !tmpl.get("metadata").is_some_and(Value::is_object) {
        tmpl["metadata"] = json!({});
    }
    if !tmpl.pointer("/metadata/labels").is_some_and(Value::is_object) {
        tmpl["metadata"]["labels"] = json!({});
    }
    tmpl["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    let mut selector = dep.pointer("/spec/selector").cloned().unwrap_or_else(|| json!({}));
    if !selector.get("matchLabels").is_some_and(Value::is_object) {
        selector["matchLabels"] = json!({});
    }
    selector["matchLabels"]["pod-template-hash"] = json!(hash);
    let mut labels = dep.pointer("/spec/template/metadata/labels").cloned().unwrap_or_else(|| json!({}));
    labels["pod-template-hash"] = json!(hash);
    let (surge, _) = fenceposts(dep);
    let desired = spec_replicas(dep);
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{}-{hash}", meta(dep, "name")),
            "namespace": meta(dep, "namespace"),
            "labels": labels,
            "annotations": {
                DESIRED: desired.to_string(),
                MAX: (desired + surge).to_string(),
                REVISION: revision.to_string(),
            },
            "ownerReferences": [owner_ref(dep)],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": dep.pointer("/spec/minReadySeconds").cloned().unwrap_or(json!(0)),
            "selector": selector,
            "template": tmpl,
        },
    })
}

fn revision(rs: &Value) -> i64 {
    rs.pointer(&format!("/metadata/annotations/{}", REVISION.replace('/', "~1")))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn status_of(rs: &Value, field: &str) -> i64 {
    super::status_i64(rs, field)
}

/// The Deployment status Kubernetes reports for these ReplicaSets (`new` may be absent right after a
/// template change). `old_status` keeps condition timestamps stable.
pub fn status_for(dep: &Value, new: Option<&Value>, olds: &[&Value]) -> Value {
    let desired = spec_replicas(dep);
    let all: Vec<&Value> = new.into_iter().chain(olds.iter().copied()).collect();
    let sum = |f: &str| all.iter().map(|r| status_of(r, f)).sum::<i64>();
    let replicas = sum("replicas");
    let ready = sum("readyReplicas");
    let available = sum("availableReplicas");
    let updated = new.map(|n| status_of(n, "replicas")).unwrap_or(0);
    let total_spec: i64 = all.iter().map(|r| spec_replicas(r)).sum();
    let unavailable = (total_spec - available).max(0);
    let (_, max_unavailable) = fenceposts(dep);
    let mut conds: Vec<Value> =
        dep.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    if available >= desired - max_unavailable {
        set_condition(
            &mut conds,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            true,
            None,
        );
    } else {
        set_condition(
            &mut conds,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            true,
            None,
        );
    }
    let complete = updated == desired && replicas == desired && available == desired;
    match new {
        Some(n) if complete => {
            let msg = format!("ReplicaSet \"{}\" has successfully progressed.", meta(n, "name"));
            set_condition(&mut conds, "Progressing", "True", "NewReplicaSetAvailable", &msg, true, None);
        }
        Some(n) => {
            let msg = format!("ReplicaSet \"{}\" is progressing.", meta(n, "name"));
            set_condition(&mut conds, "Progressing", "True", "ReplicaSetUpdated", &msg, true, None);
        }
        None => {}
    }
    // Kubernetes lists Available before Progressing.
    conds.sort_by_key(|c| c.get("type").and_then(Value::as_str) != Some("Available"));
    let mut s = json!({"observedGeneration": generation(dep)});
    for (k, n) in [
        ("replicas", replicas),
        ("updatedReplicas", updated),
        ("readyReplicas", ready),
        ("availableReplicas", available),
        ("unavailableReplicas", unavailable),
    ] {
        if n > 0 {
            s[k] = json!(n);
        }
    }
    s["conditions"] = Value::Array(conds);
    s
}

/// One pass over a Deployment. `owned`: the namespace's ReplicaSets by controller uid, as the pass indexed
/// them; each one is read again from the store, so only a ReplicaSet created since the index was built can
/// be missing (its event queues the Deployment again).
pub fn reconcile(
    store: &Store,
    ns: &str,
    name: &str,
    owned: &HashMap<String, Vec<Arc<Value>>>,
) -> Result<(), StatusError> {
    let Some(dep) = store.get(&Gvr::deployments(), ns, name) else { return Ok(()) };
    if is_deleting(&dep) {
        return Ok(());
    }
    let uid = meta(&dep, "uid");
    let desired = spec_replicas(&dep);
    let tmpl = dep.pointer("/spec/template").cloned().unwrap_or_else(|| json!({}));
    let hash = template_hash(&tmpl);
    let rs_all: Vec<Arc<Value>> = owned
        .get(uid)
        .into_iter()
        .flatten()
        .filter_map(|r| store.get(&Gvr::replicasets(), ns, meta(r, "name")))
        .collect();
    let mut owned: Vec<&Value> =
        rs_all.iter().map(|r| r.as_ref()).filter(|r| controlled_by(r, uid)).collect();
    owned.sort_by(|a, b| {
        (meta(a, "creationTimestamp"), revision(a), meta(a, "name")).cmp(&(
            meta(b, "creationTimestamp"),
            revision(b),
            meta(b, "name"),
        ))
    });
    let is_new = |r: &Value| {
        r.pointer("/metadata/labels/pod-template-hash").and_then(Value::as_str) == Some(hash.as_str())
    };
    let new = owned.iter().copied().find(|r| is_new(r));
    let olds: Vec<&Value> = owned.iter().copied().filter(|r| !is_new(r)).collect();
    let paused = dep.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
    let max_rev = owned.iter().map(|r| revision(r)).max().unwrap_or(0);
    let Some(new) = new else {
        if !paused {
            let old_spec: i64 = olds.iter().map(|o| spec_replicas(o)).sum();
            let replicas = if strategy(&dep) == "Recreate" {
                if old_spec == 0 && olds.iter().all(|o| super::status_i64(o, "replicas") == 0) {
                    desired
                } else {
                    0
                }
            } else {
                let (surge, _) = fenceposts(&dep);
                (desired + surge - old_spec).clamp(0, desired)
            };
            match store.create(&Gvr::replicasets(), ns, new_replica_set(&dep, &hash, replicas, max_rev + 1)) {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        return super::write_status(store, &Gvr::deployments(), &dep, status_for(&dep, None, &olds));
    };
    if !paused {
        // A rollback to an older template makes that ReplicaSet the newest revision again.
        if revision(new) < max_rev || revision(new) == 0 {
            annotate(store, new, REVISION, &(max_rev.max(revision(new)) + 1).to_string())?;
        }
        let steps = plan(&dep, new, &olds);
        for (rs, replicas) in steps {
            scale(store, &dep, ns, &rs, replicas)?;
        }
        cleanup(store, &dep, &olds)?;
    }
    super::write_status(store, &Gvr::deployments(), &dep, status_for(&dep, Some(new), &olds))
}

fn info(rs: &Value) -> RsInfo {
    RsInfo {
        name: meta(rs, "name").to_string(),
        spec: spec_replicas(rs),
        available: super::status_i64(rs, "availableReplicas"),
    }
}

/// The ReplicaSets to scale now, and to what.
fn plan(dep: &Value, new: &Value, olds: &[&Value]) -> Vec<(String, i64)> {
    let desired = spec_replicas(dep);
    let new_i = info(new);
    let old_i: Vec<RsInfo> = olds.iter().map(|o| info(o)).collect();
    let changes = if strategy(dep) == "Recreate" {
        if old_i.iter().any(|o| o.spec > 0) {
            old_i.iter().filter(|o| o.spec > 0).map(|o| (o.name.clone(), 0)).collect()
        } else if olds.iter().any(|o| super::status_i64(o, "replicas") > 0) {
            vec![]
        } else {
            vec![(new_i.name.clone(), desired)]
        }
    } else {
        let (surge, unavailable) = fenceposts(dep);
        rolling_step(desired, surge, unavailable, &new_i, &old_i)
    };
    let current = |n: &str| {
        if n == new_i.name { Some(new_i.spec) } else { old_i.iter().find(|o| o.name == n).map(|o| o.spec) }
    };
    changes.into_iter().filter(|(n, r)| current(n) != Some(*r)).collect()
}

fn scale(store: &Store, dep: &Value, ns: &str, rs: &str, replicas: i64) -> Result<(), StatusError> {
    let (surge, _) = fenceposts(dep);
    let desired = spec_replicas(dep);
    store.update(&Gvr::replicasets(), ns, rs, |r| {
        r["spec"]["replicas"] = json!(replicas);
        if let Some(a) = r.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
            a.insert(DESIRED.into(), json!(desired.to_string()));
            a.insert(MAX.into(), json!((desired + surge).to_string()));
        }
        Ok(())
    })?;
    Ok(())
}

fn annotate(store: &Store, rs: &Value, key: &str, value: &str) -> Result<(), StatusError> {
    store.update(&Gvr::replicasets(), meta(rs, "namespace"), meta(rs, "name"), |r| {
        if !r.pointer("/metadata/annotations").is_some_and(Value::is_object) {
            r["metadata"]["annotations"] = json!({});
        }
        r["metadata"]["annotations"][key] = json!(value);
        Ok(())
    })?;
    Ok(())
}

/// Deletes scaled-down old ReplicaSets beyond `revisionHistoryLimit` (default 10), oldest first.
fn cleanup(store: &Store, dep: &Value, olds: &[&Value]) -> Result<(), StatusError> {
    let limit =
        dep.pointer("/spec/revisionHistoryLimit").and_then(Value::as_i64).unwrap_or(10).max(0) as usize;
    let idle: Vec<&&Value> =
        olds.iter().filter(|o| spec_replicas(o) == 0 && super::status_i64(o, "replicas") == 0).collect();
    if idle.len() <= limit {
        return Ok(());
    }
    for o in &idle[..idle.len() - limit] {
        match store.delete(&Gvr::replicasets(), meta(o, "namespace"), meta(o, "name")) {
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(name: &str, spec: i64, available: i64) -> RsInfo {
        RsInfo { name: name.into(), spec, available }
    }

    #[test]
    fn percentages_round_like_kubernetes() {
        assert_eq!(int_or_percent(None, "25%", 3, true), 1);
        assert_eq!(int_or_percent(None, "25%", 3, false), 0);
        assert_eq!(int_or_percent(Some(&json!(2)), "25%", 3, false), 2);
        assert_eq!(int_or_percent(Some(&json!("50%")), "25%", 10, false), 5);
    }

    #[test]
    fn template_hash_ignores_field_order_and_its_own_label() {
        let a = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let b = json!({"spec": {"containers": [{"image": "i", "name": "c"}]}, "metadata": {"labels": {"app": "x", "pod-template-hash": "zz"}}});
        assert_eq!(template_hash(&a), template_hash(&b));
        let c = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "j"}]}});
        assert_ne!(template_hash(&a), template_hash(&c));
    }

    #[test]
    fn rolling_update_surges_then_scales_old_down_without_dropping_below_minimum() {
        // 4 replicas, defaults: surge 1, unavailable 1.
        let mut new = rs("new", 0, 0);
        let mut old = rs("old", 4, 4);
        let mut steps = 0;
        while !(new.spec == 4 && new.available == 4 && old.spec == 0) {
            steps += 1;
            assert!(steps < 20, "rollout does not converge: {new:?} {old:?}");
            for (n, r) in rolling_step(4, 1, 1, &new, std::slice::from_ref(&old)) {
                if n == "new" { new.spec = r } else { old.spec = r }
            }
            assert!(new.spec + old.spec <= 5, "surge exceeded: {new:?} {old:?}");
            // Pods start instantly in this model; availability follows spec.
            new.available = new.spec;
            old.available = old.spec;
            assert!(new.available + old.available >= 3, "too few available: {new:?} {old:?}");
        }
    }

    #[test]
    fn rolling_update_first_removes_unavailable_old_pods() {
        // 3 replicas, surge 1, unavailable 1; two old pods are not available.
        let new = rs("new", 1, 1);
        let olds = [rs("old", 3, 1)];
        let steps = rolling_step(3, 1, 1, &new, &olds);
        assert_eq!(steps, vec![("old".to_string(), 1)]);
    }

    #[test]
    fn scaling_without_a_template_change_moves_only_the_new_replica_set() {
        assert_eq!(rolling_step(5, 2, 1, &rs("n", 2, 2), &[]), vec![("n".to_string(), 5)]);
        assert_eq!(rolling_step(1, 1, 0, &rs("n", 3, 3), &[]), vec![("n".to_string(), 1)]);
    }
}
