//! The install, upgrade and uninstall commands of `docs/operations.md`, run as written (image and tag
//! aside) with the real `helm` and `kubectl` against the sandbox: what a platform team types must work.
//!
//! Tools come from `tools/install-tools.sh`, as in tests/deploy.rs. `port-forward` and `curl` are not run:
//! the sandbox runs no containers, so there is nothing to forward to.

mod common;

use std::path::Path;
use std::process::Command;

use machinist_sandbox::Gvr;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Runs `program args` from the repository root with the sandbox's kubeconfig and a private helm home;
/// returns stdout, failing the test with stderr when the command fails.
fn run(program: &Path, args: &[&str], home: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(ROOT)
        .env("KUBECONFIG", home.join("kubeconfig"))
        .env("HELM_CACHE_HOME", home.join("helm-cache"))
        .env("HELM_CONFIG_HOME", home.join("helm-config"))
        .env("HELM_DATA_HOME", home.join("helm-data"))
        .env("KUBECACHEDIR", home.join("kube-cache"))
        .output()
        .expect("tool runs");
    assert!(
        out.status.success(),
        "{} {args:?} failed:\nstdout: {}\nstderr: {}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The CRD upgrade of docs/operations.md, run as written with `machinist` and `kubectl` resolved to the test
/// build and the pinned kubectl.
const CRD_UPGRADE: &str = "machinist crd | kubectl apply --server-side --force-conflicts -f -";

fn deployment_image(sb: &machinist_sandbox::Sandbox) -> Option<String> {
    let d = sb.store.get(&Gvr::deployments(), "machinist", "machinist")?;
    d.pointer("/spec/template/spec/containers/0/image").and_then(|v| v.as_str()).map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_upgrade_and_uninstall_work_as_documented() {
    let (helm, kubectl) =
        (common::tool("target/tools/helm/helm"), common::tool("target/tools/kubectl/kubectl"));
    let docs = std::fs::read_to_string(Path::new(ROOT).join("docs/operations.md")).expect("operations.md");
    for documented in [
        "helm install machinist charts/machinist --namespace machinist --create-namespace",
        "kubectl -n machinist rollout status deployment/machinist",
        CRD_UPGRADE,
        "helm upgrade machinist charts/machinist --namespace machinist --reuse-values --set image.tag=NEW",
        "helm uninstall machinist --namespace machinist",
        "kubectl apply -k config/overlays/cluster-wide",
    ] {
        assert!(docs.contains(documented), "docs/operations.md no longer shows `{documented}`");
    }

    let (sb, _client) = common::start().await;
    let home = tempfile::tempdir().expect("temp dir");
    std::fs::write(home.path().join("kubeconfig"), sb.kubeconfig_yaml()).expect("kubeconfig");
    let home = home.path();

    let installed = run(
        &helm,
        &[
            "install",
            "machinist",
            "charts/machinist",
            "--namespace",
            "machinist",
            "--create-namespace",
            "--set",
            "image.repository=registry.example/machinist",
            "--set",
            "image.tag=0.1.0",
        ],
        home,
    );
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    assert!(installed.contains("port-forward service/machinist 3042:3042"), "NOTES.txt: {installed}");
    run(&kubectl, &["-n", "machinist", "rollout", "status", "deployment/machinist", "--timeout=120s"], home);
    assert_eq!(deployment_image(&sb).as_deref(), Some("registry.example/machinist:0.1.0"));
    assert!(sb.store.get(&Gvr::crds(), "", "scalerequests.machinist.dev").is_some(), "helm installs the CRD");

    // An older CRD in the cluster (no printer columns, another description) with a ScaleRequest stored under
    // it, as an earlier release would have left them; the documented upgrade brings the current CRD and keeps
    // the ScaleRequest.
    sb.store
        .update(&Gvr::crds(), "", "scalerequests.machinist.dev", |crd| {
            let version = &mut crd["spec"]["versions"][0];
            version.as_object_mut().expect("a version object").remove("additionalPrinterColumns");
            version["schema"]["openAPIV3Schema"]["description"] = "an older CRD".into();
            Ok(())
        })
        .expect("make the CRD an older one");
    run(&kubectl, &["apply", "-n", "machinist", "-f", "examples/scalerequest.yaml"], home);
    let upgrade = CRD_UPGRADE
        .replace("machinist crd", &format!("{} crd", env!("CARGO_BIN_EXE_machinist")))
        .replace("kubectl apply", &format!("{} apply", kubectl.display()));
    run(Path::new("bash"), &["-o", "pipefail", "-c", &upgrade], home);
    let generated: serde_json::Value =
        serde_yaml::from_str(&run(Path::new(env!("CARGO_BIN_EXE_machinist")), &["crd"], home)).expect("CRD");
    let served = sb.store.get(&Gvr::crds(), "", "scalerequests.machinist.dev").expect("the CRD");
    // (Numbers compare badly between the YAML and the stored JSON: 10000.0 and 10000.)
    for field in ["/additionalPrinterColumns", "/schema/openAPIV3Schema/description"] {
        let path = format!("/spec/versions/0{field}");
        assert!(generated.pointer(&path).is_some(), "{path}");
        assert_eq!(served.pointer(&path), generated.pointer(&path), "{field}");
    }
    let kept =
        sb.store.get(&Gvr::new("machinist.dev", "v1alpha1", "scalerequests"), "machinist", "scale-frontend");
    assert!(kept.is_some(), "ScaleRequests survive the CRD upgrade");
    run(
        &helm,
        &[
            "upgrade",
            "machinist",
            "charts/machinist",
            "--namespace",
            "machinist",
            "--reuse-values",
            "--set",
            "image.tag=0.2.0",
        ],
        home,
    );
    run(&kubectl, &["-n", "machinist", "rollout", "status", "deployment/machinist", "--timeout=120s"], home);
    assert_eq!(deployment_image(&sb).as_deref(), Some("registry.example/machinist:0.2.0"), "--reuse-values");

    // helm deletes its release Secrets with protobuf DeleteOptions bodies.
    run(&helm, &["uninstall", "machinist", "--namespace", "machinist"], home);
    assert!(deployment_image(&sb).is_none(), "uninstall removes the Deployment");
    let releases = sb.store.list(&Gvr::new("", "v1", "secrets"), Some("machinist"));
    assert!(
        releases.iter().all(|s| s["type"] != "helm.sh/release.v1"),
        "uninstall removes the release records"
    );

    run(&kubectl, &["apply", "-k", "config/overlays/cluster-wide"], home);
    run(&kubectl, &["-n", "machinist", "rollout", "status", "deployment/machinist", "--timeout=120s"], home);
    assert!(deployment_image(&sb).is_some(), "the kustomize overlay installs the Deployment");
    sb.shutdown().await;
}
