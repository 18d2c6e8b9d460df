//! Two electors against a fake API server on 127.0.0.1 that stores one Lease with resourceVersion
//! preconditions (create → 409 when it exists, PUT → 409 on a stale resourceVersion).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::*;

#[derive(Default)]
struct Store {
    lease: Option<Value>,
    rv: u64,
    /// Every request hangs (never answers) while set.
    hang: bool,
}

type Shared = Arc<Mutex<Store>>;

fn status(code: u16, reason: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
        "message": reason});
    (StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(body))
        .into_response()
}

async fn handle(
    State(store): State<Shared>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    if store.lock().unwrap().hang {
        futures::future::pending::<()>().await;
    }
    let mut s = store.lock().unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let base = "/apis/coordination.k8s.io/v1/namespaces/default/leases";
    let path = uri.path();
    match method {
        Method::GET if path == format!("{base}/{LEASE_NAME}") => match &s.lease {
            Some(lease) => axum::Json(lease.clone()).into_response(),
            None => status(404, "NotFound"),
        },
        Method::POST if path == base => {
            if s.lease.is_some() {
                return status(409, "AlreadyExists");
            }
            s.rv += 1;
            let mut lease = body;
            lease["metadata"]["resourceVersion"] = json!(s.rv.to_string());
            s.lease = Some(lease.clone());
            (StatusCode::CREATED, axum::Json(lease)).into_response()
        }
        Method::PUT if path == format!("{base}/{LEASE_NAME}") => {
            let current =
                s.lease.as_ref().and_then(|l| l["metadata"]["resourceVersion"].as_str().map(String::from));
            if current.is_none() || body["metadata"]["resourceVersion"].as_str() != current.as_deref() {
                return status(409, "Conflict");
            }
            s.rv += 1;
            let mut lease = body;
            lease["metadata"]["resourceVersion"] = json!(s.rv.to_string());
            s.lease = Some(lease.clone());
            axum::Json(lease).into_response()
        }
        _ => status(404, "NotFound"),
    }
}

async fn server() -> (Shared, Client) {
    let store: Shared = Arc::default();
    let app = Router::new().fallback(handle).with_state(Arc::clone(&store));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    (store, crate::provider::k8s::client::client_with(config, false).unwrap())
}

fn quick(identity: &str) -> LeaseConfig {
    LeaseConfig {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1500),
        retry_period: Duration::from_millis(100),
        ..LeaseConfig::new("default", identity)
    }
}

struct Running {
    leader: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

fn start(client: &Client, identity: &str) -> Running {
    let (elector, leader) = Elector::new(client.clone(), quick(identity));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(elector.run(async move {
        let _ = stopped.await;
    }));
    Running { leader, stop: Some(stop), task }
}

async fn wait_leader(r: &mut Running, within: Duration) -> Duration {
    let started = tokio::time::Instant::now();
    tokio::time::timeout(within, r.leader.wait_for(|l| *l)).await.expect("became leader in time").unwrap();
    started.elapsed()
}

#[tokio::test]
async fn one_leader_and_release_hands_over_within_three_seconds() {
    let (store, client) = server().await;
    let mut a = start(&client, "a");
    wait_leader(&mut a, Duration::from_secs(5)).await;
    let mut b = start(&client, "b");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(*a.leader.borrow() && !*b.leader.borrow(), "exactly one leader while a renews");

    a.stop.take().unwrap().send(()).unwrap();
    a.task.await.unwrap();
    assert_eq!(store.lock().unwrap().lease.as_ref().unwrap()["spec"].get("holderIdentity"), None);
    let took = wait_leader(&mut b, Duration::from_secs(3)).await;
    assert!(took < Duration::from_secs(3), "took over in {took:?}");
    assert_eq!(store.lock().unwrap().lease.as_ref().unwrap()["spec"]["holderIdentity"], "b");
    assert_eq!(store.lock().unwrap().lease.as_ref().unwrap()["spec"]["leaseTransitions"], 2);
}

#[tokio::test]
async fn a_crashed_leader_is_replaced_after_the_lease_expires() {
    let (_store, client) = server().await;
    let mut a = start(&client, "a");
    wait_leader(&mut a, Duration::from_secs(5)).await;
    let mut b = start(&client, "b");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // SIGKILL-like: no release.
    a.task.abort();
    let took = wait_leader(&mut b, Duration::from_secs(6)).await;
    assert!(took >= Duration::from_millis(1500), "did not wait for the lease to expire: {took:?}");
}

/// Finding 2: a renewal that hangs (no error, no answer) must not keep leadership past the renew deadline.
#[tokio::test]
async fn a_hung_renewal_steps_down_at_the_renew_deadline_by_the_leaders_clock() {
    let (store, client) = server().await;
    let mut a = start(&client, "a");
    wait_leader(&mut a, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.lock().unwrap().hang = true;
    let hung = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), a.leader.wait_for(|l| !*l))
        .await
        .expect("stepped down while the renewal still hangs")
        .unwrap();
    // The last renewal started at most one retry period (100 ms) before the hang; the deadline is 1.5 s.
    let took = hung.elapsed();
    assert!(took <= Duration::from_millis(1700), "stepped down {took:?} after the hang began");
    // Stopping does not hang on the release either.
    a.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(3), a.task).await.expect("the elector stops").unwrap();
}
