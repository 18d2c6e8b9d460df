//! The ECS provider: a budgeted poller per cluster feeding an ECS [`Cache`], and the ECS writes
//! (UpdateService, DeleteService, TagResource/UntagResource) behind `provider::Writes`.
//!
//! No SDK type leaves this module: the rest of machinist sees `cache::model` shapes and `ProviderError`.
//! It never answers a read from the network: reads go to the cache.

mod budget;
mod client;
mod error;
pub mod map;
mod poll;
mod write;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;

pub use self::budget::Budget;
use self::client::EcsApi;
pub use self::client::{CallCounter, ClientOptions};
pub use self::error::EcsError;
use self::poll::KnownTask;
pub use self::poll::Snapshot;
pub use self::write::MAX_TAGS;
use crate::cache::model::{ControllerKind, Machine};
use crate::cache::{Cache, ControllerRecord, ReadError};
use crate::provider::scale::{Resolved, Scaled, Scaler, Source, TargetKey, TargetProvider, WriteQueue};
use crate::provider::{
    Capabilities, ControllerTarget, Fragment, Health, ManifestKind, Provider, ProviderError, ReadModel,
    Result, Writes,
};

/// Everything the ECS provider needs, resolved from flags and environment once, at start.
#[derive(Clone, Debug)]
pub struct EcsSettings {
    pub client: ClientOptions,
    pub clusters: Vec<String>,
    pub poll_interval: Duration,
    /// Sustained ECS reads per second across all clusters, and the burst allowed.
    pub read_rate: f64,
    pub read_burst: u32,
    /// A cluster not refreshed successfully for this long makes the provider unhealthy (readiness fails);
    /// shorter failures are reported in its health reason only.
    pub stale_after: Duration,
}

/// `EcsSettings::stale_after` unless set otherwise.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum EcsConfigError {
    #[error("no ECS cluster configured: set PLT_ECS_CLUSTERS (comma separated) or --ecs-clusters")]
    NoClusters,
    #[error("{0:?} is not a valid ECS cluster name (1-255 letters, digits, - and _)")]
    BadCluster(String),
    #[error("no AWS region: set PLT_ECS_REGION (or AWS_REGION)")]
    NoRegion,
    #[error(transparent)]
    Client(#[from] client::ClientError),
}

/// A comma list of ECS cluster names: validated, deduplicated, in order; blanks are skipped.
pub fn parse_clusters(value: &str) -> std::result::Result<Vec<String>, EcsConfigError> {
    let mut clusters: Vec<String> = Vec::new();
    for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let valid =
            name.len() <= 255 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(EcsConfigError::BadCluster(name.to_string()));
        }
        if !clusters.iter().any(|c| c == name) {
            clusters.push(name.to_string());
        }
    }
    Ok(clusters)
}

impl EcsSettings {
    /// Settings for `clusters` (at least one) in `region` (required), at the default read budget.
    pub fn new(
        region: Option<String>,
        clusters: Vec<String>,
        poll_interval: Duration,
    ) -> std::result::Result<EcsSettings, EcsConfigError> {
        if clusters.is_empty() {
            return Err(EcsConfigError::NoClusters);
        }
        let region = region.ok_or(EcsConfigError::NoRegion)?;
        Ok(EcsSettings::with_client(ClientOptions::new(region), clusters, poll_interval))
    }

    /// Settings with explicit client options (the emulator: its endpoint and dummy credentials).
    pub fn with_client(client: ClientOptions, clusters: Vec<String>, poll_interval: Duration) -> EcsSettings {
        EcsSettings {
            client,
            clusters,
            poll_interval,
            read_rate: 5.0,
            read_burst: 65,
            stale_after: DEFAULT_STALE_AFTER,
        }
    }
}

/// What the poller knows of one cluster's refreshes.
#[derive(Debug)]
struct ClusterState {
    /// When its poller started (staleness counts from here until the first success).
    since: Instant,
    last_success: Option<Instant>,
    /// The error of the last failed refresh (cleared by a successful one).
    error: Option<String>,
    /// ECS says the cluster does not exist.
    missing: bool,
}

