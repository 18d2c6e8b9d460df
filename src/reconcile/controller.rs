//! The ScaleRequest controller (kube-runtime `Controller`): finalizer-free and idempotent. Each reconcile
//! reads the target from the cache, asks the pure planner what to do, scales through the shared
//! [`Reconciler`] (so CRD and REST writes share one queue), then writes `/status` with a merge patch and
//! records a Kubernetes Event for each transition.
//!
//! It runs only while this replica holds the leader Lease ([`run_while_leader`]). It never writes the target
//! itself and never reverts a later change by someone else: a request is applied once per generation. The
//! status it writes is computed by `status` (pure); HPA lookups are `autoscalers`'.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;
use tokio_util::task::AbortOnDropHandle;

use super::autoscalers::AutoscalerLists;
use super::crd::{Phase, ScaleRequest, ScaleRequestStatus};
use super::plan::{self, Action, Desired, Observed};
use super::queue::Fence;
use super::run::Reconciler;
use super::status::{Transition, event_of, next_status, set_condition, status_patch};
use crate::cache::model::ControllerKind;
use crate::provider::ProviderError;
use crate::provider::scale::{Source, TargetKey, TargetProvider, backoff, not_found};

/// How long one reconcile waits for its write; past it the request stays Applying and is retried (the
/// write itself goes on, and repeating it is safe).
const CRD_WRITE_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("ScaleRequest {0} has no namespace")]
    NoNamespace(String),
    #[error("writing the status of ScaleRequest {name}: {source}")]
    Status { name: String, source: kube::Error },
    /// The status write's resourceVersion precondition failed: this reconcile saw an older copy (or another
    /// replica wrote since). Not an error: the newer copy is reconciled instead.
    #[error("ScaleRequest {0} changed since this reconcile read it")]
    Stale(String),
    #[error("deleting the finished ScaleRequest {name}: {source}")]
    Delete { name: String, source: kube::Error },
    #[error("the reconcile of ScaleRequest {0} failed unexpectedly")]
    Panicked(String),
}

/// What each reconcile gets.
pub struct Context {
    client: Client,
    /// The client of the ScaleRequest watch (`client::watch_client`): bounded above the watch timeout,
    /// where `client` is bounded per request.
    watch_client: Client,
    reconciler: Arc<Reconciler>,
    recorder: Recorder,
    /// Consecutive retries per request (namespace/name), for the backoff of a missing target or a failed
    /// write; cleared on success.
    retries: Mutex<HashMap<String, u32>>,
    /// The count seen before this replica applied a request's generation: a reconcile that runs on a stale
    /// copy (our own status patch not yet watched) writes nothing, and must not report the new count as
    /// the previous one.
    previous: Mutex<HashMap<String, (i64, i32)>>,
    autoscalers: AutoscalerLists,
    /// This replica's leadership, once [`run_while_leader`] runs: reconciles write only while it reads true.
    leader: std::sync::OnceLock<watch::Receiver<bool>>,
    /// The ScaleRequests the running controllers have listed, to find a newer request for the same target.
    requests: Mutex<Vec<Store<ScaleRequest>>>,
}

impl Context {
    pub fn new(client: Client, reconciler: Arc<Reconciler>, identity: &str) -> Arc<Context> {
        Context::with_watch_client(client.clone(), client, reconciler, identity)
    }

    /// [`Context::new`] watching ScaleRequests through `watch_client`.
    pub fn with_watch_client(
        client: Client,
        watch_client: Client,
        reconciler: Arc<Reconciler>,
        identity: &str,
    ) -> Arc<Context> {
        let reporter = Reporter { controller: "machinist".into(), instance: Some(identity.to_string()) };
        Arc::new(Context {
            recorder: Recorder::new(client.clone(), reporter),
            autoscalers: AutoscalerLists::new(client.clone()),
            client,
            watch_client,
            reconciler,
            retries: Mutex::new(HashMap::new()),
            previous: Mutex::new(HashMap::new()),
            leader: std::sync::OnceLock::new(),
            requests: Mutex::new(Vec::new()),
        })
    }

