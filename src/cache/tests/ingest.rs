//! Owner resolution, indexes, kind resolution and relists, driven by scripted watcher events.

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::runtime::watcher::Event;
use serde_json::json;

use super::fixtures::*;
use crate::cache::ReadError;
use crate::cache::{ControllerKind, PodView};

fn some(kind: &str, name: &str) -> Option<(String, String)> {
    Some((kind.to_string(), name.to_string()))
}

#[test]
fn deployment_pod_shows_the_deployment_and_is_listed_under_it() {
    let cache = synced(&["default"]);
    cache.apply(&deployment("default", "web", 2));
    cache.apply(&replicaset("default", "web-abc", Some("web")));
    cache.apply(&pod("default", "web-abc-1", json!({}), Some(("ReplicaSet", "web-abc"))));
    cache.apply(&pod("default", "web-abc-2", json!({}), Some(("ReplicaSet", "web-abc"))));
    assert_eq!(controller_of(&cache, "default", "web-abc-1"), some("Deployment", "web"));

    let list = cache.controllers("default").expect("controllers");
    assert_eq!(names(&list), ["web"], "the owned ReplicaSet is not a top-level controller");
    let c = controller(&list[0]);
    assert_eq!(c.machines.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["web-abc-1", "web-abc-2"]);
    assert_eq!(c.replicas, 2);

    let of = cache.controller_of_machine("default", "web-abc-2").expect("of machine");
    assert_eq!(names(&of), ["web"]);
    assert!(cache.controller_of_machine("default", "nope").expect("of machine").is_empty());
}

#[test]
fn replicaset_arriving_after_its_pods_re_resolves_them() {
    let cache = synced(&["default"]);
    cache.apply(&pod("default", "web-abc-1", json!({}), Some(("ReplicaSet", "web-abc"))));
    assert_eq!(controller_of(&cache, "default", "web-abc-1"), some("ReplicaSet", "web-abc"));
    cache.apply(&replicaset("default", "web-abc", Some("web")));
    assert_eq!(controller_of(&cache, "default", "web-abc-1"), some("Deployment", "web"));
    cache.apply(&deployment("default", "web", 1));
    let c = controller(&cache.controller("default", "web", None).expect("controller"));
    assert_eq!(c.machines.len(), 1);
    assert_eq!(c.machines[0].controller.as_ref().map(|c| c.kind.as_str()), Some("Deployment"));
}

#[test]
fn replicaset_changing_hands_moves_its_pods() {
    let cache = synced(&["default"]);
    cache.apply(&deployment("default", "a", 1));
    cache.apply(&deployment("default", "b", 1));
    cache.apply(&replicaset("default", "rs", Some("a")));
    cache.apply(&pod("default", "rs-1", json!({}), Some(("ReplicaSet", "rs"))));
    assert_eq!(controller_of(&cache, "default", "rs-1"), some("Deployment", "a"));

    cache.apply(&replicaset("default", "rs", Some("b")));
    assert_eq!(controller_of(&cache, "default", "rs-1"), some("Deployment", "b"));
    assert!(controller(&cache.controller("default", "a", None).expect("a")).machines.is_empty());
    assert_eq!(controller(&cache.controller("default", "b", None).expect("b")).machines.len(), 1);

    // Orphaned: the set becomes top-level and its pods point at it.
    cache.apply(&replicaset("default", "rs", None));
    assert_eq!(controller_of(&cache, "default", "rs-1"), some("ReplicaSet", "rs"));
    assert_eq!(names(&cache.controllers("default").expect("list")), ["a", "b", "rs"]);

    // The set goes: its pods keep pointing at the set they name.
    cache.apply(&replicaset("default", "rs", Some("a")));
    cache.delete(&replicaset("default", "rs", Some("a")));
    assert_eq!(controller_of(&cache, "default", "rs-1"), some("ReplicaSet", "rs"));
}

#[test]
fn statefulset_and_bare_pods() {
    let cache = synced(&["default"]);
    cache.apply(&statefulset("default", "db", 1));
    cache.apply(&pod("default", "db-0", json!({}), Some(("StatefulSet", "db"))));
    cache.apply(&pod("default", "lonely", json!({}), None));
    assert_eq!(controller_of(&cache, "default", "db-0"), some("StatefulSet", "db"));
    assert_eq!(controller_of(&cache, "default", "lonely"), None);
    assert!(cache.controller_of_machine("default", "lonely").expect("of").is_empty());
    let db = controller(&cache.controller("default", "db", None).expect("db"));
    assert_eq!(db.provider_metadata.get("kind").map(String::as_str), Some("StatefulSet"));
    assert_eq!(db.machines.len(), 1);
}

