//! Builds the kube `Client`s machinist uses, each with a layer that counts every API request into
//! `machinist_provider_requests_total{provider="k8s",verb,resource}`.
//!
//! It decides the retry policy per client (the write path wants kube-client's default retry off, so the
//! reconciler owns the retry budget) and the bounds of every call: connect, send and response timeouts.
//! Requests get [`Timeouts::request`]; watches get their own client ([`watch_client`]) bounded a little
//! above the server-side `timeoutSeconds` the watchers ask for ([`WATCH_TIMEOUT`]). It makes no calls
//! itself: no watches, no writes.

use std::path::Path;
use std::time::Duration;

use http::{Method, Request};
use kube::client::{Body, ClientBuilder};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tower::util::MapRequestLayer;

use crate::metrics::metrics;

/// Errors building a client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no Kubernetes configuration found (in-cluster or KUBECONFIG): {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("invalid kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("cannot build the Kubernetes client: {0}")]
    Build(#[from] kube::Error),
}

/// The server-side `timeoutSeconds` of every watch (kube's default). kube-runtime drops a watch that stays
/// silent 5 s longer than this and watches again.
pub const WATCH_TIMEOUT: Duration = Duration::from_secs(290);

/// How far above [`WATCH_TIMEOUT`] the watch client's own bound lies: it cuts a LIST, or a watch whose
/// server went silent, that kube-runtime's idle check does not.
const WATCH_MARGIN: Duration = Duration::from_secs(15);

/// The bounds of one API request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the connection.
    pub connect: Duration,
    /// Sending the request, and waiting for each part of the response (counted from the request, not from
    /// when a pooled connection went idle).
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { connect: Duration::from_secs(5), request: Duration::from_secs(10) }
    }
}

impl Timeouts {
    /// The bounds of a watch client: requests as `self`, responses up to [`WATCH_TIMEOUT`] plus a margin.
    pub fn for_watches(self) -> Timeouts {
        Timeouts { request: (WATCH_TIMEOUT + WATCH_MARGIN).max(self.request), ..self }
    }

    /// `config` with these bounds.
    pub fn apply(self, mut config: Config) -> Config {
        config.connect_timeout = Some(self.connect);
        config.read_timeout = Some(self.request);
        config.write_timeout = Some(self.request);
        // Otherwise the time a pooled connection sat idle counts against the next response's bound.
        config.reset_reader_on_write = true;
        config
    }
}

/// A client from `config` with the default [`Timeouts`], counting its requests; `retry` turns
/// kube-client's default retry of 429/503/504 on or off.
pub fn client_with(config: Config, retry: bool) -> kube::Result<Client> {
    bounded(config, retry, Timeouts::default())
}

/// [`client_with`] with these bounds.
pub fn bounded(config: Config, retry: bool, timeouts: Timeouts) -> kube::Result<Client> {
    let mut config = timeouts.apply(config);
    config.default_retry = retry;
    let builder = ClientBuilder::try_from(config)?;
    Ok(builder.with_layer(&MapRequestLayer::new(count_request)).build())
}

/// The client the watchers use: no retry (they back off themselves), bounded by [`Timeouts::for_watches`].
pub fn watch_client(config: Config, timeouts: Timeouts) -> kube::Result<Client> {
    bounded(config, false, timeouts.for_watches())
}

/// In-cluster config, else `KUBECONFIG` / `~/.kube/config`.
pub async fn infer(retry: bool) -> Result<Client, ClientError> {
    Ok(client_with(Config::infer().await?, retry)?)
}

/// A client from one kubeconfig file (its current context).
pub async fn from_kubeconfig_file(path: &Path, retry: bool) -> Result<Client, ClientError> {
    let kubeconfig = Kubeconfig::read_from(path)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(client_with(config, retry)?)
}

fn count_request(req: Request<Body>) -> Request<Body> {
    let (verb, resource) = classify(req.method(), req.uri().path(), req.uri().query().unwrap_or(""));
    metrics().provider_requests.with_label_values(&["k8s", verb, &resource]).inc();
    req
}

