//! The indexed records of one provider: per scope, machines (by name, label pair, top controller and, on
//! k8s, direct ReplicaSet), controllers, services and Gateway API objects, each kept as a served fragment.
//!
//! Owner resolution lives here because it needs the other records: a pod's top owner is resolved when it
//! arrives, and re-resolved when its ReplicaSet arrives, changes hands or goes. Sync code only: the caller
//! holds the lock, briefly, and nothing here waits.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

use super::model::{ControllerKind, ControllerRef, Fragment, Labels, Machine, Service};
use super::project::{ControllerModel, Owner, PodModel, kinds, to_fragment};

pub(crate) type Name = Arc<str>;

/// Shares the strings many records repeat (namespaces, label keys and values, owner names).
#[derive(Default)]
pub(crate) struct Interner(HashSet<Arc<str>>);

impl Interner {
    pub fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(found) = self.0.get(s) {
            return found.clone();
        }
        let new: Arc<str> = Arc::from(s);
        self.0.insert(new.clone());
        new
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Forget strings no record uses any more.
    pub fn gc(&mut self) {
        self.0.retain(|s| Arc::strong_count(s) > 1);
    }
}

/// Two-level posting lists: `a → b → names` (label key → value → names, or kind → name → machines).
#[derive(Default)]
pub(crate) struct Postings(HashMap<Arc<str>, HashMap<Arc<str>, BTreeSet<Name>>>);

impl Postings {
    fn insert(&mut self, a: &Arc<str>, b: &Arc<str>, name: &Name) {
        self.0.entry(a.clone()).or_default().entry(b.clone()).or_default().insert(name.clone());
    }

    fn remove(&mut self, a: &str, b: &str, name: &str) {
        if let Some(inner) = self.0.get_mut(a) {
            if let Some(set) = inner.get_mut(b) {
                set.remove(name);
                if set.is_empty() {
                    inner.remove(b);
                }
            }
            if inner.is_empty() {
                self.0.remove(a);
            }
        }
    }

    pub fn get(&self, a: &str, b: &str) -> Option<&BTreeSet<Name>> {
        self.0.get(a).and_then(|inner| inner.get(b))
    }
}

/// The top owner of a machine, interned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TopRef {
    pub kind: Arc<str>,
    pub name: Arc<str>,
    pub api_version: Arc<str>,
}

impl TopRef {
    fn served(&self) -> ControllerRef {
        ControllerRef {
            name: self.name.to_string(),
            kind: self.kind.to_string(),
            api_version: self.api_version.to_string(),
        }
    }
}

pub(crate) struct MachineRec {
    pub labels: Box<[(Arc<str>, Arc<str>)]>,
    /// k8s: the ReplicaSet named by the pod's controller reference, for re-resolution.
    rs: Option<Name>,
    /// The controller reference as the pod has it (k8s), kept to re-resolve.
    direct: Option<TopRef>,
    pub top: Option<TopRef>,
    pub fragment: Fragment,
    /// resourceVersion of the object this was projected from (0: unknown).
    pub rv: u64,
}

pub(crate) struct ControllerRec {
    pub kind: ControllerKind,
    pub name: Name,
    pub replicas: i32,
    pub ready_replicas: i32,
    /// The controlling owner (ReplicaSets): a Deployment owner makes the set not top-level.
    pub owner: Option<TopRef>,
    /// The served fields other than `machines`, each pre-serialized.
    pub head: Arc<ControllerHead>,
    pub rv: u64,
}

impl ControllerRec {
    pub fn top_level(&self) -> bool {
        !(self.kind == ControllerKind::ReplicaSet
            && self.owner.as_ref().is_some_and(|o| &*o.kind == "Deployment"))
    }

    /// The served Controller with the given machines spliced in. The pieces are JSON already: this copies
    /// bytes (`to_raw_value` writes raw values as they are and does not re-validate the result), which keeps
    /// a 3,000-pod list a copy rather than a parse.
    pub fn render(head: &ControllerHead, machines: &[Fragment]) -> Fragment {
        to_fragment(&Self::served(head, machines))
    }

    /// [`ControllerRec::render`], written at the end of `out`.
    pub fn render_into(out: &mut Vec<u8>, head: &ControllerHead, machines: &[Fragment]) {
        if let Err(err) = serde_json::to_writer(&mut *out, &Self::served(head, machines)) {
            tracing::error!(%err, "serializing a served shape failed");
            out.extend_from_slice(b"null");
        }
    }

    fn served<'a>(head: &'a ControllerHead, machines: &'a [Fragment]) -> impl Serialize + 'a {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Served<'a> {
            name: &'a str,
            replicas: i32,
            ready_replicas: i32,
            labels: &'a RawValue,
            provider_metadata: &'a RawValue,
            machines: &'a [Fragment],
        }
        Served {
            name: &head.name,
            replicas: head.replicas,
            ready_replicas: head.ready_replicas,
            labels: &head.labels,
            provider_metadata: &head.provider_metadata,
            machines,
        }
    }
}

