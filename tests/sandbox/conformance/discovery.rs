//! Aggregated discovery (`apidiscovery.k8s.io/v2`), as kube-rs's `Discovery::run_aggregated` and kubectl
//! 1.30+ ask for it, next to the legacy per-group documents.

use kube::core::GroupVersionKind;
use kube::discovery::{Discovery, Scope};
use serde_json::Value;

use crate::common;

#[tokio::test]
async fn run_aggregated_finds_every_group_with_its_resources() {
    let (sb, client) = common::start().await;
    let ar = crate::apply::install_widgets(&sb).await;
    let d = Discovery::new(client.clone()).run_aggregated().await.expect("aggregated discovery");
    for g in ["", "apps", "apiregistration.k8s.io", "apiextensions.k8s.io", "conformance.example"] {
        assert!(d.has_group(g), "group {g:?} discovered");
    }
    let (res, caps) =
        d.resolve_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment")).expect("Deployment resolves");
    assert_eq!(res.plural, "deployments");
    assert_eq!(caps.scope, Scope::Namespaced);
    assert!(caps.subresources.iter().any(|(r, _)| r.plural == "deployments/scale" || r.plural == "scale"));
    let (svc, _) = d
        .resolve_gvk(&GroupVersionKind::gvk("apiregistration.k8s.io", "v1", "APIService"))
        .expect("APIService resolves");
    assert_eq!(svc.plural, "apiservices");
    let (node, caps) = d.resolve_gvk(&GroupVersionKind::gvk("", "v1", "Pod")).expect("Pod resolves");
    assert_eq!((node.plural.as_str(), caps.scope), ("pods", Scope::Namespaced));
    let (w, _) = d.resolve_gvk(&GroupVersionKind::gvk("conformance.example", "v1", "Widget")).expect("a CRD");
    assert_eq!(w.plural, ar.plural);

    // The legacy walk agrees, and the apiregistration group is served there too.
    let legacy = Discovery::new(client.clone())
        .filter(&["apiregistration.k8s.io"])
        .run()
        .await
        .expect("legacy discovery of apiregistration.k8s.io");
    assert!(legacy.has_group("apiregistration.k8s.io"));
}

#[tokio::test]
async fn aggregated_documents_say_what_they_are() {
    let (sb, _client) = common::start().await;
    let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    for path in ["/api", "/apis"] {
        let resp = common::http()
            .get(format!("{}{path}", sb.url()))
            .header("accept", accept)
            .send()
            .await
            .expect("GET");
        let ct = resp.headers()["content-type"].to_str().expect("ascii").to_string();
        assert!(ct.contains("as=APIGroupDiscoveryList") && ct.contains("v=v2"), "{path}: {ct}");
        let doc: Value = resp.json().await.expect("json");
        assert_eq!(doc["kind"], "APIGroupDiscoveryList", "{path}");
        assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2");
        assert_eq!(doc["items"][0]["versions"][0]["freshness"], "Current");
    }
    // A client that prefers plain JSON still gets the legacy document.
    let legacy: Value = common::http()
        .get(format!("{}/apis", sb.url()))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(legacy["kind"], "APIGroupList");
}
