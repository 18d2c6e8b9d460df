//! The `ScaleRequest` custom resource (`machinist.dev/v1alpha1`): its Rust type, schema and generated CRD.
//!
//! It holds no reconcile logic; `run.rs` decides and writes, `crds/scalerequest.yaml` must equal
//! [`crd_yaml`] (a test checks it).

use kube::CustomResource;
use kube::core::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cache::model::ControllerKind;
pub use crate::provider::scale::TargetProvider;

/// The largest replica count a ScaleRequest may ask for: far above any real workload, low enough that a
/// typo (an extra few zeros) is rejected at apply time instead of starting a stampede.
pub const MAX_REPLICAS: i32 = 10_000;

/// A request to set the replicas of one workload, applied once per `metadata.generation` (like a Job:
/// later changes by others are not reverted).
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "machinist.dev",
    version = "v1alpha1",
    kind = "ScaleRequest",
    namespaced,
    shortname = "sr",
    category = "machinist",
    status = "ScaleRequestStatus",
    doc = "A request to set the replicas of one Kubernetes workload or ECS service, applied once per generation.",
    printcolumn = r#"{"name": "Target", "type": "string", "jsonPath": ".spec.target.name"}"#,
    printcolumn = r#"{"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}"#,
    printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ScaleRequestSpec {
    pub target: ScaleTarget,
    /// The replica count to set (desired count on ECS).
    #[schemars(range(min = 0, max = 10000))]
    pub replicas: i32,
    /// Delete this request that many seconds after it Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i64>,
}

/// What to scale. Kubernetes targets live in the ScaleRequest's own namespace; ECS targets name a cluster.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTarget {
    #[serde(default)]
    pub provider: TargetProvider,
    /// Pins the kind; when absent the name is resolved Deployment → StatefulSet → ReplicaSet →
    /// ReplicationController (ECS: Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<TargetKind>,
    /// The workload's name (a DNS-1123 label).
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// ECS only: the cluster of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub scope: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum TargetKind {
    Deployment,
    StatefulSet,
    ReplicaSet,
    ReplicationController,
    Service,
}

impl From<TargetKind> for ControllerKind {
    fn from(kind: TargetKind) -> ControllerKind {
        match kind {
            TargetKind::Deployment => ControllerKind::Deployment,
            TargetKind::StatefulSet => ControllerKind::StatefulSet,
            TargetKind::ReplicaSet => ControllerKind::ReplicaSet,
            TargetKind::ReplicationController => ControllerKind::ReplicationController,
            TargetKind::Service => ControllerKind::Service,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    Pending,
    Applying,
    Succeeded,
    Failed,
    Superseded,
}

impl Phase {
    pub fn finished(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Superseded)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleRequestStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339 time the request reached Succeeded or Failed (drives `ttlSecondsAfterFinished`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A status condition, shaped like `metav1.Condition`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Applied`, `Ready` or `ConflictingAutoscaler`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The CustomResourceDefinition as YAML, as `machinist crd` prints it and `crds/scalerequest.yaml` holds it.
pub fn crd_yaml() -> String {
    // Serializing a CRD built from our own derive cannot fail; an empty string would fail the crds/ test.
    serde_yaml::to_string(&ScaleRequest::crd()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_names_and_columns() {
        let crd = ScaleRequest::crd();
        assert_eq!(crd.spec.group, "machinist.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names.as_deref(), Some(&["sr".to_string()][..]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
        let columns: Vec<_> =
            version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
        assert_eq!(columns, ["Target", "Replicas", "Phase", "Age"]);
    }

    #[test]
    fn schema_bounds_replicas_and_names() {
        let yaml = crd_yaml();
        let crd: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let replicas = &spec["properties"]["replicas"];
        assert_eq!(replicas["minimum"], 0.0);
        assert_eq!(replicas["maximum"], f64::from(MAX_REPLICAS));
        assert_eq!(replicas["type"], "integer");
        let target = &spec["properties"]["target"]["properties"];
        assert!(target["name"]["pattern"].as_str().unwrap().starts_with("^[a-z0-9]"));
        let kinds: Vec<_> =
            target["kind"]["enum"].as_array().unwrap().iter().filter(|k| !k.is_null()).collect();
        assert_eq!(kinds.len(), 5);
        assert_eq!(target["provider"]["default"], "k8s");
        let required: Vec<_> = spec["required"].as_array().unwrap().iter().map(|v| v.as_str()).collect();
        assert!(required.contains(&Some("replicas")) && required.contains(&Some("target")));
    }

    #[test]
    fn spec_roundtrips_with_defaults() {
        let spec: ScaleRequestSpec =
            serde_json::from_value(serde_json::json!({"target": {"name": "web"}, "replicas": 3})).unwrap();
        assert_eq!(spec.target.provider, TargetProvider::K8s);
        assert_eq!(spec.target.kind, None);
        assert!(
            serde_json::from_value::<ScaleRequestSpec>(
                serde_json::json!({"target": {"name": "web", "kind": "Job"}, "replicas": 3})
            )
            .is_err()
        );
    }
}
