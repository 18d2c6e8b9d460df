//! Projection: each Kubernetes object becomes, once at ingest, the compact record machinist serves.
//!
//! Pure functions: no locks, no I/O, no owner resolution (that needs the cache and lives in `store`). The
//! k8s object is dropped by the caller right after; nothing here keeps a reference to it.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, ReplicationController, Service as K8sService};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::DynamicObject;
use serde_json::Value;

use super::model::{ControllerKind, Fragment, Labels, Machine, Service, ServicePort};

/// Watcher kind names (plural, as the API and the metrics label them).
pub mod kinds {
    pub const PODS: &str = "pods";
    pub const DEPLOYMENTS: &str = "deployments";
    pub const STATEFULSETS: &str = "statefulsets";
    pub const REPLICASETS: &str = "replicasets";
    pub const REPLICATIONCONTROLLERS: &str = "replicationcontrollers";
    pub const SERVICES: &str = "services";
    pub const NAMESPACES: &str = "namespaces";
    pub const GATEWAYS: &str = "gateways";
    pub const HTTPROUTES: &str = "httproutes";
    /// Every kind the k8s cache waits for, in watch order.
    pub const ALL: [&str; 9] = [
        PODS,
        DEPLOYMENTS,
        STATEFULSETS,
        REPLICASETS,
        REPLICATIONCONTROLLERS,
        SERVICES,
        NAMESPACES,
        GATEWAYS,
        HTTPROUTES,
    ];
}

/// Gateway API objects are watched as `DynamicObject`; the newtype tells the cache which kind one is.
#[derive(Clone, Debug)]
pub struct Gateway(pub DynamicObject);
/// See [`Gateway`].
#[derive(Clone, Debug)]
pub struct HttpRoute(pub DynamicObject);

/// Where an object lives: namespace (None for cluster-scoped kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    pub namespace: Option<String>,
    pub name: String,
}

/// A controller's owner reference, as far as resolution needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub kind: String,
    pub name: String,
    pub api_version: String,
}

/// A pod projected to its served Machine, without `controller` (resolved by the store).
#[derive(Clone, Debug, PartialEq)]
pub struct PodModel {
    pub machine: Machine,
    /// The controlling owner reference (controller=true), if any.
    pub owner: Option<Owner>,
}

/// A controller projected, without machines.
#[derive(Clone, Debug, PartialEq)]
pub struct ControllerModel {
    pub kind: ControllerKind,
    pub name: String,
    pub replicas: i32,
    pub ready_replicas: i32,
    pub labels: Labels,
    /// ReplicaSets: the controlling owner; `Deployment` makes the set not top-level.
    pub owner: Option<Owner>,
}

/// What one object becomes in the cache. Public only because [`K8sObject`] returns it.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub enum Projection {
    Pod(Box<PodModel>),
    Controller(ControllerModel),
    Service(Service),
    Namespace,
    /// A Gateway API object, already trimmed and serialized.
    Object(Fragment),
}

/// A Kubernetes object the cache ingests.
pub trait K8sObject: Send + Sync + 'static {
    /// The watcher kind (`kinds::*`).
    const KIND: &'static str;
    fn meta(&self) -> &ObjectMeta;
    fn project(&self) -> Projection;

    fn key(&self) -> ObjectKey {
        key_of(self.meta())
    }

    /// The resourceVersion as a number, to refuse an older copy over a newer one. Kubernetes calls it
    /// opaque; every real server (and the sandbox) uses etcd's revision, a decimal integer.
    fn resource_version(&self) -> Option<u64> {
        self.meta().resource_version.as_deref().and_then(|rv| rv.parse().ok())
    }
}

fn key_of(meta: &ObjectMeta) -> ObjectKey {
    ObjectKey { namespace: meta.namespace.clone(), name: meta.name.clone().unwrap_or_default() }
}

pub(super) fn controller_owner(meta: &ObjectMeta) -> Option<Owner> {
    let refs: &[OwnerReference] = meta.owner_references.as_deref().unwrap_or(&[]);
    refs.iter().find(|r| r.controller == Some(true)).map(|r| Owner {
        kind: r.kind.clone(),
        name: r.name.clone(),
        api_version: r.api_version.clone(),
    })
}

pub(super) fn labels_of(meta: &ObjectMeta) -> Labels {
    meta.labels.clone().unwrap_or_default()
}

/// RFC 3339 UTC with milliseconds: `2025-01-01T00:00:00.000Z`.
pub fn format_time(ts: jiff::Timestamp) -> String {
    format!("{ts:.3}")
}

/// The `sha256:…` part of a container status' `imageID` (`docker-pullable://nginx@sha256:…`).
pub fn image_digest(image_id: &str) -> Option<String> {
    image_id.find("sha256:").map(|at| image_id[at..].to_string()).filter(|d| d.len() > "sha256:".len())
}

fn controller_model(
    kind: ControllerKind,
    meta: &ObjectMeta,
    replicas: Option<i32>,
    ready: Option<i32>,
) -> ControllerModel {
    ControllerModel {
        kind,
        name: meta.name.clone().unwrap_or_default(),
        replicas: replicas.unwrap_or(1),
        ready_replicas: ready.unwrap_or(0),
        labels: labels_of(meta),
        owner: controller_owner(meta),
    }
}

