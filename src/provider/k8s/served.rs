//! Which optional APIs the cluster serves: the Gateway API kinds (gateways, httproutes) and machinist's own
//! ScaleRequest CRD. Each is looked up by discovery and looked up again every [`REDISCOVER`] while it is
//! missing, so CRDs installed after machinist started are picked up without a restart.
//!
//! It publishes what it found (the provider's capabilities, `/providers`, the `machinist_k8s_api_served`
//! gauge) and logs a warning once when an API is missing, an info line when it appears. It starts no
//! watcher itself (`watch` does, once discovery finds the kind).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use kube::Client;
use kube::api::{ApiResource, GroupVersionKind};

use crate::metrics::metrics;

/// How often a missing API is looked up again.
pub const REDISCOVER: Duration = Duration::from_secs(10);

/// An optional API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    Gateways,
    HttpRoutes,
    ScaleRequests,
}

impl Api {
    pub const ALL: [Api; 3] = [Api::Gateways, Api::HttpRoutes, Api::ScaleRequests];

    /// The `api` label of `machinist_k8s_api_served`.
    pub fn label(self) -> &'static str {
        match self {
            Api::Gateways => "gateways",
            Api::HttpRoutes => "httproutes",
            Api::ScaleRequests => "scalerequests",
        }
    }

    pub fn gvk(self) -> GroupVersionKind {
        match self {
            Api::Gateways => GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "Gateway"),
            Api::HttpRoutes => GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
            Api::ScaleRequests => GroupVersionKind::gvk("machinist.dev", "v1alpha1", "ScaleRequest"),
        }
    }

    fn consequence(self) -> &'static str {
        match self {
            Api::Gateways => {
                "GET /k8s/gateway/gateways answers 501 capability-not-supported until it is installed"
            }
            Api::HttpRoutes => {
                "the /k8s/gateway/httproutes routes answer 501 capability-not-supported until it is installed"
            }
            Api::ScaleRequests => {
                "no ScaleRequest is reconciled until the CRD is installed (machinist crd | kubectl apply -f -)"
            }
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What discovery said about an API so far (0: not asked yet).
const SERVED: u8 = 1;
const MISSING: u8 = 2;

/// The optional APIs as discovery last saw them.
#[derive(Debug, Default)]
pub struct ServedApis {
    state: [AtomicU8; 3],
    warned: [AtomicBool; 3],
}

impl ServedApis {
    /// Served as far as machinist knows: true until discovery says otherwise (a cluster without an API is the
    /// exception, and a route answering 501 during the first second would be wrong far more often).
    pub fn served(&self, api: Api) -> bool {
        self.state[api.index()].load(Ordering::Relaxed) != MISSING
    }

    /// Record what discovery found; warn once when missing, say so when it appears.
    pub fn set(&self, api: Api, served: bool) {
        let new = if served { SERVED } else { MISSING };
        let old = self.state[api.index()].swap(new, Ordering::Relaxed);
        metrics().api_served.with_label_values(&[api.label()]).set(i64::from(served));
        if !served && !self.warned[api.index()].swap(true, Ordering::Relaxed) {
            let gvk = api.gvk();
            tracing::warn!(
                api = api.label(),
                group = %gvk.group,
                kind = %gvk.kind,
                "{}/{} {} is not served by this cluster: {}; looking again every {}s",
                gvk.group,
                gvk.version,
                gvk.kind,
                api.consequence(),
                REDISCOVER.as_secs()
            );
        }
        if served && old == MISSING {
            tracing::info!(api = api.label(), "{} is served now: picked up", api.gvk().kind);
        }
    }
}

/// One discovery lookup: `Ok(Some)` when served, `Ok(None)` when the cluster says it is not, `Err` when the
/// cluster could not be asked (try again later, state unchanged).
pub async fn discover(client: &Client, api: Api) -> Result<Option<ApiResource>, kube::Error> {
    match kube::discovery::pinned_kind(client, &api.gvk()).await {
        Ok((ar, _caps)) => Ok(Some(ar)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(kube::Error::Discovery(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_until_discovery_says_otherwise_and_the_gauge_follows() {
        let apis = ServedApis::default();
        assert!(Api::ALL.iter().all(|a| apis.served(*a)));
        apis.set(Api::HttpRoutes, false);
        assert!(!apis.served(Api::HttpRoutes));
        assert!(apis.served(Api::Gateways));
        let gauge = metrics().api_served.with_label_values(&["httproutes"]);
        assert_eq!(gauge.get(), 0);
        apis.set(Api::HttpRoutes, true);
        assert!(apis.served(Api::HttpRoutes));
        assert_eq!(gauge.get(), 1);
    }
}
