//! Writes: stale PUTs, patch flavours, server-side apply, dryRun, /status, finalizers and GC.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use serde_json::{Value, json};

use crate::common;

fn dep(name: &str, replicas: i32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]}]}}}})
}

fn api_err(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason),
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test]
async fn a_put_with_a_stale_resource_version_conflicts() {
    let (sb, c) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let api: Api<ConfigMap> = Api::namespaced(c, &ns);
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "x"}, "data": {"a": "1"}})).expect("cm");
    let first = api.create(&PostParams::default(), &cm).await.expect("create");
    let mut newer = first.clone();
    newer.data = Some([("a".to_string(), "2".to_string())].into());
    api.replace("x", &PostParams::default(), &newer).await.expect("first replace");
    let mut stale = first;
    stale.data = Some([("a".to_string(), "3".to_string())].into());
    let err = api.replace("x", &PostParams::default(), &stale).await.expect_err("stale");
    assert_eq!(api_err(err), (409, "Conflict".into()));
    assert_eq!(api.get("x").await.expect("get").data.unwrap_or_default()["a"], "2");
    let err = api.replace("nope", &PostParams::default(), &newer).await.expect_err("absent");
    assert_eq!(api_err(err).0, 400, "a body naming another object than the URL is a bad request");
    newer.metadata.name = Some("nope".into());
    newer.metadata.resource_version = None;
    let err = api.replace("nope", &PostParams::default(), &newer).await.expect_err("absent");
    assert_eq!(api_err(err), (404, "NotFound".into()));
}

