//! The API edge: who is calling (`none`, `static` bearer tokens, `kubernetes` TokenReview), whether they may
//! (rights, or SubjectAccessReview on the target resource and verb), and the rate limits, in one middleware.
//!
//! It must never log, echo or store a token: tokens are hashed (SHA-256) as soon as they are read, caches are
//! keyed by the hash, and problems name the identity and the missing permission only.

mod kube_review;
mod tokens;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

pub use kube_review::{KubeAuth, ReviewCounts};
pub use tokens::{StaticTokens, TokenFileError};

use crate::api::ApiState;
use crate::api::limits::{self, RateLimitConfig, RateLimiter};
use crate::api::problem::Problem;

/// The longest Authorization header considered; longer ones are refused before hashing.
pub const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;

/// How callers are authenticated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// No token; every caller may read and write (restrict callers with a NetworkPolicy).
    #[default]
    None,
    /// Bearer tokens from a file of SHA-256 hashes, each with an identity and read/write rights.
    Static,
    /// TokenReview for the identity and SubjectAccessReview for each verb and resource.
    Kubernetes,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::None => "none",
            AuthMode::Static => "static",
            AuthMode::Kubernetes => "kubernetes",
        }
    }
}

/// An authenticated caller, put in the response extensions for the access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity(pub String);

/// What a request does, in RBAC terms: `verb` on `resource` in `namespace` (the scope), API group
/// `machinist.dev` for k8s and `ecs.machinist.dev` for ECS.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Access {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

impl Access {
    /// The request's access, from its method and path; `None` for paths that are no API route.
    pub fn of(method: &Method, path: &str) -> Option<Access> {
        let path = path.strip_prefix("/api/v1").unwrap_or(path);
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (group, rest) = match segments.as_slice() {
            ["providers"] => ("machinist.dev", &[][..]),
            ["k8s", rest @ ..] => ("machinist.dev", rest),
            ["ecs", rest @ ..] => ("ecs.machinist.dev", rest),
            _ => return None,
        };
        let (resource, namespace, name) = match rest {
            [] => ("providers".to_string(), "", ""),
            ["gateway", kind, scope, name @ ..] => {
                (kind.to_string(), *scope, name.first().copied().unwrap_or(""))
            }
            [kind, scope, name @ ..] => (kind.to_string(), *scope, name.first().copied().unwrap_or("")),
            _ => return None,
        };
        let verb = match *method {
            Method::GET | Method::HEAD if name.is_empty() => "list",
            Method::GET | Method::HEAD => "get",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => "update",
        };
        Some(Access { verb, group, resource, namespace: namespace.to_string(), name: name.to_string() })
    }

    pub fn is_write(&self) -> bool {
        !matches!(self.verb, "get" | "list")
    }

    /// The permission as RBAC names it, for a 403.
    pub fn permission(&self) -> String {
        let scope = if self.namespace.is_empty() {
            String::new()
        } else {
            format!(" in namespace {}", self.namespace)
        };
        format!("{} {}.{}{scope}", self.verb, self.resource, self.group)
    }
}

/// The settings of [`Edge`].
#[derive(Clone, Debug, Default)]
pub struct EdgeConfig {
    pub mode: AuthMode,
    pub tokens_file: Option<PathBuf>,
    pub limits: RateLimitConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("auth mode static needs a tokens file (--auth-tokens-file)")]
    NoTokensFile,
    #[error("auth mode kubernetes needs the k8s provider's client")]
    NoKubeClient,
    #[error(transparent)]
    Tokens(#[from] TokenFileError),
}

enum Authenticator {
    None,
    Static(StaticTokens),
    Kubernetes(Box<KubeAuth>),
}

/// Authentication, authorization and rate limits: what every API route goes through.
pub struct Edge {
    auth: Authenticator,
    limiter: RateLimiter,
}

