//! The in-memory cache every REST read is answered from: compact models, projection, indexes by scope,
//! label pair and controller, owner resolution, readiness.
//!
//! It does no I/O and knows no HTTP. Its apply/delete/reset are synchronous and never hold a lock across
//! an `.await`. Ingest does the work (projection, owner resolution, serialization); a read takes the read
//! lock, copies `Arc` fragments out of an index, and splices bytes after releasing it.
//!
//! Choices where API.md is silent:
//! - A ReplicaSet controlled by a Deployment is not a top-level controller: it is not listed and is not
//!   resolvable, not even with `kind=ReplicaSet` (scaling it would be undone by its Deployment); its pods
//!   belong to the Deployment. A ReplicaSet with no owner, or an owner of another kind, is top-level.
//! - A pod controlled by a kind machinist does not serve (DaemonSet, Job, ...) shows that owner as
//!   `controller`; no served controller lists it.
//! - Lists are ordered by name; controllers by kind (resolution order), then name.

pub mod model;
mod pins;
mod project;
mod quantity;
mod store;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use kube::runtime::watcher::Event;

pub use self::model::{ControllerKind, Labels, Machine, Service};
use self::pins::{Pins, Seen};
use self::project::provider_metadata;
pub use self::project::{Gateway, HttpRoute, K8sObject, ObjectKey, Projection, format_time, kinds};
pub use self::quantity::Quantity;
use self::store::{ControllerRec, ScopeData, Store, select};
use crate::metrics::metrics;
use crate::provider::{self, Fragment, LabelFilter, ProviderError, ReadModel};

/// A controller without its machines (machines attach by `Machine.controller`).
#[derive(Clone, Debug, PartialEq)]
pub struct ControllerRecord {
    pub kind: ControllerKind,
    pub name: String,
    pub replicas: i32,
    pub ready_replicas: i32,
    pub labels: Labels,
    pub provider_metadata: BTreeMap<String, String>,
}

/// What the write path needs to know about a controller it addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedController {
    pub kind: ControllerKind,
    pub name: String,
    pub replicas: i32,
    pub ready_replicas: i32,
}

/// Seconds a `cache-not-ready` answer asks the client to wait.
const NOT_READY_RETRY_SECS: u64 = 2;

