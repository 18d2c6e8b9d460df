//! A provider answering from canned fragments and recording every write, for router tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::cache::model::{Container, Controller, ControllerRef, Machine, Resources, Service, ServicePort};
use crate::provider::{
    Capabilities, ControllerKind, ControllerTarget, Fragment, Health, LabelFilter, ManifestKind, Provider,
    ProviderError, ReadModel, Result, Writes,
};

pub type Failure = fn() -> ProviderError;

pub struct Fake {
    pub name: &'static str,
    pub scope: &'static str,
    pub caps: Capabilities,
    pub health: Mutex<Health>,
    /// When set, every read and write fails with this error.
    pub fail: Mutex<Option<Failure>>,
    /// Writes wait this long before answering.
    pub write_delay: Mutex<Duration>,
    /// Every write and every controller read, in order, e.g. `scale default/web Some(Deployment) 3`.
    pub calls: Mutex<Vec<String>>,
    /// Writes that reached this provider at all, counted before any check of its own (a real provider
    /// would already have called its API).
    pub attempts: std::sync::atomic::AtomicUsize,
}

pub const ALL: Capabilities = Capabilities {
    machines: true,
    controllers: true,
    scale: true,
    labels: true,
    services: true,
    apply: true,
    gateways: true,
    httproutes: true,
    scale_requests: true,
};

impl Fake {
    pub fn k8s() -> Arc<Fake> {
        Arc::new(Fake::new("k8s", "default", ALL))
    }

    pub fn ecs() -> Arc<Fake> {
        let caps =
            Capabilities { apply: false, gateways: false, httproutes: false, scale_requests: false, ..ALL };
        Arc::new(Fake::new("ecs", "my_cluster", caps))
    }

