//! The pure half of the ScaleRequest controller: how an outcome changes a request's status (phase,
//! conditions, message), the merge patch that writes it, and the Event that records it.
//!
//! No I/O and no clock: the caller passes `now`, so every transition is a unit test. The controller
//! (`controller.rs`) decides when to call it and sends what it returns.

use jiff::Timestamp;
use kube::runtime::events::{Event, EventType};
use serde_json::json;

use super::crd::{Condition, Phase, ScaleRequestStatus};
use super::plan::REASON_TARGET_NOT_FOUND;
use crate::cache::model::ControllerKind;

/// How an outcome changes the status: the planner's verdict plus what the write returned.
#[derive(Clone, Debug, PartialEq)]
pub enum Transition {
    Applied {
        kind: ControllerKind,
        name: String,
        previous: i32,
        applied: i32,
    },
    ApplyFailed {
        reason: &'static str,
        message: String,
        terminal: bool,
    },
    TargetMissing {
        message: String,
    },
    Ready {
        applied: i32,
    },
    /// Applied, then changed by another write (not reverted).
    Superseded {
        applied: i32,
        now: i32,
    },
    /// Never applied: a newer count for the target (`won`, asked by `by`) replaced it in the queue.
    Beaten {
        requested: i32,
        won: i32,
        by: String,
    },
}

/// Set or update a condition; `lastTransitionTime` moves only when its status changes.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: i64,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_string();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now.to_string();
            }
            c.status = status;
            c.reason = reason.into();
            c.message = message;
            c.observed_generation = Some(generation);
        }
        None => conditions.push(Condition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message,
            last_transition_time: now.to_string(),
            observed_generation: Some(generation),
        }),
    }
}

/// Pure: the status after a transition.
pub fn next_status(
    old: &ScaleRequestStatus,
    generation: i64,
    t: &Transition,
    now: Timestamp,
) -> ScaleRequestStatus {
    let mut s = old.clone();
    // A new generation starts over: older applied/ready facts no longer describe this request.
    if s.observed_generation != Some(generation) {
        s.applied_replicas = None;
        s.previous_replicas = None;
        s.finished_at = None;
        s.conditions.retain(|c| c.type_ == "ConflictingAutoscaler");
    }
    s.observed_generation = Some(generation);
    let finish = |s: &mut ScaleRequestStatus| {
        if s.finished_at.is_none() {
            s.finished_at = Some(now.to_string());
        }
    };
    match t {
        Transition::Applied { kind, name, previous, applied } => {
            s.phase = Some(Phase::Applying);
            s.previous_replicas = Some(*previous);
            s.applied_replicas = Some(*applied);
            s.finished_at = None;
            let message = applied_message(*kind, name, *previous, *applied);
            set_condition(&mut s.conditions, "Applied", true, "Scaled", message.clone(), generation, now);
            set_condition(
                &mut s.conditions,
                "Ready",
                false,
                "WaitingForReplicas",
                format!("waiting for {applied} ready replicas"),
                generation,
                now,
            );
            s.message = Some(message);
        }
        Transition::ApplyFailed { reason, message, terminal } => {
            set_condition(&mut s.conditions, "Applied", false, reason, message.clone(), generation, now);
            s.message = Some(message.clone());
            if *terminal {
                s.phase = Some(Phase::Failed);
                finish(&mut s);
            } else {
                s.phase = Some(Phase::Applying);
            }
        }
        Transition::TargetMissing { message } => {
            s.phase = Some(Phase::Failed);
            s.applied_replicas = None;
            set_condition(
                &mut s.conditions,
                "Applied",
                false,
                REASON_TARGET_NOT_FOUND,
                message.clone(),
                generation,
                now,
            );
            s.message = Some(format!("{message}; retrying until it appears"));
            finish(&mut s);
        }
        Transition::Ready { applied } => {
            s.phase = Some(Phase::Succeeded);
            let message = format!("{applied} replicas ready");
            set_condition(&mut s.conditions, "Ready", true, "ReplicasReady", message, generation, now);
            finish(&mut s);
        }
        Transition::Superseded { applied, now: current } => {
            s.phase = Some(Phase::Superseded);
            let message =
                format!("applied {applied}, since changed to {current} by another write (not reverted)");
            set_condition(&mut s.conditions, "Ready", false, "Superseded", message.clone(), generation, now);
            s.message = Some(message);
            finish(&mut s);
        }
        Transition::Beaten { requested, won, by } => {
            s.phase = Some(Phase::Superseded);
            s.applied_replicas = None;
            s.previous_replicas = None;
            let message = beaten_message(*requested, *won, by);
            set_condition(
                &mut s.conditions,
                "Applied",
                false,
                "Superseded",
                message.clone(),
                generation,
                now,
            );
            s.message = Some(message);
            finish(&mut s);
        }
    }
    s
}

