//! The ScaleRequest controller (kube-runtime `Controller`): finalizer-free and idempotent. Each reconcile
//! reads the target from the cache, asks the pure planner what to do, scales through the shared
//! [`Reconciler`] (so CRD and REST writes share one queue), then writes `/status` with a merge patch and
//! records a Kubernetes Event for each transition.
//!
//! It runs only while this replica holds the leader Lease ([`run_while_leader`]). It never writes the target
//! itself and never reverts a later change by someone else: a request is applied once per generation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::watch;

use super::crd::{Condition, Phase, ScaleRequest, ScaleRequestStatus, TargetProvider};
use super::plan::{self, Action, Desired, Observed, REASON_TARGET_NOT_FOUND, backoff};
use super::queue::{Fence, TargetKey};
use super::run::{Reconciler, Source};
use crate::cache::model::ControllerKind;
use crate::provider::ProviderError;

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
            client,
            watch_client,
            reconciler,
            retries: Mutex::new(HashMap::new()),
            previous: Mutex::new(HashMap::new()),
            autoscalers: AutoscalerLists::default(),
            leader: std::sync::OnceLock::new(),
        })
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
}

/// How an outcome changes the status: the planner's verdict plus what the write returned.
#[derive(Clone, Debug, PartialEq)]
pub enum Transition {
    Applied { kind: ControllerKind, name: String, previous: i32, applied: i32 },
    ApplyFailed { reason: &'static str, message: String, terminal: bool },
    TargetMissing { message: String },
    Ready { applied: i32 },
    Superseded { applied: i32, now: i32 },
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
            s.phase = Some(Phase::Succeeded);
            let message =
                format!("applied {applied}, since changed to {current} by someone else (not reverted)");
            set_condition(&mut s.conditions, "Ready", false, "Superseded", message.clone(), generation, now);
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

fn event_of(t: &Transition) -> Event {
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
            format!("applied {applied}, since changed to {now} by someone else; not reverted"),
            "Observe",
        ),
    };
    Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None }
}

/// The (kind, target name, HPA name) of each HorizontalPodAutoscaler of a namespace; `None` when the API
/// server has no autoscaling/v2 (or this replica may not list it).
type Autoscalers = Option<Arc<Vec<(String, String, String)>>>;

/// One HPA list per namespace at a time: reconciles that need it while a list is in flight share its
/// answer. A burst of requests in one namespace would otherwise list the namespace's HPAs once per request.
/// A shared answer is at most one list round trip older than the request that joins it.
#[derive(Default)]
pub struct AutoscalerLists {
    in_flight:
        Mutex<HashMap<String, futures::future::Shared<futures::future::BoxFuture<'static, Autoscalers>>>>,
}

impl AutoscalerLists {
    async fn get(&self, client: &Client, ns: &str) -> Autoscalers {
        let shared = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            in_flight
                .entry(ns.to_string())
                .or_insert_with(|| {
                    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), ns);
                    futures::FutureExt::shared(futures::FutureExt::boxed(async move {
                        let list = api.list(&ListParams::default()).await.ok()?;
                        let found = list.items.into_iter().map(|hpa| {
                            let target = &hpa.spec.scale_target_ref;
                            (target.kind.clone(), target.name.clone(), hpa.name_any())
                        });
                        Some(Arc::new(found.collect()))
                    }))
                })
                .clone()
        };
        let answer = shared.clone().await;
        // The first waiter to finish retires the list, so the next request lists again.
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if in_flight.get(ns).is_some_and(|f| f.ptr_eq(&shared)) {
            in_flight.remove(ns);
        }
        answer
    }
}

/// An HPA whose `scaleTargetRef` names the target, as the `ConflictingAutoscaler` condition reports it.
async fn conflicting_autoscaler(ctx: &Context, ns: &str, kind: ControllerKind, name: &str) -> Option<String> {
    // An API server without autoscaling/v2 (or without the right to list it) has no autoscaler we can see.
    let hpas = ctx.autoscalers.get(&ctx.client, ns).await?;
    hpas.iter().find(|(k, n, _)| k == kind.as_str() && n == name).map(|(_, _, hpa)| hpa.clone())
}

/// Aborts the task when dropped: a stopped controller (lost lease, shutdown) cancels its reconciles as it
/// did when they ran inline.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
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
    let mut task = AbortOnDrop(tokio::spawn(work));
    match (&mut task.0).await {
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
    let not_found = || super::run::not_found(target.provider, &scope, &target.name, kind).to_string();

    match plan::plan(&desired, obs) {
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
                        Some(conflicting_autoscaler(&ctx, &scope, resolved.kind, &target.name).await)
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
        patch["metadata"] = json!({ "resourceVersion": rv });
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
    let stop = futures::future::FutureExt::shared(Box::pin(stop));
    let runs = apis.into_iter().map(|api| {
        let stop = stop.clone();
        let ctx = Arc::clone(&ctx);
        async move {
            Controller::new(api, crate::provider::k8s::watch::watch_config())
                .graceful_shutdown_on(stop)
                .run(reconcile_spawned, error_policy, ctx)
                .for_each(|result| async move {
                    if let Err(error) = result {
                        tracing::debug!(%error, "scalerequest controller event");
                    }
                })
                .await;
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
        // aborted at once (`AbortOnDrop`), and their queued writes are fenced off (see `queue`).
        tokio::select! {
            _ = &mut shutdown => return,
            _ = lost => {}
            _ = run(Arc::clone(&ctx), namespaces.clone(), futures::future::pending::<()>()) => {}
        }
        tracing::info!("no longer leading: the ScaleRequest controller stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn applied_then_ready_keeps_transition_times_honest() {
        let applied = Transition::Applied {
            kind: ControllerKind::Deployment,
            name: "web".into(),
            previous: 3,
            applied: 5,
        };
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
        let applied = Transition::Applied {
            kind: ControllerKind::Deployment,
            name: "web".into(),
            previous: 3,
            applied: 5,
        };
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
        let applied = Transition::Applied {
            kind: ControllerKind::Deployment,
            name: "web".into(),
            previous: 3,
            applied: 5,
        };
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
}
