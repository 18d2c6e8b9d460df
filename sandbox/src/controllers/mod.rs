//! The simulated cluster controllers: Deployment → ReplicaSet → Pods, StatefulSet → Pods, ReplicationController
//! → Pods, a kubelet that starts pods, and a Gateway API controller.
//!
//! They run in one task driven by `Store::subscribe()` events (and a full resync when the receiver lags), and
//! act only through the store's public API, like controllers of a real cluster act only through the API
//! server. They must not reach into the HTTP layer, and reconciles must be idempotent: every write they make
//! comes back to them as an event, so a reconcile that always writes would never settle.

pub mod deployment;
pub mod gateway;
pub mod kubelet;
pub mod replicaset;
pub mod statefulset;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockWriteGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use super::registry::Gvr;
use super::status::StatusError;
use super::store::{EventType, Store, StoreEvent};

pub use kubelet::set_pod_condition;

/// The controller name the gateway controller writes into HTTPRoute status.
pub const GATEWAY_CONTROLLER: &str = "machinist.dev/sandbox-gateway";
pub use crate::cluster::NODE_NAME;

/// Held for writing while seed data is written object by object, so no controller acts on a half-written
/// workload (a ReplicaSet whose pods are not created yet would get a second set). Process-wide: it only
/// delays other sandboxes' controllers for the length of a seed.
static SEEDING: RwLock<()> = RwLock::new(());

/// Pauses every controller pass until the guard is dropped.
pub(crate) fn pause() -> RwLockWriteGuard<'static, ()> {
    SEEDING.write().unwrap_or_else(|e| e.into_inner())
}

/// One thing to reconcile: (namespace, name) of an object of one kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Deployment(String, String),
    ReplicaSet(String, String),
    ReplicationController(String, String),
    StatefulSet(String, String),
    GatewayClass(String),
    Gateway(String, String),
    Route(String, String),
    /// The scheduler: bind a new pod to the node.
    Pod(String, String),
    /// The kubelet: start a pod whose delay has passed.
    PodStart(String, String),
    /// The service account controller: the `default` ServiceAccount of a namespace.
    Namespace(String),
}

/// Starts the controllers. Subscribes before returning, so no change made after this call is missed.
pub fn spawn(store: Store, pod_start_delay: Duration) -> JoinHandle<()> {
    let rx = store.subscribe();
    let mut c = Controllers::new(store, pod_start_delay);
    tokio::spawn(async move { c.run(rx).await })
}

struct Controllers {
    store: Store,
    delay: Duration,
    queue: BTreeSet<Key>,
    /// Pods (by uid) whose start is already scheduled, so repeated events do not start more timers.
    starting: HashSet<String>,
    started_tx: mpsc::UnboundedSender<(String, String)>,
    started_rx: Option<mpsc::UnboundedReceiver<(String, String)>>,
    /// How many times a pass listed a kind in a namespace to index it by owner (the tests read it).
    index_builds: usize,
}

impl Controllers {
    fn new(store: Store, delay: Duration) -> Controllers {
        let (started_tx, started_rx) = mpsc::unbounded_channel();
        Controllers {
            store,
            delay,
            queue: BTreeSet::new(),
            starting: HashSet::new(),
            started_tx,
            started_rx: Some(started_rx),
            index_builds: 0,
        }
    }

