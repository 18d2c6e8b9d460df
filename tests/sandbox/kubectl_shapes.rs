//! The request shapes kubectl 1.32 sends (K8S-SANDBOX.md), as raw HTTP: discovery, openapi, tables, CRDs.

use serde_json::{Value, json};

use crate::common;

async fn get_json(url: &str, accept: Option<&str>) -> (u16, Value) {
    let mut req = common::http().get(url);
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let r = req.send().await.expect("request");
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

async fn send(method: reqwest::Method, url: &str, ct: &str, body: &str) -> (u16, Value) {
    let r =
        common::http().request(method, url).header("content-type", ct).body(body.to_string()).send().await;
    let r = r.expect("request");
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

const DISCOVERY_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

#[tokio::test]
async fn discovery_as_kubectl_reads_it() {
    let (sb, _c) = common::start().await;
    let u = sb.url();
    let (code, v) = get_json(&format!("{u}/version?timeout=5s"), None).await;
    assert_eq!((code, v["gitVersion"].as_str()), (200, Some("v1.32.0")));
    // kubectl 1.30+ asks for the aggregated documents first (issue 16), and older clients get the legacy ones.
    let (_, v) = get_json(&format!("{u}/api?timeout=32s"), Some(DISCOVERY_ACCEPT)).await;
    assert_eq!(v["kind"], "APIGroupDiscoveryList");
    assert_eq!(v["items"][0]["versions"][0]["version"], "v1");
    let (_, v) = get_json(&format!("{u}/apis?timeout=32s"), Some(DISCOVERY_ACCEPT)).await;
    assert_eq!(v["kind"], "APIGroupDiscoveryList");
    let aggregated: Vec<&str> =
        v["items"].as_array().expect("items").iter().filter_map(|g| g["metadata"]["name"].as_str()).collect();
    assert!(aggregated.contains(&"apps") && aggregated.contains(&"apiregistration.k8s.io"), "{aggregated:?}");
    let (_, v) = get_json(&format!("{u}/api?timeout=32s"), Some("application/json, */*")).await;
    assert_eq!(v, json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}));
    let (_, v) = get_json(&format!("{u}/apis?timeout=32s"), Some("application/json, */*")).await;
    assert_eq!(v["kind"], "APIGroupList");
    let groups: Vec<&str> =
        v["groups"].as_array().expect("groups").iter().filter_map(|g| g["name"].as_str()).collect();
    for g in [
        "apps",
        "coordination.k8s.io",
        "events.k8s.io",
        "autoscaling",
        "apiextensions.k8s.io",
        "gateway.networking.k8s.io",
    ] {
        assert!(groups.contains(&g), "{g} listed");
    }
    let apps = v["groups"].as_array().and_then(|a| a.iter().find(|g| g["name"] == "apps")).expect("apps");
    assert_eq!(apps["preferredVersion"], json!({"groupVersion": "apps/v1", "version": "v1"}));
    let (_, v) = get_json(&format!("{u}/api/v1?timeout=32s"), None).await;
    assert_eq!((v["kind"].as_str(), v["groupVersion"].as_str()), (Some("APIResourceList"), Some("v1")));
    let pods = v["resources"].as_array().and_then(|r| r.iter().find(|r| r["name"] == "pods")).expect("pods");
    assert_eq!(
        (pods["singularName"].as_str(), pods["namespaced"].as_bool(), pods["kind"].as_str()),
        (Some("pod"), Some(true), Some("Pod"))
    );
    assert_eq!(pods["shortNames"], json!(["po"]));
    let (_, v) = get_json(&format!("{u}/apis/apps/v1?timeout=32s"), None).await;
    assert_eq!(v["groupVersion"], "apps/v1");
    let find = |n: &str| v["resources"].as_array().and_then(|r| r.iter().find(|r| r["name"] == n)).cloned();
    let scale = find("deployments/scale").expect("deployments/scale");
    assert_eq!(
        (scale["group"].as_str(), scale["version"].as_str(), scale["kind"].as_str()),
        (Some("autoscaling"), Some("v1"), Some("Scale"))
    );
    assert!(scale.get("shortNames").is_none());
    assert!(find("deployments/status").is_some());
    assert_eq!(find("deployments").expect("deployments")["shortNames"], json!(["deploy"]));
    for gv in [
        "coordination.k8s.io/v1",
        "events.k8s.io/v1",
        "autoscaling/v2",
        "apiextensions.k8s.io/v1",
        "gateway.networking.k8s.io/v1",
    ] {
        let (code, v) = get_json(&format!("{u}/apis/{gv}"), None).await;
        assert_eq!((code, v["groupVersion"].as_str()), (200, Some(gv)));
    }
    let (code, v) = get_json(&format!("{u}/apis/nope.example.com/v1"), None).await;
    assert_eq!((code, v["reason"].as_str()), (404, Some("NotFound")));
    // kubectl asks for v2 in protobuf, which the sandbox does not speak: it falls back to v3. JSON clients get
    // the CRDs' schemas (issue 16).
    let proto = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
    let (code, _) = get_json(&format!("{u}/openapi/v2?timeout=32s"), Some(proto)).await;
    assert_eq!(code, 404);
    let (code, v) = get_json(&format!("{u}/openapi/v2"), Some("application/json")).await;
    assert_eq!((code, v["swagger"].as_str()), (200, Some("2.0")));
}

