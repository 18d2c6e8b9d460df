//! The executor: one [`Reconciler`] that REST writes and the ScaleRequest controller both call. It resolves
//! the target, submits "set N" to the keyed queue, and dispatches each execution to the provider's
//! [`Scaler`] by `target.provider`.
//!
//! It does no provider I/O itself (that is `provider::k8s::write` or the ECS provider) and builds no HTTP
//! responses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;

use super::queue::{Executor, Fence, Outcome, ScaleQueue, to_error};
use crate::cache::model::ControllerKind;
use crate::metrics::metrics;
use crate::provider::scale::{
    Resolved, Scaled, Scaler, Source, TargetKey, TargetProvider, WriteQueue, not_found,
};
use crate::provider::{self, ProviderError};

/// The scalers by provider; a provider that is not enabled has none.
#[derive(Clone, Default)]
pub struct Scalers {
    pub k8s: Option<Arc<dyn Scaler>>,
    pub ecs: Option<Arc<dyn Scaler>>,
}

impl Scalers {
    fn get(&self, provider: TargetProvider) -> provider::Result<&Arc<dyn Scaler>> {
        let scaler = match provider {
            TargetProvider::K8s => self.k8s.as_ref(),
            TargetProvider::Ecs => self.ecs.as_ref(),
        };
        scaler.ok_or_else(|| {
            ProviderError::CapabilityNotSupported(format!(
                "the {} provider is not enabled",
                provider.as_str()
            ))
        })
    }
}

/// The one write path for replicas.
pub struct Reconciler {
    queue: Arc<ScaleQueue>,
    scalers: Scalers,
}

/// The bound of one write's execution for a [`Reconciler::new`] (the operator uses `--write-timeout`).
pub const DEFAULT_EXECUTION_DEADLINE: Duration = Duration::from_secs(30);

impl Reconciler {
    pub fn new(scalers: Scalers) -> Arc<Reconciler> {
        Reconciler::bounded(scalers, DEFAULT_EXECUTION_DEADLINE)
    }

