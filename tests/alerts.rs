//! The example alert rules (`docs/alerts.yaml`) are valid Prometheus rules and behave as their unit tests
//! (`tests/alerts/alerts.test.yaml`) say, checked with `promtool`: the watch alert fires exactly when the
//! readiness rule fails a watcher.
//!
//! promtool comes from Debian's `prometheus` package (`.ci/run` installs it); where it is absent the tests
//! say so and pass without checking.

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `promtool ARGS` from the repository root, or `None` (with a message) where promtool is not installed.
fn promtool(args: &[&str]) -> Option<String> {
    let out = match Command::new("promtool").args(args).current_dir(ROOT).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "SKIPPED: promtool is not installed (Debian: apt-get install prometheus); .ci/run installs it"
            );
            return None;
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    Some(text)
}

#[test]
fn alert_rules_pass_promtool_check() {
    for file in ["docs/alerts.yaml", "charts/machinist/files/alerts.yaml"] {
        assert!(Path::new(ROOT).join(file).is_file(), "{file}");
        if let Some(out) = promtool(&["check", "rules", file]) {
            assert!(out.contains("SUCCESS"), "{file}: {out}");
        }
    }
}

#[test]
fn alert_rules_pass_their_unit_tests() {
    if let Some(out) = promtool(&["test", "rules", "tests/alerts/alerts.test.yaml"]) {
        assert!(out.contains("SUCCESS"), "{out}");
    }
}
