//! The Gateway API v1 CRDs the sandbox installs at start (gatewayclasses, gateways, httproutes), trimmed to
//! names, scope, status subresource and printer columns; their schemas keep unknown fields.
//!
//! It must not validate Gateway API semantics (the simulated gateway controller owns their status).

use serde_json::{Value, json};

fn crd(plural: &str, kind: &str, scope: &str, short: &[&str], columns: Value) -> Value {
    let open = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.gateway.networking.k8s.io"),
            "annotations": {"gateway.networking.k8s.io/bundle-version": "v1.2.0", "gateway.networking.k8s.io/channel": "standard"}},
        "spec": {
            "group": "gateway.networking.k8s.io",
            "scope": scope,
            "names": {"plural": plural, "singular": kind.to_ascii_lowercase(), "kind": kind,
                "listKind": format!("{kind}List"), "shortNames": short, "categories": ["gateway-api"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": open, "status": open}}},
            }],
        },
    })
}

pub fn crds() -> Vec<Value> {
    let age = json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"});
    vec![
        crd(
            "gatewayclasses",
            "GatewayClass",
            "Cluster",
            &["gc"],
            json!([
            {"name": "Controller", "type": "string", "jsonPath": ".spec.controllerName"},
            {"name": "Accepted", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Accepted\")].status"},
            age]),
        ),
        crd(
            "gateways",
            "Gateway",
            "Namespaced",
            &["gtw"],
            json!([
            {"name": "Class", "type": "string", "jsonPath": ".spec.gatewayClassName"},
            {"name": "Address", "type": "string", "jsonPath": ".status.addresses[*].value"},
            {"name": "Programmed", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Programmed\")].status"},
            age]),
        ),
        crd(
            "httproutes",
            "HTTPRoute",
            "Namespaced",
            &[],
            json!([
            {"name": "Hostnames", "type": "string", "jsonPath": ".spec.hostnames"},
            age]),
        ),
    ]
}