#[tokio::test]
async fn minimal_openapi_v3_names_each_operation_kind() {
    let (sb, _c) = common::start().await;
    let u = sb.url();
    let (code, idx) = get_json(&format!("{u}/openapi/v3?timeout=32s"), None).await;
    assert_eq!(code, 200);
    let rel = idx["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().expect("apps/v1 listed").to_string();
    assert!(rel.starts_with("/openapi/v3/apis/apps/v1?hash="));
    let (code, doc) = get_json(&format!("{u}{rel}"), None).await;
    assert_eq!(code, 200);
    let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
    assert_eq!(
        item["patch"]["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "version": "v1", "kind": "Deployment"})
    );
    assert!(item["put"].is_object());
    assert!(doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"].is_object());
    assert!(idx["paths"]["api/v1"].is_object());
    let (_, core) = get_json(&format!("{u}/openapi/v3/api/v1"), None).await;
    assert!(
        core["paths"]["/api/v1/namespaces/{name}"]["put"].is_object(),
        "cluster-scoped paths have no namespace"
    );
}

#[tokio::test]
async fn a_crd_created_at_run_time_is_served_with_status_schema_and_printer_columns() {
    let (sb, _c) = common::start().await;
    let u = sb.url();
    let ns = common::fresh_namespace(&sb);
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["size"], "properties": {
                        "size": {"type": "integer", "minimum": 1, "maximum": 10},
                        "color": {"type": "string", "enum": ["red", "blue"]}}},
                    "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}}}}]}});
    let (code, v) = send(
        reqwest::Method::POST,
        &format!("{u}/apis/apiextensions.k8s.io/v1/customresourcedefinitions"),
        "application/json",
        &crd.to_string(),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let established =
        v["status"]["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == "Established"));
    assert_eq!(established.map(|c| c["status"].clone()), Some(json!("True")));
    assert_eq!(v["status"]["acceptedNames"]["kind"], "Widget");
    let (_, disc) = get_json(&format!("{u}/apis/example.com/v1"), None).await;
    let w =
        disc["resources"].as_array().and_then(|r| r.iter().find(|r| r["name"] == "widgets")).expect("served");
    assert_eq!((w["shortNames"].clone(), w["categories"].clone()), (json!(["wd"]), json!(["all"])));
    let coll = format!("{u}/apis/example.com/v1/namespaces/{ns}/widgets");
    let (code, v) = send(reqwest::Method::POST, &coll, "application/json",
        &json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3, "color": "red"}}).to_string()).await;
    assert_eq!(code, 201, "{v}");
    let (code, v) = send(
        reqwest::Method::PATCH,
        &format!("{coll}/w1/status"),
        "application/merge-patch+json",
        &json!({"status": {"phase": "Ready"}, "spec": {"size": 9}}).to_string(),
    )
    .await;
    assert_eq!(
        (code, v["status"]["phase"].as_str(), v["spec"]["size"].as_i64()),
        (200, Some("Ready"), Some(3))
    );
    // kubectl sends merge patches to custom resources; strategic ones are refused as Kubernetes does.
    let (code, _) =
        send(reqwest::Method::PATCH, &format!("{coll}/w1"), "application/strategic-merge-patch+json", "{}")
            .await;
    assert_eq!(code, 415);
    let (code, v) = send(
        reqwest::Method::PATCH,
        &format!("{coll}/w1"),
        "application/merge-patch+json",
        r#"{"spec":{"size":11}}"#,
    )
    .await;
    assert_eq!((code, v["reason"].as_str()), (422, Some("Invalid")));
    let (_, table) = get_json(&format!("{coll}?limit=500"), Some(TABLE_ACCEPT)).await;
    assert_eq!(table["kind"], "Table");
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["Name", "Size", "Phase", "Age"]);
    let cells = &table["rows"][0]["cells"];
    assert_eq!(
        (cells[0].as_str(), cells[1].as_i64(), cells[2].as_str()),
        (Some("w1"), Some(3), Some("Ready"))
    );
    assert!(cells[3].as_str().is_some_and(|a| a.ends_with('s')), "age like 0s: {cells}");
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    // Deleting the CRD stops serving the type.
    let (code, _) = send(
        reqwest::Method::DELETE,
        &format!("{u}/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com"),
        "application/json",
        "",
    )
    .await;
    assert_eq!(code, 200);
    let (code, v) = get_json(&coll, None).await;
    assert_eq!((code, v["reason"].as_str()), (404, Some("NotFound")));
}