impl Default for Edge {
    fn default() -> Self {
        Edge { auth: Authenticator::None, limiter: RateLimiter::new(RateLimitConfig::default()) }
    }
}

impl Edge {
    /// Builds the edge; `kube` is needed in `kubernetes` mode only.
    pub fn new(config: &EdgeConfig, kube: Option<kube::Client>) -> Result<Edge, EdgeError> {
        let auth = match config.mode {
            AuthMode::None => Authenticator::None,
            AuthMode::Static => {
                let file = config.tokens_file.clone().ok_or(EdgeError::NoTokensFile)?;
                Authenticator::Static(StaticTokens::load(file)?)
            }
            AuthMode::Kubernetes => {
                Authenticator::Kubernetes(Box::new(KubeAuth::new(kube.ok_or(EdgeError::NoKubeClient)?)))
            }
        };
        Ok(Edge { auth, limiter: RateLimiter::new(config.limits) })
    }

    pub fn mode(&self) -> AuthMode {
        match self.auth {
            Authenticator::None => AuthMode::None,
            Authenticator::Static(_) => AuthMode::Static,
            Authenticator::Kubernetes(_) => AuthMode::Kubernetes,
        }
    }

    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// The caller's identity; `Ok(None)` in `none` mode.
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Identity>, Problem> {
        if matches!(self.auth, Authenticator::None) {
            return Ok(None);
        }
        let (token, hash) = bearer(headers)?;
        let identity = match &self.auth {
            Authenticator::None => None,
            Authenticator::Static(tokens) => tokens.identity(&hash),
            Authenticator::Kubernetes(kube) => kube.identity(token, &hash).await?,
        };
        identity.map(|i| Some(Identity(i))).ok_or_else(|| unauthorized("invalid or expired token"))
    }

    async fn authorize(&self, identity: Option<&Identity>, access: &Access) -> Result<(), Problem> {
        let allowed = match (&self.auth, identity) {
            (Authenticator::None, _) => true,
            (_, None) => false,
            (Authenticator::Static(tokens), Some(identity)) => tokens.allows(&identity.0, access),
            (Authenticator::Kubernetes(kube), Some(identity)) => kube.allows(&identity.0, access).await?,
        };
        if allowed {
            Ok(())
        } else {
            let who = identity.map(|i| i.0.as_str()).unwrap_or("anonymous");
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("{who} may not {}: missing permission", access.permission()),
            ))
        }
    }
}

fn unauthorized(detail: &str) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
}

/// The bearer token and its SHA-256, or the 401 for a missing or malformed Authorization header. The token
/// itself goes only to a TokenReview.
fn bearer(headers: &HeaderMap) -> Result<(&str, [u8; 32]), Problem> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(unauthorized("a single Authorization: Bearer header is required"));
    };
    let bytes = value.as_bytes();
    if bytes.len() > MAX_AUTHORIZATION_BYTES {
        return Err(unauthorized("Authorization header too long"));
    }
    let token = match bytes.split_first_chunk::<7>() {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case(b"bearer ") => token,
        _ => return Err(unauthorized("expected Authorization: Bearer <token>")),
    };
    let token68 = |b: &u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(b);
    if token.is_empty() || !token.iter().all(token68) {
        return Err(unauthorized("malformed bearer token"));
    }
    // token68 bytes are ASCII, so this cannot fail.
    let text = std::str::from_utf8(token).map_err(|_| unauthorized("malformed bearer token"))?;
    Ok((text, Sha256::digest(token).into()))
}