pub fn project_service(svc: &K8sService) -> Service {
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .map(|ports| {
            ports
                .iter()
                .map(|p| ServicePort {
                    name: p.name.clone().filter(|n| !n.is_empty()),
                    port: p.port,
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                })
                .collect()
        })
        .unwrap_or_default();
    Service { name: svc.metadata.name.clone().unwrap_or_default(), labels: labels_of(&svc.metadata), ports }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Gateway API objects as the cluster has them, trimmed to what API.md serves.
pub fn trim_dynamic(obj: &DynamicObject, default_api_version: &str, default_kind: &str) -> Value {
    let meta = &obj.metadata;
    let mut annotations = meta.annotations.clone().unwrap_or_default();
    annotations.remove(LAST_APPLIED);
    let mut metadata = serde_json::Map::new();
    metadata.insert("name".into(), meta.name.clone().into());
    metadata.insert("namespace".into(), meta.namespace.clone().into());
    metadata.insert(
        "labels".into(),
        serde_json::to_value(meta.labels.clone().unwrap_or_default()).unwrap_or_default(),
    );
    metadata.insert("annotations".into(), serde_json::to_value(annotations).unwrap_or_default());
    metadata.insert("uid".into(), meta.uid.clone().into());
    metadata.insert("resourceVersion".into(), meta.resource_version.clone().into());
    let (api_version, kind) = match &obj.types {
        Some(t) => (t.api_version.clone(), t.kind.clone()),
        None => (default_api_version.to_string(), default_kind.to_string()),
    };
    let mut out = serde_json::Map::new();
    out.insert("apiVersion".into(), api_version.into());
    out.insert("kind".into(), kind.into());
    out.insert("metadata".into(), Value::Object(metadata));
    out.insert("spec".into(), obj.data.get("spec").cloned().unwrap_or(Value::Null));
    out.insert("status".into(), obj.data.get("status").cloned().unwrap_or(Value::Null));
    Value::Object(out)
}

pub(crate) fn to_fragment<T: serde::Serialize>(value: &T) -> Fragment {
    // Serializing our own plain structs cannot fail (string keys, no non-finite floats); stay total anyway.
    match serde_json::value::to_raw_value(value) {
        Ok(raw) => raw.into(),
        Err(err) => {
            tracing::error!(%err, "serializing a served shape failed");
            serde_json::value::RawValue::NULL.to_owned().into()
        }
    }
}

impl K8sObject for Deployment {
    const KIND: &'static str = kinds::DEPLOYMENTS;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn project(&self) -> Projection {
        Projection::Controller(controller_model(
            ControllerKind::Deployment,
            &self.metadata,
            self.spec.replicas,
            self.status.as_ref().and_then(|s| s.ready_replicas),
        ))
    }
}

impl K8sObject for StatefulSet {
    const KIND: &'static str = kinds::STATEFULSETS;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn project(&self) -> Projection {
        Projection::Controller(controller_model(
            ControllerKind::StatefulSet,
            &self.metadata,
            self.spec.replicas,
            self.status.as_ref().and_then(|s| s.ready_replicas),
        ))
    }
}

impl K8sObject for ReplicaSet {
    const KIND: &'static str = kinds::REPLICASETS;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn project(&self) -> Projection {
        Projection::Controller(controller_model(
            ControllerKind::ReplicaSet,
            &self.metadata,
            self.spec.replicas,
            self.status.as_ref().and_then(|s| s.ready_replicas),
        ))
    }
}

impl K8sObject for ReplicationController {
    const KIND: &'static str = kinds::REPLICATIONCONTROLLERS;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn project(&self) -> Projection {
        Projection::Controller(controller_model(
            ControllerKind::ReplicationController,
            &self.metadata,
            self.spec.as_ref().and_then(|s| s.replicas),
            self.status.as_ref().and_then(|s| s.ready_replicas),
        ))
    }
}

impl K8sObject for K8sService {
    const KIND: &'static str = kinds::SERVICES;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn project(&self) -> Projection {
        Projection::Service(project_service(self))
    }
}

impl K8sObject for Namespace {
    const KIND: &'static str = kinds::NAMESPACES;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn project(&self) -> Projection {
        Projection::Namespace
    }
}

impl K8sObject for Gateway {
    const KIND: &'static str = kinds::GATEWAYS;
    fn meta(&self) -> &ObjectMeta {
        &self.0.metadata
    }
    fn project(&self) -> Projection {
        Projection::Object(to_fragment(&trim_dynamic(&self.0, "gateway.networking.k8s.io/v1", "Gateway")))
    }
}

impl K8sObject for HttpRoute {
    const KIND: &'static str = kinds::HTTPROUTES;
    fn meta(&self) -> &ObjectMeta {
        &self.0.metadata
    }
    fn project(&self) -> Projection {
        Projection::Object(to_fragment(&trim_dynamic(&self.0, "gateway.networking.k8s.io/v1", "HTTPRoute")))
    }
}

/// `providerMetadata` of a k8s controller.
pub fn provider_metadata(kind: ControllerKind) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("kind".to_string(), kind.as_str().to_string()),
        ("apiVersion".into(), kind.api_version().into()),
    ])
}
