//! Assembles the operator from its configuration: the kube client, the caches and their watchers or
//! pollers, the providers, the reconciler, leader election and the HTTP server; and shuts it all down in
//! order: on the signal, readiness fails and the leader releases its lease at once; the server keeps serving
//! for the shutdown delay, then stops accepting and drains in-flight requests (bounded).
//!
//! [`OperatorBuilder`] is the one way to start an operator: `machinist run`, `machinist sandbox`, the tests
//! and the benchmarks all go through it. It starts nothing of the sandbox's (that is `sandbox_cmd`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cache::Cache;
use crate::config::OperatorArgs;
use crate::provider::Provider;
use crate::provider::ecs::{EcsConfigError, EcsProvider, EcsSettings};
use crate::provider::k8s::watch::Watchers;
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
    #[error("the operator task crashed")]
    Crashed,
}

/// An operator to start: `machinist run`'s flags, plus what the sandbox, the tests and the benchmarks pass
/// instead of what `machinist run` infers from its environment (the kube config, the ECS settings).
pub struct OperatorBuilder {
    args: OperatorArgs,
    kube_config: Option<KubeConfig>,
    ecs: Option<EcsSettings>,
}

enum KubeConfig {
    Config(Box<kube::Config>),
    Yaml(String),
}

impl OperatorBuilder {
    pub fn new(args: OperatorArgs) -> OperatorBuilder {
        OperatorBuilder { args, kube_config: None, ecs: None }
    }

    /// From the flags of `machinist run` (without the subcommand), environment fallbacks included.
    pub fn from_flags<'a>(flags: impl IntoIterator<Item = &'a str>) -> Result<OperatorBuilder, clap::Error> {
        let argv = ["machinist", "run"].into_iter().chain(flags);
        match <crate::config::Cli as clap::Parser>::try_parse_from(argv)?.command {
            crate::config::Command::Run(args) => Ok(OperatorBuilder::new(args)),
            _ => unreachable!("`machinist run` parses as the run subcommand"),
        }
    }

    pub fn args(&self) -> &OperatorArgs {
        &self.args
    }

    pub fn args_mut(&mut self) -> &mut OperatorArgs {
        &mut self.args
    }

    /// Talk to this cluster instead of the inferred one (in-cluster config or `KUBECONFIG`).
    pub fn kube_config(mut self, config: kube::Config) -> OperatorBuilder {
        self.kube_config = Some(KubeConfig::Config(Box::new(config)));
        self
    }

    /// Talk to the cluster of this kubeconfig (its current context) instead of the inferred one.
    pub fn kubeconfig_yaml(mut self, yaml: impl Into<String>) -> OperatorBuilder {
        self.kube_config = Some(KubeConfig::Yaml(yaml.into()));
        self
    }

    /// Poll ECS with these settings instead of those of the `--ecs-*` flags, when the ECS provider is
    /// enabled (`--provider ecs` or `k8s,ecs`).
    pub fn ecs(mut self, settings: EcsSettings) -> OperatorBuilder {
        self.ecs = Some(settings);
        self
    }

    /// Connect, fill the caches (watchers and pollers start now) and wire the providers to one reconciler;
    /// serve nothing yet.
    pub async fn assemble(self) -> Result<Operator, AppError> {
        let OperatorBuilder { args, kube_config, ecs: ecs_settings } = self;
        crate::metrics::init_series(&crate::metrics::Startup {
            providers: &[("k8s", args.provider.k8s), ("ecs", args.provider.ecs)]
                .iter()
                .filter_map(|(name, on)| on.then_some(*name))
                .collect::<Vec<_>>(),
            auth_mode: args.edge.auth_mode.as_str(),
            watch_stale_after: args.watch_stale_after,
        });
        let mut scalers = Scalers::default();

        let kube = if args.provider.k8s {
            let config = match kube_config {
                Some(KubeConfig::Config(config)) => *config,
                Some(KubeConfig::Yaml(yaml)) => kube::Config::from_custom_kubeconfig(
                    kube::config::Kubeconfig::from_yaml(&yaml).map_err(client::ClientError::from)?,
                    &kube::config::KubeConfigOptions::default(),
                )
                .await
                .map_err(client::ClientError::from)?,
                None => kube::Config::infer().await.map_err(client::ClientError::from)?,
            };
            // kube-client's own retry stays off: watchers back off by themselves and the reconciler owns
            // the write retry budget (STYLE anti-pattern 7). Watches get a client of their own: their
            // responses last minutes, every other call is bounded by --k8s-request-timeout.
            let timeouts =
                client::Timeouts { request: args.k8s_request_timeout, ..client::Timeouts::default() };
            let client =
                client::bounded(config.clone(), false, timeouts).map_err(client::ClientError::from)?;
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
                None => args.ecs.settings()?,
            };
            let ecs = Arc::new(EcsProvider::start(settings).await?);
            scalers.ecs = Some(ecs.scaler());
            Some(ecs)
        } else {
            None
        };

        // A write's execution ends within --write-timeout whatever its calls do: a hung call must not keep
        // its target's queue slot once its caller has been answered.
        let reconciler = Reconciler::bounded(scalers, args.write_timeout);
        let kube = kube.map(|(client, watch_client, cache, watchers)| {
            let writes =
                write::K8sWrites::new(client.clone(), cache.clone(), reconciler.clone(), args.write_timeout);
            let provider = Arc::new(K8sProvider::new(
                cache.clone(),
                writes,
                watchers.health.clone(),
                args.watch_stale_after,
            ));
            KubeParts { client, watch_client, cache, watchers, provider }
        });
        if let Some(ecs) = &ecs {
            ecs.attach_queue(reconciler.clone(), args.write_timeout);
        }
        Ok(Operator { args, kube, ecs, reconciler })
    }

    /// Assemble and serve until `shutdown` is cancelled (`machinist run`).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AppError> {
        self.assemble().await?.serve(shutdown, None).await
    }

    /// Assemble and serve on a task of its own; resolves once the REST API listens.
    pub async fn spawn(self, shutdown: CancellationToken) -> Result<Spawned, AppError> {
        let operator = self.assemble().await?;
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(operator.serve(shutdown, Some(ready_tx)));
        match ready_rx.await {
            Ok(addr) => Ok(Spawned { addr, task }),
            // The server never listened: its task ended with the reason.
            Err(_) => Err(task.await.map_err(|_| AppError::Crashed)?.err().unwrap_or(AppError::Crashed)),
        }
    }
}

