//! Flags and environment into one validated configuration, at start.
//!
//! Every setting has a flag and a `PLT_*` environment fallback (plus the AWS SDK's region variables). An
//! invalid value fails at start with one clear line (clap's error); nothing else in the operator reads the
//! environment (the AWS SDK's credential chain aside).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::provider::ecs::{EcsConfigError, EcsSettings, parse_clusters};

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

/// A comma list where empty means "all": the chart sets `PLT_K8S_NAMESPACES=""` for a cluster-wide install.
fn parse_namespaces(value: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> =
        value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    for name in &names {
        let valid = name.len() <= 63
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !valid {
            return Err(format!("{name:?} is not a valid namespace name (RFC 1123 label)"));
        }
    }
    Ok(names)
}

fn parse_secs(value: &str) -> Result<Duration, String> {
    let secs: f64 = value.parse().map_err(|_| format!("{value:?} is not a number of seconds"))?;
    if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        return Err(format!("{value:?} must be between 0 and 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Like `parse_secs`, and 0 is allowed.
fn parse_secs_or_zero(value: &str) -> Result<Duration, String> {
    if value.parse::<f64>().is_ok_and(|secs| secs == 0.0) {
        return Ok(Duration::ZERO);
    }
    parse_secs(value)
}

/// `--shutdown-delay` of `machinist run` when not set.
pub const DEFAULT_SHUTDOWN_DELAY: Duration = Duration::from_secs(5);

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
    // The qualified path keeps clap from taking `Vec` as "many values": the whole list is one value.
    #[arg(long, env = "PLT_K8S_NAMESPACES", default_value = "", value_parser = parse_namespaces)]
    pub namespaces: ::std::vec::Vec<String>,

    /// A watcher with no event (bookmarks included) for this long makes /health/readiness fail.
    #[arg(long, env = "PLT_K8S_WATCH_STALE_SECS", default_value = "600", value_parser = parse_secs)]
    pub watch_stale_after: Duration,

    /// How long a REST write waits for the provider to accept it before answering 504; also the bound of
    /// one write's execution, so a hung call frees its target for the next write after this long.
    #[arg(long, env = "PLT_WRITE_TIMEOUT_SECS", default_value = "10", value_parser = parse_secs)]
    pub write_timeout: Duration,

    /// Bound of one Kubernetes API request (connect, send, each wait for the response); watches are bounded
    /// by their server-side timeout (290 s) plus 15 s instead.
    #[arg(long = "k8s-request-timeout", env = "PLT_K8S_REQUEST_TIMEOUT_SECS", default_value = "10", value_parser = parse_secs)]
    pub k8s_request_timeout: Duration,

    /// Run the ScaleRequest controller only while holding the Lease `machinist-leader`.
    #[arg(long, env = "PLT_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Namespace of the leader Lease (defaults to the pod's namespace, else `default`).
    #[arg(long, env = "PLT_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// This replica's identity in the Lease (defaults to the hostname).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Seconds to keep serving after SIGTERM, with /health/readiness failing, before the listener closes
    /// [default: 5; 0 under `machinist sandbox`]. In-flight requests then get 10 s more.
    #[arg(long = "shutdown-delay", env = "PLT_SHUTDOWN_DELAY_SECS", value_parser = parse_secs_or_zero)]
    pub shutdown_delay: Option<Duration>,

    /// Log lines as `text` (coloured only on a terminal without NO_COLOR) or `json` (one object per line).
    #[arg(long = "log-format", env = "PLT_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub ecs: EcsArgs,

    #[command(flatten)]
    pub edge: EdgeArgs,

    #[command(flatten)]
    pub server: ServerArgs,
}

/// What one client connection may hold (`serve::ConnectionLimits`).
#[derive(Clone, Debug, Args)]
pub struct ServerArgs {
    /// Seconds a request head may take to arrive, from the connection opening or its previous response
    /// (so idle keep-alive connections are closed after this long as well).
    #[arg(long = "http-header-timeout", env = "PLT_HTTP_HEADER_TIMEOUT_SECS", default_value = "10", value_parser = parse_secs)]
    pub header_timeout: Duration,

    /// Seconds a connection may move no byte in either direction before it is closed (keep it above
    /// --write-timeout).
    #[arg(long = "http-idle-timeout", env = "PLT_HTTP_IDLE_TIMEOUT_SECS", default_value = "60", value_parser = parse_secs)]
    pub idle_timeout: Duration,

    /// Open client connections at most; more wait in the listen backlog.
    #[arg(long = "http-max-connections", env = "PLT_HTTP_MAX_CONNECTIONS", default_value = "1024",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
}

impl ServerArgs {
    pub fn connection_limits(&self) -> crate::serve::ConnectionLimits {
        crate::serve::ConnectionLimits {
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections as usize,
        }
    }
}

/// The API edge: authentication and rate limits (API.md "Rate limits and auth").
#[derive(Clone, Debug, Args)]
pub struct EdgeArgs {
    /// How callers authenticate: none, static (bearer tokens file) or kubernetes (TokenReview + RBAC).
    #[arg(long = "auth-mode", env = "PLT_AUTH_MODE", value_enum, default_value = "none")]
    pub auth_mode: crate::api::auth::AuthMode,

    /// `static` mode: YAML file of `tokens: [{identity, sha256, rights: [read, write]}]`; reloaded on change.
    #[arg(long = "auth-tokens-file", env = "PLT_AUTH_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,

    /// Writes per minute per caller identity; 0 disables the tier.
    #[arg(
        long = "rate-limit-writes-identity",
        env = "PLT_RATE_LIMIT_WRITES_IDENTITY",
        default_value_t = 100
    )]
    pub writes_identity: u32,

    /// Writes per minute per client IP; 0 disables the tier.
    #[arg(long = "rate-limit-writes-ip", env = "PLT_RATE_LIMIT_WRITES_IP", default_value_t = 300)]
    pub writes_ip: u32,

    /// Writes per minute in total; 0 disables the tier.
    #[arg(long = "rate-limit-writes-global", env = "PLT_RATE_LIMIT_WRITES_GLOBAL", default_value_t = 1000)]
    pub writes_global: u32,

    /// Reads per minute per caller identity; 0 disables the tier.
    #[arg(long = "rate-limit-reads-identity", env = "PLT_RATE_LIMIT_READS_IDENTITY", default_value_t = 6000)]
    pub reads_identity: u32,

    /// Reads per minute per client IP; 0 disables the tier.
    #[arg(long = "rate-limit-reads-ip", env = "PLT_RATE_LIMIT_READS_IP", default_value_t = 12000)]
    pub reads_ip: u32,

    /// Reads per minute in total; 0 disables the tier.
    #[arg(long = "rate-limit-reads-global", env = "PLT_RATE_LIMIT_READS_GLOBAL", default_value_t = 60000)]
    pub reads_global: u32,

    /// Proxies in front of machinist that append to X-Forwarded-For; 0 (default) ignores the header.
    #[arg(long = "trusted-proxy-hops", env = "PLT_TRUSTED_PROXY_HOPS", default_value_t = 0)]
    pub trusted_proxy_hops: u32,
}