/// One readiness unit: a watcher kind in a namespace (None: all namespaces), or an ECS cluster.
type SyncKey = (&'static str, Option<String>);

struct Inner {
    store: Store,
    expected: HashSet<SyncKey>,
    synced: HashSet<SyncKey>,
    /// Latched: once every expected unit listed once, reads are served (relists serve the old snapshot).
    ready: bool,
    /// Relists in progress: objects buffered between `Init` and `InitDone`.
    relists: HashMap<SyncKey, Vec<(ObjectKey, u64, Projection)>>,
    /// The namespace watcher is not running (namespaces configured, or skipped): scopes are not checked
    /// against existing namespaces.
    namespaces_known: bool,
    /// machinist's own writes, protected from late watch events (`pins`).
    pins: Pins,
}

/// One provider's cache, shared as `Arc<Cache>`.
pub struct Cache {
    provider: &'static str,
    scope_kind: &'static str,
    /// Configured scopes (k8s namespaces; ecs clusters); empty = all namespaces (k8s).
    configured: BTreeSet<String>,
    inner: RwLock<Inner>,
}

impl Cache {
    /// k8s: `namespaces` empty = all namespaces are watched, the namespace watcher included.
    pub fn new_k8s(namespaces: Vec<String>) -> Cache {
        let configured: BTreeSet<String> = namespaces.into_iter().collect();
        let mut expected = HashSet::new();
        if configured.is_empty() {
            expected.extend(kinds::ALL.iter().map(|k| (*k, None)));
        } else {
            for kind in kinds::ALL.iter().filter(|k| **k != kinds::NAMESPACES) {
                expected.extend(configured.iter().map(|ns| (*kind, Some(ns.clone()))));
            }
        }
        let namespaces_known = configured.is_empty();
        Cache::with(provider_name::K8S, "namespace", configured, expected, namespaces_known)
    }

    /// ecs: one scope per polled cluster; ready once every cluster was refreshed once.
    pub fn new_ecs(clusters: Vec<String>) -> Cache {
        let configured: BTreeSet<String> = clusters.into_iter().collect();
        let expected = configured.iter().map(|c| (provider_name::ECS, Some(c.clone()))).collect();
        Cache::with(provider_name::ECS, "cluster", configured, expected, false)
    }

    fn with(
        provider: &'static str,
        scope_kind: &'static str,
        configured: BTreeSet<String>,
        expected: HashSet<SyncKey>,
        namespaces_known: bool,
    ) -> Cache {
        let ready = expected.is_empty();
        Cache {
            provider,
            scope_kind,
            configured,
            inner: RwLock::new(Inner {
                store: Store::default(),
                expected,
                synced: HashSet::new(),
                ready,
                relists: HashMap::new(),
                namespaces_known,
                pins: Pins::default(),
            }),
        }
    }

    /// A poisoned lock only means a panic elsewhere mid-update; the data is still the best we have.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// True once every expected watcher (or cluster) has listed once.
    pub fn synced(&self) -> bool {
        self.read().ready
    }

    /// The expected units that have not listed yet (for health reasons), e.g. `pods` or `pods/default`.
    pub fn unsynced(&self) -> Vec<String> {
        let inner = self.read();
        let mut out: Vec<String> = inner
            .expected
            .difference(&inner.synced)
            .map(|(kind, ns)| match ns {
                Some(ns) => format!("{kind}/{ns}"),
                None => kind.to_string(),
            })
            .collect();
        out.sort();
        out
    }

    // ---- k8s ingest

    /// The write path's read-your-writes: project and upsert an object a write returned. A copy older (by
    /// resourceVersion) than the cached one is ignored, so a write's response cannot undo a newer event; an
    /// applied one is pinned against late watch events (`pins`).
    pub fn apply<K: K8sObject>(&self, obj: &K) {
        self.apply_checked(obj, true);
    }

    /// `write`: the object comes from a write's response (else from the watch).
    fn apply_checked<K: K8sObject>(&self, obj: &K, write: bool) {
        let key = obj.key();
        let rv = obj.resource_version();
        let projection = obj.project();
        let mut inner = self.write();
        if !self.accepts(&key) {
            return;
        }
        if write
            && let (Some(new), Some(cached)) =
                (rv, inner.store.cached_rv(K::KIND, key.namespace.as_deref().unwrap_or_default(), &key.name))
            && new < cached
        {
            tracing::debug!(kind = K::KIND, name = %key.name, new, cached, "ignoring an older copy");
            return;
        }
        if !write && !inner.pins.admit(K::KIND, &key, rv, Seen::Apply) {
            tracing::debug!(kind = K::KIND, name = %key.name, ?rv, "ignoring a watch event older than our write");
            return;
        }
        apply_projection(&mut inner, K::KIND, &key, projection, rv.unwrap_or(0));
        if write {
            inner.pins.wrote(K::KIND, &key, rv);
        }
        self.update_counts(&inner, K::KIND);
    }

    /// The write path's read-your-writes of a deletion: `obj` is what the delete answered (its
    /// resourceVersion, when it has one, pins the deletion against late watch events that would resurrect it).
    pub fn delete<K: K8sObject>(&self, obj: &K) {
        let key = obj.key();
        let mut inner = self.write();
        let cached = inner.store.cached_rv(K::KIND, key.namespace.as_deref().unwrap_or_default(), &key.name);
        remove_key(&mut inner, K::KIND, &key);
        inner.pins.deleted(K::KIND, &key, obj.resource_version().max(cached));
        self.update_counts(&inner, K::KIND);
    }

    fn delete_seen<K: K8sObject>(&self, obj: &K) {
        let key = obj.key();
        let mut inner = self.write();
        if !inner.pins.admit(K::KIND, &key, obj.resource_version(), Seen::Delete) {
            tracing::debug!(kind = K::KIND, name = %key.name, "ignoring a watch delete older than our write");
            return;
        }
        remove_key(&mut inner, K::KIND, &key);
        self.update_counts(&inner, K::KIND);
    }

    /// Feed a kube-runtime watcher event of a watcher over all (configured) namespaces.
    pub fn watcher_event<K: K8sObject>(&self, event: Event<K>) {
        self.watcher_event_in(None, event);
    }

    /// Feed an event of a watcher over one namespace (`Some`) or all namespaces (`None`): its relist
    /// replaces only the objects in its namespace, and its `InitDone` marks only that unit synced.
    pub fn watcher_event_in<K: K8sObject>(&self, namespace: Option<&str>, event: Event<K>) {
        let m = metrics();
        let unit: SyncKey = (K::KIND, namespace.map(str::to_string));
        match event {
            Event::Apply(obj) => {
                m.watch_events.with_label_values(&[K::KIND, "apply"]).inc();
                // The watch is the order of truth, except against machinist's own newer writes (`pins`).
                self.apply_checked(&obj, false);
            }
            Event::Delete(obj) => {
                m.watch_events.with_label_values(&[K::KIND, "delete"]).inc();
                self.delete_seen(&obj);
            }
            Event::Init => {
                let mut inner = self.write();
                if inner.synced.contains(&unit) || self.covers_synced(&inner, &unit) {
                    m.watch_relists.with_label_values(&[K::KIND]).inc();
                }
                inner.relists.insert(unit, Vec::new());
            }
            Event::InitApply(obj) => {
                m.watch_events.with_label_values(&[K::KIND, "init_apply"]).inc();
                let key = obj.key();
                let rv = obj.resource_version().unwrap_or(0);
                let projection = obj.project();
                drop(obj);
                if self.accepts(&key) {
                    self.write().relists.entry(unit).or_default().push((key, rv, projection));
                }
            }
            Event::InitDone => {
                m.watch_events.with_label_values(&[K::KIND, "init_done"]).inc();
                let mut inner = self.write();
                let buffered = inner.relists.remove(&unit).unwrap_or_default();
                swap_kind(&mut inner, K::KIND, namespace, buffered);
                self.mark_synced(&mut inner, unit);
                inner.store.interner.gc();
                self.update_counts(&inner, K::KIND);
            }
        }
    }

    /// A kind whose API is not served (Gateway API CRDs missing): counts as synced, empty.
    pub fn skip_kind(&self, kind: &'static str) {
        let mut inner = self.write();
        if kind == kinds::NAMESPACES {
            inner.namespaces_known = false;
        }
        let units: Vec<SyncKey> = inner.expected.iter().filter(|(k, _)| *k == kind).cloned().collect();
        for unit in units {
            self.mark_synced(&mut inner, unit);
        }
    }

    /// An all-namespaces relist of a kind also refreshes each per-namespace unit of that kind.
    fn covers_synced(&self, inner: &Inner, unit: &SyncKey) -> bool {
        unit.1.is_none() && inner.synced.iter().any(|(k, _)| *k == unit.0)
    }

    fn mark_synced(&self, inner: &mut Inner, unit: SyncKey) {
        if unit.1.is_none() {
            // A watcher over all namespaces stands for every per-namespace unit of its kind.
            let covered: Vec<SyncKey> =
                inner.expected.iter().filter(|(k, _)| *k == unit.0).cloned().collect();
            inner.synced.extend(covered);
        }
        inner.synced.insert(unit);
        if !inner.ready && inner.expected.iter().all(|u| inner.synced.contains(u)) {
            inner.ready = true;
            tracing::info!(provider = self.provider, "cache synced: serving reads");
        }
    }

    /// Objects of namespaces not configured are ignored (a watcher over all namespaces may see them).
    fn accepts(&self, key: &ObjectKey) -> bool {
        self.configured.is_empty()
            || self.provider != provider_name::K8S
            || key.namespace.as_ref().is_none_or(|ns| self.configured.contains(ns))
    }

    fn update_counts(&self, inner: &Inner, kind: &'static str) {
        let store = &inner.store;
        let count = |f: &dyn Fn(&ScopeData) -> usize| store.scopes.values().map(f).sum::<usize>();
        let n = match kind {
            kinds::PODS => count(&|s| s.machines.len()),
            kinds::DEPLOYMENTS => {
                count(&|s| s.controllers.get(&ControllerKind::Deployment).map_or(0, |m| m.len()))
            }
            kinds::STATEFULSETS => {
                count(&|s| s.controllers.get(&ControllerKind::StatefulSet).map_or(0, |m| m.len()))
            }
            kinds::REPLICASETS => {
                count(&|s| s.controllers.get(&ControllerKind::ReplicaSet).map_or(0, |m| m.len()))
            }
            kinds::REPLICATIONCONTROLLERS => {
                count(&|s| s.controllers.get(&ControllerKind::ReplicationController).map_or(0, |m| m.len()))
            }
            kinds::SERVICES => count(&|s| s.services.len()),
            kinds::GATEWAYS => count(&|s| s.gateways.len()),
            kinds::HTTPROUTES => count(&|s| s.httproutes.len()),
            kinds::NAMESPACES => store.namespaces.len(),
            _ => return,
        };
        metrics().cache_objects.with_label_values(&[self.provider, kind]).set(n as i64);
    }

    fn update_ecs_counts(&self, inner: &Inner) {
        let store = &inner.store;
        let machines: usize = store.scopes.values().map(|s| s.machines.len()).sum();
        let controllers: usize =
            store.scopes.values().map(|s| s.controllers.values().map(BTreeMap::len).sum::<usize>()).sum();
        let services: usize = store.scopes.values().map(|s| s.services.len()).sum();
        let gauge = &metrics().cache_objects;
        gauge.with_label_values(&[self.provider, "tasks"]).set(machines as i64);
        gauge.with_label_values(&[self.provider, "services"]).set(controllers as i64);
        gauge.with_label_values(&[self.provider, "service_ports"]).set(services as i64);
    }

    // ---- provider-neutral ingest (ECS poller)

    /// Replace everything of one scope at once (a full refresh) and mark the scope synced.
    pub fn replace_scope(
        &self,
        scope: &str,
        controllers: Vec<ControllerRecord>,
        machines: Vec<Machine>,
        services: Vec<Service>,
    ) {
        let mut inner = self.write();
        let store = &mut inner.store;
        store.scopes.remove(scope);
        for c in controllers {
            let (model, meta) = record_to_model(c);
            store.upsert_controller(scope, model, &meta, 0);
        }
        for m in machines {
            store.upsert_resolved_machine(scope, m);
        }
        for s in &services {
            store.upsert_service(scope, s, 0);
        }
        self.mark_synced(&mut inner, (self.provider, Some(scope.to_string())));
        inner.store.interner.gc();
        self.update_ecs_counts(&inner);
    }

    /// Replace one controller and its machines (targeted refresh after a write).
    pub fn upsert_controller(&self, scope: &str, controller: ControllerRecord, machines: Vec<Machine>) {
        let mut inner = self.write();
        let store = &mut inner.store;
        let (kind, name) = (controller.kind, controller.name.clone());
        let keep: HashSet<&str> = machines.iter().map(|m| m.id.as_str()).collect();
        let stale: Vec<String> = store
            .scope(scope)
            .and_then(|s| s.by_top.get(kind.as_str(), &name))
            .map(|names| names.iter().filter(|n| !keep.contains(&***n)).map(|n| n.to_string()).collect())
            .unwrap_or_default();
        for id in stale {
            store.remove_machine(scope, &id);
        }
        let (model, meta) = record_to_model(controller);
        store.upsert_controller(scope, model, &meta, 0);
        for m in machines {
            store.upsert_resolved_machine(scope, m);
        }
        self.update_ecs_counts(&inner);
    }

    // ---- reads

    /// Scope admission: configured scopes first, then readiness, then (k8s, all namespaces) existence.
    fn admit(&self, inner: &Inner, scope: &str) -> provider::Result<()> {
        let not_watched =
            || ProviderError::ScopeNotWatched { scope_kind: self.scope_kind, scope: scope.to_string() };
        if !self.configured.is_empty() && !self.configured.contains(scope) {
            return Err(not_watched());
        }
        if !inner.ready {
            return Err(ProviderError::NotReady {
                provider: self.provider,
                retry_after_secs: NOT_READY_RETRY_SECS,
            });
        }
        if self.configured.is_empty() && inner.namespaces_known && !inner.store.namespaces.contains(scope) {
            return Err(not_watched());
        }
        Ok(())
    }

    fn resolution_order(&self, kind: Option<ControllerKind>) -> Vec<ControllerKind> {
        if self.provider == provider_name::ECS {
            // ECS has one controller kind; the k8s hints clients send everywhere are ignored.
            return vec![ControllerKind::Service];
        }
        match kind {
            Some(k) => vec![k],
            None => ControllerKind::K8S_RESOLUTION_ORDER.to_vec(),
        }
    }

    fn find<'a>(
        &self,
        data: Option<&'a ScopeData>,
        scope: &str,
        name: &str,
        kind: Option<ControllerKind>,
    ) -> provider::Result<&'a ControllerRec> {
        let order = self.resolution_order(kind);
        for k in &order {
            if let Some(rec) = data.and_then(|d| d.controller(*k, name)) {
                if rec.top_level() {
                    return Ok(rec);
                }
                if kind.is_some() {
                    let owner = rec.owner.as_ref().map(|o| o.name.to_string()).unwrap_or_default();
                    return Err(ProviderError::NotFound(format!(
                        "replicaset {name} in {} {scope} is managed by deployment {owner}; address the deployment",
                        self.scope_kind
                    )));
                }
            }
        }
        let what = match kind {
            Some(k) if self.provider == provider_name::K8S => k.as_str().to_ascii_lowercase(),
            _ => "controller".to_string(),
        };
        Err(ProviderError::NotFound(format!("{what} {name} not found in {} {scope}", self.scope_kind)))
    }

    /// A workload's cached `spec.replicas` and the resourceVersion it was projected from (None when not
    /// cached, or its resourceVersion is unknown): a write may send that resourceVersion as its precondition
    /// instead of reading the object first; the API server refuses it (409) if the object changed since.
    pub fn cached_replicas(&self, scope: &str, name: &str, kind: ControllerKind) -> Option<(i32, u64)> {
        let inner = self.read();
        let rec = inner.store.scope(scope)?.controller(kind, name)?;
        (rec.rv > 0).then_some((rec.replicas, rec.rv))
    }

    /// Kind resolution from the cache: Deployment → StatefulSet → ReplicaSet → ReplicationController (ECS:
    /// Service), first match; `kind` pins it.
    pub fn resolve_controller(
        &self,
        scope: &str,
        name: &str,
        kind: Option<ControllerKind>,
    ) -> provider::Result<ResolvedController> {
        let inner = self.read();
        self.admit(&inner, scope)?;
        let rec = self.find(inner.store.scope(scope), scope, name, kind)?;
        Ok(ResolvedController {
            kind: rec.kind,
            name: rec.name.to_string(),
            replicas: rec.replicas,
            ready_replicas: rec.ready_replicas,
        })
    }
}

