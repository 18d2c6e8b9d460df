//! CRUD of each built-in kind, selectors, pagination, the Lease race, `/scale`.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Namespace, Pod, ReplicationController, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::events::v1::Event as EventV1;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use machinist_sandbox::Gvr;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::common;

fn obj<K: DeserializeOwned>(v: serde_json::Value) -> K {
    serde_json::from_value(v).expect("test object decodes")
}

/// create → get → list → patch → replace (RV-guarded) → delete → 404, through one typed Api.
async fn crud<K>(api: Api<K>, object: K)
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let created = api.create(&PostParams::default(), &object).await.expect("create");
    let name = created.name_any();
    let kind = std::any::type_name::<K>();
    assert!(created.uid().is_some(), "{kind}: uid stamped");
    assert!(created.resource_version().is_some(), "{kind}: resourceVersion stamped");
    assert!(created.meta().creation_timestamp.is_some(), "{kind}: creationTimestamp stamped");
    let got = api.get(&name).await.expect("get");
    assert_eq!(got.uid(), created.uid());
    let listed = api.list(&ListParams::default()).await.expect("list");
    assert!(listed.items.iter().any(|o| o.name_any() == name), "{kind}: listed");
    assert!(listed.metadata.resource_version.is_some(), "{kind}: list resourceVersion");
    let patched = api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"patched": "yes"}}})),
        )
        .await
        .expect("patch");
    assert_eq!(patched.labels().get("patched").map(String::as_str), Some("yes"));
    // Simulated controllers may write status in between: re-read and retry on Conflict, as clients do.
    let mut replaced = None;
    for _ in 0..10 {
        let mut changed = api.get(&name).await.expect("get before replace");
        changed.annotations_mut().insert("replaced".into(), "yes".into());
        match api.replace(&name, &PostParams::default(), &changed).await {
            Ok(r) => {
                replaced = Some(r);
                break;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => panic!("{kind}: replace: {e}"),
        }
    }
    let replaced = replaced.expect("replace succeeds within 10 tries");
    assert_eq!(replaced.annotations().get("replaced").map(String::as_str), Some("yes"));
    assert_ne!(replaced.resource_version(), patched.resource_version());
    api.delete(&name, &DeleteParams::default()).await.expect("delete");
    let gone = api.get_opt(&name).await.expect("get after delete");
    assert!(gone.is_none(), "{kind}: gone after delete");
}

fn ns_api<K>(c: &Client, ns: &str) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    Api::namespaced(c.clone(), ns)
}

