//! The keyed write queue: one slot per target, latest desired state wins, never two executions of one
//! target at once.
//!
//! Semantics (REST and ScaleRequest writes both enter here):
//! - `submit(target, n)` while nothing runs for that target starts an execution at once.
//! - While one execution runs, later submissions wait in the target's single pending entry; each new one
//!   replaces the pending count. When the running execution ends, the pending count (the newest) runs.
//! - A caller whose count was superseded while it waited receives the outcome of the newer write that
//!   replaced it. Callers asked "set N"; the newest N is what the target now has, and their own N would have
//!   been overwritten at once anyway. The waiters of a running execution get that execution's outcome.
//! - A caller may be fenced ([`Fence`]): a ScaleRequest reconcile wants its write only while this replica
//!   leads. A count whose callers are all fenced and have all lost leadership is not started, and its
//!   running execution is dropped (cancelling its calls) the moment the last of them loses it.
//!
//! It knows nothing of providers: it calls an [`Executor`] and does no I/O of its own.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::oneshot;

use crate::metrics::metrics;
use crate::provider::ProviderError;
use crate::provider::scale::{Scaled, TargetKey};

/// Errors are shared between the waiters of one execution.
pub type Outcome = Result<Scaled, Arc<ProviderError>>;

/// Carries out one write: sets the target to the count, resolves once the provider accepted it.
pub type Executor = Arc<dyn Fn(TargetKey, i32) -> BoxFuture<'static, Outcome> + Send + Sync>;

/// Whether a caller still wants its write: `None` always (a REST write stands after its caller timed out);
/// `Some(leading)` while `leading` reads true.
pub type Fence = Option<tokio::sync::watch::Receiver<bool>>;

struct Pending {
    replicas: i32,
    /// Who asked for `replicas` (the newest submitter), reported with the outcome (`Scaled::by`).
    by: String,
    waiters: Vec<oneshot::Sender<Outcome>>,
    fences: Vec<Fence>,
}

impl Pending {
    fn wanted(&self) -> bool {
        self.fences.iter().any(|f| f.as_ref().is_none_or(|leading| *leading.borrow()))
    }

    /// Resolves once no caller wants the write any more (never while one is unfenced).
    fn unwanted(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let fences: Option<Vec<_>> = self.fences.iter().cloned().collect();
        async move {
            let Some(fences) = fences else { return futures::future::pending().await };
            futures::future::join_all(fences.into_iter().map(|mut leading| async move {
                let _ = leading.wait_for(|l| !*l).await;
            }))
            .await;
        }
    }
}

fn not_leading(key: &TargetKey) -> Arc<ProviderError> {
    Arc::new(ProviderError::Upstream(format!(
        "this replica stopped leading: the write to {key} is left to the new leader"
    )))
}

/// A slot exists while a worker runs for its target; `next` is the newest count not yet started.
struct Slot {
    next: Option<Pending>,
}

pub struct ScaleQueue {
    slots: Mutex<HashMap<TargetKey, Slot>>,
    exec: Executor,
}

impl ScaleQueue {
    pub fn new(exec: Executor) -> Arc<ScaleQueue> {
        Arc::new(ScaleQueue { slots: Mutex::new(HashMap::new()), exec })
    }

    /// Ask for `replicas` on `key`; the receiver yields the outcome of the write that settled it. Dropping
    /// the receiver does not cancel the write (repeating a timed-out request is safe and cheap).
    pub fn submit(self: &Arc<Self>, key: TargetKey, replicas: i32) -> oneshot::Receiver<Outcome> {
        self.submit_as(key, replicas, None, "a write".to_string())
    }

