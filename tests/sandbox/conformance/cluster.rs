//! The objects every cluster has: the `kubernetes` Service, a Node (pods bound to it, cordon/uncordon),
//! the APIServices, and a `default` ServiceAccount in each namespace.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Service, ServiceAccount};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use crate::common;

#[tokio::test]
async fn the_kubernetes_service_nodes_and_apiservices_exist() {
    let (_sb, client) = common::start().await;
    let svc =
        Api::<Service>::namespaced(client.clone(), "default").get("kubernetes").await.expect("kubernetes");
    let spec = svc.spec.expect("spec");
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert!(spec.cluster_ip.is_some_and(|ip| !ip.is_empty() && ip != "None"));
    let port = &spec.ports.expect("ports")[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("https"), 443));

    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes.list(&ListParams::default()).await.expect("list nodes");
    assert_eq!(list.items.len(), 1);
    let node = &list.items[0];
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready").map(|c| c.status.clone()));
    assert_eq!(ready.as_deref(), Some("True"));

    let services =
        Api::<APIService>::all(client.clone()).list(&ListParams::default()).await.expect("apiservices");
    let names: Vec<String> = services.items.iter().filter_map(|s| s.metadata.name.clone()).collect();
    for want in ["v1.", "v1.apps", "v1.apiregistration.k8s.io", "v1.events.k8s.io"] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
}

#[tokio::test]
async fn pods_run_on_the_node_and_cordon_marks_it_unschedulable() {
    let (sb, client) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": "nginx"}]}}),
    )
    .expect("pod");
    pods.create(&PostParams::default(), &pod).await.expect("create pod");
    let nodes: Api<Node> = Api::all(client.clone());
    let node = nodes.list(&ListParams::default()).await.expect("nodes").items.remove(0);
    let node_name = node.metadata.name.clone().expect("node name");
    let node_ip = node.status.and_then(|s| s.addresses).expect("addresses")[0].address.clone();
    common::eventually("the pod is bound and running", Duration::from_secs(10), async || {
        let p = pods.get("p").await.expect("get pod");
        p.spec.and_then(|s| s.node_name).as_deref() == Some(node_name.as_str())
            && p.status.and_then(|s| s.host_ip).as_deref() == Some(node_ip.as_str())
    })
    .await;

    let cordoned = nodes.cordon(&node_name).await.expect("cordon");
    assert_eq!(cordoned.spec.and_then(|s| s.unschedulable), Some(true));
    let back = nodes.uncordon(&node_name).await.expect("uncordon");
    assert_ne!(back.spec.and_then(|s| s.unschedulable), Some(true));
}

#[tokio::test]
async fn every_namespace_gets_a_default_service_account() {
    let (sb, client) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    common::eventually("the default ServiceAccount", Duration::from_secs(10), async || {
        sas.get_opt("default").await.expect("get").is_some()
    })
    .await;
    assert!(Api::<ServiceAccount>::namespaced(client, "default").get("default").await.is_ok());
}
