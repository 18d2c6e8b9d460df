//! The StatefulSet controller: ordinal pods `<sts>-0..N-1`, created in order (each after its predecessor is
//! ready, unless `podManagementPolicy: Parallel`), deleted from the highest ordinal, replaced from the highest
//! ordinal on a template change, with `currentRevision` / `updateRevision` in status.
//!
//! It must not start pods (the kubelet does).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Value, json};

use super::kubelet::is_ready;
use super::replicaset::{is_active, new_pod};
use super::{controlled_by, generation, is_deleting, meta, safe_encode, spec_replicas};
use crate::registry::Gvr;
use crate::status::StatusError;
use crate::store::Store;

const REVISION_LABEL: &str = "controller-revision-hash";

/// `<sts>-<hash of the pod template>`: the revision name pods carry in `controller-revision-hash`.
pub fn revision_name(sts: &Value) -> String {
    let tmpl = sts.pointer("/spec/template").cloned().unwrap_or_else(|| json!({}));
    format!("{}-{}", meta(sts, "name"), safe_encode(super::stable_hash(&tmpl)))
}

/// The ordinal of `pod` if it is named `<sts>-<n>`.
pub fn ordinal(sts_name: &str, pod: &str) -> Option<usize> {
    let rest = pod.strip_prefix(sts_name)?.strip_prefix('-')?;
    if rest.is_empty() || (rest.len() > 1 && rest.starts_with('0')) {
        return None;
    }
    rest.parse().ok()
}

/// Pod `<sts>-<i>` of the current template, with the labels a StatefulSet controller adds.
pub fn ordinal_pod(sts: &Value, i: usize, revision: &str) -> Value {
    let name = format!("{}-{i}", meta(sts, "name"));
    let mut pod = new_pod(sts, &name);
    if !pod.pointer("/metadata/labels").is_some_and(Value::is_object) {
        pod["metadata"]["labels"] = json!({});
    }
    let labels = &mut pod["metadata"]["labels"];
    labels["statefulset.kubernetes.io/pod-name"] = json!(name);
    labels["apps.kubernetes.io/pod-index"] = json!(i.to_string());
    labels[REVISION_LABEL] = json!(revision);
    pod["spec"]["hostname"] = json!(name);
    if let Some(svc) = sts.pointer("/spec/serviceName").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        pod["spec"]["subdomain"] = json!(svc);
    }
    pod
}

fn pod_revision(pod: &Value) -> &str {
    pod.pointer("/metadata/labels/controller-revision-hash").and_then(Value::as_str).unwrap_or_default()
}

/// What to do next, given the pods by ordinal. Pure, so the ordering rules are testable without a store.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Create(usize),
    Delete(usize),
    Wait,
}

pub fn plan(
    replicas: usize,
    parallel: bool,
    partition: usize,
    rolling: bool,
    pods: &BTreeMap<usize, (bool, bool)>,
) -> Vec<Step> {
    // pods: ordinal → (ready, on the update revision)
    let mut steps = Vec::new();
    let extra: Vec<usize> = pods.keys().rev().copied().filter(|i| *i >= replicas).collect();
    if let Some(first) = extra.first() {
        if parallel {
            return extra.into_iter().map(Step::Delete).collect();
        }
        return vec![Step::Delete(*first)];
    }
    for i in 0..replicas {
        match pods.get(&i) {
            None => {
                steps.push(Step::Create(i));
                if !parallel {
                    return steps;
                }
            }
            Some((ready, _)) if !ready && !parallel => return vec![Step::Wait],
            Some(_) => {}
        }
    }
    if !steps.is_empty() {
        return steps;
    }
    if rolling && pods.values().all(|(ready, _)| *ready) {
        // Replace the highest ordinal not yet on the update revision; it is recreated on the next pass.
        if let Some((i, _)) = pods.iter().rev().find(|(i, (_, updated))| **i >= partition && !updated) {
            return vec![Step::Delete(*i)];
        }
    }
    steps
}

