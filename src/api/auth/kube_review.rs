//! `kubernetes` mode: TokenReview for the identity, SubjectAccessReview for each access, so that Kubernetes
//! RBAC decides; the reviews themselves go through `provider::Reviewer`. Answers are cached per entry
//! (token 1 min, unauthenticated token 30 s, allow 5 min, deny 30 s) in bounded tables that evict one entry
//! at a time, so a flood of new tokens never flushes the cached reviews of valid callers.
//!
//! Caches are keyed by the token's SHA-256, never the token, and decisions by token and access (rights belong
//! to the token). A review that fails (API server down) is not cached and answers 503: it must never be taken
//! for a deny or an allow.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::sync::Cache;

use super::review_unavailable;
use crate::api::problem::Problem;
use crate::provider::{Access, ReviewedUser, Reviewer};

pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// How long a token the API server did not authenticate is remembered.
pub const UNAUTHENTICATED_TTL: Duration = Duration::from_secs(30);
pub const ALLOW_TTL: Duration = Duration::from_secs(300);
pub const DENY_TTL: Duration = Duration::from_secs(30);
/// Entries one cache holds; beyond it the least useful entry is evicted (TinyLFU), one at a time.
pub const MAX_ENTRIES: u64 = 10_000;

/// A cached answer and how long it stays.
#[derive(Clone)]
struct Timed<V> {
    value: V,
    ttl: Duration,
}

struct ByTtl;

impl<K, V> moka::Expiry<K, Timed<V>> for ByTtl {
    fn expire_after_create(&self, _key: &K, value: &Timed<V>, _created: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

fn cache<K, V>() -> Cache<K, Timed<V>>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Cache::builder().max_capacity(MAX_ENTRIES).expire_after(ByTtl).build()
}

/// What a cache miss is about: one token, or one token's access.
#[derive(Clone, PartialEq, Eq, Hash)]
enum MissKey {
    Token([u8; 32]),
    Decision([u8; 32], Access),
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

pub struct KubeAuth {
    reviewer: Arc<dyn Reviewer>,
    /// `None` caches an unauthenticated token.
    tokens: Cache<[u8; 32], Timed<Option<ReviewedUser>>>,
    decisions: Cache<([u8; 32], Access), Timed<bool>>,
    flights: Flights,
}

impl KubeAuth {
    pub fn new(reviewer: Arc<dyn Reviewer>) -> KubeAuth {
        KubeAuth { reviewer, tokens: cache(), decisions: cache(), flights: Flights::default() }
    }

    /// The user of the token, `None` when the API server does not authenticate it.
    pub async fn user(&self, token: &str, hash: &[u8; 32]) -> Result<Option<ReviewedUser>, Problem> {
        if let Some(cached) = self.tokens.get(hash) {
            return Ok(cached.value);
        }
        let _one = self.flights.enter(MissKey::Token(*hash)).await;
        if let Some(cached) = self.tokens.get(hash) {
            return Ok(cached.value);
        }
        let user = self.reviewer.review_token(token).await.map_err(|error| {
            tracing::warn!(%error, "TokenReview failed");
            review_unavailable()
        })?;
        let ttl = if user.is_some() { TOKEN_TTL } else { UNAUTHENTICATED_TTL };
        self.tokens.insert(*hash, Timed { value: user.clone(), ttl });
        Ok(user)
    }

    /// Whether RBAC lets the token's `user` do `access`.
    pub async fn allows(
        &self,
        hash: &[u8; 32],
        user: &ReviewedUser,
        access: &Access,
    ) -> Result<bool, Problem> {
        let key = (*hash, access.clone());
        if let Some(cached) = self.decisions.get(&key) {
            return Ok(cached.value);
        }
        let _one = self.flights.enter(MissKey::Decision(*hash, access.clone())).await;
        if let Some(cached) = self.decisions.get(&key) {
            return Ok(cached.value);
        }
        let allowed = self.reviewer.review_access(user, access).await.map_err(|error| {
            tracing::warn!(%error, "SubjectAccessReview failed");
            review_unavailable()
        })?;
        let ttl = if allowed { ALLOW_TTL } else { DENY_TTL };
        self.decisions.insert(key, Timed { value: allowed, ttl });
        Ok(allowed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::FutureExt;
    use futures::future::BoxFuture;

    use super::*;

    /// Authenticates `good-<n>` tokens and counts the reviews it was asked for.
    #[derive(Default)]
    struct Counting {
        tokens: AtomicUsize,
    }

    impl Reviewer for Counting {
        fn review_token(&self, token: &str) -> BoxFuture<'_, crate::provider::Result<Option<ReviewedUser>>> {
            self.tokens.fetch_add(1, Ordering::SeqCst);
            let user = token.starts_with("good").then(|| ReviewedUser { name: token.into(), groups: vec![] });
            async move { Ok(user) }.boxed()
        }

        fn review_access<'a>(
            &'a self,
            _user: &'a ReviewedUser,
            _access: &'a Access,
        ) -> BoxFuture<'a, crate::provider::Result<bool>> {
            async { Ok(true) }.boxed()
        }
    }

    fn hash(token: &str) -> [u8; 32] {
        super::super::token_hash(token)
    }

    #[tokio::test]
    async fn a_flood_of_new_tokens_evicts_entries_one_by_one_and_keeps_valid_callers_cached() {
        let reviewer = Arc::new(Counting::default());
        let auth = KubeAuth::new(reviewer.clone());
        assert!(auth.user("good-1", &hash("good-1")).await.expect("review").is_some());
        for _ in 0..5 {
            auth.user("good-1", &hash("good-1")).await.expect("cached");
        }
        assert_eq!(reviewer.tokens.load(Ordering::SeqCst), 1, "one review per token");
        // Unauthenticated answers are cached too: repeating a bad token costs nothing more.
        assert!(auth.user("bad", &hash("bad")).await.expect("review").is_none());
        assert!(auth.user("bad", &hash("bad")).await.expect("cached").is_none());
        assert_eq!(reviewer.tokens.load(Ordering::SeqCst), 2);
        // Twice the capacity in made-up tokens: the table stays bounded, and the valid caller, used all
        // along, keeps its entry (a clear-all would have dropped it).
        for i in 0..(2 * MAX_ENTRIES) {
            let token = format!("made-up-{i}");
            auth.user(&token, &hash(&token)).await.expect("review");
            if i % 100 == 0 {
                auth.user("good-1", &hash("good-1")).await.expect("cached");
            }
        }
        auth.tokens.run_pending_tasks();
        assert!(auth.tokens.entry_count() <= MAX_ENTRIES, "{}", auth.tokens.entry_count());
        let before = reviewer.tokens.load(Ordering::SeqCst);
        auth.user("good-1", &hash("good-1")).await.expect("cached");
        assert_eq!(reviewer.tokens.load(Ordering::SeqCst), before, "the valid caller's review was evicted");
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
