//! Read-your-writes against late watch events: what machinist itself wrote through the cache (an object at
//! resourceVersion N, or its deletion at N) is pinned, and a watch event for that object older than the pin
//! is ignored, until the watch catches up.
//!
//! How resourceVersions are compared: Kubernetes calls them opaque, but every real API server and the
//! sandbox use etcd's revision, a decimal integer that grows with every change; the cache already parses them
//! so (`K8sObject::resource_version`). A write whose resourceVersion is unknown (absent, or not an integer) is
//! not pinned: with nothing to compare, the watch decides, as before.
//!
//! A pin ends when the watch delivers an event for the object at or above its resourceVersion (the write
//! itself, or anything after it), when the watch deletes the object, or after [`PIN_TTL`] at most: the pin
//! protects a write against a lagging watch, and a watch that lags a whole TTL behind machinist's own write
//! is a failing watch (readiness reports it), not a reordering. It holds data only: the cache's lock guards it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::project::ObjectKey;

/// How long a pin protects a write at most.
pub const PIN_TTL: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
struct Pin {
    rv: u64,
    deleted: bool,
    at: Instant,
}

/// What a watch event is, for [`Pins::admit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    Apply,
    Delete,
}

#[derive(Default)]
pub(crate) struct Pins(HashMap<(&'static str, ObjectKey), Pin>);

impl Pins {
    /// machinist wrote `key` and the server answered it at `rv`.
    pub fn wrote(&mut self, kind: &'static str, key: &ObjectKey, rv: Option<u64>) {
        self.pin(kind, key, rv, false);
    }

    /// machinist deleted `key`; the server answered the deletion at `rv`.
    pub fn deleted(&mut self, kind: &'static str, key: &ObjectKey, rv: Option<u64>) {
        self.pin(kind, key, rv, true);
    }

    fn pin(&mut self, kind: &'static str, key: &ObjectKey, rv: Option<u64>, deleted: bool) {
        match rv.filter(|rv| *rv > 0) {
            Some(rv) => {
                self.0.insert((kind, key.clone()), Pin { rv, deleted, at: Instant::now() });
            }
            None => {
                self.0.remove(&(kind, key.clone()));
            }
        }
    }

    /// Whether a watch event at `rv` about `key` may change the cache; an event that has caught up with the
    /// pin ends it.
    pub fn admit(&mut self, kind: &'static str, key: &ObjectKey, rv: Option<u64>, seen: Seen) -> bool {
        let map_key = (kind, key.clone());
        let Some(pin) = self.0.get(&map_key).copied() else { return true };
        let Some(rv) = rv.filter(|rv| *rv > 0) else {
            self.0.remove(&map_key);
            return true;
        };
        let stale = pin.at.elapsed() < PIN_TTL
            && match (pin.deleted, seen) {
                // A late event from before our deletion would resurrect the object.
                (true, Seen::Apply) => rv <= pin.rv,
                (true, Seen::Delete) => false,
                // A late event from before our write would undo it (or delete what we recreated).
                (false, _) => rv < pin.rv,
            };
        if !stale {
            self.0.remove(&map_key);
        }
        !stale
    }

    /// During a relist: whether a listed copy at `rv` may replace what the cache holds (a relist is served
    /// from a list that may predate the pin; the watch that follows it delivers what came after).
    pub fn admit_listed(&mut self, kind: &'static str, key: &ObjectKey, rv: u64) -> bool {
        self.admit(kind, key, Some(rv), Seen::Apply)
    }

    /// During a relist: whether an object the list did not return may stay, because machinist wrote it more
    /// recently than the list can show.
    pub fn keeps_unlisted(&self, kind: &'static str, key: &ObjectKey) -> bool {
        self.0.get(&(kind, key.clone())).is_some_and(|p| !p.deleted && p.at.elapsed() < PIN_TTL)
    }

    /// Pins past their TTL are forgotten.
    pub fn prune(&mut self) {
        self.0.retain(|_, p| p.at.elapsed() < PIN_TTL);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey { namespace: Some("default".into()), name: name.into() }
    }

    #[test]
    fn a_write_holds_until_the_watch_catches_up() {
        let mut pins = Pins::default();
        pins.wrote("deployments", &key("web"), Some(200));
        assert!(!pins.admit("deployments", &key("web"), Some(199), Seen::Apply), "a late event");
        assert!(!pins.admit("deployments", &key("web"), Some(150), Seen::Delete), "a late delete");
        assert!(pins.admit("pods", &key("web"), Some(1), Seen::Apply), "another kind is not pinned");
        assert!(pins.admit("deployments", &key("web"), Some(200), Seen::Apply), "the write itself");
        assert_eq!(pins.len(), 0, "caught up: unpinned");
        assert!(pins.admit("deployments", &key("web"), Some(100), Seen::Apply), "no pin, the watch rules");
    }

    #[test]
    fn a_delete_holds_off_resurrection_but_not_a_recreation() {
        let mut pins = Pins::default();
        pins.deleted("deployments", &key("web"), Some(300));
        assert!(!pins.admit("deployments", &key("web"), Some(299), Seen::Apply));
        assert!(!pins.admit("deployments", &key("web"), Some(300), Seen::Apply));
        assert!(pins.admit("deployments", &key("web"), Some(301), Seen::Apply), "created again later");
        pins.deleted("deployments", &key("api"), Some(300));
        assert!(pins.admit("deployments", &key("api"), Some(300), Seen::Delete), "the watch saw it go");
        assert!(pins.admit("deployments", &key("api"), Some(10), Seen::Apply));
    }

    #[test]
    fn unknown_versions_are_not_pinned_and_relists_keep_recent_writes() {
        let mut pins = Pins::default();
        pins.wrote("deployments", &key("web"), None);
        assert_eq!(pins.len(), 0);
        pins.wrote("deployments", &key("web"), Some(5));
        assert!(pins.keeps_unlisted("deployments", &key("web")));
        assert!(!pins.admit_listed("deployments", &key("web"), 4));
        assert!(pins.admit("deployments", &key("web"), None, Seen::Apply), "no version: the watch decides");
        pins.deleted("deployments", &key("web"), Some(9));
        assert!(!pins.keeps_unlisted("deployments", &key("web")), "a deleted object is not kept");
    }
}
