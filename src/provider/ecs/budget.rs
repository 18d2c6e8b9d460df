//! A token bucket shared by every ECS read of the process, so the steady state stays well under the
//! account's API quota (ECS throttles per account and region, across all callers).
//!
//! It only paces: it never fails a call and knows nothing about which call it paces.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct Budget {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Budget {
    /// `rate` tokens per second, at most `burst` saved up. The bucket starts full.
    pub fn new(rate: f64, burst: u32) -> Budget {
        let rate = if rate.is_finite() && rate > 0.0 { rate } else { 1.0 };
        let burst = f64::from(burst.max(1));
        Budget { rate, burst, state: Mutex::new((burst, Instant::now())) }
    }

    /// The default read budget: 5 calls/s sustained, i.e. 25 % of ECS's 20/s DescribeTasks/ListTasks
    /// quota; a burst of 65 lets one full refresh of a large cluster run without waiting.
    pub fn ecs_default() -> Budget {
        Budget::new(5.0, 65)
    }

    /// Wait until one token is available and take it.
    pub async fn take(&self) {
        loop {
            let wait = {
                let Ok(mut state) = self.state.lock() else { return };
                let now = Instant::now();
                let (tokens, last) = *state;
                let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.burst);
                if tokens >= 1.0 {
                    *state = (tokens - 1.0, now);
                    return;
                }
                *state = (tokens, now);
                Duration::from_secs_f64((1.0 - tokens) / self.rate)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn burst_is_free_then_calls_are_paced() {
        let budget = Budget::new(50.0, 5);
        let start = std::time::Instant::now();
        for _ in 0..5 {
            budget.take().await;
        }
        assert!(start.elapsed() < Duration::from_millis(50), "the burst must not wait");
        for _ in 0..10 {
            budget.take().await;
        }
        // 10 more tokens at 50/s take at least ~200 ms.
        assert!(start.elapsed() >= Duration::from_millis(180), "paced: {:?}", start.elapsed());
    }
}
