//! Readiness gating and scope admission.

use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::watcher::Event;
use serde_json::json;

use super::fixtures::*;
use crate::cache::ReadError;
use crate::cache::{Cache, PodView, kinds};

fn not_ready(r: Result<impl Sized, ReadError>) -> bool {
    matches!(r, Err(ReadError::NotReady { provider: "k8s", retry_after_secs: 1..=5 }))
}

#[test]
fn reads_are_refused_until_every_kind_listed_once() {
    let cache = Cache::new_k8s(vec![]);
    assert!(not_ready(cache.machines("default", &[])));
    // Init alone is not a list (kube's watcher emits it before listing anything).
    cache.watcher_event::<PodView>(Event::Init);
    cache.watcher_event(Event::InitApply(pod("default", "a", json!({}), None)));
    list::<Namespace>(&cache, vec![namespace("default")]);
    for kind in kinds::ALL.iter().filter(|k| ![kinds::PODS, kinds::NAMESPACES, kinds::HTTPROUTES].contains(k))
    {
        init_done_empty(&cache, kind);
        assert!(!cache.synced());
        assert!(not_ready(cache.machines("default", &[])), "partial list served after {kind}");
    }
    cache.skip_kind(kinds::HTTPROUTES);
    assert!(!cache.synced(), "pods have not finished listing");
    assert!(not_ready(cache.controllers("default")));
    cache.watcher_event::<PodView>(Event::InitDone);
    assert!(cache.synced());
    assert_eq!(machine_ids(&cache, "default", &[]), ["a"]);
    assert!(cache.unsynced().is_empty());
}

#[test]
fn unknown_namespaces_are_not_watched_when_watching_all() {
    let cache = synced(&["default", "empty"]);
    assert!(cache.machines("empty", &[]).expect("an existing namespace with nothing").is_empty());
    assert!(cache.controllers("empty").expect("empty").is_empty());
    assert!(matches!(
        cache.machines("nope", &[]),
        Err(ReadError::ScopeNotWatched { scope_kind: "namespace", .. })
    ));
    cache.watcher_event(Event::Delete(namespace("empty")));
    assert!(matches!(cache.machines("empty", &[]), Err(ReadError::ScopeNotWatched { .. })));
}

#[test]
fn configured_namespaces_gate_scopes_and_readiness_per_namespace() {
    let cache = Cache::new_k8s(vec!["a".into(), "b".into()]);
    // Out-of-list scopes are refused even before sync.
    assert!(matches!(cache.machines("c", &[]), Err(ReadError::ScopeNotWatched { .. })));
    for kind in kinds::ALL.iter().filter(|k| **k != kinds::NAMESPACES && **k != kinds::PODS) {
        init_done_empty(&cache, kind);
    }
    cache.watcher_event_in::<PodView>(Some("a"), Event::Init);
    cache.watcher_event_in(Some("a"), Event::InitApply(pod("a", "pa", json!({}), None)));
    cache.watcher_event_in::<PodView>(Some("a"), Event::InitDone);
    assert!(!cache.synced(), "namespace b's pods have not listed");
    assert_eq!(cache.unsynced(), ["pods/b"]);
    cache.watcher_event_in::<PodView>(Some("b"), Event::Init);
    cache.watcher_event_in(Some("b"), Event::InitApply(pod("b", "pb", json!({}), None)));
    cache.watcher_event_in::<PodView>(Some("b"), Event::InitDone);
    assert!(cache.synced());
    // A relist of namespace a leaves namespace b alone.
    cache.watcher_event_in::<PodView>(Some("a"), Event::Init);
    cache.watcher_event_in::<PodView>(Some("a"), Event::InitDone);
    assert!(machine_ids(&cache, "a", &[]).is_empty());
    assert_eq!(machine_ids(&cache, "b", &[]), ["pb"]);
    // No namespace watcher: an empty configured namespace is served as empty.
    assert!(matches!(cache.machines("c", &[]), Err(ReadError::ScopeNotWatched { .. })));
}
