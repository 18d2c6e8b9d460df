//! The sandbox's object store: every object, the global resourceVersion, the watch history and the type
//! registry, behind one lock.
//!
//! It owns Kubernetes object semantics (stamping, generation, preconditions, status subresource rules,
//! finalizers, garbage collection, CRD registration, consistent pagination). It must not know about HTTP, and
//! closures given to `update` must not call back into the store (they run under its lock).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::registry::check_name;
pub use super::registry::{Gvr, Registry, ResourceType};
use super::schema;
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

struct Hist {
    event: StoreEvent,
    /// The object before this event, to rebuild a past snapshot for `continue` tokens.
    prev: Option<Arc<Stored>>,
}

struct State {
    rv: u64,
    /// A watch or continue token from a resourceVersion below this is too old (410).
    floor: u64,
    reg: Registry,
    objects: HashMap<Gvr, BTreeMap<Key, Arc<Stored>>>,
    history: VecDeque<Hist>,
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

    /// A page of a list, consistent across `continue` tokens.
    pub fn list_page(&self, gvr: &Gvr, namespace: Option<&str>, q: &ListQuery) -> Result<Page, StatusError> {
        let st = self.read();
        if st.reg.get(gvr).is_none() {
            return Err(StatusError::no_such_type());
        }
        let (snap_rv, after) = match q.continue_token.as_deref().filter(|t| !t.is_empty()) {
            None => (st.rv, None),
            Some(t) => {
                let (rv, ns, name) = decode_token(t)
                    .ok_or_else(|| StatusError::bad_request("continue key is not valid: malformed token"))?;
                if rv < st.floor {
                    return Err(StatusError::expired(
                        "The provided continue parameter is too old to display a consistent list result. You can \
                         start a new list without the continue parameter.",
                    ));
                }
                (rv, Some((ns, name)))
            }
        };
        let empty = BTreeMap::new();
        let table = st.objects.get(gvr).unwrap_or(&empty);
        let in_scope = |k: &Key| namespace.is_none_or(|ns| k.0 == ns);
        let past_start = |k: &Key| after.as_ref().is_none_or(|a| k > a);
        // Undo the changes made after the snapshot, newest first, so the oldest `prev` wins.
        let mut overrides: BTreeMap<Key, Option<Arc<Stored>>> = BTreeMap::new();
        if snap_rv < st.rv {
            for h in st.history.iter().rev() {
                if h.event.resource_version <= snap_rv {
                    break;
                }
                let k = (h.event.namespace.clone(), h.event.name.clone());
                if h.event.gvr == *gvr && in_scope(&k) && past_start(&k) {
                    overrides.insert(k, h.prev.clone());
                }
            }
        }
        let lower = match (&after, namespace) {
            (Some(a), _) => Bound::Excluded(a.clone()),
            (None, Some(ns)) => Bound::Included((ns.to_string(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        let mut cur = table.range((lower, Bound::Unbounded)).take_while(|(k, _)| in_scope(k)).peekable();
        let mut ovr = overrides.into_iter().peekable();
        let matches = |s: &Stored| {
            let v = &*s.value;
            q.labels.matches(v.pointer("/metadata/labels")) && q.fields.matches(v)
        };
        let limit = q.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let mut items = Vec::new();
        let mut last: Option<Key> = None;
        let mut more = false;
        loop {
            let next: Option<(Key, Option<Arc<Stored>>)> = match (cur.peek(), ovr.peek()) {
                (None, None) => break,
                (Some((ck, _)), Some((ok, _))) if *ck == ok => {
                    cur.next();
                    ovr.next()
                }
                (Some((ck, _)), Some((ok, _))) if ok < *ck => ovr.next(),
                (Some(_), _) => cur.next().map(|(k, v)| (k.clone(), Some(v.clone()))),
                (None, Some(_)) => ovr.next(),
            };
            let Some((k, Some(obj))) = next else { continue };
            if !matches(&obj) {
                continue;
            }
            if items.len() == limit {
                more = true;
                break;
            }
            last = Some(k);
            items.push(obj);
        }
        let continue_token = match (more, last) {
            (true, Some((ns, name))) => Some(encode_token(snap_rv, &ns, &name)),
            _ => None,
        };
        Ok(Page { items, resource_version: snap_rv, continue_token })
    }

    /// Starts a watch: with `since` None, the current objects come first (synthetic ADDED); with Some(rv), the
    /// retained events after rv, or 410 when rv is older than the history.
    pub fn watch(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        since: Option<u64>,
    ) -> Result<WatchStart, StatusError> {
        let st = self.read();
        if st.reg.get(gvr).is_none() {
            return Err(StatusError::no_such_type());
        }
        // Subscribing under the lock: writers send under the write lock, so nothing falls between the
        // snapshot and the live stream.
        let rx = self.inner.tx.subscribe();
        let in_ns = |ns: &str| namespace.is_none_or(|n| n == ns);
        let mut initial = Vec::new();
        let mut backlog = Vec::new();
        match since {
            None => {
                if let Some(t) = st.objects.get(gvr) {
                    initial = t.iter().filter(|(k, _)| in_ns(&k.0)).map(|(_, v)| v.clone()).collect();
                }
            }
            Some(rv) => {
                if rv < st.floor {
                    return Err(StatusError::expired(format!(
                        "too old resource version: {rv} ({})",
                        st.floor
                    )));
                }
                let start = st.history.partition_point(|h| h.event.resource_version <= rv);
                backlog = st
                    .history
                    .range(start..)
                    .filter(|h| h.event.gvr == *gvr && in_ns(&h.event.namespace))
                    .map(|h| h.event.clone())
                    .collect();
            }
        }
        Ok(WatchStart { initial, backlog, rx, resource_version: st.rv })
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
        defaults(st, &rt, o);
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
        };
        if st.history.len() >= HISTORY_CAP
            && let Some(old) = st.history.pop_front()
        {
            st.floor = st.floor.max(old.event.resource_version);
        }
        st.history.push_back(Hist { event: event.clone(), prev });
        // No receivers is fine.
        let _ = self.inner.tx.send(event);
        stored.value.clone()
    }
}

/// 400 when the body names another apiVersion or kind than the URL.
fn check_type_meta(rt: &ResourceType, o: &Map<String, Value>) -> Result<(), StatusError> {
    let want_av = rt.gvr.api_version();
    if let Some(av) = o.get("apiVersion").and_then(Value::as_str).filter(|a| !a.is_empty())
        && av != want_av
    {
        return Err(StatusError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({want_av})"
        )));
    }
    if let Some(k) = o.get("kind").and_then(Value::as_str).filter(|k| !k.is_empty())
        && k != rt.kind
    {
        return Err(StatusError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            rt.kind
        )));
    }
    Ok(())
}

