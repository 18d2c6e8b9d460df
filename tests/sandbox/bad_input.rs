//! Bad input gets the Status Kubernetes gives, stores nothing, and never crashes the server.

use std::sync::Arc;

use axum::body::Body;
use http::Request;
use machinist_sandbox::http::{AppState, router};
use machinist_sandbox::{Gvr, Store};
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::common;

async fn send(method: reqwest::Method, url: &str, ct: &str, body: &str) -> (u16, Value) {
    let r =
        common::http().request(method, url).header("content-type", ct).body(body.to_string()).send().await;
    let r = r.expect("request");
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bad_requests_get_canonical_statuses_and_store_nothing() {
    let (sb, _c) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let u = sb.url();
    let cms = format!("{u}/api/v1/namespaces/{ns}/configmaps");
    let crd = json!({"metadata": {"name": "gizmos.example.com"}, "spec": {"group": "example.com", "scope": "Namespaced",
        "names": {"plural": "gizmos", "kind": "Gizmo"}, "versions": [{"name": "v1", "served": true, "storage": true,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "required": ["port"],
                "properties": {"port": {"type": "integer", "minimum": 1, "maximum": 65535},
                               "name": {"type": "string", "pattern": "^[a-z]+$"}}}}}}}]}});
    sb.store.create(&Gvr::crds(), "", crd).expect("crd");
    let gizmos = format!("{u}/apis/example.com/v1/namespaces/{ns}/gizmos");
    let post = reqwest::Method::POST;
    let cases: Vec<(String, &str, String, u16, &str)> = vec![
        (cms.clone(), "application/json", "{\"metadata\": {\"name\": ".into(), 400, "BadRequest"),
        (cms.clone(), "application/json", "[1,2]".into(), 400, "BadRequest"),
        (cms.clone(), "application/yaml", "metadata: [unclosed".into(), 400, "BadRequest"),
        (cms.clone(), "application/vnd.kubernetes.protobuf", "k8s\0".into(), 415, "UnsupportedMediaType"),
        (format!("{u}/api/v1/namespaces/{ns}/nopes"), "application/json", "{}".into(), 404, "NotFound"),
        (
            format!("{u}/apis/nope.io/v1/namespaces/{ns}/things"),
            "application/json",
            "{}".into(),
            404,
            "NotFound",
        ),
        (
            cms.clone(),
            "application/json",
            json!({"apiVersion": "v2", "kind": "ConfigMap", "metadata": {"name": "a"}}).to_string(),
            400,
            "BadRequest",
        ),
        (
            cms.clone(),
            "application/json",
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "a"}}).to_string(),
            400,
            "BadRequest",
        ),
        (
            cms.clone(),
            "application/json",
            json!({"metadata": {"name": "Bad_Name"}}).to_string(),
            422,
            "Invalid",
        ),
        (cms.clone(), "application/json", json!({"metadata": {}}).to_string(), 422, "Invalid"),
        (
            cms.clone(),
            "application/json",
            json!({"metadata": {"name": "a", "namespace": "other"}}).to_string(),
            400,
            "BadRequest",
        ),
        (
            format!("{u}/api/v1/namespaces"),
            "application/json",
            json!({"metadata": {"name": "a.b"}}).to_string(),
            422,
            "Invalid",
        ),
        (
            format!("{u}/api/v1/namespaces/{ns}/services"),
            "application/json",
            json!({"metadata": {"name": "1svc"}}).to_string(),
            422,
            "Invalid",
        ),
        (
            format!("{u}/api/v1/namespaces/missing/configmaps"),
            "application/json",
            json!({"metadata": {"name": "a"}}).to_string(),
            404,
            "NotFound",
        ),
        (
            gizmos.clone(),
            "application/json",
            json!({"metadata": {"name": "g"}, "spec": {"port": 70000, "name": "X1"}}).to_string(),
            422,
            "Invalid",
        ),
        (
            gizmos.clone(),
            "application/json",
            json!({"metadata": {"name": "g"}, "spec": {}}).to_string(),
            422,
            "Invalid",
        ),
        (
            gizmos.clone(),
            "application/json",
            json!({"metadata": {"name": "g"}, "spec": {"port": "80"}}).to_string(),
            422,
            "Invalid",
        ),
    ];
    let rv = sb.store.resource_version();
    for (url, ct, body, code, reason) in cases {
        let (got, v) = send(post.clone(), &url, ct, &body).await;
        assert_eq!((got, v["reason"].as_str()), (code, Some(reason)), "{url} {body}: {v}");
        assert_eq!(
            (v["kind"].as_str(), v["status"].as_str(), v["code"].as_u64()),
            (Some("Status"), Some("Failure"), Some(code as u64))
        );
    }
    assert_eq!(sb.store.resource_version(), rv, "nothing stored");
    let (_, v) = send(
        post.clone(),
        &gizmos,
        "application/json",
        &json!({"metadata": {"name": "g"}, "spec": {"port": 0, "name": "X"}}).to_string(),
    )
    .await;
    let fields: Vec<&str> = v["details"]["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert_eq!(fields, ["spec.name", "spec.port"]);
    let ok = json!({"metadata": {"name": "a"}}).to_string();
    assert_eq!(send(post.clone(), &cms, "application/json", &ok).await.0, 201);
    let (code, v) = send(post.clone(), &cms, "application/json", &ok).await;
    assert_eq!((code, v["reason"].as_str()), (409, Some("AlreadyExists")));
    let (code, v) = send(reqwest::Method::PATCH, &format!("{cms}/a"), "text/plain", "{}").await;
    assert_eq!((code, v["reason"].as_str()), (415, Some("UnsupportedMediaType")));
    let (code, v) = send(
        reqwest::Method::PATCH,
        &format!("{cms}/a?fieldManager=m"),
        "application/apply-patch+yaml",
        "a: [b",
    )
    .await;
    assert_eq!((code, v["reason"].as_str()), (400, Some("BadRequest")));
    let (code, v) = send(reqwest::Method::POST, &format!("{cms}/a"), "application/json", "{}").await;
    assert_eq!((code, v["reason"].as_str()), (405, Some("MethodNotAllowed")));
    let (code, v) = send(reqwest::Method::GET, &format!("{cms}/a/nosuchsub"), "application/json", "").await;
    assert_eq!((code, v["reason"].as_str()), (404, Some("NotFound")));
}

