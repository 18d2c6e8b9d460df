//! What `machinist sandbox` needs from this module: the kubeconfig file, the lines printed for the user,
//! and waiting for Ctrl-C / SIGTERM.
//!
//! It must not start the operator or the ECS emulator (the caller composes those).

use std::path::Path;

use super::{Sandbox, SandboxError};

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

/// Resolves on Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