    fn new(name: &'static str, scope: &'static str, caps: Capabilities) -> Fake {
        Fake {
            name,
            scope,
            caps,
            health: Mutex::new(Health { healthy: true, synced: true, reason: None }),
            fail: Mutex::new(None),
            write_delay: Mutex::new(Duration::ZERO),
            calls: Mutex::new(Vec::new()),
            attempts: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn record(&self, call: String) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call);
        }
    }

    fn check(&self, scope: &str) -> Result<()> {
        if let Some(fail) = *self.fail.lock().map_err(|_| ProviderError::Upstream("poisoned".into()))? {
            return Err(fail());
        }
        if scope != self.scope {
            return Err(ProviderError::ScopeNotWatched { scope_kind: "namespace", scope: scope.into() });
        }
        Ok(())
    }

    pub fn attempts(&self) -> usize {
        self.attempts.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn delay(&self) {
        self.attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let delay = self.write_delay.lock().map(|d| *d).unwrap_or_default();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

pub fn fragment<T: serde::Serialize>(value: &T) -> Fragment {
    let json = serde_json::to_string(value).unwrap_or_default();
    serde_json::value::RawValue::from_string(json).map(Arc::from).unwrap_or_else(|_| {
        Arc::from(serde_json::value::RawValue::from_string("null".into()).unwrap_or_default())
    })
}

pub fn machine(id: &str, tier: &str) -> Machine {
    Machine {
        id: id.into(),
        status: "Running".into(),
        provider_status: None,
        ready: true,
        start_time: Some("2025-01-01T00:00:00.000Z".into()),
        image: "myapp:1.2.0".into(),
        image_digest: Some("sha256:4f1c".into()),
        labels: BTreeMap::from([("app".into(), "web".into()), ("tier".into(), tier.into())]),
        controller: Some(ControllerRef {
            name: "web".into(),
            kind: "Deployment".into(),
            api_version: "apps/v1".into(),
        }),
        resources: Resources {
            limits: BTreeMap::from([("cpu".into(), "1".into())]),
            requests: BTreeMap::from([("cpu".into(), "500m".into())]),
        },
        containers: vec![Container {
            name: "app".into(),
            image: "myapp:1.2.0".into(),
            image_digest: None,
            ready: true,
            restart_count: 0,
        }],
    }
}

fn machines() -> Vec<Machine> {
    vec![machine("web-1", "front"), machine("web-2", "back")]
}

pub fn controller(replicas: i32) -> Controller {
    Controller {
        name: "web".into(),
        replicas,
        ready_replicas: 2,
        labels: BTreeMap::from([("app".into(), "web".into())]),
        provider_metadata: BTreeMap::from([
            ("kind".into(), "Deployment".into()),
            ("apiVersion".into(), "apps/v1".into()),
        ]),
        machines: machines(),
    }
}

fn matches(labels: &BTreeMap<String, String>, filter: &LabelFilter) -> bool {
    filter.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn kube_object(kind: &str, name: &str) -> Value {
    serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": kind,
        "metadata": { "name": name, "namespace": "default", "labels": {} },
        "spec": {}, "status": { "parents": [] }
    })
}

impl ReadModel for Fake {
    fn admit_write(&self, scope: &str) -> Result<()> {
        if scope == self.scope {
            Ok(())
        } else {
            Err(ProviderError::ScopeNotWatched { scope_kind: "namespace", scope: scope.into() })
        }
    }

    fn machine(&self, scope: &str, id: &str) -> Result<Fragment> {
        self.check(scope)?;
        machines()
            .iter()
            .find(|m| m.id == id)
            .map(fragment)
            .ok_or_else(|| ProviderError::NotFound(format!("machine {id} not found in namespace {scope}")))
    }

    fn machines(&self, scope: &str, labels: &LabelFilter) -> Result<Vec<Fragment>> {
        self.check(scope)?;
        Ok(machines().iter().filter(|m| matches(&m.labels, labels)).map(fragment).collect())
    }

    fn controllers(&self, scope: &str) -> Result<Vec<Fragment>> {
        self.check(scope)?;
        Ok(vec![fragment(&controller(2))])
    }

    fn controller_of_machine(&self, scope: &str, machine_id: &str) -> Result<Vec<Fragment>> {
        self.check(scope)?;
        let owned = machines().iter().any(|m| m.id == machine_id);
        Ok(if owned { vec![fragment(&controller(2))] } else { vec![] })
    }

    fn controller(&self, scope: &str, name: &str, kind: Option<ControllerKind>) -> Result<Fragment> {
        self.check(scope)?;
        self.record(format!("controller {scope}/{name} {kind:?}"));
        if name == "web" {
            Ok(fragment(&controller(2)))
        } else {
            Err(ProviderError::NotFound(format!("controller {name} not found")))
        }
    }

    fn services(&self, scope: &str, labels: &LabelFilter) -> Result<Vec<Fragment>> {
        self.check(scope)?;
        let service = Service {
            name: "web".into(),
            labels: BTreeMap::from([("app".into(), "web".into())]),
            ports: vec![ServicePort { name: None, port: 3042, protocol: "TCP".into() }],
        };
        Ok(if matches(&service.labels, labels) { vec![fragment(&service)] } else { vec![] })
    }

    fn gateways(&self, scope: &str) -> Result<Vec<Fragment>> {
        self.check(scope)?;
        Ok(vec![fragment(&kube_object("Gateway", "gw"))])
    }

    fn httproute(&self, scope: &str, name: &str) -> Result<Fragment> {
        self.check(scope)?;
        if name == "route-1" {
            Ok(fragment(&kube_object("HTTPRoute", name)))
        } else {
            Err(ProviderError::NotFound(format!("httproute {name} not found")))
        }
    }
}

impl Writes for Fake {
    fn scale(&self, target: ControllerTarget, replicas: i32) -> BoxFuture<'_, Result<Fragment>> {
        async move {
            self.delay().await;
            self.check(&target.scope)?;
            self.record(format!("scale {}/{} {:?} {replicas}", target.scope, target.name, target.kind));
            Ok(fragment(&controller(replicas)))
        }
        .boxed()
    }

    fn delete_controller(&self, target: ControllerTarget) -> BoxFuture<'_, Result<()>> {
        async move {
            self.delay().await;
            self.check(&target.scope)?;
            self.record(format!("delete_controller {}/{} {:?}", target.scope, target.name, target.kind));
            Ok(())
        }
        .boxed()
    }

    fn patch_machine_labels(
        &self,
        scope: String,
        id: String,
        labels: BTreeMap<String, Option<String>>,
    ) -> BoxFuture<'_, Result<Fragment>> {
        async move {
            self.delay().await;
            self.check(&scope)?;
            self.record(format!("patch_labels {scope}/{id} {labels:?}"));
            Ok(fragment(&machine(&id, "front")))
        }
        .boxed()
    }

    fn delete_service(&self, scope: String, name: String) -> BoxFuture<'_, Result<bool>> {
        async move {
            self.delay().await;
            self.check(&scope)?;
            self.record(format!("delete_service {scope}/{name}"));
            Ok(self.name == "k8s")
        }
        .boxed()
    }

    fn apply(&self, scope: String, kind: ManifestKind, manifest: Value) -> BoxFuture<'_, Result<Value>> {
        async move {
            self.delay().await;
            self.check(&scope)?;
            let ns = manifest.pointer("/metadata/namespace").cloned().unwrap_or(Value::Null);
            self.record(format!("apply {scope} {kind:?} namespace={ns}"));
            Ok(if kind == ManifestKind::Secret { Value::Null } else { manifest })
        }
        .boxed()
    }

    fn delete_httproute(&self, scope: String, name: String) -> BoxFuture<'_, Result<()>> {
        async move {
            self.delay().await;
            self.check(&scope)?;
            self.record(format!("delete_httproute {scope}/{name}"));
            Ok(())
        }
        .boxed()
    }
}

impl Provider for Fake {
    fn name(&self) -> &'static str {
        self.name
    }

    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn health(&self) -> Health {
        self.health.lock().map(|h| h.clone()).unwrap_or(Health {
            healthy: false,
            synced: false,
            reason: None,
        })
    }

    fn reads(&self) -> &dyn ReadModel {
        self
    }

    fn writes(&self) -> &dyn Writes {
        self
    }
}
