//! The shapes machinist serves (API.md "Shapes"), shared by every provider.
//!
//! Ingest builds these once per real change and keeps them pre-serialized; reads never build them again.
//! Field names are part of the public contract: add fields, never rename them.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// A served object, serialized once at ingest (or after a write) and copied into responses as is.
pub type Fragment = Arc<RawValue>;

/// `(key, value)` label pairs; a read matches when all pairs match (AND).
pub type LabelFilter = [(String, String)];

/// Labels are always an object, never null.
pub type Labels = BTreeMap<String, String>;

/// A K8s Pod or an ECS Task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    pub id: String,
    /// `Pending`, `Running`, `Succeeded`, `Failed` or `Unknown`; never null.
    pub status: String,
    /// ECS only: the raw `lastStatus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_status: Option<String>,
    pub ready: bool,
    /// RFC 3339 UTC with milliseconds; null until the machine started.
    pub start_time: Option<String>,
    pub image: String,
    /// `sha256:...` of the first container, omitted until known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    pub labels: Labels,
    /// The top owner (Pod → ReplicaSet → Deployment); null for a bare pod.
    pub controller: Option<ControllerRef>,
    pub resources: Resources,
    pub containers: Vec<Container>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControllerRef {
    pub name: String,
    pub kind: String,
    pub api_version: String,
}

/// Sum over the machine's containers; absent values are omitted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    pub ready: bool,
    pub restart_count: i32,
}

/// A Deployment, StatefulSet, ReplicaSet, ReplicationController or ECS Service, with its machines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Controller {
    pub name: String,
    /// spec.replicas / desiredCount; never null.
    pub replicas: i32,
    pub ready_replicas: i32,
    pub labels: Labels,
    /// Flat string map the client sends back as query parameters (`kind`, `apiVersion` on k8s; `{}` on ecs).
    pub provider_metadata: BTreeMap<String, String>,
    pub machines: Vec<Machine>,
}

/// A K8s Service, or an ECS service's load balancer / Cloud Map ports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Service {
    pub name: String,
    pub labels: Labels,
    /// In the order of `spec.ports`: clients use `ports[0]`.
    pub ports: Vec<ServicePort>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServicePort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: i32,
    pub protocol: String,
}

/// The kinds of controller machinist serves, in the order a bare name is resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub enum ControllerKind {
    Deployment,
    StatefulSet,
    ReplicaSet,
    ReplicationController,
    /// An ECS service.
    Service,
}

impl ControllerKind {
    /// Kubernetes resolution order for a bare name (API.md "Kind resolution").
    pub const K8S_RESOLUTION_ORDER: [ControllerKind; 4] = [
        ControllerKind::Deployment,
        ControllerKind::StatefulSet,
        ControllerKind::ReplicaSet,
        ControllerKind::ReplicationController,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ControllerKind::Deployment => "Deployment",
            ControllerKind::StatefulSet => "StatefulSet",
            ControllerKind::ReplicaSet => "ReplicaSet",
            ControllerKind::ReplicationController => "ReplicationController",
            ControllerKind::Service => "Service",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            ControllerKind::ReplicationController => "v1",
            ControllerKind::Service => "ecs",
            _ => "apps/v1",
        }
    }

    pub fn parse(kind: &str) -> Option<ControllerKind> {
        [
            ControllerKind::Deployment,
            ControllerKind::StatefulSet,
            ControllerKind::ReplicaSet,
            ControllerKind::ReplicationController,
            ControllerKind::Service,
        ]
        .into_iter()
        .find(|k| k.as_str() == kind)
    }
}

/// One entry of `GET /providers`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProviderInfo {
    pub name: String,
    pub enabled: bool,
    pub capabilities: Capabilities,
    pub health: Health,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    pub machines: bool,
    pub controllers: bool,
    pub scale: bool,
    pub labels: bool,
    pub services: bool,
    /// Manifest PUTs (controllers, services, secrets) by server-side apply.
    pub apply: bool,
    pub gateways: bool,
    pub httproutes: bool,
    /// The cluster serves the ScaleRequest CRD, so ScaleRequests are reconciled (Kubernetes only; a
    /// ScaleRequest may still target an ECS service).
    pub scale_requests: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub healthy: bool,
    /// True once every watcher (or poller) of the provider has listed once.
    pub synced: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
