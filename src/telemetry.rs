//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), as text or as one JSON object per
//! line; and the startup line that states the effective configuration.
//!
//! It owns the subscriber and its format, not what callers log. Colour only on a terminal: a pod's log, a
//! pipe or a file must hold no escape codes. The startup line never carries a secret (token values, the
//! tokens file's contents): only settings and file paths.

use std::io::IsTerminal;

use crate::config::{LogFormat, OperatorArgs};

/// Installs the process-wide subscriber (a second call does nothing).
pub fn init(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(colour(std::io::stderr().is_terminal())).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_ansi(false).try_init(),
    };
}

/// Colour when stderr is a terminal, unless `NO_COLOR` is set to anything but empty (no-color.org). Read
/// here rather than in `config`: it is every tool's convention, not a machinist setting.
fn colour(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The one INFO line `machinist run` logs at start: version and effective configuration.
pub fn log_startup(args: &OperatorArgs) {
    let mut providers = Vec::new();
    if args.provider.k8s {
        providers.push("k8s");
    }
    if args.provider.ecs {
        providers.push("ecs");
    }
    let namespaces = if args.namespaces.is_empty() { "all".to_string() } else { args.namespaces.join(",") };
    let ecs_clusters = if args.provider.ecs { args.ecs.clusters.as_str() } else { "" };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        providers = providers.join(","),
        namespaces,
        auth_mode = args.edge.auth_mode.as_str(),
        tokens_file = args.edge.tokens_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        listen = %args.http_listen,
        leader_election = args.leader_election,
        ecs_region = args.ecs.region.as_deref().unwrap_or_default(),
        ecs_clusters,
        write_timeout_secs = args.write_timeout.as_secs_f64(),
        watch_stale_after_secs = args.watch_stale_after.as_secs_f64(),
        shutdown_delay_secs = args.shutdown_delay().as_secs_f64(),
        log_format = args.log_format.as_str(),
        "machinist starting"
    );
}
