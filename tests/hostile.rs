//! Hostile callers get nowhere: every route crossed with odd spellings of its path (percent-encoded segments
//! and slashes, upper-case provider, doubled and trailing slashes, `.` and `..` segments, the `/api/v1`
//! alias, overlong and non-UTF-8 segments) and with no, a wrong, a read-only and a write token. Each answer
//! is either a refusal as a problem document or exactly what the canonical spelling gets; unauthenticated
//! and read-only callers write nothing (the sandbox's request log says so). Requests go over a raw socket so
//! that no client library normalizes the path first.

mod common;
use common::operator;

use std::time::Duration;

use machinist::api::auth::token_hash;
use machinist_sandbox::review::Reviews;
use machinist_sandbox::{Gvr, Sandbox};
use operator::{quick_sandbox, workload};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A response as it came off the wire.
#[derive(Debug, Clone, PartialEq)]
struct Raw {
    status: u16,
    content_type: String,
    body: Value,
}

impl Raw {
    fn is_problem(&self) -> bool {
        self.status >= 400
            && self.content_type == "application/problem+json"
            && self.body["type"].as_str().is_some_and(|t| t.starts_with("urn:problem:machinist:"))
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..end]).unwrap_or("0").trim(), 16).unwrap_or(0);
        if size == 0 || body.len() < end + 2 + size {
            break;
        }
        out.extend_from_slice(&body[end + 2..end + 2 + size]);
        body = &body[(end + 4 + size).min(body.len())..];
    }
    out
}

/// `method path` exactly as written, on a fresh connection.
async fn raw(addr: &str, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Raw {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    let body = body.map(Value::to_string).unwrap_or_default();
    if !body.is_empty() {
        head.push_str("content-type: application/json\r\n");
    }
    head.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(head.as_bytes()).await.expect("send");
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut bytes))
        .await
        .expect("an answer within 30 s")
        .expect("read");
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head");
    let head = String::from_utf8_lossy(&bytes[..split]).to_string();
    let mut payload = bytes[split + 4..].to_vec();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
            })
            .unwrap_or("")
            .to_string()
    };
    if header("transfer-encoding").eq_ignore_ascii_case("chunked") {
        payload = dechunk(&payload);
    }
    let body = serde_json::from_slice(&payload).unwrap_or(Value::Null);
    Raw { status, content_type: header("content-type"), body }
}

/// Every route of API.md on k8s, canonical, with a body for writes. `{ns}` is the test's namespace.
fn routes(ns: &str) -> Vec<(&'static str, String, Option<Value>)> {
    let deployment = workload("Deployment", "web", 1, json!({"app": "web"}));
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"},
                         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"k": "v"}});
    let route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "r"},
                       "spec": {"parentRefs": [{"name": "gw"}]}});
    vec![
        ("GET", "/providers".into(), None),
        ("GET", format!("/k8s/machines/{ns}"), None),
        ("GET", format!("/k8s/machines/{ns}/nosuch"), None),
        ("PATCH", format!("/k8s/machines/{ns}/nosuch/labels"), Some(json!({"labels": {"x": "y"}}))),
        ("GET", format!("/k8s/controllers/{ns}"), None),
        ("PUT", format!("/k8s/controllers/{ns}"), Some(deployment)),
        ("GET", format!("/k8s/controllers/{ns}/web"), None),
        ("POST", format!("/k8s/controllers/{ns}/web"), Some(json!({"replicas": 1}))),
        ("DELETE", format!("/k8s/controllers/{ns}/gone"), None),
        ("GET", format!("/k8s/services/{ns}"), None),
        ("PUT", format!("/k8s/services/{ns}"), Some(service)),
        ("DELETE", format!("/k8s/services/{ns}/gone"), None),
        ("PUT", format!("/k8s/secrets/{ns}"), Some(secret)),
        ("GET", format!("/k8s/gateway/gateways/{ns}"), None),
        ("PUT", format!("/k8s/gateway/httproutes/{ns}"), Some(route)),
        ("GET", format!("/k8s/gateway/httproutes/{ns}/gone"), None),
        ("DELETE", format!("/k8s/gateway/httproutes/{ns}/gone"), None),
    ]
}

