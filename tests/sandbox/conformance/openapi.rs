//! Installed CRDs' schemas in `/openapi/v3` (and `/openapi/v2`), so `kubectl explain` documents custom
//! resources.

use machinist_sandbox::{Sandbox, SandboxOptions};
use serde_json::Value;

use crate::common;
use crate::common::kubectl::Kubectl;

#[tokio::test]
async fn kubectl_explain_documents_installed_crds() {
    let sb =
        Sandbox::start(SandboxOptions { crds: true, ..SandboxOptions::default() }).await.expect("sandbox");
    crate::apply::install_widgets(&sb).await;
    let k = Kubectl::new(&sb);
    let out = k.ok(&["explain", "scalerequest.spec"]).await;
    assert!(out.contains("KIND:") && out.contains("ScaleRequest"), "{out}");
    assert!(out.contains("FIELD: spec"), "{out}");
    let out = k.ok(&["explain", "widgets.spec"]).await;
    assert!(out.contains("replicas") && out.contains("How many widgets."), "{out}");
    assert!(out.contains("colour") && out.contains("The colour of each widget."), "{out}");
    let out = k.ok(&["explain", "widget.spec.colour"]).await;
    assert!(out.contains("FIELD: colour <string>"), "{out}");

    // v2, for JSON clients.
    let v2: Value = common::http()
        .get(format!("{}/openapi/v2", sb.url()))
        .header("accept", "application/json")
        .send()
        .await
        .expect("GET /openapi/v2")
        .json()
        .await
        .expect("json");
    let widget = &v2["definitions"]["example.conformance.v1.Widget"];
    assert_eq!(widget["x-kubernetes-group-version-kind"][0]["kind"], "Widget", "{v2}");
    assert_eq!(widget["properties"]["spec"]["properties"]["replicas"]["type"], "integer");
}