    /// A request for the same target created after `sr` (and not failed), if the controllers have listed
    /// one: the newest request for a target wins, whatever order the requests are reconciled in (after a
    /// failover the new leader reconciles every pending request at once, in no particular order).
    ///
    /// `creationTimestamp` has one-second resolution, so within one second the order is unknown. There a
    /// request that has already been applied (or finished) never beats one not applied yet: that one was
    /// most likely created after the other was applied (a client that waits for it and then asks again), and
    /// superseding it would drop the caller's last word. Two requests of the same second that are both not
    /// applied yet are ordered by name, so that one of them, not both, is applied.
    fn newer_request_for(&self, sr: &ScaleRequest) -> Option<Arc<ScaleRequest>> {
        let mine = target_of(sr)?;
        let created = |r: &ScaleRequest| (r.metadata.creation_timestamp.clone().map(|t| t.0), r.name_any());
        let applied = |r: &ScaleRequest| {
            r.status
                .as_ref()
                .is_some_and(|s| s.applied_replicas.is_some() || s.phase.is_some_and(Phase::finished))
        };
        let newer = |other: &ScaleRequest| {
            let (theirs, mine) = (created(other), created(sr));
            if theirs.0 == mine.0 { !applied(other) && theirs.1 > mine.1 } else { theirs > mine }
        };
        let stores = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        stores
            .iter()
            .flat_map(|store| store.state())
            .filter(|other| other.uid() != sr.uid() && target_of(other).as_ref() == Some(&mine))
            .filter(|other| other.status.as_ref().and_then(|s| s.phase) != Some(Phase::Failed))
            .filter(|other| newer(other))
            .max_by_key(|other| created(other))
    }

    /// The fence of this replica's writes (none without leader election).
    fn fence(&self) -> Fence {
        self.leader.get().cloned()
    }

    fn leading(&self) -> bool {
        self.leader.get().is_none_or(|leading| *leading.borrow())
    }

    fn next_retry(&self, key: &str) -> Duration {
        let mut retries = self.retries.lock().unwrap_or_else(|p| p.into_inner());
        let attempt = retries.entry(key.to_string()).or_default();
        *attempt = attempt.saturating_add(1);
        // Never below 1 s: a missing target is waited for, not hammered.
        backoff(*attempt, Duration::from_secs(1), Duration::from_secs(30), fastrand::f64())
            .max(Duration::from_secs(1))
    }

    /// The previous count to report for `key` at `generation`, remembering the first one seen.
    fn previous_for(&self, key: &str, generation: i64, seen: i32) -> i32 {
        let mut memo = self.previous.lock().unwrap_or_else(|p| p.into_inner());
        match memo.get(key) {
            Some((g, previous)) if *g == generation => *previous,
            _ => {
                memo.insert(key.to_string(), (generation, seen));
                seen
            }
        }
    }

