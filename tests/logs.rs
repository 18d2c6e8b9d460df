//! What a real `machinist run` writes to stderr when it is a file, as in a pod: no escape codes, one JSON
//! object per line with `--log-format json`, the startup line with the effective configuration (and no
//! secret), API requests at INFO and probes and scrapes only at DEBUG. On a terminal (a pty from
//! `script`), text logs are coloured unless NO_COLOR is set.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use sha2::Digest;
use tokio::process::Command;

/// `machinist run` against `kubeconfig` with stderr into `log`; returns its REST base URL once ready.
async fn run_until_ready(
    kubeconfig: &Path,
    log: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_machinist"));
    cmd.arg("run")
        .args(["--http-listen", &format!("127.0.0.1:{port}"), "--leader-election=false"])
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .env_remove("PLT_LOG_FORMAT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let stderr = std::fs::File::create(log).expect("log file");
    let child =
        cmd.stdout(Stdio::null()).stderr(stderr).kill_on_drop(true).spawn().expect("machinist run starts");
    let base = format!("http://127.0.0.1:{port}");
    let http = common::http();
    common::eventually("machinist is ready", Duration::from_secs(60), async || {
        http.get(format!("{base}/health/readiness")).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    (child, base)
}

/// A bearer token for `--auth-mode static`, which must never reach the log.
const TOKEN: &str = "s3cret-t0ken-never-logged";

/// The probes and scrape a kubelet and Prometheus make, and one API read.
async fn traffic(base: &str) {
    let http = common::http();
    for path in ["/health/startup", "/health/liveness", "/health/readiness", "/metrics", "/providers"] {
        let r = http.get(format!("{base}{path}")).bearer_auth(TOKEN).send().await.expect("request");
        assert_eq!(r.status(), 200, "{path}");
    }
}

async fn stop(mut child: tokio::process::Child) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(status.success());
    let exit =
        tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("exits").expect("wait");
    assert!(exit.success(), "{exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_in_a_file_have_no_escape_codes_a_startup_line_and_no_probe_noise() {
    let (sb, _client) = common::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, sb.kubeconfig_yaml()).expect("kubeconfig");
    let tokens = dir.path().join("tokens.yaml");
    let hash: String = sha2::Sha256::digest(TOKEN).iter().map(|b| format!("{b:02x}")).collect();
    let yaml = format!("tokens:\n  - identity: dashboard\n    sha256: {hash}\n    rights: [read]\n");
    std::fs::write(&tokens, yaml).expect("tokens file");
    let log = dir.path().join("json.log");

    let (child, base) = run_until_ready(
        &kubeconfig,
        &log,
        &["--namespaces", "default,demo", "--auth-mode", "static"],
        &[("PLT_LOG_FORMAT", "json"), ("PLT_AUTH_TOKENS_FILE", tokens.to_str().unwrap())],
    )
    .await;
    traffic(&base).await;
    stop(child).await;

    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!text.contains('\u{1b}'), "escape codes in a log file:\n{text}");
    assert!(!text.contains(TOKEN), "the token is logged:\n{text}");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let startup: Vec<&Value> = lines.iter().filter(|l| l["message"] == "machinist starting").collect();
    assert_eq!(startup.len(), 1, "one startup line:\n{text}");
    let s = startup[0];
    assert_eq!(s["level"], "INFO");
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["providers"], "k8s");
    assert_eq!(s["namespaces"], "default,demo");
    assert_eq!(s["auth_mode"], "static");
    assert_eq!(s["tokens_file"], tokens.to_str().unwrap());
    assert!(s["listen"].as_str().is_some_and(|l| l.starts_with("127.0.0.1:")), "{s}");
    assert_eq!(s["log_format"], "json");

    let requests: Vec<&str> =
        lines.iter().filter(|l| l["message"] == "request").filter_map(|l| l["route"].as_str()).collect();
    assert!(requests.contains(&"/providers"), "API requests are logged at INFO: {requests:?}");
    for quiet in ["/health/startup", "/health/liveness", "/health/readiness", "/metrics"] {
        assert!(!requests.contains(&quiet), "{quiet} logged at INFO:\n{text}");
    }
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_in_a_file_have_no_escape_codes_and_probes_show_at_debug() {
    let (sb, _client) = common::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, sb.kubeconfig_yaml()).expect("kubeconfig");
    let log = dir.path().join("text.log");

    let (child, base) =
        run_until_ready(&kubeconfig, &log, &[], &[("RUST_LOG", "info,machinist::api=debug")]).await;
    traffic(&base).await;
    stop(child).await;

    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!text.contains('\u{1b}'), "escape codes in a log file:\n{text}");
    let startup: Vec<&str> = text.lines().filter(|l| l.contains("machinist starting")).collect();
    assert_eq!(startup.len(), 1, "{text}");
    assert!(startup[0].contains(" INFO ") && startup[0].contains("namespaces=\"all\""), "{}", startup[0]);
    let probe = text.lines().find(|l| l.contains("route=/health/readiness")).expect("the probe at debug");
    assert!(probe.contains("DEBUG"), "{probe}");
    sb.shutdown().await;
}

/// `script` gives the process a pty for stderr: colour there, none with NO_COLOR. The operator logs its
/// startup line, then stops on a kubeconfig that does not parse: all this needs, with nothing left running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colour_only_on_a_terminal_without_no_color() {
    if std::process::Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: `script` (util-linux) is not installed: no pty to test colour on");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, "not: [a kubeconfig").expect("kubeconfig");
    let binary = env!("CARGO_BIN_EXE_machinist");
    for (no_color, coloured) in [(None, true), (Some("1"), false)] {
        let typescript = dir.path().join("typescript");
        let mut cmd = Command::new("script");
        cmd.args(["--quiet", "--command", &format!("{binary} run --http-listen 127.0.0.1:0")])
            .arg(&typescript)
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("PLT_LOG_FORMAT")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        match no_color {
            Some(v) => cmd.env("NO_COLOR", v),
            None => cmd.env_remove("NO_COLOR"),
        };
        let out =
            tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.expect("ends").expect("script");
        assert!(out.status.success(), "script: {out:?}");
        let text = std::fs::read_to_string(&typescript).expect("typescript");
        assert!(text.contains("machinist starting"), "{text}");
        assert_eq!(text.contains('\u{1b}'), coloured, "NO_COLOR={no_color:?}:\n{text}");
    }
}
