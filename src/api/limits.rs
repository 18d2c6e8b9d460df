//! Rate limits of API.md: GCRA token buckets per caller identity, per client IP and global, separate for
//! reads and writes, and the `X-RateLimit-*` / IETF `RateLimit` headers of a limited response.
//!
//! It owns the bucket arithmetic and the bounded key tables; it must not authenticate (the identity is given)
//! and must not hold a lock across an await. The per-IP and global tiers are taken first ([`RateLimiter::admit`],
//! before authentication), the identity tier once the caller is known ([`Admission::identity`]). Memory is bounded: a table holds at most [`MAX_KEYS`] keys.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue, StatusCode};

use crate::api::problem::{MAX_RETRY_AFTER_SECS, Problem};

/// Keys one per-identity or per-IP table holds before idle keys are dropped.
pub const MAX_KEYS: usize = 50_000;

/// The window of every limit: API.md counts per minute.
const WINDOW: Duration = Duration::from_secs(60);

/// Per-minute limits; `0` disables a tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TierLimits {
    pub identity: u32,
    pub ip: u32,
    pub global: u32,
}

/// Limits for reads (GET, HEAD) and writes (everything else).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub reads: TierLimits,
    pub writes: TierLimits,
    /// How many proxies in front of machinist append to `X-Forwarded-For`; 0 ignores the header.
    pub trusted_proxy_hops: u32,
}

impl Default for RateLimitConfig {
    /// The defaults of API.md.
    fn default() -> Self {
        RateLimitConfig {
            reads: TierLimits { identity: 6000, ip: 12000, global: 60000 },
            writes: TierLimits { identity: 100, ip: 300, global: 1000 },
            trusted_proxy_hops: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Identity,
    Ip,
    Global,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Identity => "identity",
            Tier::Ip => "ip",
            Tier::Global => "global",
        }
    }
}

/// The state of the tightest tier after a request, for the response headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    pub tier: Tier,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
}

/// A refused request: the tier that refused it and when to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub quota: Quota,
    pub retry_after_secs: u64,
}

/// One GCRA bucket table: the theoretical arrival time per key.
struct Buckets {
    limit: u32,
    interval: Duration,
    tats: Mutex<HashMap<String, Instant>>,
}

enum Outcome {
    Allowed(Quota),
    Refused(Refusal),
}

impl Buckets {
    fn new(limit: u32) -> Option<Buckets> {
        (limit > 0).then(|| Buckets { limit, interval: WINDOW / limit, tats: Mutex::new(HashMap::new()) })
    }

    fn take(&self, tier: Tier, key: &str, now: Instant) -> Outcome {
        let mut tats = self.tats.lock().unwrap_or_else(|e| e.into_inner());
        if !tats.contains_key(key) && tats.len() >= MAX_KEYS {
            // A key whose TAT is past is a full bucket: forgetting it changes nothing.
            tats.retain(|_, tat| *tat > now);
            if tats.len() >= MAX_KEYS {
                // Every key is busy: drop all rather than grow; callers get a fresh bucket, never an error.
                tats.clear();
            }
        }
        let tat = tats.get(key).copied().filter(|t| *t > now).unwrap_or(now);
        let new_tat = tat + self.interval;
        let ahead = new_tat - now;
        if ahead > WINDOW {
            let wait = ahead - WINDOW;
            let quota = Quota { tier, limit: self.limit, remaining: 0, reset_secs: ceil_secs(tat - now) };
            return Outcome::Refused(Refusal { quota, retry_after_secs: ceil_secs(wait).max(1) });
        }
        match tats.get_mut(key) {
            Some(t) => *t = new_tat,
            // Only a caller's first request allocates its key.
            None => {
                tats.insert(key.to_string(), new_tat);
            }
        }
        let remaining = ((WINDOW - ahead).as_nanos() / self.interval.as_nanos().max(1)) as u32;
        Outcome::Allowed(Quota { tier, limit: self.limit, remaining, reset_secs: ceil_secs(ahead) })
    }

    /// Gives back a token taken by [`Buckets::take`] when a later tier refused the request.
    fn refund(&self, key: &str) {
        let mut tats = self.tats.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tat) = tats.get_mut(key) {
            *tat = tat.checked_sub(self.interval).unwrap_or(*tat);
        }
    }

    fn len(&self) -> usize {
        self.tats.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The three tiers for one class of request.
struct Class {
    identity: Option<Buckets>,
    ip: Option<Buckets>,
    global: Option<Buckets>,
}

impl Class {
    fn new(limits: TierLimits) -> Class {
        Class {
            identity: Buckets::new(limits.identity),
            ip: Buckets::new(limits.ip),
            global: Buckets::new(limits.global),
        }
    }
}

/// A request that passed the per-IP and global tiers; the identity tier comes once the caller is known.
pub struct Admission<'a> {
    class: &'a Class,
    ip_key: Option<String>,
    /// Whether the IP and the global tier took a token (to give back if a later tier refuses).
    taken: [bool; 2],
    tightest: Option<Quota>,
}

