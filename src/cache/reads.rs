//! The reads the providers serve: machines, controllers (with their machines), services, Gateway API
//! objects, and the kind resolution of the write path, each answered from memory under a brief read lock.
//!
//! Every read asks readiness first (`Cache::admit`) and fails with a [`ReadError`]; the providers turn it
//! into their own error type. Nothing here waits or writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::model::{ControllerKind, Fragment, LabelFilter};
use super::store::{self, ControllerRec, ScopeData, select};
use super::{Cache, ReadError, ResolvedController, provider_name};

/// One controller of a list, taken out of the cache to be rendered after its lock is released.
type ListPart = (Arc<store::ControllerHead>, Vec<Fragment>);

type Result<T, E = ReadError> = std::result::Result<T, E>;

impl Cache {
    pub fn machine(&self, scope: &str, id: &str) -> Result<Fragment> {
        let inner = self.read();
        self.admit(&inner, scope)?;
        inner.store.scope(scope).and_then(|s| s.machines.get(id)).map(|m| m.fragment.clone()).ok_or_else(
            || ReadError::NotFound(format!("machine {id} not found in {} {scope}", self.scope_kind)),
        )
    }

    pub fn machines(&self, scope: &str, labels: &LabelFilter) -> Result<Vec<Fragment>> {
        let inner = self.read();
        self.admit(&inner, scope)?;
        let Some(data) = inner.store.scope(scope) else { return Ok(Vec::new()) };
        Ok(select(&data.machines, &data.machine_labels, labels, |m| &m.labels)
            .into_iter()
            .map(|m| m.fragment.clone())
            .collect())
    }

    /// Top-level scalable controllers of the scope, each with its machines.
    pub fn controllers(&self, scope: &str) -> Result<Vec<Fragment>> {
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

    /// The body of the controller list, `{"controllers":[...]}`, as [`Cache::controllers`] has them. Rendered
    /// once per change of the scope and then shared: a read of an unchanged scope is a refcount bump.
    pub fn controller_list(&self, scope: &str) -> Result<bytes::Bytes> {
        let (generation, parts): (u64, Vec<ListPart>) = {
            let inner = self.read();
            self.admit(&inner, scope)?;
            let Some(data) = inner.store.scope(scope) else {
                return Ok(bytes::Bytes::from_static(b"{\"controllers\":[]}"));
            };
            if let Some((generation, body)) = self.memo().get(scope)
                && *generation == data.generation
            {
                return Ok(body.clone());
            }
            let parts = data
                .controllers
                .values()
                .flat_map(BTreeMap::values)
                .filter(|c| c.top_level())
                .map(|c| (c.head.clone(), data.machines_of(c.kind, &c.name)))
                .collect();
            (data.generation, parts)
        };
        // Rendered outside the cache lock: watchers never wait for a reader's copy.
        let size: usize =
            parts.iter().map(|(_, m)| m.iter().map(|f| f.get().len() + 1).sum::<usize>() + 256).sum();
        let mut out = Vec::with_capacity(size + 20);
        out.extend_from_slice(b"{\"controllers\":[");
        for (i, (head, machines)) in parts.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            ControllerRec::render_into(&mut out, head, machines);
        }
        out.extend_from_slice(b"]}");
        let body = bytes::Bytes::from(out);
        let mut memo = self.memo();
        // A slower renderer of an older generation must not replace a newer body.
        if memo.get(scope).is_none_or(|(g, _)| *g < generation) {
            memo.insert(scope.to_string(), (generation, body.clone()));
        }
        Ok(body)
    }

    fn memo(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (u64, bytes::Bytes)>> {
        self.list_memo.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The top-level controller owning machine `machine_id` (0 or 1 items).
    pub fn controller_of_machine(&self, scope: &str, machine_id: &str) -> Result<Vec<Fragment>> {
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

    /// One controller with its machines; `kind` pins the kind, otherwise the resolution order applies.
    pub fn controller(&self, scope: &str, name: &str, kind: Option<ControllerKind>) -> Result<Fragment> {
        let (head, machines) = {
            let inner = self.read();
            self.admit(&inner, scope)?;
            let data = inner.store.scope(scope);
            let rec = self.find(data, scope, name, kind)?;
            (rec.head.clone(), data.map(|d| d.machines_of(rec.kind, name)).unwrap_or_default())
        };
        Ok(ControllerRec::render(&head, &machines))
    }

    pub fn services(&self, scope: &str, labels: &LabelFilter) -> Result<Vec<Fragment>> {
        let inner = self.read();
        self.admit(&inner, scope)?;
        let Some(data) = inner.store.scope(scope) else { return Ok(Vec::new()) };
        Ok(select(&data.services, &data.service_labels, labels, |s| &s.labels)
            .into_iter()
            .map(|s| s.fragment.clone())
            .collect())
    }

    pub fn gateways(&self, scope: &str) -> Result<Vec<Fragment>> {
        let inner = self.read();
        self.admit(&inner, scope)?;
        Ok(inner.store.scope(scope).map(|s| s.gateways.values().cloned().collect()).unwrap_or_default())
    }

    pub fn httproute(&self, scope: &str, name: &str) -> Result<Fragment> {
        let inner = self.read();
        self.admit(&inner, scope)?;
        inner.store.scope(scope).and_then(|s| s.httproutes.get(name)).cloned().ok_or_else(|| {
            ReadError::NotFound(format!("httproute {name} not found in {} {scope}", self.scope_kind))
        })
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
    ) -> Result<&'a ControllerRec> {
        let order = self.resolution_order(kind);
        for k in &order {
            if let Some(rec) = data.and_then(|d| d.controller(*k, name)) {
                if rec.top_level() {
                    return Ok(rec);
                }
                if kind.is_some() {
                    let owner = rec.owner.as_ref().map(|o| o.name.to_string()).unwrap_or_default();
                    return Err(ReadError::NotFound(format!(
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
        Err(ReadError::NotFound(format!("{what} {name} not found in {} {scope}", self.scope_kind)))
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
    ) -> Result<ResolvedController> {
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
