//! The sandbox's object store: every object, the global resourceVersion, the watch history and the type
//! registry, behind one lock.
//!
//! It owns Kubernetes object semantics (stamping, generation, preconditions, status subresource rules,
//! finalizers, garbage collection, CRD registration, consistent pagination). It must not know about HTTP, and
//! closures given to `update` must not call back into the store (they run under its lock). This file holds
//! the types and the locking entry points; `write` the create/replace/delete semantics, `read` list pages
//! and watch starts.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::broadcast;

pub use super::meta::now;
use super::meta::{
    check_type_meta, crd_status, defaults, index_owners, new_uid, normalize, random_suffix, spec_changed,
    validate_cr,
};
use super::registry::check_name;
pub use super::registry::{Gvr, Registry, ResourceType};
use super::select::{FieldSelector, LabelSelector};
pub use super::status::StatusError;

/// Events kept for watches that resume from an older resourceVersion.
pub const HISTORY_CAP: usize = 20_000;
const CHANNEL_CAP: usize = 16_384;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change. `json` is `object` serialized once, shared by every watcher.
#[derive(Clone, Debug)]
pub struct StoreEvent {
    pub event_type: EventType,
    pub gvr: Gvr,
    pub namespace: String,
    pub name: String,
    pub object: Arc<Value>,
    pub resource_version: u64,
    pub json: Bytes,
    /// The object before this change (None for ADDED): watches use it to tell an object that stopped
    /// matching a selector, and `continue` tokens to rebuild a past snapshot.
    pub prev: Option<Arc<Stored>>,
}

/// A stored object and its serialized bytes, so lists and watches are written by concatenation.
#[derive(Debug)]
pub struct Stored {
    pub value: Arc<Value>,
    pub json: Bytes,
}

impl Stored {
    fn new(value: Value) -> Stored {
        let json = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
        Stored { value: Arc::new(value), json }
    }
}

type Key = (String, String);

struct State {
    rv: u64,
    /// A watch or continue token from a resourceVersion below this is too old (410).
    floor: u64,
    reg: Registry,
    objects: HashMap<Gvr, BTreeMap<Key, Arc<Stored>>>,
    history: VecDeque<StoreEvent>,
    /// owner uid → dependents, for garbage collection.
    owners: HashMap<String, HashSet<(Gvr, String, String)>>,
    services: u32,
}

struct Inner {
    state: RwLock<State>,
    tx: broadcast::Sender<StoreEvent>,
}

/// The store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// Options of a write that come from the request.
#[derive(Clone, Debug, Default)]
pub struct WriteOpts {
    /// `dryRun=All`: validate and answer, store nothing.
    pub dry_run: bool,
}

/// `DeleteOptions` the store honours.
#[derive(Clone, Debug, Default)]
pub struct DeleteOpts {
    pub dry_run: bool,
    /// "Orphan" keeps dependents (drops their ownerReference); anything else deletes them.
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
}

/// Which part of an object an update may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Main,
    Status,
}

/// A list request.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

/// One page of a list.
pub struct Page {
    pub items: Vec<Arc<Stored>>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
}

