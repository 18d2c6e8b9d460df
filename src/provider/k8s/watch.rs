//! One kube-runtime watcher per kind (per namespace when namespaces are configured) feeding the cache, and
//! their health for `/health/readiness`.
//!
//! It decodes, skips objects that will not decode (with a log), backs off on errors and records watch
//! metrics. It projects nothing itself (the cache does) and builds no HTTP responses.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, ReplicationController, Service};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::NamespaceResourceScope;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tokio_util::task::AbortOnDropHandle;

use super::client::WATCH_TIMEOUT;
use super::decode::Guarded;
use super::served::{self, REDISCOVER, ServedApis};
use crate::cache::{Cache, Gateway, HttpRoute, K8sObject, PodView, kinds};
use crate::metrics::metrics;

/// Consecutive errors (with no event in between) after which a watcher counts as unhealthy.
const ERROR_STREAK_UNHEALTHY: u32 = 3;

#[derive(Debug)]
struct WatcherState {
    last_event: Instant,
    error_streak: u32,
    last_error: Option<String>,
    ended: bool,
    /// The same state as metrics, for an alert that applies `check`'s rule.
    series: crate::metrics::WatchSeries,
}

/// The health of every watcher, keyed `kind` or `kind/namespace`.
#[derive(Debug, Default)]
pub struct WatchHealth {
    watchers: Mutex<HashMap<String, WatcherState>>,
    /// The optional APIs the cluster serves, as discovery last saw them.
    pub apis: ServedApis,
}

impl WatchHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, WatcherState>> {
        self.watchers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, kind: &str, ns: Option<&str>) {
        let series = metrics().watch_series(kind, ns);
        self.lock().insert(
            watcher_id(kind, ns),
            WatcherState {
                last_event: Instant::now(),
                error_streak: 0,
                last_error: None,
                ended: false,
                series,
            },
        );
    }

    fn remove(&self, id: &str) {
        if let Some(s) = self.lock().remove(id) {
            s.series.remove();
        }
    }

    fn event(&self, id: &str) {
        if let Some(s) = self.lock().get_mut(id) {
            s.last_event = Instant::now();
            s.error_streak = 0;
            s.last_error = None;
            s.series.event();
        }
    }

    fn error(&self, id: &str, err: String) {
        if let Some(s) = self.lock().get_mut(id) {
            s.error_streak += 1;
            s.last_error = Some(err);
            s.series.error();
        }
    }

    fn ended(&self, id: &str) {
        if let Some(s) = self.lock().get_mut(id) {
            s.ended = true;
        }
    }

    /// `Ok` when every watcher is healthy, else the reason naming the first unhealthy ones.
    ///
    /// kube-runtime consumes bookmarks without surfacing them, so a quiet kind (no httproutes at all) sees
    /// no events for hours while its watch is fine: silence alone is not a failure. A watcher is unhealthy
    /// when its stream ended, when it failed `ERROR_STREAK_UNHEALTHY` times in a row, or when it has been
    /// failing with no event for longer than `stale_after`.
    pub fn check(&self, stale_after: Duration) -> Result<(), String> {
        let watchers = self.lock();
        let mut bad: Vec<String> = watchers
            .iter()
            .filter_map(|(id, s)| {
                let stale = s.error_streak > 0 && s.last_event.elapsed() > stale_after;
                if s.ended {
                    Some(format!("watcher {id} stopped"))
                } else if s.error_streak >= ERROR_STREAK_UNHEALTHY || stale {
                    Some(format!(
                        "watcher {id} failing ({} errors in a row, last event {}s ago): {}",
                        s.error_streak,
                        s.last_event.elapsed().as_secs(),
                        s.last_error.as_deref().unwrap_or("")
                    ))
                } else {
                    None
                }
            })
            .collect();
        if bad.is_empty() {
            return Ok(());
        }
        bad.sort();
        Err(bad.join("; "))
    }

    /// The registered watchers, `kind` or `kind/namespace`.
    pub fn watcher_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lock().keys().cloned().collect();
        ids.sort();
        ids
    }
}

/// The running watchers: their tasks and their health.
pub struct Watchers {
    pub handles: Vec<JoinHandle<()>>,
    pub health: Arc<WatchHealth>,
}

impl Watchers {
    pub fn abort(&self) {
        for h in &self.handles {
            h.abort();
        }
    }
}

