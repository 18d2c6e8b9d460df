//! The Pod as the cache decodes it: only the fields the projection reads, and its projection to a Machine.
//!
//! Pods are the one kind counted in the hundreds of thousands. A full k8s-openapi `Pod` allocates every
//! field of every pod (managedFields, volumes, env, probes...) only for the projection to drop them; this
//! type skips them in the decoder, which halves the first sync's CPU at 100,000 pods (BENCHMARKS.md).
//! Fields it reads are as lenient as the API allows (a missing list is empty), so no pod a full decode
//! would accept is refused here. It does no I/O and keeps no reference to the decoded object.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde::{Deserialize, Deserializer};

use super::model::{Container, Machine, Resources};
use super::project::{
    K8sObject, PodModel, Projection, controller_owner, format_time, image_digest, kinds, labels_of,
};
use super::quantity::Sum;

/// A Pod, narrowed to what machinist serves. Watch it (`Api<PodView>`) as you would a `Pod`: same API
/// path, same kind.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodView {
    #[serde(default, deserialize_with = "narrow_meta")]
    pub metadata: ObjectMeta,
    pub spec: Option<PodSpecView>,
    pub status: Option<PodStatusView>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodSpecView {
    pub containers: Option<Vec<ContainerView>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ContainerView {
    pub name: String,
    pub image: Option<String>,
    pub resources: Option<ResourcesView>,
}

/// Quantities stay strings here; `quantity::Sum` parses them (and logs the ones it cannot).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ResourcesView {
    pub requests: Option<BTreeMap<String, String>>,
    pub limits: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatusView {
    pub phase: Option<String>,
    pub start_time: Option<Time>,
    pub conditions: Option<Vec<ConditionView>>,
    pub container_statuses: Option<Vec<ContainerStatusView>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ConditionView {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerStatusView {
    pub name: String,
    #[serde(rename = "imageID")]
    pub image_id: String,
    pub ready: bool,
    pub restart_count: i32,
}

/// The metadata fields the cache and kube-runtime read (key, resourceVersion, labels, controller); the
/// rest, managedFields and annotations above all, is skipped unread.
fn narrow_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Meta {
        name: Option<String>,
        namespace: Option<String>,
        resource_version: Option<String>,
        labels: Option<BTreeMap<String, String>>,
        owner_references: Option<Vec<OwnerReference>>,
    }
    let m = Option::<Meta>::deserialize(d)?;
    Ok(m.map(|m| ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        resource_version: m.resource_version,
        labels: m.labels,
        owner_references: m.owner_references,
        ..ObjectMeta::default()
    })
    .unwrap_or_default())
}

impl k8s_openapi::Resource for PodView {
    const API_VERSION: &'static str = <Pod as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <Pod as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <Pod as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <Pod as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <Pod as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = <Pod as k8s_openapi::Resource>::Scope;
}

impl k8s_openapi::Metadata for PodView {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl K8sObject for PodView {
    const KIND: &'static str = kinds::PODS;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn project(&self) -> Projection {
        Projection::Pod(Box::new(project_pod(self)))
    }
}

pub fn project_pod(pod: &PodView) -> PodModel {
    let meta = &pod.metadata;
    let spec_containers = pod.spec.as_ref().and_then(|s| s.containers.as_deref()).unwrap_or(&[]);
    let status = pod.status.as_ref();
    let statuses = status.and_then(|s| s.container_statuses.as_deref()).unwrap_or(&[]);

    let mut requests = Sum::default();
    let mut limits = Sum::default();
    let mut containers = Vec::with_capacity(spec_containers.len());
    for c in spec_containers {
        if let Some(res) = &c.resources {
            for (name, q) in res.requests.iter().flatten() {
                if !requests.add(name, q) {
                    tracing::warn!(pod = ?meta.name, resource = %name, value = %q, "skipping unparsable quantity");
                }
            }
            for (name, q) in res.limits.iter().flatten() {
                if !limits.add(name, q) {
                    tracing::warn!(pod = ?meta.name, resource = %name, value = %q, "skipping unparsable quantity");
                }
            }
        }
        let st = statuses.iter().find(|s| s.name == c.name);
        containers.push(Container {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_digest: st.and_then(|s| image_digest(&s.image_id)),
            ready: st.is_some_and(|s| s.ready),
            restart_count: st.map_or(0, |s| s.restart_count),
        });
    }
    let first_status = spec_containers.first().and_then(|c| statuses.iter().find(|s| s.name == c.name));
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    let machine = Machine {
        id: meta.name.clone().unwrap_or_default(),
        status: status
            .and_then(|s| s.phase.clone())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "Unknown".into()),
        provider_status: None,
        ready,
        start_time: status.and_then(|s| s.start_time.as_ref()).map(|t| format_time(t.0)),
        image: spec_containers.first().and_then(|c| c.image.clone()).unwrap_or_default(),
        image_digest: first_status.and_then(|s| image_digest(&s.image_id)),
        labels: labels_of(meta),
        controller: None,
        resources: Resources { limits: limits.render(), requests: requests.render() },
        containers,
    };
    PodModel { machine, owner: controller_owner(meta) }
}