fn paths() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        Just("api".to_string()),
        Just("apis".to_string()),
        Just("v1".to_string()),
        Just("apps".to_string()),
        Just("namespaces".to_string()),
        Just("default".to_string()),
        Just("pods".to_string()),
        Just("deployments".to_string()),
        Just("scale".to_string()),
        Just("status".to_string()),
        Just("%zz".to_string()),
        "[a-z0-9.%-]{0,12}",
    ];
    prop::collection::vec(seg, 0..7).prop_map(|s| format!("/{}", s.join("/")))
}

fn bodies() -> impl Strategy<Value = Vec<u8>> {
    let base = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "default",
        "resourceVersion": "3", "ownerReferences": [{"uid": "x"}], "finalizers": ["a"]},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 1}]}]}}}})
    .to_string()
    .into_bytes();
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        (any::<prop::sample::Index>(), any::<u8>(), 0usize..5).prop_map(move |(i, b, n)| {
            let mut v = base.clone();
            let at = i.index(v.len());
            for k in 0..n.min(v.len() - at) {
                v[at + k] = b;
            }
            v
        }),
        Just(b"[{\"op\":\"test\",\"path\":\"/spec\",\"value\":1}]".to_vec()),
        Just(b"null".to_vec()),
        Just(b"{\"metadata\":null,\"spec\":[]}".to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
    #[test]
    fn random_paths_and_bodies_never_crash_and_errors_are_statuses(
        path in paths(),
        body in bodies(),
        method in prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("PATCH"), Just("DELETE")],
        ct in prop_oneof![Just("application/json"), Just("application/merge-patch+json"),
            Just("application/strategic-merge-patch+json"), Just("application/json-patch+json"),
            Just("application/apply-patch+yaml"), Just("application/yaml")],
        query in prop_oneof![Just(""), Just("?dryRun=All"), Just("?fieldManager=m&force=true"),
            Just("?labelSelector=a%20in%20(&limit=x"), Just("?continue=zz&limit=1"), Just("?watch=1&resourceVersion=abc")],
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let store = Store::new();
            store.create(&Gvr::namespaces(), "", json!({"metadata": {"name": "default"}})).expect("ns");
            store.create(&Gvr::deployments(), "default", json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}})).expect("d");
            let app = router(Arc::new(AppState::new(store, None, true)));
            let req = Request::builder().method(method).uri(format!("{path}{query}"))
                .header("content-type", ct).body(Body::from(body)).expect("request");
            let resp = app.oneshot(req).await.expect("infallible");
            let code = resp.status().as_u16();
            prop_assert!(code != 500, "no internal errors on input");
            let is_watch = query.contains("watch=1") && code == 200;
            if code >= 400 && !is_watch {
                let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
                let v: Value = serde_json::from_slice(&bytes).expect("error bodies are JSON");
                prop_assert_eq!(v["kind"].as_str(), Some("Status"));
                prop_assert_eq!(v["code"].as_u64(), Some(code as u64));
            }
            Ok(())
        })?;
    }
}
