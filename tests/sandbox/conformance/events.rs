//! Events about namespaced and cluster-scoped objects, through kube-runtime's `Recorder`
//! (events.k8s.io/v1) and as core v1 Events, as controllers and kubectl write them.

use k8s_openapi::api::core::v1::{Event as CoreEvent, Namespace, Node, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::events::{Event as Publish, EventType, Recorder, Reporter};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::common;

fn publish(reason: &str) -> Publish {
    Publish {
        type_: EventType::Normal,
        reason: reason.into(),
        note: Some(format!("{reason} happened")),
        action: "Test".into(),
        secondary: None,
    }
}

#[tokio::test]
async fn a_recorder_publishes_about_services_nodes_and_namespaces() {
    let (_sb, client) = common::start().await;
    let recorder =
        Recorder::new(client.clone(), Reporter { controller: "conformance".into(), instance: None });
    let svc =
        Api::<Service>::namespaced(client.clone(), "default").get("kubernetes").await.expect("kubernetes");
    let node =
        Api::<Node>::all(client.clone()).list(&ListParams::default()).await.expect("nodes").items.remove(0);
    let ns = Api::<Namespace>::all(client.clone()).get("kube-system").await.expect("kube-system");
    for (reason, reference) in [
        ("AboutService", svc.object_ref(&())),
        ("AboutNode", node.object_ref(&())),
        ("AboutNamespace", ns.object_ref(&())),
    ] {
        recorder.publish(&publish(reason), &reference).await.expect("publish");
        // The second time is a series: a merge patch of the same event.
        recorder.publish(&publish(reason), &reference).await.expect("publish again");
    }
    // Cluster-scoped objects' events live in `default`.
    let events =
        Api::<Event>::namespaced(client.clone(), "default").list(&ListParams::default()).await.expect("list");
    for (reason, kind) in
        [("AboutService", "Service"), ("AboutNode", "Node"), ("AboutNamespace", "Namespace")]
    {
        let e = events.items.iter().find(|e| e.reason.as_deref() == Some(reason)).expect(reason);
        assert_eq!(e.regarding.as_ref().and_then(|r| r.kind.as_deref()), Some(kind));
        assert_eq!(e.series.as_ref().map(|s| s.count), Some(2), "{reason} counted twice");
    }
}

#[tokio::test]
async fn core_events_about_cluster_scoped_objects_are_accepted_and_selectable() {
    let (_sb, client) = common::start().await;
    let node =
        Api::<Node>::all(client.clone()).list(&ListParams::default()).await.expect("nodes").items.remove(0);
    let events: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let ev: CoreEvent = serde_json::from_value(json!({
        "metadata": {"generateName": "sandbox-node."},
        "involvedObject": {"kind": "Node", "name": node.name_any(), "uid": node.uid(), "apiVersion": "v1"},
        "reason": "NodeNotReady", "message": "simulated", "type": "Warning", "count": 1,
        "source": {"component": "conformance"},
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z"}))
    .expect("event");
    let created = events.create(&PostParams::default(), &ev).await.expect("core v1 Event about a Node");
    assert!(created.name_any().starts_with("sandbox-node."));
    // `kubectl describe node` finds its events this way.
    let lp = ListParams::default()
        .fields(&format!("involvedObject.kind=Node,involvedObject.name={}", node.name_any()));
    let found = events.list(&lp).await.expect("list by involvedObject");
    assert_eq!(found.items.len(), 1);
    assert_eq!(found.items[0].reason.as_deref(), Some("NodeNotReady"));
}
