//! The rendered chart and every kustomize overlay apply cleanly to the sandbox with the real `kubectl`:
//! `apply --dry-run=server` first, then for real.
//!
//! Tools come from `tools/install-tools.sh` (as in tests/deploy.rs). The chart's optional ServiceMonitor
//! and PrometheusRule stay off (their defaults): the sandbox serves no monitoring.coreos.com CRDs.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use machinist_sandbox::Gvr;
use serde_json::json;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn output(cmd: &mut Command) -> String {
    let out = cmd.output().expect("tool runs");
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// `kubectl apply -f -` of `manifests` against the sandbox; returns kubectl's stdout.
fn apply(kubeconfig_yaml: &str, dir: &Path, manifests: &str, dry_run: bool) -> String {
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_yaml).expect("write kubeconfig");
    let mut cmd = Command::new(common::tool("target/tools/kubectl/kubectl"));
    cmd.arg("--kubeconfig").arg(&kubeconfig).arg("--cache-dir").arg(dir.join("cache"));
    cmd.args(["apply", "-f", "-"]);
    if dry_run {
        cmd.arg("--dry-run=server");
    }
    let mut child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("kubectl");
    child.stdin.take().expect("stdin").write_all(manifests.as_bytes()).expect("write manifests");
    let out = child.wait_with_output().expect("kubectl finishes");
    assert!(
        out.status.success(),
        "kubectl apply (dry_run={dry_run}) failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every `kind`/`name` in a multi-document stream, as `kind/name` in lower case, for the apply report.
fn objects(manifests: &str) -> Vec<(String, String)> {
    manifests
        .split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<serde_json::Value>(doc).ok())
        .filter_map(|v| {
            let kind = v.get("kind")?.as_str()?.to_owned();
            let name = v.pointer("/metadata/name")?.as_str()?.to_owned();
            Some((kind, name))
        })
        .collect()
}

async fn apply_cleanly(manifests: &str, namespace: &str) {
    let (sb, _client) = common::start().await;
    // The chart does not create its release namespace (helm does); kustomize's base does, idempotently.
    let _ = sb.store.create(&Gvr::namespaces(), "", json!({"metadata": {"name": namespace}}));
    let dir = tempfile::tempdir().expect("temp dir");
    let manifests = manifests.to_owned();
    let objs = objects(&manifests);
    assert!(objs.len() >= 8, "rendered too few objects: {objs:?}");
    let dir_path = dir.path().to_owned();
    let kc = sb.kubeconfig_yaml();
    let (dry, real) = tokio::task::spawn_blocking(move || {
        let dry = apply(&kc, &dir_path, &manifests, true);
        let real = apply(&kc, &dir_path, &manifests, false);
        (dry, real)
    })
    .await
    .expect("kubectl task");
    // kubectl reports `kind[.group]/name verb`.
    let reported = |out: &str, kind: &str, name: &str, verbs: &[&str]| {
        let kind = kind.to_ascii_lowercase();
        out.lines().any(|l| {
            let Some((k, rest)) = l.split_once('/') else { return false };
            let k = k.split('.').next().unwrap_or_default();
            let mut words = rest.split_whitespace();
            k == kind && words.next() == Some(name) && words.next().is_some_and(|v| verbs.contains(&v))
        })
    };
    for (kind, name) in &objs {
        assert!(
            reported(&dry, kind, name, &["created", "configured", "unchanged"]),
            "dry run did not report {kind}/{name}:\n{dry}"
        );
        assert!(
            reported(&real, kind, name, &["created", "configured", "unchanged"]),
            "apply did not report {kind}/{name}:\n{real}"
        );
    }
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_chart_with_crds_applies_cleanly() {
    let rendered = output(
        Command::new(common::tool("target/tools/helm/helm"))
            .args(["template", "machinist", "charts/machinist", "--include-crds", "--namespace", "machinist"])
            .current_dir(ROOT),
    );
    apply_cleanly(&rendered, "machinist").await;
}

/// `auth.mode=static` with the tokens Secret it mounts, created first as an operator would, plus non-default
/// rate limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_chart_with_static_auth_applies_cleanly() {
    let rendered = output(
        Command::new(common::tool("target/tools/helm/helm"))
            .args(["template", "machinist", "charts/machinist", "--include-crds", "--namespace", "machinist"])
            .args(["--set", "auth.mode=static", "--set", "auth.tokensSecret.name=machinist-tokens"])
            .args(["--set", "rateLimits.writes.identity=50", "--set", "trustedProxyHops=1"])
            .current_dir(ROOT),
    );
    assert!(rendered.contains("PLT_AUTH_TOKENS_FILE"), "static auth renders the tokens file setting");
    // The hash of the token "example", as `printf %s example | sha256sum` prints it.
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: machinist-tokens\n  namespace: machinist\n\
                  stringData:\n  tokens.yaml: |\n    tokens:\n      - identity: ci\n        \
                  sha256: 50d858e0985ecc7f60418aaf0cc5ab587f42c2570a884095a9e8ccacd0f6545c\n        \
                  rights: [read, write]\n";
    apply_cleanly(&format!("{secret}---\n{rendered}"), "machinist").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kustomize_overlay_applies_cleanly() {
    for overlay in ["cluster-wide", "single-namespace", "ecs", "kubernetes-auth"] {
        let rendered = output(
            Command::new(common::tool("target/tools/kubectl/kubectl"))
                .args(["kustomize", &format!("config/overlays/{overlay}")])
                .current_dir(ROOT),
        );
        apply_cleanly(&rendered, "machinist").await;
    }
}