/// An operator serving on its own task.
pub struct Spawned {
    /// The address of the REST API.
    pub addr: SocketAddr,
    /// Ends once the operator stopped (after `shutdown` was cancelled), with how it ended.
    pub task: JoinHandle<Result<(), AppError>>,
}

/// The Kubernetes half of an assembled operator.
pub struct KubeParts {
    pub client: kube::Client,
    /// The client of the watches (`client::watch_client`).
    pub watch_client: kube::Client,
    pub cache: Arc<Cache>,
    pub watchers: Watchers,
    pub provider: Arc<K8sProvider>,
}

/// An assembled operator: caches filling, providers wired to the reconciler, nothing served yet.
pub struct Operator {
    args: OperatorArgs,
    pub kube: Option<KubeParts>,
    pub ecs: Option<Arc<EcsProvider>>,
    pub reconciler: Arc<Reconciler>,
}

impl Operator {
    pub fn args(&self) -> &OperatorArgs {
        &self.args
    }

    /// Start leader election and the ScaleRequest controller, serve the REST API (its address goes to
    /// `ready` once it listens) until `shutdown` is cancelled, then stop in order.
    pub async fn serve(
        self,
        shutdown: CancellationToken,
        ready: Option<oneshot::Sender<SocketAddr>>,
    ) -> Result<(), AppError> {
        let Operator { args, kube, ecs, reconciler } = self;
        let mut providers: Vec<Arc<dyn Provider>> = Vec::new();
        let mut background = Vec::new();

        if let Some(k) = &kube {
            providers.push(k.provider.clone());
            let identity = args.identity.clone().unwrap_or_else(default_identity);
            let ctx = controller::Context::with_watch_client(
                k.client.clone(),
                k.watch_client.clone(),
                reconciler.clone(),
                &identity,
            );
            if args.leader_election {
                let namespace =
                    args.lease_namespace.clone().unwrap_or_else(|| k.client.default_namespace().to_string());
                let (elector, leader) =
                    lease::Elector::new(k.client.clone(), lease::LeaseConfig::new(namespace, identity));
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
        if let Some(ecs) = ecs {
            providers.push(ecs);
        }

        let reviewer = kube.as_ref().map(|k| {
            Arc::new(crate::provider::k8s::review::KubeReviewer::new(k.client.clone()))
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

        // The elector and the controller watch `shutdown` themselves: the leader steps down at once, so
        // another replica takes over writes while this one still serves reads during the delay.
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
        if let Some(k) = kube {
            k.watchers.abort();
        }
        Ok(())
    }
}

fn default_identity() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("machinist-{}", std::process::id()))
}

/// Resolves on SIGINT or SIGTERM: what a kubelet (or Ctrl-C) sends to stop the operator.
pub async fn termination_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            // Without a SIGTERM handler, Ctrl-C still works.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
