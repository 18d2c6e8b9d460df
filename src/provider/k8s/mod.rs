//! The Kubernetes provider: one watcher per kind feeding `cache`, the `/scale` write with a resourceVersion
//! precondition, server-side apply of manifests, and the leader Lease.
//!
//! It builds no HTTP responses and decides no desired state.

pub mod client;
mod decode;
pub mod lease;
pub mod review;
pub mod served;
pub mod watch;
pub mod write;

use std::sync::Arc;
use std::time::Duration;

use crate::cache::Cache;
use crate::provider::{Capabilities, Health, Provider, ReadModel, Writes};

/// The Kubernetes provider as `api/` sees it: reads from the cache, writes through `K8sWrites`, health
/// from the watchers.
pub struct K8sProvider {
    cache: Arc<Cache>,
    writes: write::K8sWrites,
    watches: Arc<watch::WatchHealth>,
    stale_after: Duration,
}

impl K8sProvider {
    pub fn new(
        cache: Arc<Cache>,
        writes: write::K8sWrites,
        watches: Arc<watch::WatchHealth>,
        stale_after: Duration,
    ) -> K8sProvider {
        K8sProvider { cache, writes, watches, stale_after }
    }
}

impl Provider for K8sProvider {
    fn name(&self) -> &'static str {
        "k8s"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            machines: true,
            controllers: true,
            scale: true,
            labels: true,
            services: true,
            apply: true,
            // What the cluster serves, as discovery last saw it: a missing kind answers 501.
            gateways: self.watches.apis.served(served::Api::Gateways),
            httproutes: self.watches.apis.served(served::Api::HttpRoutes),
            scale_requests: self.watches.apis.served(served::Api::ScaleRequests),
        }
    }

    fn health(&self) -> Health {
        let synced = self.cache.synced();
        match self.watches.check(self.stale_after) {
            Ok(()) if synced => Health { healthy: true, synced, reason: None },
            Ok(()) => {
                Health { healthy: true, synced, reason: Some("the first list has not completed".into()) }
            }
            Err(reason) => Health { healthy: false, synced, reason: Some(reason) },
        }
    }

    fn reads(&self) -> &dyn ReadModel {
        &*self.cache
    }

    fn writes(&self) -> &dyn Writes {
        &self.writes
    }
}
