//! Assembles the operator from its configuration: the kube client, the caches and their watchers or
//! pollers, the providers, the reconciler, leader election and the HTTP server; and shuts it all down in
//! order: on the signal, readiness fails and the leader releases its lease at once; the server keeps serving
//! for the shutdown delay, then stops accepting and drains in-flight requests (bounded).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cache::Cache;
use crate::config::OperatorArgs;
use crate::provider::Provider;
use crate::provider::ecs::{EcsConfigError, EcsProvider, EcsSettings};
use crate::provider::k8s::{K8sProvider, client, lease, watch, write};
use crate::reconcile::{controller, run::Reconciler, run::Scalers};

/// How long in-flight requests may take to finish once the listener is closed (after the shutdown delay).
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot reach Kubernetes: {0}")]
    Kube(#[from] client::ClientError),
    #[error("ECS: {0}")]
    Ecs(#[from] EcsConfigError),
    #[error("API edge: {0}")]
    Edge(#[from] crate::api::auth::EdgeError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// What the sandbox passes instead of what `machinist run` infers from its environment.
#[derive(Default)]
pub struct Overrides {
    pub kube_config: Option<kube::Config>,
    pub ecs: Option<EcsSettings>,
    /// Receives the REST address once the server listens.
    pub ready: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
}

/// Run the operator until `shutdown` is cancelled.
pub async fn run_operator(
    args: OperatorArgs,
    overrides: Overrides,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    let Overrides { kube_config, ecs: ecs_settings, ready } = overrides;
    let mut providers: Vec<Arc<dyn Provider>> = Vec::new();
    let mut scalers = Scalers::default();
    let mut background = Vec::new();

    let kube = if args.provider.k8s {
        let config = match kube_config {
            Some(config) => config,
            None => kube::Config::infer().await.map_err(client::ClientError::from)?,
        };
        // kube-client's own retry stays off: watchers back off by themselves and the reconciler owns the
        // write retry budget (STYLE anti-pattern 7). Watches get a client of their own: their responses
        // last minutes, every other call is bounded by --k8s-request-timeout.
        let timeouts = client::Timeouts { request: args.k8s_request_timeout, ..client::Timeouts::default() };
        let client = client::bounded(config.clone(), false, timeouts).map_err(client::ClientError::from)?;
        let watch_client = client::watch_client(config, timeouts).map_err(client::ClientError::from)?;
        let cache = Arc::new(Cache::new_k8s(args.namespaces.clone()));
        let watchers = watch::spawn_watchers(watch_client.clone(), cache.clone(), &args.namespaces);
        let scaler = write::K8sScaler::new(client.clone(), cache.clone(), write::RetryBudget::default());
        scalers.k8s = Some(Arc::new(scaler));
        Some((client, watch_client, cache, watchers))
    } else {
        None
    };

    let ecs = if args.provider.ecs {
        let settings = match ecs_settings {
            Some(settings) => settings,
            None => EcsSettings::from_args(&args.ecs)?,
        };
        let ecs = Arc::new(EcsProvider::start(settings).await?);
        scalers.ecs = Some(ecs.scaler());
        Some(ecs)
    } else {
        None
    };

    // A write's execution ends within --write-timeout whatever its calls do: a hung call must not keep its
    // target's queue slot once its caller has been answered.
    let reconciler = Reconciler::bounded(scalers, args.write_timeout);

    if let Some((client, watch_client, cache, watchers)) = &kube {
        let writes =
            write::K8sWrites::new(client.clone(), cache.clone(), reconciler.clone(), args.write_timeout);
        providers.push(Arc::new(K8sProvider::new(
            cache.clone(),
            writes,
            watchers.health.clone(),
            args.watch_stale_after,
        )));

        let identity = args.identity.clone().unwrap_or_else(default_identity);
        let ctx = controller::Context::with_watch_client(
            client.clone(),
            watch_client.clone(),
            reconciler.clone(),
            &identity,
        );
        if args.leader_election {
            let namespace =
                args.lease_namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
            let (elector, leader) =
                lease::Elector::new(client.clone(), lease::LeaseConfig::new(namespace, identity));
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

    if let Some(ecs) = &ecs {
        ecs.attach_reconciler(reconciler.clone(), args.write_timeout);
        providers.push(ecs.clone());
    }

    let reviewer = kube.as_ref().map(|k| {
        Arc::new(crate::provider::k8s::review::KubeReviewer::new(k.0.clone()))
            as Arc<dyn crate::provider::Reviewer>
    });
    let edge = crate::api::auth::Edge::new(&args.edge.edge_config(), reviewer)?;
    let state = crate::api::ApiState::new(providers, args.write_timeout)
        .with_edge(Arc::new(edge))
        .with_stopping(shutdown.clone());
    let router = crate::api::router(state);
    let listener = tokio::net::TcpListener::bind(args.http_listen)
        .await
        .map_err(|source| AppError::Listen { addr: args.http_listen, source })?;
    let addr = listener.local_addr().map_err(AppError::Serve)?;
    tracing::info!(%addr, "serving the REST API");
    if let Some(ready) = ready {
        let _ = ready.send(addr);
    }

    // The elector and the controller watch `shutdown` themselves: the leader steps down at once, so another
    // replica takes over writes while this one still serves reads during the delay.
    crate::serve::serve(
        listener,
        router,
        crate::serve::Shutdown {
            signal: shutdown.clone(),
            delay: args.shutdown_delay(),
            drain_deadline: DRAIN_DEADLINE,
        },
        args.server.connection_limits(),
    )
    .await;

    // The elector released the lease when the signal came; wait for it if the server was faster.
    for task in background {
        let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
    }
    if let Some((_, _, _, watchers)) = kube {
        watchers.abort();
    }
    Ok(())
}

fn default_identity() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("machinist-{}", std::process::id()))
}

/// Resolves on SIGINT or SIGTERM.
pub use crate::sandbox::cli::wait_for_signal as termination_signal;

/// `machinist sandbox`: the embedded API server with demo workloads, and (unless `--apiserver-only`) the
/// operator pointed at it. Runs until SIGINT/SIGTERM.
pub async fn run_sandbox(args: crate::config::SandboxArgs) -> Result<(), SandboxRunError> {
    let sandbox = crate::sandbox::Sandbox::start(crate::sandbox::SandboxOptions::from(&args)).await?;
    if let Some(path) = &args.reviews {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SandboxRunError::Reviews(format!("{}: {e}", path.display())))?;
        let reviews = serde_yaml::from_str(&text)
            .map_err(|e| SandboxRunError::Reviews(format!("{}: {e}", path.display())))?;
        sandbox.set_reviews(reviews);
    }
    let kubeconfig = sandbox.kubeconfig_yaml();
    // Without --kubeconfig, one is written to a temporary file (removed at exit) so kubectl works at once.
    let kubeconfig_path = match &args.kubeconfig {
        Some(path) => path.clone(),
        None => std::env::temp_dir().join(format!("machinist-sandbox-{}.kubeconfig", std::process::id())),
    };
    sandbox.write_kubeconfig(&kubeconfig_path)?;
    print!("{}", sandbox.banner(Some(&kubeconfig_path)));
    let emulator = if args.ecs {
        let emulator = crate::provider::ecs::emulator::start_demo().await?;
        println!("ECS emulator: {}  (cluster `demo`)", emulator.endpoint());
        Some(emulator)
    } else {
        None
    };

    let shutdown = CancellationToken::new();
    let operator = if args.apiserver_only {
        None
    } else {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::from_yaml(&kubeconfig).map_err(client::ClientError::from)?,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .map_err(client::ClientError::from)?;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut operator_args = args.operator.clone();
        // No load balancer routes to a sandbox: Ctrl-C should not wait for one.
        operator_args.shutdown_delay.get_or_insert(Duration::ZERO);
        let ecs = match &emulator {
            Some(emulator) => {
                operator_args.provider.ecs = true;
                Some(emulator.settings(None, &["demo"], operator_args.ecs.poll_interval))
            }
            None => None,
        };
        let overrides = Overrides { kube_config: Some(config), ecs, ready: Some(ready_tx) };
        let task = tokio::spawn(run_operator(operator_args, overrides, shutdown.clone()));
        match ready_rx.await {
            Ok(addr) => {
                println!("machinist REST API: http://{addr}  (try: curl http://{addr}/k8s/controllers/demo)")
            }
            Err(_) => {
                return task.await.map_err(|_| SandboxRunError::Crashed)?.map_err(SandboxRunError::from);
            }
        }
        Some(task)
    };

    termination_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    let result = match operator {
        Some(task) => task.await.map_err(|_| SandboxRunError::Crashed)?.map_err(SandboxRunError::from),
        None => Ok(()),
    };
    drop(emulator);
    sandbox.shutdown().await;
    if args.kubeconfig.is_none() {
        let _ = std::fs::remove_file(&kubeconfig_path);
    }
    result
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxRunError {
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error(transparent)]
    Operator(#[from] AppError),
    #[error("invalid --reviews file {0}")]
    Reviews(String),
    #[error("cannot start the ECS emulator: {0}")]
    Emulator(#[from] crate::provider::ecs::emulator::EmulatorError),
    #[error("the operator task crashed")]
    Crashed,
}

impl From<client::ClientError> for SandboxRunError {
    fn from(e: client::ClientError) -> Self {
        SandboxRunError::Operator(AppError::Kube(e))
    }
}