/// The audit-log verb and the resource (`pods`, `deployments/scale`, `discovery`) of an API request.
pub fn classify(method: &Method, path: &str, query: &str) -> (&'static str, String) {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest: &[&str] = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => &[],
    };
    let rest = match rest {
        ["namespaces", _ns, r @ ..] if !r.is_empty() => r,
        r => r,
    };
    let Some(resource) = rest.first() else { return (verb_of(method, false, query), "discovery".into()) };
    let named = rest.len() >= 2;
    let resource = match rest.get(2) {
        Some(sub) => format!("{resource}/{sub}"),
        None => (*resource).to_string(),
    };
    (verb_of(method, named, query), resource)
}

fn verb_of(method: &Method, named: bool, query: &str) -> &'static str {
    let watching = query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
    match *method {
        Method::GET if watching => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_named_like_audit_logs() {
        let cases = [
            (Method::GET, "/api/v1/pods", "", ("list", "pods")),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                "watch=true&resourceVersion=1",
                ("watch", "pods"),
            ),
            (Method::GET, "/api/v1/namespaces/default/pods/web-1", "", ("get", "pods")),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/d/deployments/web/scale",
                "",
                ("patch", "deployments/scale"),
            ),
            (
                Method::PUT,
                "/apis/apps/v1/namespaces/d/statefulsets/db/scale",
                "",
                ("update", "statefulsets/scale"),
            ),
            (Method::GET, "/api/v1/namespaces", "", ("list", "namespaces")),
            (Method::GET, "/api/v1/namespaces/default", "", ("get", "namespaces")),
            (Method::DELETE, "/apis/apps/v1/namespaces/d/deployments/web", "", ("delete", "deployments")),
            (Method::POST, "/apis/coordination.k8s.io/v1/namespaces/d/leases", "", ("create", "leases")),
            (Method::GET, "/apis/gateway.networking.k8s.io/v1", "", ("list", "discovery")),
            (Method::GET, "/version", "", ("list", "discovery")),
        ];
        for (method, path, query, (verb, resource)) in cases {
            assert_eq!(
                classify(&method, path, query),
                (verb, resource.to_string()),
                "{method} {path}?{query}"
            );
        }
    }

    /// A server that accepts connections and never answers: the request must end by its bound.
    #[tokio::test]
    async fn a_request_to_a_server_that_never_answers_ends_within_its_bound() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let config = Config::new(format!("http://{addr}").parse().expect("uri"));
        let timeouts = Timeouts { connect: Duration::from_secs(1), request: Duration::from_millis(300) };
        let client = bounded(config, false, timeouts).expect("client");
        let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(client, "x");
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(5), api.get("y")).await;
        assert!(matches!(answer, Ok(Err(_))), "the request failed by itself, not by the test's timeout");
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        held.abort();
    }

    #[test]
    fn every_client_is_bounded_and_watches_a_little_above_their_server_timeout() {
        let config = Timeouts::default().apply(Config::new("http://127.0.0.1:9".parse().expect("uri")));
        assert_eq!(config.connect_timeout, Some(Duration::from_secs(5)));
        assert_eq!(config.read_timeout, Some(Duration::from_secs(10)));
        assert_eq!(config.write_timeout, Some(Duration::from_secs(10)));
        assert!(config.reset_reader_on_write);
        let watch = Timeouts::default().for_watches();
        assert!(watch.request > WATCH_TIMEOUT + Duration::from_secs(5), "above kube-runtime's idle check");
        assert!(watch.request <= WATCH_TIMEOUT + Duration::from_secs(30), "but only a little");
    }

    #[tokio::test]
    async fn client_counts_its_requests() {
        // Nothing listens on port 9 of this host: the request fails, but it was sent through the layer.
        let config = Config::new("http://127.0.0.1:9".parse().expect("uri"));
        let client = client_with(config, false).expect("client");
        let counter = metrics().provider_requests.with_label_values(&["k8s", "list", "configmaps"]);
        let before = counter.get();
        let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(client, "x");
        assert!(api.list(&Default::default()).await.is_err());
        assert_eq!(counter.get(), before + 1);
    }
}