#[tokio::test]
async fn patch_flavours_strategic_json_with_test_and_rv_precondition() {
    let (sb, c) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let api: Api<Deployment> = Api::namespaced(c, &ns);
    api.create(&PostParams::default(), &serde_json::from_value(dep("web", 1)).expect("dep"))
        .await
        .expect("create");
    let pp = PatchParams::default();
    // Strategic: containers merge by name, env by name.
    let p = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "env": [{"name": "B", "value": "2"}]}, {"name": "side", "image": "side:1"}]}}}});
    let d = api.patch("web", &pp, &Patch::Strategic(p)).await.expect("strategic");
    let v = serde_json::to_value(&d).expect("json");
    let containers = &v["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().map(Vec::len), Some(2));
    assert_eq!(containers[0]["image"], "app:1", "fields not in the patch are kept");
    assert_eq!(containers[0]["env"], json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]));
    // JSON patch with a failing test changes nothing.
    let bad: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/replicas", "value": 9}, {"op": "replace", "path": "/spec/replicas", "value": 3}]))
    .expect("patch");
    let err = api.patch("web", &pp, &Patch::<()>::Json(bad)).await.expect_err("test fails");
    assert_eq!(api_err(err), (422, "Invalid".into()));
    let good: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/replicas", "value": 1}, {"op": "replace", "path": "/spec/replicas", "value": 3}]))
    .expect("patch");
    let d = api.patch("web", &pp, &Patch::<()>::Json(good)).await.expect("test passes");
    assert_eq!(d.spec.replicas, Some(3));
    // A resourceVersion in a merge patch is a precondition.
    let stale = json!({"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 5}});
    let err = api.patch("web", &pp, &Patch::Merge(stale)).await.expect_err("stale precondition");
    assert_eq!(api_err(err), (409, "Conflict".into()));
    let rv = api.get("web").await.expect("get").resource_version();
    let fresh = json!({"metadata": {"resourceVersion": rv}, "spec": {"replicas": 5}});
    api.patch("web", &pp, &Patch::Merge(fresh)).await.expect("fresh precondition");
}

#[tokio::test]
async fn status_subresource_separates_status_from_the_rest() {
    let (sb, c) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let api: Api<Deployment> = Api::namespaced(c, &ns);
    api.create(&PostParams::default(), &serde_json::from_value(dep("web", 2)).expect("dep"))
        .await
        .expect("create");
    let pp = PatchParams::default();
    let d = api
        .patch("web", &pp, &Patch::Merge(json!({"spec": {"replicas": 4}, "status": {"replicas": 9}})))
        .await
        .expect("main patch");
    assert!(d.status.as_ref().and_then(|s| s.replicas).is_none(), "main writes ignore status");
    let d = api
        .patch_status(
            "web",
            &pp,
            &Patch::Merge(
                json!({"spec": {"replicas": 7}, "status": {"replicas": 4, "observedGeneration": 2}}),
            ),
        )
        .await
        .expect("status patch");
    assert_eq!(d.status.as_ref().and_then(|s| s.replicas), Some(4));
    assert_eq!(d.spec.replicas, Some(4), "status writes ignore spec");
    assert_eq!(d.metadata.generation, Some(2));
    let got = api.get_status("web").await.expect("get status");
    assert_eq!(got.status.and_then(|s| s.observed_generation), Some(2));
}

#[tokio::test]
async fn server_side_apply_tracks_managers_conflicts_and_force() {
    let (sb, c) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let api: Api<Deployment> = Api::namespaced(c, &ns);
    let alice = PatchParams::apply("alice");
    let d = api.patch("web", &alice, &Patch::Apply(dep("web", 2))).await.expect("apply creates");
    assert_eq!(d.spec.replicas, Some(2));
    let mf = d.metadata.managed_fields.clone().unwrap_or_default();
    assert_eq!(mf.len(), 1);
    assert_eq!((mf[0].manager.as_deref(), mf[0].operation.as_deref()), (Some("alice"), Some("Apply")));
    let fields = serde_json::to_value(&mf[0].fields_v1).expect("fieldsV1");
    assert!(fields["f:spec"]["f:replicas"].is_object());
    // bob sets replicas differently: conflict, nothing changes.
    let bob_cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"team": "b"}},
        "spec": {"replicas": 5}});
    let err = api
        .patch("web", &PatchParams::apply("bob"), &Patch::Apply(bob_cfg.clone()))
        .await
        .expect_err("conflict");
    match err {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
            assert!(
                s.message.contains("conflict with \"alice\"") && s.message.contains(".spec.replicas"),
                "{}",
                s.message
            );
        }
        other => panic!("{other}"),
    }
    assert_eq!(api.get("web").await.expect("get").spec.replicas, Some(2));
    // Same value is no conflict: bob co-owns.
    let same = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2}});
    api.patch("web", &PatchParams::apply("carol"), &Patch::Apply(same)).await.expect("shared value");
    // Force takes ownership.
    let d =
        api.patch("web", &PatchParams::apply("bob").force(), &Patch::Apply(bob_cfg)).await.expect("force");
    assert_eq!(d.spec.replicas, Some(5));
    assert_eq!(d.labels().get("team").map(String::as_str), Some("b"));
    let managers: Vec<String> =
        d.metadata.managed_fields.unwrap_or_default().iter().filter_map(|m| m.manager.clone()).collect();
    // carol lost her only field to the force and drops out, as in Kubernetes.
    assert_eq!(managers, ["alice", "bob"]);
    // alice re-applies without the label she never set, and without replicas: replicas stays (bob owns it).
    let mut alice_cfg = dep("web", 0);
    alice_cfg["spec"].as_object_mut().map(|s| s.remove("replicas"));
    let d = api.patch("web", &alice, &Patch::Apply(alice_cfg)).await.expect("alice again");
    assert_eq!(d.spec.replicas, Some(5));
    // alice drops the env var she alone owned: it is removed.
    let mut alice_cfg = dep("web", 0);
    alice_cfg["spec"].as_object_mut().map(|s| s.remove("replicas"));
    alice_cfg["spec"]["template"]["spec"]["containers"][0].as_object_mut().map(|c| c.remove("env"));
    let d = api.patch("web", &alice, &Patch::Apply(alice_cfg)).await.expect("alice drops env");
    let v = serde_json::to_value(&d).expect("json");
    let env = &v["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(env.is_null() || env == &json!([]), "{v}");
    assert_eq!(v["spec"]["template"]["spec"]["containers"][0]["image"], "app:1");
    // An apply without fieldManager is invalid.
    let url = format!("{}/apis/apps/v1/namespaces/{ns}/deployments/web", sb.url());
    let r = common::http()
        .patch(&url)
        .header("content-type", "application/apply-patch+yaml")
        .body("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 422);
}

#[tokio::test]
async fn dry_run_all_stores_nothing() {
    let (sb, c) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let api: Api<ConfigMap> = Api::namespaced(c, &ns);
    let dry = PostParams { dry_run: true, ..Default::default() };
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "x"}, "data": {"a": "1"}})).expect("cm");
    let rv0 = sb.store.resource_version();
    let out = api.create(&dry, &cm).await.expect("dry create");
    assert_eq!(out.name_any(), "x");
    assert!(api.get_opt("x").await.expect("get").is_none());
    api.create(&PostParams::default(), &cm).await.expect("create");
    let rv1 = sb.store.resource_version();
    assert_eq!(rv1, rv0 + 1);
    let dry_patch = PatchParams { dry_run: true, ..Default::default() };
    let out =
        api.patch("x", &dry_patch, &Patch::Merge(json!({"data": {"a": "2"}}))).await.expect("dry patch");
    assert_eq!(out.data.unwrap_or_default()["a"], "2");
    let dry_apply = PatchParams { dry_run: true, ..PatchParams::apply("m") };
    let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "y"}, "data": {"b": "1"}});
    api.patch("y", &dry_apply, &Patch::Apply(cfg)).await.expect("dry apply");
    let dry_delete = DeleteParams { dry_run: true, ..Default::default() };
    api.delete("x", &dry_delete).await.expect("dry delete");
    assert_eq!(api.get("x").await.expect("still there").data.unwrap_or_default()["a"], "1");
    assert!(api.get_opt("y").await.expect("get").is_none());
    assert_eq!(sb.store.resource_version(), rv1, "no write happened");
}