#[tokio::test]
async fn kubectl_apply_scale_get_and_delete_sequences() {
    let (sb, _c) = common::start().await;
    let u = sb.url();
    let ns = common::fresh_namespace(&sb);
    let coll = format!("{u}/apis/apps/v1/namespaces/{ns}/deployments");
    let (code, v) = get_json(&format!("{coll}/web"), None).await;
    assert_eq!((code, v["kind"].as_str(), v["reason"].as_str()), (404, Some("Status"), Some("NotFound")));
    let body = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}}});
    let (code, v) = send(
        reqwest::Method::POST,
        &format!("{coll}?fieldManager=kubectl-client-side-apply&fieldValidation=Strict"),
        "application/json",
        &body.to_string(),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["metadata"]["managedFields"][0]["manager"], "kubectl-client-side-apply");
    let patch = json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "web"}], "containers": [{"name": "web", "image": "nginx:2"}]}}}});
    let (code, v) = send(
        reqwest::Method::PATCH,
        &format!("{coll}/web?fieldManager=kubectl-client-side-apply&fieldValidation=Strict"),
        "application/strategic-merge-patch+json",
        &patch.to_string(),
    )
    .await;
    assert_eq!(
        (code, v["spec"]["template"]["spec"]["containers"][0]["image"].as_str()),
        (200, Some("nginx:2"))
    );
    assert_eq!(v["metadata"]["generation"], 2);
    let ssa = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n";
    let (code, v) = send(
        reqwest::Method::PATCH,
        &format!("{coll}/web?fieldManager=kubectl&fieldValidation=Strict&force=false"),
        "application/apply-patch+yaml",
        ssa,
    )
    .await;
    assert_eq!((code, v["spec"]["replicas"].as_i64()), (200, Some(2)), "{v}");
    let (code, v) = send(
        reqwest::Method::PATCH,
        &format!("{coll}/web/scale"),
        "application/merge-patch+json",
        r#"{"spec":{"replicas":3}}"#,
    )
    .await;
    assert_eq!(
        (code, v["kind"].as_str(), v["apiVersion"].as_str(), v["spec"]["replicas"].as_i64()),
        (200, Some("Scale"), Some("autoscaling/v1"), Some(3))
    );
    let (_, list) = get_json(&format!("{coll}?limit=500"), Some(TABLE_ACCEPT)).await;
    assert_eq!(list["kind"], "Table");
    let cols: Vec<&str> = list["columnDefinitions"]
        .as_array()
        .expect("cols")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(cols, ["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"]);
    assert_eq!(list["rows"][0]["cells"][1], "0/3");
    let (_, plain) = get_json(&format!("{coll}?limit=500"), None).await;
    assert_eq!(
        (plain["kind"].as_str(), plain["apiVersion"].as_str()),
        (Some("DeploymentList"), Some("apps/v1"))
    );
    assert!(plain["metadata"]["resourceVersion"].is_string());
    let (code, v) = send(
        reqwest::Method::DELETE,
        &format!("{coll}/web"),
        "application/json",
        r#"{"propagationPolicy":"Background"}"#,
    )
    .await;
    assert_eq!((code, v["metadata"]["name"].as_str()), (200, Some("web")));
    let (code, _) = get_json(&format!("{coll}/web"), None).await;
    assert_eq!(code, 404);
    let (code, v) =
        send(reqwest::Method::PUT, &format!("{coll}/web"), "application/json", &body.to_string()).await;
    assert_eq!((code, v["reason"].as_str()), (404, Some("NotFound")), "no create on PUT");
}

