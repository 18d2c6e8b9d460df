//! A test bed: sandbox, a fresh namespace, a cache fed by the real watchers, the reconciler and the writes.
#![allow(dead_code)]

pub use crate::common::eventually;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use machinist::cache::Cache;
use machinist::provider::k8s::watch::{Watchers, spawn_watchers};
use machinist::provider::k8s::write::{K8sScaler, K8sWrites, RetryBudget};
use machinist::reconcile::run::{Reconciler, Scalers};
use machinist::sandbox::Sandbox;
use serde_json::json;

use super::common;

pub struct Bed {
    pub sb: Sandbox,
    pub client: Client,
    pub ns: String,
    pub cache: Arc<Cache>,
    pub watchers: Watchers,
    pub reconciler: Arc<Reconciler>,
    pub writes: K8sWrites,
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.watchers.abort();
    }
}

pub async fn bed() -> Bed {
    let (sb, client) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    bed_in(sb, client, ns).await
}

/// A bed over `ns` of an already started sandbox (e.g. the demo namespace).
pub async fn bed_in(sb: Sandbox, client: Client, ns: String) -> Bed {
    let cache = Arc::new(Cache::new_k8s(vec![ns.clone()]));
    let watchers = spawn_watchers(client.clone(), cache.clone(), std::slice::from_ref(&ns));
    eventually("the cache syncs", Duration::from_secs(20), || {
        let cache = cache.clone();
        async move { cache.synced() }
    })
    .await;
    let scaler = K8sScaler::new(client.clone(), cache.clone(), RetryBudget::default());
    let reconciler = Reconciler::new(Scalers { k8s: Some(Arc::new(scaler)), ecs: None });
    let writes = K8sWrites::new(client.clone(), cache.clone(), reconciler.clone(), Duration::from_secs(10));
    Bed { sb, client, ns, cache, watchers, reconciler, writes }
}

impl Bed {
    pub fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Create a Deployment and wait until the cache has it.
    pub async fn deployment(&self, name: &str, replicas: i32) -> Deployment {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}}}
        }))
        .unwrap();
        let created = self.deployments().create(&PostParams::default(), &d).await.expect("create deployment");
        let (cache, ns, n) = (self.cache.clone(), self.ns.clone(), name.to_string());
        eventually("the cache sees the deployment", Duration::from_secs(10), move || {
            let (cache, ns, n) = (cache.clone(), ns.clone(), n.clone());
            async move { cache.resolve_controller(&ns, &n, None).is_ok() }
        })
        .await;
        created
    }

    /// What a workload controller would report: `readyReplicas` (the sandbox may run no simulation).
    pub async fn set_ready(&self, name: &str, ready: i32) {
        let patch =
            json!({"status": {"replicas": ready, "readyReplicas": ready, "availableReplicas": ready}});
        self.deployments()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("status");
    }

    /// The Deployment's resourceVersion once it stopped changing for a second (simulated controllers
    /// update statuses as pods start).
    pub async fn settled_resource_version(&self, name: &str) -> Option<String> {
        let mut last = self.deployments().get(name).await.expect("get").metadata.resource_version;
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = self.deployments().get(name).await.expect("get").metadata.resource_version;
            if now == last {
                return now;
            }
            last = now;
        }
        panic!("deployment {name} kept changing");
    }

    pub async fn replicas(&self, name: &str) -> i32 {
        let d = self.deployments().get(name).await.expect("get deployment");
        d.spec.replicas.unwrap_or(-1)
    }
}