/// A targeted refresh's result, kept until a full refresh that started after it lands.
type Recent = (u64, ControllerRecord, Vec<Machine>);

/// State shared by the pollers and the writes.
pub(crate) struct Inner {
    api: EcsApi,
    region: String,
    budget: Budget,
    cache: Arc<Cache>,
    interval: Duration,
    stale_after: Duration,
    /// One lock per cluster: cache replacements of a cluster happen one at a time (held only to swap).
    locks: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// Orders refreshes: each takes a number when it starts reading ECS.
    seq: AtomicU64,
    /// Per cluster and service, the newest targeted refresh (re-applied over older full snapshots).
    recent: Mutex<HashMap<String, HashMap<String, Recent>>>,
    /// Per cluster, task id → what the last refresh saw (version skip, id → ARN).
    known: Mutex<HashMap<String, HashMap<String, KnownTask>>>,
    /// Task definition ARN → whether it declares a container health check (definitions are immutable).
    task_definitions: Mutex<HashMap<String, bool>>,
    clusters: Mutex<BTreeMap<String, ClusterState>>,
}

impl Inner {
    fn lock_of(&self, cluster: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.get(cluster).cloned().unwrap_or_default()
    }

    fn with_state(&self, cluster: &str, f: impl FnOnce(&mut ClusterState)) {
        if let Ok(mut states) = self.clusters.lock() {
            let state = states.entry(cluster.to_string()).or_insert_with(|| ClusterState {
                since: Instant::now(),
                last_success: None,
                error: None,
                missing: false,
            });
            f(state);
        }
    }

    fn refresh_ok(&self, cluster: &str) {
        self.with_state(cluster, |s| {
            if s.missing {
                tracing::info!(cluster, "ECS cluster {cluster} exists now: serving it");
            }
            s.last_success = Some(Instant::now());
            s.error = None;
            s.missing = false;
        });
    }

    fn ever_refreshed(&self, cluster: &str) -> bool {
        self.clusters.lock().is_ok_and(|s| s.get(cluster).is_some_and(|s| s.last_success.is_some()))
    }

    fn refresh_failed(&self, cluster: &str, error: &EcsError) {
        self.with_state(cluster, |s| s.error = Some(error.reason()));
    }

    /// The cluster does not exist: said once in the log, and by every read of it (404), while the other
    /// clusters and readiness go on; looked up again every interval.
    fn cluster_missing(&self, cluster: &str, message: &str) {
        let region = &self.region;
        let every = self.interval.as_secs_f64();
        let said = format!(
            "ECS cluster {cluster} does not exist in region {region} for these credentials ({message}); \
             machinist looks again every {every}s"
        );
        let mut first = false;
        self.with_state(cluster, |s| {
            first = !s.missing;
            s.missing = true;
            s.error = None;
        });
        if first {
            tracing::error!(cluster, region = %region, "{said}");
        }
        self.cache.mark_missing(cluster, said);
    }
}

/// The ECS provider. Pollers run while it lives; dropping it stops them.
pub struct EcsProvider {
    inner: Arc<Inner>,
    pollers: Vec<tokio::task::JoinHandle<()>>,
    /// REST scales go through the reconciler's queue (with the REST write deadline) once attached.
    queue: OnceLock<(Arc<dyn WriteQueue>, Duration)>,
}

/// The reconciler's handle on ECS: observe from the cache, scale with UpdateService + targeted refresh.
pub struct EcsScaler {
    inner: Arc<Inner>,
}