    async fn run(&mut self, mut rx: broadcast::Receiver<StoreEvent>) {
        let Some(mut timers) = self.started_rx.take() else { return };
        self.resync();
        loop {
            self.reconcile_queue().await;
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(ev) => self.on_event(&ev),
                    Err(RecvError::Lagged(_)) => self.resync(),
                    Err(RecvError::Closed) => return,
                },
                Some((ns, name)) = timers.recv() => { self.queue.insert(Key::PodStart(ns, name)); }
            }
            // Coalesce whatever else is already waiting into one pass.
            loop {
                match rx.try_recv() {
                    Ok(ev) => self.on_event(&ev),
                    Err(TryRecvError::Lagged(_)) => self.resync(),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Closed) => return,
                }
            }
            while let Ok((ns, name)) = timers.try_recv() {
                self.queue.insert(Key::PodStart(ns, name));
            }
        }
    }

    /// Queues everything: after a lag the events in between are lost, so every object is looked at again.
    fn resync(&mut self) {
        let s = &self.store;
        let keys = |gvr: &Gvr| -> Vec<(String, String)> {
            s.list(gvr, None)
                .iter()
                .map(|o| (meta(o, "namespace").to_string(), meta(o, "name").to_string()))
                .collect()
        };
        for (ns, n) in keys(&Gvr::deployments()) {
            self.queue.insert(Key::Deployment(ns, n));
        }
        for (ns, n) in keys(&Gvr::replicasets()) {
            self.queue.insert(Key::ReplicaSet(ns, n));
        }
        for (ns, n) in keys(&Gvr::replicationcontrollers()) {
            self.queue.insert(Key::ReplicationController(ns, n));
        }
        for (ns, n) in keys(&Gvr::statefulsets()) {
            self.queue.insert(Key::StatefulSet(ns, n));
        }
        for (_, n) in keys(&gateway::gatewayclasses()) {
            self.queue.insert(Key::GatewayClass(n));
        }
        for (ns, n) in keys(&Gvr::gateways()) {
            self.queue.insert(Key::Gateway(ns, n));
        }
        for (ns, n) in keys(&Gvr::httproutes()) {
            self.queue.insert(Key::Route(ns, n));
        }
        for (_, n) in keys(&Gvr::namespaces()) {
            self.queue.insert(Key::Namespace(n));
        }
        for pod in s.list(&Gvr::pods(), None) {
            self.watch_pod(&pod);
        }
    }

    fn on_event(&mut self, ev: &StoreEvent) {
        let (ns, name) = (ev.namespace.clone(), ev.name.clone());
        let obj = &ev.object;
        let g = &ev.gvr;
        if *g == Gvr::pods() {
            if ev.event_type == EventType::Deleted {
                self.starting.remove(meta(obj, "uid"));
            } else {
                self.watch_pod(obj);
            }
            self.queue_owner(&ns, obj);
        } else if *g == Gvr::replicasets() {
            self.queue.insert(Key::ReplicaSet(ns.clone(), name));
            self.queue_owner(&ns, obj);
        } else if *g == Gvr::deployments() {
            self.queue.insert(Key::Deployment(ns, name));
        } else if *g == Gvr::statefulsets() {
            self.queue.insert(Key::StatefulSet(ns, name));
        } else if *g == Gvr::replicationcontrollers() {
            self.queue.insert(Key::ReplicationController(ns, name));
        } else if *g == gateway::gatewayclasses() {
            self.queue.insert(Key::GatewayClass(name));
        } else if *g == Gvr::gateways() {
            self.queue.insert(Key::Gateway(ns.clone(), name.clone()));
            // Routes anywhere may name this Gateway as their parent.
            for r in self.store.list(&Gvr::httproutes(), None) {
                if gateway::route_parents(&r).iter().any(|(pns, pn)| *pns == ns && *pn == name) {
                    self.queue.insert(Key::Route(meta(&r, "namespace").into(), meta(&r, "name").into()));
                }
            }
        } else if *g == Gvr::httproutes() {
            for (pns, pn) in gateway::route_parents(obj) {
                self.queue.insert(Key::Gateway(pns, pn));
            }
            self.queue.insert(Key::Route(ns, name));
        } else if *g == Gvr::services() {
            // A backend appearing or going changes ResolvedRefs of the routes in its namespace.
            for r in self.store.list(&Gvr::httproutes(), Some(&ns)) {
                self.queue.insert(Key::Route(ns.clone(), meta(&r, "name").into()));
            }
        } else if *g == Gvr::crds() {
            self.resync();
        } else if *g == Gvr::namespaces() && ev.event_type != EventType::Deleted {
            self.queue.insert(Key::Namespace(name));
        } else if *g == Gvr::serviceaccounts() && ev.event_type == EventType::Deleted && name == "default" {
            // Deleting it brings it back, as the ServiceAccount controller does.
            self.queue.insert(Key::Namespace(ns));
        }
    }

    /// The kubelet's view of a pod event: schedule it now, start it after the delay.
    fn watch_pod(&mut self, pod: &Value) {
        if !kubelet::needs_start(pod) {
            return;
        }
        let uid = meta(pod, "uid").to_string();
        if !self.starting.insert(uid) {
            return;
        }
        let key = (meta(pod, "namespace").to_string(), meta(pod, "name").to_string());
        // Scheduling (nodeName, PodScheduled) happens at once, as the scheduler would.
        self.queue.insert(Key::Pod(key.0.clone(), key.1.clone()));
        let tx = self.started_tx.clone();
        let delay = self.delay;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(key);
        });
    }

    fn queue_owner(&mut self, ns: &str, obj: &Value) {
        let Some((kind, name, _)) = controller_of(obj) else { return };
        let (ns, name) = (ns.to_string(), name.to_string());
        match kind {
            "ReplicaSet" => self.queue.insert(Key::ReplicaSet(ns, name)),
            "ReplicationController" => self.queue.insert(Key::ReplicationController(ns, name)),
            "StatefulSet" => self.queue.insert(Key::StatefulSet(ns, name)),
            "Deployment" => self.queue.insert(Key::Deployment(ns, name)),
            _ => false,
        };
    }

    /// Reconciles what is queued. A pass over a few hundred objects takes a while in a debug build: it
    /// yields to the runtime every few milliseconds so that a burst of writes does not hold a worker thread
    /// (and the API server's handlers and watches waiting for it) for the whole pass.
    async fn reconcile_queue(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        let mut owned = OwnerIndex::default();
        let mut indexed_at = self.store.resource_version();
        let queue = std::mem::take(&mut self.queue);
        let mut slice = std::time::Instant::now();
        for key in queue {
            if slice.elapsed() >= PASS_SLICE {
                tokio::task::yield_now().await;
                // Objects may have changed meanwhile: index them again when next needed. Only if they did:
                // rebuilding after every slice made a pass over 1,000 ReplicaSets of 100,000 pods list all
                // the pods once per ReplicaSet, and kept a core busy for minutes with nothing changing.
                let now = self.store.resource_version();
                if now != indexed_at {
                    self.index_builds += std::mem::take(&mut owned).builds;
                    indexed_at = now;
                }
                slice = std::time::Instant::now();
            }
            let _seeding_done = SEEDING.read().unwrap_or_else(|e| e.into_inner());
            let s = &self.store;
            let r = match &key {
                Key::Deployment(ns, n) => {
                    deployment::reconcile(s, ns, n, owned.owned(s, &Gvr::replicasets(), ns))
                }
                Key::ReplicaSet(ns, n) => replicaset::reconcile(
                    s,
                    &replicaset::REPLICA_SET,
                    ns,
                    n,
                    owned.owned(s, &Gvr::pods(), ns),
                ),
                Key::ReplicationController(ns, n) => replicaset::reconcile(
                    s,
                    &replicaset::REPLICATION_CONTROLLER,
                    ns,
                    n,
                    owned.owned(s, &Gvr::pods(), ns),
                ),
                Key::StatefulSet(ns, n) => statefulset::reconcile(s, ns, n, owned.owned(s, &Gvr::pods(), ns)),
                Key::GatewayClass(n) => gateway::reconcile_class(s, n),
                Key::Gateway(ns, n) => gateway::reconcile_gateway(s, ns, n),
                Key::Route(ns, n) => gateway::reconcile_route(s, ns, n),
                Key::Pod(ns, n) => kubelet::schedule(s, ns, n),
                Key::PodStart(ns, n) => self.start_pod(ns, n),
                Key::Namespace(n) => crate::cluster::default_service_account(s, n),
            };
            if let Err(e) = r {
                // The next event about the object retries; a 404 only means it went away meanwhile.
                if e.code != 404 {
                    tracing::debug!(?key, error = %e, "sandbox controller reconcile failed");
                }
            }
        }
        self.index_builds += owned.builds;
    }

    fn start_pod(&mut self, ns: &str, name: &str) -> Result<(), StatusError> {
        let Some(pod) = self.store.get(&Gvr::pods(), ns, name) else { return Ok(()) };
        self.starting.remove(meta(&pod, "uid"));
        kubelet::start(&self.store, ns, name)
    }
}