pub mod provider_name {
    pub const K8S: &str = "k8s";
    pub const ECS: &str = "ecs";
}

fn record_to_model(c: ControllerRecord) -> (project::ControllerModel, BTreeMap<String, String>) {
    let model = project::ControllerModel {
        kind: c.kind,
        name: c.name,
        replicas: c.replicas,
        ready_replicas: c.ready_replicas,
        labels: c.labels,
        owner: None,
    };
    (model, c.provider_metadata)
}

fn controller_kind_of(kind: &str) -> Option<ControllerKind> {
    match kind {
        kinds::DEPLOYMENTS => Some(ControllerKind::Deployment),
        kinds::STATEFULSETS => Some(ControllerKind::StatefulSet),
        kinds::REPLICASETS => Some(ControllerKind::ReplicaSet),
        kinds::REPLICATIONCONTROLLERS => Some(ControllerKind::ReplicationController),
        _ => None,
    }
}

fn apply_projection(inner: &mut Inner, kind: &'static str, key: &ObjectKey, projection: Projection, rv: u64) {
    let store = &mut inner.store;
    let scope = key.namespace.as_deref().unwrap_or_default();
    match projection {
        Projection::Pod(pod) => store.upsert_pod(scope, *pod, rv),
        Projection::Controller(c) => {
            let meta = provider_metadata(c.kind);
            store.upsert_controller(scope, c, &meta, rv);
        }
        Projection::Service(s) => store.upsert_service(scope, &s, rv),
        Projection::Namespace => {
            let name = store.interner.get(&key.name);
            store.namespaces.insert(name);
        }
        Projection::Object(fragment) => {
            store.upsert_object(scope, kind == kinds::GATEWAYS, &key.name, fragment)
        }
    }
}