fn encode_all(segment: &str) -> String {
    segment.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// Odd spellings of a canonical path (`/k8s/...` or `/providers`).
fn spellings(path: &str) -> Vec<String> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let with = |i: usize, f: &dyn Fn(&str) -> String| {
        let mut s: Vec<String> = segments.iter().map(|s| s.to_string()).collect();
        if let Some(seg) = s.get_mut(i) {
            *seg = f(seg);
        }
        format!("/{}", s.join("/"))
    };
    let last = segments.len() - 1;
    let mut out = vec![
        format!("/api/v1{path}"),
        with(0, &encode_all),
        format!("/api/v1{}", with(0, &encode_all)),
        with(0, &|s| s.to_uppercase()),
        with(last, &encode_all),
        with(last, &|s| format!("{s}%2Fx")),
        with(last, &|s| format!("{s}%FF")),
        with(last, &|_| "a".repeat(300)),
        with(last, &|_| "b".repeat(5000)),
        format!("{path}/"),
        format!("/{path}"),
        path.replacen('/', "//", 2),
        with(0, &|s| format!("{s}/.")),
        with(0, &|s| format!("{s}/x/..")),
        format!("/api%2Fv1{path}"),
        format!("/api/v1/.{path}"),
    ];
    if segments.len() > 2 {
        out.push(with(2, &|s| encode_all(&s[..1]) + &s[1..]));
        out.push(with(1, &|s| s.to_uppercase()));
    }
    out
}

