//! The REST contract of API.md for the ecs provider, end to end: the ECS emulator, the whole operator (with
//! k8s enabled too, over a sandbox) and plain HTTP requests. The shape assertions are the ones `rest_k8s`
//! uses (`common/operator.rs`). Each test uses its own emulator account.

mod common;
use common::ecs as ecs_common;
use common::operator;

use std::collections::BTreeMap;
use std::time::Duration;

use machinist_sandbox::Sandbox;
use operator::{
    Operator, assert_common_headers, assert_controller_shape, assert_machine_shape, assert_service_shape,
    items, quick_sandbox,
};
use serde_json::{Value, json};

fn running(n: usize) -> impl Fn(&Value) -> bool {
    move |v| v.as_array().is_some_and(|a| a.len() == n && a.iter().all(|m| m["ready"] == true))
}

/// An emulator account with cluster `shop`: service `web` (2 tasks, load balancer on 8080) and `batch` (1),
/// and the operator with both providers polling it.
async fn start() -> (Operator, aws_sdk_ecs::Client) {
    let emu = ecs_common::shared().await;
    let acct = ecs_common::account();
    let ecs = ecs_common::admin(emu, &acct).await;
    ecs_common::cluster(&ecs, "shop").await;
    ecs_common::service(&ecs, "shop", "web", 2, Some(8080)).await;
    ecs_common::service(&ecs, "shop", "batch", 1, None).await;
    let settings = ecs_common::settings(emu, &acct, &["shop"], Duration::from_millis(300));
    let sandbox = Sandbox::start(quick_sandbox()).await.expect("sandbox");
    let op = operator::start_on(sandbox, &["--provider", "k8s,ecs"], Some(settings)).await;
    op.wait_for(60, "/ecs/machines/shop", running(3)).await;
    (op, ecs)
}