fn remove_key(inner: &mut Inner, kind: &'static str, key: &ObjectKey) {
    let store = &mut inner.store;
    let scope = key.namespace.as_deref().unwrap_or_default();
    match kind {
        kinds::PODS => {
            store.remove_machine(scope, &key.name);
        }
        kinds::SERVICES => {
            store.remove_service(scope, &key.name);
        }
        kinds::NAMESPACES => {
            store.namespaces.remove(key.name.as_str());
        }
        kinds::GATEWAYS | kinds::HTTPROUTES => {
            store.remove_object(scope, kind == kinds::GATEWAYS, &key.name);
        }
        other => {
            if let Some(k) = controller_kind_of(other) {
                store.remove_controller(scope, k, &key.name);
            }
        }
    }
}

/// The keys of `kind` the store holds, in `namespace` or everywhere.
fn keys_of(store: &Store, kind: &'static str, namespace: Option<&str>) -> Vec<ObjectKey> {
    if kind == kinds::NAMESPACES {
        return store.namespaces.iter().map(|n| ObjectKey { namespace: None, name: n.to_string() }).collect();
    }
    let mut out = Vec::new();
    for (scope, data) in &store.scopes {
        if namespace.is_some_and(|ns| ns != &**scope) {
            continue;
        }
        let names: Box<dyn Iterator<Item = &Arc<str>>> = match kind {
            kinds::PODS => Box::new(data.machines.keys()),
            kinds::SERVICES => Box::new(data.services.keys()),
            kinds::GATEWAYS => Box::new(data.gateways.keys()),
            kinds::HTTPROUTES => Box::new(data.httproutes.keys()),
            other => match controller_kind_of(other).and_then(|k| data.controllers.get(&k)) {
                Some(m) => Box::new(m.keys()),
                None => Box::new(std::iter::empty()),
            },
        };
        out.extend(names.map(|n| ObjectKey { namespace: Some(scope.to_string()), name: n.to_string() }));
    }
    out
}

