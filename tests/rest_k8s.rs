//! The REST contract of API.md for the k8s provider, end to end: the sandbox API server, the whole operator
//! (watchers → cache → REST API) and plain HTTP requests, asserting what a client sees (status, headers,
//! body shape). Each test runs its own sandbox and operator, in its own namespace. Reads, freshness, API
//! calls per read, recovery and the first sync live here; writes and bad input in `rest_k8s_writes.rs`.

mod common;
use common::operator;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use machinist_sandbox::controllers::set_pod_condition;
use machinist_sandbox::{Gvr, SandboxOptions};
use operator::{
    Operator, all_ready, assert_common_headers, assert_controller_shape, assert_machine_shape,
    assert_service_shape, by_id, create, ids, items, quick_sandbox, workload,
};
use serde_json::{Value, json};

/// Seeds: Deployment web (2 pods, 2 containers), StatefulSet db (1), a Deployment and a StatefulSet both
/// named `both`, a bare ReplicaSet, a bare pod, two services and a gateway. Waits until all 7 machines are
/// ready.
async fn seed_reads(op: &Operator, ns: &str) -> Vec<Value> {
    create(
        op,
        Gvr::deployments(),
        ns,
        workload("Deployment", "web", 2, json!({"app": "web", "tier": "front"})),
    );
    create(
        op,
        Gvr::statefulsets(),
        ns,
        workload("StatefulSet", "db", 1, json!({"app": "db", "tier": "back"})),
    );
    create(op, Gvr::deployments(), ns, workload("Deployment", "both", 1, json!({"app": "both-d"})));
    create(op, Gvr::statefulsets(), ns, workload("StatefulSet", "both", 1, json!({"app": "both-s"})));
    create(op, Gvr::replicasets(), ns, workload("ReplicaSet", "legacy", 1, json!({"app": "legacy"})));
    create(
        op,
        Gvr::pods(),
        ns,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "solo", "labels": {"app": "solo"}},
               "spec": {"containers": [{"name": "app", "image": "redis:7"}]}}),
    );
    create(
        op,
        Gvr::services(),
        ns,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"app": "web"}},
               "spec": {"selector": {"app": "web"}, "ports": [
                   {"name": "http", "port": 8080, "protocol": "TCP"},
                   {"name": "https", "port": 443, "protocol": "TCP"},
                   {"name": "dns", "port": 53, "protocol": "UDP"}]}}),
    );
    create(
        op,
        Gvr::services(),
        ns,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "labels": {"app": "db"}},
               "spec": {"selector": {"app": "db"}, "ports": [{"port": 5432}]}}),
    );
    create(
        op,
        Gvr::gateways(),
        ns,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "gw", "labels": {"app": "gw"}},
               "spec": {"gatewayClassName": "sandbox", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
    );
    let body = op.wait_for(60, &format!("/k8s/machines/{ns}"), all_ready(7)).await;
    items(&body).clone()
}

