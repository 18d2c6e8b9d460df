//! The seam between the REST layer and the infrastructures.
//!
//! `api/` sees only [`Provider`] and the shapes of `cache::model`: it never holds a kube `Client` or an AWS
//! client. Reads go to the provider's in-memory cache ([`ReadModel`]) and never to the network; writes go
//! through [`Writes`], whose scale goes through the reconciler. Callers' tokens and permissions are checked
//! through [`Reviewer`] (Kubernetes TokenReview / SubjectAccessReview), so that api/ holds no client for
//! that either.

pub mod ecs;
pub mod k8s;
mod reads;
pub mod scale;

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde::Serialize;

use crate::cache::ReadError;

pub use crate::cache::model::{Capabilities, ControllerKind, Fragment, Health, LabelFilter};

/// Errors of the provider boundary. `api/` turns each variant into one problem type.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("the {provider} cache has not finished its first sync")]
    NotReady { provider: &'static str, retry_after_secs: u64 },
    #[error("{scope_kind} {scope} is not watched by machinist")]
    ScopeNotWatched { scope_kind: &'static str, scope: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Invalid { message: String, errors: Vec<FieldError> },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    CapabilityNotSupported(String),
    #[error("{detail}")]
    Timeout { detail: String, retry_after_secs: u64 },
    #[error("{0}")]
    Upstream(String),
    /// The provider refused machinist's own credentials (Kubernetes 401/403, AWS AccessDenied): retrying
    /// does not help, an operator must grant the permission the message names.
    #[error("{0}")]
    Forbidden(String),
    #[error("{detail}")]
    Throttled { detail: String, retry_after_secs: u64 },
}

/// One invalid field of a request, as served in `validation-failed` problems.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl ProviderError {
    /// A bounded label value for metrics (never the error's text).
    pub fn label(&self) -> &'static str {
        match self {
            ProviderError::NotReady { .. } => "not_ready",
            ProviderError::ScopeNotWatched { .. } => "scope_not_watched",
            ProviderError::NotFound(_) => "not_found",
            ProviderError::Invalid { .. } => "invalid",
            ProviderError::Conflict(_) => "conflict",
            ProviderError::CapabilityNotSupported(_) => "not_supported",
            ProviderError::Timeout { .. } => "timeout",
            ProviderError::Upstream(_) => "upstream",
            ProviderError::Forbidden(_) => "forbidden",
            ProviderError::Throttled { .. } => "throttled",
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let message = message.into();
        let field = field.into();
        ProviderError::Invalid {
            message: format!("{field}: {message}"),
            errors: vec![FieldError { field, message }],
        }
    }
}

pub type Result<T, E = ProviderError> = std::result::Result<T, E>;

impl From<ReadError> for ProviderError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::NotReady { provider, retry_after_secs } => {
                ProviderError::NotReady { provider, retry_after_secs }
            }
            ReadError::ScopeNotWatched { scope_kind, scope } => {
                ProviderError::ScopeNotWatched { scope_kind, scope }
            }
            ReadError::NotFound(message) => ProviderError::NotFound(message),
        }
    }
}

/// Reads answered from memory. Every method is synchronous: nothing here may wait on the network.
pub trait ReadModel: Send + Sync {
    fn machine(&self, scope: &str, id: &str) -> Result<Fragment>;
    fn machines(&self, scope: &str, labels: &LabelFilter) -> Result<Vec<Fragment>>;
    /// Top-level scalable controllers of the scope, each with its machines.
    fn controllers(&self, scope: &str) -> Result<Vec<Fragment>>;
    /// The whole body of the controller list, `{"controllers":[...]}` over [`ReadModel::controllers`]. A
    /// cache overrides it to render once per change and hand out the same bytes until the next.
    fn controller_list(&self, scope: &str) -> Result<bytes::Bytes> {
        let list = self.controllers(scope)?;
        let mut out = Vec::with_capacity(list.iter().map(|f| f.get().len() + 1).sum::<usize>() + 20);
        out.extend_from_slice(b"{\"controllers\":[");
        for (i, f) in list.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(f.get().as_bytes());
        }
        out.extend_from_slice(b"]}");
        Ok(out.into())
    }
    /// The top-level controller owning machine `machine_id` (0 or 1 items).
    fn controller_of_machine(&self, scope: &str, machine_id: &str) -> Result<Vec<Fragment>>;
    /// One controller with its machines; `kind` pins the kind, otherwise the resolution order applies.
    fn controller(&self, scope: &str, name: &str, kind: Option<ControllerKind>) -> Result<Fragment>;
    fn services(&self, scope: &str, labels: &LabelFilter) -> Result<Vec<Fragment>>;
    fn gateways(&self, scope: &str) -> Result<Vec<Fragment>>;
    fn httproute(&self, scope: &str, name: &str) -> Result<Fragment>;

    /// Whether a write may name `scope`: `ScopeNotWatched` outside the configured scopes (`--namespaces`,
    /// the polled ECS clusters). Every write asks this before any API call. It does not wait for the first
    /// sync, nor for the watcher to see a new namespace: Kubernetes refuses a write to one that is absent.
    fn admit_write(&self, scope: &str) -> Result<()>;
}

