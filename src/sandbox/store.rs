//! The sandbox's object store: every object, the global resourceVersion, the watch history and the type
//! registry, behind one lock.
//!
//! It owns Kubernetes object semantics (stamping, generation, preconditions, status subresource rules,
//! finalizers, garbage collection, CRD registration, consistent pagination). It must not know about HTTP, and
//! closures given to `update` must not call back into the store (they run under its lock).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::broadcast;

pub use super::meta::now;
use super::meta::{
    check_type_meta, crd_status, defaults, index_owners, new_uid, random_suffix, spec_changed, validate_cr,
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

    fn create_locked(
        &self,
        st: &mut State,
        gvr: &Gvr,
        namespace: &str,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Arc<Value>, StatusError> {
        let rt = st.reg.get(gvr).cloned().ok_or_else(StatusError::no_such_type)?;
        let Some(o) = obj.as_object_mut() else {
            return Err(StatusError::bad_request("the body of the request was not a JSON object"));
        };
        check_type_meta(&rt, o)?;
        o.insert("apiVersion".into(), json!(gvr.api_version()));
        o.insert("kind".into(), json!(rt.kind));
        let meta = o.entry("metadata").or_insert_with(|| json!({}));
        let Some(meta) = meta.as_object_mut() else {
            return Err(StatusError::bad_request("metadata must be an object"));
        };
        let ns = if rt.namespaced {
            let body_ns = meta.get("namespace").and_then(Value::as_str).unwrap_or_default();
            if namespace.is_empty() {
                return Err(StatusError::bad_request("a namespace is required for a namespaced resource"));
            }
            if !body_ns.is_empty() && body_ns != namespace {
                return Err(StatusError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            meta.insert("namespace".into(), json!(namespace));
            namespace.to_string()
        } else {
            meta.remove("namespace");
            String::new()
        };
        let mut name = meta.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        if name.is_empty() {
            let prefix = meta.get("generateName").and_then(Value::as_str).unwrap_or_default();
            if prefix.is_empty() {
                return Err(StatusError::invalid(
                    &rt.kind,
                    "",
                    vec![("metadata.name".into(), "Required value: name or generateName is required".into())],
                ));
            }
            name = format!("{prefix}{}", random_suffix());
            meta.insert("name".into(), json!(name));
        }
        if let Some(msg) = check_name(rt.name_rule, &name) {
            return Err(StatusError::invalid(&rt.kind, &name, vec![("metadata.name".into(), msg)]));
        }
        if rt.namespaced {
            let ns_exists = st
                .objects
                .get(&Gvr::namespaces())
                .is_some_and(|t| t.contains_key(&(String::new(), ns.clone())));
            if !ns_exists {
                return Err(StatusError::not_found("namespaces", &ns));
            }
        }
        let key = (ns.clone(), name.clone());
        if st.objects.get(gvr).is_some_and(|t| t.contains_key(&key)) {
            return Err(StatusError::already_exists(&gvr.qualified(), &name));
        }
        meta.insert("uid".into(), json!(new_uid()));
        meta.insert("creationTimestamp".into(), json!(now()));
        meta.insert("generation".into(), json!(1));
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        meta.remove("resourceVersion");
        if rt.crd.is_some() && rt.status {
            o.remove("status");
        }
        defaults(&mut st.services, &rt, o);
        if let Some(s) = &rt.schema {
            validate_cr(&rt, &name, s, &mut obj)?;
        }
        if *gvr == Gvr::crds() {
            let types = super::registry::crd_types(&obj)
                .map_err(|c| StatusError::invalid("CustomResourceDefinition", &name, c))?;
            obj["status"] = crd_status(&obj, &types);
            if !dry_run {
                let _ = st.reg.register_crd(&obj);
            }
        }
        if dry_run {
            return Ok(Arc::new(obj));
        }
        Ok(self.commit(st, gvr, &ns, &name, Some(obj), EventType::Added))
    }

    fn replace_locked(
        &self,
        st: &mut State,
        rt: &ResourceType,
        cur: &Arc<Stored>,
        mut new: Value,
        part: Part,
        dry_run: bool,
    ) -> Result<Arc<Value>, StatusError> {
        let gvr = &rt.gvr;
        let old = &*cur.value;
        let meta_s = |v: &Value, k: &str| {
            v.pointer(&format!("/metadata/{k}")).and_then(Value::as_str).map(str::to_string)
        };
        let ns = meta_s(old, "namespace").unwrap_or_default();
        let name = meta_s(old, "name").unwrap_or_default();
        let cur_rv = meta_s(old, "resourceVersion").unwrap_or_default();
        if !new.is_object() {
            return Err(StatusError::bad_request("the body of the request was not a JSON object"));
        }
        if let Some(rv) = meta_s(&new, "resourceVersion").filter(|r| !r.is_empty())
            && rv != cur_rv
        {
            return Err(StatusError::conflict(
                &gvr.qualified(),
                &name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        if let Some(o) = new.as_object_mut() {
            check_type_meta(rt, o)?;
        }
        if part == Part::Status {
            // Only status moves: start from the stored object.
            let status = new.get("status").cloned();
            new = old.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    if let Some(o) = new.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
        } else if rt.status {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(o) = new.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
        }
        {
            let Some(o) = new.as_object_mut() else { return Err(StatusError::bad_request("not an object")) };
            o.insert("apiVersion".into(), json!(gvr.api_version()));
            o.insert("kind".into(), json!(rt.kind));
            let meta = o.entry("metadata").or_insert_with(|| json!({}));
            if !meta.is_object() {
                return Err(StatusError::bad_request("metadata must be an object"));
            }
            for k in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "generation",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                match old.pointer(&format!("/metadata/{k}")) {
                    Some(v) => meta[k] = v.clone(),
                    None => {
                        if let Some(m) = meta.as_object_mut() {
                            m.remove(k);
                        }
                    }
                }
            }
            meta["resourceVersion"] = json!(cur_rv);
        }
        if let Some(s) = &rt.schema {
            validate_cr(rt, &name, s, &mut new)?;
        }
        if new == *old {
            return Ok(cur.value.clone());
        }
        if part == Part::Main && spec_changed(old, &new) {
            let g = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
            new["metadata"]["generation"] = json!(g + 1);
        }
        if *gvr == Gvr::crds() {
            let types = super::registry::crd_types(&new)
                .map_err(|c| StatusError::invalid("CustomResourceDefinition", &name, c))?;
            if part == Part::Main {
                new["status"] = crd_status(&new, &types);
            }
            if !dry_run {
                let _ = st.reg.register_crd(&new);
            }
        }
        if dry_run {
            return Ok(Arc::new(new));
        }
        let terminating = new.pointer("/metadata/deletionTimestamp").is_some();
        let no_finalizers =
            new.pointer("/metadata/finalizers").and_then(Value::as_array).is_none_or(|f| f.is_empty());
        if terminating && no_finalizers {
            let uid = meta_s(&new, "uid").unwrap_or_default();
            let out = self.commit(st, gvr, &ns, &name, Some(new), EventType::Deleted);
            self.after_removal(st, gvr, &name, &uid, false);
            return Ok(out);
        }
        Ok(self.commit(st, gvr, &ns, &name, Some(new), EventType::Modified))
    }

    fn delete_locked(
        &self,
        st: &mut State,
        gvr: &Gvr,
        namespace: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<Arc<Value>, StatusError> {
        if st.reg.get(gvr).is_none() {
            return Err(StatusError::no_such_type());
        }
        let key = (namespace.to_string(), name.to_string());
        let cur = st
            .objects
            .get(gvr)
            .and_then(|t| t.get(&key))
            .cloned()
            .ok_or_else(|| StatusError::not_found(&gvr.qualified(), name))?;
        let old = &*cur.value;
        let uid = old.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string();
        let rv = old.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default();
        if let Some(want) = opts.precondition_uid.as_deref().filter(|u| *u != uid) {
            return Err(StatusError::conflict(
                &gvr.qualified(),
                name,
                &format!("Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"),
            ));
        }
        if let Some(want) = opts.precondition_rv.as_deref().filter(|r| *r != rv) {
            return Err(StatusError::conflict(
                &gvr.qualified(),
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}"
                ),
            ));
        }
        if opts.dry_run {
            return Ok(cur.value.clone());
        }
        let has_finalizers =
            old.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if old.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(cur.value.clone());
            }
            let mut new = old.clone();
            new["metadata"]["deletionTimestamp"] = json!(now());
            new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            return Ok(self.commit(st, gvr, namespace, name, Some(new), EventType::Modified));
        }
        let out = self.commit(st, gvr, namespace, name, Some(old.clone()), EventType::Deleted);
        let orphan = opts.propagation.as_deref() == Some("Orphan");
        self.after_removal(st, gvr, name, &uid, orphan);
        Ok(out)
    }

    /// Garbage collection, namespace contents and CRD types, once an object is really gone.
    fn after_removal(&self, st: &mut State, gvr: &Gvr, name: &str, uid: &str, orphan: bool) {
        if *gvr == Gvr::namespaces() {
            let doomed: Vec<(Gvr, String)> = st
                .objects
                .iter()
                .filter(|(g, _)| st.reg.get(g).is_some_and(|t| t.namespaced))
                .flat_map(|(g, t)| {
                    t.range((name.to_string(), String::new())..)
                        .take_while(|((n, _), _)| n == name)
                        .map(|((_, obj), _)| (g.clone(), obj.clone()))
                        .collect::<Vec<_>>()
                })
                .collect();
            for (g, obj) in doomed {
                self.force_remove(st, &g, name, &obj);
            }
        }
        if *gvr == Gvr::crds() {
            for g in st.reg.unregister_crd(name) {
                let keys: Vec<Key> =
                    st.objects.get(&g).map(|t| t.keys().cloned().collect()).unwrap_or_default();
                for (ns, n) in keys {
                    self.force_remove(st, &g, &ns, &n);
                }
                st.objects.remove(&g);
            }
        }
        let Some(deps) = st.owners.remove(uid) else { return };
        let mut deps: Vec<_> = deps.into_iter().collect();
        deps.sort();
        for (g, ns, n) in deps {
            let Some(dep) = st.objects.get(&g).and_then(|t| t.get(&(ns.clone(), n.clone()))).cloned() else {
                continue;
            };
            let refs = dep.value.pointer("/metadata/ownerReferences").and_then(Value::as_array).cloned();
            let remaining: Vec<Value> = refs
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r.get("uid").and_then(Value::as_str) != Some(uid))
                .collect();
            if orphan || !remaining.is_empty() {
                let mut new = (*dep.value).clone();
                if remaining.is_empty() {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove("ownerReferences");
                    }
                } else {
                    new["metadata"]["ownerReferences"] = Value::Array(remaining);
                }
                self.commit(st, &g, &ns, &n, Some(new), EventType::Modified);
            } else {
                let _ = self.delete_locked(st, &g, &ns, &n, &DeleteOpts::default());
            }
        }
    }

    /// Removes an object whatever its finalizers (namespace and CRD teardown).
    fn force_remove(&self, st: &mut State, gvr: &Gvr, ns: &str, name: &str) {
        let Some(cur) = st.objects.get(gvr).and_then(|t| t.get(&(ns.to_string(), name.to_string()))).cloned()
        else {
            return;
        };
        let uid = cur.value.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string();
        self.commit(st, gvr, ns, name, Some((*cur.value).clone()), EventType::Deleted);
        self.after_removal(st, gvr, name, &uid, false);
    }

    /// Bumps the resourceVersion, stores (or removes) the object, records and broadcasts the event.
    fn commit(
        &self,
        st: &mut State,
        gvr: &Gvr,
        ns: &str,
        name: &str,
        obj: Option<Value>,
        et: EventType,
    ) -> Arc<Value> {
        st.rv += 1;
        let rv = st.rv;
        let mut obj = obj.unwrap_or(Value::Null);
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("resourceVersion".into(), json!(rv.to_string()));
        }
        let stored = Arc::new(Stored::new(obj));
        let key = (ns.to_string(), name.to_string());
        let table = st.objects.entry(gvr.clone()).or_default();
        let prev =
            if et == EventType::Deleted { table.remove(&key) } else { table.insert(key, stored.clone()) };
        let new_for_index = (et != EventType::Deleted).then_some(&*stored.value);
        index_owners(&mut st.owners, gvr, ns, name, prev.as_ref().map(|p| &*p.value), new_for_index);
        let event = StoreEvent {
            event_type: et,
            gvr: gvr.clone(),
            namespace: ns.to_string(),
            name: name.to_string(),
            object: stored.value.clone(),
            resource_version: rv,
            json: stored.json.clone(),
            prev,
        };
        if st.history.len() >= HISTORY_CAP
            && let Some(old) = st.history.pop_front()
        {
            st.floor = st.floor.max(old.resource_version);
        }
        st.history.push_back(event.clone());
        // No receivers is fine.
        let _ = self.inner.tx.send(event);
        stored.value.clone()
    }
}

#[path = "store_read.rs"]
mod read;

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
