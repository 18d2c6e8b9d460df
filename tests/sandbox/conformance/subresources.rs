//! `pods/ephemeralcontainers`, `serviceaccounts/token` (TokenRequest) and the CSR's `/approval` and
//! `/status`, through kube-rs's own helpers for them.

use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::common;

#[tokio::test]
async fn ephemeral_containers_are_added_through_their_subresource() {
    let (sb, client) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": "nginx"}]}}),
    )
    .expect("pod");
    pods.create(&PostParams::default(), &pod).await.expect("create");
    let patched = pods
        .patch_ephemeral_containers(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"ephemeralContainers": [
                {"name": "debugger", "image": "busybox", "targetContainerName": "app"}]}})),
        )
        .await
        .expect("patch ephemeralcontainers");
    let eph =
        patched.spec.as_ref().and_then(|s| s.ephemeral_containers.clone()).expect("ephemeral containers");
    assert_eq!(eph[0].name, "debugger");
    let got = pods.get_ephemeral_containers("p").await.expect("get ephemeralcontainers");
    assert_eq!(got.spec.and_then(|s| s.ephemeral_containers).map(|e| e.len()), Some(1));
    // Only ephemeral containers move through this subresource; removing one is refused.
    let mut changed = pods.get("p").await.expect("get");
    if let Some(spec) = changed.spec.as_mut() {
        spec.containers[0].image = Some("other".into());
        spec.ephemeral_containers = Some(vec![]);
    }
    let err =
        pods.replace_ephemeral_containers("p", &PostParams::default(), &changed).await.expect_err("removal");
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 422), "{err:?}");
    let after = pods.get("p").await.expect("get");
    let spec = after.spec.expect("spec");
    assert_eq!(spec.containers[0].image.as_deref(), Some("nginx"));
    assert_eq!(spec.ephemeral_containers.map(|e| e.len()), Some(1));
}

#[tokio::test]
async fn token_requests_issue_tokens_the_sandbox_accepts() {
    let (sb, client) = common::start_with(machinist_sandbox::SandboxOptions {
        test_hooks: true,
        token: Some("admin-token".into()),
        ..Default::default()
    })
    .await;
    let ns = common::fresh_namespace(&sb);
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let tr: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": ["machinist"], "expirationSeconds": 3600}}))
            .expect("token request");
    let out = sas.create_token_request("default", &PostParams::default(), &tr).await.expect("TokenRequest");
    let token = out.status.and_then(|s| s.token).expect("a token");
    assert_eq!(token.split('.').count(), 3, "JWT-shaped: {token}");
    assert_eq!(out.spec.and_then(|s| s.audiences), Some(vec!["machinist".to_string()]));
    let short: TokenRequest =
        serde_json::from_value(json!({"spec": {"expirationSeconds": 60}})).expect("token request");
    let err =
        sas.create_token_request("default", &PostParams::default(), &short).await.expect_err("too short");
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 422), "{err:?}");
    let err = sas.create_token_request("nobody", &PostParams::default(), &tr).await.expect_err("no such SA");
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 404), "{err:?}");

    // The token authenticates, as the service account.
    let mut cfg = kube::Config::new(sb.url().parse().expect("url"));
    cfg.auth_info.token = Some(token.clone().into());
    let as_sa = Client::try_from(cfg).expect("client");
    Api::<ServiceAccount>::namespaced(as_sa, &ns)
        .get("default")
        .await
        .expect("a request with the issued token");
    let stats: serde_json::Value = common::http()
        .get(format!("{}/sandbox/stats", sb.url()))
        .bearer_auth("admin-token")
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert!(stats.to_string().contains(&format!("system:serviceaccount:{ns}:default")), "{stats}");
}

#[tokio::test]
async fn csrs_are_approved_and_signed_through_their_subresources() {
    let (_sb, client) = common::start().await;
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let csr: CertificateSigningRequest = serde_json::from_value(json!({
        "metadata": {"name": "node-csr"},
        "spec": {"request": ByteString(b"-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n".to_vec()),
            "signerName": "kubernetes.io/kube-apiserver-client", "usages": ["client auth"]}}))
    .expect("csr");
    let created = csrs.create(&PostParams::default(), &csr).await.expect("create CSR");
    assert!(created.spec.username.is_some(), "the requester is stamped");
    let approval = json!({"status": {"conditions": [{"type": "Approved", "status": "True",
        "reason": "ConformanceApproved", "message": "approved by the test"}]}});
    let approved = csrs
        .patch_approval("node-csr", &PatchParams::default(), &Patch::Merge(&approval))
        .await
        .expect("approve");
    let conds = approved.status.and_then(|s| s.conditions).expect("conditions");
    assert_eq!(conds[0].type_, "Approved");
    let got = csrs.get_approval("node-csr").await.expect("get approval");
    assert!(got.status.and_then(|s| s.conditions).is_some());
    let signed = csrs
        .patch_status(
            "node-csr",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"certificate": "LS0tLS1CRUdJTg=="}})),
        )
        .await
        .expect("sign via /status");
    let status = signed.status.expect("status");
    assert!(status.certificate.is_some());
    assert_eq!(status.conditions.map(|c| c.len()), Some(1), "signing keeps the approval");

    let bad: CertificateSigningRequest =
        serde_json::from_value(json!({"metadata": {"name": "bad"}, "spec": {"request": ""}}))
            .expect("bad csr");
    let err = csrs.create(&PostParams::default(), &bad).await.expect_err("no request, no signer");
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 422), "{err:?}");
}
