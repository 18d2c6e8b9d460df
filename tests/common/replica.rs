//! A real `machinist run` process (the test-profile binary) against a sandbox, configured through the
//! environment as the chart configures it: for tests of what only a process shows (signals, leader
//! election between replicas).

use std::process::Stdio;

use tokio::process::{Child, Command};

pub struct Replica {
    pub child: Child,
    pub base: String,
}

impl Replica {
    /// `machinist run` on a free port, watching `ns` and holding its Lease there as `identity`; `env` adds
    /// or overrides settings. Its stdout is dropped; stderr (logs at `RUST_LOG`, `warn` unless set) is kept.
    pub fn start(kubeconfig: &std::path::Path, ns: &str, identity: &str, env: &[(&str, &str)]) -> Replica {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_machinist"));
        cmd.arg("run")
            .env("KUBECONFIG", kubeconfig)
            .env("PLT_LISTEN", format!("127.0.0.1:{port}"))
            .env("PLT_K8S_NAMESPACES", ns)
            .env("PLT_LEASE_NAMESPACE", ns)
            .env("POD_NAME", identity)
            .env("RUST_LOG", "warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.stdout(Stdio::null()).kill_on_drop(true).spawn().expect("machinist run starts");
        Replica { child, base: format!("http://127.0.0.1:{port}") }
    }

    /// `Some(true)` while this replica reports holding the lease; `None` while it does not answer.
    pub async fn leads(&self) -> Option<bool> {
        let text = reqwest::get(format!("{}/metrics", self.base)).await.ok()?.text().await.ok()?;
        text.lines().find(|l| l.starts_with("machinist_leader ")).map(|l| l.ends_with(" 1"))
    }

    /// What the kubelet does first.
    pub fn sigterm(&self) {
        let pid = self.child.id().expect("the replica runs");
        let status =
            std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill runs");
        assert!(status.success(), "kill -TERM {pid}: {status}");
    }
}
