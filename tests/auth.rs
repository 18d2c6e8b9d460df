//! The API edge end to end: the operator (`app::OperatorBuilder`) serving on 127.0.0.1 against an in-process
//! sandbox, called over HTTP as a client would. Auth modes, rate limits and their headers, a retrying
//! client, and bad input that must neither panic nor leak a token into the logs.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use machinist::api::auth::token_hash;
use machinist::app::OperatorBuilder;
use machinist_sandbox::review::Reviews;
use machinist_sandbox::{Gvr, Sandbox, SandboxOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Every log line of this test binary, to check that no token reaches a log.
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buf.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buf
    })
    .clone()
}

fn logs() -> String {
    String::from_utf8_lossy(&capture_logs().lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

struct Operator {
    base: String,
    stop: CancellationToken,
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The operator against `sb` with these extra `run` flags, once its readiness probe passes.
async fn operator(sb: &Sandbox, flags: &[&str]) -> Operator {
    capture_logs();
    let argv = ["--http-listen=127.0.0.1:0", "--leader-election=false"];
    let operator = OperatorBuilder::from_flags(argv.iter().chain(flags).copied())
        .expect("flags parse")
        .kubeconfig_yaml(sb.kubeconfig_yaml());
    let stop = CancellationToken::new();
    let spawned = operator.spawn(stop.clone());
    let addr =
        tokio::time::timeout(Duration::from_secs(30), spawned).await.expect("listens").expect("addr").addr;
    let base = format!("http://{addr}");
    let http = common::http();
    for _ in 0..300 {
        let r = http.get(format!("{base}/health/readiness")).send().await;
        if r.is_ok_and(|r| r.status() == StatusCode::OK) {
            return Operator { base, stop };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the operator never became ready");
}

async fn sandbox() -> Sandbox {
    Sandbox::start(SandboxOptions { test_hooks: true, ..SandboxOptions::default() }).await.expect("sandbox")
}

fn deployment(sb: &Sandbox, ns: &str, name: &str) {
    let dep = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    });
    sb.store.create(&Gvr::new("apps", "v1", "deployments"), ns, dep).expect("deployment");
}

async fn send(req: reqwest::RequestBuilder) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let r = req.send().await.expect("response");
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.bytes().await.expect("body");
    (status, headers, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn hex(hash: [u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// A tokens file: `reader` may read, `alice` and `bob` may read and write.
fn tokens_file(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("tokens.yaml");
    let entry = |id: &str, token: &str, rights: &str| {
        format!("- {{identity: {id}, sha256: {}, rights: [{rights}]}}\n", hex(token_hash(token)))
    };
    let text = format!(
        "tokens:\n{}{}{}",
        entry("reader", "reader-token", "read"),
        entry("alice", "alice-token", "read, write"),
        entry("bob", "bob-token", "read, write"),
    );
    std::fs::write(&path, text).expect("tokens file");
    path.display().to_string()
}

async fn wait_for_controller(base: &str, token: &str, ns: &str, name: &str) {
    let http = common::http();
    for _ in 0..100 {
        let url = format!("{base}/k8s/controllers/{ns}/{name}");
        if send(http.get(&url).bearer_auth(token)).await.0 == StatusCode::OK {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{ns}/{name} never reached the cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_mode_answers_401_403_and_200() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = tokens_file(&dir);
    // Created before the operator starts, so that its caches hold the namespace once it is ready.
    let ns = common::fresh_namespace(&sb);
    deployment(&sb, &ns, "web");
    let op = operator(&sb, &["--auth-mode=static", &format!("--auth-tokens-file={file}")]).await;
    let http = common::http();
    let list = format!("{}/k8s/machines/{ns}", op.base);
    let scale = format!("{}/api/v1/k8s/controllers/{ns}/web", op.base);

    let (status, headers, body) = send(http.get(&list)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["type"], "urn:problem:machinist:unauthorized");
    assert_eq!(headers["content-type"], "application/problem+json");
    let (status, _, _) = send(http.get(&list).bearer_auth("not-a-known-token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, headers, _) = send(http.get(&list).bearer_auth("reader-token")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.contains_key("x-ratelimit-limit") && headers.contains_key("ratelimit-policy"));

    wait_for_controller(&op.base, "reader-token", &ns, "web").await;
    let (status, _, body) =
        send(http.post(&scale).bearer_auth("reader-token").json(&json!({"replicas": 2}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["type"], "urn:problem:machinist:forbidden");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("update controllers/scale.machinist.dev in namespace {ns}")),
        "{detail}"
    );

    let (status, _, body) =
        send(http.post(&scale).bearer_auth("alice-token").json(&json!({"replicas": 2}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Probes, metrics and OpenAPI need no token and carry no rate-limit headers.
    for path in ["/health/liveness", "/metrics", "/openapi.json"] {
        let (status, headers, _) = send(http.get(format!("{}{path}", op.base))).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(!headers.contains_key("x-ratelimit-limit"), "{path} is exempt");
    }
    let metrics = http.get(format!("{}/metrics", op.base)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"machinist_auth_decisions_total{mode="static",result="forbidden"}"#),
        "{metrics}"
    );
    let logs = logs();
    assert!(logs.contains("identity=alice"), "the access log names the identity");
    for token in ["reader-token", "alice-token", "not-a-known-token"] {
        assert!(!logs.contains(token), "{token} reached the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_mode_reviews_once_per_token_and_permission() {
    let sb = sandbox().await;
    let reviews: Reviews = serde_yaml::from_str(
        "users:\n\
         - {token: ops-token, name: ops-user, groups: [ops]}\n\
         - {token: dev-token, name: dev-user, groups: [dev]}\n\
         rules:\n\
         - {subjects: [ops], verbs: ['*'], apiGroups: [machinist.dev], resources: ['*']}\n\
         - {subjects: [dev-user], verbs: [get, list], apiGroups: [machinist.dev], resources: [machines]}\n",
    )
    .expect("reviews");
    sb.set_reviews(reviews);
    let ns = common::fresh_namespace(&sb);
    let op = operator(
        &sb,
        &["--auth-mode=kubernetes", "--rate-limit-reads-identity=0", "--rate-limit-reads-ip=0"],
    )
    .await;
    let http = common::http();
    let machines = format!("{}/k8s/machines/{ns}", op.base);
    let controllers = format!("{}/k8s/controllers/{ns}", op.base);

    assert_eq!(send(http.get(&machines)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(send(http.get(&machines).bearer_auth("stolen")).await.0, StatusCode::UNAUTHORIZED);
    let (status, _, body) = send(http.get(&controllers).bearer_auth("dev-token")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(&format!("list controllers.machinist.dev in namespace {ns}")), "{detail}");
    assert_eq!(send(http.get(&machines).bearer_auth("dev-token")).await.0, StatusCode::OK);

    http.delete(format!("{}/sandbox/stats", sb.url())).send().await.expect("reset stats");
    for i in 0..1000 {
        let url = if i % 2 == 0 { &machines } else { &controllers };
        let (status, _, body) = send(http.get(url).bearer_auth("ops-token")).await;
        assert_eq!(status, StatusCode::OK, "request {i}: {body}");
    }
    let stats: Value =
        http.get(format!("{}/sandbox/stats", sb.url())).send().await.unwrap().json().await.unwrap();
    let count = |resource: &str| -> u64 {
        stats["requests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["verb"] == "create" && r["resource"] == resource)
            .map(|r| r["count"].as_u64().unwrap_or(0))
            .sum()
    };
    assert_eq!(count("tokenreviews"), 1, "one TokenReview for 1,000 requests: {stats}");
    assert_eq!(count("subjectaccessreviews"), 2, "one SubjectAccessReview per (verb, resource): {stats}");
    assert!(!logs().contains("ops-token") && !logs().contains("stolen"), "a token reached the logs");
}

fn assert_limit_headers(headers: &reqwest::header::HeaderMap, limit: &str) {
    assert_eq!(headers["x-ratelimit-limit"], limit);
    assert_eq!(headers["x-ratelimit-remaining"], "0");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let reset: u64 = headers["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
    assert!(reset >= now && reset <= now + 61, "reset {reset} is epoch seconds within the minute");
    assert!(headers["ratelimit-policy"].to_str().unwrap().contains(&format!(";q={limit};w=60")));
    assert!(headers["ratelimit"].to_str().unwrap().contains(";r=0;"));
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_101st_write_of_an_identity_is_refused_and_others_are_unaffected() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = tokens_file(&dir);
    // Created before the operator starts, so that its caches hold the namespace once it is ready.
    let ns = common::fresh_namespace(&sb);
    let op = operator(&sb, &["--auth-mode=static", &format!("--auth-tokens-file={file}")]).await;
    let http = common::http();
    let delete = format!("{}/k8s/services/{ns}/nosuch", op.base);
    for i in 0..100 {
        let (status, headers, body) = send(http.delete(&delete).bearer_auth("alice-token")).await;
        assert_ne!(status, StatusCode::TOO_MANY_REQUESTS, "write {i}: {body}");
        assert_eq!(headers["x-ratelimit-remaining"], (99 - i).to_string().as_str(), "write {i}");
    }
    let (status, headers, body) = send(http.delete(&delete).bearer_auth("alice-token")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["type"], "urn:problem:machinist:rate-limit-exceeded");
    assert_eq!(body["retry_after"].to_string(), headers["retry-after"].to_str().unwrap());
    assert_limit_headers(&headers, "100");

    let (status, _, _) = send(http.delete(&delete).bearer_auth("bob-token")).await;
    assert_ne!(status, StatusCode::TOO_MANY_REQUESTS, "bob has his own bucket");
    let (status, _, _) =
        send(http.get(format!("{}/k8s/machines/{ns}", op.base)).bearer_auth("alice-token")).await;
    assert_eq!(status, StatusCode::OK, "reads have their own buckets");
    let metrics = http.get(format!("{}/metrics", op.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"machinist_rate_limited_total{tier="identity"}"#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_tier_caps_the_sum_of_all_identities() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = tokens_file(&dir);
    let flags = [
        "--auth-mode=static",
        &format!("--auth-tokens-file={file}"),
        "--rate-limit-reads-identity=4",
        "--rate-limit-reads-ip=0",
        "--rate-limit-reads-global=6",
    ];
    // Created before the operator starts, so that its caches hold the namespace once it is ready.
    let ns = common::fresh_namespace(&sb);
    let op = operator(&sb, &flags).await;
    let http = common::http();
    let list = format!("{}/k8s/machines/{ns}", op.base);
    let mut ok = 0;
    for token in ["alice-token", "bob-token", "reader-token"] {
        for _ in 0..4 {
            if send(http.get(&list).bearer_auth(token)).await.0 == StatusCode::OK {
                ok += 1;
            }
        }
    }
    assert_eq!(ok, 6, "three identities of 4 each, capped at 6 in total");
    let (status, headers, _) = send(http.get(&list).bearer_auth("reader-token")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_limit_headers(&headers, "6");
}

/// The control plane's client: up to 3 retries, each after the Retry-After it was given (≤ 30 s).
async fn control_plane_get(http: &reqwest::Client, url: &str) -> (StatusCode, u32) {
    let mut retries = 0;
    loop {
        let r = http.get(url).send().await.expect("response");
        if r.status() != StatusCode::TOO_MANY_REQUESTS || retries == 3 {
            return (r.status(), retries);
        }
        let secs: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(secs <= 30, "Retry-After {secs}");
        tokio::time::sleep(Duration::from_secs(secs)).await;
        retries += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_honouring_retry_after_gets_through_once_capacity_is_back() {
    let sb = sandbox().await;
    // No token (mode none), so the client IP is the tier that applies; one token back per second.
    // Created before the operator starts, so that its caches hold the namespace once it is ready.
    let ns = common::fresh_namespace(&sb);
    let op = operator(&sb, &["--rate-limit-reads-ip=60"]).await;
    let http = common::http();
    let list = format!("{}/k8s/machines/{ns}", op.base);
    let mut refused = false;
    for _ in 0..61 {
        refused |= send(http.get(&list)).await.0 == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(refused, "the burst exhausted the bucket");
    let (status, retries) = control_plane_get(&http, &list).await;
    assert_eq!(status, StatusCode::OK);
    assert!((1..=3).contains(&retries), "{retries} retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_authorization_headers_are_401_and_never_logged() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = tokens_file(&dir);
    // Created before the operator starts, so that its caches hold the namespace once it is ready.
    let ns = common::fresh_namespace(&sb);
    let op = operator(&sb, &["--auth-mode=static", &format!("--auth-tokens-file={file}")]).await;
    let http = common::http();
    let list = format!("{}/k8s/machines/{ns}", op.base);
    let secret = "leakcheck-7f3a";
    let huge = format!("Bearer {secret}{}", "x".repeat(16 * 1024));
    let cases: Vec<Vec<u8>> = vec![
        format!("Basic {secret}").into_bytes(),
        format!("Bearer{secret}").into_bytes(),
        format!("Bearer {secret} extra").into_bytes(),
        format!("Bearer {secret}\u{e9}").into_bytes(),
        [b"Bearer ".as_slice(), secret.as_bytes(), &[0xff, 0x80, 0x01]].concat(),
        b"Bearer ".to_vec(),
        huge.into_bytes(),
    ];
    for value in cases {
        let Ok(header) = reqwest::header::HeaderValue::from_bytes(&value) else { continue };
        let (status, _, body) = send(http.get(&list).header("authorization", header)).await;
        assert!(matches!(status.as_u16(), 400 | 401), "{status} for {:?}", String::from_utf8_lossy(&value));
        assert!(!body.to_string().contains(secret), "the problem echoes the token");
    }
    let (status, _, _) = send(
        http.get(&list).header("authorization", "Bearer alice-token").header("authorization", "Bearer x"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "two Authorization headers");
    assert_eq!(send(http.get(&list).bearer_auth("alice-token")).await.0, StatusCode::OK, "still serving");
    assert!(!logs().contains(secret), "a token reached the logs");
}
