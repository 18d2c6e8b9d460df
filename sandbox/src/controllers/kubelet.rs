//! The simulated scheduler and kubelet: binds pods to `sandbox-node`, starts them after the configured delay
//! with the status a kubelet reports, and flips readiness or failure on request (`set_pod_condition`).
//!
//! It owns the shape of pod status. It must not decide how many pods exist (the workload controllers do).

use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value, json};

use super::{NODE_NAME, meta, set_condition};
use crate::registry::Gvr;
use crate::status::StatusError;
use crate::store::{Store, now};

const HOST_IP: &str = crate::cluster::NODE_IP;

static NEXT_IP: AtomicU32 = AtomicU32::new(1);

/// The next pod IP: 10.244.0.0/14 walked by a counter, skipping .0 and .255 host parts.
pub fn next_pod_ip() -> String {
    let n = NEXT_IP.fetch_add(1, Ordering::Relaxed);
    let host = n % 254 + 1;
    let net = n / 254;
    format!("10.{}.{}.{}", 244 + (net / 256) % 4, net % 256, host)
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default()
}

/// A pod the kubelet still has to start: not terminating, and Pending or without a phase.
pub fn needs_start(pod: &Value) -> bool {
    !super::is_deleting(pod) && matches!(phase(pod), "" | "Pending")
}

/// True when the pod's Ready condition is True.
pub fn is_ready(pod: &Value) -> bool {
    condition_status(pod, "Ready") == Some("True")
}

fn condition_status<'a>(pod: &'a Value, type_: &str) -> Option<&'a str> {
    pod.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))?
        .get("status")
        .and_then(Value::as_str)
}

fn containers(pod: &Value) -> Vec<&Value> {
    pod.pointer("/spec/containers").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default()
}

/// The pod's QoS class from its containers' requests and limits, as the API server computes it.
pub fn qos_class(pod_spec: &Value) -> &'static str {
    let cs: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| pod_spec.get(*k).and_then(Value::as_array))
        .flatten()
        .collect();
    let res = |c: &Value, kind: &str, r: &str| {
        c.pointer(&format!("/resources/{kind}/{r}")).filter(|v| !v.is_null()).map(Value::to_string)
    };
    let any = cs.iter().any(|c| {
        ["requests", "limits"].iter().any(|k| ["cpu", "memory"].iter().any(|r| res(c, k, r).is_some()))
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = !cs.is_empty()
        && cs.iter().all(|c| {
            ["cpu", "memory"].iter().all(|r| {
                let limit = res(c, "limits", r);
                limit.is_some() && res(c, "requests", r).is_none_or(|req| Some(req) == limit)
            })
        });
    if guaranteed { "Guaranteed" } else { "Burstable" }
}

/// 64 hex characters derived from `seed` only (four FNV-1a rounds), standing in for a sha256 digest.
pub fn digest_hex(seed: &str) -> String {
    (0u64..4)
        .map(|round| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ round.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            for b in seed.bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            format!("{h:016x}")
        })
        .collect()
}

/// `docker.io/library/nginx@sha256:…` for `nginx:1.27`: the repository as the runtime resolves it, with a
/// digest that depends only on the image reference.
pub fn image_id(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or_default();
    // A ':' after the last '/' is a tag; before it, a registry port.
    let repo = match without_digest.rfind(':') {
        Some(i) if !without_digest[i..].contains('/') => &without_digest[..i],
        _ => without_digest,
    };
    let full = match repo.split_once('/') {
        None => format!("docker.io/library/{repo}"),
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            repo.to_string()
        }
        Some(_) => format!("docker.io/{repo}"),
    };
    let image_full = if image.contains('/') || image.contains('@') {
        image.to_string()
    } else {
        format!("docker.io/library/{image}")
    };
    format!("{full}@sha256:{}", digest_hex(&image_full))
}

/// The status of a freshly created pod: Pending, scheduled on the sandbox node.
pub fn pending_status(pod_spec: &Value) -> Value {
    let mut conds = Vec::new();
    set_condition(&mut conds, "PodScheduled", "True", "", "", false, None);
    strip_empty(&mut conds);
    json!({"phase": "Pending", "conditions": conds, "qosClass": qos_class(pod_spec)})
}