impl Admission<'_> {
    /// The tightest tier so far, for the response headers.
    pub fn quota(&self) -> Option<Quota> {
        self.tightest
    }

    fn note(&mut self, quota: Quota) {
        if self.tightest.is_none_or(|t| quota.remaining < t.remaining) {
            self.tightest = Some(quota);
        }
    }

    fn refund(&self) {
        if let (true, Some(buckets), Some(key)) = (self.taken[0], &self.class.ip, &self.ip_key) {
            buckets.refund(key);
        }
        if let (true, Some(buckets)) = (self.taken[1], &self.class.global) {
            buckets.refund("");
        }
    }

    /// Takes a token from the authenticated caller's bucket. When it refuses, the IP and global tokens are
    /// given back: a refused request takes none.
    pub fn identity(self, identity: &str) -> Result<Option<Quota>, Refusal> {
        self.identity_at(identity, Instant::now())
    }

    fn identity_at(mut self, identity: &str, now: Instant) -> Result<Option<Quota>, Refusal> {
        let Some(buckets) = &self.class.identity else { return Ok(self.tightest) };
        match buckets.take(Tier::Identity, identity, now) {
            Outcome::Allowed(quota) => {
                self.note(quota);
                Ok(self.tightest)
            }
            Outcome::Refused(refusal) => {
                self.refund();
                crate::metrics::metrics().rate_limited.with_label_values(&[Tier::Identity.as_str()]).inc();
                Err(refusal)
            }
        }
    }
}

/// Every bucket of the process.
pub struct RateLimiter {
    config: RateLimitConfig,
    reads: Class,
    writes: Class,
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig) -> RateLimiter {
        RateLimiter { config, reads: Class::new(config.reads), writes: Class::new(config.writes) }
    }

    pub fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    /// Takes one token from each enabled tier that applies. `Ok(None)` when no tier applies. A refused
    /// request consumes nothing, so a refused caller does not push back its own recovery.
    pub fn check(
        &self,
        write: bool,
        identity: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Result<Option<Quota>, Refusal> {
        self.check_at(write, identity, ip, Instant::now())
    }

    fn check_at(
        &self,
        write: bool,
        identity: Option<&str>,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Result<Option<Quota>, Refusal> {
        let admission = self.admit_at(write, ip, now)?;
        match identity {
            Some(identity) => admission.identity_at(identity, now),
            None => Ok(admission.quota()),
        }
    }

    /// The tiers that need no identity (per client IP, global): what runs before authentication, so that a
    /// flood of made-up tokens is limited before any of them costs a review. The tokens taken stay taken
    /// when authentication then fails.
    pub fn admit(&self, write: bool, ip: Option<IpAddr>) -> Result<Admission<'_>, Refusal> {
        self.admit_at(write, ip, Instant::now())
    }

    fn admit_at(&self, write: bool, ip: Option<IpAddr>, now: Instant) -> Result<Admission<'_>, Refusal> {
        let class = if write { &self.writes } else { &self.reads };
        // The key is only spelled out when the per-IP tier is on: this runs for every request.
        let ip_key = class.ip.as_ref().and(ip).map(|ip| ip.to_string());
        let mut admission = Admission { class, ip_key: ip_key.clone(), taken: [false; 2], tightest: None };
        let tiers = [
            (Tier::Ip, class.ip.as_ref(), ip_key.as_deref()),
            (Tier::Global, class.global.as_ref(), Some("")),
        ];
        for (i, (tier, buckets, key)) in tiers.into_iter().enumerate() {
            let (Some(buckets), Some(key)) = (buckets, key) else { continue };
            match buckets.take(tier, key, now) {
                Outcome::Allowed(quota) => {
                    admission.taken[i] = true;
                    admission.note(quota);
                }
                Outcome::Refused(refusal) => {
                    admission.refund();
                    crate::metrics::metrics().rate_limited.with_label_values(&[tier.as_str()]).inc();
                    return Err(refusal);
                }
            }
        }
        Ok(admission)
    }

    /// Keys held by the per-identity and per-IP tables, for the memory bound's test.
    pub fn keys(&self) -> usize {
        [&self.reads, &self.writes]
            .iter()
            .flat_map(|c| [&c.identity, &c.ip])
            .filter_map(|b| b.as_ref().map(Buckets::len))
            .sum()
    }

    /// The client's address: the peer, or with trusted proxies the `X-Forwarded-For` entry that the
    /// outermost trusted proxy saw. Entries further left were written by the client and are not trusted.
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let hops = self.config.trusted_proxy_hops as usize;
        if hops == 0 {
            return peer;
        }
        let forwarded: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        // The nearest proxy appended the last entry; with N trusted proxies the client is N from the right.
        forwarded.len().checked_sub(hops).and_then(|i| forwarded.get(i)).and_then(|s| s.parse().ok()).or(peer)
    }
}