#[test]
fn label_filters_are_and_and_unknown_pairs_match_nothing() {
    let cache = synced(&["default"]);
    cache.apply(&pod("default", "a", json!({ "app": "web", "tier": "front" }), None));
    cache.apply(&pod("default", "b", json!({ "app": "web", "tier": "back" }), None));
    cache.apply(&pod("default", "c", json!({ "app": "db", "tier": "back" }), None));
    assert_eq!(machine_ids(&cache, "default", &[]), ["a", "b", "c"]);
    assert_eq!(machine_ids(&cache, "default", &[("app", "web")]), ["a", "b"]);
    assert_eq!(machine_ids(&cache, "default", &[("app", "web"), ("tier", "back")]), ["b"]);
    assert!(machine_ids(&cache, "default", &[("app", "web"), ("tier", "nope")]).is_empty());
    assert!(machine_ids(&cache, "default", &[("nope", "x")]).is_empty());

    // A label change moves the pod between posting lists.
    cache.apply(&pod("default", "b", json!({ "app": "db", "tier": "back" }), None));
    assert_eq!(machine_ids(&cache, "default", &[("app", "web")]), ["a"]);
    assert_eq!(machine_ids(&cache, "default", &[("app", "db"), ("tier", "back")]), ["b", "c"]);

    cache.apply(&service("default", "s1", json!({ "app": "web" }), json!([])));
    cache.apply(&service("default", "s2", json!({ "app": "db" }), json!([])));
    let filter = [("app".to_string(), "db".to_string())];
    assert_eq!(names(&cache.services("default", &filter).expect("services")), ["s2"]);
}

#[test]
fn kind_resolution_prefers_deployment_and_kind_pins() {
    let cache = synced(&["default"]);
    cache.apply(&statefulset("default", "same", 3));
    assert_eq!(
        cache.resolve_controller("default", "same", None).expect("resolve").kind,
        ControllerKind::StatefulSet
    );
    cache.apply(&deployment("default", "same", 2));
    let r = cache.resolve_controller("default", "same", None).expect("resolve");
    assert_eq!((r.kind, r.replicas), (ControllerKind::Deployment, 2));
    let r = cache.resolve_controller("default", "same", Some(ControllerKind::StatefulSet)).expect("resolve");
    assert_eq!((r.kind, r.replicas), (ControllerKind::StatefulSet, 3));
    let c = controller(&cache.controller("default", "same", Some(ControllerKind::StatefulSet)).expect("sts"));
    assert_eq!(c.provider_metadata.get("kind").map(String::as_str), Some("StatefulSet"));

    assert!(matches!(
        cache.resolve_controller("default", "same", Some(ControllerKind::ReplicationController)),
        Err(ReadError::NotFound(_))
    ));
    assert!(matches!(cache.controller("default", "ghost", None), Err(ReadError::NotFound(_))));

    // An owned ReplicaSet is not addressable, not even with kind=ReplicaSet.
    cache.apply(&replicaset("default", "same-abc", Some("same")));
    assert!(matches!(cache.resolve_controller("default", "same-abc", None), Err(ReadError::NotFound(_))));
    assert!(matches!(
        cache.resolve_controller("default", "same-abc", Some(ControllerKind::ReplicaSet)),
        Err(ReadError::NotFound(_))
    ));
    cache.apply(&replicaset("default", "solo", None));
    assert_eq!(
        cache.resolve_controller("default", "solo", None).expect("solo").kind,
        ControllerKind::ReplicaSet
    );
}

#[test]
fn relist_serves_the_old_snapshot_until_init_done_then_drops_what_vanished() {
    let cache = synced(&["default"]);
    list::<PodView>(
        &cache,
        vec![
            pod("default", "a", json!({ "app": "x" }), None),
            pod("default", "b", json!({ "app": "x" }), None),
        ],
    );
    assert_eq!(machine_ids(&cache, "default", &[]), ["a", "b"]);

    // Watch expired (410): a relist starts; only `b` (changed) and `c` come back.
    cache.watcher_event::<PodView>(Event::Init);
    cache.watcher_event(Event::InitApply(pod("default", "b", json!({ "app": "y" }), None)));
    assert_eq!(machine_ids(&cache, "default", &[]), ["a", "b"], "old snapshot mid-relist");
    assert_eq!(machine_ids(&cache, "default", &[("app", "x")]), ["a", "b"]);
    cache.watcher_event(Event::InitApply(pod("default", "c", json!({ "app": "x" }), None)));
    assert_eq!(machine_ids(&cache, "default", &[]), ["a", "b"], "nothing partial is served");
    assert!(cache.synced(), "a relist does not make the cache unready");

    cache.watcher_event::<PodView>(Event::InitDone);
    assert_eq!(machine_ids(&cache, "default", &[]), ["b", "c"]);
    assert_eq!(machine_ids(&cache, "default", &[("app", "x")]), ["c"]);
    assert!(matches!(cache.machine("default", "a"), Err(ReadError::NotFound(_))));
}

