//! Validation of what clients send before it reaches Kubernetes: manifests for server-side apply, label
//! keys and values (the rules of Kubernetes' `IsQualifiedName` / `IsValidLabelValue`). Pure functions.

use std::collections::BTreeMap;

use kube::api::GroupVersionKind;
use serde_json::Value;

use crate::provider::{self, FieldError, ManifestKind, ProviderError};

pub fn httproute_gvk() -> GroupVersionKind {
    GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute")
}

/// Server-populated metadata a client may echo back from a GET; server-side apply rejects or would pin them.
const SERVER_FIELDS: [&str; 7] = [
    "managedFields",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
];

/// Check a manifest against its route and make it ready to apply in `ns`: kind/apiVersion match the route
/// (filled in when absent), `metadata.name` is a valid name, `metadata.namespace` is absent or `ns`, labels
/// are valid; server-populated fields and `status` are dropped.
pub fn validate_manifest(
    ns: &str,
    kind: ManifestKind,
    mut manifest: Value,
) -> provider::Result<(GroupVersionKind, Value)> {
    let Some(object) = manifest.as_object_mut() else {
        return Err(ProviderError::invalid("body", "must be a JSON object (a Kubernetes manifest)"));
    };
    let (allowed, default_kind, default_api): (&[(&str, &str)], &str, &str) = match kind {
        ManifestKind::Controller => {
            (&[("apps/v1", "Deployment"), ("apps/v1", "StatefulSet")], "Deployment", "apps/v1")
        }
        ManifestKind::Service => (&[("v1", "Service")], "Service", "v1"),
        ManifestKind::Secret => (&[("v1", "Secret")], "Secret", "v1"),
        ManifestKind::HttpRoute => {
            (&[("gateway.networking.k8s.io/v1", "HTTPRoute")], "HTTPRoute", "gateway.networking.k8s.io/v1")
        }
    };
    let text = |v: Option<&Value>| v.map(|v| v.as_str().map(str::to_string).ok_or(()));
    let kind_name = match text(object.get("kind")) {
        None => default_kind.to_string(),
        Some(Ok(k)) => k,
        Some(Err(())) => return Err(ProviderError::invalid("kind", "must be a string")),
    };
    let api_version = match text(object.get("apiVersion")) {
        None => {
            allowed.iter().find(|(_, k)| *k == kind_name).map(|(a, _)| *a).unwrap_or(default_api).to_string()
        }
        Some(Ok(a)) => a,
        Some(Err(())) => return Err(ProviderError::invalid("apiVersion", "must be a string")),
    };
    if !allowed.iter().any(|(a, k)| *a == api_version && *k == kind_name) {
        let expected: Vec<String> = allowed.iter().map(|(a, k)| format!("{a} {k}")).collect();
        return Err(ProviderError::invalid(
            "kind",
            format!("{api_version} {kind_name} cannot be applied here: expected {}", expected.join(" or ")),
        ));
    }
    object.insert("kind".into(), Value::String(kind_name.clone()));
    object.insert("apiVersion".into(), Value::String(api_version.clone()));
    object.remove("status");

    let meta = object.entry("metadata").or_insert_with(|| Value::Object(Default::default()));
    let Some(meta) = meta.as_object_mut() else {
        return Err(ProviderError::invalid("metadata", "must be an object"));
    };
    match meta.get("name").and_then(Value::as_str) {
        None => return Err(ProviderError::invalid("metadata.name", "is required")),
        Some(name) if !is_dns_subdomain(name) => {
            return Err(ProviderError::invalid(
                "metadata.name",
                format!("{name:?} is not a valid name (lowercase letters, digits, '-' and '.', at most 253)"),
            ));
        }
        Some(_) => {}
    }
    match meta.get("namespace") {
        None | Some(Value::Null) => {}
        Some(Value::String(n)) if n == ns => {}
        Some(other) => {
            return Err(ProviderError::invalid(
                "metadata.namespace",
                format!("{other} differs from the namespace of the URL ({ns}); omit it or make them equal"),
            ));
        }
    }
    meta.insert("namespace".into(), Value::String(ns.to_string()));
    for field in SERVER_FIELDS {
        meta.remove(field);
    }
    if let Some(labels) = meta.get("labels") {
        let Some(labels) = labels.as_object() else {
            return Err(ProviderError::invalid("metadata.labels", "must be an object of strings"));
        };
        let mut errors = Vec::new();
        for (key, value) in labels {
            match value.as_str() {
                Some(v) => check_label(key, Some(v), "metadata.labels", &mut errors),
                None => errors.push(FieldError {
                    field: format!("metadata.labels.{key}"),
                    message: "must be a string".into(),
                }),
            }
        }
        into_result(errors)?;
    }
    let group_version = api_version.rsplit_once('/');
    let gvk = match group_version {
        Some((group, version)) => GroupVersionKind::gvk(group, version, &kind_name),
        None => GroupVersionKind::gvk("", &api_version, &kind_name),
    };
    Ok((gvk, manifest))
}

/// Validate a label merge patch (`None` removes a key: only its key is checked).
pub fn validate_label_patch(labels: &BTreeMap<String, Option<String>>) -> provider::Result<()> {
    let mut errors = Vec::new();
    for (key, value) in labels {
        check_label(key, value.as_deref(), "labels", &mut errors);
    }
    into_result(errors)
}

fn into_result(errors: Vec<FieldError>) -> provider::Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    let message = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
    Err(ProviderError::Invalid { message, errors })
}