/// Stamps the `X-RateLimit-*` and IETF `RateLimit-Policy` / `RateLimit` headers.
pub fn stamp(headers: &mut HeaderMap, quota: &Quota) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    headers.insert("x-ratelimit-limit", HeaderValue::from(quota.limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(quota.remaining));
    headers.insert("x-ratelimit-reset", HeaderValue::from(now + quota.reset_secs));
    let tier = quota.tier.as_str();
    let policy = format!("\"{tier}\";q={};w={}", quota.limit, WINDOW.as_secs());
    let state = format!("\"{tier}\";r={};t={}", quota.remaining, quota.reset_secs);
    if let Ok(v) = HeaderValue::from_str(&policy) {
        headers.insert("ratelimit-policy", v);
    }
    if let Ok(v) = HeaderValue::from_str(&state) {
        headers.insert("ratelimit", v);
    }
}

/// The 429 problem for a refusal; its headers are stamped by the caller.
pub fn problem(refusal: &Refusal) -> Problem {
    let secs = refusal.retry_after_secs.clamp(1, MAX_RETRY_AFTER_SECS);
    let mut problem = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limit-exceeded",
        format!(
            "{} rate limit of {} requests per minute exceeded; retry after {secs} s",
            refusal.quota.tier.as_str(),
            refusal.quota.limit
        ),
    )
    .with_retry_after(secs);
    problem.retry_after = problem.retry_after_header;
    problem
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(identity: u32, ip: u32, global: u32) -> RateLimiter {
        let tiers = TierLimits { identity, ip, global };
        RateLimiter::new(RateLimitConfig { reads: tiers, writes: tiers, trusted_proxy_hops: 0 })
    }

    #[test]
    fn the_101st_write_within_a_minute_is_refused_and_time_brings_capacity_back() {
        let l = RateLimiter::new(RateLimitConfig::default());
        let now = Instant::now();
        for i in 0..100 {
            let q = l.check_at(true, Some("alice"), None, now).expect("within limit").expect("a tier");
            assert_eq!(q.remaining, 99 - i, "request {i}");
        }
        let refused = l.check_at(true, Some("alice"), None, now).expect_err("101st");
        assert_eq!(refused.quota.tier, Tier::Identity);
        assert_eq!(refused.retry_after_secs, 1, "one token comes back every 0.6 s");
        assert!(l.check_at(true, Some("bob"), None, now).is_ok(), "other identities are unaffected");
        assert!(l.check_at(false, Some("alice"), None, now).is_ok(), "reads have their own buckets");
        let later = now + Duration::from_millis(600);
        assert!(l.check_at(true, Some("alice"), None, later).is_ok());
        let full = now + 2 * WINDOW;
        let q = l.check_at(true, Some("alice"), None, full).unwrap().unwrap();
        assert_eq!(q.remaining, 99, "once drained the bucket is full again");
    }

    #[test]
    fn global_tier_caps_the_sum_and_refusals_consume_nothing() {
        let l = limiter(3, 0, 5);
        let now = Instant::now();
        let ok = (0..10).filter(|i| l.check_at(true, Some(&format!("u{i}")), None, now).is_ok()).count();
        assert_eq!(ok, 5);
        let r = l.check_at(true, Some("u0"), None, now).unwrap_err();
        assert_eq!(r.quota.tier, Tier::Global);
        // u9 was refused by the global tier: its identity bucket must still be full.
        let later = now + Duration::from_secs(60);
        let q = l.check_at(true, Some("u9"), None, later).unwrap().unwrap();
        assert_eq!((q.tier, q.remaining), (Tier::Identity, 2));
    }

    #[test]
    fn zero_disables_a_tier() {
        let l = limiter(0, 0, 0);
        let now = Instant::now();
        for _ in 0..1000 {
            assert_eq!(l.check_at(true, Some("a"), None, now), Ok(None));
        }
    }

    #[test]
    fn key_tables_stay_bounded() {
        let l = limiter(10, 10, 0);
        let now = Instant::now();
        for i in 0..(MAX_KEYS as u32 + 10) {
            let ip = IpAddr::from(i.to_be_bytes());
            let _ = l.check_at(true, Some(&i.to_string()), Some(ip), now);
        }
        assert!(l.keys() <= 2 * MAX_KEYS, "{}", l.keys());
    }

    #[test]
    fn forwarded_for_is_used_only_behind_trusted_proxies() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6, 10.0.0.7, 10.0.0.8"));
        let peer = Some("10.0.0.9".parse().unwrap());
        assert_eq!(limiter(1, 1, 1).client_ip(peer, &headers), peer, "off by default");
        let mut config = RateLimitConfig { trusted_proxy_hops: 1, ..RateLimitConfig::default() };
        assert_eq!(RateLimiter::new(config).client_ip(peer, &headers), "10.0.0.8".parse().ok());
        config.trusted_proxy_hops = 2;
        assert_eq!(RateLimiter::new(config).client_ip(peer, &headers), "10.0.0.7".parse().ok());
        config.trusted_proxy_hops = 9;
        assert_eq!(RateLimiter::new(config).client_ip(peer, &headers), peer, "too few entries: the peer");
    }
}