    /// A reconciler whose every execution ends within `deadline`, whatever the provider's calls do: a hung
    /// call is dropped (cancelling its request) and its target's slot goes to the next write at once.
    pub fn bounded(scalers: Scalers, deadline: Duration) -> Arc<Reconciler> {
        let dispatch = scalers.clone();
        let exec: Executor = Arc::new(move |key: TargetKey, replicas: i32| {
            let scalers = dispatch.clone();
            async move {
                let scaler = scalers.get(key.provider).map_err(Arc::new)?;
                let call = scaler.scale(key.scope.clone(), key.name.clone(), key.kind, replicas);
                let result = match tokio::time::timeout(deadline, call).await {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::warn!(target = %key, replicas, ?deadline, "a write did not finish in time; cut");
                        Err(ProviderError::Timeout {
                            detail: format!(
                                "the write of {replicas} replicas to {} in {} did not finish within {}s; it may \
                                 or may not have landed, and repeating it is safe",
                                key.name,
                                key.scope,
                                deadline.as_secs_f64()
                            ),
                            retry_after_secs: 1,
                        })
                    }
                };
                let label = match &result {
                    Ok(_) => "success",
                    Err(e) => e.label(),
                };
                metrics().writes.with_label_values(&[key.provider.as_str(), "scale", label]).inc();
                result.map_err(Arc::new)
            }
            .boxed()
        });
        Arc::new(Reconciler { queue: ScaleQueue::new(exec), scalers })
    }

    /// The target as the provider's cache shows it (no I/O).
    pub fn observe(
        &self,
        provider: TargetProvider,
        scope: &str,
        name: &str,
        kind: Option<ControllerKind>,
    ) -> provider::Result<Option<Resolved>> {
        self.scalers.get(provider)?.observe(scope, name, kind)
    }

    /// Set `replicas` on a target and wait for the outcome of the write that settled it (see `queue`'s
    /// docs: a newer count for the same target may settle it instead). No deadline: callers that have one
    /// use [`Reconciler::scale_within`].
    pub async fn scale(&self, source: Source, target: &TargetKey, replicas: i32) -> provider::Result<Scaled> {
        let started = Instant::now();
        let result = self.scale_inner(target, replicas, None, by_default(source)).await;
        record(source, started, &result);
        result
    }

    /// [`Reconciler::scale`] with a deadline: past it, `Timeout` (504) with a Retry-After; the write may go
    /// on (up to the execution deadline) and repeating the request is safe. A write that spent its conflict
    /// budget is submitted again while the deadline allows: a caller never sees a 409 for "set replicas to
    /// N" (clients do not retry 409).
    pub async fn scale_within(
        &self,
        source: Source,
        deadline: Duration,
        target: &TargetKey,
        replicas: i32,
    ) -> provider::Result<Scaled> {
        self.scale_within_fenced(source, deadline, target, replicas, None, by_default(source)).await
    }

    /// [`Reconciler::scale_within`] by `by` (named to the callers its count supersedes), for a caller that
    /// wants the write only while `fence` holds (see `queue`): a ScaleRequest reconcile passes this replica's
    /// leadership and its own name.
    pub async fn scale_within_fenced(
        &self,
        source: Source,
        deadline: Duration,
        target: &TargetKey,
        replicas: i32,
        fence: Fence,
        by: String,
    ) -> provider::Result<Scaled> {
        let started = Instant::now();
        let until_settled = async {
            loop {
                match self.scale_inner(target, replicas, fence.clone(), by.clone()).await {
                    Err(ProviderError::Conflict(_)) => {
                        tokio::time::sleep(Duration::from_millis(100 + fastrand::u64(..200))).await;
                    }
                    settled => return settled,
                }
            }
        };
        let result = match tokio::time::timeout(deadline, until_settled).await {
            Ok(result) => result,
            Err(_) => Err(ProviderError::Timeout {
                detail: format!(
                    "scaling {} in {} to {replicas} was not confirmed within {}s; it may still land, and \
                     repeating the request is safe",
                    target.name,
                    target.scope,
                    deadline.as_secs()
                ),
                retry_after_secs: deadline.as_secs().clamp(1, 30),
            }),
        };
        record(source, started, &result);
        result
    }

    async fn scale_inner(
        &self,
        target: &TargetKey,
        replicas: i32,
        fence: Fence,
        by: String,
    ) -> provider::Result<Scaled> {
        if replicas < 0 {
            return Err(ProviderError::invalid("replicas", "must be an integer >= 0"));
        }
        let TargetKey { provider, scope, kind, name } = target;
        // Resolve the kind first so that `web` and `Deployment/web` share one queue slot.
        let resolved = self
            .observe(*provider, scope, name, *kind)?
            .ok_or_else(|| not_found(*provider, scope, name, *kind))?;
        let key = TargetKey { kind: Some(resolved.kind), ..target.clone() };
        let outcome: Outcome = self.queue.submit_as(key, replicas, fence, by).await.map_err(|_| {
            ProviderError::Upstream("the write queue stopped before the write finished".to_string())
        })?;
        outcome.map_err(|e| to_error(&e))
    }

    /// Targets with a write running or waiting.
    pub fn queue_depth(&self) -> usize {
        self.queue.depth()
    }
}

/// Providers hand their REST scales here (they hold the reconciler as a `dyn WriteQueue`).
impl WriteQueue for Reconciler {
    fn submit<'a>(
        &'a self,
        source: Source,
        deadline: Duration,
        target: &'a TargetKey,
        replicas: i32,
    ) -> BoxFuture<'a, provider::Result<Scaled>> {
        self.scale_within(source, deadline, target, replicas).boxed()
    }
}

/// How a caller is named when it names itself no better.
fn by_default(source: Source) -> String {
    match source {
        Source::Rest => "a REST write".to_string(),
        Source::Crd => "a ScaleRequest".to_string(),
    }
}