#[test]
fn replicaset_relist_dropping_a_set_re_resolves_its_pods() {
    let cache = synced(&["default"]);
    list::<ReplicaSet>(&cache, vec![replicaset("default", "rs", Some("web"))]);
    cache.apply(&pod("default", "rs-1", json!({}), Some(("ReplicaSet", "rs"))));
    assert_eq!(controller_of(&cache, "default", "rs-1"), some("Deployment", "web"));
    list::<ReplicaSet>(&cache, vec![]);
    assert_eq!(controller_of(&cache, "default", "rs-1"), some("ReplicaSet", "rs"));
}

#[test]
fn deletes_remove_from_every_index() {
    let cache = synced(&["default"]);
    cache.apply(&deployment("default", "web", 1));
    cache.apply(&replicaset("default", "web-1", Some("web")));
    let p = pod("default", "web-1-a", json!({ "app": "web" }), Some(("ReplicaSet", "web-1")));
    cache.watcher_event(Event::Apply(p.clone()));
    cache.watcher_event(Event::Delete(p));
    assert!(machine_ids(&cache, "default", &[("app", "web")]).is_empty());
    assert!(controller(&cache.controller("default", "web", None).expect("web")).machines.is_empty());
    assert!(cache.controller_of_machine("default", "web-1-a").expect("of").is_empty());
}

#[test]
fn a_write_response_older_than_the_watched_copy_does_not_undo_it() {
    let cache = synced(&["default"]);
    let mut newer = deployment("default", "web", 5);
    newer.metadata.resource_version = Some("12".into());
    cache.watcher_event(Event::Apply(newer));
    let mut older = deployment("default", "web", 3);
    older.metadata.resource_version = Some("10".into());
    cache.apply(&older);
    assert_eq!(cache.resolve_controller("default", "web", None).expect("web").replicas, 5);

    let mut fresher = deployment("default", "web", 7);
    fresher.metadata.resource_version = Some("13".into());
    cache.apply(&fresher);
    assert_eq!(cache.resolve_controller("default", "web", None).expect("web").replicas, 7);

    // Watch events always apply: the watch is the order of truth.
    cache.watcher_event(Event::Apply(deployment("default", "web", 2)));
    assert_eq!(cache.resolve_controller("default", "web", None).expect("web").replicas, 2);
}

#[test]
fn churn_does_not_grow_the_interner() {
    let cache = synced(&["default"]);
    for i in 0..20_000 {
        let p = pod("default", &format!("p-{i}"), json!({ "app": "web", "unique": format!("u-{i}") }), None);
        cache.watcher_event(Event::Apply(p.clone()));
        cache.watcher_event(Event::Delete(p));
    }
    let interned = cache.inner.read().expect("lock").store.interner.len();
    assert!(interned < 5_000, "{interned} strings interned after churn");
    assert!(machine_ids(&cache, "default", &[]).is_empty());
}

