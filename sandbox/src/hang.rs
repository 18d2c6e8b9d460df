//! Targeted faults for `/sandbox/faults`: which requests a fault applies to (user, verb, resource, name),
//! and the "hang" fault, a wait longer than any client timeout that ends early when the faults change.
//!
//! It decides only whether and how long a request waits; `faults` owns the spec, `http` does the waiting.
//! It must not hold a lock across an await.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long a hang lasts when it names no `ms`: longer than any timeout a client should use.
pub const DEFAULT_HANG: Duration = Duration::from_secs(3600);

/// The request a fault is matched against.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    pub user: &'a str,
    pub verb: &'a str,
    pub resource: &'a str,
    pub name: &'a str,
}

/// Whether `value` is in `list`; an empty list matches everything.
pub fn listed(list: &[String], value: &str) -> bool {
    list.is_empty() || list.iter().any(|v| v == value)
}

/// A request that matches waits `ms` (default an hour) before it is served, or until the faults are set
/// again or cleared, whichever comes first: clearing the faults is how a test ends a hang.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct HangFault {
    pub ms: Option<u64>,
    /// Hang at most this many requests.
    pub count: Option<u64>,
    /// Only requests of these users (`admin`, `anonymous`, or a user of `Sandbox::kubeconfig_yaml_as`).
    pub users: Vec<String>,
    /// Only these audit verbs (get, list, watch, create, update, patch, delete).
    pub verbs: Vec<String>,
    /// Only these resources (`leases`, `deployments/scale`).
    pub resources: Vec<String>,
    /// Only objects of these names.
    pub names: Vec<String>,
}

impl HangFault {
    fn matches(&self, call: &Call<'_>) -> bool {
        self.count != Some(0)
            && listed(&self.users, call.user)
            && listed(&self.verbs, call.verb)
            && listed(&self.resources, call.resource)
            && listed(&self.names, call.name)
    }
}

/// The hang for `call`, if one of `hangs` matches (its count is spent by one); spent faults are dropped.
pub fn take_hang(hangs: &mut Vec<HangFault>, call: &Call<'_>) -> Option<Duration> {
    let found = hangs.iter_mut().find(|h| h.matches(call)).map(|h| {
        if let Some(c) = h.count.as_mut() {
            *c -= 1;
        }
        h.ms.map(Duration::from_millis).unwrap_or(DEFAULT_HANG)
    });
    hangs.retain(|h| h.count != Some(0));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call<'a>(user: &'a str, verb: &'a str, resource: &'a str) -> Call<'a> {
        Call { user, verb, resource, name: "web" }
    }

    #[test]
    fn hangs_match_user_verb_resource_and_name_and_spend_their_count() {
        let mut hangs = vec![HangFault {
            count: Some(1),
            users: vec!["replica-a".into()],
            resources: vec!["leases".into()],
            ..Default::default()
        }];
        assert_eq!(take_hang(&mut hangs, &call("replica-b", "update", "leases")), None);
        assert_eq!(take_hang(&mut hangs, &call("replica-a", "update", "pods")), None);
        assert_eq!(take_hang(&mut hangs, &call("replica-a", "update", "leases")), Some(DEFAULT_HANG));
        assert!(hangs.is_empty(), "a spent hang is dropped");
        let mut hangs = vec![HangFault { ms: Some(50), names: vec!["db".into()], ..Default::default() }];
        assert_eq!(take_hang(&mut hangs, &call("x", "get", "pods")), None);
        let db = Call { name: "db", ..call("x", "get", "pods") };
        assert_eq!(take_hang(&mut hangs, &db), Some(Duration::from_millis(50)));
        assert_eq!(take_hang(&mut hangs, &db), Some(Duration::from_millis(50)), "no count: every time");
    }
}