/// Kubernetes leaves reason/message out of the kubelet's own True conditions.
fn strip_empty(conds: &mut [Value]) {
    for c in conds {
        if let Some(o) = c.as_object_mut() {
            o.retain(|k, v| !((k == "reason" || k == "message") && v.as_str() == Some("")));
        }
    }
}

/// The status a kubelet reports for a pod whose containers all run and are ready.
pub fn running_status(pod: &Value, pod_ip: &str) -> Value {
    let t = now();
    let mut conds: Vec<Value> =
        pod.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    for c in ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"] {
        set_condition(&mut conds, c, "True", "", "", false, None);
    }
    strip_empty(&mut conds);
    // The name as well as the uid: seeded pods get their status before the store gives them a uid.
    let id = format!("{}/{}/{}", meta(pod, "namespace"), meta(pod, "name"), meta(pod, "uid"));
    let statuses: Vec<Value> = containers(pod)
        .iter()
        .map(|c| {
            let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
            let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
            json!({
                "name": name,
                "image": image,
                "imageID": image_id(image),
                "containerID": format!("containerd://{}", digest_hex(&format!("{id}/{name}/0"))),
                "ready": true,
                "started": true,
                "restartCount": 0,
                "state": {"running": {"startedAt": t}},
                "lastState": {},
            })
        })
        .collect();
    let spec = pod.get("spec").cloned().unwrap_or_else(|| json!({}));
    json!({
        "phase": "Running",
        "conditions": conds,
        "hostIP": HOST_IP,
        "hostIPs": [{"ip": HOST_IP}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": pod.pointer("/status/startTime").cloned().unwrap_or_else(|| json!(t)),
        "containerStatuses": statuses,
        "qosClass": qos_class(&spec),
    })
}