#[tokio::test]
async fn crud_of_each_builtin_kind() {
    let (sb, c) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let meta = |n: &str| json!({"name": n});
    let pod_spec = json!({"containers": [{"name": "app", "image": "nginx:1.27"}]});
    let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": pod_spec});
    let selector = json!({"matchLabels": {"app": "web"}});
    crud(Api::<Namespace>::all(c.clone()), obj(json!({"metadata": meta("crud-ns")}))).await;
    crud(ns_api::<Pod>(&c, &ns), obj(json!({"metadata": meta("p"), "spec": pod_spec}))).await;
    crud(
        ns_api::<Service>(&c, &ns),
        obj(json!({"metadata": meta("svc"), "spec": {"ports": [{"port": 80}]}})),
    )
    .await;
    crud(ns_api::<Secret>(&c, &ns), obj(json!({"metadata": meta("s"), "stringData": {"k": "v"}}))).await;
    crud(ns_api::<ConfigMap>(&c, &ns), obj(json!({"metadata": meta("cm"), "data": {"k": "v"}}))).await;
    crud(ns_api::<ServiceAccount>(&c, &ns), obj(json!({"metadata": meta("sa")}))).await;
    let involved = json!({"kind": "Pod", "name": "p", "namespace": ns});
    crud(ns_api::<Event>(&c, &ns), obj(json!({"metadata": meta("ev"), "involvedObject": involved}))).await;
    crud(
        ns_api::<EventV1>(&c, &ns),
        obj(json!({"metadata": meta("ev2"), "eventTime": "2026-01-01T00:00:00.000000Z", "reason": "Test",
            "action": "Testing", "reportingController": "tests", "reportingInstance": "t"})),
    )
    .await;
    crud(
        ns_api::<ReplicationController>(&c, &ns),
        obj(json!({"metadata": meta("rc"), "spec": {"replicas": 1, "selector": {"app": "web"}, "template": template}})),
    )
    .await;
    crud(
        ns_api::<Deployment>(&c, &ns),
        obj(json!({"metadata": meta("d"), "spec": {"selector": selector, "template": template}})),
    )
    .await;
    crud(
        ns_api::<StatefulSet>(&c, &ns),
        obj(json!({"metadata": meta("sts"), "spec": {"serviceName": "svc", "selector": selector, "template": template}})),
    )
    .await;
    crud(
        ns_api::<ReplicaSet>(&c, &ns),
        obj(json!({"metadata": meta("rs"), "spec": {"selector": selector, "template": template}})),
    )
    .await;
    crud(ns_api::<Lease>(&c, &ns), obj(json!({"metadata": meta("l"), "spec": {"holderIdentity": "a"}})))
        .await;
    crud(
        ns_api::<HorizontalPodAutoscaler>(&c, &ns),
        obj(json!({"metadata": meta("hpa"), "spec": {"maxReplicas": 3,
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"}}})),
    )
    .await;
    crud(
        Api::<CustomResourceDefinition>::all(c.clone()),
        obj(json!({"metadata": meta("things.example.com"), "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "things", "singular": "thing", "kind": "Thing"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}})),
    )
    .await;
}

#[tokio::test]
async fn deployment_generation_and_defaults() {
    let (sb, c) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let api: Api<Deployment> = ns_api(&c, &ns);
    let d: Deployment = obj(
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
    );
    let d = api.create(&PostParams::default(), &d).await.expect("create");
    assert_eq!(d.metadata.generation, Some(1));
    assert_eq!(d.spec.replicas, Some(1), "replicas defaults to 1");
    let pp = PatchParams::default();
    let d = api
        .patch("web", &pp, &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})))
        .await
        .expect("label");
    assert_eq!(d.metadata.generation, Some(1), "metadata changes keep the generation");
    let d = api.patch("web", &pp, &Patch::Merge(json!({"spec": {"replicas": 4}}))).await.expect("spec");
    assert_eq!(d.metadata.generation, Some(2), "spec changes bump the generation");
}

#[tokio::test]
async fn label_and_field_selectors() {
    // Pods stay Pending unless the test sets their phase: the simulated kubelet waits an hour.
    let opts = machinist_sandbox::SandboxOptions {
        test_hooks: true,
        pod_start_delay: std::time::Duration::from_secs(3600),
        ..Default::default()
    };
    let (sb, c) = common::start_with(opts).await;
    let ns = common::fresh_namespace(&sb);
    let pods: Api<Pod> = ns_api(&c, &ns);
    for (name, app, tier, phase) in [
        ("a", "web", "front", "Running"),
        ("b", "web", "back", "Pending"),
        ("c", "db", "back", "Running"),
        ("d", "", "", "Running"),
    ] {
        let mut labels = serde_json::Map::new();
        if !app.is_empty() {
            labels.insert("app".into(), json!(app));
            labels.insert("tier".into(), json!(tier));
        }
        let p: Pod = obj(json!({"metadata": {"name": name, "labels": labels}, "spec": {"containers": []}}));
        pods.create(&PostParams::default(), &p).await.expect("create");
        sb.store
            .update_status(&Gvr::pods(), &ns, name, |o| {
                o["status"] = json!({"phase": phase});
                Ok(())
            })
            .expect("status");
    }
    let names =
        |l: kube::core::ObjectList<Pod>| -> Vec<String> { l.items.iter().map(|p| p.name_any()).collect() };
    let cases = [
        (ListParams::default().labels("app=web"), vec!["a", "b"]),
        (ListParams::default().labels("app==web,tier!=front"), vec!["b"]),
        (ListParams::default().labels("app in (web,db),tier notin (front)"), vec!["b", "c"]),
        (ListParams::default().labels("app"), vec!["a", "b", "c"]),
        (ListParams::default().labels("!app"), vec!["d"]),
        (ListParams::default().fields("metadata.name=c"), vec!["c"]),
        (ListParams::default().fields("status.phase=Running"), vec!["a", "c", "d"]),
        (ListParams::default().fields("status.phase!=Running").labels("app=web"), vec!["b"]),
        (ListParams::default().fields(&format!("metadata.namespace={ns}")), vec!["a", "b", "c", "d"]),
    ];
    for (lp, want) in cases {
        let got = names(pods.list(&lp).await.expect("list"));
        assert_eq!(got, want, "{:?} {:?}", lp.label_selector, lp.field_selector);
    }
    let all: Api<Pod> = Api::all(c.clone());
    let got = names(all.list(&ListParams::default().labels("tier=back")).await.expect("all namespaces"));
    assert_eq!(got, vec!["b", "c"]);
    let err = pods.list(&ListParams::default().labels("app in web")).await.expect_err("bad selector");
    assert!(matches!(err, kube::Error::Api(s) if s.code == 400));
}

#[tokio::test]
async fn pagination_over_ten_thousand_pods_has_no_duplicates_and_no_gaps() {
    let (sb, c) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let items = (0..10_000)
        .map(|i| {
            (
                Gvr::pods(),
                ns.clone(),
                json!({"metadata": {"name": format!("pod-{i:05}"), "labels": {"app": "load"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]}}),
            )
        })
        .collect();
    sb.store.create_many(items).expect("seed");
    let pods: Api<Pod> = ns_api(&c, &ns);
    let mut seen = std::collections::BTreeSet::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    let mut list_rv = None;
    loop {
        let mut lp = ListParams::default().limit(500);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = pods.list(&lp).await.expect("page");
        pages += 1;
        if pages == 3 {
            // Writes between pages must not leak into a paginated list.
            sb.store.delete(&Gvr::pods(), &ns, "pod-09999").expect("delete");
            sb.store.create(&Gvr::pods(), &ns, json!({"metadata": {"name": "pod-99999"}})).expect("create");
        }
        let rv = page.metadata.resource_version.clone();
        assert!(
            list_rv.is_none() || list_rv == rv,
            "every page is served at the first page's resourceVersion"
        );
        list_rv = rv;
        for p in &page.items {
            assert!(seen.insert(p.name_any()), "duplicate {}", p.name_any());
        }
        token = page.metadata.continue_.clone().filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 20);
    assert_eq!(seen.len(), 10_000);
    assert!(seen.contains("pod-09999") && !seen.contains("pod-99999"));
    let now = pods.list(&ListParams::default()).await.expect("full list");
    assert_eq!(now.items.len(), 10_000);
    assert!(now.items.iter().any(|p| p.name_any() == "pod-99999"));
}

#[tokio::test]
async fn stale_continue_token_is_expired() {
    let (sb, c) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    for i in 0..5 {
        sb.store.create(&Gvr::pods(), &ns, json!({"metadata": {"name": format!("p{i}")}})).expect("pod");
    }
    let pods: Api<Pod> = ns_api(&c, &ns);
    let first = pods.list(&ListParams::default().limit(2)).await.expect("page");
    let token = first.metadata.continue_.clone().expect("a continue token");
    sb.store.compact();
    let err = pods.list(&ListParams::default().limit(2).continue_token(&token)).await.expect_err("too old");
    assert!(matches!(err, kube::Error::Api(s) if s.code == 410 && s.reason == "Expired"));
}

#[tokio::test]
async fn scale_subresource_reads_and_writes_replicas() {
    let (sb, c) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let deps: Api<Deployment> = ns_api(&c, &ns);
    let d: Deployment = obj(json!({"metadata": {"name": "web"}, "spec": {"replicas": 2,
        "selector": {"matchLabels": {"app": "web", "tier": "x"}},
        "template": {"metadata": {"labels": {"app": "web", "tier": "x"}}, "spec": {"containers": []}}}}));
    deps.create(&PostParams::default(), &d).await.expect("create");
    let s = deps.get_scale("web").await.expect("get scale");
    assert_eq!(s.spec.as_ref().and_then(|s| s.replicas), Some(2));
    assert_eq!(s.status.as_ref().and_then(|s| s.selector.clone()).as_deref(), Some("app=web,tier=x"));
    let s = deps
        .patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 5}})))
        .await
        .expect("patch scale");
    assert_eq!(s.spec.as_ref().and_then(|s| s.replicas), Some(5));
    let d = deps.get("web").await.expect("get");
    assert_eq!(d.spec.replicas, Some(5));
    assert_eq!(d.metadata.generation, Some(2));
    let mut stale = s.clone();
    stale.metadata.resource_version = Some("1".into());
    if let Some(spec) = stale.spec.as_mut() {
        spec.replicas = Some(7);
    }
    let err = deps.replace_scale("web", &PostParams::default(), &stale).await.expect_err("stale scale");
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"));
    let sets: Api<StatefulSet> = ns_api(&c, &ns);
    let st: StatefulSet = obj(json!({"metadata": {"name": "db"}, "spec": {"serviceName": "db",
        "selector": {"matchLabels": {"app": "db"}}, "template": {"metadata": {"labels": {"app": "db"}}}}}));
    sets.create(&PostParams::default(), &st).await.expect("sts");
    let s = sets
        .patch_scale("db", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}})))
        .await;
    assert_eq!(s.expect("sts scale").spec.and_then(|s| s.replicas), Some(3));
    let rcs: Api<ReplicationController> = ns_api(&c, &ns);
    let rc: ReplicationController = obj(
        json!({"metadata": {"name": "rc"}, "spec": {"selector": {"app": "rc"}, "template": {"metadata": {"labels": {"app": "rc"}}}}}),
    );
    rcs.create(&PostParams::default(), &rc).await.expect("rc");
    let s = rcs.get_scale("rc").await.expect("rc scale");
    assert_eq!(s.status.and_then(|s| s.selector).as_deref(), Some("app=rc"));
}