pub fn reconcile(
    store: &Store,
    ns: &str,
    name: &str,
    owned: &HashMap<String, Vec<Arc<Value>>>,
) -> Result<(), StatusError> {
    let Some(sts) = store.get(&Gvr::statefulsets(), ns, name) else { return Ok(()) };
    if is_deleting(&sts) {
        return Ok(());
    }
    let uid = meta(&sts, "uid");
    let update_rev = revision_name(&sts);
    let mut by_ord: BTreeMap<usize, &Value> = BTreeMap::new();
    for p in owned.get(uid).map(|v| v.as_slice()).unwrap_or_default() {
        if controlled_by(p, uid)
            && is_active(p)
            && let Some(i) = ordinal(name, meta(p, "name"))
        {
            by_ord.insert(i, p.as_ref());
        }
    }
    let view: BTreeMap<usize, (bool, bool)> =
        by_ord.iter().map(|(i, p)| (*i, (is_ready(p), pod_revision(p) == update_rev))).collect();
    let replicas = spec_replicas(&sts) as usize;
    let parallel = sts.pointer("/spec/podManagementPolicy").and_then(Value::as_str) == Some("Parallel");
    let strategy =
        sts.pointer("/spec/updateStrategy/type").and_then(Value::as_str).unwrap_or("RollingUpdate");
    let partition =
        sts.pointer("/spec/updateStrategy/rollingUpdate/partition").and_then(Value::as_u64).unwrap_or(0);
    for step in plan(replicas, parallel, partition as usize, strategy == "RollingUpdate", &view) {
        match step {
            Step::Create(i) => match store.create(&Gvr::pods(), ns, ordinal_pod(&sts, i, &update_rev)) {
                Ok(_) => {}
                // A pod of that name that is still terminating, or not ours: wait for the next event.
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            },
            Step::Delete(i) => match store.delete(&Gvr::pods(), ns, &format!("{name}-{i}")) {
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            },
            Step::Wait => {}
        }
    }
    let pods: Vec<&Value> = by_ord.values().copied().collect();
    super::write_status(store, &Gvr::statefulsets(), &sts, status_for(&sts, &pods, &update_rev))
}

/// StatefulSet status over its active pods.
pub fn status_for(sts: &Value, pods: &[&Value], update_rev: &str) -> Value {
    let replicas = spec_replicas(sts) as usize;
    let ready = pods.iter().filter(|p| is_ready(p)).count();
    let updated = pods.iter().filter(|p| pod_revision(p) == update_rev).count();
    let prev_current = sts.pointer("/status/currentRevision").and_then(Value::as_str).unwrap_or(update_rev);
    // The rollout is done when every wanted pod runs the update revision; then it becomes current.
    let current_rev = if updated == replicas && pods.len() == replicas { update_rev } else { prev_current };
    let current = pods.iter().filter(|p| pod_revision(p) == current_rev).count();
    let mut s = json!({
        "replicas": pods.len(),
        "observedGeneration": generation(sts),
        "currentRevision": current_rev,
        "updateRevision": update_rev,
        "collisionCount": 0,
        "availableReplicas": ready,
    });
    for (k, n) in [("readyReplicas", ready), ("currentReplicas", current), ("updatedReplicas", updated)] {
        if n > 0 {
            s[k] = json!(n);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(items: &[(usize, bool, bool)]) -> BTreeMap<usize, (bool, bool)> {
        items.iter().map(|(i, r, u)| (*i, (*r, *u))).collect()
    }

    #[test]
    fn ordinals_are_created_one_at_a_time_after_the_previous_is_ready() {
        assert_eq!(plan(3, false, 0, true, &view(&[])), vec![Step::Create(0)]);
        assert_eq!(plan(3, false, 0, true, &view(&[(0, false, true)])), vec![Step::Wait]);
        assert_eq!(plan(3, false, 0, true, &view(&[(0, true, true)])), vec![Step::Create(1)]);
        assert_eq!(
            plan(3, true, 0, true, &view(&[])),
            vec![Step::Create(0), Step::Create(1), Step::Create(2)]
        );
    }

    #[test]
    fn scale_down_removes_the_highest_ordinal_first() {
        let v = view(&[(0, true, true), (1, true, true), (2, true, true), (3, true, true)]);
        assert_eq!(plan(2, false, 0, true, &v), vec![Step::Delete(3)]);
    }

    #[test]
    fn template_change_replaces_from_the_highest_ordinal_respecting_partition() {
        let v = view(&[(0, true, false), (1, true, false), (2, true, true)]);
        assert_eq!(plan(3, false, 0, true, &v), vec![Step::Delete(1)]);
        assert_eq!(plan(3, false, 2, true, &v), vec![]);
        assert_eq!(plan(3, false, 0, false, &v), vec![]);
    }

    #[test]
    fn ordinal_parsing_rejects_other_names() {
        assert_eq!(ordinal("web", "web-0"), Some(0));
        assert_eq!(ordinal("web", "web-12"), Some(12));
        assert_eq!(ordinal("web", "web-01"), None);
        assert_eq!(ordinal("web", "webx-1"), None);
        assert_eq!(ordinal("web", "web-a"), None);
    }
}