#[tokio::test]
async fn ecs_reads_serve_the_same_shapes_as_k8s() {
    let (op, _ecs) = start().await;

    for prefix in ["/ecs", "/api/v1/ecs"] {
        let r = op.get(&format!("{prefix}/machines/shop")).await;
        assert_common_headers(&r);
        let machines = items(r.ok()).clone();
        assert_eq!(machines.len(), 3, "{machines:#?}");
        machines.iter().for_each(assert_machine_shape);
        let web: Vec<&Value> = machines.iter().filter(|m| m["controller"]["name"] == "web").collect();
        assert_eq!(web.len(), 2);
        let m = web[0];
        assert_eq!(m["status"], "Running");
        assert_eq!(m["ready"], true);
        assert_eq!(m["controller"]["kind"], "Service");
        assert_eq!(m["labels"], json!({"app": "web"}));
        assert_eq!(
            m["resources"],
            json!({"limits": {"cpu": "250m", "memory": "512Mi"}, "requests": {"cpu": "250m", "memory": "512Mi"}})
        );
        assert!(m["imageDigest"].as_str().is_some_and(|d| d.starts_with("sha256:")), "{m}");
        let id = m["id"].as_str().expect("id").to_string();

        let one = op.get(&format!("{prefix}/machines/shop/{id}")).await;
        assert_eq!(one.ok()["id"], id.as_str());
        assert_machine_shape(&one.body);
        let r = op.get(&format!("{prefix}/machines/shop?labels=app%3Dbatch")).await;
        assert_eq!(items(r.ok()).len(), 1, "{}", r.text);
        let r = op.get(&format!("{prefix}/machines/shop?labels[]=app=web&labels[]=tier=x")).await;
        assert_eq!(items(r.ok()).len(), 0, "labels are ANDed: {}", r.text);

        let r = op.get(&format!("{prefix}/controllers/shop")).await;
        let list = items(&r.ok()["controllers"]).clone();
        list.iter().for_each(assert_controller_shape);
        let names: Vec<&str> = list.iter().filter_map(|c| c["name"].as_str()).collect();
        assert_eq!(names, ["batch", "web"]);
        assert_eq!(list[1]["replicas"], 2);
        assert_eq!(list[1]["providerMetadata"], json!({}));

        // The k8s hints the control plane sends everywhere are ignored on ecs.
        let r = op.get(&format!("{prefix}/controllers/shop/web?kind=Deployment&apiVersion=apps%2Fv1")).await;
        let c = &r.ok()["controller"];
        assert_controller_shape(c);
        assert_eq!(items(&c["machines"]).len(), 2);
        let r = op.get(&format!("{prefix}/controllers/shop?machineId={id}")).await;
        let owners = items(&r.ok()["controllers"]).clone();
        assert_eq!(owners.len(), 1, "{}", r.text);
        assert_eq!(owners[0]["name"], "web");

        let r = op.get(&format!("{prefix}/services/shop")).await;
        let services = items(r.ok()).clone();
        services.iter().for_each(assert_service_shape);
        assert_eq!(services.len(), 1, "only web has ports: {}", r.text);
        assert_eq!(services[0]["ports"][0]["port"], 8080);

        op.get(&format!("{prefix}/machines/shop/no-such-task")).await.problem(404, "not-found");
        op.get(&format!("{prefix}/controllers/shop/nope")).await.problem(404, "not-found");
        op.get(&format!("{prefix}/machines/elsewhere")).await.problem(404, "scope-not-watched");
        op.get(&format!("{prefix}/controllers/elsewhere/web")).await.problem(404, "scope-not-watched");
    }

    // Providers: both enabled, ecs without httproutes or apply, healthy once polled.
    let r = op.get("/providers").await;
    assert_common_headers(&r);
    let providers = items(r.ok()).clone();
    let ecs = providers.iter().find(|p| p["name"] == "ecs").expect("ecs listed");
    assert_eq!(ecs["enabled"], true);
    assert_eq!(ecs["capabilities"]["httproutes"], false, "{ecs}");
    assert_eq!(ecs["capabilities"]["apply"], false, "{ecs}");
    assert!(ecs["health"].is_object(), "{ecs}");
    assert!(providers.iter().any(|p| p["name"] == "k8s" && p["enabled"] == true), "{}", r.text);

    // Capabilities ecs lacks: 501 with a detail that says so.
    let manifest = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}});
    let unsupported: Vec<(reqwest::Method, &str, Option<Value>)> = vec![
        (reqwest::Method::GET, "/ecs/gateway/gateways/shop", None),
        (reqwest::Method::GET, "/ecs/gateway/httproutes/shop/web", None),
        (reqwest::Method::DELETE, "/ecs/gateway/httproutes/shop/web", None),
        (reqwest::Method::PUT, "/ecs/gateway/httproutes/shop", Some(manifest.clone())),
        (reqwest::Method::PUT, "/ecs/controllers/shop", Some(manifest.clone())),
        (reqwest::Method::PUT, "/ecs/services/shop", Some(manifest.clone())),
        (reqwest::Method::PUT, "/api/v1/ecs/secrets/shop", Some(manifest)),
    ];
    for (method, path, body) in unsupported {
        let r = op.call(method.clone(), path, body).await;
        r.problem(501, "capability-not-supported");
        assert!(r.body["detail"].as_str().is_some_and(|d| d.contains("ecs")), "{method} {path}: {}", r.text);
    }

    // DELETE of an ECS service's "service" is a no-op that says so.
    let r = op.delete("/ecs/services/shop/web").await;
    assert_eq!(r.ok(), &json!({"status": "Success", "name": "web", "deleted": false}));
}

