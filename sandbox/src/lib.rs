//! `machinist-sandbox`: an embedded Kubernetes API server, for trying machinist and for its tests, and the
//! launcher of the ECS emulator (`ecs_emulator`).
//!
//! It depends on no machinist crate, and the operator never depends on it: a fake that shares code with the
//! code under test hides exactly the bugs it exists to catch (Cargo enforces it: see the workspace's
//! `Cargo.toml`).
//!
//! `store` holds the objects and their semantics; `http` routes requests (parsed by `request`, answered with
//! `response`) to `patch`, `apply`, `watch`, `discovery` and `table`, none of which imports `http`;
//! `controllers` simulates the workload controllers and the kubelet; `stats`, `write_log`, `faults` and `hang`
//! are the test hooks; `state` persists objects across runs; `signal` waits for Ctrl-C/SIGTERM.

pub mod apply;
pub mod cluster;
pub mod controllers;
pub mod discovery;
pub mod ecs_emulator;
pub mod faults;
pub mod hang;
pub mod http;
pub mod kubeconfig;
pub mod meta;
pub mod patch;
pub mod proto;
pub mod registry;
pub mod request;
pub mod response;
pub mod review;
pub mod schema;
pub mod seed;
pub mod select;
pub mod state;
pub mod stats;
pub mod status;
pub mod store;
pub mod subresource;
pub mod table;
pub mod watch;
pub mod write_log;

mod gateway;

// Waiting for Ctrl-C / SIGTERM (`machinist sandbox`).
pub mod signal;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use registry::Gvr;
pub use status::StatusError;
pub use store::{EventType, Store, StoreEvent};

/// How to run the sandbox.
#[derive(Clone, Debug)]
pub struct SandboxOptions {
    /// A host (a free port is picked) or host:port.
    pub listen: String,
    pub token: Option<String>,
    pub test_hooks: bool,
    pub state_file: Option<PathBuf>,
    pub pod_start_delay: Duration,
    pub demo: bool,
    pub extra_pods: u32,
    /// Create the ScaleRequest CRD (`crds/`) at start, as `helm install` would (`machinist sandbox` does unless
    /// `--no-crds`; tests that install it themselves leave it off).
    pub crds: bool,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            listen: "127.0.0.1".into(),
            token: None,
            test_hooks: false,
            state_file: None,
            pod_start_delay: Duration::from_millis(500),
            demo: false,
            extra_pods: 0,
            crds: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error("cannot set up the sandbox: {0}")]
    Setup(StatusError),
    #[error("cannot write the kubeconfig {path}: {source}")]
    Kubeconfig { path: String, source: std::io::Error },
}

/// A running sandbox. Dropping it or calling `shutdown()` stops it.
pub struct Sandbox {
    pub addr: SocketAddr,
    pub store: Store,
    app: Arc<http::AppState>,
    token: Option<String>,
    state_file: Option<PathBuf>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    saver: Option<JoinHandle<()>>,
}

