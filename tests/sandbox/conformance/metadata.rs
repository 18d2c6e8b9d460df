//! Metadata-only requests (`Accept: …;as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1`): what kube-rs's
//! `get_metadata`, `list_metadata`, `patch_metadata` and kube-runtime's metadata watcher send.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMetaExt;
use kube::runtime::watcher;
use serde_json::{Value, json};

use crate::common;

const META: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
const META_LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";

fn configmap(name: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"app": "web"}}, "data": {"secret": "x"}}),
    )
    .expect("configmap")
}

#[tokio::test]
async fn get_list_and_patch_metadata_round_trip() {
    let (sb, client) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    cms.create(&PostParams::default(), &configmap("one")).await.expect("create");
    let got = cms.get_metadata("one").await.expect("get_metadata");
    let types = got.types.clone().expect("typed");
    assert_eq!(
        (types.api_version.as_str(), types.kind.as_str()),
        ("meta.k8s.io/v1", "PartialObjectMetadata")
    );
    assert_eq!(got.metadata.labels.as_ref().and_then(|l| l.get("app")).map(String::as_str), Some("web"));
    let list = cms.list_metadata(&ListParams::default()).await.expect("list_metadata");
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].metadata.name.as_deref(), Some("one"));

    let patch =
        ObjectMeta { labels: Some([("tier".to_string(), "front".to_string())].into()), ..Default::default() }
            .into_request_partial::<ConfigMap>();
    let patched = cms
        .patch_metadata("one", &PatchParams::apply("meta-test"), &Patch::Apply(&patch))
        .await
        .expect("patch_metadata (apply)");
    assert_eq!(patched.types.map(|t| t.kind).as_deref(), Some("PartialObjectMetadata"));
    let labels = patched.metadata.labels.expect("labels");
    assert_eq!(labels.get("tier").map(String::as_str), Some("front"));
    let merged = cms
        .patch_metadata(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"extra": "yes"}}})),
        )
        .await
        .expect("patch_metadata (merge)");
    let back = cms.get_metadata("one").await.expect("read back");
    assert_eq!(back.metadata.labels, merged.metadata.labels, "a metadata patch round-trips");
    assert_eq!(back.metadata.labels.as_ref().and_then(|l| l.get("extra")).map(String::as_str), Some("yes"));
    // The data never travels on a metadata request, and the object itself keeps it.
    assert_eq!(
        cms.get("one").await.expect("full get").data.and_then(|d| d.get("secret").cloned()).as_deref(),
        Some("x")
    );

    let url = format!("{}/api/v1/namespaces/{ns}/configmaps", sb.url());
    let one: Value = common::http()
        .get(format!("{url}/one"))
        .header("accept", META)
        .send()
        .await
        .expect("raw get")
        .json()
        .await
        .expect("json");
    assert_eq!(one.as_object().map(|o| o.len()), Some(3), "apiVersion, kind, metadata only: {one}");
    let all: Value = common::http()
        .get(&url)
        .header("accept", META_LIST)
        .send()
        .await
        .expect("raw list")
        .json()
        .await
        .expect("json");
    assert_eq!(all["kind"], "PartialObjectMetadataList");
    assert_eq!(all["items"][0]["kind"], "PartialObjectMetadata");
    assert!(all["items"][0].get("data").is_none(), "{all}");
}

#[tokio::test]
#[allow(deprecated)] // kube-runtime 5 prefers watcher(Api<PartialObjectMeta<K>>); both send the same request.
async fn metadata_watcher_sees_partial_objects() {
    let (sb, client) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let mut events = kube::runtime::metadata_watcher(cms.clone(), watcher::Config::default())
        .map_ok(|e| match e {
            watcher::Event::Apply(m) | watcher::Event::InitApply(m) => m.metadata.name,
            _ => None,
        })
        .boxed();
    cms.create(&PostParams::default(), &configmap("watched")).await.expect("create");
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = events.next().await {
            if e.expect("metadata watch event").as_deref() == Some("watched") {
                return true;
            }
        }
        false
    })
    .await
    .expect("the metadata watcher sees the configmap");
    assert!(seen);

    let raw = common::http()
        .get(format!("{}/api/v1/namespaces/{ns}/configmaps?watch=true&timeoutSeconds=1", sb.url()))
        .header("accept", META)
        .send()
        .await
        .expect("raw watch")
        .text()
        .await
        .expect("watch body");
    let first: Value = serde_json::from_str(raw.lines().next().expect("one event")).expect("event json");
    assert_eq!(first["object"]["kind"], "PartialObjectMetadata");
    assert!(first["object"].get("data").is_none(), "{first}");
}
