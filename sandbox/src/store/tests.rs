use serde_json::json;

use super::read::encode_token;
use super::*;

fn store_with_ns(ns: &str) -> Store {
    let s = Store::new();
    s.create(&Gvr::namespaces(), "", json!({"metadata": {"name": ns}})).expect("namespace");
    s
}

#[test]
fn create_stamps_metadata_and_rejects_duplicates() {
    let s = store_with_ns("a");
    let p = s.create(&Gvr::pods(), "a", json!({"metadata": {"name": "p"}, "spec": {}})).expect("create");
    assert_eq!(p["kind"], "Pod");
    assert_eq!(p["apiVersion"], "v1");
    assert_eq!(p["metadata"]["generation"], 1);
    assert!(p["metadata"]["uid"].as_str().is_some_and(|u| u.len() == 36));
    let e = s.create(&Gvr::pods(), "a", json!({"metadata": {"name": "p"}})).unwrap_err();
    assert_eq!((e.code, e.reason), (409, "AlreadyExists"));
    let e = s.create(&Gvr::pods(), "nope", json!({"metadata": {"name": "p"}})).unwrap_err();
    assert_eq!((e.code, e.reason), (404, "NotFound"));
    let g = s.create(&Gvr::pods(), "a", json!({"metadata": {"generateName": "web-"}})).expect("generateName");
    assert!(g["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("web-") && n.len() == 9));
}

#[test]
fn update_bumps_generation_only_on_spec_and_noop_is_silent() {
    let s = store_with_ns("a");
    let d = Gvr::deployments();
    s.create(&d, "a", json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}})).expect("create");
    let rv0 = s.resource_version();
    let same = s.update(&d, "a", "d", |_| Ok(())).expect("noop");
    assert_eq!(s.resource_version(), rv0);
    assert_eq!(same["metadata"]["generation"], 1);
    let v = s.update(&d, "a", "d", |o| {
        o["spec"]["replicas"] = json!(2);
        o["status"] = json!({"replicas": 9});
        Ok(())
    });
    let v = v.expect("update");
    assert_eq!(v["metadata"]["generation"], 2);
    assert!(v.get("status").is_none(), "main writes ignore status");
    let v = s.update_status(&d, "a", "d", |o| {
        o["status"] = json!({"replicas": 2});
        o["spec"]["replicas"] = json!(7);
        Ok(())
    });
    let v = v.expect("status");
    assert_eq!(v["status"]["replicas"], 2);
    assert_eq!(v["spec"]["replicas"], 2);
    assert_eq!(v["metadata"]["generation"], 2);
    let e = s
        .update(&d, "a", "d", |o| {
            o["metadata"]["resourceVersion"] = json!("1");
            Ok(())
        })
        .unwrap_err();
    assert_eq!((e.code, e.reason), (409, "Conflict"));
}

#[test]
fn finalizers_hold_deletion_and_owners_cascade() {
    let s = store_with_ns("a");
    let rs = s.create(&Gvr::replicasets(), "a", json!({"metadata": {"name": "rs"}})).expect("rs");
    let uid = rs["metadata"]["uid"].clone();
    let owner = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid}]);
    s.create(&Gvr::pods(), "a", json!({"metadata": {"name": "p1", "ownerReferences": owner}})).expect("p1");
    s.create(
        &Gvr::pods(),
        "a",
        json!({"metadata": {"name": "p2", "ownerReferences": owner, "finalizers": ["x/y"]}}),
    )
    .expect("p2");
    s.delete(&Gvr::replicasets(), "a", "rs").expect("delete");
    assert!(s.get(&Gvr::pods(), "a", "p1").is_none());
    let p2 = s.get(&Gvr::pods(), "a", "p2").expect("held by finalizer");
    assert!(p2["metadata"]["deletionTimestamp"].is_string());
    s.update(&Gvr::pods(), "a", "p2", |o| {
        o["metadata"]["finalizers"] = json!([]);
        Ok(())
    })
    .expect("drop finalizer");
    assert!(s.get(&Gvr::pods(), "a", "p2").is_none());
}