/// How long a reconcile pass runs before it yields to the runtime.
const PASS_SLICE: Duration = Duration::from_millis(5);

/// Objects of one kind and namespace by controller uid (pods by ReplicaSet, ReplicaSets by Deployment),
/// built once per pass: a pass reconciles many owners of the same namespace, and listing the namespace once
/// instead of once per owner is what keeps 50,000 seeded pods, or a burst over hundreds of Deployments,
/// cheap. Owners still check `controlled_by` and read what they write afresh.
#[derive(Default)]
struct OwnerIndex {
    by_kind_ns: HashMap<(String, String), Owned>,
    builds: usize,
}

/// Dependents by the uid of their controller.
type Owned = HashMap<String, Vec<Arc<Value>>>;

impl OwnerIndex {
    fn owned<'a>(&'a mut self, store: &Store, gvr: &Gvr, ns: &str) -> &'a Owned {
        self.by_kind_ns.entry((gvr.resource.clone(), ns.to_string())).or_insert_with(|| {
            self.builds += 1;
            let mut m = Owned::new();
            for o in store.list(gvr, Some(ns)) {
                if let Some((_, _, uid)) = controller_of(&o) {
                    m.entry(uid.to_string()).or_default().push(o.clone());
                }
            }
            m
        })
    }
}