pub(crate) struct LabeledRec {
    pub labels: Box<[(Arc<str>, Arc<str>)]>,
    pub fragment: Fragment,
    pub rv: u64,
}

#[derive(Default)]
pub(crate) struct ScopeData {
    /// Changes with every change to the scope's machines or controllers (a value of the store-wide counter,
    /// so a removed and re-created scope never repeats one): a rendered controller list is reused while it
    /// holds.
    pub generation: u64,
    pub machines: BTreeMap<Name, MachineRec>,
    pub machine_labels: Postings,
    pub by_top: Postings,
    by_rs: HashMap<Name, BTreeSet<Name>>,
    pub controllers: BTreeMap<ControllerKind, BTreeMap<Name, ControllerRec>>,
    pub services: BTreeMap<Name, LabeledRec>,
    pub service_labels: Postings,
    pub gateways: BTreeMap<Name, Fragment>,
    pub httproutes: BTreeMap<Name, Fragment>,
}

impl ScopeData {
    pub fn controller(&self, kind: ControllerKind, name: &str) -> Option<&ControllerRec> {
        self.controllers.get(&kind).and_then(|m| m.get(name))
    }

    pub fn machines_of(&self, kind: ControllerKind, name: &str) -> Vec<Fragment> {
        self.by_top
            .get(kind.as_str(), name)
            .map(|names| {
                names.iter().filter_map(|n| self.machines.get(n)).map(|m| m.fragment.clone()).collect()
            })
            .unwrap_or_default()
    }

    fn is_empty(&self) -> bool {
        self.machines.is_empty()
            && self.controllers.values().all(BTreeMap::is_empty)
            && self.services.is_empty()
            && self.gateways.is_empty()
            && self.httproutes.is_empty()
    }
}

/// Match records by label pairs (AND): walk the smallest posting list, check the rest on each record.
pub(crate) fn select<'a, R>(
    records: &'a BTreeMap<Name, R>,
    postings: &Postings,
    filter: &[(String, String)],
    labels_of: impl Fn(&R) -> &[(Arc<str>, Arc<str>)],
) -> Vec<&'a R> {
    if filter.is_empty() {
        return records.values().collect();
    }
    let mut smallest: Option<&BTreeSet<Name>> = None;
    for (k, v) in filter {
        match postings.get(k, v) {
            None => return Vec::new(),
            Some(set) if smallest.is_none_or(|s| set.len() < s.len()) => smallest = Some(set),
            Some(_) => {}
        }
    }
    let Some(candidates) = smallest else { return Vec::new() };
    candidates
        .iter()
        .filter_map(|n| records.get(n))
        .filter(|r| {
            let labels = labels_of(r);
            filter.iter().all(|(k, v)| labels.iter().any(|(lk, lv)| **lk == **k && **lv == **v))
        })
        .collect()
}

/// A controller's served fields other than its machines.
pub(crate) struct ControllerHead {
    name: Name,
    replicas: i32,
    ready_replicas: i32,
    labels: Fragment,
    provider_metadata: Fragment,
}

/// Every record of one provider.
#[derive(Default)]
pub(crate) struct Store {
    pub scopes: HashMap<Name, ScopeData>,
    /// k8s: the namespaces that exist (from the namespace watcher).
    pub namespaces: BTreeSet<Name>,
    pub interner: Interner,
    removals: u32,
    /// The last generation handed to a scope.
    generations: u64,
}

const GC_EVERY_REMOVALS: u32 = 4096;

impl Store {
    pub fn scope(&self, scope: &str) -> Option<&ScopeData> {
        self.scopes.get(scope)
    }

    /// The scope, created if absent, with a new generation: every caller changes it.
    fn scope_mut(&mut self, scope: &str) -> &mut ScopeData {
        if !self.scopes.contains_key(scope) {
            let key = self.interner.get(scope);
            self.scopes.insert(key, ScopeData::default());
        }
        self.generations += 1;
        let generation = self.generations;
        let data = self.scopes.get_mut(scope).unwrap_or_else(|| unreachable!("inserted above"));
        data.generation = generation;
        data
    }

    /// An existing scope, with a new generation: the caller is about to change it.
    fn existing_mut(&mut self, scope: &str) -> Option<&mut ScopeData> {
        let data = self.scopes.get_mut(scope)?;
        self.generations += 1;
        data.generation = self.generations;
        Some(data)
    }

    /// Drop an emptied scope, and now and then forget interned strings no record uses (churn would
    /// otherwise grow the interner with every label value ever seen).
    fn after_removal(&mut self, scope: &str) {
        if self.scopes.get(scope).is_some_and(ScopeData::is_empty) {
            self.scopes.remove(scope);
        }
        self.removals += 1;
        if self.removals >= GC_EVERY_REMOVALS {
            self.removals = 0;
            self.interner.gc();
        }
    }