/// Start one watcher per kind (per namespace when `namespaces` is not empty; the namespace watcher only
/// when watching all). Gateway API kinds are checked by discovery first and skipped when not served.
pub fn spawn_watchers(client: Client, cache: Arc<Cache>, namespaces: &[String]) -> Watchers {
    let health = Arc::new(WatchHealth::default());
    let mut handles = Vec::new();
    let scopes: Vec<Option<String>> =
        if namespaces.is_empty() { vec![None] } else { namespaces.iter().cloned().map(Some).collect() };
    let ctx = Ctx { client: client.clone(), cache: cache.clone(), health: health.clone() };
    for ns in &scopes {
        handles.push(ctx.namespaced::<PodView>(ns.clone()));
        handles.push(ctx.namespaced::<Deployment>(ns.clone()));
        handles.push(ctx.namespaced::<StatefulSet>(ns.clone()));
        handles.push(ctx.namespaced::<ReplicaSet>(ns.clone()));
        handles.push(ctx.namespaced::<ReplicationController>(ns.clone()));
        handles.push(ctx.namespaced::<Service>(ns.clone()));
    }
    if namespaces.is_empty() {
        handles.push(ctx.typed::<Namespace>(Api::all(client), None));
    }
    handles.push(ctx.gateway_api(kinds::GATEWAYS, served::Api::Gateways, scopes.clone(), Gateway));
    handles.push(ctx.gateway_api(kinds::HTTPROUTES, served::Api::HttpRoutes, scopes, HttpRoute));
    handles.push(ctx.scale_request_crd());
    Watchers { handles, health }
}

#[derive(Clone)]
struct Ctx {
    client: Client,
    cache: Arc<Cache>,
    health: Arc<WatchHealth>,
}

fn watcher_id(kind: &str, ns: Option<&str>) -> String {
    match ns {
        Some(ns) => format!("{kind}/{ns}"),
        None => kind.to_string(),
    }
}