/// The merge patch that makes `/status` equal `status`: a field this status lacks is sent as `null`, so a
/// value of an older generation (say `appliedReplicas`) cannot survive on the server.
pub fn status_patch(status: &ScaleRequestStatus) -> serde_json::Value {
    let mut body = serde_json::to_value(status).unwrap_or_else(|_| json!({}));
    if let Some(fields) = body.as_object_mut() {
        for key in
            ["phase", "observedGeneration", "previousReplicas", "appliedReplicas", "message", "finishedAt"]
        {
            fields.entry(key).or_insert(serde_json::Value::Null);
        }
        fields.entry("conditions").or_insert_with(|| json!([]));
    }
    json!({ "status": body })
}

fn applied_message(kind: ControllerKind, name: &str, previous: i32, applied: i32) -> String {
    if previous == applied {
        format!("{} {name} already had {applied} replicas", kind.as_str())
    } else {
        format!("scaled {} {name} from {previous} to {applied}", kind.as_str())
    }
}

fn beaten_message(requested: i32, won: i32, by: &str) -> String {
    format!(
        "superseded before it was applied: {by} set {won} replicas while this request for {requested} waited"
    )
}

/// The Kubernetes Event recorded for a transition.
pub fn event_of(t: &Transition) -> Event {
    let (type_, reason, note, action) = match t {
        Transition::Applied { kind, name, previous, applied } => {
            (EventType::Normal, "Scaled", applied_message(*kind, name, *previous, *applied), "Scale")
        }
        Transition::ApplyFailed { reason, message, .. } => {
            (EventType::Warning, *reason, message.clone(), "Scale")
        }
        Transition::TargetMissing { message } => {
            (EventType::Warning, REASON_TARGET_NOT_FOUND, message.clone(), "Resolve")
        }
        Transition::Ready { applied } => {
            (EventType::Normal, "ReplicasReady", format!("{applied} replicas ready"), "Observe")
        }
        Transition::Superseded { applied, now } => (
            EventType::Normal,
            "Superseded",
            format!("applied {applied}, since changed to {now} by another write; not reverted"),
            "Observe",
        ),
        Transition::Beaten { requested, won, by } => {
            (EventType::Normal, "Superseded", beaten_message(*requested, *won, by), "Scale")
        }
    };
    Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None }
}

#[cfg(test)]
mod tests {
    use super::super::plan::{self, Action, Desired, Observed};
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn web_scaled_from_3_to_5() -> Transition {
        Transition::Applied { kind: ControllerKind::Deployment, name: "web".into(), previous: 3, applied: 5 }
    }

    #[test]
    fn applied_then_ready_keeps_transition_times_honest() {
        let applied = web_scaled_from_3_to_5();
        let s1 = next_status(&ScaleRequestStatus::default(), 1, &applied, t("2026-01-01T00:00:00Z"));
        assert_eq!(s1.phase, Some(Phase::Applying));
        assert_eq!(
            (s1.previous_replicas, s1.applied_replicas, s1.observed_generation),
            (Some(3), Some(5), Some(1))
        );
        assert_eq!(s1.message.as_deref(), Some("scaled Deployment web from 3 to 5"));
        let s2 = next_status(&s1, 1, &Transition::Ready { applied: 5 }, t("2026-01-01T00:00:05Z"));
        assert_eq!(s2.phase, Some(Phase::Succeeded));
        let cond =
            |s: &ScaleRequestStatus, ty: &str| s.conditions.iter().find(|c| c.type_ == ty).cloned().unwrap();
        assert_eq!(cond(&s2, "Applied").last_transition_time, "2026-01-01T00:00:00Z");
        assert_eq!(cond(&s2, "Ready").status, "True");
        assert_eq!(cond(&s2, "Ready").last_transition_time, "2026-01-01T00:00:05Z");
        assert_eq!(s2.finished_at.as_deref(), Some("2026-01-01T00:00:05Z"));
    }

