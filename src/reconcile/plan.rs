//! The pure planner: (a ScaleRequest's desired state, what the target shows now) → the next action.
//!
//! No I/O, no clock, no randomness: the caller passes `now` and the target's observed replicas, so every
//! branch is a unit test. `run.rs` carries out the action.

use std::time::Duration;

use jiff::Timestamp;

use super::crd::{Phase, ScaleRequestStatus};

/// Reason of a failed request whose target does not exist (yet): retried with backoff.
pub const REASON_TARGET_NOT_FOUND: &str = "TargetNotFound";

/// What the ScaleRequest asks, as the planner needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired<'a> {
    pub generation: i64,
    pub replicas: i32,
    pub ttl_seconds_after_finished: Option<i64>,
    pub status: &'a ScaleRequestStatus,
    pub now: Timestamp,
}

/// What the target shows now; `None` when it does not exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    pub replicas: i32,
    pub ready_replicas: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// This generation was not applied yet: set the target's replicas (through the queue).
    Apply,
    /// The target does not exist: status Failed/TargetNotFound, try again after a backoff.
    TargetMissing,
    /// Applied, the target has not that many ready replicas yet: look again later.
    AwaitReady { applied: i32, ready: i32 },
    /// Applied and ready: Succeeded.
    Ready { applied: i32 },
    /// Someone else changed the replicas after this request applied them: not reverted (a request is
    /// applied once per generation), finished as Succeeded with Ready=False.
    Superseded { applied: i32, now: i32 },
    /// Finished and its `ttlSecondsAfterFinished` has passed: delete the request.
    Expire,
    /// Finished; come back when the TTL runs out.
    AwaitTtl(Duration),
    /// Finished, nothing left to do.
    Done,
}

impl Desired<'_> {
    fn current_generation(&self) -> bool {
        self.status.observed_generation == Some(self.generation)
    }

    fn failed_missing(&self) -> bool {
        self.status.phase == Some(Phase::Failed)
            && self
                .status
                .conditions
                .iter()
                .any(|c| c.type_ == "Applied" && c.reason == REASON_TARGET_NOT_FOUND)
    }

    /// TTL action of a finished request; `None` when it has no TTL (or no parseable finish time).
    fn ttl_action(&self) -> Option<Action> {
        let ttl = self.ttl_seconds_after_finished?;
        let finished: Timestamp = self.status.finished_at.as_deref()?.parse().ok()?;
        let deadline = finished.as_second().saturating_add(ttl.max(0));
        let left_ms = deadline.saturating_mul(1000).saturating_sub(self.now.as_millisecond());
        Some(if left_ms <= 0 {
            Action::Expire
        } else {
            Action::AwaitTtl(Duration::from_millis(left_ms as u64))
        })
    }
}

/// Decide the next step for one ScaleRequest.
pub fn plan(desired: &Desired<'_>, target: Option<Observed>) -> Action {
    let current = desired.current_generation();
    let finished = desired.status.phase.is_some_and(Phase::finished);

    if current && finished {
        if let Some(ttl) = desired.ttl_action()
            && (ttl == Action::Expire || !desired.failed_missing())
        {
            return ttl;
        }
        if !desired.failed_missing() {
            return Action::Done;
        }
        // A missing target is retried until it appears (or the TTL collects the request).
        return match target {
            None => Action::TargetMissing,
            Some(_) => Action::Apply,
        };
    }

    let applied = desired.status.applied_replicas.filter(|_| current);
    match (applied, target) {
        (_, None) => Action::TargetMissing,
        (None, Some(_)) => Action::Apply,
        (Some(applied), Some(now)) if now.replicas != applied => {
            Action::Superseded { applied, now: now.replicas }
        }
        (Some(applied), Some(now)) if now.ready_replicas >= applied => Action::Ready { applied },
        (Some(applied), Some(now)) => Action::AwaitReady { applied, ready: now.ready_replicas },
    }
}

#[cfg(test)]
mod tests {
    use super::super::crd::Condition;
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn status(gen_: Option<i64>, phase: Option<Phase>, applied: Option<i32>) -> ScaleRequestStatus {
        ScaleRequestStatus {
            observed_generation: gen_,
            phase,
            applied_replicas: applied,
            ..Default::default()
        }
    }

