//! `machinist sandbox`: the embedded API server with demo workloads, the ECS emulator if asked, and the
//! operator pointed at them, until SIGINT/SIGTERM.
//!
//! Part of the binary, not of the operator library. Glue only: it composes the sandbox crate (which knows
//! nothing of the operator) with an [`OperatorBuilder`] and owns no behaviour of either.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use machinist::app::{AppError, OperatorBuilder};
use machinist::config::SandboxArgs;
use machinist::provider::ecs::{ClientOptions, EcsSettings};
use machinist_sandbox::ecs_emulator::{self, EmulatorError};
use machinist_sandbox::{Sandbox, SandboxError, SandboxOptions};

#[derive(Debug, thiserror::Error)]
pub enum SandboxRunError {
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Operator(#[from] AppError),
    #[error("invalid --reviews file {0}")]
    Reviews(String),
    #[error("cannot start the ECS emulator: {0}")]
    Emulator(#[from] EmulatorError),
    #[error("the operator task crashed")]
    Crashed,
}

/// The embedded API server's options from the `machinist sandbox` flags.
pub fn sandbox_options(a: &SandboxArgs) -> SandboxOptions {
    SandboxOptions {
        listen: a.listen.clone(),
        token: a.token.clone(),
        test_hooks: a.test_hooks,
        state_file: a.state.clone(),
        pod_start_delay: Duration::from_millis(a.pod_start_delay_ms),
        demo: !a.no_demo,
        extra_pods: a.pods,
        crds: !a.no_crds,
    }
}

/// Run `machinist sandbox` until SIGINT/SIGTERM.
pub async fn run_sandbox(args: SandboxArgs) -> Result<(), SandboxRunError> {
    let sandbox = Sandbox::start(sandbox_options(&args)).await?;
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
        let emulator = ecs_emulator::start_demo().await?;
        println!("ECS emulator: {}  (cluster `demo`)", emulator.endpoint());
        Some(emulator)
    } else {
        None
    };

    let shutdown = CancellationToken::new();
    let operator = if args.apiserver_only {
        None
    } else {
        let mut operator = OperatorBuilder::new(args.operator.clone()).kubeconfig_yaml(kubeconfig);
        // No load balancer routes to a sandbox: Ctrl-C should not wait for one.
        operator.args_mut().shutdown_delay.get_or_insert(Duration::ZERO);
        if let Some(emulator) = &emulator {
            operator.args_mut().provider.ecs = true;
            let client = ClientOptions::emulator(&emulator.endpoint(), None);
            let poll_interval = operator.args().ecs.poll_interval;
            operator = operator.ecs(EcsSettings::with_client(client, vec!["demo".into()], poll_interval));
        }
        let spawned = operator.spawn(shutdown.clone()).await?;
        let addr = spawned.addr;
        println!("machinist REST API: http://{addr}  (try: curl http://{addr}/k8s/controllers/demo)");
        Some(spawned.task)
    };

    machinist_sandbox::signal::wait_for_signal().await;
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
