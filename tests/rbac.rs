//! RBAC is exactly sufficient, both ways: the operator is driven through everything it does on Kubernetes
//! (`rbac/drive.rs`) while the sandbox records every request, and
//! - every request is granted by the install's RBAC, namespace and resourceNames included;
//! - every rule the install grants is used by some request (a grant nobody uses is a finding).
//!
//! Cluster-wide installs: `config/base/clusterrole.yaml` (bound by a ClusterRoleBinding), the leader-election
//! Role of `config/base/leader-election.yaml`, and with `--auth-mode kubernetes` the built-in
//! `system:auth-delegator` ClusterRole. Single-namespace installs: the overlay's Role
//! (`config/overlays/single-namespace/role.yaml`) and the same leader-election Role. The chart's rules
//! (`charts/machinist/files/clusterrole-rules.yaml`) must grant what the base ClusterRole grants.
//!
//! The sandbox records a subresource as `resource/subresource` (`deployments/scale`, `scalerequests/status`),
//! the way RBAC rules name it, and a server-side apply that creates its object as a `patch` plus a `create`,
//! the two decisions a real API server makes for it.

mod common;
#[path = "rbac/drive.rs"]
mod drive;

use std::collections::BTreeSet;

use drive::{Access, INSTALL_NS, Mode};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// (verb, group, resource): what the reverse check compares.
type Triple = (String, String, String);

/// One expanded rule of a Role or ClusterRole.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Grant {
    verb: String,
    group: String,
    resource: String,
    /// The Role's namespace; None for a ClusterRole bound cluster-wide.
    namespace: Option<String>,
    /// resourceNames; empty: any name.
    names: Vec<String>,
}

impl Grant {
    fn triple(&self) -> Triple {
        (self.verb.clone(), self.group.clone(), self.resource.clone())
    }

