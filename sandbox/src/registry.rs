//! The served resource types: the built-ins, plus the ones each CustomResourceDefinition adds at run time.
//!
//! It owns names, scope, subresources, schema and printer columns of a type; it must not hold objects.

use std::collections::BTreeMap;

use serde_json::Value;

/// A served resource type, e.g. ("apps", "v1", "deployments"). Core group is "".
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gvr {
    pub group: String,
    pub version: String,
    pub resource: String,
}

impl Gvr {
    pub fn new(group: &str, version: &str, resource: &str) -> Gvr {
        Gvr { group: group.to_string(), version: version.to_string(), resource: resource.to_string() }
    }
    pub fn pods() -> Gvr {
        Gvr::new("", "v1", "pods")
    }
    pub fn deployments() -> Gvr {
        Gvr::new("apps", "v1", "deployments")
    }
    pub fn replicasets() -> Gvr {
        Gvr::new("apps", "v1", "replicasets")
    }
    pub fn statefulsets() -> Gvr {
        Gvr::new("apps", "v1", "statefulsets")
    }
    pub fn replicationcontrollers() -> Gvr {
        Gvr::new("", "v1", "replicationcontrollers")
    }
    pub fn services() -> Gvr {
        Gvr::new("", "v1", "services")
    }
    pub fn namespaces() -> Gvr {
        Gvr::new("", "v1", "namespaces")
    }
    pub fn httproutes() -> Gvr {
        Gvr::new("gateway.networking.k8s.io", "v1", "httproutes")
    }
    pub fn gateways() -> Gvr {
        Gvr::new("gateway.networking.k8s.io", "v1", "gateways")
    }
    pub fn events() -> Gvr {
        Gvr::new("", "v1", "events")
    }
    pub fn leases() -> Gvr {
        Gvr::new("coordination.k8s.io", "v1", "leases")
    }
    pub fn nodes() -> Gvr {
        Gvr::new("", "v1", "nodes")
    }
    pub fn serviceaccounts() -> Gvr {
        Gvr::new("", "v1", "serviceaccounts")
    }
    pub fn csrs() -> Gvr {
        Gvr::new("certificates.k8s.io", "v1", "certificatesigningrequests")
    }
    pub fn apiservices() -> Gvr {
        Gvr::new("apiregistration.k8s.io", "v1", "apiservices")
    }
    pub fn crds() -> Gvr {
        Gvr::new("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    }

    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// `deployments.apps` or `pods`: how Kubernetes names the type in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// Which DNS rule a type's object names follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain (most types).
    Subdomain,
    /// RFC 1123 label (namespaces).
    Label,
    /// RFC 1035 label (services: must start with a letter).
    Label1035,
    /// Anything usable as a path segment (APIServices: `v1.` names the core group's).
    PathSegment,
}

/// Where a `/scale` subresource reads and writes its numbers (dot paths, without the leading dot).
#[derive(Clone, Debug, PartialEq)]
pub struct ScaleSpec {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// One `additionalPrinterColumns` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub json_path: String,
    pub description: String,
    pub priority: i64,
    pub format: String,
}

/// Everything the server knows about one served type.
#[derive(Clone, Debug)]
pub struct ResourceType {
    pub gvr: Gvr,
    pub kind: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status: bool,
    pub scale: Option<ScaleSpec>,
    /// The CRD version's `openAPIV3Schema`, for validation.
    pub schema: Option<Value>,
    pub printer_columns: Vec<PrinterColumn>,
    pub name_rule: NameRule,
    /// Name of the CRD that defines the type, if any.
    pub crd: Option<String>,
    /// Only the preferred version of a CRD is listed first in `/apis`.
    pub storage: bool,
    /// Subresources other than status and scale (`token`, `ephemeralcontainers`, `approval`), served by
    /// `subresource` and listed by discovery.
    pub extra_subresources: Vec<&'static str>,
}

impl ResourceType {
    fn builtin(gvr: Gvr, kind: &str, namespaced: bool) -> ResourceType {
        ResourceType {
            singular: kind.to_ascii_lowercase(),
            gvr,
            kind: kind.to_string(),
            namespaced,
            short_names: vec![],
            categories: vec![],
            status: false,
            scale: None,
            schema: None,
            printer_columns: vec![],
            name_rule: NameRule::Subdomain,
            crd: None,
            storage: true,
            extra_subresources: vec![],
        }
    }
    fn with(mut self, sub: &'static str) -> Self {
        self.extra_subresources.push(sub);
        self
    }
    fn short(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }
    fn cats(mut self, names: &[&str]) -> Self {
        self.categories = names.iter().map(|s| s.to_string()).collect();
        self
    }
    fn with_status(mut self) -> Self {
        self.status = true;
        self
    }
    fn with_scale(mut self) -> Self {
        self.scale = Some(ScaleSpec {
            spec_replicas: "spec.replicas".into(),
            status_replicas: "status.replicas".into(),
            label_selector: None,
        });
        self
    }
    fn rule(mut self, rule: NameRule) -> Self {
        self.name_rule = rule;
        self
    }

    /// `kind: XList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

/// The type table. Cloned into each store snapshot is not needed: the store owns one behind its lock.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    types: BTreeMap<Gvr, ResourceType>,
}

impl Registry {
    /// The built-in types.
    pub fn builtin() -> Registry {
        use ResourceType as R;
        let core = |r: &str| Gvr::new("", "v1", r);
        let apps = |r: &str| Gvr::new("apps", "v1", r);
        let all = [
            R::builtin(core("namespaces"), "Namespace", false)
                .short(&["ns"])
                .with_status()
                .rule(NameRule::Label),
            R::builtin(core("nodes"), "Node", false).short(&["no"]).with_status(),
            R::builtin(core("pods"), "Pod", true)
                .short(&["po"])
                .cats(&["all"])
                .with_status()
                .with("ephemeralcontainers"),
            R::builtin(core("services"), "Service", true)
                .short(&["svc"])
                .cats(&["all"])
                .with_status()
                .rule(NameRule::Label1035),
            R::builtin(core("secrets"), "Secret", true),
            R::builtin(core("configmaps"), "ConfigMap", true).short(&["cm"]),
            R::builtin(core("events"), "Event", true).short(&["ev"]),
            R::builtin(core("serviceaccounts"), "ServiceAccount", true).short(&["sa"]).with("token"),
            R::builtin(core("replicationcontrollers"), "ReplicationController", true)
                .short(&["rc"])
                .cats(&["all"])
                .with_status()
                .with_scale(),
            R::builtin(apps("deployments"), "Deployment", true)
                .short(&["deploy"])
                .cats(&["all"])
                .with_status()
                .with_scale(),
            R::builtin(apps("statefulsets"), "StatefulSet", true)
                .short(&["sts"])
                .cats(&["all"])
                .with_status()
                .with_scale(),
            R::builtin(apps("replicasets"), "ReplicaSet", true)
                .short(&["rs"])
                .cats(&["all"])
                .with_status()
                .with_scale(),
            R::builtin(Gvr::leases(), "Lease", true),
            // What the chart and kustomize overlays apply (tests/deploy_apply.rs).
            R::builtin(Gvr::new("rbac.authorization.k8s.io", "v1", "clusterroles"), "ClusterRole", false),
            R::builtin(
                Gvr::new("rbac.authorization.k8s.io", "v1", "clusterrolebindings"),
                "ClusterRoleBinding",
                false,
            ),
            R::builtin(Gvr::new("rbac.authorization.k8s.io", "v1", "roles"), "Role", true),
            R::builtin(Gvr::new("rbac.authorization.k8s.io", "v1", "rolebindings"), "RoleBinding", true),
            R::builtin(Gvr::new("policy", "v1", "poddisruptionbudgets"), "PodDisruptionBudget", true)
                .short(&["pdb"])
                .with_status(),
            R::builtin(Gvr::new("networking.k8s.io", "v1", "networkpolicies"), "NetworkPolicy", true)
                .short(&["netpol"]),
            R::builtin(Gvr::new("events.k8s.io", "v1", "events"), "Event", true).short(&["ev"]),
            R::builtin(
                Gvr::new("autoscaling", "v2", "horizontalpodautoscalers"),
                "HorizontalPodAutoscaler",
                true,
            )
            .short(&["hpa"])
            .cats(&["all"])
            .with_status(),
            R::builtin(Gvr::csrs(), "CertificateSigningRequest", false)
                .short(&["csr"])
                .with_status()
                .with("approval"),
            R::builtin(Gvr::apiservices(), "APIService", false)
                .cats(&["api-extensions"])
                .with_status()
                .rule(NameRule::PathSegment),
            R::builtin(Gvr::crds(), "CustomResourceDefinition", false)
                .short(&["crd", "crds"])
                .cats(&["api-extensions"])
                .with_status(),
        ];
        let mut reg = Registry::default();
        for t in all {
            reg.types.insert(t.gvr.clone(), t);
        }
        reg
    }

    pub fn get(&self, gvr: &Gvr) -> Option<&ResourceType> {
        self.types.get(gvr)
    }

    pub fn all(&self) -> impl Iterator<Item = &ResourceType> {
        self.types.values()
    }

    /// Groups with their versions, core ("") excluded; the storage version first.
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in self.types.values().filter(|t| !t.gvr.group.is_empty()) {
            let versions = out.entry(t.gvr.group.clone()).or_default();
            if !versions.contains(&t.gvr.version) {
                if t.storage {
                    versions.insert(0, t.gvr.version.clone());
                } else {
                    versions.push(t.gvr.version.clone());
                }
            }
        }
        out
    }

    /// The types of one group/version.
    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a ResourceType> {
        self.types.values().filter(move |t| t.gvr.group == group && t.gvr.version == version)
    }

    /// Registers every served version of a CRD object; returns the types added. Err is a list of invalid fields.
    pub fn register_crd(&mut self, crd: &Value) -> Result<Vec<Gvr>, Vec<(String, String)>> {
        let types = crd_types(crd)?;
        let name = crd.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        self.unregister_crd(&name);
        let gvrs = types.iter().map(|t| t.gvr.clone()).collect();
        for t in types {
            self.types.insert(t.gvr.clone(), t);
        }
        Ok(gvrs)
    }

    /// Removes the types of a CRD; returns them.
    pub fn unregister_crd(&mut self, crd_name: &str) -> Vec<Gvr> {
        let gone: Vec<Gvr> = self
            .types
            .values()
            .filter(|t| t.crd.as_deref() == Some(crd_name))
            .map(|t| t.gvr.clone())
            .collect();
        for g in &gone {
            self.types.remove(g);
        }
        gone
    }
}

/// The types a CRD object defines, or the invalid fields.
pub fn crd_types(crd: &Value) -> Result<Vec<ResourceType>, Vec<(String, String)>> {
    let mut errs = Vec::new();
    let s = |p: &str| crd.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
    let name = s("/metadata/name");
    let group = s("/spec/group");
    let plural = s("/spec/names/plural");
    let kind = s("/spec/names/kind");
    let scope = s("/spec/scope");
    if group.is_empty() {
        errs.push(("spec.group".into(), "Required value".into()));
    }
    if plural.is_empty() {
        errs.push(("spec.names.plural".into(), "Required value".into()));
    }
    if kind.is_empty() {
        errs.push(("spec.names.kind".into(), "Required value".into()));
    }
    if scope != "Namespaced" && scope != "Cluster" {
        errs.push(("spec.scope".into(), "Unsupported value: must be Namespaced or Cluster".into()));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        errs.push(("metadata.name".into(), "must be spec.names.plural+\".\"+spec.group".into()));
    }
    let versions = crd.pointer("/spec/versions").and_then(Value::as_array).cloned().unwrap_or_default();
    if versions.is_empty() {
        errs.push(("spec.versions".into(), "must have exactly one version marked as storage version".into()));
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    let strs = |p: &str| -> Vec<String> {
        crd.pointer(p)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default()
    };
    let singular = {
        let v = s("/spec/names/singular");
        if v.is_empty() { kind.to_ascii_lowercase() } else { v }
    };
    let mut out = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let vname = v.get("name").and_then(Value::as_str).unwrap_or_default();
        if vname.is_empty() {
            errs.push((format!("spec.versions[{i}].name"), "Required value".into()));
            continue;
        }
        if v.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let status = v.pointer("/subresources/status").is_some();
        let scale = v.pointer("/subresources/scale").map(|sc| {
            let p = |k: &str| {
                sc.get(k)
                    .and_then(Value::as_str)
                    .map(|x| x.trim_start_matches('.').to_string())
                    .unwrap_or_default()
            };
            let sel = p("labelSelectorPath");
            ScaleSpec {
                spec_replicas: p("specReplicasPath"),
                status_replicas: p("statusReplicasPath"),
                label_selector: if sel.is_empty() { None } else { Some(sel) },
            }
        });
        let printer_columns = v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(|cols| {
                cols.iter()
                    .map(|c| {
                        let g = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
                        PrinterColumn {
                            name: g("name"),
                            type_: g("type"),
                            json_path: g("jsonPath"),
                            description: g("description"),
                            priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                            format: g("format"),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(ResourceType {
            gvr: Gvr::new(&group, vname, &plural),
            kind: kind.clone(),
            singular: singular.clone(),
            namespaced: scope == "Namespaced",
            short_names: strs("/spec/names/shortNames"),
            categories: strs("/spec/names/categories"),
            status,
            scale,
            schema: v.pointer("/schema/openAPIV3Schema").cloned(),
            printer_columns,
            name_rule: NameRule::Subdomain,
            crd: Some(name.clone()),
            storage: v.get("storage").and_then(Value::as_bool).unwrap_or(false),
            extra_subresources: vec![],
        });
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(out)
}

/// Checks a name against the type's DNS rule; the message Kubernetes gives when it fails.
pub fn check_name(rule: NameRule, name: &str) -> Option<String> {
    let label_ok = |l: &str, first_alpha: bool| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
            && (!first_alpha || b[0].is_ascii_lowercase())
    };
    match rule {
        NameRule::Subdomain => {
            if name.len() <= 253 && name.split('.').all(|l| label_ok(l, false)) {
                None
            } else {
                Some(format!(
                    "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case \
                     alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                ))
            }
        }
        NameRule::Label => (!label_ok(name, false)).then(|| {
            format!(
                "Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric \
                 characters or '-', and must start and end with an alphanumeric character"
            )
        }),
        NameRule::PathSegment => (name.is_empty() || name == "." || name == ".." || name.contains(['/', '%']))
            .then(|| format!("Invalid value: \"{name}\": may not be '.' or '..' and may not contain '/' or '%'")),
        NameRule::Label1035 => (!label_ok(name, true)).then(|| {
            format!(
                "Invalid value: \"{name}\": a DNS-1035 label must consist of lower case alphanumeric characters \
                 or '-', start with an alphabetic character, and end with an alphanumeric character"
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_their_rules() {
        assert!(check_name(NameRule::Subdomain, "web.v1").is_none());
        assert!(check_name(NameRule::Subdomain, "Web").is_some());
        assert!(check_name(NameRule::Subdomain, "").is_some());
        assert!(check_name(NameRule::Label, "a.b").is_some());
        assert!(check_name(NameRule::Label1035, "1abc").is_some());
        assert!(check_name(NameRule::Label, "1abc").is_none());
    }
}
