//! Readiness and scope admission: which sync units (a watcher kind in a namespace, an ECS cluster) have
//! listed once, when reads start being served, and which scopes a read or a write may name.
//!
//! It owns no data of its own (the flags live in the cache's `Inner`) and serves nothing: `reads` asks
//! [`Cache::admit`] before every read, the providers ask [`Cache::admit_write`] before every write.

use super::{Cache, Inner, ReadError, SyncKey};

type Result<T, E = ReadError> = std::result::Result<T, E>;

/// Seconds a `cache-not-ready` answer asks the client to wait.
const NOT_READY_RETRY_SECS: u64 = 2;

impl Cache {
    /// True once every expected watcher (or cluster) has listed once.
    pub fn synced(&self) -> bool {
        self.read().ready
    }

    /// The expected units that have not listed yet (for health reasons), e.g. `pods` or `pods/default`.
    pub fn unsynced(&self) -> Vec<String> {
        let inner = self.read();
        let mut out: Vec<String> = inner
            .expected
            .difference(&inner.synced)
            .map(|(kind, ns)| match ns {
                Some(ns) => format!("{kind}/{ns}"),
                None => kind.to_string(),
            })
            .collect();
        out.sort();
        out
    }

    /// An all-namespaces relist of a kind also refreshes each per-namespace unit of that kind.
    pub(super) fn covers_synced(&self, inner: &Inner, unit: &SyncKey) -> bool {
        unit.1.is_none() && inner.synced.iter().any(|(k, _)| *k == unit.0)
    }

    pub(super) fn mark_synced(&self, inner: &mut Inner, unit: SyncKey) {
        if unit.1.is_none() {
            // A watcher over all namespaces stands for every per-namespace unit of its kind.
            let covered: Vec<SyncKey> =
                inner.expected.iter().filter(|(k, _)| *k == unit.0).cloned().collect();
            inner.synced.extend(covered);
        }
        inner.synced.insert(unit);
        if !inner.ready && inner.expected.iter().all(|u| inner.synced.contains(u)) {
            inner.ready = true;
            tracing::info!(provider = self.provider, "cache synced: serving reads");
        }
    }

    /// Scope admission: configured scopes first, then readiness, then (k8s, all namespaces) existence.
    pub(super) fn admit(&self, inner: &Inner, scope: &str) -> Result<()> {
        let not_watched =
            || ReadError::ScopeNotWatched { scope_kind: self.scope_kind, scope: scope.to_string() };
        if !self.configured.is_empty() && !self.configured.contains(scope) {
            return Err(not_watched());
        }
        if !inner.ready {
            return Err(ReadError::NotReady {
                provider: self.provider,
                retry_after_secs: NOT_READY_RETRY_SECS,
            });
        }
        if self.configured.is_empty() && inner.namespaces_known && !inner.store.namespaces.contains(scope) {
            return Err(not_watched());
        }
        if let Some(message) = inner.missing.get(scope) {
            return Err(ReadError::NotFound(message.clone()));
        }
        Ok(())
    }

    /// A configured scope the provider found not to exist (an ECS cluster that is not there): it counts as
    /// listed, so it holds back neither readiness nor the other scopes' reads, and its reads answer 404
    /// with `message` until a refresh finds it ([`Cache::replace_scope`]).
    pub fn mark_missing(&self, scope: &str, message: String) {
        let mut inner = self.write();
        inner.store.scopes.remove(scope);
        inner.missing.insert(scope.to_string(), message);
        self.mark_synced(&mut inner, (self.provider, Some(scope.to_string())));
    }

    /// Whether a write may name `scope`: `ScopeNotWatched` outside the configured scopes (`--namespaces`,
    /// the polled ECS clusters). It does not wait for the first sync, nor for the watcher to see a new
    /// namespace: Kubernetes refuses a write to one that is absent.
    pub fn admit_write(&self, scope: &str) -> Result<()> {
        if !self.configured.is_empty() && !self.configured.contains(scope) {
            return Err(ReadError::ScopeNotWatched { scope_kind: self.scope_kind, scope: scope.to_string() });
        }
        Ok(())
    }
}