impl OperatorArgs {
    pub fn shutdown_delay(&self) -> Duration {
        self.shutdown_delay.unwrap_or(DEFAULT_SHUTDOWN_DELAY)
    }
}

impl EdgeArgs {
    pub fn edge_config(&self) -> crate::api::auth::EdgeConfig {
        use crate::api::limits::{RateLimitConfig, TierLimits};
        crate::api::auth::EdgeConfig {
            mode: self.auth_mode,
            tokens_file: self.tokens_file.clone(),
            limits: RateLimitConfig {
                reads: TierLimits {
                    identity: self.reads_identity,
                    ip: self.reads_ip,
                    global: self.reads_global,
                },
                writes: TierLimits {
                    identity: self.writes_identity,
                    ip: self.writes_ip,
                    global: self.writes_global,
                },
                trusted_proxy_hops: self.trusted_proxy_hops,
            },
        }
    }
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

    /// Seconds a cluster may go without a successful refresh before /health/readiness fails; failed
    /// refreshes short of that (throttling, a brief outage) are reported in /providers only.
    #[arg(long = "ecs-stale-after", env = "PLT_ECS_STALE_SECS", default_value = "120", value_parser = parse_secs)]
    pub stale_after: Duration,

    /// The original machinist's single cluster, used when `PLT_ECS_CLUSTERS` names none.
    #[arg(long = "ecs-cluster", env = "PLT_ECS_CLUSTER", hide = true)]
    pub cluster: Option<String>,

    /// The AWS SDK's region variables, used when `PLT_ECS_REGION` is not set.
    #[arg(long = "aws-region", env = "AWS_REGION", hide = true)]
    pub aws_region: Option<String>,

    #[arg(long = "aws-default-region", env = "AWS_DEFAULT_REGION", hide = true)]
    pub aws_default_region: Option<String>,
}

impl EcsArgs {
    /// The ECS provider's settings: `PLT_ECS_CLUSTER` (singular, the original machinist's name) counts when
    /// `PLT_ECS_CLUSTERS` names no cluster; the region falls back to `AWS_REGION`, then `AWS_DEFAULT_REGION`.
    /// A blank value counts as unset.
    pub fn settings(&self) -> Result<EcsSettings, EcsConfigError> {
        let set = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        let mut clusters = parse_clusters(&self.clusters)?;
        if clusters.is_empty()
            && let Some(single) = set(&self.cluster)
        {
            clusters = parse_clusters(&single)?;
        }
        let region =
            set(&self.region).or_else(|| set(&self.aws_region)).or_else(|| set(&self.aws_default_region));
        let mut settings = EcsSettings::new(region, clusters, self.poll_interval)?;
        settings.stale_after = self.stale_after;
        Ok(settings)
    }
}

