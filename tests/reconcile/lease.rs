//! Leader election against the sandbox's coordination.k8s.io/v1 Leases.

use std::time::Duration;

use machinist::provider::k8s::lease::{Elector, LeaseConfig};
use tokio::sync::oneshot;

use super::common;

#[tokio::test]
async fn two_electors_one_leader_and_release_hands_over_within_three_seconds() {
    let (sb, client) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let config = |id: &str| LeaseConfig {
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
        ..LeaseConfig::new(ns.clone(), id)
    };
    let (a, mut a_leads) = Elector::new(client.clone(), config("a"));
    let (stop_a, a_stopped) = oneshot::channel::<()>();
    let a_task = tokio::spawn(a.run(async move {
        let _ = a_stopped.await;
    }));
    tokio::time::timeout(Duration::from_secs(5), a_leads.wait_for(|l| *l)).await.expect("a leads").unwrap();

    let (b, mut b_leads) = Elector::new(client.clone(), config("b"));
    let (_stop_b, b_stopped) = oneshot::channel::<()>();
    tokio::spawn(b.run(async move {
        let _ = b_stopped.await;
    }));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(*a_leads.borrow() && !*b_leads.borrow(), "exactly one leader");

    let released = tokio::time::Instant::now();
    stop_a.send(()).unwrap();
    a_task.await.unwrap();
    tokio::time::timeout(Duration::from_secs(3), b_leads.wait_for(|l| *l))
        .await
        .expect("b leads within 3 s")
        .unwrap();
    assert!(released.elapsed() < Duration::from_secs(3));
}