fn record(source: Source, started: Instant, result: &provider::Result<Scaled>) {
    let m = metrics();
    m.reconcile_duration.with_label_values(&[source.as_str()]).observe(started.elapsed().as_secs_f64());
    let label = match result {
        Ok(_) => "success",
        Err(e) => e.label(),
    };
    m.reconciles.with_label_values(&[source.as_str(), label]).inc();
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    /// A scaler over a map, standing in for a provider.
    #[derive(Default)]
    struct MapScaler {
        replicas: Mutex<HashMap<String, i32>>,
        delay: Duration,
        /// How many writes still fail as if their conflict retries were spent.
        conflicts: Mutex<u32>,
    }

    impl Scaler for MapScaler {
        fn observe(
            &self,
            _scope: &str,
            name: &str,
            kind: Option<ControllerKind>,
        ) -> provider::Result<Option<Resolved>> {
            if kind.is_some_and(|k| k != ControllerKind::Deployment) {
                return Ok(None);
            }
            Ok(self.replicas.lock().unwrap().get(name).map(|&r| Resolved {
                kind: ControllerKind::Deployment,
                name: name.to_string(),
                replicas: r,
                ready_replicas: r,
            }))
        }

        fn scale(
            &self,
            _scope: String,
            name: String,
            _kind: Option<ControllerKind>,
            replicas: i32,
        ) -> BoxFuture<'_, provider::Result<Scaled>> {
            async move {
                tokio::time::sleep(self.delay).await;
                {
                    let mut conflicts = self.conflicts.lock().unwrap();
                    if *conflicts > 0 {
                        *conflicts -= 1;
                        return Err(ProviderError::Conflict("the object has been modified".into()));
                    }
                }
                let previous = self.replicas.lock().unwrap().insert(name.clone(), replicas).unwrap_or(0);
                Ok(Scaled {
                    kind: ControllerKind::Deployment,
                    name,
                    previous,
                    applied: replicas,
                    controller: None,
                    by: None,
                })
            }
            .boxed()
        }
    }

    fn web(name: &str, kind: Option<ControllerKind>) -> TargetKey {
        TargetKey { provider: TargetProvider::K8s, scope: "default".into(), kind, name: name.into() }
    }

    fn reconciler(delay: Duration) -> Arc<Reconciler> {
        let scaler = MapScaler { delay, ..Default::default() };
        scaler.replicas.lock().unwrap().insert("web".into(), 1);
        Reconciler::new(Scalers { k8s: Some(Arc::new(scaler)), ecs: None })
    }

    #[tokio::test(start_paused = true)]
    async fn scale_resolves_and_reports_previous_and_applied() {
        let r = reconciler(Duration::from_millis(10));
        let s = r.scale(Source::Rest, &web("web", None), 4).await.unwrap();
        assert_eq!((s.previous, s.applied, s.kind), (1, 4, ControllerKind::Deployment));
        let obs = r.observe(TargetProvider::K8s, "default", "web", None).unwrap().unwrap();
        assert_eq!(obs.replicas, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn missing_target_kind_mismatch_and_disabled_provider_are_errors() {
        let r = reconciler(Duration::from_millis(10));
        let e = r.scale(Source::Rest, &web("api", None), 4).await.unwrap_err();
        assert!(
            matches!(e, ProviderError::NotFound(ref m) if m == "controller api not found in namespace default")
        );
        let pinned = Some(ControllerKind::StatefulSet);
        let e = r.scale(Source::Rest, &web("web", pinned), 4).await.unwrap_err();
        assert!(matches!(e, ProviderError::NotFound(ref m) if m.starts_with("StatefulSet web")));
        let e = r
            .scale(Source::Crd, &TargetKey { provider: TargetProvider::Ecs, ..web("web", None) }, 4)
            .await
            .unwrap_err();
        assert!(matches!(e, ProviderError::CapabilityNotSupported(_)));
        let e = r.scale(Source::Rest, &web("web", None), -1).await.unwrap_err();
        assert!(matches!(e, ProviderError::Invalid { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_write_times_out_with_retry_after_and_still_lands() {
        let r = reconciler(Duration::from_secs(20));
        let e =
            r.scale_within(Source::Rest, Duration::from_secs(10), &web("web", None), 7).await.unwrap_err();
        assert!(matches!(e, ProviderError::Timeout { retry_after_secs: 10, .. }), "{e:?}");
        tokio::time::sleep(Duration::from_secs(25)).await;
        let obs = r.observe(TargetProvider::K8s, "default", "web", None).unwrap().unwrap();
        assert_eq!(obs.replicas, 7, "the write went on after the caller gave up");
    }

    /// A scaler whose first write never finishes (a hung call), later ones take 10 ms.
    struct HangsOnce {
        inner: MapScaler,
        hung: Mutex<bool>,
    }

    impl Scaler for HangsOnce {
        fn observe(
            &self,
            scope: &str,
            name: &str,
            kind: Option<ControllerKind>,
        ) -> provider::Result<Option<Resolved>> {
            self.inner.observe(scope, name, kind)
        }

        fn scale(
            &self,
            scope: String,
            name: String,
            kind: Option<ControllerKind>,
            replicas: i32,
        ) -> BoxFuture<'_, provider::Result<Scaled>> {
            let hang = !std::mem::replace(&mut *self.hung.lock().unwrap(), true);
            async move {
                if hang {
                    futures::future::pending::<()>().await;
                }
                self.inner.scale(scope, name, kind, replicas).await
            }
            .boxed()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_write_frees_its_target_for_the_next_write_at_its_deadline() {
        let inner = MapScaler { delay: Duration::from_millis(10), ..Default::default() };
        inner.replicas.lock().unwrap().insert("web".into(), 1);
        let scaler = HangsOnce { inner, hung: Mutex::new(false) };
        let deadline = Duration::from_secs(5);
        let r = Reconciler::bounded(Scalers { k8s: Some(Arc::new(scaler)), ecs: None }, deadline);
        let e = r.scale_within(Source::Rest, deadline, &web("web", None), 4).await.unwrap_err();
        assert!(matches!(e, ProviderError::Timeout { .. }), "{e:?}");
        let started = tokio::time::Instant::now();
        let s = r.scale_within(Source::Rest, deadline, &web("web", None), 6).await.unwrap();
        assert_eq!(s.applied, 6);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "waited {:?} behind the hung write",
            started.elapsed()
        );
        assert_eq!(r.observe(TargetProvider::K8s, "default", "web", None).unwrap().unwrap().replicas, 6);
        assert_eq!(r.queue_depth(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rest_write_outlasts_spent_conflict_budgets_within_its_deadline() {
        let scaler =
            MapScaler { delay: Duration::from_millis(10), conflicts: Mutex::new(3), ..Default::default() };
        scaler.replicas.lock().unwrap().insert("web".into(), 1);
        let r = Reconciler::new(Scalers { k8s: Some(Arc::new(scaler)), ecs: None });
        let s = r.scale_within(Source::Rest, Duration::from_secs(10), &web("web", None), 5).await.unwrap();
        assert_eq!(s.applied, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn endless_conflicts_end_in_a_timeout_not_a_409() {
        let scaler = MapScaler {
            delay: Duration::from_millis(10),
            conflicts: Mutex::new(u32::MAX),
            ..Default::default()
        };
        scaler.replicas.lock().unwrap().insert("web".into(), 1);
        let r = Reconciler::new(Scalers { k8s: Some(Arc::new(scaler)), ecs: None });
        let e =
            r.scale_within(Source::Rest, Duration::from_secs(10), &web("web", None), 5).await.unwrap_err();
        assert!(matches!(e, ProviderError::Timeout { .. }), "{e:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_writers_end_at_the_last_submitted_count() {
        let r = reconciler(Duration::from_millis(50));
        let target = web("web", None);
        let (a, b, c) = tokio::join!(
            r.scale(Source::Rest, &target, 2),
            r.scale(Source::Rest, &target, 3),
            r.scale(Source::Crd, &target, 9),
        );
        // All three were queued before the first started: the newest count settles every one of them.
        assert_eq!(a.unwrap().applied, 9);
        assert_eq!(b.unwrap().applied, 9);
        assert_eq!(c.unwrap().applied, 9);
        assert_eq!(r.observe(TargetProvider::K8s, "default", "web", None).unwrap().unwrap().replicas, 9);
    }
}