/// SHA-256 of a token, as a tokens file stores it.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares two hashes in time independent of where they differ.
fn hash_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The middleware on every API route (health, metrics and OpenAPI are not behind it): authenticate, rate
/// limit, authorize, then stamp the rate-limit headers on whatever the handler answers.
pub async fn guard(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let edge = state.edge.clone();
    let mode = edge.mode().as_str();
    let decisions = &crate::metrics::metrics().auth_decisions;
    let Some(access) = Access::of(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let identity = match edge.authenticate(request.headers()).await {
        Ok(identity) => identity,
        Err(problem) => {
            decisions.with_label_values(&[mode, "unauthenticated"]).inc();
            return problem.into_response();
        }
    };
    let peer: Option<IpAddr> =
        request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());
    let ip = edge.limiter.client_ip(peer, request.headers());
    let quota = match edge.limiter.check(access.is_write(), identity.as_ref().map(|i| i.0.as_str()), ip) {
        Ok(quota) => quota,
        Err(refusal) => {
            let mut response = limits::problem(&refusal).into_response();
            limits::stamp(response.headers_mut(), &refusal.quota);
            if let Some(identity) = identity {
                response.extensions_mut().insert(identity);
            }
            return response;
        }
    };
    if let Err(problem) = edge.authorize(identity.as_ref(), &access).await {
        let result = if problem.status == 403 { "forbidden" } else { "error" };
        decisions.with_label_values(&[mode, result]).inc();
        let mut response = problem.into_response();
        if let Some(identity) = identity {
            response.extensions_mut().insert(identity);
        }
        return response;
    }
    decisions.with_label_values(&[mode, "allowed"]).inc();
    let mut response = next.run(request).await;
    if let Some(quota) = quota {
        limits::stamp(response.headers_mut(), &quota);
    }
    if let Some(identity) = identity {
        response.extensions_mut().insert(identity);
    }
    response
}

/// Problem for a failed review call: the caller is not at fault, so 503 with a short Retry-After.
fn review_unavailable() -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "auth-unavailable",
        "the Kubernetes API could not review the request",
    )
    .with_retry_after(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
        h
    }

    #[test]
    fn bearer_parsing_refuses_malformed_headers_without_echoing_them() {
        assert!(bearer(&headers(b"Bearer abc.DEF-123_~+/=")).is_ok());
        assert!(bearer(&headers(b"bearer abc")).is_ok(), "the scheme is case-insensitive");
        for bad in [&b"Basic abc"[..], b"Bearer", b"Bearer ", b"Bearer a b", b"Bearer \xff\xfe", b"Bearerabc"]
        {
            let p = bearer(&headers(bad)).unwrap_err();
            assert_eq!(p.status, 401);
            assert!(!p.detail.contains("abc"), "{}", p.detail);
        }
        assert_eq!(bearer(&HeaderMap::new()).unwrap_err().status, 401);
        let huge = format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION_BYTES));
        assert_eq!(bearer(&headers(huge.as_bytes())).unwrap_err().status, 401);
    }

    #[test]
    fn access_maps_routes_to_rbac_verbs_and_resources() {
        let a = Access::of(&Method::POST, "/api/v1/k8s/controllers/team-a/web").unwrap();
        assert_eq!(a.permission(), "update controllers.machinist.dev in namespace team-a");
        assert!(a.is_write());
        let a = Access::of(&Method::GET, "/ecs/machines/prod").unwrap();
        assert_eq!((a.verb, a.group, a.resource.as_str()), ("list", "ecs.machinist.dev", "machines"));
        let a = Access::of(&Method::PATCH, "/k8s/machines/ns/pod-1/labels").unwrap();
        assert_eq!((a.verb, a.name.as_str()), ("patch", "pod-1"));
        let a = Access::of(&Method::PUT, "/k8s/gateway/httproutes/ns").unwrap();
        assert_eq!((a.verb, a.resource.as_str(), a.namespace.as_str()), ("update", "httproutes", "ns"));
        assert_eq!(Access::of(&Method::GET, "/providers").unwrap().verb, "list");
        assert!(Access::of(&Method::GET, "/health/liveness").is_none());
    }

    #[test]
    fn hash_comparison_is_exact() {
        let a = [7u8; 32];
        let mut b = a;
        assert!(hash_eq(&a, &b));
        b[31] ^= 1;
        assert!(!hash_eq(&a, &b));
    }
}
