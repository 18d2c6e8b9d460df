//! Kubernetes writes: the `/scale` write with a resourceVersion precondition (the reconciler's k8s
//! [`Scaler`]), deletes, label merge patches, and manifest applies by server-side apply.
//!
//! Every write ends by feeding the confirmed object to the cache (read-your-writes). It decides no desired
//! state (the reconciler does) and builds no HTTP responses. Secrets are applied and forgotten: never cached,
//! echoed or logged. The client it is given must come from `client::client_with(config, false)`: kube's
//! default retry off, because the retry budget ([`RetryBudget`]) lives here (anti-pattern 7).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::core::v1::{ReplicationController, Service};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::cache::model::ControllerKind;
use crate::cache::{Cache, HttpRoute, K8sObject, PodView, ReadError, ResolvedController};
use crate::metrics::metrics;
use crate::provider::scale::{
    Scaled, Scaler, Source, TargetKey, TargetProvider, WriteQueue, backoff, needs_write, not_found,
};
use crate::provider::{self, ControllerTarget, Fragment, ManifestKind, ProviderError, Writes};

mod errors;
mod manifest;

pub use errors::map_kube_error;
pub use manifest::{validate_label_key, validate_label_value, validate_manifest};

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "machinist";

/// How hard one write tries before it gives up: 409s and transient failures are retried with jittered
/// backoff, 429s wait their `retryAfterSeconds` (at most [`RetryBudget::max_throttle_wait`]).
#[derive(Clone, Copy, Debug)]
pub struct RetryBudget {
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
    pub max_throttle_wait: Duration,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            attempts: 10,
            base: Duration::from_millis(50),
            max: Duration::from_secs(2),
            max_throttle_wait: Duration::from_secs(30),
        }
    }
}

impl RetryBudget {
    /// Sleep before the next attempt, or `None` when `error` is final or the budget is spent.
    fn pause(&self, attempt: u32, error: &kube::Error) -> Option<Duration> {
        if attempt + 1 >= self.attempts {
            return None;
        }
        match error {
            kube::Error::Api(status) if status.code == 429 => {
                let secs =
                    status.details.as_ref().map(|d| d.retry_after_seconds).filter(|s| *s > 0).unwrap_or(1);
                Some(Duration::from_secs(u64::from(secs)).min(self.max_throttle_wait))
            }
            kube::Error::Api(status) if matches!(status.code, 409 | 500 | 502 | 503 | 504) => {
                Some(backoff(attempt, self.base, self.max, fastrand::f64()))
            }
            kube::Error::Api(_) => None,
            // Transport failures (connection refused, reset): the same bounded backoff.
            _ => Some(backoff(attempt, self.base, self.max, fastrand::f64())),
        }
    }
}

/// The Kubernetes [`Scaler`]: `/scale` with a resourceVersion precondition.
pub struct K8sScaler {
    client: Client,
    cache: Arc<Cache>,
    budget: RetryBudget,
}

/// The kinds a write addresses: typed, namespaced, known to the cache.
trait Workload:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + K8sObject
    + Clone
    + Default
    + DeserializeOwned
    + Debug
{
}

impl<K> Workload for K where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + K8sObject
        + Clone
        + Default
        + DeserializeOwned
        + Debug
{
}

/// An object that stands for a deleted one in `Cache::delete` (only its key is read).
fn tombstone<K: Workload>(ns: &str, name: &str) -> K {
    let mut gone = K::default();
    gone.meta_mut().name = Some(name.to_string());
    gone.meta_mut().namespace = Some(ns.to_string());
    gone
}

impl K8sScaler {
    /// `client` must have kube's default retry off (see the module docs).
    pub fn new(client: Client, cache: Arc<Cache>, budget: RetryBudget) -> K8sScaler {
        K8sScaler { client, cache, budget }
    }

