//! The write side of the store: create, replace and delete under the store's lock, with their
//! Kubernetes semantics (stamping, generation, preconditions, finalizers, garbage collection), and the
//! commit of each change to the history and the watchers.
//!
//! A child of `store` so it works on the state under the same lock; callers reach it through the public
//! methods in `store`, which take the lock.

use super::*;

impl Store {
    pub(super) fn create_locked(
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
            let types = crate::registry::crd_types(&obj)
                .map_err(|c| StatusError::invalid("CustomResourceDefinition", &name, c))?;
            obj["status"] = crd_status(&obj, &types);
            if !dry_run {
                let _ = st.reg.register_crd(&obj);
            }
        }
        if dry_run {
            return Ok(Arc::new(obj));
        }
        let created = self.commit(st, gvr, &ns, &name, Some(obj), EventType::Added);
        if *gvr == Gvr::namespaces() {
            // The ServiceAccount controller's first act, done at once so that a client can use the namespace's
            // `default` account as soon as it has the namespace (the controller brings it back if deleted).
            let sa = json!({"metadata": {"name": "default"}});
            if let Err(e) = self.create_locked(st, &Gvr::serviceaccounts(), &name, sa, false) {
                tracing::debug!(namespace = %name, error = %e, "no default ServiceAccount");
            }
        }
        Ok(created)
    }

    pub(super) fn replace_locked(
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
        if let Some(o) = new.as_object_mut() {
            normalize(rt, o);
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
            let types = crate::registry::crd_types(&new)
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

    pub(super) fn delete_locked(
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
    pub(super) fn after_removal(&self, st: &mut State, gvr: &Gvr, name: &str, uid: &str, orphan: bool) {
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
    pub(super) fn force_remove(&self, st: &mut State, gvr: &Gvr, ns: &str, name: &str) {
        let Some(cur) = st.objects.get(gvr).and_then(|t| t.get(&(ns.to_string(), name.to_string()))).cloned()
        else {
            return;
        };
        let uid = cur.value.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string();
        self.commit(st, gvr, ns, name, Some((*cur.value).clone()), EventType::Deleted);
        self.after_removal(st, gvr, name, &uid, false);
    }

    /// Bumps the resourceVersion, stores (or removes) the object, records and broadcasts the event.
    pub(super) fn commit(
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