/// What a new watch starts from.
pub struct WatchStart {
    /// Current objects, when the watch asked for initial state.
    pub initial: Vec<Arc<Stored>>,
    /// Retained events after the requested resourceVersion.
    pub backlog: Vec<StoreEvent>,
    pub rx: broadcast::Receiver<StoreEvent>,
    pub resource_version: u64,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    /// An empty store serving the built-in types.
    pub fn new() -> Store {
        let (tx, _) = broadcast::channel(CHANNEL_CAP);
        let state = State {
            rv: 1,
            floor: 0,
            reg: Registry::builtin(),
            objects: HashMap::new(),
            history: VecDeque::new(),
            owners: HashMap::new(),
            services: 0,
        };
        Store { inner: Arc::new(Inner { state: RwLock::new(state), tx }) }
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.inner.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.inner.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the type table (discovery, routing).
    pub fn registry(&self) -> Registry {
        self.read().reg.clone()
    }

    pub fn resource_type(&self, gvr: &Gvr) -> Option<ResourceType> {
        self.read().reg.get(gvr).cloned()
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.read().rv
    }

    /// None when absent. `namespace` is "" for cluster-scoped resources.
    pub fn get(&self, gvr: &Gvr, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.get_stored(gvr, namespace, name).map(|s| s.value.clone())
    }

    pub fn get_stored(&self, gvr: &Gvr, namespace: &str, name: &str) -> Option<Arc<Stored>> {
        let st = self.read();
        st.objects.get(gvr)?.get(&(namespace.to_string(), name.to_string())).cloned()
    }

    /// All objects of a type, in one namespace (Some) or all (None), sorted by (namespace, name).
    pub fn list(&self, gvr: &Gvr, namespace: Option<&str>) -> Vec<Arc<Value>> {
        let st = self.read();
        let Some(table) = st.objects.get(gvr) else { return vec![] };
        match namespace {
            None => table.values().map(|s| s.value.clone()).collect(),
            Some(ns) => table
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, s)| s.value.clone())
                .collect(),
        }
    }

    /// Every change, in resourceVersion order. A lagging receiver gets `RecvError::Lagged` and must relist.
    pub fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.inner.tx.subscribe()
    }

    /// Stamps uid, creationTimestamp, resourceVersion, generation 1, fills apiVersion/kind, handles
    /// generateName. 409 AlreadyExists, 404 when the namespace does not exist, 422 Invalid.
    pub fn create(&self, gvr: &Gvr, namespace: &str, obj: Value) -> Result<Arc<Value>, StatusError> {
        self.create_with(gvr, namespace, obj, &WriteOpts::default())
    }

    pub fn create_with(
        &self,
        gvr: &Gvr,
        namespace: &str,
        obj: Value,
        opts: &WriteOpts,
    ) -> Result<Arc<Value>, StatusError> {
        let mut st = self.write();
        self.create_locked(&mut st, gvr, namespace, obj, opts.dry_run)
    }

    /// Create many objects in one step, under one lock. Stops at the first error (earlier ones stay).
    pub fn create_many(&self, items: Vec<(Gvr, String, Value)>) -> Result<(), StatusError> {
        let mut st = self.write();
        for (gvr, ns, obj) in items {
            self.create_locked(&mut st, &gvr, &ns, obj, false)?;
        }
        Ok(())
    }

    /// Atomic read-modify-write of the whole object; see the module docs for the rules.
    pub fn update(
        &self,
        gvr: &Gvr,
        namespace: &str,
        name: &str,
        f: impl FnOnce(&mut Value) -> Result<(), StatusError>,
    ) -> Result<Arc<Value>, StatusError> {
        self.update_with(gvr, namespace, name, Part::Main, &WriteOpts::default(), f)
    }

    /// The same, but only `status` may change (the /status subresource); generation untouched.
    pub fn update_status(
        &self,
        gvr: &Gvr,
        namespace: &str,
        name: &str,
        f: impl FnOnce(&mut Value) -> Result<(), StatusError>,
    ) -> Result<Arc<Value>, StatusError> {
        self.update_with(gvr, namespace, name, Part::Status, &WriteOpts::default(), f)
    }

    /// `f` also sees "does not exist" as `None` through `upsert`; this one requires the object.
    pub fn update_with(
        &self,
        gvr: &Gvr,
        namespace: &str,
        name: &str,
        part: Part,
        opts: &WriteOpts,
        f: impl FnOnce(&mut Value) -> Result<(), StatusError>,
    ) -> Result<Arc<Value>, StatusError> {
        let mut st = self.write();
        let rt = st.reg.get(gvr).cloned().ok_or_else(StatusError::no_such_type)?;
        let key = (namespace.to_string(), name.to_string());
        let cur = st
            .objects
            .get(gvr)
            .and_then(|t| t.get(&key))
            .cloned()
            .ok_or_else(|| StatusError::not_found(&gvr.qualified(), name))?;
        let mut new = (*cur.value).clone();
        f(&mut new)?;
        self.replace_locked(&mut st, &rt, &cur, new, part, opts.dry_run)
    }

    /// Create when absent, else update: server-side apply's entry point. `f` gets `None` when absent and
    /// must return the object to create or the changed object.
    pub fn upsert_with(
        &self,
        gvr: &Gvr,
        namespace: &str,
        name: &str,
        opts: &WriteOpts,
        f: impl FnOnce(Option<&Value>) -> Result<Value, StatusError>,
    ) -> Result<(Arc<Value>, bool), StatusError> {
        let mut st = self.write();
        let rt = st.reg.get(gvr).cloned().ok_or_else(StatusError::no_such_type)?;
        let key = (namespace.to_string(), name.to_string());
        match st.objects.get(gvr).and_then(|t| t.get(&key)).cloned() {
            Some(cur) => {
                let new = f(Some(&cur.value))?;
                Ok((self.replace_locked(&mut st, &rt, &cur, new, Part::Main, opts.dry_run)?, false))
            }
            None => {
                let new = f(None)?;
                Ok((self.create_locked(&mut st, gvr, namespace, new, opts.dry_run)?, true))
            }
        }
    }

    /// Deletes (background propagation), or sets deletionTimestamp when finalizers remain. 404 when absent.
    pub fn delete(&self, gvr: &Gvr, namespace: &str, name: &str) -> Result<Arc<Value>, StatusError> {
        self.delete_with(gvr, namespace, name, &DeleteOpts::default())
    }

    pub fn delete_with(
        &self,
        gvr: &Gvr,
        namespace: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<Arc<Value>, StatusError> {
        let mut st = self.write();
        self.delete_locked(&mut st, gvr, namespace, name, opts)
    }

    /// Forgets all history: the next watch or continue token from any earlier resourceVersion gets 410.
    pub fn compact(&self) {
        let mut st = self.write();
        st.rv += 1;
        st.floor = st.rv;
        st.history.clear();
    }

    /// Every object with its type, for `--state`.
    pub fn export(&self) -> Vec<(Gvr, Value)> {
        let st = self.read();
        let mut out = Vec::new();
        for (gvr, table) in &st.objects {
            for s in table.values() {
                out.push((gvr.clone(), (*s.value).clone()));
            }
        }
        // CRDs and namespaces first, so a load can recreate in order.
        out.sort_by_key(|(g, _)| (*g != Gvr::crds(), *g != Gvr::namespaces()));
        out
    }

    /// Puts back exported objects as they were (uid, timestamps kept); the resourceVersion continues above
    /// the largest one loaded.
    pub fn import(&self, items: Vec<(Gvr, Value)>) -> Result<(), StatusError> {
        let mut st = self.write();
        for (gvr, obj) in items {
            if gvr == Gvr::crds()
                && let Err(causes) = st.reg.register_crd(&obj)
            {
                return Err(StatusError::invalid("CustomResourceDefinition", "", causes));
            }
            let rv: u64 = obj
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let ns =
                obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default().to_string();
            let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
            st.rv = st.rv.max(rv);
            let stored = Arc::new(Stored::new(obj));
            index_owners(&mut st.owners, &gvr, &ns, &name, None, Some(&stored.value));
            st.objects.entry(gvr).or_default().insert((ns, name), stored);
        }
        st.floor = st.rv;
        Ok(())
    }
}

mod read;
mod write;

#[cfg(test)]
mod tests;