impl Sandbox {
    /// Loads `--state`, registers the types, installs the Gateway API CRDs (and machinist's, with `crds`),
    /// starts the simulated controllers, seeds the demo data, and serves.
    pub async fn start(opts: SandboxOptions) -> Result<Sandbox, SandboxError> {
        let store = Store::new();
        if let Some(p) = &opts.state_file {
            state::load(&store, p)?;
        }
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            ensure(&store, &Gvr::namespaces(), "", json!({"metadata": {"name": ns}}))?;
        }
        cluster::bootstrap(&store).map_err(SandboxError::Setup)?;
        for crd in gateway::crds() {
            ensure(&store, &Gvr::crds(), "", crd)?;
        }
        if opts.crds {
            ensure(&store, &Gvr::crds(), "", scalerequest_crd())?;
        }
        start_simulation(&store, opts.pod_start_delay);
        if opts.demo {
            seed_demo(&store);
        }
        if opts.extra_pods > 0 {
            seed_load(&store, opts.extra_pods);
        }
        let addr = listen_addr(&opts.listen);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| SandboxError::Listen { addr: addr.clone(), source })?;
        let local = listener.local_addr().map_err(|source| SandboxError::Listen { addr, source })?;
        let app = Arc::new(http::AppState::new(store.clone(), opts.token.clone(), opts.test_hooks));
        let router = http::router(app.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "sandbox API server stopped");
            }
        });
        let saver = opts.state_file.clone().map(|p| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(30));
                every.tick().await;
                loop {
                    every.tick().await;
                    if let Err(e) = state::save(&store, &p) {
                        tracing::warn!(error = %e, "cannot save the sandbox state");
                    }
                }
            })
        });
        Ok(Sandbox {
            addr: local,
            store,
            app,
            token: opts.token,
            state_file: opts.state_file,
            stop: Some(stop),
            server: Some(server),
            saver,
        })
    }

    /// A kubeconfig whose requests the sandbox attributes to `user` (in `/sandbox/stats`, `/sandbox/writes`
    /// and the `users` of faults): one more bearer token, accepted whether or not `token` is set.
    pub fn kubeconfig_yaml_as(&self, user: &str) -> String {
        let token = format!("{user}-{:016x}", fastrand::u64(..));
        self.app.users.write().unwrap_or_else(|e| e.into_inner()).insert(token.clone(), user.to_string());
        kubeconfig::kubeconfig_yaml(&self.url(), Some(&token))
    }

    /// Answers TokenReview and SubjectAccessReview from this table from now on.
    pub fn set_reviews(&self, reviews: review::Reviews) {
        *self.app.reviews.write().unwrap_or_else(|e| e.into_inner()) = reviews;
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig kubectl and kube-rs use as is.
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig::kubeconfig_yaml(&self.url(), self.token.as_deref())
    }

    /// Stops serving (open watches end), then saves `--state`.
    pub async fn shutdown(mut self) {
        self.stop_now();
        if let Some(s) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), s).await;
        }
        self.save_state();
    }

    fn stop_now(&mut self) {
        if let Some(s) = self.saver.take() {
            s.abort();
        }
        self.app.close_watches.send_modify(|n| *n += 1);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    fn save_state(&mut self) {
        if let Some(p) = self.state_file.take()
            && let Err(e) = state::save(&self.store, &p)
        {
            tracing::warn!(error = %e, "cannot save the sandbox state");
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop_now();
        if let Some(s) = self.server.take() {
            s.abort();
        }
        self.save_state();
    }
}

/// Creates an object unless it already exists (e.g. loaded from `--state`).
/// machinist's CRD as the repository ships it: the file itself, not the code that generates it (the sandbox
/// shares no code with what it tests).
fn scalerequest_crd() -> serde_json::Value {
    serde_yaml::from_str(include_str!("../../crds/scalerequest.yaml")).expect("crds/scalerequest.yaml parses")
}

fn ensure(store: &Store, gvr: &Gvr, ns: &str, obj: serde_json::Value) -> Result<(), SandboxError> {
    match store.create(gvr, ns, obj) {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(SandboxError::Setup(e)),
    }
}

/// `127.0.0.1` → `127.0.0.1:0`; `host:port` as is.
fn listen_addr(listen: &str) -> String {
    let l = listen.trim();
    if l.parse::<SocketAddr>().is_ok() {
        return l.to_string();
    }
    if let Ok(ip) = l.parse::<std::net::IpAddr>() {
        return SocketAddr::new(ip, 0).to_string();
    }
    match l.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => l.to_string(),
        _ => format!("{l}:0"),
    }
}

// Seams to the simulated controllers and seed data (sbsim's `controllers` and `seed` modules); the lead points
// them at `controllers::spawn`, `seed::demo` and `seed::load_pods` at merge.
fn start_simulation(store: &Store, pod_start_delay: Duration) {
    drop(controllers::spawn(store.clone(), pod_start_delay));
}

fn seed_demo(store: &Store) {
    if let Err(e) = seed::demo(store) {
        tracing::warn!(error = %e, "cannot seed the demo data");
    }
}

fn seed_load(store: &Store, pods: u32) {
    if let Err(e) = seed::load_pods(store, pods) {
        tracing::warn!(error = %e, "cannot seed the load pods");
    }
}

/// What `machinist sandbox` needs besides the server: the kubeconfig file and the lines printed for the user.
impl Sandbox {
    /// Writes the kubeconfig (user-only permissions: it may hold the token).
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), SandboxError> {
        let io = |source| SandboxError::Kubeconfig { path: path.display().to_string(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(path).map_err(io)?;
        std::io::Write::write_all(&mut f, self.kubeconfig_yaml().as_bytes()).map_err(io)
    }

    /// The lines `machinist sandbox` prints: each URL served and how to point kubectl at it.
    pub fn banner(&self, kubeconfig: Option<&Path>) -> String {
        let mut out = format!("Kubernetes API server (sandbox): {}\n", self.url());
        match kubeconfig {
            Some(p) => out.push_str(&format!("export KUBECONFIG={}\n", p.display())),
            None => out.push_str("kubeconfig: pass --kubeconfig PATH to write one\n"),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_accepts_host_or_host_port() {
        assert_eq!(listen_addr("127.0.0.1"), "127.0.0.1:0");
        assert_eq!(listen_addr("127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(listen_addr("localhost"), "localhost:0");
        assert_eq!(listen_addr("localhost:99"), "localhost:99");
        assert_eq!(listen_addr("::1"), "[::1]:0");
    }
}