    fn intern_labels(&mut self, labels: &Labels) -> Box<[(Arc<str>, Arc<str>)]> {
        labels.iter().map(|(k, v)| (self.interner.get(k), self.interner.get(v))).collect()
    }

    fn top_ref(&mut self, kind: &str, name: &str, api_version: &str) -> TopRef {
        TopRef {
            kind: self.interner.get(kind),
            name: self.interner.get(name),
            api_version: self.interner.get(api_version),
        }
    }

    /// A pod's top owner: through its ReplicaSet to a Deployment when the set is known to have one.
    fn resolve(&self, scope: &str, direct: Option<&TopRef>) -> Option<TopRef> {
        let direct = direct?;
        if &*direct.kind == "ReplicaSet"
            && let Some(owner) = self
                .scope(scope)
                .and_then(|s| s.controller(ControllerKind::ReplicaSet, &direct.name))
                .and_then(|rs| rs.owner.as_ref())
                .filter(|o| &*o.kind == "Deployment")
        {
            return Some(owner.clone());
        }
        Some(direct.clone())
    }

    /// The resourceVersion cached for an object of watcher kind `kind`, if it is cached and has one.
    pub fn cached_rv(&self, kind: &str, scope: &str, name: &str) -> Option<u64> {
        let data = self.scope(scope)?;
        let rv = match kind {
            kinds::PODS => data.machines.get(name)?.rv,
            kinds::SERVICES => data.services.get(name)?.rv,
            kinds::DEPLOYMENTS => data.controller(ControllerKind::Deployment, name)?.rv,
            kinds::STATEFULSETS => data.controller(ControllerKind::StatefulSet, name)?.rv,
            kinds::REPLICASETS => data.controller(ControllerKind::ReplicaSet, name)?.rv,
            kinds::REPLICATIONCONTROLLERS => data.controller(ControllerKind::ReplicationController, name)?.rv,
            _ => return None,
        };
        Some(rv).filter(|rv| *rv > 0)
    }

    // ---- machines

    /// k8s: upsert a projected pod, resolving its top owner from the cache.
    pub fn upsert_pod(&mut self, scope: &str, pod: PodModel, rv: u64) {
        let PodModel { mut machine, owner } = pod;
        let direct = owner.map(|o| self.top_ref(&o.kind, &o.name, &o.api_version));
        let top = self.resolve(scope, direct.as_ref());
        machine.controller = top.as_ref().map(TopRef::served);
        let rs = direct.as_ref().filter(|d| &*d.kind == "ReplicaSet").map(|d| d.name.clone());
        self.insert_machine(scope, machine, direct, rs, top, rv);
    }

    /// ecs (or any pre-resolved machine): `machine.controller` is already the top owner.
    pub fn upsert_resolved_machine(&mut self, scope: &str, machine: Machine) {
        let top = machine.controller.as_ref().map(|c| self.top_ref(&c.kind, &c.name, &c.api_version));
        self.insert_machine(scope, machine, top.clone(), None, top, 0);
    }

    fn insert_machine(
        &mut self,
        scope: &str,
        machine: Machine,
        direct: Option<TopRef>,
        rs: Option<Name>,
        top: Option<TopRef>,
        rv: u64,
    ) {
        let fragment = to_fragment(&machine);
        if let Some(old) = self.scopes.get_mut(scope).and_then(|s| s.machines.get_mut(machine.id.as_str()))
            && old.fragment.get() == fragment.get()
            && old.direct == direct
        {
            old.rv = rv;
            return;
        }
        let labels = self.intern_labels(&machine.labels);
        // Machine names are unique: sharing them through the interner would only cost memory.
        let name: Name = Arc::from(machine.id.as_str());
        self.remove_machine(scope, &machine.id);
        let data = self.scope_mut(scope);
        for (k, v) in labels.iter() {
            data.machine_labels.insert(k, v, &name);
        }
        if let Some(t) = &top {
            data.by_top.insert(&t.kind, &t.name, &name);
        }
        if let Some(rs) = &rs {
            data.by_rs.entry(rs.clone()).or_default().insert(name.clone());
        }
        data.machines.insert(name, MachineRec { labels, rs, direct, top, fragment, rv });
    }

    pub fn remove_machine(&mut self, scope: &str, name: &str) -> bool {
        if !self.scopes.get(scope).is_some_and(|s| s.machines.contains_key(name)) {
            return false;
        }
        let Some(data) = self.existing_mut(scope) else { return false };
        let Some(old) = data.machines.remove(name) else { return false };
        for (k, v) in old.labels.iter() {
            data.machine_labels.remove(k, v, name);
        }
        if let Some(t) = &old.top {
            data.by_top.remove(&t.kind, &t.name, name);
        }
        if let Some(rs) = &old.rs
            && let Some(set) = data.by_rs.get_mut(rs)
        {
            set.remove(name);
            if set.is_empty() {
                data.by_rs.remove(rs);
            }
        }
        self.after_removal(scope);
        true
    }

