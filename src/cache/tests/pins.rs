//! Read-your-writes against a lagging watch (issue 12, finding 3): what machinist wrote through the cache
//! stays until the watch has caught up with it.

use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::watcher::Event;

use super::fixtures::*;
use crate::cache::Cache;

fn at(mut d: Deployment, rv: u64) -> Deployment {
    d.metadata.resource_version = Some(rv.to_string());
    d
}

fn replicas(cache: &Cache, name: &str) -> Option<i32> {
    cache.controller("default", name, None).ok().map(|f| controller(&f).replicas)
}

#[test]
fn a_late_watch_event_does_not_undo_a_write() {
    let cache = synced(&["default"]);
    cache.watcher_event(Event::Apply(at(deployment("default", "web", 1), 190)));
    // machinist scaled it to 5; the write answered resourceVersion 200.
    cache.apply(&at(deployment("default", "web", 5), 200));
    // The watch lags: an event from before the write (a status update at 199) arrives now.
    cache.watcher_event(Event::Apply(at(deployment("default", "web", 1), 199)));
    assert_eq!(replicas(&cache, "web"), Some(5), "the older event did not overwrite the write");
    // The watch catches up (the write itself, then someone else's later change): the watch rules again.
    cache.watcher_event(Event::Apply(at(deployment("default", "web", 5), 200)));
    cache.watcher_event(Event::Apply(at(deployment("default", "web", 7), 230)));
    assert_eq!(replicas(&cache, "web"), Some(7));
    cache.watcher_event(Event::Apply(at(deployment("default", "web", 2), 210)));
    assert_eq!(replicas(&cache, "web"), Some(2), "without a pin, events apply in the order they come");
}

#[test]
fn a_late_watch_event_does_not_resurrect_a_deletion() {
    let cache = synced(&["default"]);
    cache.watcher_event(Event::Apply(at(deployment("default", "web", 1), 100)));
    // machinist deleted it; the delete answered resourceVersion 300.
    cache.delete(&at(deployment("default", "web", 1), 300));
    cache.watcher_event(Event::Apply(at(deployment("default", "web", 3), 250)));
    assert_eq!(replicas(&cache, "web"), None, "the late event did not bring it back");
    // Created again by someone later: shown.
    cache.watcher_event(Event::Apply(at(deployment("default", "web", 4), 320)));
    assert_eq!(replicas(&cache, "web"), Some(4));
}

#[test]
fn a_late_delete_does_not_remove_what_machinist_created_again() {
    let cache = synced(&["default"]);
    cache.apply(&at(deployment("default", "web", 2), 500));
    cache.watcher_event(Event::Delete(at(deployment("default", "web", 1), 480)));
    assert_eq!(replicas(&cache, "web"), Some(2));
}

#[test]
fn a_relist_from_before_a_write_keeps_the_write() {
    let cache = synced(&["default"]);
    cache.apply(&at(deployment("default", "web", 5), 200));
    cache.apply(&at(deployment("default", "api", 1), 210));
    // The list was served at an older resourceVersion: web at 150, no api yet.
    list(&cache, vec![at(deployment("default", "web", 1), 150), at(deployment("default", "old", 1), 140)]);
    assert_eq!(replicas(&cache, "web"), Some(5));
    assert_eq!(replicas(&cache, "api"), Some(1), "created by machinist after the list: kept");
    assert_eq!(replicas(&cache, "old"), Some(1));
}
