//! Chaos benchmark (issue 12): the scenarios of `tests/chaos/scenarios.rs` at full size, printing what each
//! measured. `cargo bench --bench chaos`, or `MACHINIST_BENCH_QUICK=1 cargo bench --bench chaos` for the
//! test sizes. It asserts nothing beyond the scenarios running; `tests/chaos.rs` asserts the goals.

mod common;
#[path = "../tests/chaos/scenarios.rs"]
mod scenarios;

use common::quick;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (requests, pods, per_writer, burst, throttle) = if quick() {
        (4, 2_000, 10, 40, std::time::Duration::from_secs(8))
    } else {
        (20, 10_000, 30, 200, std::time::Duration::from_secs(30))
    };
    println!("chaos benchmark ({} mode)", if quick() { "quick" } else { "full" });

    let f = scenarios::hung_leader(requests).await;
    println!(
        "hung leader ({requests} pending ScaleRequests): stopped leading after {:?}, other replica led after {:?}, \
         all applied after {:?}; writes by old/new leader {}/{}; moments with two writers {}",
        f.stopped_leading,
        f.other_leads,
        f.all_applied,
        f.writes_by_old,
        f.writes_by_new,
        f.two_writer_moments
    );

    let f = scenarios::compaction_and_cut_watches(pods, 200).await;
    println!(
        "compaction + cut watches twice ({} pods, {} changed): all changes visible {:?} after the last; {} reads, \
         {} saw a partial list",
        f.pods, f.changed, f.visible_after, f.reads, f.partial_reads
    );

    let f = scenarios::scale_errors_with_three_writers(per_writer).await;
    let mut by_status = std::collections::BTreeMap::new();
    for w in &f.writes {
        *by_status.entry(w.status).or_insert(0) += 1;
    }
    println!(
        "30% 500/429 on /scale, 3 writers x {per_writer}: answers {by_status:?}; not retryable {}; {} /scale calls; \
         final replicas {} (allowed {:?})",
        f.not_retryable().len(),
        f.scale_calls,
        f.final_replicas,
        f.allowed_final
    );

    let f = scenarios::sigkill_during_a_burst(burst).await;
    println!(
        "SIGKILL of the leader 300 ms into a burst of {} ScaleRequests ({} targets): last finished after {:?}, \
         last Applied after {:?}; {} Succeeded, {} Superseded, {} other; most /scale writes to one target {} \
         (requests per target {}); targets written twice for one request {}",
        f.requests,
        f.targets,
        f.last_finished,
        f.last_applied,
        f.succeeded,
        f.superseded,
        f.other.len(),
        f.max_writes_per_target.0,
        f.max_writes_per_target.1,
        f.targets_written_twice_for_one_request
    );

    let interval = std::time::Duration::from_secs(5);
    let f = scenarios::ecs_throttling(throttle, interval).await;
    println!(
        "ECS throttled on every call for {:?} (interval {:?}): {} Kubernetes reads, {} failed; {} readiness \
         checks, {} failed; {} throttled ListServices calls; ECS recovered {:?} after the fault ended",
        f.throttled_for,
        f.interval,
        f.k8s_reads,
        f.k8s_reads_failed,
        f.readiness_checks,
        f.readiness_failed,
        f.throttled_calls,
        f.ecs_recovered_after
    );
}