#[tokio::test]
async fn ecs_scale_via_rest_and_the_tasks_follow_and_labels_are_tags() {
    let (op, ecs) = start().await;

    for _ in 0..3 {
        let r = op
            .post("/ecs/controllers/shop/web?kind=Deployment&apiVersion=apps%2Fv1", json!({"replicas": 4}))
            .await;
        assert_common_headers(&r);
        assert_controller_shape(r.ok());
        assert_eq!(r.body["replicas"], 4, "{}", r.text);
        // Read-your-writes: the very next read shows the new desired count.
        let c = op.get("/ecs/controllers/shop/web").await;
        assert_eq!(c.ok()["controller"]["replicas"], 4, "{}", c.text);
    }
    common::eventually("4 web tasks in the emulator", Duration::from_secs(60), || async {
        ecs_common::running_tasks(&ecs, "shop", "web").await == 4
    })
    .await;
    op.wait_for(60, "/ecs/controllers/shop/web", |v| {
        v["controller"]["readyReplicas"] == 4
            && v["controller"]["machines"].as_array().map(Vec::len) == Some(4)
    })
    .await;
    let r = op.post("/ecs/controllers/shop/web", json!({"replicas": 1})).await;
    assert_eq!(r.ok()["replicas"], 1);
    common::eventually("1 web task in the emulator", Duration::from_secs(60), || async {
        ecs_common::running_tasks(&ecs, "shop", "web").await == 1
    })
    .await;
    op.post("/ecs/controllers/shop/web", json!({"replicas": -1})).await.problem(400, "validation-failed");
    op.post("/ecs/controllers/shop/nope", json!({"replicas": 1})).await.problem(404, "not-found");
    op.post("/ecs/controllers/elsewhere/web", json!({"replicas": 1})).await.problem(404, "scope-not-watched");

    // Labels are task tags: merge, null removes, more than 50 is a 400 that changes nothing.
    let list = op.get("/ecs/machines/shop?labels=app%3Dbatch").await;
    let id = items(list.ok())[0]["id"].as_str().expect("id").to_string();
    let path = format!("/ecs/machines/shop/{id}/labels");
    let r = op.patch(&path, json!({"labels": {"team": "blue"}})).await;
    assert_machine_shape(r.ok());
    assert_eq!(r.body["labels"], json!({"app": "batch", "team": "blue"}), "{}", r.text);
    let r = op.patch(&path, json!({"labels": {"team": null}})).await;
    assert_eq!(r.ok()["labels"], json!({"app": "batch"}), "{}", r.text);
    let many: BTreeMap<String, String> = (0..51).map(|i| (format!("k{i}"), "v".to_string())).collect();
    let r = op.patch(&path, json!({"labels": many})).await;
    r.bad_input();
    let m = op.get(&format!("/ecs/machines/shop/{id}")).await;
    assert_eq!(m.ok()["labels"], json!({"app": "batch"}), "a rejected patch changes nothing");
}

#[tokio::test]
async fn ecs_faults_keep_reads_serving_the_last_snapshot_and_providers_show_the_error() {
    use machinist_sandbox::ecs_emulator::Fault;

    let emu = ecs_common::shared().await;
    let acct = ecs_common::account();
    let ecs = ecs_common::admin(emu, &acct).await;
    ecs_common::cluster(&ecs, "ops").await;
    ecs_common::service(&ecs, "ops", "web", 2, None).await;
    let settings = ecs_common::settings(emu, &acct, &["ops"], Duration::from_millis(200));
    let sandbox = Sandbox::start(quick_sandbox()).await.expect("sandbox");
    let op = operator::start_on(sandbox, &["--provider", "k8s,ecs"], Some(settings)).await;
    op.wait_for(60, "/ecs/machines/ops", running(2)).await;

    let ecs_health = |v: &Value| -> Value {
        items(v).iter().find(|p| p["name"] == "ecs").map(|p| p["health"].clone()).unwrap_or(Value::Null)
    };
    assert_eq!(ecs_health(op.get("/providers").await.ok())["healthy"], true);

    for (fault, expect) in
        [(Fault::throttling(&acct, -1), "throttled"), (Fault::access_denied(&acct, -1), "AccessDenied")]
    {
        emu.inject(&fault).await.expect("inject");
        // Reported, and still healthy: ECS throttles per account, so a failing refresh must not take every
        // replica out at once (only lasting staleness, `--ecs-stale-after`, does).
        op.wait_for(30, "/providers", |v| {
            let h = ecs_health(v);
            h["healthy"] == true && h["reason"].as_str().is_some_and(|r| r.contains(expect))
        })
        .await;
        assert_eq!(op.get("/health/readiness").await.status, 200);
        // Reads keep answering from the last snapshot, complete.
        let r = op.get("/ecs/controllers/ops/web").await;
        assert_eq!(r.ok()["controller"]["machines"].as_array().map(Vec::len), Some(2), "{}", r.text);
        let r = op.get("/ecs/machines/ops").await;
        assert_eq!(items(r.ok()).len(), 2, "{}", r.text);
        emu.clear_faults(&acct).await.expect("clear");
        op.wait_for(30, "/providers", |v| ecs_health(v).get("reason").is_none()).await;
    }

    // A change made after recovery shows up, without a restart.
    ecs.update_service().cluster("ops").service("web").desired_count(3).send().await.expect("external scale");
    op.wait_for(60, "/ecs/controllers/ops/web", |v| {
        v["controller"]["replicas"] == 3 && v["controller"]["readyReplicas"] == 3
    })
    .await;
}
