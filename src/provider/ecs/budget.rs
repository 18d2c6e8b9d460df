//! The read budget of every ECS poller of the process, so the steady state stays well under the account's
//! API quota (ECS throttles per account and region, across all callers), shared fairly between clusters.
//!
//! Each cluster has a bucket of its own, refilled at its share of the rate (`rate / clusters`); what a
//! full bucket would overflow goes to a common pool any cluster may draw on once its own bucket is empty.
//! So a small cluster always gets its share at once, however busy a large one keeps the budget, and a
//! share a cluster leaves unused is not lost. The total never exceeds `rate` sustained, `burst` saved up.
//!
//! It only paces: it never fails a call and knows nothing about which call it paces.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
struct State {
    last: Instant,
    own: HashMap<String, f64>,
    pool: f64,
}

#[derive(Debug)]
pub struct Budget {
    share: f64,
    own_cap: f64,
    pool_cap: f64,
    state: Mutex<State>,
}

impl Budget {
    /// `rate` calls per second in total, at most `burst` saved up, shared by `clusters`. Buckets start full.
    pub fn new(rate: f64, burst: u32, clusters: &[String]) -> Budget {
        let rate = if rate.is_finite() && rate > 0.0 { rate } else { 1.0 };
        let burst = f64::from(burst.max(2));
        let n = clusters.len().max(1) as f64;
        // Half the burst is spread over the clusters' own buckets (at least one call each), half pooled.
        let own_cap = (burst / 2.0 / n).max(1.0);
        let pool_cap = (burst - own_cap * n).max(0.0);
        let own = clusters.iter().map(|c| (c.clone(), own_cap)).collect();
        Budget {
            share: rate / n,
            own_cap,
            pool_cap,
            state: Mutex::new(State { last: Instant::now(), own, pool: pool_cap }),
        }
    }

    /// Wait until `cluster` may make one call, and count it.
    pub async fn take(&self, cluster: &str) {
        loop {
            let wait = {
                let Ok(mut state) = self.state.lock() else { return };
                self.refill(&mut state);
                let own = state.own.entry(cluster.to_string()).or_insert(0.0);
                if *own >= 1.0 {
                    *own -= 1.0;
                    return;
                }
                let missing = 1.0 - *own;
                if state.pool >= 1.0 {
                    state.pool -= 1.0;
                    return;
                }
                // Its own share arrives at this pace whatever the other clusters do.
                Duration::from_secs_f64(missing / self.share)
            };
            tokio::time::sleep(wait).await;
        }
    }

    fn refill(&self, state: &mut State) {
        let now = Instant::now();
        let earned = now.duration_since(state.last).as_secs_f64() * self.share;
        state.last = now;
        let mut spill = 0.0;
        for own in state.own.values_mut() {
            *own += earned;
            if *own > self.own_cap {
                spill += *own - self.own_cap;
                *own = self.own_cap;
            }
        }
        state.pool = (state.pool + spill).min(self.pool_cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clusters(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn burst_is_free_then_calls_are_paced() {
        let budget = Budget::new(50.0, 10, &clusters(&["a"]));
        let start = Instant::now();
        for _ in 0..10 {
            budget.take("a").await;
        }
        assert!(start.elapsed() < Duration::from_millis(1), "the burst must not wait");
        for _ in 0..10 {
            budget.take("a").await;
        }
        // 10 more calls at 50/s take about 200 ms.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(190) && took <= Duration::from_millis(260), "paced: {took:?}");
    }

    /// A large cluster that keeps the budget busy does not delay a small one beyond its own share.
    #[tokio::test(start_paused = true)]
    async fn a_small_cluster_gets_its_share_beside_a_busy_one() {
        let budget = std::sync::Arc::new(Budget::new(5.0, 10, &clusters(&["big", "small"])));
        let hog = {
            let budget = budget.clone();
            tokio::spawn(async move {
                loop {
                    budget.take("big").await;
                }
            })
        };
        tokio::time::sleep(Duration::from_secs(30)).await;
        // The small cluster's 4 calls (one refresh) take well under a second while the big one hogs.
        let start = Instant::now();
        for _ in 0..4 {
            budget.take("small").await;
        }
        assert!(start.elapsed() <= Duration::from_millis(800), "small waited {:?}", start.elapsed());
        hog.abort();
        // The big one alone had the whole rate: its spare share was not lost.
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_clusters_share_goes_to_the_busy_one() {
        let budget = Budget::new(10.0, 10, &clusters(&["big", "idle"]));
        for _ in 0..10 {
            budget.take("big").await;
        }
        let start = Instant::now();
        for _ in 0..50 {
            budget.take("big").await;
        }
        // Alone it would get 5/s (10 s); with the idle cluster's spill it gets close to the full 10/s.
        assert!(start.elapsed() <= Duration::from_secs(7), "big took {:?}", start.elapsed());
    }
}
