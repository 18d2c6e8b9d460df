//! Server-side apply whose body has no `metadata.name`: the API server takes the name from the URL.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

use crate::common;

/// A namespaced CRD with `/status` and `/scale`, as controllers' own types usually are.
pub fn widget_crd() -> serde_json::Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.conformance.example"},
        "spec": {"group": "conformance.example", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                    "statusReplicasPath": ".status.replicas"}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "description": "What the widget should be.", "properties": {
                        "replicas": {"type": "integer", "description": "How many widgets."},
                        "colour": {"type": "string", "description": "The colour of each widget."}}},
                    "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}}}}]}
    })
}

pub async fn install_widgets(sb: &machinist_sandbox::Sandbox) -> ApiResource {
    sb.store.create(&machinist_sandbox::Gvr::crds(), "", widget_crd()).expect("widget CRD");
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("conformance.example", "v1", "Widget"),
        "widgets",
    )
}

#[tokio::test]
async fn apply_without_a_name_takes_the_name_from_the_url() {
    let (sb, client) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let pp = PatchParams::apply("conformance");
    let cm = cms
        .patch(
            "settings",
            &pp,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1"}})),
        )
        .await
        .expect("apply without metadata.name creates");
    assert_eq!(cm.metadata.name.as_deref(), Some("settings"));
    let cm = cms
        .patch(
            "settings",
            &pp,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "2"}})),
        )
        .await
        .expect("apply without metadata.name updates");
    assert_eq!(cm.data.and_then(|d| d.get("a").cloned()).as_deref(), Some("2"));
    // A name in the body that is not the URL's is still refused.
    let err = cms
        .patch(
            "settings",
            &pp,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}})),
        )
        .await
        .expect_err("mismatched name");
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 400), "{err:?}");
}

#[tokio::test]
async fn apply_of_a_custom_resource_then_scale_and_status_patches() {
    let (sb, client) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let ar = install_widgets(&sb).await;
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
    let pp = PatchParams::apply("conformance").force();
    let w = widgets
        .patch(
            "w1",
            &pp,
            &Patch::Apply(json!({"apiVersion": "conformance.example/v1", "kind": "Widget",
                "spec": {"replicas": 1, "colour": "red"}})),
        )
        .await
        .expect("apply a Widget without metadata.name");
    assert_eq!(w.metadata.name.as_deref(), Some("w1"));
    let scaled = widgets
        .patch_scale("w1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 4}})))
        .await
        .expect("patch /scale");
    assert_eq!(scaled.spec.and_then(|s| s.replicas), Some(4));
    widgets
        .patch_status(
            "w1",
            &PatchParams::apply("conformance-status").force(),
            &Patch::Apply(json!({"apiVersion": "conformance.example/v1", "kind": "Widget",
                "status": {"replicas": 4}})),
        )
        .await
        .expect("apply /status without metadata.name");
    let got = widgets.get("w1").await.expect("get");
    assert_eq!(got.data["spec"], json!({"replicas": 4, "colour": "red"}));
    assert_eq!(got.data["status"], json!({"replicas": 4}));
}