/// The scheduler's part: bind an unbound pod to the node and mark it Pending/PodScheduled.
pub fn schedule(store: &Store, ns: &str, name: &str) -> Result<(), StatusError> {
    let Some(pod) = store.get(&Gvr::pods(), ns, name) else { return Ok(()) };
    if !needs_start(&pod) {
        return Ok(());
    }
    if pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default().is_empty() {
        store.update(&Gvr::pods(), ns, name, |p| {
            if let Some(spec) = p.get_mut("spec").and_then(Value::as_object_mut) {
                spec.insert("nodeName".into(), json!(NODE_NAME));
            }
            Ok(())
        })?;
    }
    if phase(&pod).is_empty() {
        let spec = pod.get("spec").cloned().unwrap_or_else(|| json!({}));
        store.update_status(&Gvr::pods(), ns, name, |p| {
            if phase(p).is_empty() {
                p["status"] = pending_status(&spec);
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// The kubelet's part: a Pending pod becomes Running and Ready.
pub fn start(store: &Store, ns: &str, name: &str) -> Result<(), StatusError> {
    let Some(pod) = store.get(&Gvr::pods(), ns, name) else { return Ok(()) };
    if !needs_start(&pod) {
        return Ok(());
    }
    schedule(store, ns, name)?;
    let ip = next_pod_ip();
    store.update_status(&Gvr::pods(), ns, name, |p| {
        if needs_start(p) {
            p["status"] = running_status(p, &ip);
        }
        Ok(())
    })?;
    Ok(())
}

/// Test hook: makes a pod ready, unready (readiness probe failing) or failing (its containers crash: the
/// restart count grows; phase Failed when `restartPolicy: Never`, else Running in CrashLoopBackOff).
pub fn set_pod_condition(
    store: &Store,
    ns: &str,
    pod: &str,
    ready: bool,
    failing: bool,
) -> Result<(), StatusError> {
    let ip = next_pod_ip();
    store.update_status(&Gvr::pods(), ns, pod, |p| {
        if needs_start(p) || p.pointer("/status/containerStatuses").is_none() {
            p["status"] = running_status(p, &ip);
        }
        apply_condition(p, ready, failing);
        Ok(())
    })?;
    Ok(())
}

fn apply_condition(p: &mut Value, ready: bool, failing: bool) {
    let t = now();
    let never = p.pointer("/spec/restartPolicy").and_then(Value::as_str) == Some("Never");
    let uid = meta(p, "uid").to_string();
    let pod_name = format!("{}_{}({uid})", meta(p, "name"), meta(p, "namespace"));
    let Some(status) = p.get_mut("status").and_then(Value::as_object_mut) else { return };
    let mut names = Vec::new();
    if let Some(cs) = status.get_mut("containerStatuses").and_then(Value::as_array_mut) {
        for c in cs.iter_mut() {
            let Some(c) = c.as_object_mut() else { continue };
            let name = c.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            names.push(name.clone());
            if failing {
                let restarts = c.get("restartCount").and_then(Value::as_i64).unwrap_or(0) + 1;
                let started = c
                    .get("state")
                    .and_then(|s| s.pointer("/running/startedAt"))
                    .cloned()
                    .unwrap_or_else(|| json!(t));
                c.insert("restartCount".into(), json!(restarts));
                c.insert(
                    "lastState".into(),
                    json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": started, "finishedAt": t,
                        "containerID": c.get("containerID").cloned().unwrap_or(Value::Null)}}),
                );
                let state = if never {
                    json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": started, "finishedAt": t}})
                } else {
                    json!({"waiting": {"reason": "CrashLoopBackOff",
                        "message": format!("back-off 10s restarting failed container={name} pod={pod_name}")}})
                };
                c.insert("state".into(), state);
                c.insert(
                    "containerID".into(),
                    json!(format!("containerd://{}", digest_hex(&format!("{uid}/{name}/{restarts}")))),
                );
                c.insert("ready".into(), json!(false));
                c.insert("started".into(), json!(false));
            } else {
                if c.get("state").and_then(|s| s.get("running")).is_none() {
                    c.insert("state".into(), json!({"running": {"startedAt": t}}));
                }
                c.insert("ready".into(), json!(ready));
                c.insert("started".into(), json!(true));
            }
        }
    }
    let mut conds: Vec<Value> =
        status.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let ok = ready && !failing;
    if ok {
        set_condition(&mut conds, "ContainersReady", "True", "", "", false, None);
        set_condition(&mut conds, "Ready", "True", "", "", false, None);
    } else {
        let msg = format!("containers with unready status: [{}]", names.join(" "));
        set_condition(&mut conds, "ContainersReady", "False", "ContainersNotReady", &msg, false, None);
        set_condition(&mut conds, "Ready", "False", "ContainersNotReady", &msg, false, None);
    }
    strip_empty(&mut conds);
    status.insert("conditions".into(), Value::Array(conds));
    let phase = if failing && never { "Failed" } else { "Running" };
    status.insert("phase".into(), json!(phase));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_ids_name_the_resolved_repository_and_are_deterministic() {
        let a = image_id("nginx:1.27");
        assert!(a.starts_with("docker.io/library/nginx@sha256:"), "{a}");
        assert_eq!(a.len(), "docker.io/library/nginx@sha256:".len() + 64);
        assert_eq!(a, image_id("nginx:1.27"));
        assert_ne!(a, image_id("nginx:1.28"));
        assert!(image_id("platformatic/app:1").starts_with("docker.io/platformatic/app@sha256:"));
        assert!(image_id("ghcr.io/x/y:2").starts_with("ghcr.io/x/y@sha256:"));
        assert!(image_id("localhost:5000/y").starts_with("localhost:5000/y@sha256:"));
    }

    #[test]
    fn qos_class_follows_requests_and_limits() {
        let best = json!({"containers": [{"name": "a"}]});
        assert_eq!(qos_class(&best), "BestEffort");
        let g =
            json!({"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"},
            "limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(qos_class(&b), "Burstable");
    }

    #[test]
    fn pod_ips_are_distinct_and_in_10_slash_8() {
        let a = next_pod_ip();
        let b = next_pod_ip();
        assert_ne!(a, b);
        assert!(a.starts_with("10.") && b.starts_with("10."));
    }
}