    /// Re-resolve the pods of ReplicaSet `rs` after the set arrived, changed hands or went.
    fn reresolve_rs(&mut self, scope: &str, rs: &str) {
        let Some(pods) = self.scope(scope).and_then(|s| s.by_rs.get(rs)).cloned() else { return };
        for pod in pods {
            let Some(rec) = self.scope(scope).and_then(|s| s.machines.get(&pod)) else { continue };
            let new_top = self.resolve(scope, rec.direct.as_ref());
            if new_top == rec.top {
                continue;
            }
            let mut machine: Machine = match serde_json::from_str(rec.fragment.get()) {
                Ok(m) => m,
                Err(err) => {
                    tracing::error!(%err, pod = %pod, "cached machine does not parse back");
                    continue;
                }
            };
            machine.controller = new_top.as_ref().map(TopRef::served);
            let (direct, rs_name, rv) = (rec.direct.clone(), rec.rs.clone(), rec.rv);
            self.insert_machine(scope, machine, direct, rs_name, new_top, rv);
        }
    }

    // ---- controllers

    pub fn upsert_controller(
        &mut self,
        scope: &str,
        model: ControllerModel,
        provider_metadata: &BTreeMap<String, String>,
        rv: u64,
    ) {
        let owner = model.owner.as_ref().map(|o: &Owner| self.top_ref(&o.kind, &o.name, &o.api_version));
        let name = self.interner.get(&model.name);
        let head = Arc::new(ControllerHead {
            name: name.clone(),
            replicas: model.replicas,
            ready_replicas: model.ready_replicas,
            labels: to_fragment(&model.labels),
            provider_metadata: to_fragment(provider_metadata),
        });
        let kind = model.kind;
        let data = self.scope_mut(scope);
        let old_owner = data.controller(kind, &name).map(|c| c.owner.clone());
        let rec = ControllerRec {
            kind,
            name: name.clone(),
            replicas: model.replicas,
            ready_replicas: model.ready_replicas,
            owner: owner.clone(),
            head,
            rv,
        };
        data.controllers.entry(kind).or_default().insert(name.clone(), rec);
        if kind == ControllerKind::ReplicaSet && old_owner != Some(owner) {
            self.reresolve_rs(scope, &name);
        }
    }

    pub fn remove_controller(&mut self, scope: &str, kind: ControllerKind, name: &str) -> bool {
        let Some(data) = self.existing_mut(scope) else { return false };
        let removed = data.controllers.get_mut(&kind).and_then(|m| m.remove(name)).is_some();
        if removed && kind == ControllerKind::ReplicaSet {
            self.reresolve_rs(scope, name);
        }
        self.after_removal(scope);
        removed
    }

    // ---- services and Gateway API objects

    pub fn upsert_service(&mut self, scope: &str, service: &Service, rv: u64) {
        let fragment = to_fragment(service);
        if let Some(old) = self.scopes.get_mut(scope).and_then(|s| s.services.get_mut(service.name.as_str()))
            && old.fragment.get() == fragment.get()
        {
            old.rv = rv;
            return;
        }
        self.remove_service(scope, &service.name);
        let labels = self.intern_labels(&service.labels);
        let name: Name = Arc::from(service.name.as_str());
        let data = self.scope_mut(scope);
        for (k, v) in labels.iter() {
            data.service_labels.insert(k, v, &name);
        }
        data.services.insert(name, LabeledRec { labels, fragment, rv });
    }

    pub fn remove_service(&mut self, scope: &str, name: &str) -> bool {
        let Some(data) = self.scopes.get_mut(scope) else { return false };
        let Some(old) = data.services.remove(name) else { return false };
        for (k, v) in old.labels.iter() {
            data.service_labels.remove(k, v, name);
        }
        self.after_removal(scope);
        true
    }

    pub fn upsert_object(&mut self, scope: &str, gateway: bool, name: &str, fragment: Fragment) {
        let name = self.interner.get(name);
        let data = self.scope_mut(scope);
        let map = if gateway { &mut data.gateways } else { &mut data.httproutes };
        map.insert(name, fragment);
    }

    pub fn remove_object(&mut self, scope: &str, gateway: bool, name: &str) -> bool {
        let Some(data) = self.scopes.get_mut(scope) else { return false };
        let map = if gateway { &mut data.gateways } else { &mut data.httproutes };
        let removed = map.remove(name).is_some();
        self.after_removal(scope);
        removed
    }
}