#[test]
fn pagination_is_a_consistent_snapshot() {
    let s = store_with_ns("a");
    let items = (0..100)
        .map(|i| (Gvr::pods(), "a".to_string(), json!({"metadata": {"name": format!("p{i:03}")}})))
        .collect();
    s.create_many(items).expect("seed");
    let q = |cont: Option<String>| ListQuery { limit: Some(30), continue_token: cont, ..Default::default() };
    let first = s.list_page(&Gvr::pods(), Some("a"), &q(None)).expect("page 1");
    // Changes after the first page must not show in later pages.
    s.delete(&Gvr::pods(), "a", "p050").expect("delete");
    s.create(&Gvr::pods(), "a", json!({"metadata": {"name": "p0505"}})).expect("create");
    let mut names: Vec<String> =
        first.items.iter().map(|o| o.value["metadata"]["name"].to_string()).collect();
    let mut cont = first.continue_token;
    while let Some(c) = cont {
        let page = s.list_page(&Gvr::pods(), Some("a"), &q(Some(c))).expect("page");
        assert_eq!(page.resource_version, first.resource_version);
        names.extend(page.items.iter().map(|o| o.value["metadata"]["name"].to_string()));
        cont = page.continue_token;
    }
    assert_eq!(names.len(), 100);
    assert!(names.contains(&"\"p050\"".to_string()));
    s.compact();
    let page = s.list_page(&Gvr::pods(), Some("a"), &q(None)).expect("fresh");
    let e = s.list_page(&Gvr::pods(), Some("a"), &q(Some(encode_token(2, "a", "p010")))).err();
    assert_eq!(e.map(|e| e.code), Some(410));
    assert!(page.continue_token.is_some());
}

#[test]
fn watch_resumes_from_history_or_expires() {
    let s = store_with_ns("a");
    let rv = s.resource_version();
    s.create(&Gvr::pods(), "a", json!({"metadata": {"name": "p"}})).expect("create");
    let w = s.watch(&Gvr::pods(), Some("a"), Some(rv)).expect("watch");
    assert_eq!(w.backlog.len(), 1);
    assert_eq!(w.backlog[0].event_type, EventType::Added);
    s.compact();
    let e = s.watch(&Gvr::pods(), None, Some(rv)).err();
    assert_eq!(e.map(|e| (e.code, e.reason)), Some((410, "Expired")));
    assert!(s.watch(&Gvr::pods(), None, Some(s.resource_version())).is_ok());
}

#[test]
fn crds_register_types_and_validate_instances() {
    let s = store_with_ns("a");
    let crd = json!({"metadata": {"name": "widgets.example.com"}, "spec": {"group": "example.com", "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
        "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object",
                "properties": {"size": {"type": "integer", "maximum": 5}}}}}}}]}});
    let c = s.create(&Gvr::crds(), "", crd).expect("crd");
    assert_eq!(c["status"]["conditions"][1]["type"], "Established");
    let w = Gvr::new("example.com", "v1", "widgets");
    let e = s.create(&w, "a", json!({"metadata": {"name": "x"}, "spec": {"size": 9}})).unwrap_err();
    assert_eq!((e.code, e.reason), (422, "Invalid"));
    assert!(s.get(&w, "a", "x").is_none());
    let ok =
        s.create(&w, "a", json!({"metadata": {"name": "x"}, "spec": {"size": 3, "junk": 1}})).expect("cr");
    assert!(ok["spec"].get("junk").is_none(), "unknown fields are pruned");
    s.delete(&Gvr::crds(), "", "widgets.example.com").expect("delete crd");
    assert!(s.resource_type(&w).is_none());
}

#[test]
fn secrets_and_services_get_their_write_time_defaults() {
    let s = store_with_ns("a");
    let sec = s
        .create(
            &Gvr::new("", "v1", "secrets"),
            "a",
            json!({"metadata": {"name": "s"}, "stringData": {"user": "admin"}}),
        )
        .expect("secret");
    assert_eq!(sec["data"]["user"], "YWRtaW4=");
    assert!(sec.get("stringData").is_none());
    let sec = s
        .update(&Gvr::new("", "v1", "secrets"), "a", "s", |o| {
            o["stringData"] = json!({"pw": "x"});
            Ok(())
        })
        .expect("update");
    assert_eq!((sec["data"]["user"].as_str(), sec["data"]["pw"].as_str()), (Some("YWRtaW4="), Some("eA==")));
    let svc = s
        .create(
            &Gvr::services(),
            "a",
            json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 3042}]}}),
        )
        .expect("service");
    assert_eq!(svc["spec"]["ports"][0], json!({"port": 3042, "protocol": "TCP", "targetPort": 3042}));
    assert!(svc["spec"]["clusterIP"].as_str().is_some_and(|ip| ip.starts_with("10.96.")));
}
