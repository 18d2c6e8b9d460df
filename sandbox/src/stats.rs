//! Request counts by verb, resource, namespace, name and user, for `/sandbox/stats`.
//!
//! Each entry is one authorization decision a real API server would make: normally one per request, plus a
//! `create` when a server-side apply creates its object (Kubernetes then authorizes `create` as well as
//! `patch`). The RBAC test derives the rules machinist needs from exactly that. It must stay cheap on the
//! request path (one short mutex section) and never record credentials.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Value, json};

/// What a request asks to do, as RBAC sees it: `resource` carries the subresource (`deployments/scale`);
/// `namespace` and `name` are empty when the request has none (cluster scope, a collection).
#[derive(Clone, Copy, Debug)]
pub struct Access<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// (verb, group, resource, namespace, name, user).
type Key = (String, String, String, String, String, String);

#[derive(Default)]
pub struct Stats {
    counts: Mutex<BTreeMap<Key, u64>>,
}

impl Stats {
    pub fn record(&self, a: &Access<'_>, user: &str) {
        let key = (
            a.verb.into(),
            a.group.into(),
            a.resource.into(),
            a.namespace.into(),
            a.name.into(),
            user.into(),
        );
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *c.entry(key).or_default() += 1;
    }

    pub fn reset(&self) {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// `{"total": N, "by_verb": {...}, "by_user": {...}, "requests": [{"verb", "group", "resource",
    /// "namespace", "name", "user", "count"}]}`.
    pub fn to_json(&self) -> Value {
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut by_verb: BTreeMap<&str, u64> = BTreeMap::new();
        let mut by_user: BTreeMap<&str, u64> = BTreeMap::new();
        let requests: Vec<Value> = c
            .iter()
            .map(|((verb, group, resource, namespace, name, user), n)| {
                *by_verb.entry(verb).or_default() += n;
                *by_user.entry(user).or_default() += n;
                json!({"verb": verb, "group": group, "resource": resource, "namespace": namespace,
                       "name": name, "user": user, "count": n})
            })
            .collect();
        json!({"total": c.values().sum::<u64>(), "by_verb": by_verb, "by_user": by_user, "requests": requests})
    }
}
