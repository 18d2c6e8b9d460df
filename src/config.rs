//! Flags and environment into one validated configuration, at start.
//!
//! Every setting has a flag and a `PLT_*` environment fallback. An invalid value fails at start with one
//! clear line (clap's error); nothing else in machinist reads the environment later.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "machinist", version, about = "One REST API over Kubernetes and AWS ECS workloads")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator against a cluster (in-cluster config, or KUBECONFIG outside).
    Run(OperatorArgs),
    /// Run an embedded Kubernetes API server with demo workloads, and the operator against it.
    Sandbox(SandboxArgs),
    /// Print the ScaleRequest CustomResourceDefinition as YAML.
    Crd,
    /// Print the OpenAPI document of the REST API as JSON.
    Openapi,
}

/// Which providers serve routes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Providers {
    pub k8s: bool,
    pub ecs: bool,
}

fn parse_providers(value: &str) -> Result<Providers, String> {
    let mut providers = Providers::default();
    for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match name {
            "k8s" => providers.k8s = true,
            "ecs" => providers.ecs = true,
            other => return Err(format!("unknown provider {other:?}: expected k8s, ecs or k8s,ecs")),
        }
    }
    if !providers.k8s && !providers.ecs {
        return Err("at least one provider is required: k8s, ecs or k8s,ecs".into());
    }
    Ok(providers)
}

fn parse_namespace(value: &str) -> Result<String, String> {
    let name = value.trim();
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !valid {
        return Err(format!("{name:?} is not a valid namespace name (RFC 1123 label)"));
    }
    Ok(name.to_string())
}

fn parse_secs(value: &str) -> Result<Duration, String> {
    let secs: f64 = value.parse().map_err(|_| format!("{value:?} is not a number of seconds"))?;
    if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        return Err(format!("{value:?} must be between 0 and 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The operator: REST server, watchers, reconciler, leader election.
#[derive(Clone, Debug, Args)]
pub struct OperatorArgs {
    /// Address of the REST, health and metrics server.
    #[arg(long = "http-listen", env = "PLT_LISTEN", default_value = "127.0.0.1:3042")]
    pub http_listen: SocketAddr,

    /// Enabled providers: k8s, ecs, or k8s,ecs.
    #[arg(long, env = "PLT_PROVIDER", default_value = "k8s", value_parser = parse_providers)]
    pub provider: Providers,

    /// Watched namespaces, comma separated; empty means all.
    #[arg(long, env = "PLT_K8S_NAMESPACES", value_delimiter = ',', value_parser = parse_namespace)]
    pub namespaces: Vec<String>,

    /// A watcher with no event (bookmarks included) for this long makes /health/readiness fail.
    #[arg(long, env = "PLT_K8S_WATCH_STALE_SECS", default_value = "600", value_parser = parse_secs)]
    pub watch_stale_after: Duration,

    /// How long a REST write waits for the provider to accept it before answering 504.
    #[arg(long, env = "PLT_WRITE_TIMEOUT_SECS", default_value = "10", value_parser = parse_secs)]
    pub write_timeout: Duration,

    /// Run the ScaleRequest controller only while holding the Lease `machinist-leader`.
    #[arg(long, env = "PLT_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Namespace of the leader Lease (defaults to the pod's namespace, else `default`).
    #[arg(long, env = "PLT_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// This replica's identity in the Lease (defaults to the hostname).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    #[command(flatten)]
    pub ecs: EcsArgs,
}

#[derive(Clone, Debug, Args)]
pub struct EcsArgs {
    /// AWS region of the ECS clusters.
    #[arg(long = "ecs-region", env = "PLT_ECS_REGION")]
    pub region: Option<String>,

    /// Polled ECS clusters, comma separated (`PLT_ECS_CLUSTER` is accepted too).
    #[arg(long = "ecs-clusters", env = "PLT_ECS_CLUSTERS", default_value = "")]
    pub clusters: String,

    /// Seconds between two full refreshes of a cluster.
    #[arg(long = "ecs-poll-interval", env = "PLT_ECS_POLL_INTERVAL_SECS", default_value = "5", value_parser = parse_secs)]
    pub poll_interval: Duration,
}

/// `machinist sandbox`.
#[derive(Clone, Debug, Args)]
pub struct SandboxArgs {
    /// Address of the embedded API server: a host (a free port is picked) or host:port.
    #[arg(long, env = "PLT_SANDBOX_LISTEN", default_value = "127.0.0.1")]
    pub listen: String,

    /// Write a kubeconfig for kubectl and kube-rs to this path.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// Serve only the API server, not the operator.
    #[arg(long)]
    pub apiserver_only: bool,

    /// Add N pods spread over deployments in the namespace `load`.
    #[arg(long, default_value_t = 0)]
    pub pods: u32,

    /// Do not seed the demo workloads.
    #[arg(long)]
    pub no_demo: bool,

    /// Milliseconds a new pod stays Pending before it runs.
    #[arg(long, default_value_t = 500)]
    pub pod_start_delay_ms: u64,

    /// Serve /sandbox/stats and /sandbox/faults.
    #[arg(long)]
    pub test_hooks: bool,

    /// Require this bearer token on every request.
    #[arg(long, env = "PLT_SANDBOX_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Persist the cluster's objects to this file and load them at start.
    #[arg(long)]
    pub state: Option<PathBuf>,

    /// Also start the ECS emulator with demo ECS data (needs Python 3).
    #[arg(long)]
    pub ecs: bool,

    #[command(flatten)]
    pub operator: OperatorArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_parse_and_reject() {
        assert_eq!(parse_providers("k8s,ecs").unwrap(), Providers { k8s: true, ecs: true });
        assert_eq!(parse_providers("ecs").unwrap(), Providers { k8s: false, ecs: true });
        assert!(parse_providers("gke").unwrap_err().contains("unknown provider"));
        assert!(parse_providers(" , ").is_err());
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("machinist").chain(args.iter().copied()))
    }

    #[test]
    fn every_subcommand_parses_with_defaults() {
        for args in [&["run"][..], &["sandbox"], &["crd"], &["openapi"]] {
            parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        let Command::Run(run) = parse(&["run"]).unwrap().command else { unreachable!() };
        assert!(run.namespaces.is_empty());
        assert_eq!(run.provider, Providers { k8s: true, ecs: false });
        assert_eq!(run.write_timeout, Duration::from_secs(10));
    }

    #[test]
    fn namespaces_are_a_validated_comma_list() {
        let Command::Run(run) = parse(&["run", "--namespaces", "a,b"]).unwrap().command else {
            unreachable!()
        };
        assert_eq!(run.namespaces, vec!["a", "b"]);
        let error = parse(&["run", "--namespaces", "Bad_NS"]).unwrap_err().to_string();
        assert!(error.contains("not a valid namespace name"), "{error}");
    }

    #[test]
    fn durations_are_bounded() {
        assert_eq!(parse_secs("0.5").unwrap(), Duration::from_millis(500));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("nan").is_err());
    }
}
