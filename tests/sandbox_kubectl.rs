//! Real `kubectl` against an in-process sandbox, through the kubeconfig the sandbox writes: the commands a
//! user types first, and the simulated controllers behind them (scale, rollout, delete, wait, watch).

mod common;
use common::kubectl;

use std::process::Stdio;
use std::time::{Duration, Instant};

use kubectl::Kubectl;
use machinist_sandbox::{Gvr, Sandbox, SandboxOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

async fn sandbox(demo: bool) -> Sandbox {
    Sandbox::start(SandboxOptions {
        demo,
        pod_start_delay: Duration::from_millis(100),
        ..SandboxOptions::default()
    })
    .await
    .expect("sandbox starts")
}

fn deployment_yaml(ns: &str, name: &str, image: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {ns}
  labels:
    app: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
      - name: app
        image: {image}
        ports:
        - containerPort: 3042
          name: app
        resources:
          requests:
            cpu: 100m
            memory: 64Mi
"
    )
}

fn running_pods(sb: &Sandbox, ns: &str, app: &str) -> usize {
    sb.store
        .list(&Gvr::pods(), Some(ns))
        .iter()
        .filter(|p| p.pointer("/metadata/labels/app").and_then(Value::as_str) == Some(app))
        .filter(|p| p.pointer("/status/phase").and_then(Value::as_str) == Some("Running"))
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_pods_all_namespaces_and_deployments_wide_show_the_demo() {
    let sb = sandbox(true).await;
    let k = Kubectl::new(&sb);
    let pods = k
        .until(&["get", "pods", "-A"], Duration::from_secs(20), |o| {
            o.lines().filter(|l| l.starts_with("demo ") && l.contains("Running")).count() >= 9
        })
        .await;
    let header = pods.lines().next().unwrap_or_default();
    for col in ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"] {
        assert!(header.contains(col), "missing {col}: {header}");
    }
    assert!(
        pods.lines().any(|l| l.starts_with("demo ") && l.contains("frontend-") && l.contains("2/2")),
        "{pods}"
    );
    assert!(pods.lines().any(|l| l.contains("cache-0")), "{pods}");
    let wide = k
        .until(&["get", "deploy", "-o", "wide", "-n", "demo"], Duration::from_secs(20), |o| {
            o.lines().any(|l| l.starts_with("frontend ") && l.contains("3/3"))
        })
        .await;
    let header = wide.lines().next().unwrap_or_default();
    for col in ["READY", "UP-TO-DATE", "AVAILABLE", "CONTAINERS", "IMAGES", "SELECTOR"] {
        assert!(header.contains(col), "missing {col}: {header}");
    }
    let frontend = wide.lines().find(|l| l.starts_with("frontend ")).unwrap_or_default();
    assert!(frontend.contains("app,log-shipper"), "{frontend}");
    assert!(frontend.contains("platformatic/frontend:1.4.2"), "{frontend}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_scale_rollout_server_side_apply_and_delete_a_deployment() {
    let sb = sandbox(false).await;
    let ns = common::fresh_namespace(&sb);
    let k = Kubectl::new(&sb);
    let f = k.file("web.yaml", &deployment_yaml(&ns, "web", "nginx:1.27", 2));
    let f = f.to_string_lossy().to_string();
    // Default client-side validation: no --validate=false.
    let out = k.ok(&["apply", "-f", &f]).await;
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let out = k.ok(&["rollout", "status", "deploy/web", "-n", &ns, "--timeout=30s"]).await;
    assert!(out.contains("successfully rolled out"), "{out}");
    assert_eq!(running_pods(&sb, &ns, "web"), 2);

    let out = k.ok(&["scale", "deploy/web", "--replicas=5", "-n", &ns]).await;
    assert!(out.contains("scaled"), "{out}");
    let start = Instant::now();
    while running_pods(&sb, &ns, "web") != 5 {
        assert!(start.elapsed() < Duration::from_secs(5), "5 running pods not reached in 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A template change through server-side apply rolls the pods over to the new image.
    let f2 = k.file("web2.yaml", &deployment_yaml(&ns, "web", "nginx:1.28", 5));
    let out = k.ok(&["apply", "--server-side", "--force-conflicts", "-f", &f2.to_string_lossy()]).await;
    assert!(out.contains("serverside-applied"), "{out}");
    let out = k.ok(&["rollout", "status", "deploy/web", "-n", &ns, "--timeout=30s"]).await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let images = k
        .ok(&[
            "get",
            "pods",
            "-n",
            &ns,
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ])
        .await;
    let images: Vec<&str> = images.split_whitespace().collect();
    assert_eq!(images.len(), 5, "{images:?}");
    assert!(images.iter().all(|i| *i == "nginx:1.28"), "{images:?}");
    let rs = k.ok(&["get", "rs", "-n", &ns, "-o", "name"]).await;
    assert_eq!(rs.lines().count(), 2, "old and new ReplicaSet: {rs}");

    let out = k.ok(&["delete", "deploy", "web", "-n", &ns, "--timeout=30s"]).await;
    assert!(out.contains("deleted"), "{out}");
    k.until(&["get", "rs,pods", "-n", &ns, "-o", "name"], Duration::from_secs(10), |o| o.trim().is_empty())
        .await;
    assert!(sb.store.list(&Gvr::replicasets(), Some(&ns)).is_empty());
    assert!(sb.store.list(&Gvr::pods(), Some(&ns)).is_empty());
}

const WIDGET_CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
    additionalPrinterColumns:
    - name: Size
      type: integer
      jsonPath: .spec.size
    - name: Color
      type: string
      jsonPath: .spec.color
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size:
                type: integer
                minimum: 1
              color:
                type: string
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crd_and_its_custom_resource_show_printer_columns() {
    let sb = sandbox(false).await;
    let ns = common::fresh_namespace(&sb);
    let k = Kubectl::new(&sb);
    let crd = k.file("crd.yaml", WIDGET_CRD);
    let out = k.ok(&["apply", "-f", &crd.to_string_lossy()]).await;
    assert!(
        out.contains("customresourcedefinition.apiextensions.k8s.io/widgets.example.com created"),
        "{out}"
    );
    k.ok(&["wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=20s"]).await;
    let cr = k.file(
        "w.yaml",
        &format!("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: {ns}\nspec:\n  size: 7\n  color: blue\n"),
    );
    let out = k.until(&["apply", "-f", &cr.to_string_lossy()], Duration::from_secs(15), |_| true).await;
    assert!(out.contains("widget.example.com/w1 created"), "{out}");
    let table = k.ok(&["get", "widgets", "-n", &ns]).await;
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SIZE", "COLOR", "AGE"], "{table}");
    let row: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(&row[..3], ["w1", "7", "blue"], "{table}");
    // The schema is enforced: size must be >= 1.
    let bad = k.file(
        "bad.yaml",
        &format!("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w2\n  namespace: {ns}\nspec:\n  size: 0\n"),
    );
    let out = k.run(&["apply", "-f", &bad.to_string_lossy()]).await;
    assert!(!out.ok, "an invalid widget was accepted: {}", out.stdout);
    assert!(out.stderr.contains("Invalid") || out.stderr.contains("invalid"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_jsonpath_returns_when_the_controllers_get_there() {
    let sb = sandbox(false).await;
    let ns = common::fresh_namespace(&sb);
    let k = Kubectl::new(&sb);
    let f = k.file("api.yaml", &deployment_yaml(&ns, "api", "platformatic/api:1", 3));
    k.ok(&["apply", "-f", &f.to_string_lossy()]).await;
    let out = k
        .ok(&["wait", "--for=jsonpath={.status.readyReplicas}=3", "deploy/api", "-n", &ns, "--timeout=30s"])
        .await;
    assert!(out.contains("condition met"), "{out}");
    let ready =
        k.ok(&["get", "deploy", "api", "-n", &ns, "-o", "jsonpath={.status.availableReplicas}"]).await;
    assert_eq!(ready.trim(), "3");
    let out = k.ok(&["wait", "--for=condition=Available", "deploy/api", "-n", &ns, "--timeout=30s"]).await;
    assert!(out.contains("condition met"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_pods_watch_streams_a_new_pod_and_its_start() {
    let sb = sandbox(false).await;
    let ns = common::fresh_namespace(&sb);
    let k = Kubectl::new(&sb);
    let mut child = k
        .command(&["get", "pods", "-w", "-n", &ns])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    // kubectl prints "No resources found" to stderr for the empty list, then waits for changes.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let pod = json!({"metadata": {"name": "watched"}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}});
    sb.store.create(&Gvr::pods(), &ns, pod).expect("create pod");
    let mut seen = Vec::new();
    let got_running = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push(line.clone());
            if line.starts_with("watched") && line.contains("Running") {
                return true;
            }
        }
        false
    })
    .await;
    let _ = child.kill().await;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::io::AsyncReadExt::read_to_string(&mut e, &mut err),
        )
        .await;
    }
    assert_eq!(got_running, Ok(true), "watch lines: {seen:?}\nstderr: {err}");
    assert!(seen.iter().any(|l| l.starts_with("watched") && l.contains("Pending")), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_resources_lists_everything_served() {
    let sb = sandbox(true).await;
    let k = Kubectl::new(&sb);
    let out = k.ok(&["api-resources"]).await;
    let names: Vec<&str> = out.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    for r in [
        "namespaces",
        "pods",
        "services",
        "events",
        "replicationcontrollers",
        "deployments",
        "statefulsets",
        "replicasets",
        "leases",
        "customresourcedefinitions",
        "horizontalpodautoscalers",
        "gateways",
        "httproutes",
        "gatewayclasses",
    ] {
        assert!(names.contains(&r), "api-resources lacks {r}:\n{out}");
    }
    assert!(
        out.lines().any(|l| l.starts_with("deployments ") && l.contains("deploy") && l.contains("apps/v1")),
        "{out}"
    );
    // Every listed namespaced type can be listed by kubectl.
    let out = k.ok(&["get", "all", "-n", "demo"]).await;
    assert!(out.contains("deployment.apps/frontend"), "{out}");
    assert!(out.contains("statefulset.apps/cache"), "{out}");
    assert!(out.contains("replicationcontroller/legacy-rc"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_rollout_status_scale_and_restart() {
    let sb = sandbox(false).await;
    let ns = common::fresh_namespace(&sb);
    let k = Kubectl::new(&sb);
    let f = k.file(
        "db.yaml",
        &format!(
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\n  namespace: {ns}\nspec:\n  replicas: 3\n  \
             updateStrategy:\n    type: RollingUpdate\n  serviceName: db\n  selector:\n    matchLabels:\n      app: db\n  template:\n    metadata:\n      labels:\n        \
             app: db\n    spec:\n      containers:\n      - name: db\n        image: redis:7.2\n"
        ),
    );
    // updateStrategy is spelled out: the API server's defaulting of it is sbcore's (see the final report).
    k.ok(&["apply", "-f", &f.to_string_lossy()]).await;
    let out = k.ok(&["rollout", "status", "sts/db", "-n", &ns, "--timeout=30s"]).await;
    assert!(out.contains("roll out complete") || out.contains("rolling update complete"), "{out}");
    let names = k.ok(&["get", "pods", "-n", &ns, "-o", "name"]).await;
    assert_eq!(names.lines().collect::<Vec<_>>(), ["pod/db-0", "pod/db-1", "pod/db-2"]);
    // A restart changes the template: every ordinal is replaced, and the rollout finishes.
    let before = sb.store.get(&Gvr::pods(), &ns, "db-0").map(|p| p["metadata"]["uid"].clone());
    k.ok(&["rollout", "restart", "sts/db", "-n", &ns]).await;
    let out = k.ok(&["rollout", "status", "sts/db", "-n", &ns, "--timeout=30s"]).await;
    assert!(out.contains("complete"), "{out}");
    let after = sb.store.get(&Gvr::pods(), &ns, "db-0").map(|p| p["metadata"]["uid"].clone());
    assert_ne!(before, after, "db-0 was not replaced");
    k.ok(&["scale", "sts/db", "--replicas=1", "-n", &ns]).await;
    k.until(&["get", "pods", "-n", &ns, "-o", "name"], Duration::from_secs(10), |o| o.trim() == "pod/db-0")
        .await;
}
