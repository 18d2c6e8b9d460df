//! The README's first steps, run as a new user runs them: `machinist sandbox` (the test build of the binary
//! standing in for `cargo run --release --`), then the README's `curl` and `kubectl` blocks exactly as
//! written, each line through bash, after the `export KUBECONFIG=...` line the sandbox printed. Nothing is
//! applied by hand: the sandbox serves the ScaleRequest CRD itself.
//!
//! Two substitutions, both of what the user's machine provides: the REST port is a free one instead of 3042
//! (tests run in parallel), and `kubectl` is the pinned one (first on the PATH). `curl` lines are skipped,
//! with a message, where curl is not installed.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The fenced `bash` blocks of the README's "The two commands" section, in order.
fn first_steps() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("README.md");
    let start = readme.find("## The two commands").expect("the README has a \"The two commands\" section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    section
        .split("```bash\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap_or_default().to_string())
        .collect()
}

struct Sandbox(Child);

impl Drop for Sandbox {
    /// SIGTERM, as Ctrl-C would: the sandbox then removes the kubeconfig it wrote.
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

/// Runs `script` with bash as a user types it (`-e`: a failing line fails it; no pipefail, so `curl | head`
/// is fine) and returns its stdout. `home` keeps
/// kubectl's cache out of the user's ~/.kube.
fn bash(script: &str, path: &str, home: &Path) -> String {
    let out = Command::new("bash")
        .args(["-e", "-c", script])
        .current_dir(ROOT)
        .env("PATH", path)
        .env("HOME", home)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "README lines failed:\n{script}\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_readmes_first_steps_work_as_written() {
    let blocks = first_steps();
    assert!(blocks.len() >= 4, "sandbox, curl, kubectl and cargo test blocks: {blocks:?}");
    assert_eq!(blocks[0].trim(), "cargo run --release -- sandbox");
    let curls = &blocks[1];
    let kubectls = &blocks[2];
    assert!(curls.lines().all(|l| l.starts_with("curl ")), "{curls}");
    assert!(kubectls.lines().all(|l| l.starts_with("kubectl ")), "{kubectls}");
    assert_eq!(blocks[3].trim(), "cargo test");

    let home = tempfile::tempdir().expect("tempdir");
    let kubectl = common::tool("target/tools/kubectl/kubectl");
    let path = format!(
        "{}:{}",
        kubectl.parent().expect("kubectl's directory").display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_machinist"))
        .args(["sandbox", "--http-listen", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("machinist sandbox starts");
    let stdout = child.stdout.take().expect("stdout");
    let sandbox = Sandbox(child);
    // The banner: the API server, `export KUBECONFIG=...`, then the REST URL once the operator listens.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut export = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("the banner");
        if line.starts_with("export KUBECONFIG=") {
            export = Some(line);
        } else if line.starts_with("machinist REST API: ") {
            assert!(line.contains(&format!("http://127.0.0.1:{port}")), "{line}");
            break;
        }
    }
    let export = export.expect("the sandbox prints an export KUBECONFIG line");

    let rest = |script: &str| script.replace("127.0.0.1:3042", &format!("127.0.0.1:{port}"));
    let http = common::http();
    let ready = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = http.get(format!("http://127.0.0.1:{port}/health/readiness")).send().await;
            if r.is_ok_and(|r| r.status() == 200) {
                break;
            }
            assert!(Instant::now() < deadline, "the sandbox's operator is not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(ready);

    if Command::new("curl").arg("--version").output().is_ok() {
        let lines: Vec<&str> = curls.lines().collect();
        let controllers = bash(&rest(lines[0]), &path, home.path());
        // `head -c 600` of the demo's controllers.
        assert!(controllers.starts_with("{\"controllers\":[{\"name\":"), "{controllers}");
        let machines: serde_json::Value =
            serde_json::from_str(&bash(&rest(lines[1]), &path, home.path())).expect("JSON");
        let machines = machines.as_array().expect("an array of machines");
        assert!(!machines.is_empty() && machines.iter().all(|m| m["controller"]["name"] == "frontend"));
        let scaled: serde_json::Value =
            serde_json::from_str(&bash(&rest(lines[2]), &path, home.path())).expect("JSON");
        assert_eq!(scaled["replicas"], 5, "{scaled}");
    } else {
        eprintln!("SKIPPED the README's curl lines: curl is not installed");
    }

    let out = bash(&format!("{export}\n{kubectls}"), &path, home.path());
    assert!(out.contains("scalerequest.machinist.dev/scale-frontend created"), "{out}");
    assert!(out.contains("condition met"), "{out}");
    let row = out.lines().find(|l| l.starts_with("scale-frontend ")).expect("the get row");
    let row: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&row[..4], ["scale-frontend", "frontend", "4", "Succeeded"], "{out}");
    let replicas = bash(
        &format!("{export}\nkubectl get -n demo deployment/frontend -o jsonpath='{{.spec.replicas}}'"),
        &path,
        home.path(),
    );
    assert_eq!(replicas, "4", "the ScaleRequest scaled the Deployment");
    drop(sandbox);
}

/// The sandbox serves the CRD of `crds/` from the start, as after `helm install` (`machinist sandbox` sets
/// this; the test above runs it); `--no-crds` leaves the cluster without it, for trying an install by hand.
#[tokio::test]
async fn the_sandbox_serves_the_scalerequest_crd_unless_no_crds() {
    use machinist_sandbox::{Gvr, Sandbox, SandboxOptions};

    let shipped: serde_json::Value = serde_yaml::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("crds/scalerequest.yaml")).expect("crds/"),
    )
    .expect("the CRD parses");
    for crds in [true, false] {
        let sb = Sandbox::start(SandboxOptions { crds, ..Default::default() }).await.expect("sandbox starts");
        let crd = sb.store.get(&Gvr::crds(), "", "scalerequests.machinist.dev");
        assert_eq!(crd.is_some(), crds);
        if let Some(crd) = crd {
            assert_eq!(crd["spec"]["names"], shipped["spec"]["names"]);
            let columns = "/spec/versions/0/additionalPrinterColumns";
            assert_eq!(crd.pointer(columns), shipped.pointer(columns), "the shipped CRD, as it is");
        }
        sb.shutdown().await;
    }
}