    /// PUT /scale with a resourceVersion precondition; on 409 read again. The first attempt takes the count
    /// and resourceVersion from the cache when it has them and the count differs (one round trip instead of
    /// GET then PUT: the precondition makes a stale cache cost a 409, never a lost update); later attempts,
    /// and a cache that already shows the count, GET /scale first. Returns the count before the write that
    /// landed (or the current count when none was needed).
    async fn write_scale<K: Workload>(
        &self,
        api: &Api<K>,
        name: &str,
        kind: ControllerKind,
        replicas: i32,
    ) -> Result<i32, kube::Error> {
        let ns = api.namespace().unwrap_or_default().to_string();
        let mut cached = self
            .cache
            .cached_replicas(&ns, name, kind)
            .filter(|(current, _)| needs_write(replicas, *current));
        let mut attempt = 0;
        loop {
            let optimistic = cached.is_some();
            let result = async {
                let (mut scale, current) = match cached.take() {
                    Some((current, rv)) => {
                        let mut scale = Scale::default();
                        scale.metadata.name = Some(name.to_string());
                        scale.metadata.namespace = Some(ns.clone());
                        scale.metadata.resource_version = Some(rv.to_string());
                        (scale, current)
                    }
                    None => {
                        let scale = api.get_scale(name).await?;
                        let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                        if !needs_write(replicas, current) {
                            return Ok(current);
                        }
                        (scale, current)
                    }
                };
                // The Scale keeps the resourceVersion the count was read at: the server answers 409 if the
                // workload changed in between, and only spec.replicas is ever written.
                scale.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
                scale.status = None;
                api.replace_scale(name, &PostParams::default(), &scale).await?;
                Ok(current)
            }
            .await;
            match result {
                Ok(previous) => return Ok(previous),
                // The cache was behind: read the object now, without a pause (the attempt still counts).
                Err(kube::Error::Api(status))
                    if optimistic && status.code == 409 && attempt + 1 < self.budget.attempts =>
                {
                    attempt += 1;
                }
                Err(error) => match self.budget.pause(attempt, &error) {
                    Some(pause) => {
                        tracing::debug!(name, attempt, ?pause, "retrying the /scale write");
                        tokio::time::sleep(pause).await;
                        attempt += 1;
                    }
                    None => return Err(error),
                },
            }
        }
    }

    async fn scale_typed<K: Workload>(
        &self,
        ns: &str,
        name: &str,
        kind: ControllerKind,
        replicas: i32,
    ) -> provider::Result<Scaled> {
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let what = format!("{} {name} in namespace {ns}", kind.as_str());
        let previous =
            self.write_scale(&api, name, kind, replicas).await.map_err(|e| map_kube_error(e, &what))?;
        // Read-your-writes: the confirmed workload goes into the cache before anyone is answered.
        let object = api.get(name).await.map_err(|e| map_kube_error(e, &what))?;
        self.cache.apply(&object);
        let controller = self.cache.controller(ns, name, Some(kind)).ok();
        Ok(Scaled { kind, name: name.to_string(), previous, applied: replicas, controller, by: None })
    }
}