#[tokio::test]
async fn k8s_reads_serve_every_shape_on_both_prefixes() {
    let op = operator::start(quick_sandbox(), &[]).await;
    let ns = common::fresh_namespace(&op.sandbox);
    seed_reads(&op, &ns).await;

    for prefix in ["/k8s", "/api/v1/k8s"] {
        let r = op.get(&format!("{prefix}/machines/{ns}")).await;
        assert_common_headers(&r);
        assert!(r.header("content-type").is_some_and(|c| c.starts_with("application/json")), "{r:?}");
        let machines = items(r.ok()).clone();
        assert_eq!(machines.len(), 7, "{machines:#?}");
        machines.iter().for_each(assert_machine_shape);

        let web = by_id(&machines, "web-");
        assert_eq!(web.len(), 2, "{machines:#?}");
        let m = web[0];
        assert_eq!(m["controller"], json!({"name": "web", "kind": "Deployment", "apiVersion": "apps/v1"}));
        assert_eq!(m["status"], "Running");
        assert_eq!(m["ready"], true);
        assert_eq!(m["image"], "nginx:1.25");
        assert!(m["startTime"].as_str().is_some_and(operator::is_millis_rfc3339), "{m}");
        assert!(m["imageDigest"].as_str().is_some_and(|d| d.starts_with("sha256:")), "{m}");
        assert_eq!(m["labels"]["app"], "web");
        assert_eq!(
            m["resources"],
            json!({"requests": {"cpu": "150m", "memory": "96Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}}),
            "summed over both containers"
        );
        let names: Vec<&str> = items(&m["containers"]).iter().filter_map(|c| c["name"].as_str()).collect();
        assert_eq!(names, ["app", "sidecar"]);
        let web_id = m["id"].as_str().expect("id").to_string();

        let db = by_id(&machines, "db-0");
        assert_eq!(
            db[0]["controller"],
            json!({"name": "db", "kind": "StatefulSet", "apiVersion": "apps/v1"})
        );
        let solo = by_id(&machines, "solo");
        assert!(solo[0]["controller"].is_null(), "a bare pod has controller null: {}", solo[0]);
        assert!(solo[0].as_object().is_some_and(|o| o.contains_key("controller")), "controller is present");

        // One machine by id.
        let one = op.get(&format!("{prefix}/machines/{ns}/{web_id}")).await;
        assert_common_headers(&one);
        assert_eq!(one.ok()["id"], web_id.as_str());
        assert_machine_shape(&one.body);

        // Label filters: repeated `labels=` and `labels[]=`, AND semantics, split on the first `=`.
        for (query, want) in [
            ("labels=app%3Dweb", 2),
            ("labels=app%3Dweb&labels=tier%3Dfront", 2),
            ("labels=app%3Dweb&labels=tier%3Dback", 0),
            ("labels%5B%5D=app%3Dweb&labels%5B%5D=tier%3Dfront", 2),
            ("labels[]=tier=back", 1),
            ("labels=tier%3Dfront&labels[]=app=db", 0),
        ] {
            let r = op.get(&format!("{prefix}/machines/{ns}?{query}")).await;
            assert_eq!(items(r.ok()).len(), want, "{query}: {}", r.text);
        }

        // Controllers: top-level only, never the Deployment's ReplicaSet.
        let r = op.get(&format!("{prefix}/controllers/{ns}")).await;
        assert_common_headers(&r);
        let list = items(&r.ok()["controllers"]).clone();
        list.iter().for_each(assert_controller_shape);
        let mut kinds: Vec<(String, String)> = list
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or("").into(),
                    c["providerMetadata"]["kind"].as_str().unwrap_or("").into(),
                )
            })
            .collect();
        kinds.sort();
        let want: Vec<(String, String)> = [
            ("both", "Deployment"),
            ("both", "StatefulSet"),
            ("db", "StatefulSet"),
            ("legacy", "ReplicaSet"),
            ("web", "Deployment"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(kinds, want, "{list:#?}");
        let web_c = list.iter().find(|c| c["name"] == "web").expect("web");
        assert_eq!(web_c["replicas"], 2);
        assert_eq!(web_c["readyReplicas"], 2);
        assert_eq!(web_c["providerMetadata"], json!({"kind": "Deployment", "apiVersion": "apps/v1"}));
        assert_eq!(items(&web_c["machines"]).len(), 2);

        // ?machineId= gives the top-level owner (0 or 1 items).
        let r = op.get(&format!("{prefix}/controllers/{ns}?machineId={web_id}")).await;
        let owners = items(&r.ok()["controllers"]).clone();
        assert_eq!(owners.len(), 1, "{}", r.text);
        assert_eq!(owners[0]["name"], "web");
        assert_eq!(owners[0]["providerMetadata"]["kind"], "Deployment");
        let r = op.get(&format!("{prefix}/controllers/{ns}?machineId=solo")).await;
        assert_eq!(r.ok()["controllers"], json!([]));

        // One controller; kind resolution Deployment before StatefulSet; hints pin the kind.
        let r = op.get(&format!("{prefix}/controllers/{ns}/web")).await;
        let c = &r.ok()["controller"];
        assert_controller_shape(c);
        assert_eq!(c["name"], "web");
        assert_eq!(items(&c["machines"]).len(), 2);
        let r = op.get(&format!("{prefix}/controllers/{ns}/both")).await;
        assert_eq!(r.ok()["controller"]["providerMetadata"]["kind"], "Deployment", "{}", r.text);
        let r =
            op.get(&format!("{prefix}/controllers/{ns}/both?kind=StatefulSet&apiVersion=apps%2Fv1")).await;
        let c = &r.ok()["controller"];
        assert_eq!(c["providerMetadata"], json!({"kind": "StatefulSet", "apiVersion": "apps/v1"}));
        assert_eq!(items(&c["machines"])[0]["id"], "both-0");
        // A ReplicaSet nobody owns is a top-level controller, found by its bare name too.
        let r = op.get(&format!("{prefix}/controllers/{ns}/legacy")).await;
        let c = &r.ok()["controller"];
        assert_eq!(
            c["providerMetadata"],
            json!({"kind": "ReplicaSet", "apiVersion": "apps/v1"}),
            "{}",
            r.text
        );
        assert_eq!(items(&c["machines"]).len(), 1);
        let legacy_pod = items(&c["machines"])[0]["id"].as_str().expect("id").to_string();
        let r = op.get(&format!("{prefix}/machines/{ns}/{legacy_pod}")).await;
        assert_eq!(
            r.ok()["controller"],
            json!({"name": "legacy", "kind": "ReplicaSet", "apiVersion": "apps/v1"})
        );
        let r = op.get(&format!("{prefix}/controllers/{ns}/web?kind=Deployment&apiVersion=apps%2Fv1")).await;
        assert_eq!(r.ok()["controller"]["name"], "web");
        op.get(&format!("{prefix}/controllers/{ns}/web?kind=StatefulSet&apiVersion=apps%2Fv1"))
            .await
            .problem(404, "not-found");

        // Unknown names.
        let r = op.get(&format!("{prefix}/machines/{ns}/web-nope")).await;
        r.problem(404, "not-found");
        assert_common_headers(&r);
        op.get(&format!("{prefix}/controllers/{ns}/nope")).await.problem(404, "not-found");
        op.get(&format!("{prefix}/gateway/httproutes/{ns}/nope")).await.problem(404, "not-found");

        // Services keep the order of spec.ports.
        let r = op.get(&format!("{prefix}/services/{ns}")).await;
        let services = items(r.ok()).clone();
        services.iter().for_each(assert_service_shape);
        let web_s = services.iter().find(|s| s["name"] == "web").expect("web service");
        let ports: Vec<(u64, &str)> = items(&web_s["ports"])
            .iter()
            .map(|p| (p["port"].as_u64().unwrap_or(0), p["protocol"].as_str().unwrap_or("")))
            .collect();
        assert_eq!(ports, [(8080, "TCP"), (443, "TCP"), (53, "UDP")]);
        let r = op.get(&format!("{prefix}/services/{ns}?labels=app%3Ddb")).await;
        let only: Vec<&str> = items(r.ok()).iter().filter_map(|s| s["name"].as_str()).collect();
        assert_eq!(only, ["db"]);

        // Gateways: the cluster's objects, trimmed.
        let r = op.get(&format!("{prefix}/gateway/gateways/{ns}")).await;
        let gws = items(r.ok()).clone();
        assert_eq!(gws.len(), 1, "{}", r.text);
        assert_eq!(gws[0]["kind"], "Gateway");
        assert_eq!(gws[0]["apiVersion"], "gateway.networking.k8s.io/v1");
        assert_eq!(gws[0]["metadata"]["name"], "gw");
        assert_eq!(gws[0]["metadata"]["namespace"], ns.as_str());
        assert!(gws[0]["metadata"].get("managedFields").is_none(), "{}", gws[0]);
        assert!(gws[0]["spec"]["listeners"].is_array());
    }

    // Providers.
    let r = op.get("/providers").await;
    assert_common_headers(&r);
    let providers = items(r.ok()).clone();
    let k8s = providers.iter().find(|p| p["name"] == "k8s").expect("k8s listed");
    assert_eq!(k8s["enabled"], true);
    assert!(k8s["capabilities"].is_object(), "{k8s}");
    assert_eq!(k8s["health"]["healthy"], true, "{k8s}");
    assert_eq!(k8s["health"]["synced"], true, "{k8s}");
    assert_eq!(op.get("/api/v1/providers").await.ok(), r.ok());

    // X-Request-Id is echoed when sent.
    let sent = op
        .http
        .get(op.url(&format!("/k8s/machines/{ns}")))
        .header("X-Request-Id", "req-abc-123")
        .send()
        .await
        .expect("request");
    let r = operator::reply(sent).await;
    assert_eq!(r.header("x-request-id"), Some("req-abc-123"));
    // Without one, each response gets its own.
    let a = op.get("/providers").await;
    let b = op.get("/providers").await;
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"), "request ids are per request");
    assert_eq!(r.header("x-api-version"), Some("v1"));
}

#[tokio::test]
async fn ready_follows_the_pod_condition_and_digest_appears_with_the_image_id() {
    // Pods stay Pending (no container status) until the test starts them.
    let op = operator::start(
        SandboxOptions { pod_start_delay: Duration::from_secs(3600), ..quick_sandbox() },
        &[],
    )
    .await;
    let ns = common::fresh_namespace(&op.sandbox);
    create(&op, Gvr::deployments(), &ns, workload("Deployment", "slow", 1, json!({"app": "slow"})));
    create(
        &op,
        Gvr::pods(),
        &ns,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare"},
               "spec": {"containers": [{"name": "app", "image": "redis:7"}]}}),
    );
    let path = format!("/k8s/machines/{ns}");
    let list = op.wait_for(30, &path, |v| v.as_array().is_some_and(|a| a.len() == 2)).await;
    let bare = items(&list).iter().find(|m| m["id"] == "bare").expect("bare pod");
    assert_machine_shape(bare);
    assert_eq!(bare["labels"], json!({}), "labels is {{}} when none, never null");
    assert!(bare["controller"].is_null());
    assert_eq!(bare["resources"], json!({}), "no requests or limits: {bare}");
    let m = items(&list).iter().find(|m| m["id"] != "bare").expect("deployment pod");
    assert_machine_shape(m);
    assert_eq!(m["status"], "Pending");
    assert_eq!(m["ready"], false);
    assert!(m.get("imageDigest").is_none(), "no imageID yet, so no imageDigest: {m}");
    assert_eq!(m["controller"]["kind"], "Deployment");
    let id = m["id"].as_str().expect("id").to_string();
    let one = format!("/k8s/machines/{ns}/{id}");

    set_pod_condition(&op.sandbox.store, &ns, &id, true, false).expect("ready");
    let m = op.wait_for(10, &one, |m| m["ready"] == true).await;
    assert_eq!(m["status"], "Running");
    assert!(m["imageDigest"].as_str().is_some_and(|d| d.starts_with("sha256:")), "{m}");
    assert_eq!(m["containers"][0]["ready"], true);

    set_pod_condition(&op.sandbox.store, &ns, &id, false, false).expect("unready");
    let m = op.wait_for(10, &one, |m| m["ready"] == false).await;
    assert_eq!(m["status"], "Running", "an unready pod still runs");
    assert!(m["imageDigest"].is_string(), "the digest stays known: {m}");

    set_pod_condition(&op.sandbox.store, &ns, &id, true, false).expect("ready again");
    op.wait_for(10, &one, |m| m["ready"] == true).await;
    let c = op.get(&format!("/k8s/controllers/{ns}/slow")).await;
    assert_eq!(c.ok()["controller"]["readyReplicas"], 1, "{}", c.text);
}