/// `kubectl create namespace x` as kubectl 1.32 sends it: a protobuf body (runtime.Unknown around a
/// v1.Namespace whose ObjectMeta carries a zero creationTimestamp).
#[tokio::test]
async fn typed_creates_in_protobuf_are_understood() {
    let (sb, _c) = common::start().await;
    fn field(n: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![(n << 3) | 2, payload.len() as u8];
        v.extend_from_slice(payload);
        v
    }
    let meta = [field(1, b"from-proto"), field(3, b""), field(8, b"")].concat();
    let raw = field(1, &meta);
    let tm = [field(1, b"v1"), field(2, b"Namespace")].concat();
    let body = [b"k8s\0".to_vec(), field(1, &tm), field(2, &raw), field(3, b""), field(4, b"")].concat();
    let r = common::http()
        .post(format!("{}/api/v1/namespaces?fieldManager=kubectl-create&fieldValidation=Strict", sb.url()))
        .header("content-type", "application/vnd.kubernetes.protobuf")
        .header("accept", "application/vnd.kubernetes.protobuf,application/json")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
    let v: Value = r.json().await.expect("json");
    assert_eq!((v["kind"].as_str(), v["metadata"]["name"].as_str()), (Some("Namespace"), Some("from-proto")));
    assert!(v["metadata"]["creationTimestamp"].as_str().is_some_and(|t| !t.starts_with("1970")));
    assert_eq!(v["status"]["phase"], "Active");
}

/// kubectl apply sends `fieldValidation=Strict`: a custom resource with a field its schema does not declare
/// is refused; without Strict the field is pruned, as Kubernetes does.
#[tokio::test]
async fn strict_field_validation_refuses_undeclared_fields() {
    let (sb, _c) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let crd = json!({"metadata": {"name": "knobs.example.com"}, "spec": {"group": "example.com", "scope": "Namespaced",
        "names": {"plural": "knobs", "kind": "Knob"}, "versions": [{"name": "v1", "served": true, "storage": true,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object",
                "properties": {"turns": {"type": "integer"}}}}}}}]}});
    sb.store.create(&machinist_sandbox::Gvr::crds(), "", crd).expect("crd");
    let coll = format!("{}/apis/example.com/v1/namespaces/{ns}/knobs", sb.url());
    let body = json!({"apiVersion": "example.com/v1", "kind": "Knob", "metadata": {"name": "k"},
        "spec": {"turns": 2, "trun": 3}})
    .to_string();
    let (code, v) =
        send(reqwest::Method::POST, &format!("{coll}?fieldValidation=Strict"), "application/json", &body)
            .await;
    assert_eq!((code, v["reason"].as_str()), (400, Some("BadRequest")));
    assert!(v["message"].as_str().is_some_and(|m| m.contains("unknown field \"spec.trun\"")), "{v}");
    let (code, v) = send(reqwest::Method::POST, &coll, "application/json", &body).await;
    assert_eq!(code, 201);
    assert_eq!(v["spec"], json!({"turns": 2}));
    let (code, _) = send(
        reqwest::Method::PATCH,
        &format!("{coll}/k?fieldValidation=Strict"),
        "application/merge-patch+json",
        r#"{"spec":{"trun":1}}"#,
    )
    .await;
    assert_eq!(code, 400);
}