impl Scaler for K8sScaler {
    fn observe(
        &self,
        scope: &str,
        name: &str,
        kind: Option<ControllerKind>,
    ) -> provider::Result<Option<ResolvedController>> {
        match self.cache.resolve_controller(scope, name, kind) {
            Ok(resolved) => Ok(Some(resolved)),
            Err(ReadError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn scale(
        &self,
        scope: String,
        name: String,
        kind: Option<ControllerKind>,
        replicas: i32,
    ) -> BoxFuture<'_, provider::Result<Scaled>> {
        async move {
            let kind = match kind {
                Some(kind) => kind,
                None => self.cache.resolve_controller(&scope, &name, None)?.kind,
            };
            let (ns, n) = (scope.as_str(), name.as_str());
            match kind {
                ControllerKind::Deployment => self.scale_typed::<Deployment>(ns, n, kind, replicas).await,
                ControllerKind::StatefulSet => self.scale_typed::<StatefulSet>(ns, n, kind, replicas).await,
                ControllerKind::ReplicaSet => self.scale_typed::<ReplicaSet>(ns, n, kind, replicas).await,
                ControllerKind::ReplicationController => {
                    self.scale_typed::<ReplicationController>(ns, n, kind, replicas).await
                }
                ControllerKind::Service => Err(ProviderError::CapabilityNotSupported(
                    "kind Service names an ECS service; Kubernetes Services have no replicas".into(),
                )),
            }
        }
        .boxed()
    }
}

/// The Kubernetes provider's [`Writes`].
pub struct K8sWrites {
    client: Client,
    cache: Arc<Cache>,
    queue: Arc<dyn WriteQueue>,
    write_timeout: Duration,
}

impl K8sWrites {
    /// `client` must have kube's default retry off (see the module docs). Scales go through `queue` (the
    /// reconciler), answering `Timeout` after `write_timeout`.
    pub fn new(
        client: Client,
        cache: Arc<Cache>,
        queue: Arc<dyn WriteQueue>,
        write_timeout: Duration,
    ) -> K8sWrites {
        K8sWrites { client, cache, queue, write_timeout }
    }

    fn record<T>(&self, op: &str, result: &provider::Result<T>) {
        let label = match result {
            Ok(_) => "success",
            Err(e) => e.label(),
        };
        metrics().writes.with_label_values(&["k8s", op, label]).inc();
    }

    async fn delete_typed<K: Workload>(&self, ns: &str, name: &str, what: &str) -> provider::Result<()> {
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let answer =
            api.delete(name, &DeleteParams::background()).await.map_err(|e| map_kube_error(e, what))?;
        // Background propagation: the object is gone now, its dependents follow. The answer's
        // resourceVersion guards the deletion against a late watch event bringing the object back.
        let mut gone = tombstone::<K>(ns, name);
        gone.meta_mut().resource_version =
            answer.left().and_then(|o| Resource::meta(&o).resource_version.clone());
        self.cache.delete(&gone);
        Ok(())
    }

    async fn delete_controller_inner(&self, target: ControllerTarget) -> provider::Result<()> {
        let resolved = self.cache.resolve_controller(&target.scope, &target.name, target.kind)?;
        let (ns, name) = (target.scope.as_str(), target.name.as_str());
        let what = format!("{} {name} in namespace {ns}", resolved.kind.as_str());
        match resolved.kind {
            ControllerKind::Deployment => self.delete_typed::<Deployment>(ns, name, &what).await,
            ControllerKind::StatefulSet => self.delete_typed::<StatefulSet>(ns, name, &what).await,
            ControllerKind::ReplicaSet => self.delete_typed::<ReplicaSet>(ns, name, &what).await,
            ControllerKind::ReplicationController => {
                self.delete_typed::<ReplicationController>(ns, name, &what).await
            }
            ControllerKind::Service => Err(not_found(TargetProvider::K8s, ns, name, target.kind)),
        }
    }

    async fn patch_labels_inner(
        &self,
        ns: String,
        id: String,
        labels: BTreeMap<String, Option<String>>,
    ) -> provider::Result<Fragment> {
        manifest::validate_label_patch(&labels)?;
        let api: Api<PodView> = Api::namespaced(self.client.clone(), &ns);
        let patch = json!({ "metadata": { "labels": labels } });
        let what = format!("machine {id} in namespace {ns}");
        let pod = api
            .patch(&id, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| map_kube_error(e, &what))?;
        self.cache.apply(&pod);
        Ok(self.cache.machine(&ns, &id)?)
    }

    async fn delete_service_inner(&self, ns: String, name: String) -> provider::Result<bool> {
        let what = format!("service {name} in namespace {ns}");
        self.delete_typed::<Service>(&ns, &name, &what).await?;
        Ok(true)
    }

    async fn apply_inner(&self, ns: String, kind: ManifestKind, manifest: Value) -> provider::Result<Value> {
        let (gvk, manifest) = validate_manifest(&ns, kind, manifest)?;
        let name = manifest["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let ar = api_resource(&gvk);
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &ns, &ar);
        let what = format!("{} {name} in namespace {ns}", gvk.kind);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let mut applied = api
            .patch(&name, &params, &Patch::Apply(&manifest))
            .await
            .map_err(|e| map_kube_error(e, &what))?;
        if kind == ManifestKind::Secret {
            // Applied and forgotten: no cache, no echo, no log of its data.
            return Ok(Value::Null);
        }
        applied.metadata.managed_fields = None;
        let served = serde_json::to_value(&applied).map_err(|e| {
            ProviderError::Upstream(format!("kubernetes returned an unreadable {}: {e}", gvk.kind))
        })?;
        let unreadable = |e: serde_json::Error| {
            ProviderError::Upstream(format!("kubernetes returned an unreadable {}: {e}", gvk.kind))
        };
        match gvk.kind.as_str() {
            "Deployment" => {
                self.cache.apply(&serde_json::from_value::<Deployment>(served.clone()).map_err(unreadable)?)
            }
            "StatefulSet" => {
                self.cache.apply(&serde_json::from_value::<StatefulSet>(served.clone()).map_err(unreadable)?)
            }
            "Service" => {
                self.cache.apply(&serde_json::from_value::<Service>(served.clone()).map_err(unreadable)?)
            }
            _ => self.cache.apply(&HttpRoute(applied)),
        }
        Ok(served)
    }

    async fn delete_httproute_inner(&self, ns: String, name: String) -> provider::Result<()> {
        let ar = api_resource(&manifest::httproute_gvk());
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &ns, &ar);
        let what = format!("HTTPRoute {name} in namespace {ns}");
        let answer =
            api.delete(&name, &DeleteParams::background()).await.map_err(|e| map_kube_error(e, &what))?;
        let mut gone = DynamicObject::new(&name, &ar);
        gone.metadata.namespace = Some(ns);
        gone.metadata.resource_version = answer.left().and_then(|o| o.metadata.resource_version);
        self.cache.delete(&HttpRoute(gone));
        Ok(())
    }
}

fn api_resource(gvk: &GroupVersionKind) -> ApiResource {
    let plural = match gvk.kind.as_str() {
        "HTTPRoute" => "httproutes".to_string(),
        other => format!("{}s", other.to_ascii_lowercase()),
    };
    ApiResource::from_gvk_with_plural(gvk, &plural)
}

impl Writes for K8sWrites {
    fn scale(&self, target: ControllerTarget, replicas: i32) -> BoxFuture<'_, provider::Result<Fragment>> {
        async move {
            let key = TargetKey {
                provider: TargetProvider::K8s,
                scope: target.scope,
                kind: target.kind,
                name: target.name,
            };
            let scaled = self.queue.submit(Source::Rest, self.write_timeout, &key, replicas).await?;
            scaled.fragment()
        }
        .boxed()
    }