/// `metadata.<key>` as a string, "" when absent.
pub(crate) fn meta<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.get("metadata").and_then(|m| m.get(key)).and_then(Value::as_str).unwrap_or_default()
}

/// (kind, name, uid) of the controlling ownerReference.
pub(crate) fn controller_of(obj: &Value) -> Option<(&str, &str, &str)> {
    let refs = obj.get("metadata")?.get("ownerReferences")?.as_array()?;
    let r = refs.iter().find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?;
    let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default();
    Some((s("kind"), s("name"), s("uid")))
}

/// True when `obj` is controlled by the object with `uid`.
pub(crate) fn controlled_by(obj: &Value, uid: &str) -> bool {
    controller_of(obj).is_some_and(|(_, _, u)| u == uid)
}

/// An ownerReference to `owner`, marking it as the controller.
pub(crate) fn owner_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner.get("apiVersion").cloned().unwrap_or(Value::Null),
        "kind": owner.get("kind").cloned().unwrap_or(Value::Null),
        "name": meta(owner, "name"),
        "uid": meta(owner, "uid"),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

pub(crate) fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null())
}

pub(crate) fn generation(obj: &Value) -> i64 {
    obj.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1)
}

/// `spec.replicas`, 1 when absent as Kubernetes defaults it.
pub(crate) fn spec_replicas(obj: &Value) -> i64 {
    obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1).max(0)
}

pub(crate) fn status_i64(obj: &Value, field: &str) -> i64 {
    obj.get("status").and_then(|s| s.get(field)).and_then(Value::as_i64).unwrap_or(0)
}

