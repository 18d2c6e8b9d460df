//! What a user does: `kubectl apply` the checked-in CRD and the examples against the demo sandbox, `kubectl
//! wait` for Ready, `kubectl get` the columns, `kubectl describe` the events.

use std::time::Duration;

use machinist::reconcile::controller::{self, Context};
use machinist_sandbox::SandboxOptions;

use crate::common::kubectl as cli;

use cli::Kubectl;

use super::bed::bed_in;
use super::common;

#[tokio::test]
async fn apply_wait_get_and_describe_a_scalerequest_with_kubectl() {
    let opts = SandboxOptions {
        demo: true,
        test_hooks: true,
        pod_start_delay: Duration::from_millis(100),
        ..SandboxOptions::default()
    };
    let (sb, client) = common::start_with(opts).await;
    let k = Kubectl::new(&sb);

    k.ok(&["apply", "-f", "crds/scalerequest.yaml"]).await;
    let b = bed_in(sb, client, "demo".to_string()).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let ctx = Context::new(b.client.clone(), b.reconciler.clone(), "kubectl-test");
    tokio::spawn(controller::run(ctx, vec!["demo".into()], async move {
        let _ = stopped.await;
    }));

    k.ok(&["apply", "-n", "demo", "-f", "examples/scalerequest.yaml"]).await;
    k.ok(&["wait", "-n", "demo", "--for=condition=Ready", "sr/scale-frontend", "--timeout=60s"]).await;
    let replicas = k.ok(&["get", "-n", "demo", "deploy/frontend", "-o", "jsonpath={.spec.replicas}"]).await;
    assert_eq!(replicas.trim(), "4");

    let table = k.ok(&["get", "-n", "demo", "sr"]).await;
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "TARGET", "REPLICAS", "PHASE", "AGE"], "{table}");
    let row: Vec<&str> = table.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    assert_eq!(&row[..4], ["scale-frontend", "frontend", "4", "Succeeded"], "{table}");

    let described = k.ok(&["describe", "-n", "demo", "sr", "scale-frontend"]).await;
    assert!(described.contains("Scaled") && described.contains("ReplicasReady"), "{described}");

    k.ok(&["apply", "-n", "demo", "-f", "examples/scalerequest-kind.yaml"]).await;
    k.ok(&["wait", "-n", "demo", "--for=condition=Ready", "sr/scale-cache", "--timeout=60s"]).await;
    let replicas = k.ok(&["get", "-n", "demo", "statefulset/cache", "-o", "jsonpath={.spec.replicas}"]).await;
    assert_eq!(replicas.trim(), "2");

    // The schema refuses a bad request at apply time, and nothing is stored.
    let bad = k.file(
        "bad.yaml",
        "apiVersion: machinist.dev/v1alpha1\nkind: ScaleRequest\nmetadata:\n  name: bad\nspec:\n  target:\n    \
         name: frontend\n  replicas: -3\n",
    );
    let cli::Out { ok, stderr, .. } = k.run(&["apply", "-n", "demo", "-f", bad.to_str().unwrap()]).await;
    assert!(!ok && stderr.contains("replicas"), "{stderr}");
    let _ = stop.send(());
}