    fn delete_controller(&self, target: ControllerTarget) -> BoxFuture<'_, provider::Result<()>> {
        async move {
            let result = self.delete_controller_inner(target).await;
            self.record("delete_controller", &result);
            result
        }
        .boxed()
    }

    fn patch_machine_labels(
        &self,
        scope: String,
        id: String,
        labels: BTreeMap<String, Option<String>>,
    ) -> BoxFuture<'_, provider::Result<Fragment>> {
        async move {
            let result = self.patch_labels_inner(scope, id, labels).await;
            self.record("patch_labels", &result);
            result
        }
        .boxed()
    }

    fn delete_service(&self, scope: String, name: String) -> BoxFuture<'_, provider::Result<bool>> {
        async move {
            let result = self.delete_service_inner(scope, name).await;
            self.record("delete_service", &result);
            result
        }
        .boxed()
    }

    fn apply(
        &self,
        scope: String,
        kind: ManifestKind,
        manifest: Value,
    ) -> BoxFuture<'_, provider::Result<Value>> {
        async move {
            let result = self.apply_inner(scope, kind, manifest).await;
            self.record("apply", &result);
            result
        }
        .boxed()
    }

    fn delete_httproute(&self, scope: String, name: String) -> BoxFuture<'_, provider::Result<()>> {
        async move {
            let result = self.delete_httproute_inner(scope, name).await;
            self.record("delete_httproute", &result);
            result
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests;
