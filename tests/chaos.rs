//! The chaos suite of issue 12: each scenario of `chaos/scenarios.rs` at test size, with its goal asserted.
//! `cargo bench --bench chaos` runs them at full size and prints the figures.

#[path = "chaos/scenarios.rs"]
mod scenarios;

use std::time::Duration;

/// The leader's Lease and `/scale` calls hang: it stops writing by its own clock within the 10 s renew
/// deadline, the other replica leads after the 15 s lease, and no write by the old leader follows one by the
/// new (0 moments with two writers, from the sandbox's record of who wrote what).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_leader_stops_writing_and_hands_over_with_never_two_writers() {
    let f = scenarios::hung_leader(4).await;
    println!("{f:?}");
    assert!(f.stopped_leading <= Duration::from_secs(11), "{f:?}");
    assert!(f.other_leads <= Duration::from_secs(20), "{f:?}");
    assert!(f.stopped_leading < f.other_leads, "the old leader stopped first: {f:?}");
    assert_eq!(f.two_writer_moments, 0, "{f:?}");
    assert!(f.writes_by_new >= 4, "the new leader applied the requests: {f:?}");
}

/// Compaction plus cut watches while pods change: every change visible within 5 s of the last one, and no
/// read ever sees a partial list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relists_after_compaction_and_cut_watches_lose_nothing_and_serve_no_partial_list() {
    let f = scenarios::compaction_and_cut_watches(2_000, 200).await;
    println!("{f:?}");
    assert_eq!(f.changed, 200);
    assert!(f.reads > 0);
    assert_eq!(f.partial_reads, 0, "{f:?}");
    assert!(f.visible_after <= Duration::from_secs(5), "{f:?}");
}

/// 30 % of `/scale` calls fail with 500 or 429 while three writers scale one target: every REST answer is
/// 200 or a retryable problem, and the target ends at the last accepted write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_errors_under_three_writers_answer_200_or_retryable_and_the_last_accepted_write_wins() {
    let f = scenarios::scale_errors_with_three_writers(10).await;
    let statuses: Vec<u16> = f.writes.iter().map(|w| w.status).collect();
    println!("statuses {statuses:?}, final {}, allowed {:?}", f.final_replicas, f.allowed_final);
    assert_eq!(f.writes.len(), 30);
    assert!(f.not_retryable().is_empty(), "{:?}", f.not_retryable());
    assert!(
        f.writes.iter().filter(|w| w.status != 200).all(|w| w.retry_after),
        "Retry-After on each retryable"
    );
    assert!(f.ok() > 0, "{statuses:?}");
    assert!(
        f.allowed_final.contains(&f.final_replicas),
        "final {} not in {:?}",
        f.final_replicas,
        f.allowed_final
    );
}

/// The leader is SIGKILLed during a burst of ScaleRequests: every request ends Succeeded or Superseded, and
/// no target is written more often than requests named it (from the sandbox's record of writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_leader_during_a_burst_loses_no_request_and_writes_none_twice() {
    let f = scenarios::sigkill_during_a_burst(40).await;
    println!("{f:?}");
    assert!(f.other.is_empty(), "{f:?}");
    assert_eq!(f.succeeded + f.superseded, 40, "{f:?}");
    assert_eq!(f.targets_written_twice_for_one_request, 0, "{f:?}");
}

/// Every ECS call throttled: Kubernetes reads and readiness are unaffected, and ECS recovers within one
/// interval (plus the refresh itself) of the fault ending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_throttling_leaves_kubernetes_reads_and_readiness_alone_and_recovers_within_an_interval() {
    let interval = Duration::from_secs(1);
    let f = scenarios::ecs_throttling(Duration::from_secs(8), interval).await;
    println!("{f:?}");
    assert!(f.k8s_reads > 10 && f.readiness_checks > 10, "{f:?}");
    assert_eq!(f.k8s_reads_failed, 0, "{f:?}");
    assert_eq!(f.readiness_failed, 0, "{f:?}");
    assert!(f.ecs_recovered_after <= interval + Duration::from_millis(1500), "{f:?}");
}