    fn forget(&self, key: &str) {
        self.reset_retries(key);
        self.previous.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    fn reset_retries(&self, key: &str) {
        self.retries.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    /// Forget the per-request state (retries, previous counts) of every request `exists` denies: a request
    /// deleted while it failed is never reconciled again, so nothing else would clear it.
    fn prune(&self, exists: impl Fn(&str) -> bool) {
        self.retries.lock().unwrap_or_else(|p| p.into_inner()).retain(|key, _| exists(key));
        self.previous.lock().unwrap_or_else(|p| p.into_inner()).retain(|key, _| exists(key));
    }

    /// Requests with per-request state held (retries or a remembered previous count).
    pub fn tracked_requests(&self) -> usize {
        let retries = self.retries.lock().unwrap_or_else(|p| p.into_inner());
        let previous = self.previous.lock().unwrap_or_else(|p| p.into_inner());
        retries.keys().chain(previous.keys()).collect::<std::collections::HashSet<_>>().len()
    }
}

/// How often the per-request state of deleted requests is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(5);

/// The target a request names: (provider, scope, name); a Kubernetes target lives in the request's namespace.
fn target_of(sr: &ScaleRequest) -> Option<(TargetProvider, String, String)> {
    let target = &sr.spec.target;
    let scope = match target.provider {
        TargetProvider::K8s => sr.namespace()?,
        TargetProvider::Ecs => target.scope.clone()?,
    };
    Some((target.provider, scope, target.name.clone()))
}

/// Runs [`reconcile`] on a task of its own. kube-runtime's runner keeps the in-flight reconciles in a map
/// that it polls in full on every wake-up, on the one task that drives the controller stream: with N
/// requests in flight, each API response costs N polls of deep request futures there, serially, on one
/// core (a 200-request burst took seconds just to start its reconciles). A spawned reconcile leaves the
/// runner a join handle, which is cheap to poll, and runs on any worker thread.
async fn reconcile_spawned(sr: Arc<ScaleRequest>, ctx: Arc<Context>) -> Result<Requeue, ControllerError> {
    let name = sr.name_any();
    // Keep kube-runtime's "reconciling object" span on the spawned work.
    let work = tracing::Instrument::instrument(reconcile(sr, ctx), tracing::Span::current());
    // Aborted when dropped: a stopped controller (lost lease, shutdown) cancels its reconciles as it did
    // when they ran inline.
    match AbortOnDropHandle::new(tokio::spawn(work)).await {
        Ok(result) => result,
        Err(error) => {
            tracing::error!(scalerequest = %name, %error, "reconcile task failed");
            Err(ControllerError::Panicked(name))
        }
    }
}

async fn reconcile(sr: Arc<ScaleRequest>, ctx: Arc<Context>) -> Result<Requeue, ControllerError> {
    let name = sr.name_any();
    let ns = sr.namespace().ok_or_else(|| ControllerError::NoNamespace(name.clone()))?;
    let key = format!("{ns}/{name}");
    let generation = sr.metadata.generation.unwrap_or(0);
    let status = sr.status.clone().unwrap_or_default();
    let target = &sr.spec.target;
    let kind = target.kind.map(ControllerKind::from);

    let scope = match (target.provider, target.scope.as_deref()) {
        (TargetProvider::K8s, None) => ns.clone(),
        (TargetProvider::K8s, Some(s)) if s == ns => ns.clone(),
        (TargetProvider::K8s, Some(s)) => {
            let message = format!(
                "target.scope {s:?} differs from the request's namespace {ns}: Kubernetes targets live in the \
                 ScaleRequest's namespace"
            );
            let t = Transition::ApplyFailed { reason: "InvalidTarget", message, terminal: true };
            return finish_invalid(&sr, &ctx, &status, generation, t).await;
        }
        (TargetProvider::Ecs, Some(s)) => s.to_string(),
        (TargetProvider::Ecs, None) => {
            let message = "target.scope (the ECS cluster) is required for provider ecs".to_string();
            let t = Transition::ApplyFailed { reason: "InvalidTarget", message, terminal: true };
            return finish_invalid(&sr, &ctx, &status, generation, t).await;
        }
    };
    if target.provider == TargetProvider::K8s && kind == Some(ControllerKind::Service) {
        let message = "kind Service is an ECS service; Kubernetes targets are Deployment, StatefulSet, \
                       ReplicaSet or ReplicationController"
            .to_string();
        let t = Transition::ApplyFailed { reason: "InvalidTarget", message, terminal: true };
        return finish_invalid(&sr, &ctx, &status, generation, t).await;
    }

    let observed = match ctx.reconciler.observe(target.provider, &scope, &target.name, kind) {
        Ok(found) => found,
        Err(ProviderError::NotReady { .. }) => return Ok(Requeue::requeue(Duration::from_secs(2))),
        Err(e) => {
            let reason = match e {
                ProviderError::ScopeNotWatched { .. } => "ScopeNotWatched",
                ProviderError::CapabilityNotSupported(_) => "ProviderNotEnabled",
                _ => "TargetUnavailable",
            };
            let t = Transition::ApplyFailed { reason, message: e.to_string(), terminal: true };
            update(&sr, &ctx, &status, generation, &t).await?;
            return Ok(Requeue::requeue(ctx.next_retry(&key)));
        }
    };
    let desired = Desired {
        generation,
        replicas: sr.spec.replicas,
        ttl_seconds_after_finished: sr.spec.ttl_seconds_after_finished,
        status: &status,
        now: Timestamp::now(),
    };
    let obs = observed.as_ref().map(|r| Observed { replicas: r.replicas, ready_replicas: r.ready_replicas });
    let not_found = || not_found(target.provider, &scope, &target.name, kind).to_string();

    match plan::plan(&desired, obs) {
        Action::Apply if ctx.newer_request_for(&sr).is_some() => {
            let newer = ctx.newer_request_for(&sr).expect("just found");
            ctx.forget(&key);
            let by = format!(
                "ScaleRequest {}/{}, created later,",
                newer.namespace().unwrap_or_default(),
                newer.name_any()
            );
            let t = Transition::Beaten { requested: sr.spec.replicas, won: newer.spec.replicas, by };
            update(&sr, &ctx, &status, generation, &t).await?;
            Ok(after_finish(&sr))
        }
        Action::Apply => {
            let mut status = status.clone();
            let target_key = TargetKey {
                provider: target.provider,
                scope: scope.clone(),
                kind,
                name: target.name.clone(),
            };
            let autoscaler = async {
                match (&observed, target.provider) {
                    (Some(resolved), TargetProvider::K8s) => {
                        Some(ctx.autoscalers.conflicting(&scope, resolved.kind, &target.name).await)
                    }
                    _ => None,
                }
            };
            let write = ctx.reconciler.scale_within_fenced(
                Source::Crd,
                CRD_WRITE_DEADLINE,
                &target_key,
                sr.spec.replicas,
                ctx.fence(),
                format!("ScaleRequest {ns}/{name}"),
            );
            // The autoscaler check only feeds the status: it runs alongside the write, not before it.
            let (hpa, result) = tokio::join!(autoscaler, write);
            if let (Some(hpa), Some(resolved)) = (hpa, &observed) {
                let (on, reason, message) = match hpa {
                    Some(h) => (
                        true,
                        "HorizontalPodAutoscaler",
                        format!(
                            "HorizontalPodAutoscaler {h} also scales {} {}",
                            resolved.kind.as_str(),
                            target.name
                        ),
                    ),
                    None => (false, "NoAutoscaler", String::new()),
                };
                set_condition(
                    &mut status.conditions,
                    "ConflictingAutoscaler",
                    on,
                    reason,
                    message,
                    generation,
                    Timestamp::now(),
                );
            }
            match result {
                // A newer count for the target replaced this one while it waited: not applied, and the
                // winner's count is not reported as this request's.
                Ok(scaled) if scaled.applied != sr.spec.replicas => {
                    ctx.forget(&key);
                    let t = Transition::Beaten {
                        requested: sr.spec.replicas,
                        won: scaled.applied,
                        by: scaled.by.unwrap_or_else(|| "another write".to_string()),
                    };
                    update(&sr, &ctx, &status, generation, &t).await?;
                    Ok(after_finish(&sr))
                }
                Ok(scaled) => {
                    ctx.reset_retries(&key);
                    let previous = ctx.previous_for(&key, generation, scaled.previous);
                    let t = Transition::Applied {
                        kind: scaled.kind,
                        name: scaled.name,
                        previous,
                        applied: scaled.applied,
                    };
                    update(&sr, &ctx, &status, generation, &t).await?;
                    Ok(Requeue::requeue(Duration::from_millis(500)))
                }
                Err(ProviderError::NotFound(message)) => {
                    update(&sr, &ctx, &status, generation, &Transition::TargetMissing { message }).await?;
                    Ok(Requeue::requeue(ctx.next_retry(&key)))
                }
                Err(e @ ProviderError::Invalid { .. }) => {
                    let t = Transition::ApplyFailed {
                        reason: "Rejected",
                        message: e.to_string(),
                        terminal: true,
                    };
                    update(&sr, &ctx, &status, generation, &t).await?;
                    Ok(Requeue::await_change())
                }
                Err(e) => {
                    let t = Transition::ApplyFailed {
                        reason: "WriteFailed",
                        message: e.to_string(),
                        terminal: false,
                    };
                    update(&sr, &ctx, &status, generation, &t).await?;
                    Ok(Requeue::requeue(ctx.next_retry(&key)))
                }
            }
        }
        Action::TargetMissing => {
            update(&sr, &ctx, &status, generation, &Transition::TargetMissing { message: not_found() })
                .await?;
            Ok(Requeue::requeue(ctx.next_retry(&key)))
        }
        Action::AwaitReady { .. } => Ok(Requeue::requeue(Duration::from_secs(1))),
        Action::Ready { applied } => {
            ctx.forget(&key);
            update(&sr, &ctx, &status, generation, &Transition::Ready { applied }).await?;
            Ok(after_finish(&sr))
        }
        Action::Superseded { applied, now } => {
            ctx.forget(&key);
            update(&sr, &ctx, &status, generation, &Transition::Superseded { applied, now }).await?;
            Ok(after_finish(&sr))
        }
        Action::Expire => {
            ctx.forget(&key);
            if !ctx.leading() {
                return Ok(Requeue::await_change());
            }
            let api: Api<ScaleRequest> = Api::namespaced(ctx.client.clone(), &ns);
            // The uid precondition: a request deleted and created again under the same name meanwhile is a
            // new request, not this finished one.
            let params = DeleteParams {
                preconditions: Some(Preconditions { uid: sr.uid(), resource_version: None }),
                ..DeleteParams::background()
            };
            match api.delete(&name, &params).await {
                Ok(_) => Ok(Requeue::await_change()),
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(Requeue::await_change()),
                Err(source) => Err(ControllerError::Delete { name, source }),
            }
        }
        Action::AwaitTtl(left) => Ok(Requeue::requeue(left + Duration::from_millis(100))),
        Action::Done => Ok(Requeue::await_change()),
    }
}

/// Finished requests come back only to be collected by their TTL.
fn after_finish(sr: &ScaleRequest) -> Requeue {
    match sr.spec.ttl_seconds_after_finished {
        Some(ttl) => Requeue::requeue(
            Duration::from_secs(u64::try_from(ttl).unwrap_or(0)) + Duration::from_millis(100),
        ),
        None => Requeue::await_change(),
    }
}

async fn finish_invalid(
    sr: &ScaleRequest,
    ctx: &Context,
    status: &ScaleRequestStatus,
    generation: i64,
    t: Transition,
) -> Result<Requeue, ControllerError> {
    let already = status.observed_generation == Some(generation) && status.phase == Some(Phase::Failed);
    if !already {
        update(sr, ctx, status, generation, &t).await?;
    }
    Ok(after_finish(sr))
}

/// Merge-patch `/status` when it changes, and record an Event when the phase or the reason changes.
async fn update(
    sr: &ScaleRequest,
    ctx: &Context,
    old: &ScaleRequestStatus,
    generation: i64,
    t: &Transition,
) -> Result<(), ControllerError> {
    let name = sr.name_any();
    let new = next_status(old, generation, t, Timestamp::now());
    let reason_of = |s: &ScaleRequestStatus| {
        s.conditions.iter().map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone())).collect::<Vec<_>>()
    };
    let transitioned = old.phase != new.phase
        || reason_of(old) != reason_of(&new)
        || old.observed_generation != new.observed_generation;
    // A replica that no longer leads starts no write (its reconciles are being aborted).
    if !ctx.leading() {
        return Ok(());
    }
    if &new != old {
        let api: Api<ScaleRequest> = Api::namespaced(ctx.client.clone(), &sr.namespace().unwrap_or_default());
        write_status(&api, sr, &new).await?;
    }
    if transitioned {
        let reference = sr.object_ref(&());
        if let Err(error) = ctx.recorder.publish(&event_of(t), &reference).await {
            // Events are best effort: a missing events API must not block the request.
            tracing::debug!(%error, scalerequest = %name, "could not record an event");
        }
    }
    Ok(())
}

