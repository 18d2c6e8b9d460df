//! Fault injection for `/sandbox/faults`: added latency, errors by status code (429 with Retry-After), and
//! hangs (`hang`), each limited to some users, verbs, resources or names when asked.
//!
//! `close_watches` and `compact` are one-shot actions done by the handler; this module keeps only the
//! standing faults. It must not hold its lock across an await.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::hang::{Call, HangFault, listed, take_hang};
use super::status::StatusError;

/// One kind of injected error.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct ErrorFault {
    /// HTTP status to answer (500, 503, 429, 409...).
    pub code: u16,
    /// Probability per matching request, 0..=1 (default 1).
    pub rate: Option<f64>,
    /// Fire at most this many times.
    pub count: Option<u64>,
    /// Only for these audit verbs (get, list, watch, create, update, patch, delete); empty = all.
    pub verbs: Vec<String>,
    /// Only for these resources (`pods`, `deployments/scale`); empty = all.
    pub resources: Vec<String>,
    /// Only for these users; empty = all.
    pub users: Vec<String>,
    /// Only for objects of these names; empty = all.
    pub names: Vec<String>,
    /// Retry-After seconds (429 defaults to 1).
    pub retry_after_secs: Option<u64>,
}

/// The body of `POST /sandbox/faults`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct FaultsSpec {
    pub latency_ms: u64,
    /// Only these resources (`pods`, `deployments/scale`) get `latency_ms`; empty = all.
    pub latency_resources: Vec<String>,
    pub errors: Vec<ErrorFault>,
    /// Requests that wait (an hour unless `ms` says otherwise) before they are served; setting or clearing
    /// the faults ends every hang.
    pub hangs: Vec<HangFault>,
    /// Shorthand: status code → rate.
    pub error_rate: BTreeMap<u16, f64>,
    /// Retry-After for shorthand 429s.
    pub retry_after_secs: Option<u64>,
    /// End every open watch now.
    pub close_watches: bool,
    /// Drop the watch history now: the next watch from an older resourceVersion gets 410.
    pub compact: bool,
}

/// What to do to one request.
pub struct Plan {
    pub latency: Duration,
    /// Wait this long, or until the faults change (see [`Faults::changed`]).
    pub hang: Option<Duration>,
    pub error: Option<StatusError>,
}

pub struct Faults {
    spec: Mutex<FaultsSpec>,
    /// Bumped whenever the faults are set or cleared: hung requests go on.
    generation: tokio::sync::watch::Sender<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults { spec: Mutex::default(), generation: tokio::sync::watch::channel(0).0 }
    }
}

impl Faults {
    pub fn set(&self, mut spec: FaultsSpec) {
        for (code, rate) in std::mem::take(&mut spec.error_rate) {
            spec.errors.push(ErrorFault {
                code,
                rate: Some(rate),
                retry_after_secs: spec.retry_after_secs,
                ..Default::default()
            });
        }
        spec.close_watches = false;
        spec.compact = false;
        *self.spec.lock().unwrap_or_else(|e| e.into_inner()) = spec;
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn clear(&self) {
        *self.spec.lock().unwrap_or_else(|e| e.into_inner()) = FaultsSpec::default();
        self.generation.send_modify(|g| *g += 1);
    }

    /// Resolves the next time the faults are set or cleared (take it before [`Faults::plan`]).
    pub fn changed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.generation.subscribe();
        async move {
            let _ = rx.changed().await;
        }
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(&*self.spec.lock().unwrap_or_else(|e| e.into_inner()))
            .unwrap_or_else(|_| json!({}))
    }

    /// None when no fault is set (the common case).
    pub fn plan(&self, call: &Call<'_>) -> Option<Plan> {
        let mut spec = self.spec.lock().unwrap_or_else(|e| e.into_inner());
        if spec.latency_ms == 0 && spec.errors.is_empty() && spec.hangs.is_empty() {
            return None;
        }
        let delayed = listed(&spec.latency_resources, call.resource);
        let latency = if delayed { Duration::from_millis(spec.latency_ms) } else { Duration::ZERO };
        let hang = take_hang(&mut spec.hangs, call);
        let mut error = None;
        for f in spec.errors.iter_mut() {
            let applies = listed(&f.verbs, call.verb)
                && listed(&f.resources, call.resource)
                && listed(&f.users, call.user)
                && listed(&f.names, call.name)
                && f.count != Some(0);
            if !applies || fastrand::f64() >= f.rate.unwrap_or(1.0) {
                continue;
            }
            if let Some(c) = f.count.as_mut() {
                *c -= 1;
            }
            error = Some(fault_error(f));
            break;
        }
        spec.errors.retain(|f| f.count != Some(0));
        Some(Plan { latency, hang, error })
    }
}

fn fault_error(f: &ErrorFault) -> StatusError {
    let (reason, msg) = match f.code {
        400 => ("BadRequest", "injected fault"),
        401 => ("Unauthorized", "Unauthorized"),
        403 => ("Forbidden", "injected fault: forbidden"),
        404 => ("NotFound", "injected fault: not found"),
        409 => (
            "Conflict",
            "injected fault: the object has been modified; please apply your changes to the latest version and try again",
        ),
        410 => ("Expired", "injected fault: too old resource version"),
        429 => ("TooManyRequests", "injected fault: too many requests, please try again later"),
        503 => ("ServiceUnavailable", "injected fault: service unavailable"),
        504 => ("Timeout", "injected fault: timeout"),
        _ => ("InternalError", "injected fault: internal error"),
    };
    let mut e = StatusError::new(f.code, reason, msg);
    if f.code == 429 || f.retry_after_secs.is_some() {
        e.retry_after = Some(f.retry_after_secs.unwrap_or(1));
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call<'a>(verb: &'a str, resource: &'a str) -> Call<'a> {
        Call { user: "admin", verb, resource, name: "x" }
    }

    #[test]
    fn counted_faults_fire_then_disappear() {
        let f = Faults::default();
        assert!(f.plan(&call("list", "pods")).is_none());
        f.set(FaultsSpec {
            errors: vec![ErrorFault {
                code: 429,
                count: Some(2),
                verbs: vec!["list".into()],
                ..Default::default()
            }],
            ..Default::default()
        });
        assert!(f.plan(&call("get", "pods")).is_some_and(|p| p.error.is_none()));
        let e = f.plan(&call("list", "pods")).and_then(|p| p.error);
        assert_eq!(
            e.as_ref().map(|e| (e.code, e.reason, e.retry_after)),
            Some((429, "TooManyRequests", Some(1)))
        );
        assert!(f.plan(&call("list", "pods")).is_some_and(|p| p.error.is_some()));
        assert!(f.plan(&call("list", "pods")).is_none());
    }

    #[test]
    fn latency_can_be_limited_to_resources() {
        let f = Faults::default();
        f.set(FaultsSpec {
            latency_ms: 300,
            latency_resources: vec!["deployments/scale".into()],
            ..Default::default()
        });
        assert_eq!(
            f.plan(&call("get", "deployments/scale")).map(|p| p.latency),
            Some(Duration::from_millis(300))
        );
        assert_eq!(f.plan(&call("update", "leases")).map(|p| p.latency), Some(Duration::ZERO));
    }
}