#[tokio::test]
async fn a_kube_scale_patch_shows_in_rest_reads_within_a_second() {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Api, Patch, PatchParams};

    let op = operator::start(
        SandboxOptions { pod_start_delay: Duration::from_millis(20), ..quick_sandbox() },
        &[],
    )
    .await;
    let ns = common::fresh_namespace(&op.sandbox);
    create(&op, Gvr::deployments(), &ns, workload("Deployment", "web", 1, json!({"app": "web"})));
    let path = format!("/k8s/machines/{ns}");
    op.wait_for(30, &path, all_ready(1)).await;

    let api: Api<Deployment> = Api::namespaced(op.kube.clone(), &ns);
    api.patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}})))
        .await
        .expect("scale patch");
    let started = Instant::now();
    let mut controller_seen = None;
    loop {
        let c = op.get(&format!("/k8s/controllers/{ns}/web")).await;
        if controller_seen.is_none() && c.ok()["controller"]["replicas"] == 3 {
            controller_seen = Some(started.elapsed());
        }
        let m = op.get(&path).await;
        if controller_seen.is_some() && items(m.ok()).len() == 3 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1), "not fresh after 1 s: {}", m.text);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn ten_thousand_reads_make_no_api_call() {
    let op = operator::start(quick_sandbox(), &[]).await;
    let ns = common::fresh_namespace(&op.sandbox);
    let machines = seed_reads(&op, &ns).await;
    let pod = machines[0]["id"].as_str().expect("id").to_string();
    // Let every watcher settle (initial lists done, watches open) before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = op.sandbox_stats().await;

    let paths: Vec<String> = vec![
        format!("/k8s/machines/{ns}"),
        format!("/k8s/machines/{ns}/{pod}"),
        format!("/k8s/machines/{ns}?labels=app%3Dweb"),
        format!("/api/v1/k8s/controllers/{ns}"),
        format!("/k8s/controllers/{ns}?machineId={pod}"),
        format!("/k8s/controllers/{ns}/both"),
        format!("/k8s/controllers/{ns}/nope"),
        format!("/k8s/services/{ns}"),
        format!("/k8s/gateway/gateways/{ns}"),
        format!("/k8s/gateway/httproutes/{ns}/nope"),
    ];
    let paths = Arc::new(paths);
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let http = op.http.clone();
        let base = op.base.clone();
        let paths = paths.clone();
        tasks.push(tokio::spawn(async move {
            let mut statuses = [0u32; 2];
            for i in 0..1250 {
                let p = &paths[(worker + i) % paths.len()];
                let r = http.get(format!("{base}{p}")).send().await.expect("read");
                let ok = r.status().as_u16() == 200;
                statuses[usize::from(!ok)] += 1;
                r.bytes().await.expect("body");
            }
            statuses
        }));
    }
    let mut ok = 0;
    let mut not_found = 0;
    for t in tasks {
        let [a, b] = t.await.expect("reader");
        ok += a;
        not_found += b;
    }
    assert_eq!(ok + not_found, 10_000);
    assert_eq!(not_found, 2_000, "exactly the two 404 paths fail");

    let after = op.sandbox_stats().await;
    let count = |v: &Value, verb: &str| v["by_verb"][verb].as_u64().unwrap_or(0);
    let total = |v: &Value| v["total"].as_u64().unwrap_or(0);
    let watches = count(&after, "watch") - count(&before, "watch");
    let others = total(&after) - total(&before) - watches;
    assert_eq!(others, 0, "REST reads made API calls: before {before}, after {after}");
    assert!(
        watches <= count(&before, "watch"),
        "only the standing watches may have re-opened: {watches} new watches; before {before}"
    );
}