/// Patch `/status` to `status`, on the condition that the request is still at the resourceVersion this
/// reconcile read: a late write (a deposed leader's, or one from an older copy) fails with 409 instead of
/// overwriting a newer status.
pub async fn write_status(
    api: &Api<ScaleRequest>,
    sr: &ScaleRequest,
    status: &ScaleRequestStatus,
) -> Result<(), ControllerError> {
    let name = sr.name_any();
    let mut patch = status_patch(status);
    if let Some(rv) = &sr.metadata.resource_version {
        patch["metadata"] = serde_json::json!({ "resourceVersion": rv });
    }
    match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Err(ControllerError::Stale(name)),
        Err(source) => Err(ControllerError::Status { name, source }),
    }
}

fn error_policy(sr: Arc<ScaleRequest>, error: &ControllerError, _ctx: Arc<Context>) -> Requeue {
    if let ControllerError::Stale(name) = error {
        // The newer copy is on its way through the watch; this is a backstop.
        tracing::debug!(scalerequest = %name, "status write on a stale copy; reconciling the newer one");
        return Requeue::requeue(Duration::from_millis(500));
    }
    tracing::warn!(scalerequest = %sr.name_any(), %error, "reconcile failed");
    crate::metrics::metrics().reconciles.with_label_values(&["crd", "controller_error"]).inc();
    Requeue::requeue(Duration::from_secs(2))
}