    /// [`ScaleQueue::submit`] by `by` (named in the outcome when its count settles other callers), for a
    /// caller that wants the write only while `fence` holds.
    pub fn submit_as(
        self: &Arc<Self>,
        key: TargetKey,
        replicas: i32,
        fence: Fence,
        by: String,
    ) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut slots = self.lock();
            let start = match slots.entry(key.clone()) {
                Entry::Occupied(mut slot) => {
                    let pending = slot.get_mut().next.get_or_insert(Pending {
                        replicas,
                        by: String::new(),
                        waiters: Vec::new(),
                        fences: Vec::new(),
                    });
                    pending.replicas = replicas;
                    pending.by = by;
                    pending.waiters.push(tx);
                    pending.fences.push(fence);
                    false
                }
                Entry::Vacant(slot) => {
                    let pending = Pending { replicas, by, waiters: vec![tx], fences: vec![fence] };
                    slot.insert(Slot { next: Some(pending) });
                    true
                }
            };
            metrics().queue_depth.set(slots.len() as i64);
            start
        };
        if start {
            tokio::spawn(Arc::clone(self).work(key));
        }
        rx
    }

    /// Targets with a write running or waiting.
    pub fn depth(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TargetKey, Slot>> {
        // The map holds plain data and no code panics while holding it; a poisoned lock is still consistent.
        self.slots.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    async fn work(self: Arc<Self>, key: TargetKey) {
        loop {
            let pending = {
                let mut slots = self.lock();
                let next = slots.get_mut(&key).and_then(|slot| slot.next.take());
                match next {
                    Some(pending) => pending,
                    None => {
                        slots.remove(&key);
                        metrics().queue_depth.set(slots.len() as i64);
                        return;
                    }
                }
            };
            if !pending.wanted() {
                for waiter in pending.waiters {
                    let _ = waiter.send(Err(not_leading(&key)));
                }
                continue;
            }
            let run = (self.exec)(key.clone(), pending.replicas);
            let outcome = tokio::select! {
                caught = AssertUnwindSafe(run).catch_unwind() => match caught {
                    Ok(outcome) => outcome,
                    Err(_) => Err(Arc::new(ProviderError::Upstream(format!(
                        "the write to {key} failed unexpectedly"
                    )))),
                },
                // Dropping the execution cancels its in-flight calls: a deposed leader's write stops here.
                () = pending.unwanted() => Err(not_leading(&key)),
            };
            let outcome = outcome.map(|scaled| Scaled { by: Some(pending.by.clone()), ..scaled });
            for waiter in pending.waiters {
                // A waiter that gave up (timeout) no longer listens; the write still happened.
                let _ = waiter.send(outcome.clone());
            }
        }
    }
}

/// A copy of a shared error for one caller (ProviderError is not `Clone`: its variants are plain data).
pub fn to_error(error: &ProviderError) -> ProviderError {
    match error {
        ProviderError::NotReady { provider, retry_after_secs } => {
            ProviderError::NotReady { provider, retry_after_secs: *retry_after_secs }
        }
        ProviderError::ScopeNotWatched { scope_kind, scope } => {
            ProviderError::ScopeNotWatched { scope_kind, scope: scope.clone() }
        }
        ProviderError::NotFound(m) => ProviderError::NotFound(m.clone()),
        ProviderError::Invalid { message, errors } => {
            ProviderError::Invalid { message: message.clone(), errors: errors.clone() }
        }
        ProviderError::Conflict(m) => ProviderError::Conflict(m.clone()),
        ProviderError::CapabilityNotSupported(m) => ProviderError::CapabilityNotSupported(m.clone()),
        ProviderError::Timeout { detail, retry_after_secs } => {
            ProviderError::Timeout { detail: detail.clone(), retry_after_secs: *retry_after_secs }
        }
        ProviderError::Upstream(m) => ProviderError::Upstream(m.clone()),
        ProviderError::Forbidden(m) => ProviderError::Forbidden(m.clone()),
        ProviderError::Throttled { detail, retry_after_secs } => {
            ProviderError::Throttled { detail: detail.clone(), retry_after_secs: *retry_after_secs }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::cache::model::ControllerKind;
    use crate::provider::scale::TargetProvider;

    fn key(name: &str) -> TargetKey {
        TargetKey {
            provider: TargetProvider::K8s,
            scope: "default".into(),
            kind: Some(ControllerKind::Deployment),
            name: name.into(),
        }
    }

    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<(String, i32)>>,
        running: AtomicUsize,
        max_running_per_key: AtomicUsize,
        per_key: Mutex<HashMap<String, usize>>,
    }

    /// An executor that takes 100 ms per write and records what it was asked, and how many writes of one
    /// target overlapped.
    fn recording(rec: Arc<Recorder>, fail_on: Option<i32>) -> Executor {
        Arc::new(move |key: TargetKey, replicas: i32| {
            let rec = Arc::clone(&rec);
            async move {
                rec.calls.lock().unwrap().push((key.name.clone(), replicas));
                let now = {
                    let mut per = rec.per_key.lock().unwrap();
                    let n = per.entry(key.name.clone()).or_default();
                    *n += 1;
                    *n
                };
                rec.max_running_per_key.fetch_max(now, Ordering::SeqCst);
                rec.running.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                rec.running.fetch_sub(1, Ordering::SeqCst);
                *rec.per_key.lock().unwrap().get_mut(&key.name).unwrap() -= 1;
                if fail_on == Some(replicas) {
                    return Err(Arc::new(ProviderError::Upstream("boom".into())));
                }
                Ok(Scaled {
                    kind: ControllerKind::Deployment,
                    name: key.name,
                    previous: 1,
                    applied: replicas,
                    controller: None,
                    by: None,
                })
            }
            .boxed()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn latest_wins_and_superseded_waiters_get_the_newer_outcome() {
        let rec = Arc::new(Recorder::default());
        let queue = ScaleQueue::new(recording(Arc::clone(&rec), None));
        let first = queue.submit_as(key("web"), 3, None, "first".into());
        tokio::task::yield_now().await;
        let second = queue.submit_as(key("web"), 4, None, "second".into());
        let third = queue.submit_as(key("web"), 5, None, "third".into());
        assert_eq!(queue.depth(), 1);
        let first = first.await.unwrap().unwrap();
        assert_eq!((first.applied, first.by.as_deref()), (3, Some("first")));
        let second = second.await.unwrap().unwrap();
        assert_eq!((second.applied, second.by.as_deref()), (5, Some("third")), "names the write that won");
        assert_eq!(third.await.unwrap().unwrap().applied, 5);
        assert_eq!(*rec.calls.lock().unwrap(), vec![("web".to_string(), 3), ("web".to_string(), 5)]);
        tokio::task::yield_now().await;
        assert_eq!(queue.depth(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn one_target_never_runs_twice_at_once_but_targets_run_in_parallel() {
        let rec = Arc::new(Recorder::default());
        let queue = ScaleQueue::new(recording(Arc::clone(&rec), None));
        let started = tokio::time::Instant::now();
        let mut waits = Vec::new();
        for i in 0..20 {
            waits.push(queue.submit(key("web"), i));
            waits.push(queue.submit(key(&format!("other-{i}")), i));
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        for wait in waits {
            wait.await.unwrap().unwrap();
        }
        assert_eq!(rec.max_running_per_key.load(Ordering::SeqCst), 1);
        // 20 distinct targets in parallel plus a coalesced chain for `web`: far less than 40 serial writes.
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        let web_calls: Vec<i32> =
            rec.calls.lock().unwrap().iter().filter(|(n, _)| n == "web").map(|(_, r)| *r).collect();
        assert!(web_calls.len() < 20, "coalescing skipped superseded counts: {web_calls:?}");
        assert_eq!(web_calls.last(), Some(&19), "the last submitted count is the last written");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_reaches_every_waiter_and_the_next_write_still_runs() {
        let rec = Arc::new(Recorder::default());
        let queue = ScaleQueue::new(recording(Arc::clone(&rec), Some(7)));
        let first = queue.submit(key("web"), 2);
        tokio::task::yield_now().await;
        let a = queue.submit(key("web"), 7);
        let b = queue.submit(key("web"), 7);
        assert_eq!(first.await.unwrap().unwrap().applied, 2);
        let a = a.await.unwrap().unwrap_err();
        let b = b.await.unwrap().unwrap_err();
        assert!(matches!(to_error(&a), ProviderError::Upstream(m) if m == "boom"));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(queue.submit(key("web"), 8).await.unwrap().unwrap().applied, 8);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_waiter_does_not_cancel_the_write() {
        let rec = Arc::new(Recorder::default());
        let queue = ScaleQueue::new(recording(Arc::clone(&rec), None));
        drop(queue.submit(key("web"), 4));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(*rec.calls.lock().unwrap(), vec![("web".to_string(), 4)]);
        assert_eq!(queue.depth(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn fenced_writes_stop_when_leadership_is_lost_and_unfenced_ones_do_not() {
        let rec = Arc::new(Recorder::default());
        let queue = ScaleQueue::new(recording(Arc::clone(&rec), None));
        let (leading, fence) = tokio::sync::watch::channel(true);
        let running = queue.submit_as(key("web"), 2, Some(fence.clone()), "sr".into());
        tokio::task::yield_now().await;
        let waiting = queue.submit_as(key("web"), 3, Some(fence.clone()), "sr".into());
        // Leadership lost 50 ms into the 100 ms write: it is dropped, and the waiting count never starts.
        tokio::time::sleep(Duration::from_millis(50)).await;
        leading.send_replace(false);
        assert!(matches!(to_error(&running.await.unwrap().unwrap_err()), ProviderError::Upstream(_)));
        assert!(waiting.await.unwrap().is_err());
        assert_eq!(rec.running.load(Ordering::SeqCst), 1, "the running write was dropped, never finished");
        assert_eq!(*rec.calls.lock().unwrap(), vec![("web".to_string(), 2)], "3 was never started");
        // A REST caller joining a fenced count keeps it alive.
        let fenced = queue.submit_as(key("api"), 4, Some(fence), "sr".into());
        let rest = queue.submit(key("api"), 4);
        assert_eq!(rest.await.unwrap().unwrap().applied, 4);
        assert_eq!(fenced.await.unwrap().unwrap().applied, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_executor_answers_and_frees_the_slot() {
        let exec: Executor = Arc::new(|_key, replicas| {
            async move {
                if replicas == 1 {
                    panic!("executor bug");
                }
                Ok(Scaled {
                    kind: ControllerKind::Deployment,
                    name: "web".into(),
                    previous: 0,
                    applied: replicas,
                    controller: None,
                    by: None,
                })
            }
            .boxed()
        });
        let queue = ScaleQueue::new(exec);
        let err = queue.submit(key("web"), 1).await.unwrap().unwrap_err();
        assert!(matches!(*err, ProviderError::Upstream(_)));
        assert_eq!(queue.submit(key("web"), 2).await.unwrap().unwrap().applied, 2);
    }
}
