//! `kubernetes` mode: TokenReview for the identity, SubjectAccessReview for each (verb, resource), so that
//! Kubernetes RBAC decides. Results are cached (token 1 min, allow 5 min, deny 30 s) in bounded tables.
//!
//! Caches are keyed by the token's SHA-256, never the token. A review that fails (API server down) is not
//! cached and answers 503: it must never be taken for a deny or an allow.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};

use super::{Access, review_unavailable};
use crate::api::problem::Problem;

pub const TOKEN_TTL: Duration = Duration::from_secs(60);
pub const ALLOW_TTL: Duration = Duration::from_secs(300);
pub const DENY_TTL: Duration = Duration::from_secs(30);
/// Entries one cache holds before expired ones are dropped (and, if all are live, all of them).
pub const MAX_ENTRIES: usize = 10_000;

/// A bounded map whose entries expire.
struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    fn new() -> Self {
        TtlCache { entries: Mutex::new(HashMap::new()) }
    }

    fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).filter(|(_, until)| *until > Instant::now()).map(|(v, _)| v.clone())
    }

    fn insert(&self, key: K, value: V, ttl: Duration) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (value, now + ttl));
    }
}

/// What a cache miss is about: one token, or one user's access.
#[derive(Clone, PartialEq, Eq, Hash)]
enum MissKey {
    Token([u8; 32]),
    Decision(String, Access),
}

/// One review in flight per key: a burst with one new token costs one review, not one per request, while
/// misses for other tokens or accesses go ahead (a slow review delays only those waiting for its answer).
#[derive(Default)]
struct Flights {
    locks: Mutex<HashMap<MissKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while a review for its key runs; leaving drops the key's lock when nobody else waits on it.
struct Flight<'a> {
    flights: &'a Flights,
    key: MissKey,
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Flights {
    async fn enter(&self, key: MissKey) -> Flight<'_> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(key.clone()).or_default().clone()
        };
        Flight { flights: self, key, held: Some(lock.lock_owned().await) }
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let Some(held) = self.held.take() else { return };
        let lock = tokio::sync::OwnedMutexGuard::mutex(&held).clone();
        drop(held);
        let mut locks = self.flights.locks.lock().unwrap_or_else(|e| e.into_inner());
        // The map's reference and ours: no other task waits for this key.
        if Arc::strong_count(&lock) == 2 {
            locks.remove(&self.key);
        }
    }
}

/// A reviewed user: name and groups, both needed by a SubjectAccessReview.
#[derive(Clone)]
struct User {
    name: String,
    groups: Vec<String>,
}

/// How many reviews reached the API server (cache misses), for tests and benchmarks.
#[derive(Debug, Default)]
pub struct ReviewCounts {
    pub token_reviews: AtomicU64,
    pub access_reviews: AtomicU64,
}

pub struct KubeAuth {
    client: kube::Client,
    /// `None` caches an unauthenticated token (for the token TTL as well).
    tokens: TtlCache<[u8; 32], Option<User>>,
    groups: TtlCache<String, Vec<String>>,
    decisions: TtlCache<(String, Access), bool>,
    flights: Flights,
    pub counts: ReviewCounts,
}

impl KubeAuth {
    pub fn new(client: kube::Client) -> KubeAuth {
        KubeAuth {
            client,
            tokens: TtlCache::new(),
            groups: TtlCache::new(),
            decisions: TtlCache::new(),
            flights: Flights::default(),
            counts: ReviewCounts::default(),
        }
    }

    /// The username of the token, `None` when the API server does not authenticate it.
    pub async fn identity(&self, token: &str, hash: &[u8; 32]) -> Result<Option<String>, Problem> {
        if let Some(user) = self.tokens.get(hash) {
            return Ok(user.map(|u| u.name));
        }
        let _one = self.flights.enter(MissKey::Token(*hash)).await;
        if let Some(user) = self.tokens.get(hash) {
            return Ok(user.map(|u| u.name));
        }
        self.counts.token_reviews.fetch_add(1, Ordering::Relaxed);
        let review = TokenReview {
            spec: TokenReviewSpec { token: token.to_string(), ..Default::default() },
            ..Default::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|error| {
                tracing::warn!(%error, "TokenReview failed");
                review_unavailable()
            })?;
        let user =
            reviewed.status.filter(|s| s.authenticated == Some(true)).and_then(|s| s.user).and_then(|u| {
                Some(User {
                    name: u.username.filter(|n| !n.is_empty())?,
                    groups: u.groups.unwrap_or_default(),
                })
            });
        if let Some(user) = &user {
            self.groups.insert(user.name.clone(), user.groups.clone(), TOKEN_TTL);
        }
        self.tokens.insert(*hash, user.clone(), TOKEN_TTL);
        Ok(user.map(|u| u.name))
    }

    /// Whether RBAC lets `user` do `access`.
    pub async fn allows(&self, user: &str, access: &Access) -> Result<bool, Problem> {
        let key = (user.to_string(), access.clone());
        if let Some(allowed) = self.decisions.get(&key) {
            return Ok(allowed);
        }
        let _one = self.flights.enter(MissKey::Decision(key.0.clone(), key.1.clone())).await;
        if let Some(allowed) = self.decisions.get(&key) {
            return Ok(allowed);
        }
        self.counts.access_reviews.fetch_add(1, Ordering::Relaxed);
        let attributes = ResourceAttributes {
            group: Some(access.group.to_string()),
            resource: Some(access.resource.clone()),
            verb: Some(access.verb.to_string()),
            namespace: Some(access.namespace.clone()).filter(|n| !n.is_empty()),
            name: Some(access.name.clone()).filter(|n| !n.is_empty()),
            ..Default::default()
        };
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.to_string()),
                groups: self.groups.get(&user.to_string()),
                resource_attributes: Some(attributes),
                ..Default::default()
            },
            ..Default::default()
        };
        let reviewed = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|error| {
                tracing::warn!(%error, "SubjectAccessReview failed");
                review_unavailable()
            })?;
        let allowed = reviewed.status.is_some_and(|s| s.allowed);
        self.decisions.insert(key, allowed, if allowed { ALLOW_TTL } else { DENY_TTL });
        Ok(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_cache_expires_and_stays_bounded() {
        let cache: TtlCache<u32, bool> = TtlCache::new();
        cache.insert(1, true, Duration::from_secs(60));
        cache.insert(2, false, Duration::ZERO);
        assert_eq!(cache.get(&1), Some(true));
        assert_eq!(cache.get(&2), None, "expired");
        for i in 0..(MAX_ENTRIES as u32 * 2) {
            cache.insert(i, true, Duration::from_secs(60));
        }
        assert!(cache.entries.lock().unwrap().len() <= MAX_ENTRIES);
    }

    #[tokio::test]
    async fn a_miss_waits_only_for_a_review_of_the_same_key() {
        let flights = Flights::default();
        let slow = flights.enter(MissKey::Token([1; 32])).await;
        let wait = Duration::from_millis(200);
        let other = tokio::time::timeout(wait, flights.enter(MissKey::Token([2; 32]))).await;
        assert!(other.is_ok(), "another token's review must not wait for this one");
        drop(other);
        let same = tokio::time::timeout(wait, flights.enter(MissKey::Token([1; 32]))).await;
        assert!(same.is_err(), "the same token waits for the review in flight");
        drop(slow);
        assert!(flights.locks.lock().unwrap().is_empty(), "finished flights leave nothing behind");
    }
}
