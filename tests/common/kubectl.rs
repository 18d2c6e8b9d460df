//! Real `kubectl` with its own kubeconfig for a sandbox and its own discovery cache, in a temp dir, run from
//! the repository root. It is the pinned one `tools/install-tools.sh` installs into `target/tools` (installed
//! on first use), never whatever `kubectl` the PATH holds: a fresh machine has none.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use machinist_sandbox::Sandbox;
use tokio::process::Command;

const KUBECTL_TIMEOUT: Duration = Duration::from_secs(90);

/// kubectl with its own kubeconfig and discovery cache in a temp dir.
pub struct Kubectl {
    dir: tempfile::TempDir,
}

pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    pub fn new(sb: &Sandbox) -> Kubectl {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("kubeconfig"), sb.kubeconfig_yaml()).expect("kubeconfig");
        std::fs::create_dir(dir.path().join("cache")).expect("cache dir");
        Kubectl { dir }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(crate::common::tool("target/tools/kubectl/kubectl"));
        c.arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .env("HOME", self.dir.path())
            // Manifests in the repository (`crds/`, `examples/`) are named relative to its root.
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    pub fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).expect("write manifest");
        p
    }

    pub async fn run(&self, args: &[&str]) -> Out {
        let out = tokio::time::timeout(KUBECTL_TIMEOUT, self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish in {KUBECTL_TIMEOUT:?}"))
            .expect("kubectl runs");
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs and fails the test, with kubectl's stderr, unless it succeeds.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(out.ok, "kubectl {args:?} failed\nstdout: {}\nstderr: {}", out.stdout, out.stderr);
        out.stdout
    }

    /// Repeats `args` until `pred` holds on stdout (controllers act asynchronously).
    pub async fn until(&self, args: &[&str], within: Duration, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let out = self.run(args).await;
            if out.ok && pred(&out.stdout) {
                return out.stdout;
            }
            assert!(
                start.elapsed() < within,
                "kubectl {args:?}: condition not met in {within:?}\nstdout: {}\nstderr: {}",
                out.stdout,
                out.stderr
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