fn check_label(key: &str, value: Option<&str>, prefix: &str, errors: &mut Vec<FieldError>) {
    if let Err(message) = validate_label_key(key) {
        errors.push(FieldError { field: format!("{prefix}.{key}"), message });
    }
    if let Some(value) = value
        && let Err(message) = validate_label_value(value)
    {
        errors.push(FieldError { field: format!("{prefix}.{key}"), message });
    }
}

/// A label key: `[prefix/]name`, prefix a DNS subdomain, name at most 63 of `[A-Za-z0-9-_.]` starting and
/// ending alphanumeric.
pub fn validate_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && !is_dns_subdomain(prefix)
    {
        return Err(format!(
            "key prefix {prefix:?} must be a DNS subdomain (lowercase, at most 253 characters)"
        ));
    }
    if name.is_empty() || !is_label_token(name) {
        return Err(format!(
            "key name {name:?} must be 1-63 characters of letters, digits, '-', '_' or '.', starting and \
             ending with a letter or digit"
        ));
    }
    Ok(())
}

/// A label value: empty, or at most 63 of `[A-Za-z0-9-_.]` starting and ending alphanumeric.
pub fn validate_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_token(value) {
        return Ok(());
    }
    Err(format!(
        "value {value:?} must be at most 63 characters of letters, digits, '-', '_' or '.', starting and \
         ending with a letter or digit"
    ))
}

fn is_label_token(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && !s.is_empty()
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn label_keys_follow_kubernetes() {
        for good in ["app", "app.kubernetes.io/name", "a", "A_b-c.d", "example.com/x"] {
            assert!(validate_label_key(good).is_ok(), "{good}");
        }
        let long = "a".repeat(64);
        for bad in ["", "-app", "app-", "Example.com/x", "a/b/c", "/x", "x/", "sp ace", long.as_str()] {
            assert!(validate_label_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn label_values_follow_kubernetes() {
        for good in ["", "v1", "a.b_c-d", "X"] {
            assert!(validate_label_value(good).is_ok(), "{good:?}");
        }
        let long = "a".repeat(64);
        for bad in ["-v", "v-", "a b", "é", long.as_str()] {
            assert!(validate_label_value(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn label_patch_names_each_bad_field() {
        let patch: BTreeMap<String, Option<String>> = [
            ("ok".to_string(), Some("yes".to_string())),
            ("bad key".to_string(), None),
            ("v".to_string(), Some("-x".to_string())),
        ]
        .into();
        match validate_label_patch(&patch) {
            Err(ProviderError::Invalid { errors, .. }) => {
                let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
                assert_eq!(fields, ["labels.bad key", "labels.v"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn manifest_is_checked_and_cleaned() {
        let body = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "resourceVersion": "9", "managedFields": [], "uid": "u", "labels": {"app": "web"}},
            "spec": {"replicas": 2}, "status": {"replicas": 1}
        });
        let (gvk, clean) = validate_manifest("default", ManifestKind::Controller, body).unwrap();
        assert_eq!(
            (gvk.group.as_str(), gvk.version.as_str(), gvk.kind.as_str()),
            ("apps", "v1", "Deployment")
        );
        assert_eq!(
            clean["metadata"],
            json!({"name": "web", "namespace": "default", "labels": {"app": "web"}})
        );
        assert!(clean.get("status").is_none());
        assert_eq!(clean["spec"], json!({"replicas": 2}));
    }

    #[test]
    fn manifest_defaults_kind_and_core_group() {
        let (gvk, clean) =
            validate_manifest("ns", ManifestKind::Service, json!({"metadata": {"name": "svc"}})).unwrap();
        assert_eq!((gvk.group.as_str(), gvk.version.as_str()), ("", "v1"));
        assert_eq!(clean["kind"], "Service");
        let (gvk, _) =
            validate_manifest("ns", ManifestKind::HttpRoute, json!({"metadata": {"name": "r"}})).unwrap();
        assert_eq!(gvk, httproute_gvk());
    }

    #[test]
    fn manifest_rejections() {
        let cases = [
            (ManifestKind::Controller, json!([1])),
            (
                ManifestKind::Controller,
                json!({"kind": "Service", "apiVersion": "v1", "metadata": {"name": "x"}}),
            ),
            (
                ManifestKind::Controller,
                json!({"kind": "Deployment", "apiVersion": "apps/v1beta1", "metadata": {"name": "x"}}),
            ),
            (ManifestKind::Secret, json!({"kind": "Secret", "metadata": {}})),
            (ManifestKind::Secret, json!({"kind": "Secret", "metadata": {"name": "Bad_Name"}})),
            (ManifestKind::Service, json!({"metadata": {"name": "x", "namespace": "other"}})),
            (ManifestKind::Service, json!({"metadata": {"name": "x", "labels": {"k": 1}}})),
            (ManifestKind::Service, json!({"metadata": {"name": "x", "labels": {"-k": "v"}}})),
            (ManifestKind::Service, json!({"kind": 7, "metadata": {"name": "x"}})),
        ];
        for (kind, body) in cases {
            let shown = body.to_string();
            assert!(
                matches!(validate_manifest("ns", kind, body), Err(ProviderError::Invalid { .. })),
                "{shown}"
            );
        }
        assert!(
            validate_manifest(
                "ns",
                ManifestKind::Service,
                json!({"metadata": {"name": "x", "namespace": "ns"}})
            )
            .is_ok()
        );
    }
}