    fn allows(&self, a: &Access) -> bool {
        let scope_ok = match &self.namespace {
            None => true,
            // A Role grants nothing cluster-scoped and nothing across namespaces.
            Some(ns) => *ns == a.namespace,
        };
        (self.verb.as_str(), self.group.as_str(), self.resource.as_str())
            == (a.verb.as_str(), a.group.as_str(), a.resource.as_str())
            && scope_ok
            && (self.names.is_empty() || self.names.contains(&a.name))
    }
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The rules of a `rules:` list, expanded; no wildcards (a wildcard would grant what nothing uses).
fn expand(rules: &Value, namespace: Option<&str>) -> Vec<Grant> {
    let mut out = Vec::new();
    for rule in rules.as_array().expect("rules is a list") {
        let names = strings(rule, "resourceNames");
        for group in strings(rule, "apiGroups") {
            for resource in strings(rule, "resources") {
                for verb in strings(rule, "verbs") {
                    assert!(
                        ![&group, &resource, &verb].iter().any(|s| s.contains('*')),
                        "wildcard in a rule: {rule}"
                    );
                    out.push(Grant {
                        verb,
                        group: group.clone(),
                        resource: resource.clone(),
                        namespace: namespace.map(str::to_owned),
                        names: names.clone(),
                    });
                }
            }
        }
    }
    out
}

fn yaml_docs(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{ROOT}/{file}")).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml document"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The grants of every Role and ClusterRole in `file` (a Role in its own namespace).
fn roles_in(file: &str) -> Vec<Grant> {
    let mut out = Vec::new();
    for doc in yaml_docs(file) {
        match doc["kind"].as_str() {
            Some("ClusterRole") => out.extend(expand(&doc["rules"], None)),
            Some("Role") => {
                let ns = doc["metadata"]["namespace"].as_str().expect("a Role has a namespace");
                out.extend(expand(&doc["rules"], Some(ns)));
            }
            _ => {}
        }
    }
    out
}

/// The one document of `kind` in `file`.
fn one_of_kind(file: &str, kind: &str) -> Value {
    let mut found: Vec<_> = yaml_docs(file).into_iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} in {file}");
    found.remove(0)
}

/// `system:auth-delegator`, the built-in ClusterRole that `--auth-mode kubernetes` installs bind (chart:
/// `auth.mode=kubernetes`; kustomize: `config/overlays/kubernetes-auth`). Its rules are Kubernetes', quoted
/// here: create TokenReviews and SubjectAccessReviews.
fn auth_delegator() -> Vec<Grant> {
    let rules = serde_json::json!([
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
    ]);
    expand(&rules, None)
}

/// Forward and reverse checks of `used` against `grants`.
fn assert_exactly_sufficient(label: &str, used: &BTreeSet<Access>, grants: &[Grant]) {
    let denied: Vec<_> = used.iter().filter(|a| !grants.iter().any(|g| g.allows(a))).collect();
    assert!(
        denied.is_empty(),
        "{label}: the operator made requests its RBAC does not grant:\n{denied:#?}\ngranted: {grants:#?}"
    );
    let used_triples: BTreeSet<Triple> =
        used.iter().map(|a| (a.verb.clone(), a.group.clone(), a.resource.clone())).collect();
    let unused: BTreeSet<Triple> =
        grants.iter().map(Grant::triple).filter(|t| !used_triples.contains(t)).collect();
    assert!(
        unused.is_empty(),
        "{label}: RBAC grants what the operator never uses (remove it, or drive the operator through what \
         needs it):\n{unused:#?}\nused: {used_triples:#?}"
    );
}

/// What any complete run must have exercised, so a silently skipped step cannot pass as "nothing needed".
fn assert_covers_everything(label: &str, used: &BTreeSet<Access>) {
    let has = |verb: &str, resource: &str| used.iter().any(|a| a.verb == verb && a.resource == resource);
    for (verb, resource) in [
        ("watch", "pods"),
        ("update", "deployments/scale"),
        ("update", "statefulsets/scale"),
        ("update", "replicasets/scale"),
        ("update", "replicationcontrollers/scale"),
        ("patch", "scalerequests/status"),
        ("delete", "scalerequests"),
        ("create", "events"),
        ("patch", "events"),
        ("create", "leases"),
        ("update", "leases"),
        ("create", "secrets"),
    ] {
        assert!(has(verb, resource), "{label}: no `{verb} {resource}` recorded: {used:#?}");
    }
    let lease_names: BTreeSet<_> = used
        .iter()
        .filter(|a| a.resource == "leases")
        .map(|a| (a.namespace.as_str(), a.verb.as_str(), a.name.as_str()))
        .collect();
    for (ns, _, name) in &lease_names {
        assert_eq!(*ns, INSTALL_NS, "{label}: leases only in the install namespace: {lease_names:?}");
        assert!(["", "machinist-leader"].contains(name), "{label}: {lease_names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_wide_rbac_is_exactly_what_the_operator_uses() {
    let used = drive::drive(Mode { single_namespace: false, kubernetes_auth: true }).await;
    assert_covers_everything("cluster-wide", &used);
    for resource in ["tokenreviews", "subjectaccessreviews"] {
        assert!(
            used.iter().any(|a| a.verb == "create" && a.resource == resource),
            "no {resource}: {used:#?}"
        );
    }
    let mut grants = roles_in("config/base/clusterrole.yaml");
    grants.extend(roles_in("config/base/leader-election.yaml"));
    let binding = one_of_kind("config/overlays/kubernetes-auth/auth-delegator.yaml", "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], "system:auth-delegator", "the overlay delegates: {binding}");
    grants.extend(auth_delegator());
    assert_exactly_sufficient("cluster-wide with --auth-mode kubernetes", &used, &grants);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_namespace_rbac_is_exactly_what_the_operator_uses() {
    let used = drive::drive(Mode { single_namespace: true, kubernetes_auth: false }).await;
    assert_covers_everything("single-namespace", &used);
    let mut grants = roles_in("config/overlays/single-namespace/role.yaml");
    assert!(
        grants.iter().all(|g| g.namespace.as_deref() == Some(INSTALL_NS)),
        "the overlay grants a Role only"
    );
    grants.extend(roles_in("config/base/leader-election.yaml"));
    assert_exactly_sufficient("single-namespace", &used, &grants);
}

#[test]
fn the_chart_grants_the_same_rules_as_the_kustomize_base() {
    let set = |grants: Vec<Grant>| -> BTreeSet<(Triple, Vec<String>)> {
        grants.iter().map(|g| (g.triple(), g.names.clone())).collect()
    };
    let base = set(roles_in("config/base/clusterrole.yaml"));
    let chart = yaml_docs("charts/machinist/files/clusterrole-rules.yaml");
    let chart = set(expand(&chart[0]["rules"], None));
    assert!(!base.is_empty());
    let only_base: Vec<_> = base.difference(&chart).collect();
    let only_chart: Vec<_> = chart.difference(&base).collect();
    assert!(
        only_base.is_empty() && only_chart.is_empty(),
        "config/base/clusterrole.yaml and charts/machinist/files/clusterrole-rules.yaml must grant the same \
         rules; only in the base: {only_base:?}; only in the chart: {only_chart:?}"
    );
}