/// What a write names: a controller in a scope, with an optional kind hint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ControllerTarget {
    pub scope: String,
    pub name: String,
    pub kind: Option<ControllerKind>,
}

/// The manifests `PUT /k8s/...` applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestKind {
    /// A Deployment or a StatefulSet.
    Controller,
    Service,
    Secret,
    HttpRoute,
}

/// Writes. Every one is idempotent and resolves once the provider accepted it, after the cache saw it
/// (read-your-writes).
pub trait Writes: Send + Sync {
    /// Set the replicas of a controller, through the reconciler. Resolves to the served Controller.
    fn scale(&self, target: ControllerTarget, replicas: i32) -> BoxFuture<'_, Result<Fragment>>;
    fn delete_controller(&self, target: ControllerTarget) -> BoxFuture<'_, Result<()>>;
    /// Merge `labels` into the machine's labels; a `None` value removes the key. Resolves to the Machine.
    fn patch_machine_labels(
        &self,
        scope: String,
        id: String,
        labels: BTreeMap<String, Option<String>>,
    ) -> BoxFuture<'_, Result<Fragment>>;
    /// Resolves to whether something was deleted (ECS services are never deleted: `false`).
    fn delete_service(&self, scope: String, name: String) -> BoxFuture<'_, Result<bool>>;
    /// Server-side apply of a manifest; resolves to the applied object (a Secret resolves to `null`).
    fn apply(
        &self,
        scope: String,
        kind: ManifestKind,
        manifest: serde_json::Value,
    ) -> BoxFuture<'_, Result<serde_json::Value>>;
    fn delete_httproute(&self, scope: String, name: String) -> BoxFuture<'_, Result<()>>;
}

/// One infrastructure: its cache, its writes, what it can do and how it is.
pub trait Provider: Send + Sync {
    /// `k8s` or `ecs`: the first path segment of its routes.
    fn name(&self) -> &'static str;
    fn capabilities(&self) -> Capabilities;
    fn health(&self) -> Health;
    fn reads(&self) -> &dyn ReadModel;
    fn writes(&self) -> &dyn Writes;
}

/// What a caller asks to do, in RBAC terms: `verb` on `resource[/subresource]` of API group `group`, in
/// `namespace` (the scope), on object `name`. Empty strings mean "none".
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Access {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
    pub namespace: String,
    pub name: String,
}

impl Access {
    /// get and list read; everything else writes.
    pub fn is_write(&self) -> bool {
        !matches!(self.verb, "get" | "list")
    }

    /// The permission as RBAC names it, for a 403: `update controllers/scale.machinist.dev in namespace a`.
    pub fn permission(&self) -> String {
        let sub = if self.subresource.is_empty() { String::new() } else { format!("/{}", self.subresource) };
        let scope = if self.namespace.is_empty() {
            String::new()
        } else {
            format!(" in namespace {}", self.namespace)
        };
        format!("{} {}{sub}.{}{scope}", self.verb, self.resource, self.group)
    }
}

/// A caller the cluster authenticated: what a SubjectAccessReview needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewedUser {
    pub name: String,
    pub groups: Vec<String>,
}

/// The cluster's authentication and authorization of callers (Kubernetes TokenReview and
/// SubjectAccessReview). Implementations make one API call per method call and cache nothing: the
/// caching, and what a failure means, is api/'s decision.
pub trait Reviewer: Send + Sync {
    /// The user a bearer token belongs to; `None` when the cluster does not authenticate it.
    fn review_token(&self, token: &str) -> BoxFuture<'_, Result<Option<ReviewedUser>>>;
    /// Whether RBAC lets `user` do `access`.
    fn review_access<'a>(&'a self, user: &'a ReviewedUser, access: &'a Access)
    -> BoxFuture<'a, Result<bool>>;
}