/// Run the controller over `namespaces` (empty: all) until `stop` resolves.
pub async fn run(
    ctx: Arc<Context>,
    namespaces: Vec<String>,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let apis: Vec<Api<ScaleRequest>> = if namespaces.is_empty() {
        vec![Api::all(ctx.watch_client.clone())]
    } else {
        namespaces.iter().map(|ns| Api::namespaced(ctx.watch_client.clone(), ns)).collect()
    };
    // The stores of a previous term (lost leadership) are stale: this run lists again.
    ctx.requests.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let stop = futures::future::FutureExt::shared(Box::pin(stop));
    let runs = apis.into_iter().map(|api| {
        let stop = stop.clone();
        let ctx = Arc::clone(&ctx);
        let namespace = api.namespace().map(String::from);
        async move {
            let controller = Controller::new(api, crate::provider::k8s::watch::watch_config());
            let store = controller.store();
            ctx.requests.lock().unwrap_or_else(|p| p.into_inner()).push(store.clone());
            let prune = {
                let ctx = Arc::clone(&ctx);
                async move {
                    if store.wait_until_ready().await.is_err() {
                        // The controller is gone; `run` ends with it.
                        return futures::future::pending().await;
                    }
                    loop {
                        tokio::time::sleep(PRUNE_EVERY).await;
                        ctx.prune(|key| {
                            let Some((ns, name)) = key.split_once('/') else { return false };
                            // Another runner's namespace: not this store's to judge.
                            namespace.as_deref().is_some_and(|mine| mine != ns)
                                || store.get(&ObjectRef::new(name).within(ns)).is_some()
                        });
                    }
                }
            };
            let run = controller
                .graceful_shutdown_on(stop)
                .run(reconcile_spawned, error_policy, ctx)
                .for_each(|result| async move {
                    if let Err(error) = result {
                        tracing::debug!(%error, "scalerequest controller event");
                    }
                });
            tokio::select! {
                () = run => {}
                () = prune => {}
            }
        }
    });
    futures::future::join_all(runs).await;
}

/// Run the controller whenever `leader` reads true, stop it when it turns false; return on `shutdown`.
pub async fn run_while_leader(
    ctx: Arc<Context>,
    namespaces: Vec<String>,
    mut leader: watch::Receiver<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    let _ = ctx.leader.set(leader.clone());
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            changed = leader.wait_for(|leading| *leading) => if changed.is_err() { return },
        }
        tracing::info!("leading: starting the ScaleRequest controller");
        let mut follower = leader.clone();
        let lost = async move {
            let _ = follower.wait_for(|leading| !*leading).await;
        };
        // On loss the controller is dropped, not shut down gracefully: its in-flight reconciles are
        // aborted at once (`AbortOnDropHandle`), and their queued writes are fenced off (see `queue`).
        tokio::select! {
            _ = &mut shutdown => return,
            _ = lost => {}
            _ = run(Arc::clone(&ctx), namespaces.clone(), futures::future::pending::<()>()) => {}
        }
        tracing::info!("no longer leading: the ScaleRequest controller stopped");
    }
}

#[cfg(test)]
mod tests;
