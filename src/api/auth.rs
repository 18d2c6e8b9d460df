//! The API edge: who is calling (`none`, `static` bearer tokens, `kubernetes` TokenReview), whether they may
//! (the token's rights, or SubjectAccessReview on the target resource and verb), and the rate limits, in one
//! middleware that runs after routing on the classified [`Target`].
//!
//! It must never log, echo or store a token: tokens are hashed (SHA-256) as soon as they are read, caches are
//! keyed by the hash, and problems name the identity and the missing permission only.

mod kube_review;
mod tokens;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

pub use kube_review::KubeAuth;
pub use tokens::{Rights, StaticTokens, TokenFileError};

use crate::api::limits::{self, Quota, RateLimitConfig, RateLimiter, Refusal};
use crate::api::middleware::Identity;
use crate::api::problem::Problem;
use crate::api::target::Target;
use crate::provider::{Access, ReviewedUser, Reviewer};

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

/// Who is calling and what decides their rights.
enum Caller {
    /// Auth mode `none`: anyone may do anything.
    Anyone,
    /// A static token, with its own rights.
    Token { identity: Identity, rights: Rights },
    /// A token the cluster authenticated; RBAC decides, per token.
    Reviewed { hash: [u8; 32], user: ReviewedUser },
}

impl Caller {
    fn identity(&self) -> Option<Identity> {
        match self {
            Caller::Anyone => None,
            Caller::Token { identity, .. } => Some(identity.clone()),
            Caller::Reviewed { user, .. } => Some(Identity(user.name.clone())),
        }
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
    #[error("auth mode kubernetes needs the k8s provider (TokenReview and SubjectAccessReview)")]
    NoReviewer,
    #[error(transparent)]
    Tokens(#[from] TokenFileError),
}

enum Authenticator {
    None,
    Static(StaticTokens),
    Kubernetes(Box<KubeAuth>),
}

impl Authenticator {
    fn mode(&self) -> AuthMode {
        match self {
            Authenticator::None => AuthMode::None,
            Authenticator::Static(_) => AuthMode::Static,
            Authenticator::Kubernetes(_) => AuthMode::Kubernetes,
        }
    }
}

/// Authentication, authorization and rate limits: what every API route goes through.
pub struct Edge {
    auth: Authenticator,
    limiter: RateLimiter,
    /// `machinist_auth_decisions_total{mode, result="allowed"}`, looked up once: it counts every request.
    allowed: prometheus::IntCounter,
}

impl Default for Edge {
    fn default() -> Self {
        Edge::with(Authenticator::None, RateLimiter::new(RateLimitConfig::default()))
    }
}

impl Edge {
    /// Builds the edge; `reviewer` is needed in `kubernetes` mode only.
    pub fn new(config: &EdgeConfig, reviewer: Option<Arc<dyn Reviewer>>) -> Result<Edge, EdgeError> {
        let auth = match config.mode {
            AuthMode::None => Authenticator::None,
            AuthMode::Static => {
                let file = config.tokens_file.clone().ok_or(EdgeError::NoTokensFile)?;
                Authenticator::Static(StaticTokens::load(file)?)
            }
            AuthMode::Kubernetes => {
                Authenticator::Kubernetes(Box::new(KubeAuth::new(reviewer.ok_or(EdgeError::NoReviewer)?)))
            }
        };
        Ok(Edge::with(auth, RateLimiter::new(config.limits)))
    }

    fn with(auth: Authenticator, limiter: RateLimiter) -> Edge {
        let mode = auth.mode().as_str();
        let allowed = crate::metrics::metrics().auth_decisions.with_label_values(&[mode, "allowed"]);
        Edge { auth, limiter, allowed }
    }

    pub fn mode(&self) -> AuthMode {
        self.auth.mode()
    }

    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, Problem> {
        let invalid = || unauthorized("invalid or expired token");
        match &self.auth {
            Authenticator::None => Ok(Caller::Anyone),
            Authenticator::Static(tokens) => {
                let (_, hash) = bearer(headers)?;
                let (identity, rights) = tokens.lookup(&hash).ok_or_else(invalid)?;
                Ok(Caller::Token { identity: Identity(identity), rights })
            }
            Authenticator::Kubernetes(kube) => {
                let (token, hash) = bearer(headers)?;
                let user = kube.user(token, &hash).await?.ok_or_else(invalid)?;
                Ok(Caller::Reviewed { hash, user })
            }
        }
    }

    async fn authorize(&self, caller: &Caller, access: &Access) -> Result<(), Problem> {
        let allowed = match (&self.auth, caller) {
            (Authenticator::None, _) => true,
            (_, Caller::Token { rights, .. }) => rights.allow(access),
            (Authenticator::Kubernetes(kube), Caller::Reviewed { hash, user }) => {
                kube.allows(hash, user, access).await?
            }
            _ => false,
        };
        if allowed {
            return Ok(());
        }
        let who = caller.identity().map(|i| i.0).unwrap_or_else(|| "anonymous".into());
        Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{who} may not {}: missing permission", access.permission()),
        ))
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

/// The middleware on every API route, run after routing (health, metrics and OpenAPI are not behind it):
/// the per-IP and global limits, the classification of the matched route and its decoded parameters, then
/// authentication, the per-identity limit and authorization. The handler gets the classified [`Target`] and
/// nothing else: no request reaches a handler unclassified or unauthenticated.
pub async fn guard(State(edge): State<Arc<Edge>>, request: Request, next: Next) -> Response {
    let mode = edge.mode().as_str();
    let decisions = &crate::metrics::metrics().auth_decisions;
    let write = !matches!(*request.method(), Method::GET | Method::HEAD);
    let peer: Option<IpAddr> =
        request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());
    let ip = edge.limiter.client_ip(peer, request.headers());
    let admission = match edge.limiter.admit(write, ip) {
        Ok(admission) => admission,
        Err(refusal) => return refused(&refusal, None),
    };
    let quota = admission.quota();
    let (mut parts, body) = request.into_parts();
    let target = match Target::of_request(&mut parts).await {
        Ok(target) => target,
        Err(problem) => {
            let mut response = problem.into_response();
            let template = parts.extensions.get::<MatchedPath>().map(MatchedPath::as_str);
            if response.status() == StatusCode::METHOD_NOT_ALLOWED
                && let Some(allow) = template.and_then(crate::api::target::allow)
                && let Ok(allow) = HeaderValue::from_str(&allow)
            {
                response.headers_mut().insert(header::ALLOW, allow);
            }
            return finish(response, quota, None);
        }
    };
    let caller = match edge.authenticate(&parts.headers).await {
        Ok(caller) => caller,
        Err(problem) => {
            let result = if problem.status == 401 { "unauthenticated" } else { "error" };
            decisions.with_label_values(&[mode, result]).inc();
            return finish(problem.into_response(), quota, None);
        }
    };
    let identity = caller.identity();
    let quota = match identity.as_ref() {
        Some(identity) => match admission.identity(&identity.0) {
            Ok(quota) => quota,
            Err(refusal) => return refused(&refusal, Some(identity.clone())),
        },
        None => quota,
    };
    if let Err(problem) = edge.authorize(&caller, &target.access).await {
        let result = if problem.status == 403 { "forbidden" } else { "error" };
        decisions.with_label_values(&[mode, result]).inc();
        return finish(problem.into_response(), quota, identity);
    }
    edge.allowed.inc();
    parts.extensions.insert(target.clone());
    let mut response = next.run(Request::from_parts(parts, body)).await;
    // What was authorized, for the access log and for the tests that compare it with what the handler did.
    response.extensions_mut().insert(target);
    finish(response, quota, identity)
}

fn finish(mut response: Response, quota: Option<Quota>, identity: Option<Identity>) -> Response {
    if let Some(quota) = quota {
        limits::stamp(response.headers_mut(), &quota);
    }
    if let Some(identity) = identity {
        response.extensions_mut().insert(identity);
    }
    response
}

fn refused(refusal: &Refusal, identity: Option<Identity>) -> Response {
    finish(limits::problem(refusal).into_response(), Some(refusal.quota), identity)
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
    fn hash_comparison_is_exact() {
        let a = [7u8; 32];
        let mut b = a;
        assert!(hash_eq(&a, &b));
        b[31] ^= 1;
        assert!(!hash_eq(&a, &b));
    }
}