/// Sets condition `type_` in `conds`, keeping `lastTransitionTime` when the status did not flip and
/// `lastUpdateTime` (if `with_update_time`) when nothing changed: a condition rewritten with a fresh time on
/// every pass would make every reconcile a write.
pub(crate) fn set_condition(
    conds: &mut Vec<Value>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    with_update_time: bool,
    extra: Option<(&str, Value)>,
) {
    let now = super::store::now();
    let old = conds.iter().position(|c| c.get("type").and_then(Value::as_str) == Some(type_));
    let prev = old.map(|i| conds[i].clone());
    let field = |k: &str| prev.as_ref().and_then(|p| p.get(k)).and_then(Value::as_str).map(str::to_string);
    let same_status = field("status").as_deref() == Some(status);
    let unchanged = same_status
        && field("reason").as_deref() == Some(reason)
        && field("message").as_deref() == Some(message);
    let transition =
        if same_status { field("lastTransitionTime").unwrap_or_else(|| now.clone()) } else { now.clone() };
    let mut c = json!({"type": type_, "status": status});
    if with_update_time {
        let upd =
            if unchanged { field("lastUpdateTime").unwrap_or_else(|| now.clone()) } else { now.clone() };
        c["lastUpdateTime"] = json!(upd);
    }
    c["lastTransitionTime"] = json!(transition);
    c["reason"] = json!(reason);
    c["message"] = json!(message);
    if let Some((k, v)) = extra {
        c[k] = v;
    }
    match old {
        Some(i) => conds[i] = c,
        None => conds.push(c),
    }
}

/// Replaces `status` through the /status subresource unless it is already equal (no write, no event).
pub(crate) fn write_status(store: &Store, gvr: &Gvr, obj: &Value, status: Value) -> Result<(), StatusError> {
    if obj.get("status") == Some(&status) {
        return Ok(());
    }
    let uid = meta(obj, "uid").to_string();
    store.update_status(gvr, meta(obj, "namespace"), meta(obj, "name"), |cur| {
        // A different uid means the object was deleted and recreated under the same name meanwhile.
        if meta(cur, "uid") != uid {
            return Err(StatusError::conflict(&gvr.qualified(), meta(cur, "name"), "uid changed"));
        }
        cur["status"] = status;
        Ok(())
    })?;
    Ok(())
}

/// A deterministic 32-bit FNV-1a hash of `v` with object keys in sorted order, so the same template hashes the
/// same whatever order its fields were written in.
pub(crate) fn stable_hash(v: &Value) -> u32 {
    fn feed(h: &mut u32, bytes: &[u8]) {
        for b in bytes {
            *h ^= u32::from(*b);
            *h = h.wrapping_mul(0x0100_0193);
        }
    }
    fn walk(h: &mut u32, v: &Value) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                feed(h, b"{");
                for k in keys {
                    feed(h, k.as_bytes());
                    feed(h, b":");
                    walk(h, &m[k]);
                    feed(h, b",");
                }
                feed(h, b"}");
            }
            Value::Array(a) => {
                feed(h, b"[");
                for x in a {
                    walk(h, x);
                    feed(h, b",");
                }
                feed(h, b"]");
            }
            other => feed(h, other.to_string().as_bytes()),
        }
    }
    let mut h = 0x811c_9dc5;
    walk(&mut h, v);
    h
}

/// The alphabet Kubernetes uses for generated names (no vowels, no look-alike digits).
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Kubernetes' `SafeEncodeString` of the decimal form of `n`: how `pod-template-hash` values look.
pub(crate) fn safe_encode(n: u32) -> String {
    n.to_string().bytes().map(|b| SAFE[usize::from(b) % SAFE.len()] as char).collect()
}

/// Five random characters from the safe alphabet (pod name suffixes).
pub(crate) fn random_suffix() -> String {
    (0..5).map(|_| SAFE[fastrand::usize(..SAFE.len())] as char).collect()
}

/// The `i`-th of 27^5 distinct five-character suffixes starting at `offset`: unique by construction, for
/// seeding thousands of pods without a name collision.
pub(crate) fn nth_suffix(offset: u64, i: u64) -> String {
    const SPACE: u64 = 27 * 27 * 27 * 27 * 27;
    // 7919 is prime and not 3, so it is coprime with 27^5 and i ↦ i·7919 is a bijection mod 27^5.
    let mut n = (offset + i.wrapping_mul(7919)) % SPACE;
    let mut out = [0u8; 5];
    for c in out.iter_mut() {
        *c = SAFE[(n % 27) as usize];
        n /= 27;
    }
    out.iter().map(|b| *b as char).collect()
}

#[cfg(test)]
mod tests;
