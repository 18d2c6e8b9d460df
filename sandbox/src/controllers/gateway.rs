//! The simulated Gateway API controller (`machinist.dev/sandbox-gateway`): accepts GatewayClasses naming it,
//! programs Gateways, and writes each HTTPRoute's `status.parents[]` for the parents it finds.
//!
//! It owns only status written under its controller name; entries of other controllers are kept as they are.

use serde_json::{Value, json};

use super::{GATEWAY_CONTROLLER, generation, meta, set_condition};
use crate::registry::Gvr;
use crate::status::StatusError;
use crate::store::Store;

const GROUP: &str = "gateway.networking.k8s.io";
const GATEWAY_IP: &str = "10.0.0.100";

pub fn gatewayclasses() -> Gvr {
    Gvr::new(GROUP, "v1", "gatewayclasses")
}

/// (namespace, name) of each Gateway a route names as parent (other parent kinds are ignored).
pub fn route_parents(route: &Value) -> Vec<(String, String)> {
    let ns = meta(route, "namespace");
    route
        .pointer("/spec/parentRefs")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter(|r| is_gateway_ref(r))
                .filter_map(|r| {
                    let name = r.get("name").and_then(Value::as_str)?;
                    let pns = r.get("namespace").and_then(Value::as_str).unwrap_or(ns);
                    Some((pns.to_string(), name.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn is_gateway_ref(r: &Value) -> bool {
    r.get("group").and_then(Value::as_str).unwrap_or(GROUP) == GROUP
        && r.get("kind").and_then(Value::as_str).unwrap_or("Gateway") == "Gateway"
}

fn cond(conds: &mut Vec<Value>, t: &str, ok: bool, reason: &str, msg: &str, observed: i64) {
    set_condition(
        conds,
        t,
        if ok { "True" } else { "False" },
        reason,
        msg,
        false,
        Some(("observedGeneration", json!(observed))),
    );
}

pub fn reconcile_class(store: &Store, name: &str) -> Result<(), StatusError> {
    let Some(gc) = store.get(&gatewayclasses(), "", name) else { return Ok(()) };
    if gc.pointer("/spec/controllerName").and_then(Value::as_str) != Some(GATEWAY_CONTROLLER) {
        return Ok(());
    }
    let mut conds: Vec<Value> =
        gc.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    cond(
        &mut conds,
        "Accepted",
        true,
        "Accepted",
        "Handled by the sandbox gateway controller",
        generation(&gc),
    );
    let mut status = gc.get("status").cloned().unwrap_or_else(|| json!({}));
    status["conditions"] = Value::Array(conds);
    super::write_status(store, &gatewayclasses(), &gc, status)
}

pub fn reconcile_gateway(store: &Store, ns: &str, name: &str) -> Result<(), StatusError> {
    let Some(gw) = store.get(&Gvr::gateways(), ns, name) else { return Ok(()) };
    let g = generation(&gw);
    let mut conds: Vec<Value> =
        gw.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    cond(&mut conds, "Accepted", true, "Accepted", "", g);
    cond(&mut conds, "Programmed", true, "Programmed", "", g);
    let routes = store.list(&Gvr::httproutes(), None);
    let attached = |listener: &str| {
        routes
            .iter()
            .flat_map(|r| {
                let rns = meta(r, "namespace").to_string();
                r.pointer("/spec/parentRefs")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |p| (rns.clone(), p))
            })
            .filter(|(rns, p)| {
                is_gateway_ref(p)
                    && p.get("name").and_then(Value::as_str) == Some(name)
                    && p.get("namespace").and_then(Value::as_str).unwrap_or(rns) == ns
                    && p.get("sectionName").and_then(Value::as_str).is_none_or(|s| s == listener)
            })
            .count()
    };
    let prev_listeners =
        gw.pointer("/status/listeners").and_then(Value::as_array).cloned().unwrap_or_default();
    let listeners: Vec<Value> = gw
        .pointer("/spec/listeners")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|l| {
            let lname = l.get("name").and_then(Value::as_str).unwrap_or_default();
            let mut lconds: Vec<Value> = prev_listeners
                .iter()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(lname))
                .and_then(|p| p.get("conditions").and_then(Value::as_array).cloned())
                .unwrap_or_default();
            for (t, r) in
                [("Accepted", "Accepted"), ("Programmed", "Programmed"), ("ResolvedRefs", "ResolvedRefs")]
            {
                cond(&mut lconds, t, true, r, "", g);
            }
            json!({
                "name": lname,
                "attachedRoutes": attached(lname),
                "supportedKinds": [{"group": GROUP, "kind": "HTTPRoute"}],
                "conditions": lconds,
            })
        })
        .collect();
    let mut status = gw.get("status").cloned().unwrap_or_else(|| json!({}));
    status["conditions"] = Value::Array(conds);
    status["addresses"] = json!([{"type": "IPAddress", "value": GATEWAY_IP}]);
    status["listeners"] = Value::Array(listeners);
    super::write_status(store, &Gvr::gateways(), &gw, status)
}

pub fn reconcile_route(store: &Store, ns: &str, name: &str) -> Result<(), StatusError> {
    let Some(route) = store.get(&Gvr::httproutes(), ns, name) else { return Ok(()) };
    let g = generation(&route);
    let missing: Vec<String> = route
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|r| r.get("backendRefs").and_then(Value::as_array).cloned().unwrap_or_default())
        .filter(|b| {
            b.get("kind").and_then(Value::as_str).unwrap_or("Service") == "Service"
                && b.get("group").and_then(Value::as_str).unwrap_or("").is_empty()
        })
        .filter_map(|b| {
            let bname = b.get("name").and_then(Value::as_str)?;
            let bns = b.get("namespace").and_then(Value::as_str).unwrap_or(ns);
            store.get(&Gvr::services(), bns, bname).is_none().then(|| format!("{bns}/{bname}"))
        })
        .collect();
    let prev: Vec<Value> =
        route.pointer("/status/parents").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut parents: Vec<Value> = prev
        .iter()
        .filter(|p| p.get("controllerName").and_then(Value::as_str) != Some(GATEWAY_CONTROLLER))
        .cloned()
        .collect();
    let refs = route.pointer("/spec/parentRefs").and_then(Value::as_array).cloned().unwrap_or_default();
    for r in refs.iter().filter(|r| is_gateway_ref(r)) {
        let Some(pname) = r.get("name").and_then(Value::as_str) else { continue };
        let pns = r.get("namespace").and_then(Value::as_str).unwrap_or(ns);
        let mut parent_ref = json!({"group": GROUP, "kind": "Gateway", "name": pname, "namespace": pns});
        for k in ["sectionName", "port"] {
            if let Some(v) = r.get(k) {
                parent_ref[k] = v.clone();
            }
        }
        let mut conds: Vec<Value> = prev
            .iter()
            .find(|p| {
                p.get("controllerName").and_then(Value::as_str) == Some(GATEWAY_CONTROLLER)
                    && p.get("parentRef") == Some(&parent_ref)
            })
            .and_then(|p| p.get("conditions").and_then(Value::as_array).cloned())
            .unwrap_or_default();
        if store.get(&Gvr::gateways(), pns, pname).is_some() {
            cond(&mut conds, "Accepted", true, "Accepted", "Route is accepted", g);
        } else {
            cond(
                &mut conds,
                "Accepted",
                false,
                "NoMatchingParent",
                &format!("Gateway {pns}/{pname} not found"),
                g,
            );
        }
        if missing.is_empty() {
            cond(
                &mut conds,
                "ResolvedRefs",
                true,
                "ResolvedRefs",
                "Resolved all the Object references for the Route",
                g,
            );
        } else {
            let msg = format!("Service(s) {} not found", missing.join(", "));
            cond(&mut conds, "ResolvedRefs", false, "BackendNotFound", &msg, g);
        }
        parents.push(
            json!({"parentRef": parent_ref, "controllerName": GATEWAY_CONTROLLER, "conditions": conds}),
        );
    }
    let mut status = route.get("status").cloned().unwrap_or_else(|| json!({}));
    status["parents"] = Value::Array(parents);
    super::write_status(store, &Gvr::httproutes(), &route, status)
}