fn validate_cr(rt: &ResourceType, name: &str, s: &Value, obj: &mut Value) -> Result<(), StatusError> {
    if let Some(o) = obj.as_object_mut() {
        let props = s.get("properties").and_then(Value::as_object);
        let preserve = s.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true);
        o.retain(|k, v| {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                return true;
            }
            match props.and_then(|p| p.get(k)) {
                Some(ps) => {
                    schema::prune(ps, v);
                    true
                }
                None => preserve,
            }
        });
    }
    let errs = schema::validate(s, obj);
    if errs.is_empty() { Ok(()) } else { Err(StatusError::invalid(&rt.kind, name, errs)) }
}

/// A change outside metadata and status (what bumps `generation`).
fn spec_changed(old: &Value, new: &Value) -> bool {
    let (Some(a), Some(b)) = (old.as_object(), new.as_object()) else { return old != new };
    let skip = |k: &str| matches!(k, "metadata" | "status" | "apiVersion" | "kind");
    let keys: HashSet<&String> = a.keys().chain(b.keys()).filter(|k| !skip(k)).collect();
    keys.into_iter().any(|k| a.get(k) != b.get(k))
}

/// Defaults a real API server fills that clients read back.
fn defaults(st: &mut State, rt: &ResourceType, o: &mut Map<String, Value>) {
    let g = &rt.gvr;
    if *g == Gvr::namespaces() {
        let status = o.entry("status").or_insert_with(|| json!({}));
        if status.get("phase").is_none() && status.is_object() {
            status["phase"] = json!("Active");
        }
        let spec = o.entry("spec").or_insert_with(|| json!({}));
        if spec.is_object() && spec.get("finalizers").is_none() {
            spec["finalizers"] = json!(["kubernetes"]);
        }
    }
    if rt.scale.is_some() && rt.crd.is_none() {
        let spec = o.entry("spec").or_insert_with(|| json!({}));
        if spec.is_object() && spec.get("replicas").is_none() {
            spec["replicas"] = json!(1);
        }
    }
    if *g == Gvr::services() {
        let spec = o.entry("spec").or_insert_with(|| json!({}));
        if spec.is_object() {
            if spec.get("type").is_none() {
                spec["type"] = json!("ClusterIP");
            }
            if spec.get("clusterIP").is_none() {
                st.services += 1;
                let n = st.services;
                let ip = format!("10.96.{}.{}", (n / 250) % 250, n % 250 + 1);
                spec["clusterIP"] = json!(ip);
                spec["clusterIPs"] = json!([ip]);
            }
        }
    }
}

