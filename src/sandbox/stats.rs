//! Request counts by verb, resource and user, for `/sandbox/stats`.
//!
//! It must stay cheap on the request path (one short mutex section) and never record credentials.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Value, json};

type Key = (String, String, String, String);

#[derive(Default)]
pub struct Stats {
    counts: Mutex<BTreeMap<Key, u64>>,
}

impl Stats {
    pub fn record(&self, verb: &str, group: &str, resource: &str, user: &str) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *c.entry((verb.into(), group.into(), resource.into(), user.into())).or_default() += 1;
    }

    pub fn reset(&self) {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// `{"total": N, "by_verb": {...}, "requests": [{"verb", "group", "resource", "user", "count"}]}`.
    pub fn to_json(&self) -> Value {
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut by_verb: BTreeMap<&str, u64> = BTreeMap::new();
        let mut by_user: BTreeMap<&str, u64> = BTreeMap::new();
        let requests: Vec<Value> = c
            .iter()
            .map(|((verb, group, resource, user), n)| {
                *by_verb.entry(verb).or_default() += n;
                *by_user.entry(user).or_default() += n;
                json!({"verb": verb, "group": group, "resource": resource, "user": user, "count": n})
            })
            .collect();
        json!({"total": c.values().sum::<u64>(), "by_verb": by_verb, "by_user": by_user, "requests": requests})
    }
}