#[tokio::test]
async fn reads_stay_complete_while_watches_drop_and_history_is_compacted() {
    let op = operator::start(quick_sandbox(), &[]).await;
    let ns = common::fresh_namespace(&op.sandbox);
    let original = seed_reads(&op, &ns).await;
    let original_ids: BTreeSet<String> =
        original.iter().filter_map(|m| m["id"].as_str().map(String::from)).collect();
    let lists_before = op.sandbox_stats().await["by_verb"]["list"].as_u64().unwrap_or(0);

    // Readers poll while the watches are cut and history compacted (410 on re-watch → relist).
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..2 {
        let http = op.http.clone();
        let url = op.url(&format!("/k8s/machines/{ns}"));
        let controllers = op.url(&format!("/k8s/controllers/{ns}"));
        let stop = stop.clone();
        let original_ids = original_ids.clone();
        readers.push(tokio::spawn(async move {
            let mut reads = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let r = operator::reply(http.get(&url).send().await.expect("read")).await;
                assert_eq!(r.status, 200, "reads keep answering during a relist: {}", r.text);
                let got = ids(&r.body);
                assert!(original_ids.is_subset(&got), "partial list during recovery: {got:?}");
                assert!(got.len() <= original_ids.len() + 2, "{got:?}");
                let c = operator::reply(http.get(&controllers).send().await.expect("read")).await;
                assert_eq!(c.status, 200, "{}", c.text);
                assert!(items(&c.body["controllers"]).len() >= 4, "partial controllers: {}", c.text);
                reads += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            reads
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Every API call is slow for a while, so the relists take long enough for the readers to see any gap.
    op.sandbox_faults(json!({"close_watches": true, "compact": true, "latency_ms": 800})).await;
    // Changes while the watches are down: the relist must bring them in.
    create(&op, Gvr::deployments(), &ns, workload("Deployment", "late", 2, json!({"app": "late"})));
    op.sandbox.store.delete(&Gvr::services(), &ns, "db").expect("delete service");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    op.sandbox_faults(json!({})).await;

    op.wait_for(30, &format!("/k8s/machines/{ns}"), all_ready(9)).await;
    op.wait_for(30, &format!("/k8s/services/{ns}"), |v| items(v).len() == 1).await;
    op.wait_for(30, &format!("/k8s/controllers/{ns}/late"), |v| v["controller"]["readyReplicas"] == 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let reads = r.await.expect("reader saw only complete lists");
        assert!(reads > 5, "the readers ran during recovery ({reads} reads)");
    }
    let lists_after = op.sandbox_stats().await["by_verb"]["list"].as_u64().unwrap_or(0);
    assert!(
        lists_after > lists_before,
        "the watchers relisted after the 410 ({lists_before} → {lists_after})"
    );
}

#[tokio::test]
async fn before_the_first_sync_reads_answer_503_cache_not_ready_never_an_empty_list() {
    let sandbox = machinist_sandbox::Sandbox::start(quick_sandbox()).await.expect("sandbox");
    let ns = common::fresh_namespace(&sandbox);
    for i in 0..3 {
        sandbox
            .store
            .create(
                &Gvr::pods(),
                &ns,
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("p{i}")},
                       "spec": {"containers": [{"name": "app", "image": "redis:7"}]}}),
            )
            .expect("pod");
    }
    // Every API call takes 1.5 s, so the operator's first lists are slow.
    let faults = reqwest::Client::new()
        .post(format!("{}/sandbox/faults", sandbox.url()))
        .json(&json!({"latency_ms": 1500}))
        .send()
        .await
        .expect("faults");
    assert_eq!(faults.status(), 200);
    let op = operator::start_on(sandbox, &[], None).await;

    let paths = [
        format!("/k8s/machines/{ns}"),
        format!("/k8s/controllers/{ns}"),
        format!("/k8s/services/{ns}"),
        format!("/k8s/machines/{ns}/p0"),
    ];
    let r = op.get(&paths[0]).await;
    r.problem(503, "cache-not-ready");
    assert_common_headers(&r);
    let retry: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After in seconds");
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
    let r = op.get(&paths[2]).await;
    r.problem(503, "cache-not-ready");

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut not_ready = 0;
    loop {
        let r = op.get(&paths[0]).await;
        if r.status == 503 {
            r.problem(503, "cache-not-ready");
            assert!(r.header("retry-after").is_some());
            not_ready += 1;
        } else {
            assert_eq!(ids(r.ok()).len(), 3, "the first 200 is the complete list: {}", r.text);
            break;
        }
        assert!(Instant::now() < deadline, "the cache never synced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(not_ready > 0);
    op.sandbox_faults(json!({})).await;
    // Every resource a read needs synced, so every read answers.
    for p in &paths {
        op.wait_status(30, p, 200).await;
    }
}