fn hex(hash: [u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes made by anyone but the operator's own housekeeping: what a refused caller must not cause.
async fn writes_recorded(sandbox_url: &str) -> Vec<Value> {
    let stats: Value = common::http()
        .get(format!("{sandbox_url}/sandbox/stats"))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats JSON");
    stats["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| ["create", "update", "patch", "delete"].contains(&r["verb"].as_str().unwrap_or("")))
        .filter(|r| {
            !["leases", "events", "tokenreviews", "subjectaccessreviews"]
                .contains(&r["resource"].as_str().unwrap_or(""))
        })
        .cloned()
        .collect()
}

/// A sandbox with a fresh namespace holding Deployment `web` (1 replica).
async fn sandbox_with_web() -> (Sandbox, String) {
    let sandbox = Sandbox::start(quick_sandbox()).await.expect("sandbox");
    let ns = common::fresh_namespace(&sandbox);
    let web = workload("Deployment", "web", 1, json!({"app": "web"}));
    sandbox.store.create(&Gvr::new("apps", "v1", "deployments"), &ns, web).expect("deployment");
    (sandbox, ns)
}

async fn reset_stats(sandbox_url: &str) {
    common::http().delete(format!("{sandbox_url}/sandbox/stats")).send().await.expect("reset stats");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_every_route_is_refused_or_answered_as_its_canonical_form() {
    let (sandbox, ns) = sandbox_with_web().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tokens.yaml");
    std::fs::write(
        &file,
        format!(
            "tokens:\n- {{identity: reader, sha256: {}, rights: [read]}}\n- {{identity: writer, sha256: {}, rights: [read, write]}}\n",
            hex(token_hash("read-token")),
            hex(token_hash("write-token"))
        ),
    )
    .expect("tokens file");
    let flags = [
        "--auth-mode=static".to_string(),
        format!("--auth-tokens-file={}", file.display()),
        "--rate-limit-writes-identity=0".into(),
        "--rate-limit-writes-ip=0".into(),
        "--rate-limit-writes-global=0".into(),
        "--rate-limit-reads-identity=0".into(),
        "--rate-limit-reads-ip=0".into(),
        "--rate-limit-reads-global=0".into(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let op = operator::start_on(sandbox, &flags, None).await;
    let addr = op.base.trim_start_matches("http://").to_string();
    let web = format!("/k8s/controllers/{ns}/web");
    common::eventually("the cache holds web, all ready", Duration::from_secs(60), async || {
        let r = raw(&addr, "GET", &web, Some("read-token"), None).await;
        r.status == 200 && r.body["controller"]["readyReplicas"] == 1
    })
    .await;

    let sandbox_url = op.sandbox.url();
    let mut checked = 0;
    for tokens in [&[None, Some("wrong-token"), Some("read-token")][..], &[Some("write-token")][..]] {
        reset_stats(&sandbox_url).await;
        for (method, path, body) in routes(&ns) {
            for &token in tokens {
                let canonical = raw(&addr, method, &path, token, body.as_ref()).await;
                for spelling in spellings(&path) {
                    let got = raw(&addr, method, &spelling, token, body.as_ref()).await;
                    checked += 1;
                    if got.is_problem() {
                        continue;
                    }
                    let what = format!(
                        "{method} {spelling} with {token:?}: {got:?}\ncanonical {path}: {canonical:?}"
                    );
                    assert_eq!(got.status, canonical.status, "{what}");
                    if method == "GET" {
                        assert_eq!(got.body, canonical.body, "{what}");
                    }
                }
            }
        }
        if tokens.contains(&Some("read-token")) {
            let writes = writes_recorded(&sandbox_url).await;
            assert!(writes.is_empty(), "callers without write rights caused writes: {writes:#?}");
        }
    }
    assert!(checked > 1000, "{checked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_outside_the_watched_namespaces_write_nothing() {
    let sandbox = Sandbox::start(quick_sandbox()).await.expect("sandbox");
    let watched = common::fresh_namespace(&sandbox);
    let other = common::fresh_namespace(&sandbox);
    let deployments = Gvr::new("apps", "v1", "deployments");
    sandbox
        .store
        .create(&deployments, &other, workload("Deployment", "web", 1, json!({"app": "web"})))
        .expect("web");
    let namespaces = format!("--namespaces={watched}");
    let op = operator::start_on(sandbox, &[&namespaces], None).await;
    let addr = op.base.trim_start_matches("http://").to_string();
    common::eventually("ready", Duration::from_secs(60), async || {
        raw(&addr, "GET", "/health/readiness", None, None).await.status == 200
    })
    .await;
    reset_stats(&op.sandbox.url()).await;
    let secret =
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "leak"}, "stringData": {"k": "v"}});
    for (method, path, body) in [
        ("PUT", format!("/k8s/secrets/{other}"), Some(secret)),
        (
            "PUT",
            format!("/k8s/controllers/{other}"),
            Some(workload("Deployment", "api", 1, json!({"app": "api"}))),
        ),
        ("POST", format!("/k8s/controllers/{other}/web?kind=Deployment"), Some(json!({"replicas": 0}))),
        ("POST", format!("/%6B8s/controllers/{other}/web"), Some(json!({"replicas": 0}))),
        ("PATCH", format!("/k8s/machines/{other}/web-1/labels"), Some(json!({"labels": {"a": "b"}}))),
        ("DELETE", format!("/k8s/controllers/{other}/web"), None),
        ("DELETE", format!("/k8s/services/{other}/web"), None),
        (
            "PUT",
            format!("/k8s/gateway/httproutes/{other}"),
            Some(json!({"kind": "HTTPRoute", "metadata": {"name": "r"}})),
        ),
        ("DELETE", format!("/k8s/gateway/httproutes/{other}/r"), None),
    ] {
        let r = raw(&addr, method, &path, None, body.as_ref()).await;
        assert_eq!(
            (r.status, r.body["type"].as_str()),
            (404, Some("urn:problem:machinist:scope-not-watched")),
            "{method} {path}: {r:?}"
        );
    }
    let writes = writes_recorded(&op.sandbox.url()).await;
    assert!(writes.is_empty(), "writes outside --namespaces reached the API server: {writes:#?}");
    assert!(op.sandbox.store.get(&Gvr::new("", "v1", "secrets"), &other, "leak").is_none());
    let web = op.sandbox.store.get(&deployments, &other, "web").expect("web still there");
    assert_eq!(web["spec"]["replicas"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_mode_authorizes_the_decoded_route() {
    let (sandbox, ns) = sandbox_with_web().await;
    let reviews: Reviews = serde_yaml::from_str(
        "users: [{token: reader-token, name: reader}]\n\
         rules: [{subjects: [reader], verbs: [get, list], apiGroups: [machinist.dev], resources: ['*']}]\n",
    )
    .expect("reviews");
    sandbox.set_reviews(reviews);
    let op = operator::start_on(sandbox, &["--auth-mode=kubernetes"], None).await;
    let addr = op.base.trim_start_matches("http://").to_string();
    let web = format!("/k8s/controllers/{ns}/web");
    common::eventually("the cache holds web", Duration::from_secs(60), async || {
        raw(&addr, "GET", &web, Some("reader-token"), None).await.status == 200
    })
    .await;
    reset_stats(&op.sandbox.url()).await;
    let scale = json!({"replicas": 0});
    for path in [format!("/%6B8s/controllers/{ns}/web"), format!("/api/v1/%6b8s/controllers/{ns}/%77eb")] {
        let r = raw(&addr, "POST", &path, None, Some(&scale)).await;
        assert_eq!(r.status, 401, "{path}: {r:?}");
        let r = raw(&addr, "POST", &path, Some("reader-token"), Some(&scale)).await;
        assert_eq!(r.status, 403, "{path}: {r:?}");
        assert!(
            r.body["detail"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("update controllers/scale.machinist.dev in namespace {ns}")),
            "{r:?}"
        );
        let r = raw(&addr, "GET", &path, Some("reader-token"), None).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(r.body["controller"]["name"], "web");
    }
    assert!(writes_recorded(&op.sandbox.url()).await.is_empty());
    let web = op.sandbox.store.get(&Gvr::new("apps", "v1", "deployments"), &ns, "web").expect("web");
    assert_eq!(web["spec"]["replicas"], 1, "nothing was scaled");
}