impl Scaler for EcsScaler {
    fn observe(&self, scope: &str, name: &str, kind: Option<ControllerKind>) -> Result<Option<Resolved>> {
        match self.inner.cache.resolve_controller(scope, name, kind) {
            Ok(resolved) => Ok(Some(resolved)),
            Err(ReadError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn scale(
        &self,
        scope: String,
        name: String,
        _kind: Option<ControllerKind>,
        replicas: i32,
    ) -> BoxFuture<'_, Result<Scaled>> {
        async move {
            let (previous, applied) = self.inner.scale_service(&scope, &name, replicas).await?;
            let controller = self.inner.cache.controller(&scope, &name, None).ok();
            Ok(Scaled { kind: ControllerKind::Service, name, previous, applied, controller, by: None })
        }
        .boxed()
    }
}

impl Drop for EcsProvider {
    fn drop(&mut self) {
        for p in &self.pollers {
            p.abort();
        }
    }
}

impl EcsProvider {
    /// Connect and start one poller per cluster (spawned on the current tokio runtime).
    pub async fn start(settings: EcsSettings) -> std::result::Result<EcsProvider, EcsConfigError> {
        let mut provider = EcsProvider::connect(settings).await?;
        let clusters: Vec<String> = provider.inner.locks.keys().cloned().collect();
        for cluster in clusters {
            let inner = provider.inner.clone();
            provider.pollers.push(tokio::spawn(async move { inner.run_cluster(cluster).await }));
        }
        Ok(provider)
    }

    /// Connect without starting pollers; refresh with [`EcsProvider::refresh`].
    pub async fn connect(settings: EcsSettings) -> std::result::Result<EcsProvider, EcsConfigError> {
        let api = EcsApi::connect(&settings.client).await?;
        let cache = Arc::new(Cache::new_ecs(settings.clusters.clone()));
        let locks = settings.clusters.iter().map(|c| (c.clone(), Arc::default())).collect();
        let inner = Inner {
            api,
            region: settings.client.region.clone(),
            budget: Budget::new(settings.read_rate, settings.read_burst, &settings.clusters),
            cache,
            interval: settings.poll_interval,
            stale_after: settings.stale_after,
            locks,
            seq: AtomicU64::new(0),
            recent: Mutex::default(),
            known: Mutex::default(),
            task_definitions: Mutex::default(),
            clusters: Mutex::default(),
        };
        for cluster in &settings.clusters {
            inner.with_state(cluster, |_| {});
        }
        Ok(EcsProvider { inner: Arc::new(inner), pollers: Vec::new(), queue: OnceLock::new() })
    }

    /// The scaler to register as `Scalers.ecs` of the reconciler.
    pub fn scaler(&self) -> Arc<dyn Scaler> {
        Arc::new(EcsScaler { inner: self.inner.clone() })
    }

    /// Send REST scales through `queue` (the reconciler, which must hold this provider's
    /// [`EcsProvider::scaler`]), answering 504 after `write_timeout`. Without it, REST scales call
    /// UpdateService directly.
    pub fn attach_queue(&self, queue: Arc<dyn WriteQueue>, write_timeout: Duration) {
        let _ = self.queue.set((queue, write_timeout));
    }

    pub fn cache(&self) -> &Arc<Cache> {
        &self.inner.cache
    }

    /// ECS calls made by this provider, by operation (each attempt counted).
    pub fn calls(&self) -> &CallCounter {
        &self.inner.api.calls
    }

    /// A full refresh of one cluster into the cache, now.
    pub async fn refresh(&self, cluster: &str) -> Result<()> {
        self.inner.sync_cluster(cluster).await.map_err(ProviderError::from)
    }

    /// Set a service's desiredCount, then refresh it. Returns `(previous, new)` desired counts.
    pub async fn scale_service(&self, cluster: &str, service: &str, desired: i32) -> Result<(i32, i32)> {
        self.inner.scale_service(cluster, service, desired).await
    }
}

const CAPABILITIES: Capabilities = Capabilities {
    machines: true,
    controllers: true,
    scale: true,
    labels: true,
    services: true,
    apply: false,
    gateways: false,
    httproutes: false,
    scale_requests: false,
};

impl Provider for EcsProvider {
    fn name(&self) -> &'static str {
        "ecs"
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    /// Healthy unless a cluster has gone `stale_after` without a successful refresh: ECS throttles per
    /// account, so one failed refresh on every replica at once must not take them all out of their
    /// Services (Kubernetes reads included). Failures short of that, and missing clusters, are reported in
    /// `reason` only.
    fn health(&self) -> Health {
        let now = Instant::now();
        let bound = self.inner.stale_after.as_secs();
        let mut healthy = true;
        let mut reasons = Vec::new();
        if let Ok(states) = self.inner.clusters.lock() {
            for (cluster, s) in states.iter() {
                if s.missing {
                    reasons.push(format!("cluster {cluster} does not exist"));
                    continue;
                }
                let age = now.saturating_duration_since(s.last_success.unwrap_or(s.since));
                let stale = age > self.inner.stale_after;
                healthy &= !stale;
                let secs = age.as_secs();
                match (&s.error, stale) {
                    (Some(e), true) => reasons.push(format!(
                        "cluster {cluster}: no successful refresh for {secs}s (bound {bound}s): {e}"
                    )),
                    (Some(e), false) => reasons.push(format!(
                        "cluster {cluster}: {e} (last successful refresh {secs}s ago; stale after {bound}s)"
                    )),
                    (None, true) => reasons.push(format!(
                        "cluster {cluster}: no successful refresh for {secs}s (bound {bound}s)"
                    )),
                    (None, false) => {}
                }
            }
        }
        let reason = (!reasons.is_empty()).then(|| reasons.join("; "));
        Health { healthy, synced: self.inner.cache.synced(), reason }
    }

    fn reads(&self) -> &dyn ReadModel {
        &*self.inner.cache
    }

    fn writes(&self) -> &dyn Writes {
        self
    }
}

fn not_supported(what: &str) -> ProviderError {
    ProviderError::CapabilityNotSupported(format!("{what} is not supported by the ecs provider"))
}

impl Writes for EcsProvider {
    fn scale(&self, target: ControllerTarget, replicas: i32) -> BoxFuture<'_, Result<Fragment>> {
        async move {
            if let Some((queue, timeout)) = self.queue.get() {
                let key = TargetKey {
                    provider: TargetProvider::Ecs,
                    scope: target.scope,
                    kind: target.kind,
                    name: target.name,
                };
                let scaled = queue.submit(Source::Rest, *timeout, &key, replicas).await?;
                return scaled.fragment();
            }
            let result = self.inner.scale_service(&target.scope, &target.name, replicas).await;
            write::record("scale", &result);
            result?;
            Ok(self.inner.cache.controller(&target.scope, &target.name, None)?)
        }
        .boxed()
    }

    fn delete_controller(&self, target: ControllerTarget) -> BoxFuture<'_, Result<()>> {
        async move { self.inner.delete_service(&target.scope, &target.name).await }.boxed()
    }

