//! A test bed: sandbox, a fresh namespace, and the operator assembled over it as `machinist run` assembles
//! it (a cache fed by the real watchers, the reconciler, the writes), serving nothing: tests drive the
//! parts directly.
#![allow(dead_code)]

pub use crate::common::eventually;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use machinist::app::{KubeParts, Operator, OperatorBuilder};
use machinist::cache::Cache;
use machinist::provider::{Provider, Writes};
use machinist::reconcile::run::Reconciler;
use machinist_sandbox::Sandbox;
use serde_json::json;

use super::common;

pub struct Bed {
    pub sb: Sandbox,
    pub client: Client,
    pub ns: String,
    pub cache: Arc<Cache>,
    pub reconciler: Arc<Reconciler>,
    operator: Operator,
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.stop_watchers();
    }
}

pub async fn bed() -> Bed {
    let (sb, client) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    bed_in(sb, client, ns).await
}

/// A bed over `ns` of an already started sandbox (e.g. the demo namespace).
pub async fn bed_in(sb: Sandbox, client: Client, ns: String) -> Bed {
    let flags = ["--provider", "k8s", "--leader-election", "false", "--namespaces", &ns];
    let operator = OperatorBuilder::from_flags(flags)
        .expect("flags parse")
        .kubeconfig_yaml(sb.kubeconfig_yaml())
        .assemble()
        .await
        .expect("the operator assembles");
    let cache = operator.kube.as_ref().expect("the k8s provider").cache.clone();
    eventually("the cache syncs", Duration::from_secs(20), || {
        let cache = cache.clone();
        async move { cache.synced() }
    })
    .await;
    let reconciler = operator.reconciler.clone();
    Bed { sb, client, ns, cache, reconciler, operator }
}

impl Bed {
    fn kube(&self) -> &KubeParts {
        self.operator.kube.as_ref().expect("the k8s provider")
    }

    /// The cache stops following the cluster (the watchers end).
    pub fn stop_watchers(&self) {
        self.kube().watchers.abort();
    }

    /// The Kubernetes provider's writes, as the REST API calls them.
    pub fn writes(&self) -> &dyn Writes {
        self.kube().provider.writes()
    }

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