    #[test]
    fn a_new_generation_forgets_the_old_outcome() {
        let applied = web_scaled_from_3_to_5();
        let s1 = next_status(&ScaleRequestStatus::default(), 1, &applied, t("2026-01-01T00:00:00Z"));
        let s2 = next_status(&s1, 1, &Transition::Ready { applied: 5 }, t("2026-01-01T00:00:05Z"));
        let missing =
            Transition::TargetMissing { message: "Deployment web not found in namespace default".into() };
        let s3 = next_status(&s2, 2, &missing, t("2026-01-01T00:01:00Z"));
        assert_eq!(s3.phase, Some(Phase::Failed));
        assert_eq!(s3.observed_generation, Some(2));
        assert_eq!(s3.applied_replicas, None);
        assert!(s3.conditions.iter().all(|c| c.type_ != "Ready"), "no Ready of generation 1 left");
        assert_eq!(s3.finished_at.as_deref(), Some("2026-01-01T00:01:00Z"));
        // The planner retries it until the target appears.
        let d = Desired {
            generation: 2,
            replicas: 5,
            ttl_seconds_after_finished: None,
            status: &s3,
            now: t("2026-01-01T00:02:00Z"),
        };
        assert_eq!(plan::plan(&d, None), Action::TargetMissing);
        assert_eq!(plan::plan(&d, Some(Observed { replicas: 1, ready_replicas: 1 })), Action::Apply);
    }

    #[test]
    fn retrying_a_failed_write_is_not_finished() {
        let t1 = Transition::ApplyFailed {
            reason: "WriteFailed",
            message: "kubernetes answered 503".into(),
            terminal: false,
        };
        let s = next_status(&ScaleRequestStatus::default(), 1, &t1, t("2026-01-01T00:00:00Z"));
        assert_eq!(s.phase, Some(Phase::Applying));
        assert_eq!(s.finished_at, None);
        let d = Desired {
            generation: 1,
            replicas: 5,
            ttl_seconds_after_finished: Some(0),
            status: &s,
            now: t("2026-01-01T00:02:00Z"),
        };
        assert_eq!(plan::plan(&d, Some(Observed { replicas: 1, ready_replicas: 1 })), Action::Apply);
    }

    #[test]
    fn the_status_patch_clears_what_the_new_status_lacks() {
        let applied = web_scaled_from_3_to_5();
        let s1 = next_status(&ScaleRequestStatus::default(), 1, &applied, t("2026-01-01T00:00:00Z"));
        let missing = Transition::TargetMissing { message: "gone".into() };
        let s2 = next_status(&s1, 2, &missing, t("2026-01-01T00:01:00Z"));
        let patch = status_patch(&s2);
        assert_eq!(patch["status"]["appliedReplicas"], serde_json::Value::Null);
        assert_eq!(patch["status"]["previousReplicas"], serde_json::Value::Null);
        assert_eq!(patch["status"]["observedGeneration"], 2);
        let empty = status_patch(&ScaleRequestStatus::default());
        assert_eq!(empty["status"]["conditions"], json!([]));
    }

    #[test]
    fn a_target_already_at_the_count_says_so() {
        let same = Transition::Applied {
            kind: ControllerKind::Deployment,
            name: "web".into(),
            previous: 3,
            applied: 3,
        };
        let s = next_status(&ScaleRequestStatus::default(), 1, &same, t("2026-01-01T00:00:00Z"));
        assert_eq!(s.message.as_deref(), Some("Deployment web already had 3 replicas"));
    }

    #[test]
    fn events_name_the_transition() {
        let e = event_of(&Transition::TargetMissing { message: "x".into() });
        assert_eq!((e.type_, e.reason.as_str()), (EventType::Warning, "TargetNotFound"));
        let e = event_of(&Transition::Ready { applied: 2 });
        assert_eq!((e.type_, e.reason.as_str()), (EventType::Normal, "ReplicasReady"));
    }

    #[test]
    fn a_beaten_request_is_superseded_finished_and_does_not_claim_the_winners_count() {
        let applying = next_status(
            &ScaleRequestStatus::default(),
            1,
            &Transition::ApplyFailed { reason: "WriteFailed", message: "503".into(), terminal: false },
            t("2026-01-01T00:00:00Z"),
        );
        let beaten = Transition::Beaten { requested: 5, won: 7, by: "a REST write".into() };
        let s = next_status(&applying, 1, &beaten, t("2026-01-01T00:00:01Z"));
        assert_eq!(s.phase, Some(Phase::Superseded));
        assert!(Phase::Superseded.finished());
        assert_eq!((s.applied_replicas, s.previous_replicas), (None, None));
        assert_eq!(s.finished_at.as_deref(), Some("2026-01-01T00:00:01Z"));
        let c = s.conditions.iter().find(|c| c.type_ == "Applied").unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "Superseded"));
        assert_eq!(
            c.message,
            "superseded before it was applied: a REST write set 7 replicas while this request for 5 waited"
        );
        assert_eq!(event_of(&beaten).reason, "Superseded");
        // Applied, then changed by someone else: Superseded as well, with its count kept.
        let changed = Transition::Superseded { applied: 5, now: 9 };
        let s = next_status(&ScaleRequestStatus::default(), 1, &changed, t("2026-01-01T00:00:02Z"));
        assert_eq!(s.phase, Some(Phase::Superseded));
    }
}
