//! The REST contract of API.md for k8s writes and bad input, end to end over the sandbox and the whole
//! operator: scale, labels, manifest and HTTPRoute PUTs, deletes, write timeouts, and the 400/404 problems
//! every malformed request gets. Reads live in `rest_k8s.rs`.

mod common;
use common::operator;

use std::time::{Duration, Instant};

use machinist_sandbox::Gvr;
use operator::{
    all_ready, assert_common_headers, assert_controller_shape, assert_machine_shape, create, ids, items,
    quick_sandbox, workload,
};
use serde_json::json;

#[tokio::test]
async fn k8s_writes_scale_label_apply_and_delete() {
    let op = operator::start(quick_sandbox(), &[]).await;
    let ns = common::fresh_namespace(&op.sandbox);
    create(
        &op,
        Gvr::gateways(),
        &ns,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "gw"},
               "spec": {"gatewayClassName": "sandbox", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
    );
    let mut seen = String::new();

    // Manifest PUT of a Deployment: create, then the same PUT again changes nothing.
    let manifest = workload("Deployment", "api", 1, json!({"app": "api"}));
    let r = op.put(&format!("/k8s/controllers/{ns}"), manifest.clone()).await;
    assert_common_headers(&r);
    assert_eq!(r.ok()["metadata"]["name"], "api", "{}", r.text);
    assert_eq!(r.body["kind"], "Deployment");
    // The sandbox's controllers write status meanwhile, so compare the generation, not resourceVersion.
    let generation = r.body["metadata"]["generation"].clone();
    assert!(generation.is_u64(), "{}", r.text);
    let again = op.put(&format!("/api/v1/k8s/controllers/{ns}"), manifest).await;
    assert_eq!(again.ok()["metadata"]["generation"], generation, "a repeated apply changes no spec");
    let machines = op.wait_for(30, &format!("/k8s/machines/{ns}"), all_ready(1)).await;
    let pod = items(&machines)[0]["id"].as_str().expect("id").to_string();

    // PATCH labels merges, null removes.
    let path = format!("/k8s/machines/{ns}/{pod}/labels");
    let r = op.patch(&path, json!({"labels": {"team": "blue", "tier": "x"}})).await;
    let m = r.ok();
    assert_machine_shape(m);
    assert_eq!(m["labels"]["team"], "blue", "{m}");
    assert_eq!(m["labels"]["app"], "api", "other labels stay: {m}");
    let r = op.patch(&path, json!({"labels": {"tier": null}})).await;
    let labels = r.ok()["labels"].as_object().expect("labels").clone();
    assert!(!labels.contains_key("tier") && labels["team"] == "blue", "{labels:?}");
    let r = op.get(&format!("/k8s/machines/{ns}?labels=team%3Dblue")).await;
    assert_eq!(items(r.ok()).len(), 1, "the read sees the write: {}", r.text);

    // POST scale: 200 with the new replicas, repeated 3× with the same answer.
    for _ in 0..3 {
        let r = op
            .post(
                &format!("/k8s/controllers/{ns}/api?kind=Deployment&apiVersion=apps%2Fv1"),
                json!({"replicas": 3}),
            )
            .await;
        assert_common_headers(&r);
        assert_controller_shape(r.ok());
        assert_eq!(r.body["replicas"], 3, "{}", r.text);
        assert_eq!(r.body["name"], "api");
        // Read-your-writes: the very next read shows the new count.
        let c = op.get(&format!("/k8s/controllers/{ns}/api")).await;
        assert_eq!(c.ok()["controller"]["replicas"], 3, "{}", c.text);
    }
    let dep = op.sandbox.store.get(&Gvr::deployments(), &ns, "api").expect("deployment");
    assert_eq!(dep["spec"]["replicas"], 3);
    op.wait_for(30, &format!("/k8s/machines/{ns}"), all_ready(3)).await;
    let r = op.get(&format!("/k8s/controllers/{ns}/api")).await;
    assert_eq!(r.ok()["controller"]["replicas"], 3);

    // Service and Secret PUTs.
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "labels": {"app": "api"}},
                     "spec": {"selector": {"app": "api"}, "ports": [{"port": 9000, "protocol": "TCP"}, {"port": 9001}]}});
    let r = op.put(&format!("/k8s/services/{ns}"), svc).await;
    assert_eq!(r.ok()["metadata"]["name"], "api", "{}", r.text);
    seen.push_str(&r.text);
    let listed = op.wait_for(10, &format!("/k8s/services/{ns}"), |v| items(v).len() == 1).await;
    assert_eq!(items(&listed)[0]["ports"][0]["port"], 9000);
    let secret_value = "c3VwZXItc2VjcmV0LXZhbHVl"; // "super-secret-value"
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                        "type": "Opaque", "data": {"password": secret_value}, "stringData": {"token": "plain-token-xyz"}});
    let r = op.put(&format!("/k8s/secrets/{ns}"), secret).await;
    assert_common_headers(&r);
    assert_eq!(r.ok(), &json!({"status": "Success", "name": "creds"}));
    seen.push_str(&r.text);
    let stored = op.sandbox.store.get(&Gvr::new("", "v1", "secrets"), &ns, "creds").expect("secret applied");
    assert!(stored["data"]["password"].is_string(), "{stored}");

    // HTTPRoute: PUT, GET with status, DELETE, GET 404.
    let route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                       "metadata": {"name": "api"},
                       "spec": {"parentRefs": [{"name": "gw"}], "hostnames": ["api.example.com"],
                                "rules": [{"backendRefs": [{"name": "api", "port": 9000}]}]}});
    let r = op.put(&format!("/k8s/gateway/httproutes/{ns}"), route).await;
    assert_eq!(r.ok()["metadata"]["name"], "api", "{}", r.text);
    assert_eq!(r.body["kind"], "HTTPRoute");
    let got = op
        .wait_for(10, &format!("/k8s/gateway/httproutes/{ns}/api"), |v| {
            v["status"]["parents"][0]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Accepted" && c["status"] == "True"))
        })
        .await;
    assert!(got["metadata"].get("managedFields").is_none(), "{got}");
    assert_eq!(got["spec"]["hostnames"], json!(["api.example.com"]));
    let r = op.delete(&format!("/k8s/gateway/httproutes/{ns}/api")).await;
    assert_eq!(r.ok(), &json!({"status": "Success", "name": "api", "deleted": true}));
    op.wait_status(10, &format!("/k8s/gateway/httproutes/{ns}/api"), 404).await.problem(404, "not-found");

    // Every read of the namespace: the secret's data never appears.
    for path in ["machines", "controllers", "services", "gateway/gateways"] {
        let r = op.get(&format!("/k8s/{path}/{ns}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        seen.push_str(&r.text);
    }
    for leak in [secret_value, "plain-token-xyz", "super-secret-value"] {
        assert!(!seen.contains(leak), "secret data leaked into a response");
    }

    // DELETE a service and a controller; then both are gone (404), and a second DELETE is a 404 too.
    let r = op.delete(&format!("/k8s/services/{ns}/api")).await;
    assert_eq!(r.ok(), &json!({"status": "Success", "name": "api", "deleted": true}));
    let r = op.delete(&format!("/k8s/controllers/{ns}/api")).await;
    assert_common_headers(&r);
    assert_eq!(r.ok(), &json!({"status": "Success", "name": "api", "deleted": true}));
    // Read-your-writes: gone at once, for reads and for a second DELETE.
    op.get(&format!("/k8s/controllers/{ns}/api")).await.problem(404, "not-found");
    op.delete(&format!("/k8s/controllers/{ns}/api")).await.problem(404, "not-found");
    op.wait_for(10, &format!("/k8s/services/{ns}"), |v| items(v).is_empty()).await;

    // A StatefulSet manifest PUT; with a Deployment of the same name, the hints pin what POST scales.
    for kind in ["Deployment", "StatefulSet"] {
        let r =
            op.put(&format!("/k8s/controllers/{ns}"), workload(kind, "dual", 1, json!({"app": kind}))).await;
        assert_eq!(r.ok()["kind"], kind, "{}", r.text);
    }
    let r = op
        .post(
            &format!("/k8s/controllers/{ns}/dual?kind=StatefulSet&apiVersion=apps%2Fv1"),
            json!({"replicas": 2}),
        )
        .await;
    assert_eq!(r.ok()["providerMetadata"]["kind"], "StatefulSet", "{}", r.text);
    assert_eq!(r.body["replicas"], 2);
    let sts = op.sandbox.store.get(&Gvr::statefulsets(), &ns, "dual").expect("statefulset");
    assert_eq!(sts["spec"]["replicas"], 2);
    let dep = op.sandbox.store.get(&Gvr::deployments(), &ns, "dual").expect("deployment");
    assert_eq!(dep["spec"]["replicas"], 1, "the Deployment of the same name is untouched");
    op.wait_for(30, &format!("/k8s/controllers/{ns}/dual?kind=StatefulSet&apiVersion=apps%2Fv1"), |v| {
        v["controller"]["readyReplicas"] == 2
    })
    .await;
    // Kind mismatches in manifest PUTs are 400s.
    let r = op
        .put(&format!("/k8s/controllers/{ns}"), workload("ReplicaSet", "nope", 1, json!({"app": "x"})))
        .await;
    r.bad_input();
    assert!(op.sandbox.store.get(&Gvr::replicasets(), &ns, "nope").is_none());
}

#[tokio::test]
async fn bad_input_gets_a_problem_and_changes_nothing() {
    let sandbox = machinist_sandbox::Sandbox::start(quick_sandbox()).await.expect("sandbox");
    let ns = common::fresh_namespace(&sandbox);
    let other = common::fresh_namespace(&sandbox);
    let op = operator::start_on(sandbox, &["--namespaces", &ns], None).await;
    create(&op, Gvr::deployments(), &ns, workload("Deployment", "web", 1, json!({"app": "web"})));
    op.wait_for(30, &format!("/k8s/machines/{ns}"), all_ready(1)).await;

    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("GET", format!("/k8s/machines/{ns}?labels=novalue"), 400, "validation-failed"),
        ("GET", format!("/k8s/machines/{ns}?labels[]=%3Dv"), 400, "validation-failed"),
        ("GET", format!("/k8s/machines/{ns}/Bad_Name"), 400, "bad-request"),
        ("GET", format!("/k8s/machines/{ns}/{}", "a".repeat(300)), 400, "bad-request"),
        ("GET", format!("/k8s/controllers/{}", "n".repeat(64)), 400, "bad-request"),
        ("GET", "/k8s/machines/NotANamespace".to_string(), 400, "bad-request"),
        // An unknown provider is no route at all; a known one that is off is `provider-not-enabled`.
        ("GET", format!("/nope/machines/{ns}"), 404, "not-found"),
        ("GET", format!("/ecs/machines/{ns}"), 404, "provider-not-enabled"),
        ("GET", format!("/api/v1/ecs/controllers/{ns}"), 404, "provider-not-enabled"),
        ("GET", format!("/k8s/machines/{other}"), 404, "scope-not-watched"),
        ("GET", format!("/k8s/controllers/{other}/web"), 404, "scope-not-watched"),
        ("GET", format!("/k8s/controllers/{ns}/web?kind=Pod"), 400, "validation-failed"),
        ("GET", format!("/k8s/controllers/{ns}/web?kind=Deployment&apiVersion=v9"), 400, "validation-failed"),
        ("GET", "/k8s/no-such-route".to_string(), 404, "not-found"),
        ("DELETE", format!("/k8s/machines/{ns}"), 405, "method-not-allowed"),
        ("GET", format!("/k8s/machines/{ns}?labels=a%3Db&labels=%ZZ"), 400, "validation-failed"),
    ];
    for (method, path, status, slug) in &cases {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let r = op.call(method, path, None).await;
        r.problem(*status, slug);
        assert_common_headers(&r);
    }

    // Bodies: malformed JSON, wrong types, negative or huge replicas, bad labels, wrong manifests.
    let scale = format!("/k8s/controllers/{ns}/web");
    let labels = |pod: &str| format!("/k8s/machines/{ns}/{pod}/labels");
    let pod = ids(&op.get(&format!("/k8s/machines/{ns}")).await.body).into_iter().next().expect("pod");
    let foreign = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{{\"name\":\"x\",\"namespace\":\"{other}\"}}}}"
    );
    let bodies: Vec<(reqwest::Method, String, &str)> = vec![
        (reqwest::Method::POST, scale.clone(), "{\"replicas\": "),
        (reqwest::Method::POST, scale.clone(), "{\"replicas\": \"3\"}"),
        (reqwest::Method::POST, scale.clone(), "{\"replicas\": -1}"),
        (reqwest::Method::POST, scale.clone(), "{\"replicas\": 1e12}"),
        (reqwest::Method::POST, scale.clone(), "{\"replicas\": 99999999999}"),
        (reqwest::Method::POST, scale.clone(), "[]"),
        (reqwest::Method::PATCH, labels(&pod), "{\"labels\": {\"bad key!\": \"v\"}}"),
        (reqwest::Method::PATCH, labels(&pod), "{\"labels\": {\"k\": 5}}"),
        (reqwest::Method::PATCH, labels(&pod), "not json"),
        (reqwest::Method::PUT, format!("/k8s/controllers/{ns}"), "{\"kind\": \"Deployment\"}"),
        (
            reqwest::Method::PUT,
            format!("/k8s/services/{ns}"),
            "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"x\"}}",
        ),
        (reqwest::Method::PUT, format!("/k8s/services/{ns}"), &foreign),
    ];
    for (method, path, body) in bodies {
        let r = op.send_raw(method.clone(), &path, body).await;
        assert_eq!(r.status, 400, "{method} {path} {body}: {}", r.text);
        r.bad_input();
    }
    // Nothing changed.
    let dep = op.sandbox.store.get(&Gvr::deployments(), &ns, "web").expect("deployment");
    assert_eq!(dep["spec"]["replicas"], 1);
    assert!(op.sandbox.store.get(&Gvr::services(), &ns, "x").is_none());
    let m = op.get(&format!("/k8s/machines/{ns}/{pod}")).await;
    assert_eq!(
        m.ok()["labels"],
        json!({"app": "web", "pod-template-hash": m.body["labels"]["pod-template-hash"]})
    );
    // The server is still up.
    op.get(&format!("/k8s/controllers/{ns}/web")).await.ok();
}

#[tokio::test]
async fn a_scale_the_cluster_does_not_confirm_in_time_gives_504_with_retry_after_and_a_retry_succeeds() {
    let op = operator::start(quick_sandbox(), &["--write-timeout", "2"]).await;
    let ns = common::fresh_namespace(&op.sandbox);
    create(&op, Gvr::deployments(), &ns, workload("Deployment", "web", 1, json!({"app": "web"})));
    op.wait_for(30, &format!("/k8s/machines/{ns}"), all_ready(1)).await;

    // Every API call now takes 4 s (the open watches are not affected): the write cannot be confirmed in 2 s.
    op.sandbox_faults(json!({"latency_ms": 4000})).await;
    let started = Instant::now();
    let r = op.post(&format!("/k8s/controllers/{ns}/web"), json!({"replicas": 3})).await;
    r.problem(504, "timeout");
    assert_common_headers(&r);
    let retry: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
    assert!(started.elapsed() < Duration::from_secs(10), "answered after the 2 s write timeout");
    // Reads keep answering during a stuck write.
    let c = op.get(&format!("/k8s/controllers/{ns}/web")).await;
    assert_eq!(c.status, 200, "{}", c.text);

    // Retrying as the clients do (honouring Retry-After) succeeds once the cluster answers again; the
    // write that timed out goes on meanwhile, and repeating it is safe.
    op.sandbox_faults(json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = op.post(&format!("/k8s/controllers/{ns}/web"), json!({"replicas": 3})).await;
        if r.status == 200 {
            assert_eq!(r.body["replicas"], 3, "{}", r.text);
            break;
        }
        r.problem(504, "timeout");
        assert!(Instant::now() < deadline, "the retried scale never succeeded");
        let wait = r.header("retry-after").and_then(|v| v.parse().ok()).unwrap_or(1u64);
        tokio::time::sleep(Duration::from_secs(wait)).await;
    }
    op.wait_for(30, &format!("/k8s/machines/{ns}"), all_ready(3)).await;
}