impl Ctx {
    fn namespaced<K>(&self, ns: Option<String>) -> JoinHandle<()>
    where
        K: K8sObject + Resource<DynamicType = (), Scope = NamespaceResourceScope>,
        K: Clone + DeserializeOwned + Debug + Send + 'static,
    {
        let api: Api<Guarded<K>> = match &ns {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        self.typed(api, ns)
    }

    fn typed<K>(&self, api: Api<Guarded<K>>, ns: Option<String>) -> JoinHandle<()>
    where
        K: K8sObject + Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
    {
        let id = watcher_id(K::KIND, ns.as_deref());
        self.health.register(K::KIND, ns.as_deref());
        let stream = watcher(api);
        let ctx = self.clone();
        tokio::spawn(async move {
            drive::<K, _, _>(&ctx.cache, &ctx.health, stream, ns, id, |guard: Guarded<K>| match guard.0 {
                Ok(obj) => Some(obj),
                Err(invalid) => {
                    tracing::warn!(
                        kind = K::KIND,
                        namespace = ?invalid.metadata.namespace,
                        name = ?invalid.metadata.name,
                        error = %invalid.error,
                        "skipping an object that does not decode"
                    );
                    None
                }
            })
            .await;
        })
    }

    /// Gateway API kinds: discovery first (retried with backoff on errors other than "not served"); a kind
    /// that is not served is looked up again every [`REDISCOVER`] and watched once it is.
    fn gateway_api<K: K8sObject>(
        &self,
        kind: &'static str,
        api: served::Api,
        scopes: Vec<Option<String>>,
        wrap: fn(DynamicObject) -> K,
    ) -> JoinHandle<()> {
        let ctx = self.clone();
        let ids: Vec<String> = scopes.iter().map(|ns| watcher_id(kind, ns.as_deref())).collect();
        for ns in &scopes {
            self.health.register(kind, ns.as_deref());
        }
        tokio::spawn(async move {
            let mut skipped = false;
            let ar = loop {
                if let Some(ar) = ctx.discover(kind, api).await {
                    break ar;
                }
                if !skipped {
                    // Not served: nothing to watch, and nothing to be unhealthy about.
                    for id in &ids {
                        ctx.health.remove(id);
                    }
                    ctx.cache.skip_kind(kind);
                    skipped = true;
                }
                tokio::time::sleep(REDISCOVER).await;
            };
            if skipped {
                for ns in &scopes {
                    ctx.health.register(kind, ns.as_deref());
                }
            }
            let mut tasks = Vec::new();
            for (ns, id) in scopes.into_iter().zip(ids) {
                let api: Api<DynamicObject> = match &ns {
                    Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, &ar),
                    None => Api::all_with(ctx.client.clone(), &ar),
                };
                let stream = watcher(api);
                let ctx = ctx.clone();
                tasks.push(tokio::spawn(async move {
                    drive::<K, _, _>(&ctx.cache, &ctx.health, stream, ns, id, |o| Some(wrap(o))).await
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        })
    }

    /// Whether `api` is served, recorded in `health.apis`; retried with backoff while discovery fails.
    async fn discover(&self, kind: &'static str, api: served::Api) -> Option<ApiResource> {
        let mut delay = Duration::from_millis(500);
        loop {
            match served::discover(&self.client, api).await {
                Ok(found) => {
                    self.health.apis.set(api, found.is_some());
                    return found;
                }
                Err(err) => {
                    tracing::warn!(kind, %err, "discovery failed; retrying");
                    metrics().watch_errors.with_label_values(&[kind]).inc();
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

impl Ctx {
    /// machinist's own CRD: the ScaleRequest controller watches it (and recovers by itself once it is
    /// installed); this only finds out whether it is served, for `/providers`, the gauge and the log.
    fn scale_request_crd(&self) -> JoinHandle<()> {
        let ctx = self.clone();
        tokio::spawn(async move {
            loop {
                let served = ctx.discover("scalerequests", served::Api::ScaleRequests).await.is_some();
                // While it is there, look now and then: a CRD can be deleted too.
                tokio::time::sleep(if served { REDISCOVER * 6 } else { REDISCOVER }).await;
            }
        })
    }
}

/// Watch events in flight between a stream and the cache, in batches of what the stream had ready (a list
/// page is 500 objects): the next page is requested and decoded while this one is ingested.
const PIPELINE_BATCHES: usize = 4;
const BATCH: usize = 512;

/// Feed the cache from one watcher stream until it ends (it does not, with backoff).
///
/// The stream is polled by a task of its own, so that the API server serves the next list page, and kube
/// decodes it, while this one ingests the last page. Order is kept: one stream, one channel, one consumer.
async fn drive<K, R, S>(
    cache: &Cache,
    health: &WatchHealth,
    stream: S,
    ns: Option<String>,
    id: String,
    wrap: impl Fn(R) -> Option<K>,
) where
    K: K8sObject,
    R: Send + 'static,
    S: Stream<Item = Result<Event<R>, watcher::Error>> + Send + 'static,
{
    let m = metrics();
    let (tx, mut rx) = tokio::sync::mpsc::channel(PIPELINE_BATCHES);
    let _pump = AbortOnDropHandle::new(tokio::spawn(async move {
        let mut batches = std::pin::pin!(stream.ready_chunks(BATCH));
        while let Some(batch) = batches.next().await {
            if tx.send(batch).await.is_err() {
                return;
            }
        }
    }));
    while let Some(batch) = rx.recv().await {
        for item in batch {
            drive_one(cache, health, ns.as_deref(), &id, &wrap, item, m);
        }
    }
    tracing::error!(watcher = %id, "watch stream ended");
    health.ended(&id);
}

fn drive_one<K: K8sObject, R>(
    cache: &Cache,
    health: &WatchHealth,
    ns: Option<&str>,
    id: &str,
    wrap: &impl Fn(R) -> Option<K>,
    item: Result<Event<R>, watcher::Error>,
    m: &crate::metrics::Metrics,
) {
    match item {
        Ok(event) => {
            health.event(id);
            let event = match event {
                Event::Apply(o) => wrap(o).map(Event::Apply),
                Event::Delete(o) => wrap(o).map(Event::Delete),
                Event::InitApply(o) => wrap(o).map(Event::InitApply),
                Event::Init => Some(Event::Init),
                Event::InitDone => Some(Event::InitDone),
            };
            if let Some(event) = event {
                cache.watcher_event_in(ns, event);
            }
        }
        Err(err) => {
            tracing::warn!(watcher = %id, %err, "watch failed; backing off");
            m.watch_errors.with_label_values(&[K::KIND]).inc();
            health.error(id, err.to_string());
        }
    }
}

/// A watcher with kube's default backoff on errors. Its client must come from `client::watch_client`: the
/// server ends each watch after [`WATCH_TIMEOUT`], kube-runtime drops one silent 5 s past that, and the
/// client's own bound cuts a hung LIST.
fn watcher<K>(api: Api<K>) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher::watcher(api, watch_config()).default_backoff()
}

/// The watcher configuration of every watch machinist runs (the ScaleRequest controller's too).
pub fn watch_config() -> watcher::Config {
    watcher::Config::default().timeout(u32::try_from(WATCH_TIMEOUT.as_secs()).unwrap_or(290))
}

#[cfg(test)]
mod tests {
    use futures::stream;
    use serde_json::json;

    use super::*;

    fn guard(v: serde_json::Value) -> Guarded<PodView> {
        serde_json::from_str(&v.to_string()).expect("a guard always decodes an object")
    }

    fn pod(name: &str) -> serde_json::Value {
        json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name, "namespace": "default" },
                "spec": { "containers": [ { "name": "app", "image": "img:1" } ] } })
    }

    fn gone() -> watcher::Error {
        watcher::Error::WatchError(Box::new(kube::core::Status::failure("too old", "Expired")))
    }

    #[tokio::test]
    async fn drive_feeds_the_cache_skips_undecodable_objects_and_tracks_health() {
        let cache = Cache::new_k8s(vec!["default".into()]);
        for kind in kinds::ALL.into_iter().filter(|k| *k != kinds::PODS) {
            cache.skip_kind(kind);
        }
        let id = "pods/default".to_string();
        let ns = Some("default".to_string());

        // Three failures in a row, then the stream ends: unhealthy.
        let health = WatchHealth::default();
        health.register("pods", Some("default"));
        let errors = stream::iter((0..3).map(|_| Err::<Event<Guarded<PodView>>, _>(gone())));
        drive::<PodView, _, _>(&cache, &health, errors, ns.clone(), id.clone(), |g| g.0.ok()).await;
        let reason = health.check(Duration::from_secs(600)).expect_err("unhealthy");
        assert!(reason.contains("pods/default"), "{reason}");

        // One failure (a 410), a relist with an object that does not decode, then a live event.
        let health = WatchHealth::default();
        health.register("pods", Some("default"));
        let broken = json!({ "apiVersion": "v1", "kind": "Pod",
                             "metadata": { "name": "bad", "namespace": "default" },
                             "spec": { "containers": "not a list" } });
        let items = vec![
            Err(gone()),
            Ok(Event::Init),
            Ok(Event::InitApply(guard(pod("good")))),
            Ok(Event::InitApply(guard(broken))),
            Ok(Event::InitDone),
            Ok(Event::Apply(guard(pod("later")))),
        ];
        let endless = stream::iter(items).chain(stream::pending());
        let run = drive::<PodView, _, _>(&cache, &health, endless, ns, id, |g| g.0.ok());
        assert!(tokio::time::timeout(Duration::from_millis(200), run).await.is_err(), "a watch never ends");

        assert!(cache.synced());
        let ids: Vec<String> = cache
            .machines("default", &[])
            .expect("machines")
            .iter()
            .map(|f| serde_json::from_str::<serde_json::Value>(f.get()).expect("json")["id"].to_string())
            .collect();
        assert_eq!(ids, ["\"good\"", "\"later\""], "the undecodable pod is skipped, the rest served");
        assert_eq!(health.check(Duration::from_secs(600)), Ok(()), "an error followed by events is healthy");
    }

    #[test]
    fn health_reports_streaks_and_stopped_watchers() {
        let health = WatchHealth::default();
        health.register("pods", None);
        health.register("services", None);
        assert_eq!(health.check(Duration::from_secs(1)), Ok(()));
        health.error("pods", "boom".into());
        assert_eq!(health.check(Duration::from_secs(600)), Ok(()), "one error is a restart, not a failure");
        assert!(health.check(Duration::ZERO).is_err(), "failing with no event beyond stale_after");
        health.error("pods", "boom".into());
        health.error("pods", "boom".into());
        let reason = health.check(Duration::from_secs(600)).expect_err("streak");
        assert!(reason.contains("pods") && reason.contains("boom"), "{reason}");
        health.event("pods");
        assert_eq!(health.check(Duration::from_secs(600)), Ok(()));
        health.ended("services");
        assert!(health.check(Duration::from_secs(600)).expect_err("ended").contains("services"));
    }
}