    fn desired(status: &ScaleRequestStatus, generation: i64, ttl: Option<i64>) -> Desired<'_> {
        Desired {
            generation,
            replicas: 5,
            ttl_seconds_after_finished: ttl,
            status,
            now: ts("2026-01-01T00:01:00Z"),
        }
    }

    const UP: Option<Observed> = Some(Observed { replicas: 5, ready_replicas: 5 });

    #[test]
    fn new_request_applies_when_target_exists() {
        let s = ScaleRequestStatus::default();
        assert_eq!(
            plan(&desired(&s, 1, None), Some(Observed { replicas: 2, ready_replicas: 2 })),
            Action::Apply
        );
    }

    #[test]
    fn new_request_without_target_fails_missing() {
        let s = ScaleRequestStatus::default();
        assert_eq!(plan(&desired(&s, 1, None), None), Action::TargetMissing);
    }

    #[test]
    fn new_generation_reapplies_even_after_success() {
        let s = status(Some(1), Some(Phase::Succeeded), Some(3));
        assert_eq!(plan(&desired(&s, 2, None), UP), Action::Apply);
    }

    #[test]
    fn applied_waits_for_ready_replicas() {
        let s = status(Some(1), Some(Phase::Applying), Some(5));
        let obs = Some(Observed { replicas: 5, ready_replicas: 2 });
        assert_eq!(plan(&desired(&s, 1, None), obs), Action::AwaitReady { applied: 5, ready: 2 });
        assert_eq!(plan(&desired(&s, 1, None), UP), Action::Ready { applied: 5 });
    }

    #[test]
    fn applied_to_zero_is_ready_at_once() {
        let s = status(Some(1), Some(Phase::Applying), Some(0));
        let obs = Some(Observed { replicas: 0, ready_replicas: 0 });
        assert_eq!(plan(&desired(&s, 1, None), obs), Action::Ready { applied: 0 });
    }

    #[test]
    fn later_change_by_others_is_not_reverted() {
        let s = status(Some(1), Some(Phase::Applying), Some(5));
        let obs = Some(Observed { replicas: 9, ready_replicas: 1 });
        assert_eq!(plan(&desired(&s, 1, None), obs), Action::Superseded { applied: 5, now: 9 });
        let done = status(Some(1), Some(Phase::Succeeded), Some(5));
        assert_eq!(plan(&desired(&done, 1, None), obs), Action::Done);
    }

    #[test]
    fn target_deleted_after_apply_is_missing() {
        let s = status(Some(1), Some(Phase::Applying), Some(5));
        assert_eq!(plan(&desired(&s, 1, None), None), Action::TargetMissing);
    }

    #[test]
    fn status_of_an_older_generation_is_ignored() {
        let s = status(Some(1), Some(Phase::Applying), Some(5));
        assert_eq!(plan(&desired(&s, 2, None), UP), Action::Apply);
    }

    fn failed_missing(generation: i64) -> ScaleRequestStatus {
        let mut s = status(Some(generation), Some(Phase::Failed), None);
        s.finished_at = Some("2026-01-01T00:00:00Z".into());
        s.conditions.push(Condition {
            type_: "Applied".into(),
            status: "False".into(),
            reason: REASON_TARGET_NOT_FOUND.into(),
            message: String::new(),
            last_transition_time: "2026-01-01T00:00:00Z".into(),
            observed_generation: Some(generation),
        });
        s
    }

    #[test]
    fn missing_target_is_retried_until_it_appears() {
        let s = failed_missing(1);
        assert_eq!(plan(&desired(&s, 1, None), None), Action::TargetMissing);
        assert_eq!(plan(&desired(&s, 1, None), UP), Action::Apply);
        // A TTL that has not run out does not stop the retries.
        assert_eq!(plan(&desired(&s, 1, Some(3600)), None), Action::TargetMissing);
        assert_eq!(plan(&desired(&s, 1, Some(30)), None), Action::Expire);
    }

    #[test]
    fn finished_without_ttl_is_done() {
        let mut s = status(Some(1), Some(Phase::Succeeded), Some(5));
        s.finished_at = Some("2026-01-01T00:00:00Z".into());
        assert_eq!(plan(&desired(&s, 1, None), UP), Action::Done);
        assert_eq!(plan(&desired(&s, 1, None), None), Action::Done);
    }

    #[test]
    fn ttl_waits_then_expires() {
        let mut s = status(Some(1), Some(Phase::Succeeded), Some(5));
        s.finished_at = Some("2026-01-01T00:00:00Z".into());
        assert_eq!(plan(&desired(&s, 1, Some(90)), UP), Action::AwaitTtl(Duration::from_secs(30)));
        assert_eq!(plan(&desired(&s, 1, Some(60)), UP), Action::Expire);
        assert_eq!(plan(&desired(&s, 1, Some(0)), UP), Action::Expire);
        // A garbage finish time never deletes anything.
        s.finished_at = Some("yesterday".into());
        assert_eq!(plan(&desired(&s, 1, Some(0)), UP), Action::Done);
    }

    #[test]
    fn huge_ttl_does_not_overflow() {
        let mut s = status(Some(1), Some(Phase::Failed), None);
        s.finished_at = Some("2026-01-01T00:00:00Z".into());
        assert!(matches!(plan(&desired(&s, 1, Some(i64::MAX)), UP), Action::AwaitTtl(_)));
    }
}
