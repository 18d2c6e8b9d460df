//! The in-memory cache every REST read is answered from: compact models, projection, indexes by scope,
//! label pair and controller, owner resolution, readiness.
//!
//! Its parts: `ingest` (watcher events and ECS refreshes in), `readiness` (first sync and scope
//! admission), `reads` (what the providers serve out), `store` (the indexes), `project` and `pod` (k8s
//! object → served shape), `model` (the shapes). It does no I/O, knows no HTTP and imports no provider:
//! providers depend on it (and present it to `api` as their `ReadModel`), never the reverse. Its
//! apply/delete/reset are synchronous and never hold a lock across an `.await`. Ingest does the work
//! (projection, owner resolution, serialization); a read takes the read lock, copies `Arc` fragments out
//! of an index, and splices bytes after releasing it.
//!
//! Choices where API.md is silent:
//! - A ReplicaSet controlled by a Deployment is not a top-level controller: it is not listed and is not
//!   resolvable, not even with `kind=ReplicaSet` (scaling it would be undone by its Deployment); its pods
//!   belong to the Deployment. A ReplicaSet with no owner, or an owner of another kind, is top-level.
//! - A pod controlled by a kind machinist does not serve (DaemonSet, Job, ...) shows that owner as
//!   `controller`; no served controller lists it.
//! - Lists are ordered by name; controllers by kind (resolution order), then name.

mod ingest;
pub mod model;
mod pins;
mod pod;
mod project;
mod quantity;
mod readiness;
mod reads;
mod store;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use self::model::{ControllerKind, Fragment, LabelFilter, Labels, Machine, Service};
use self::pins::Pins;
pub use self::pod::PodView;
pub use self::project::{Gateway, HttpRoute, K8sObject, ObjectKey, Projection, format_time, kinds};
pub use self::quantity::Quantity;
use self::store::Store;

/// Why the cache cannot answer a read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("the {provider} cache has not finished its first sync")]
    NotReady { provider: &'static str, retry_after_secs: u64 },
    #[error("{scope_kind} {scope} is not watched by machinist")]
    ScopeNotWatched { scope_kind: &'static str, scope: String },
    #[error("{0}")]
    NotFound(String),
}

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

/// One readiness unit: a watcher kind in a namespace (None: all namespaces), or an ECS cluster.
type SyncKey = (&'static str, Option<String>);

struct Inner {
    store: Store,
    expected: HashSet<SyncKey>,
    synced: HashSet<SyncKey>,
    /// Latched: once every expected unit listed once, reads are served (relists serve the old snapshot).
    ready: bool,
    /// Lists in progress, between `Init` and `InitDone`.
    relists: HashMap<SyncKey, Relist>,
    /// The namespace watcher is not running (namespaces configured, or skipped): scopes are not checked
    /// against existing namespaces.
    namespaces_known: bool,
    /// machinist's own writes, protected from late watch events (`pins`).
    pins: Pins,
    /// Scopes the provider says do not exist (an ECS cluster that is not there), with what reads answer.
    missing: HashMap<String, String>,
}

/// A list in progress.
enum Relist {
    /// After the cache served reads: objects buffered, swapped in at `InitDone` (reads see the old
    /// snapshot until then).
    Buffered(Vec<(ObjectKey, u64, Projection)>),
    /// Before the first sync no read is served, so objects go straight into the store and only their keys
    /// are kept (to drop, at `InitDone`, what the list did not have): a 100,000-pod first list never holds
    /// a second copy of every pod.
    Direct(HashSet<ObjectKey>),
}

/// One provider's cache, shared as `Arc<Cache>`.
pub struct Cache {
    provider: &'static str,
    scope_kind: &'static str,
    /// Configured scopes (k8s namespaces; ecs clusters); empty = all namespaces (k8s).
    configured: BTreeSet<String>,
    inner: RwLock<Inner>,
    /// Per scope, the last rendered controller list and the scope generation it was rendered at. Apart
    /// from `inner` so that rendering never holds the lock the watchers write under.
    list_memo: Mutex<HashMap<String, (u64, bytes::Bytes)>>,
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
                missing: HashMap::new(),
            }),
            list_memo: Mutex::new(HashMap::new()),
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
}

pub mod provider_name {
    pub const K8S: &str = "k8s";
    pub const ECS: &str = "ecs";
}
