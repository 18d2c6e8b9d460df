//! The seam of the replica write path: what a provider's [`Scaler`] offers the reconciler, and the
//! [`WriteQueue`] through which a provider hands its REST scales to the reconciler.
//!
//! Both sides depend on this module and neither on the other's code: `reconcile` calls providers through
//! [`Scaler`]; providers reach the reconciler's keyed queue only through a `dyn WriteQueue` (implemented by
//! `reconcile::run::Reconciler`). It holds shapes and pure helpers; no I/O, no queue, no decision.

use std::time::Duration;

use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Fragment, ProviderError, Result};
use crate::cache::model::ControllerKind;

pub use crate::cache::ResolvedController as Resolved;

// Which provider a target lives in (also the ScaleRequest's `spec.target.provider`: a `///` comment here
// would change the generated CRD).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TargetProvider {
    #[default]
    K8s,
    Ecs,
}

impl TargetProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetProvider::K8s => "k8s",
            TargetProvider::Ecs => "ecs",
        }
    }
}

/// One scalable target. Writers resolve the kind before submitting when they can, so a bare name and its
/// pinned kind share a slot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TargetKey {
    pub provider: TargetProvider,
    pub scope: String,
    pub kind: Option<ControllerKind>,
    pub name: String,
}

impl std::fmt::Display for TargetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = self.kind.map(ControllerKind::as_str).unwrap_or("*");
        write!(f, "{}/{}/{}/{}", self.provider.as_str(), self.scope, kind, self.name)
    }
}

/// A confirmed scale: the provider accepted `applied`.
#[derive(Clone, Debug)]
pub struct Scaled {
    pub kind: ControllerKind,
    pub name: String,
    /// The count before this write (equal to `applied` when nothing had to be written).
    pub previous: i32,
    pub applied: i32,
    /// The served Controller after the write, as the cache holds it (read-your-writes).
    pub controller: Option<Fragment>,
    /// Who asked for `applied` (`a REST write`, `ScaleRequest ns/name`), set by the queue: a caller whose
    /// count was superseded while it waited learns which write won.
    pub by: Option<String>,
}

impl Scaled {
    /// The served Controller, or an error saying the cache lost it.
    pub fn fragment(&self) -> Result<Fragment> {
        self.controller.clone().ok_or_else(|| {
            ProviderError::Upstream(format!(
                "{} {} was scaled but is not in the cache",
                self.kind.as_str(),
                self.name
            ))
        })
    }
}

/// Who asked for a write: a label value of `machinist_reconcile_total{source}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Crd,
    Rest,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Crd => "crd",
            Source::Rest => "rest",
        }
    }
}

/// A provider that can set the replicas of a controller (Kubernetes `/scale`, ECS `UpdateService`).
pub trait Scaler: Send + Sync {
    /// The target as the provider's cache shows it now; `Ok(None)` when it does not exist. Never does I/O.
    fn observe(&self, scope: &str, name: &str, kind: Option<ControllerKind>) -> Result<Option<Resolved>>;

    /// Set the replicas; resolves once the provider accepted the count and the cache shows it. Safe to repeat.
    fn scale(
        &self,
        scope: String,
        name: String,
        kind: Option<ControllerKind>,
        replicas: i32,
    ) -> BoxFuture<'_, Result<Scaled>>;
}

/// The reconciler's keyed queue as a provider sees it: "set N on this target, within this deadline".
/// Past the deadline it answers `Timeout` (504 with a Retry-After) and the write goes on.
pub trait WriteQueue: Send + Sync {
    fn submit<'a>(
        &'a self,
        source: Source,
        deadline: Duration,
        target: &'a TargetKey,
        replicas: i32,
    ) -> BoxFuture<'a, Result<Scaled>>;
}

/// The answer for a target the provider's cache does not hold.
pub fn not_found(
    provider: TargetProvider,
    scope: &str,
    name: &str,
    kind: Option<ControllerKind>,
) -> ProviderError {
    let what = kind.map(ControllerKind::as_str).unwrap_or("controller");
    let scope_kind = match provider {
        TargetProvider::K8s => "namespace",
        TargetProvider::Ecs => "cluster",
    };
    ProviderError::NotFound(format!("{what} {name} not found in {scope_kind} {scope}"))
}

/// Whether a fresh `/scale` read already shows the desired count (then nothing is written).
pub fn needs_write(desired: i32, current: i32) -> bool {
    desired != current
}

/// Exponential backoff with full jitter: attempt 0 → up to `base`, doubling, capped at `max`.
/// `unit` is a uniform draw in [0, 1) passed in so this stays pure.
pub fn backoff(attempt: u32, base: Duration, max: Duration, unit: f64) -> Duration {
    let ceiling = base.saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX)).min(max);
    let unit = if unit.is_finite() { unit.clamp(0.0, 1.0) } else { 0.0 };
    // Never zero: a zero sleep would turn a retry loop into a busy loop against the API server.
    ceiling.mul_f64(unit).max(base / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_only_when_count_differs() {
        assert!(!needs_write(3, 3));
        assert!(needs_write(3, 4));
    }

    #[test]
    fn backoff_grows_is_capped_and_never_zero() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        assert_eq!(backoff(0, base, max, 0.999_999).as_millis(), 99);
        assert_eq!(backoff(3, base, max, 0.5), Duration::from_millis(400));
        assert_eq!(backoff(30, base, max, 0.5), Duration::from_secs(1));
        assert_eq!(backoff(2, base, max, 0.0), Duration::from_millis(25));
        assert_eq!(backoff(2, base, max, f64::NAN), Duration::from_millis(25));
    }
}