/// `--log-format` / `PLT_LOG_FORMAT`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; coloured only when stderr is a terminal and `NO_COLOR` is unset.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `message` and the event's fields), never
    /// coloured.
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
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

    /// Do not create the ScaleRequest CRD at start (it is, as `helm install` would).
    #[arg(long)]
    pub no_crds: bool,

    /// Milliseconds a new pod stays Pending before it runs.
    #[arg(long, default_value_t = 500)]
    pub pod_start_delay_ms: u64,

    /// Serve /sandbox/stats and /sandbox/faults.
    #[arg(long)]
    pub test_hooks: bool,

    /// Require this bearer token on every request.
    #[arg(long, env = "PLT_SANDBOX_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Answer TokenReview and SubjectAccessReview from this YAML file of `users` and `rules` (for
    /// `--auth-mode=kubernetes`; see `sandbox::review::Reviews`).
    #[arg(long)]
    pub reviews: Option<PathBuf>,

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
        assert_eq!(run.server.connection_limits(), crate::serve::ConnectionLimits::default());
        assert!(parse(&["run", "--http-max-connections=0"]).is_err());
        let edge = run.edge.edge_config();
        assert_eq!(edge.mode, crate::api::auth::AuthMode::None);
        assert_eq!(edge.limits, crate::api::limits::RateLimitConfig::default(), "API.md's defaults");
        let Command::Run(run) =
            parse(&["run", "--auth-mode=static", "--rate-limit-writes-ip=0"]).unwrap().command
        else {
            unreachable!()
        };
        assert_eq!(run.edge.auth_mode, crate::api::auth::AuthMode::Static);
        assert_eq!(run.edge.edge_config().limits.writes.ip, 0);
        assert!(parse(&["run", "--auth-mode=bogus"]).is_err());
    }

    #[test]
    fn namespaces_are_a_validated_comma_list() {
        let Command::Run(run) = parse(&["run", "--namespaces", "a,b"]).unwrap().command else {
            unreachable!()
        };
        assert_eq!(run.namespaces, vec!["a", "b"]);
        let Command::Run(run) = parse(&["run", "--namespaces="]).unwrap().command else { unreachable!() };
        assert!(run.namespaces.is_empty(), "empty means all namespaces");
        let error = parse(&["run", "--namespaces", "Bad_NS"]).unwrap_err().to_string();
        assert!(error.contains("not a valid namespace name"), "{error}");
    }

    #[test]
    fn durations_are_bounded() {
        assert_eq!(parse_secs("0.5").unwrap(), Duration::from_millis(500));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("nan").is_err());
        assert!(parse_secs("0").is_err());
        assert_eq!(parse_secs_or_zero("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_secs_or_zero("2.5").unwrap(), Duration::from_millis(2500));
        assert!(parse_secs_or_zero("-1").is_err());
        let Command::Run(run) = parse(&["run"]).unwrap().command else { unreachable!() };
        assert_eq!(run.shutdown_delay(), DEFAULT_SHUTDOWN_DELAY);
        let Command::Run(run) = parse(&["run", "--shutdown-delay", "0"]).unwrap().command else {
            unreachable!()
        };
        assert_eq!(run.shutdown_delay(), Duration::ZERO);
    }

    #[test]
    fn ecs_settings_need_clusters_and_region() {
        let args = |clusters: &str, region: Option<&str>| EcsArgs {
            region: region.map(String::from),
            clusters: clusters.into(),
            poll_interval: Duration::from_secs(5),
            stale_after: Duration::from_secs(120),
            cluster: None,
            aws_region: None,
            aws_default_region: None,
        };
        let s = args("prod,stage", Some("eu-west-1")).settings().unwrap();
        assert_eq!(s.clusters, vec!["prod", "stage"]);
        assert_eq!(s.client.region, "eu-west-1");
        assert_eq!(s.poll_interval, Duration::from_secs(5));
        assert!(args("bad name", Some("eu-west-1")).settings().is_err());
        assert!(matches!(args("", Some("eu-west-1")).settings(), Err(EcsConfigError::NoClusters)));
        assert!(matches!(args("prod", Some(" ")).settings(), Err(EcsConfigError::NoRegion)));
        let fallbacks = EcsArgs {
            cluster: Some("legacy".into()),
            aws_default_region: Some("us-west-2".into()),
            ..args(" , ", None)
        };
        let s = fallbacks.settings().unwrap();
        assert_eq!((s.clusters, s.client.region), (vec!["legacy".to_string()], "us-west-2".to_string()));
    }

    #[test]
    fn log_format_is_text_or_json() {
        let Command::Run(run) = parse(&["run"]).unwrap().command else { unreachable!() };
        assert_eq!(run.log_format, LogFormat::Text);
        let Command::Sandbox(sb) = parse(&["sandbox", "--log-format", "json"]).unwrap().command else {
            unreachable!()
        };
        assert_eq!(sb.operator.log_format, LogFormat::Json);
        assert!(parse(&["run", "--log-format", "logfmt"]).is_err());
    }
}
