//! Leader election on the `coordination.k8s.io/v1` Lease `machinist-leader`: 15 s lease, the leader renews
//! every 2 s and steps down when it could not renew for 10 s; a follower takes the lease once it saw no
//! renewal for 15 s, or at once when the holder released it (holder cleared on shutdown).
//!
//! The 10 s are measured by the leader's own clock from the start of its last successful renewal, whatever
//! the calls do meanwhile: a renewal still running at the deadline is abandoned and leadership dropped, so
//! the old leader has stopped 5 s before anyone else may take over.
//!
//! Our own small module rather than `kube-lease-manager` (0.13 is built on kube 5 too): it is ~250 lines,
//! uses the same RV-guarded updates client-go does, and keeps our retry budget and metrics in our hands.
//! Expiry is judged by local observation time (as client-go does), never by comparing clocks across
//! machines. It only elects: what the leader runs is the caller's business.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics::metrics;

pub const LEASE_NAME: &str = "machinist-leader";

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease {name} in {namespace}: kubernetes answered {code}: {message}")]
    Api { namespace: String, name: String, code: u16, message: String },
    #[error("lease {name} in {namespace}: the kubernetes API could not be reached")]
    Transport { namespace: String, name: String },
}

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// The production timings: 15 s lease, 10 s renew deadline, 2 s retry.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> LeaseConfig {
        LeaseConfig {
            namespace: namespace.into(),
            name: LEASE_NAME.to_string(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// The part of a Lease that tells whether its holder is alive: a change of it is a renewal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub holder: Option<String>,
    pub renew_time: Option<String>,
    pub lease_duration_secs: i32,
}

impl Record {
    fn of(lease: &Lease) -> Record {
        let spec = lease.spec.as_ref();
        Record {
            holder: spec.and_then(|s| s.holder_identity.clone()).filter(|h| !h.is_empty()),
            renew_time: spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0.to_string()),
            lease_duration_secs: spec.and_then(|s| s.lease_duration_seconds).unwrap_or(15),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease yet: create it holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it (RV-guarded).
    Acquire,
    /// Someone else holds it and renews it.
    Follow,
}

/// Pure: what to do given the Lease as read now and when we first saw its current record.
pub fn decide(me: &str, record: Option<&Record>, unchanged_since: Option<Instant>, now: Instant) -> Decision {
    let Some(record) = record else { return Decision::Create };
    match &record.holder {
        None => Decision::Acquire,
        Some(holder) if holder == me => Decision::Renew,
        Some(_) => {
            let duration = Duration::from_secs(u64::try_from(record.lease_duration_secs.max(1)).unwrap_or(1));
            match unchanged_since {
                Some(seen) if now.saturating_duration_since(seen) >= duration => Decision::Acquire,
                _ => Decision::Follow,
            }
        }
    }
}

pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    leader: watch::Sender<bool>,
    observed: Option<(Record, Instant)>,
    last_renew: Option<Instant>,
}

impl Elector {
    /// The receiver reads `true` while this replica holds the lease.
    pub fn new(client: Client, config: LeaseConfig) -> (Elector, watch::Receiver<bool>) {
        let (leader, rx) = watch::channel(false);
        let api = Api::namespaced(client, &config.namespace);
        (Elector { api, config, leader, observed: None, last_renew: None }, rx)
    }

    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    fn set_leader(&self, leading: bool) {
        if self.is_leader() != leading {
            if leading {
                tracing::info!(identity = %self.config.identity, lease = %self.config.name, "became leader");
            } else {
                tracing::warn!(identity = %self.config.identity, lease = %self.config.name, "lost leadership");
            }
        }
        metrics().leader.set(i64::from(leading));
        self.leader.send_replace(leading);
    }

    fn err(&self, error: kube::Error) -> LeaseError {
        let (namespace, name) = (self.config.namespace.clone(), self.config.name.clone());
        match error {
            kube::Error::Api(s) => {
                LeaseError::Api { namespace, name, code: s.code, message: s.message.clone() }
            }
            _ => LeaseError::Transport { namespace, name },
        }
    }

    fn spec(&self, acquire: bool, previous: Option<&LeaseSpec>) -> LeaseSpec {
        let now = MicroTime(jiff::Timestamp::now());
        let transitions = previous.and_then(|s| s.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(15)),
            acquire_time: if acquire {
                Some(now.clone())
            } else {
                previous.and_then(|s| s.acquire_time.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if acquire { transitions + 1 } else { transitions }),
            ..Default::default()
        }
    }

    /// One round: read the Lease, then create, renew or take it when due. Returns whether we lead.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, LeaseError> {
        let now = Instant::now();
        let current = self.api.get_opt(&self.config.name).await.map_err(|e| self.err(e))?;
        let record = current.as_ref().map(Record::of);
        if let Some(record) = &record
            && self.observed.as_ref().is_none_or(|(seen, _)| seen != record)
        {
            self.observed = Some((record.clone(), now));
        }
        let since = self.observed.as_ref().map(|(_, at)| *at);
        let decision = decide(&self.config.identity, record.as_ref(), since, now);
        let written = match (decision, current) {
            (Decision::Follow, _) => return Ok(false),
            (Decision::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(self.spec(true, None)),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            (Decision::Renew | Decision::Acquire, Some(mut lease)) => {
                // The GET's resourceVersion stays on the object: a concurrent taker makes this a 409.
                lease.spec = Some(self.spec(decision == Decision::Acquire, lease.spec.as_ref()));
                lease.metadata.managed_fields = None;
                self.api.replace(&self.config.name, &PostParams::default(), &lease).await
            }
            (_, None) => return Ok(false),
        };
        match written {
            Ok(lease) => {
                self.observed = Some((Record::of(&lease), Instant::now()));
                self.last_renew = Some(now);
                Ok(true)
            }
            // Someone else wrote first (create raced, or the RV moved): they lead this round.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Give the lease up so another replica takes it within one retry period.
    pub async fn release(&mut self) -> Result<(), LeaseError> {
        if !self.is_leader() {
            return Ok(());
        }
        self.set_leader(false);
        let Some(mut lease) = self.api.get_opt(&self.config.name).await.map_err(|e| self.err(e))? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        lease.metadata.managed_fields = None;
        match self.api.replace(&self.config.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// When a leader must have renewed by: `renewDeadline` after the start of its last successful renewal.
    fn renew_by(&self) -> Option<Instant> {
        self.last_renew.filter(|_| self.is_leader()).map(|at| at + self.config.renew_deadline)
    }

    /// Stop leading once the renew deadline has passed (by this replica's clock).
    fn step_down_if_stale(&self) {
        if self.renew_by().is_some_and(|by| Instant::now() >= by) {
            tracing::warn!(
                renew_deadline = ?self.config.renew_deadline,
                "no lease renewal succeeded within the renew deadline: stepping down"
            );
            self.set_leader(false);
        }
    }

    /// Elect until `shutdown` resolves, then release. Leadership is published on the watch channel.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            // A leader's round may last until its renew deadline; anyone else's one renew deadline.
            let bound = self.renew_by().unwrap_or_else(|| Instant::now() + self.config.renew_deadline);
            match tokio::time::timeout_at(bound, self.try_acquire_or_renew()).await {
                // `false` while leading: someone else took the lease (ours had expired for them).
                Ok(Ok(leading)) => self.set_leader(leading),
                Ok(Err(error)) => tracing::warn!(%error, "lease round failed"),
                Err(_) => tracing::warn!(
                    lease = %self.config.name,
                    "a lease round did not finish within the renew deadline; abandoned"
                ),
            }
            self.step_down_if_stale();
            // Wake at the renew deadline too: stepping down must not wait for the next round.
            let next = Instant::now() + self.config.retry_period;
            let wake = self.renew_by().map_or(next, |by| by.min(next));
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep_until(wake) => {}
            }
            self.step_down_if_stale();
        }
        match tokio::time::timeout(self.config.renew_deadline, self.release()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not release the lease; another replica takes it when it expires")
            }
            Err(_) => tracing::warn!("releasing the lease hung; another replica takes it when it expires"),
        }
    }
}

#[cfg(test)]
mod decide_tests {
    use super::*;

    fn record(holder: Option<&str>) -> Record {
        Record { holder: holder.map(str::to_string), renew_time: Some("t1".into()), lease_duration_secs: 15 }
    }

    #[tokio::test(start_paused = true)]
    async fn decisions() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(15);
        assert_eq!(decide("a", None, None, t0), Decision::Create);
        assert_eq!(decide("a", Some(&record(Some("a"))), Some(t0), t0), Decision::Renew);
        assert_eq!(decide("a", Some(&record(None)), Some(t0), t0), Decision::Acquire);
        assert_eq!(decide("a", Some(&record(Some("b"))), Some(t0), t0), Decision::Follow);
        assert_eq!(
            decide("a", Some(&record(Some("b"))), Some(t0), t0 + Duration::from_secs(14)),
            Decision::Follow
        );
        assert_eq!(decide("a", Some(&record(Some("b"))), Some(t0), later), Decision::Acquire);
        // A released lease (duration 1 s) that someone else holds again is theirs until 1 s of silence.
        let short = Record { lease_duration_secs: 1, ..record(Some("b")) };
        assert_eq!(decide("a", Some(&short), Some(t0), t0 + Duration::from_secs(1)), Decision::Acquire);
        let nonsense = Record { lease_duration_secs: -5, ..record(Some("b")) };
        assert_eq!(decide("a", Some(&nonsense), Some(t0), t0), Decision::Follow);
    }
}

#[cfg(test)]
mod tests;