#[tokio::test]
async fn a_lease_has_one_holder_when_two_clients_race() {
    let (sb, c1) = common::start().await;
    let c2 = common::client_for(&sb, false).await;
    let ns = common::fresh_namespace(&sb);
    let a: Api<Lease> = ns_api(&c1, &ns);
    let b: Api<Lease> = ns_api(&c2, &ns);
    let lease: Lease = obj(json!({"metadata": {"name": "leader"}, "spec": {"leaseDurationSeconds": 15}}));
    a.create(&PostParams::default(), &lease).await.expect("create");
    // Each round: both read the same version, both try to take it; exactly one write may win.
    async fn take(api: &Api<Lease>, me: &str, mut l: Lease) -> bool {
        let spec = l.spec.get_or_insert_with(Default::default);
        spec.holder_identity = Some(me.to_string());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        match api.replace("leader", &PostParams::default(), &l).await {
            Ok(_) => true,
            Err(kube::Error::Api(s)) if s.code == 409 => false,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    for round in 0..20 {
        let (la, lb) = (a.get("leader").await.expect("a reads"), b.get("leader").await.expect("b reads"));
        assert_eq!(la.resource_version(), lb.resource_version());
        let (wa, wb) = tokio::join!(take(&a, "a", la), take(&b, "b", lb));
        assert!(wa ^ wb, "round {round}: exactly one holder (a={wa}, b={wb})");
        let holder = a.get("leader").await.expect("read").spec.and_then(|s| s.holder_identity);
        assert_eq!(holder.as_deref(), Some(if wa { "a" } else { "b" }));
        // The holder renews with its fresh version; the other, holding a stale one, cannot steal.
        let (winner, loser) = if wa { (&a, &b) } else { (&b, &a) };
        let fresh = winner.get("leader").await.expect("fresh");
        let mut renewed = fresh.clone();
        renewed.spec.get_or_insert_with(Default::default).renew_time = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(k8s_openapi::jiff::Timestamp::now()),
        );
        winner.replace("leader", &PostParams::default(), &renewed).await.expect("renew");
        assert!(!take(loser, "thief", fresh).await, "a stale version cannot take the lease");
    }
    let l = a.get("leader").await.expect("final");
    assert_eq!(l.spec.and_then(|s| s.lease_transitions), Some(20));
}

#[tokio::test]
async fn gateway_api_kinds_are_installed_and_served() {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    let (sb, c) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    for (kind, plural) in [("Gateway", "gateways"), ("HTTPRoute", "httproutes")] {
        let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
        let api: Api<DynamicObject> = Api::namespaced_with(c.clone(), &ns, &ar);
        let mut o = DynamicObject::new("demo", &ar);
        o.data = json!({"spec": {"gatewayClassName": "sandbox", "parentRefs": [{"name": "demo"}], "anything": {"kept": true}}});
        crud(api.clone(), o.clone()).await;
        let created = api.create(&PostParams::default(), &o).await.expect("create again");
        assert_eq!(created.data["spec"]["anything"]["kept"], true, "unknown fields are preserved");
        let st = api
            .patch_status("demo", &PatchParams::default(), &Patch::Merge(json!({"status": {"parents": []}})))
            .await
            .expect("status");
        assert!(st.data["status"]["parents"].is_array());
    }
}

#[tokio::test]
async fn a_custom_resource_scale_subresource_follows_its_crd_paths() {
    let (sb, c) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let crd = json!({"metadata": {"name": "pools.example.com"}, "spec": {"group": "example.com", "scope": "Namespaced",
        "names": {"plural": "pools", "kind": "Pool"}, "versions": [{"name": "v1", "served": true, "storage": true,
            "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.ready",
                "labelSelectorPath": ".status.selector"}},
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
    sb.store.create(&Gvr::crds(), "", crd).expect("crd");
    let pools = Gvr::new("example.com", "v1", "pools");
    sb.store.create(&pools, &ns, json!({"metadata": {"name": "p"}, "spec": {"size": 2}})).expect("pool");
    sb.store
        .update_status(&pools, &ns, "p", |o| {
            o["status"] = json!({"ready": 1, "selector": "app=p"});
            Ok(())
        })
        .expect("status");
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.com", "v1", "Pool"), "pools");
    let api: Api<DynamicObject> = Api::namespaced_with(c, &ns, &ar);
    let s = api.get_scale("p").await.expect("scale");
    assert_eq!(s.spec.and_then(|s| s.replicas), Some(2));
    let st = s.status.expect("scale status");
    assert_eq!((st.replicas, st.selector.as_deref()), (1, Some("app=p")));
    let s =
        api.patch_scale("p", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 4}}))).await;
    assert_eq!(s.expect("patch scale").spec.and_then(|s| s.replicas), Some(4));
    assert_eq!(api.get("p").await.expect("get").data["spec"]["size"], 4);
}
