//! Builds the kube `Client`s machinist uses, each with a layer that counts every API request into
//! `machinist_provider_requests_total{provider="k8s",verb,resource}`.
//!
//! It decides the retry policy per client (the write path wants kube-client's default retry off, so the
//! reconciler owns the retry budget) and nothing else: no watches, no writes.

use std::path::Path;

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

/// A client from `config`, counting its requests; `retry` turns kube-client's default retry of 429/503/504
/// on or off.
pub fn client_with(mut config: Config, retry: bool) -> kube::Result<Client> {
    config.default_retry = retry;
    let builder = ClientBuilder::try_from(config)?;
    Ok(builder.with_layer(&MapRequestLayer::new(count_request)).build())
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
