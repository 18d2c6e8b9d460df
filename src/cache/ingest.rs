//! Ingest: what goes into the cache. Kubernetes watcher events (apply, delete, relists buffered between
//! `Init` and `InitDone`) and the ECS poller's full or targeted refreshes, each projected and indexed once,
//! with the object-count gauges kept current.
//!
//! machinist's own writes are pinned against late watch events (`pins`). Synchronous: each change takes the
//! write lock once and never awaits. It answers no reads (`reads`) and decides no readiness beyond marking a
//! unit listed (`readiness`).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use kube::runtime::watcher::Event;

use super::model::{ControllerKind, Machine, Service};
use super::pins::Seen;
use super::project::{self, K8sObject, ObjectKey, Projection, kinds, provider_metadata};
use super::store::{ScopeData, Store};
use super::{Cache, ControllerRecord, Inner, Relist, SyncKey, provider_name};
use crate::metrics::metrics;

impl Cache {
    // ---- Kubernetes watchers

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
                let relist =
                    if inner.ready { Relist::Buffered(Vec::new()) } else { Relist::Direct(HashSet::new()) };
                inner.relists.insert(unit, relist);
            }
            Event::InitApply(obj) => {
                m.watch_events.with_label_values(&[K::KIND, "init_apply"]).inc();
                let key = obj.key();
                let rv = obj.resource_version().unwrap_or(0);
                let projection = obj.project();
                drop(obj);
                if self.accepts(&key) {
                    let mut inner = self.write();
                    match inner.relists.entry(unit).or_insert_with(|| Relist::Buffered(Vec::new())) {
                        Relist::Buffered(items) => items.push((key, rv, projection)),
                        Relist::Direct(keys) => {
                            keys.insert(key.clone());
                            apply_projection(&mut inner, K::KIND, &key, projection, rv);
                        }
                    }
                }
            }
            Event::InitDone => {
                m.watch_events.with_label_values(&[K::KIND, "init_done"]).inc();
                let mut inner = self.write();
                match inner.relists.remove(&unit) {
                    Some(Relist::Direct(listed)) => drop_unlisted(&mut inner, K::KIND, namespace, &listed),
                    Some(Relist::Buffered(buffered)) => swap_kind(&mut inner, K::KIND, namespace, buffered),
                    None => swap_kind(&mut inner, K::KIND, namespace, Vec::new()),
                }
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

    // ---- provider-neutral ingest (the ECS poller)

    /// Replace everything of one scope at once (a full refresh) and mark the scope synced.
    pub fn replace_scope(
        &self,
        scope: &str,
        controllers: Vec<ControllerRecord>,
        machines: Vec<Machine>,
        services: Vec<Service>,
    ) {
        let mut inner = self.write();
        inner.missing.remove(scope);
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

/// End of a direct list: drop what the store has of `kind` (in `namespace`) that the list did not.
fn drop_unlisted(
    inner: &mut Inner,
    kind: &'static str,
    namespace: Option<&str>,
    listed: &HashSet<ObjectKey>,
) {
    let gone: Vec<ObjectKey> =
        keys_of(&inner.store, kind, namespace).into_iter().filter(|k| !listed.contains(k)).collect();
    for key in &gone {
        remove_key(inner, kind, key);
    }
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