    fn patch_machine_labels(
        &self,
        scope: String,
        id: String,
        labels: BTreeMap<String, Option<String>>,
    ) -> BoxFuture<'_, Result<Fragment>> {
        async move {
            self.inner.patch_task_labels(&scope, &id, labels).await?;
            Ok(self.inner.cache.machine(&scope, &id)?)
        }
        .boxed()
    }

    fn delete_service(&self, scope: String, _name: String) -> BoxFuture<'_, Result<bool>> {
        // An ECS service's ports are not a separate object: nothing to delete (API.md: a 200 no-op).
        async move { Ok(self.inner.cache.services(&scope, &[]).map(|_| false)?) }.boxed()
    }

    fn apply(
        &self,
        _scope: String,
        _kind: ManifestKind,
        _manifest: serde_json::Value,
    ) -> BoxFuture<'_, Result<serde_json::Value>> {
        async move { Err(not_supported("applying manifests")) }.boxed()
    }

    fn delete_httproute(&self, _scope: String, _name: String) -> BoxFuture<'_, Result<()>> {
        async move { Err(not_supported("HTTPRoutes")) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_parse_dedupe_and_reject() {
        assert_eq!(parse_clusters(" a, b ,a,,").unwrap(), vec!["a", "b"]);
        assert!(parse_clusters("").unwrap().is_empty());
        assert!(matches!(parse_clusters("bad name"), Err(EcsConfigError::BadCluster(_))));
        assert!(matches!(parse_clusters("x/y"), Err(EcsConfigError::BadCluster(_))));
    }
}