/// End of a relist: drop what disappeared, apply what was listed, under one write lock.
fn swap_kind(
    inner: &mut Inner,
    kind: &'static str,
    namespace: Option<&str>,
    buffered: Vec<(ObjectKey, u64, Projection)>,
) {
    inner.pins.prune();
    let listed: HashSet<&ObjectKey> = buffered.iter().map(|(k, _, _)| k).collect();
    // The list may predate machinist's own recent writes: those stay until the watch that follows delivers
    // them (`pins`).
    let gone: Vec<ObjectKey> = keys_of(&inner.store, kind, namespace)
        .into_iter()
        .filter(|k| !listed.contains(k) && !inner.pins.keeps_unlisted(kind, k))
        .collect();
    drop(listed);
    for key in &gone {
        remove_key(inner, kind, key);
    }
    for (key, rv, projection) in buffered {
        if inner.pins.admit_listed(kind, &key, rv) {
            apply_projection(inner, kind, &key, projection, rv);
        }
    }
}

impl ReadModel for Cache {
    fn admit_write(&self, scope: &str) -> provider::Result<()> {
        if !self.configured.is_empty() && !self.configured.contains(scope) {
            return Err(ProviderError::ScopeNotWatched {
                scope_kind: self.scope_kind,
                scope: scope.to_string(),
            });
        }
        Ok(())
    }

