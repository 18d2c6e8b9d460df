//! The example ClusterRoles for callers (`examples/rbac/`) against the operator in `--auth-mode kubernetes`:
//! the sandbox answers SubjectAccessReviews from the roles' own rules, and each caller may do exactly what
//! its role says: the reader only reads, the scaler reads and scales (the `controllers/scale` subresource)
//! but cannot apply, patch or delete, the deployer does everything.

mod common;
use common::operator;

use std::time::Duration;

use machinist_sandbox::review::Reviews;
use machinist_sandbox::{Gvr, Sandbox};
use operator::{Reply, quick_sandbox, reply, workload};
use serde_json::{Value, json};

const ROLES: [(&str, &str); 3] = [
    ("examples/rbac/caller-read.yaml", "read-token"),
    ("examples/rbac/caller-scale.yaml", "scale-token"),
    ("examples/rbac/caller-deploy.yaml", "deploy-token"),
];

/// One user per example ClusterRole (the role's name as its group) and the role's rules, as the sandbox's
/// review table.
fn reviews() -> Reviews {
    let mut users = Vec::new();
    let mut rules = Vec::new();
    for (file, token) in ROLES {
        let text = std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR"))).expect(file);
        let role: Value = serde_yaml::from_str(&text).expect("a ClusterRole");
        assert_eq!(role["kind"], "ClusterRole", "{file}");
        let name = role["metadata"]["name"].as_str().expect("name").to_string();
        users.push(json!({"token": token, "name": format!("user-of-{name}"), "groups": [name]}));
        for rule in role["rules"].as_array().expect("rules") {
            rules.push(json!({"subjects": [name], "verbs": rule["verbs"], "apiGroups": rule["apiGroups"],
                              "resources": rule["resources"]}));
        }
    }
    serde_json::from_value(json!({"users": users, "rules": rules})).expect("reviews")
}

async fn call(base: &str, method: &str, path: &str, token: &str, body: Option<Value>) -> Reply {
    let http = common::http();
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = http.request(method, format!("{base}{path}")).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    reply(request.send().await.expect("response")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_caller_roles_grant_exactly_read_scale_and_deploy() {
    let sandbox = Sandbox::start(quick_sandbox()).await.expect("sandbox");
    sandbox.set_reviews(reviews());
    let ns = common::fresh_namespace(&sandbox);
    for name in ["web", "doomed"] {
        sandbox
            .store
            .create(
                &Gvr::new("apps", "v1", "deployments"),
                &ns,
                workload("Deployment", name, 1, json!({"app": name})),
            )
            .expect("deployment");
    }
    let op = operator::start_on(sandbox, &["--auth-mode=kubernetes"], None).await;
    let base = op.base.clone();
    let one = format!("/k8s/controllers/{ns}/web");
    common::eventually("the cache holds the Deployment", Duration::from_secs(60), async || {
        call(&base, "GET", &one, "read-token", None).await.status == 200
    })
    .await;

    let manifest = workload("Deployment", "api", 1, json!({"app": "api"}));
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"a": "b"}});
    let scale = Some(json!({"replicas": 2}));
    let labels = Some(json!({"labels": {"team": "a"}}));
    let list = format!("/k8s/controllers/{ns}");
    let machines = format!("/k8s/machines/{ns}");

    for token in ["read-token", "scale-token", "deploy-token"] {
        call(&base, "GET", &list, token, None).await.ok();
        call(&base, "GET", &machines, token, None).await.ok();
        call(&base, "GET", "/providers", token, None).await.ok();
    }
    // Denials come before any handler runs: the objects need not exist.
    for (token, method, path, body) in [
        ("read-token", "POST", one.clone(), scale.clone()),
        ("read-token", "PUT", list.clone(), Some(manifest.clone())),
        ("read-token", "DELETE", one.clone(), None),
        ("read-token", "PATCH", format!("{machines}/web-x/labels"), labels.clone()),
        ("scale-token", "PUT", list.clone(), Some(manifest.clone())),
        ("scale-token", "PUT", format!("/k8s/secrets/{ns}"), Some(secret.clone())),
        ("scale-token", "DELETE", one.clone(), None),
        ("scale-token", "PATCH", format!("{machines}/web-x/labels"), labels.clone()),
    ] {
        let r = call(&base, method, &path, token, body).await;
        r.problem(403, "forbidden");
        let detail = r.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(&format!("in namespace {ns}")), "{token} {method} {path}: {detail}");
    }
    let denied = call(&base, "POST", &one, "read-token", scale.clone()).await;
    assert!(denied.text.contains("update controllers/scale.machinist.dev"), "{}", denied.text);

    assert_eq!(call(&base, "POST", &one, "scale-token", scale).await.ok()["replicas"], 2);
    assert_eq!(
        call(&base, "PUT", &list, "deploy-token", Some(manifest)).await.ok()["metadata"]["name"],
        "api"
    );
    call(&base, "PUT", &format!("/k8s/secrets/{ns}"), "deploy-token", Some(secret)).await.ok();
    let deleted = call(&base, "DELETE", &format!("{list}/doomed"), "deploy-token", None).await;
    assert_eq!(deleted.ok()["deleted"], true);
    let again = call(&base, "POST", &one, "deploy-token", Some(json!({"replicas": 3}))).await;
    assert_eq!(again.ok()["replicas"], 3, "deploying implies scaling");
    let web = op.sandbox.store.get(&Gvr::new("apps", "v1", "deployments"), &ns, "web").expect("web");
    assert_eq!(web["spec"]["replicas"], 3);
}