/// The controller list body is rendered once per change of its scope: it must equal the list read
/// fragment by fragment, and every kind of change (pod added, pod relabelled, pod deleted, controller
/// scaled, controller deleted, a change in another scope) must show in the next read, never a stale body.
#[test]
fn the_rendered_controller_list_follows_every_change_of_its_scope() {
    let cache = synced(&["default", "other"]);
    let joined = |cache: &crate::cache::Cache| {
        let list = cache.controllers("default").expect("controllers");
        let parts: Vec<&str> = list.iter().map(|f| f.get()).collect();
        format!("{{\"controllers\":[{}]}}", parts.join(","))
    };
    let body = |cache: &crate::cache::Cache| {
        String::from_utf8(cache.controller_list("default").expect("list").to_vec()).expect("utf-8")
    };
    assert_eq!(body(&cache), "{\"controllers\":[]}");
    cache.apply(&deployment("default", "web", 2));
    cache.apply(&replicaset("default", "web-abc", Some("web")));
    cache.apply(&pod("default", "web-abc-1", json!({ "v": "1" }), Some(("ReplicaSet", "web-abc"))));
    let first = body(&cache);
    assert_eq!(first, joined(&cache));
    assert_eq!(body(&cache), first, "unchanged scope, same body");

    let mut seen = vec![first];
    let mut check = |cache: &crate::cache::Cache, what: &str| {
        let now = body(cache);
        assert_eq!(now, joined(cache), "after {what}");
        seen.push(now);
    };
    cache.apply(&pod("default", "web-abc-2", json!({ "v": "1" }), Some(("ReplicaSet", "web-abc"))));
    check(&cache, "a pod added");
    cache.apply(&pod("default", "web-abc-2", json!({ "v": "2" }), Some(("ReplicaSet", "web-abc"))));
    check(&cache, "a pod relabelled");
    cache.watcher_event(Event::Delete(pod(
        "default",
        "web-abc-1",
        json!({}),
        Some(("ReplicaSet", "web-abc")),
    )));
    check(&cache, "a pod deleted");
    cache.apply(&deployment("default", "web", 5));
    check(&cache, "the deployment scaled");
    cache.apply(&pod("other", "x", json!({}), None));
    check(&cache, "a change in another namespace");
    cache.watcher_event(Event::Delete(deployment("default", "web", 5)));
    check(&cache, "the deployment deleted");
    assert_eq!(seen.last().map(String::as_str), Some("{\"controllers\":[]}"));
    let distinct: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), seen.len() - 1, "every change but the other namespace's changed the body");
}

/// A first list goes straight into the store (no read is served before the first sync): a list restarted
/// midway (the watcher's `Init` again) still ends with exactly the objects of the last list, and what
/// a write put in the store before the list but the list does not have is dropped.
#[test]
fn a_first_list_restarted_midway_ends_with_exactly_the_last_list() {
    let cache = crate::cache::Cache::new_k8s(vec!["default".into()]);
    cache.apply(&pod("default", "written-before", json!({}), None));
    cache.watcher_event_in::<PodView>(Some("default"), Event::Init);
    cache.watcher_event_in(Some("default"), Event::InitApply(pod("default", "a", json!({}), None)));
    cache.watcher_event_in(Some("default"), Event::InitApply(pod("default", "gone", json!({}), None)));
    // The list failed midway; the watcher starts over.
    cache.watcher_event_in::<PodView>(Some("default"), Event::Init);
    cache.watcher_event_in(Some("default"), Event::InitApply(pod("default", "a", json!({ "v": "2" }), None)));
    cache.watcher_event_in(Some("default"), Event::InitApply(pod("default", "b", json!({}), None)));
    cache.watcher_event_in::<PodView>(Some("default"), Event::InitDone);
    for kind in crate::cache::kinds::ALL {
        if kind != crate::cache::kinds::PODS && kind != crate::cache::kinds::NAMESPACES {
            match kind {
                crate::cache::kinds::DEPLOYMENTS => cache
                    .watcher_event_in::<k8s_openapi::api::apps::v1::Deployment>(
                        Some("default"),
                        Event::InitDone,
                    ),
                crate::cache::kinds::STATEFULSETS => cache
                    .watcher_event_in::<k8s_openapi::api::apps::v1::StatefulSet>(
                        Some("default"),
                        Event::InitDone,
                    ),
                crate::cache::kinds::REPLICASETS => {
                    cache.watcher_event_in::<ReplicaSet>(Some("default"), Event::InitDone)
                }
                crate::cache::kinds::REPLICATIONCONTROLLERS => {
                    cache.watcher_event_in::<k8s_openapi::api::core::v1::ReplicationController>(
                        Some("default"),
                        Event::InitDone,
                    )
                }
                crate::cache::kinds::SERVICES => cache
                    .watcher_event_in::<k8s_openapi::api::core::v1::Service>(
                        Some("default"),
                        Event::InitDone,
                    ),
                crate::cache::kinds::GATEWAYS => {
                    cache.watcher_event_in::<crate::cache::Gateway>(Some("default"), Event::InitDone)
                }
                _ => cache.watcher_event_in::<crate::cache::HttpRoute>(Some("default"), Event::InitDone),
            }
        }
    }
    assert!(cache.synced());
    assert_eq!(machine_ids(&cache, "default", &[]), ["a", "b"]);
    assert_eq!(machine_ids(&cache, "default", &[("v", "2")]), ["a"]);
}