    fn machine(&self, scope: &str, id: &str) -> provider::Result<Fragment> {
        let inner = self.read();
        self.admit(&inner, scope)?;
        inner.store.scope(scope).and_then(|s| s.machines.get(id)).map(|m| m.fragment.clone()).ok_or_else(
            || ProviderError::NotFound(format!("machine {id} not found in {} {scope}", self.scope_kind)),
        )
    }

    fn machines(&self, scope: &str, labels: &LabelFilter) -> provider::Result<Vec<Fragment>> {
        let inner = self.read();
        self.admit(&inner, scope)?;
        let Some(data) = inner.store.scope(scope) else { return Ok(Vec::new()) };
        Ok(select(&data.machines, &data.machine_labels, labels, |m| &m.labels)
            .into_iter()
            .map(|m| m.fragment.clone())
            .collect())
    }

    fn controllers(&self, scope: &str) -> provider::Result<Vec<Fragment>> {
        let parts: Vec<(Arc<store::ControllerHead>, Vec<Fragment>)> = {
            let inner = self.read();
            self.admit(&inner, scope)?;
            let Some(data) = inner.store.scope(scope) else { return Ok(Vec::new()) };
            data.controllers
                .values()
                .flat_map(BTreeMap::values)
                .filter(|c| c.top_level())
                .map(|c| (c.head.clone(), data.machines_of(c.kind, &c.name)))
                .collect()
        };
        Ok(parts.iter().map(|(head, machines)| ControllerRec::render(head, machines)).collect())
    }

