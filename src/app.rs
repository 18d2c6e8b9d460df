//! Assembles the operator from its configuration: the kube client, the caches and their watchers or
//! pollers, the providers, the reconciler, leader election and the HTTP server; and shuts it all down in
//! order (stop accepting, drain in-flight requests, release the lease).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cache::Cache;
use crate::config::OperatorArgs;
use crate::provider::Provider;
use crate::provider::k8s::{K8sProvider, client, lease, watch, write};
use crate::reconcile::{controller, run::Reconciler, run::Scalers};

/// How long in-flight requests may take to finish after a shutdown signal.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot reach Kubernetes: {0}")]
    Kube(#[from] client::ClientError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// Run the operator until `shutdown` is cancelled. `kube_config` overrides inference (the sandbox passes
/// its own); `ready` receives the REST address once the server listens.
pub async fn run_operator(
    args: OperatorArgs,
    kube_config: Option<kube::Config>,
    shutdown: CancellationToken,
    ready: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
) -> Result<(), AppError> {
    let mut providers: Vec<Arc<dyn Provider>> = Vec::new();
    let mut scalers = Scalers::default();
    let mut background = Vec::new();

    let kube = if args.provider.k8s {
        let config = match kube_config {
            Some(config) => config,
            None => kube::Config::infer().await.map_err(client::ClientError::from)?,
        };
        // kube-client's own retry stays off: watchers back off by themselves and the reconciler owns the
        // write retry budget (STYLE anti-pattern 7).
        let client = client::client_with(config, false).map_err(client::ClientError::from)?;
        let cache = Arc::new(Cache::new_k8s(args.namespaces.clone()));
        let watchers = watch::spawn_watchers(client.clone(), cache.clone(), &args.namespaces);
        let scaler = write::K8sScaler::new(client.clone(), cache.clone(), write::RetryBudget::default());
        scalers.k8s = Some(Arc::new(scaler));
        Some((client, cache, watchers))
    } else {
        None
    };

    let reconciler = Reconciler::new(scalers);

    if let Some((client, cache, watchers)) = &kube {
        let writes = write::K8sWrites::new(client.clone(), cache.clone(), reconciler.clone(), args.write_timeout);
        providers.push(Arc::new(K8sProvider::new(
            cache.clone(),
            writes,
            watchers.health.clone(),
            args.watch_stale_after,
        )));

        let identity = args.identity.clone().unwrap_or_else(default_identity);
        let ctx = controller::Context::new(client.clone(), reconciler.clone(), &identity);
        if args.leader_election {
            let namespace =
                args.lease_namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
            let (elector, leader) = lease::Elector::new(client.clone(), lease::LeaseConfig::new(namespace, identity));
            background.push(tokio::spawn(elector.run(shutdown.clone().cancelled_owned())));
            background.push(tokio::spawn(controller::run_while_leader(
                ctx,
                args.namespaces.clone(),
                leader,
                shutdown.clone().cancelled_owned(),
            )));
        } else {
            crate::metrics::metrics().leader.set(1);
            background.push(tokio::spawn(controller::run(
                ctx,
                args.namespaces.clone(),
                shutdown.clone().cancelled_owned(),
            )));
        }
    }

    let router = crate::api::router(crate::api::ApiState::new(providers, args.write_timeout));
    let listener = tokio::net::TcpListener::bind(args.http_listen)
        .await
        .map_err(|source| AppError::Listen { addr: args.http_listen, source })?;
    let addr = listener.local_addr().map_err(AppError::Serve)?;
    tracing::info!(%addr, "serving the REST API");
    if let Some(ready) = ready {
        let _ = ready.send(addr);
    }

    let drain = shutdown.clone();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move { drain.cancelled().await });
    let served = tokio::select! {
        served = server => served.map_err(AppError::Serve),
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(DRAIN_DEADLINE).await;
        } => {
            tracing::warn!("in-flight requests did not finish within {DRAIN_DEADLINE:?}; closing them");
            Ok(())
        }
    };

    // The elector releases the lease when it sees the cancellation; give it a moment to do so.
    for task in background {
        let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
    }
    if let Some((_, _, watchers)) = kube {
        watchers.abort();
    }
    served
}

fn default_identity() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("machinist-{}", std::process::id()))
}

/// Resolves on SIGINT or SIGTERM.
pub async fn termination_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