#[tokio::test]
async fn finalizers_hold_deletion_and_owner_references_cascade() {
    let (sb, c) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let rs_api: Api<ReplicaSet> = Api::namespaced(c.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(c.clone(), &ns);
    let rs: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "rs"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}}}}))
    .expect("rs");
    let rs = rs_api.create(&PostParams::default(), &rs).await.expect("rs");
    let owner = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": rs.uid(), "controller": true}]);
    for (name, finalizers) in [("p1", json!([])), ("p2", json!(["example.com/hold"]))] {
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": owner,
            "finalizers": finalizers, "labels": {"a": "b"}}}))
        .expect("pod");
        pods.create(&PostParams::default(), &p).await.expect("pod");
    }
    let orphan: Pod = serde_json::from_value(json!({"metadata": {"name": "keep"}})).expect("pod");
    pods.create(&PostParams::default(), &orphan).await.expect("pod");
    let dp = DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() };
    rs_api.delete("rs", &dp).await.expect("delete rs");
    assert!(rs_api.get_opt("rs").await.expect("get").is_none());
    let left: Vec<String> =
        pods.list(&ListParams::default()).await.expect("list").iter().map(|p| p.name_any()).collect();
    assert_eq!(left, ["keep", "p2"], "p1 collected, p2 held by its finalizer");
    let p2 = pods.get("p2").await.expect("p2");
    assert!(p2.metadata.deletion_timestamp.is_some());
    pods.patch("p2", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await
        .expect("drop finalizer");
    assert!(pods.get_opt("p2").await.expect("get").is_none(), "removed once its finalizers are gone");
    // Orphan propagation keeps dependents and drops their owner reference.
    let rs: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "rs2"},
        "spec": {"selector": {"matchLabels": {"a": "c"}}}}))
    .expect("rs");
    let rs = rs_api.create(&PostParams::default(), &rs).await.expect("rs2");
    let p: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p3", "ownerReferences": [{"apiVersion": "apps/v1",
        "kind": "ReplicaSet", "name": "rs2", "uid": rs.uid()}]}}),
    )
    .expect("pod");
    pods.create(&PostParams::default(), &p).await.expect("p3");
    rs_api.delete("rs2", &DeleteParams::orphan()).await.expect("orphan delete");
    let p3 = pods.get("p3").await.expect("p3 kept");
    assert!(p3.metadata.owner_references.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_contents() {
    let (sb, c) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), &ns);
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x"}})).expect("cm");
    api.create(&PostParams::default(), &cm).await.expect("create");
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(c.clone());
    nss.delete(&ns, &DeleteParams::default()).await.expect("delete ns");
    assert!(api.get_opt("x").await.expect("get").is_none());
    let err = api.create(&PostParams::default(), &cm).await.expect_err("namespace gone");
    assert_eq!(api_err(err), (404, "NotFound".into()));
}

#[tokio::test]
async fn re_applying_the_same_configuration_is_a_no_op() {
    let (sb, c) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let api: Api<Deployment> = Api::namespaced(c, &ns);
    let pp = PatchParams::apply("ctrl");
    let first = api.patch("web", &pp, &Patch::Apply(dep("web", 2))).await.expect("apply");
    let rv = sb.store.resource_version();
    let again = api.patch("web", &pp, &Patch::Apply(dep("web", 2))).await.expect("apply again");
    assert_eq!(again.resource_version(), first.resource_version());
    assert_eq!(sb.store.resource_version(), rv, "no write, no event");
    let changed = api.patch("web", &pp, &Patch::Apply(dep("web", 3))).await.expect("apply a change");
    assert_ne!(changed.resource_version(), first.resource_version());
    assert_eq!(changed.metadata.generation, Some(2));
}