fn crd_status(crd: &Value, types: &[ResourceType]) -> Value {
    let t = now();
    let stored: Vec<&str> = types.iter().filter(|t| t.storage).map(|t| t.gvr.version.as_str()).collect();
    json!({
        "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or_else(|| json!({})),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": t},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": t},
        ],
        "storedVersions": stored,
    })
}

fn index_owners(
    owners: &mut HashMap<String, HashSet<(Gvr, String, String)>>,
    gvr: &Gvr,
    ns: &str,
    name: &str,
    old: Option<&Value>,
    new: Option<&Value>,
) {
    let uids = |v: Option<&Value>| -> Vec<String> {
        v.and_then(|v| v.pointer("/metadata/ownerReferences"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter().filter_map(|r| r.get("uid").and_then(Value::as_str)).map(str::to_string).collect()
            })
            .unwrap_or_default()
    };
    let (before, after) = (uids(old), uids(new));
    if before == after {
        return;
    }
    let key = (gvr.clone(), ns.to_string(), name.to_string());
    for u in before.iter().filter(|u| !after.contains(u)) {
        if let Some(set) = owners.get_mut(u) {
            set.remove(&key);
            if set.is_empty() {
                owners.remove(u);
            }
        }
    }
    for u in after {
        owners.entry(u).or_default().insert(key.clone());
    }
}

/// RFC 3339 to the second, as Kubernetes writes timestamps.
pub fn now() -> String {
    let secs = jiff::Timestamp::now().as_second();
    jiff::Timestamp::from_second(secs).map(|t| t.to_string()).unwrap_or_default()
}

fn new_uid() -> String {
    let x = fastrand::u128(..);
    let h = format!("{x:032x}");
    format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5).map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char).collect()
}

fn encode_token(rv: u64, ns: &str, name: &str) -> String {
    let raw = format!("{rv}/{ns}/{name}");
    raw.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_token(t: &str) -> Option<(u64, String, String)> {
    if t.len() % 2 != 0 || !t.is_ascii() {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..t.len()).step_by(2).map(|i| u8::from_str_radix(&t[i..i + 2], 16).ok()).collect();
    let raw = String::from_utf8(bytes?).ok()?;
    let mut parts = raw.splitn(3, '/');
    let rv = parts.next()?.parse().ok()?;
    Some((rv, parts.next()?.to_string(), parts.next()?.to_string()))
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