    fn controller_of_machine(&self, scope: &str, machine_id: &str) -> provider::Result<Vec<Fragment>> {
        let part = {
            let inner = self.read();
            self.admit(&inner, scope)?;
            let data = inner.store.scope(scope);
            let top = data.and_then(|d| d.machines.get(machine_id)).and_then(|m| m.top.clone());
            top.and_then(|t| {
                let kind = ControllerKind::parse(&t.kind)?;
                let rec = data?.controller(kind, &t.name).filter(|c| c.top_level())?;
                Some((rec.head.clone(), data?.machines_of(kind, &t.name)))
            })
        };
        Ok(part.map(|(head, machines)| ControllerRec::render(&head, &machines)).into_iter().collect())
    }

    fn controller(
        &self,
        scope: &str,
        name: &str,
        kind: Option<ControllerKind>,
    ) -> provider::Result<Fragment> {
        let (head, machines) = {
            let inner = self.read();
            self.admit(&inner, scope)?;
            let data = inner.store.scope(scope);
            let rec = self.find(data, scope, name, kind)?;
            (rec.head.clone(), data.map(|d| d.machines_of(rec.kind, name)).unwrap_or_default())
        };
        Ok(ControllerRec::render(&head, &machines))
    }

    fn services(&self, scope: &str, labels: &LabelFilter) -> provider::Result<Vec<Fragment>> {
        let inner = self.read();
        self.admit(&inner, scope)?;
        let Some(data) = inner.store.scope(scope) else { return Ok(Vec::new()) };
        Ok(select(&data.services, &data.service_labels, labels, |s| &s.labels)
            .into_iter()
            .map(|s| s.fragment.clone())
            .collect())
    }

    fn gateways(&self, scope: &str) -> provider::Result<Vec<Fragment>> {
        let inner = self.read();
        self.admit(&inner, scope)?;
        Ok(inner.store.scope(scope).map(|s| s.gateways.values().cloned().collect()).unwrap_or_default())
    }

    fn httproute(&self, scope: &str, name: &str) -> provider::Result<Fragment> {
        let inner = self.read();
        self.admit(&inner, scope)?;
        inner.store.scope(scope).and_then(|s| s.httproutes.get(name)).cloned().ok_or_else(|| {
            ProviderError::NotFound(format!("httproute {name} not found in {} {scope}", self.scope_kind))
        })
    }
}
