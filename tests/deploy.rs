//! The deployment artefacts: the Helm chart and the kustomize overlays lint, render and validate against the
//! Kubernetes 1.32 schemas, carry the hardening and RBAC they promise, and share one set of RBAC rules.
//!
//! Runs `tools/install-tools.sh` once (under a file lock) when helm, kubectl, kubernetes-validate or yamllint
//! are missing. Talks to no cluster: applying the manifests to the sandbox is a separate test.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use clap::{CommandFactory, Parser};
use serde::Deserialize;
use serde_yaml::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/machinist");
const OVERLAYS: [&str; 4] = ["cluster-wide", "single-namespace", "ecs", "kubernetes-auth"];

struct Tools {
    helm: PathBuf,
    kubectl: PathBuf,
    validate: PathBuf,
    yamllint: PathBuf,
}

fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| Tools {
        helm: common::tool("target/tools/helm/helm"),
        kubectl: common::tool("target/tools/kubectl/kubectl"),
        validate: common::tool(".venv/tools/bin/kubernetes-validate"),
        yamllint: common::tool(".venv/tools/bin/yamllint"),
    })
}

/// Runs a command and returns its stdout; panics with its stderr when it fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// `helm template` of the chart (CRDs included) with extra `--set`-style arguments.
fn helm_template(args: &[&str]) -> String {
    run(Command::new(&tools().helm)
        .args(["template", "rel", CHART, "--namespace", "ops", "--include-crds"])
        .args(args))
}

fn helm_template_fails(args: &[&str]) -> String {
    let out = Command::new(&tools().helm)
        .args(["template", "rel", CHART, "--namespace", "ops"])
        .args(args)
        .output()
        .expect("run helm");
    assert!(!out.status.success(), "helm template {args:?} should fail but rendered");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn kustomize(dir: &str) -> String {
    run(Command::new(&tools().kubectl).args(["kustomize", &format!("{ROOT}/config/{dir}")]))
}

/// Validates rendered manifests against the Kubernetes 1.32 schemas, strictly (unknown fields fail).
fn validate(label: &str, manifests: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(format!("{label}.yaml"));
    std::fs::write(&path, manifests).expect("write rendered manifests");
    let out = run(Command::new(&tools().validate).args(["-k", "1.32.0", "--strict", "--quiet"]).arg(&path));
    // kubernetes-validate only warns on kinds it has no schema for, so a typo in an apiVersion would pass:
    // only the Prometheus Operator's kinds may be unknown.
    for line in out.lines().filter(|l| l.contains("WARN")) {
        assert!(line.contains("monitoring.coreos.com/v1"), "{label}: unexpected warning: {line}");
    }
}

fn objects(manifests: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(manifests)
        .map(|d| Value::deserialize(d).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

fn kind_of(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or_default()
}

fn all_of<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| kind_of(d) == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<_> =
        docs.iter().filter(|d| kind_of(d) == kind && d["metadata"]["name"].as_str() == Some(name)).collect();
    assert_eq!(found.len(), 1, "expected exactly one {kind} {name}");
    found[0]
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| s.iter().filter_map(|x| x.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// A role's rules as a set of (apiGroup, resource, verb, resourceName or "*"): the same grants written with
/// rules grouped differently compare equal.
fn grants(role: &Value) -> BTreeSet<(String, String, String, String)> {
    let mut set = BTreeSet::new();
    for rule in role["rules"].as_sequence().expect("rules") {
        let names = strings(&rule["resourceNames"]);
        let names = if names.is_empty() { vec!["*".to_string()] } else { names };
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                for v in strings(&rule["verbs"]) {
                    for n in &names {
                        set.insert((g.clone(), r.clone(), v.clone(), n.clone()));
                    }
                }
            }
        }
    }
    set
}

fn base_clusterrole_grants() -> BTreeSet<(String, String, String, String)> {
    let base = objects(&kustomize("base"));
    grants(one(&base, "ClusterRole", "machinist"))
}

fn env<'a>(deployment: &'a Value, name: &str) -> Option<&'a Value> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()?
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
}

fn env_value(deployment: &Value, name: &str) -> Option<String> {
    env(deployment, name).and_then(|e| e["value"].as_str().map(String::from))
}

/// The hardening and wiring every rendered machinist Deployment must have.
fn assert_hardened(label: &str, deployment: &Value) {
    let pod = &deployment["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], Value::Bool(true), "{label}");
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"].as_str(), Some("RuntimeDefault"), "{label}");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], Value::Bool(true), "{label}");
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], Value::Bool(false), "{label}");
    assert_eq!(strings(&c["securityContext"]["capabilities"]["drop"]), ["ALL"], "{label}");
    for (probe, path) in [
        ("startupProbe", "/health/startup"),
        ("livenessProbe", "/health/liveness"),
        ("readinessProbe", "/health/readiness"),
    ] {
        assert_eq!(c[probe]["httpGet"]["path"].as_str(), Some(path), "{label}: {probe}");
        assert_eq!(c[probe]["httpGet"]["port"].as_str(), Some("http"), "{label}: {probe}");
    }
    assert_eq!(c["ports"][0]["containerPort"].as_u64(), Some(3042), "{label}");
    // machinist serves through the shutdown delay itself; a preStop sleep would also hold the Lease.
    assert!(c["lifecycle"]["preStop"].is_null(), "{label}: no preStop hook");
    let delay: u64 = env_value(deployment, "PLT_SHUTDOWN_DELAY_SECS")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{label}: PLT_SHUTDOWN_DELAY_SECS"));
    assert_eq!(delay, 5, "{label}: shutdown delay");
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    assert!(grace >= delay + 15, "{label}: terminationGracePeriodSeconds {grace} < delay + 10 s drain + 5 s");
    assert_eq!(strings(&c["args"]), ["run"], "{label}");
    assert!(c["resources"]["requests"]["memory"].is_string(), "{label}: memory request");
    assert!(c["resources"]["limits"]["memory"].is_string(), "{label}: memory limit");
    assert_eq!(env_value(deployment, "PLT_LISTEN").as_deref(), Some("0.0.0.0:3042"), "{label}");
    let pod_name = env(deployment, "POD_NAME").expect("POD_NAME");
    assert_eq!(pod_name["valueFrom"]["fieldRef"]["fieldPath"].as_str(), Some("metadata.name"), "{label}");
    let lease_ns = env(deployment, "PLT_LEASE_NAMESPACE").expect("PLT_LEASE_NAMESPACE");
    assert_eq!(
        lease_ns["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("metadata.namespace"),
        "{label}"
    );
}

/// Values combinations worth rendering: each turns on a different set of templates.
const COMBINATIONS: &[(&str, &[&str])] = &[
    ("default", &[]),
    ("namespaced", &["--set", "watchNamespaces={team-a,team-b}"]),
    (
        "ecs",
        &[
            "--set",
            "providers={k8s,ecs}",
            "--set",
            "ecs.region=eu-west-1",
            "--set",
            "ecs.clusters={prod,staging}",
            "--set-string",
            "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::111122223333:role/machinist",
        ],
    ),
    (
        "monitoring-auth",
        &[
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "prometheusRule.enabled=true",
            "--set",
            "auth.mode=kubernetes",
        ],
    ),
    (
        "static-auth",
        &[
            "--set",
            "auth.mode=static",
            "--set",
            "auth.tokensSecret.name=machinist-tokens",
            "--set",
            "rateLimits.writes.identity=50",
            "--set",
            "rateLimits.reads.global=0",
            "--set",
            "trustedProxyHops=1",
        ],
    ),
    (
        "minimal",
        &[
            "--set",
            "rbac.create=false",
            "--set",
            "serviceAccount.create=false",
            "--set",
            "serviceAccount.name=existing",
            "--set",
            "podDisruptionBudget.enabled=false",
            "--set",
            "networkPolicy.enabled=false",
            "--set",
            "leaderElection.enabled=false",
            "--set",
            "replicaCount=1",
            "--set",
            "extraEnv[0].name=HTTPS_PROXY",
            "--set",
            "extraEnv[0].value=http://proxy:3128",
        ],
    ),
    (
        "openshift",
        &[
            "--set",
            "podSecurityContext.runAsUser=null",
            "--set",
            "podSecurityContext.runAsGroup=null",
            "--set",
            "logFormat=json",
            "--set",
            "rbac.aggregateToDefaultRoles=false",
        ],
    ),
];

#[test]
fn helm_lint_strict_passes_for_each_values_combination() {
    for (label, args) in COMBINATIONS {
        let out = run(Command::new(&tools().helm).args(["lint", "--strict", CHART]).args(*args));
        assert!(out.contains("0 chart(s) failed"), "{label}: {out}");
    }
}

#[test]
fn chart_renders_valid_hardened_manifests_for_each_values_combination() {
    for (label, args) in COMBINATIONS {
        let rendered = helm_template(args);
        validate(&format!("chart-{label}"), &rendered);
        let docs = objects(&rendered);
        let deployment = one(&docs, "Deployment", "rel-machinist");
        assert_hardened(label, deployment);
        assert_eq!(
            one(&docs, "CustomResourceDefinition", "scalerequests.machinist.dev")["kind"],
            "CustomResourceDefinition"
        );
    }
}

#[test]
fn default_chart_install_is_two_replicas_with_pdb_and_network_policy() {
    let docs = objects(&helm_template(&[]));
    let deployment = one(&docs, "Deployment", "rel-machinist");
    assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(2));
    assert_eq!(deployment["metadata"]["namespace"].as_str(), Some("ops"));
    assert_eq!(env_value(deployment, "PLT_PROVIDER").as_deref(), Some("k8s"));
    assert_eq!(env_value(deployment, "PLT_K8S_NAMESPACES").as_deref(), Some(""));
    assert_eq!(env_value(deployment, "PLT_LEADER_ELECTION").as_deref(), Some("true"));
    assert_eq!(env_value(deployment, "PLT_AUTH_MODE").as_deref(), Some("none"));
    assert!(env(deployment, "PLT_ECS_REGION").is_none(), "no ECS settings without the ecs provider");
    assert_eq!(one(&docs, "PodDisruptionBudget", "rel-machinist")["spec"]["minAvailable"].as_u64(), Some(1));
    let np = one(&docs, "NetworkPolicy", "rel-machinist");
    let from = np["spec"]["ingress"][0]["from"].as_sequence().expect("ingress peers");
    assert_eq!(from.len(), 2, "the configured clients and Prometheus");
    assert_eq!(from[0]["podSelector"]["matchLabels"]["machinist.dev/client"].as_str(), Some("true"));
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["port"].as_str(), Some("http"));
    let service = one(&docs, "Service", "rel-machinist");
    assert_eq!(service["spec"]["ports"][0]["port"].as_u64(), Some(3042));
    assert!(all_of(&docs, "ServiceMonitor").is_empty() && all_of(&docs, "PrometheusRule").is_empty());
    // No auth-delegator binding unless auth.mode is kubernetes.
    assert!(
        all_of(&docs, "ClusterRoleBinding").iter().all(|b| b["roleRef"]["name"] != "system:auth-delegator")
    );
}

#[test]
fn kustomize_overlays_render_valid_hardened_manifests() {
    for overlay in OVERLAYS {
        let rendered = kustomize(&format!("overlays/{overlay}"));
        validate(&format!("kustomize-{overlay}"), &rendered);
        let docs = objects(&rendered);
        let deployment = one(&docs, "Deployment", "machinist");
        assert_hardened(overlay, deployment);
        assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(2), "{overlay}");
        one(&docs, "CustomResourceDefinition", "scalerequests.machinist.dev");
        one(&docs, "PodDisruptionBudget", "machinist");
        one(&docs, "NetworkPolicy", "machinist");
    }
}

#[test]
fn chart_clusterrole_grants_exactly_the_kustomize_base_rules() {
    let base = base_clusterrole_grants();
    assert!(!base.is_empty());
    let chart = objects(&helm_template(&[]));
    assert_eq!(grants(one(&chart, "ClusterRole", "rel-machinist")), base);
    // Secrets are written by server-side apply only: never readable.
    let secrets: Vec<_> = base.iter().filter(|(g, r, _, _)| g.is_empty() && r == "secrets").collect();
    assert!(secrets.iter().all(|(_, _, v, _)| v == "create" || v == "patch"), "{secrets:?}");
    // Both bind the ClusterRole to machinist's ServiceAccount.
    let binding = one(&chart, "ClusterRoleBinding", "rel-machinist");
    assert_eq!(binding["subjects"][0]["name"].as_str(), Some("rel-machinist"));
    assert_eq!(binding["subjects"][0]["namespace"].as_str(), Some("ops"));
}

#[test]
fn namespaced_installs_use_roles_with_the_clusterrole_rules_minus_namespaces() {
    let expected: BTreeSet<_> = base_clusterrole_grants()
        .into_iter()
        .filter(|(g, r, _, _)| !(g.is_empty() && r == "namespaces"))
        .collect();

    let chart = objects(&helm_template(&["--set", "watchNamespaces={team-a,team-b}"]));
    assert!(
        all_of(&chart, "ClusterRole").iter().all(|r| aggregated(r)),
        "no cluster-wide grants when namespaces are listed (the aggregated user roles grant machinist nothing)"
    );
    assert!(all_of(&chart, "ClusterRoleBinding").is_empty());
    let roles: Vec<_> =
        all_of(&chart, "Role").into_iter().filter(|r| r["metadata"]["name"] == "rel-machinist").collect();
    let namespaces: BTreeSet<_> = roles.iter().filter_map(|r| r["metadata"]["namespace"].as_str()).collect();
    assert_eq!(namespaces, BTreeSet::from(["team-a", "team-b"]));
    for role in roles {
        assert_eq!(grants(role), expected);
    }
    let deployment = one(&chart, "Deployment", "rel-machinist");
    assert_eq!(env_value(deployment, "PLT_K8S_NAMESPACES").as_deref(), Some("team-a,team-b"));

    let overlay = objects(&kustomize("overlays/single-namespace"));
    assert!(all_of(&overlay, "ClusterRole").iter().all(|r| aggregated(r)));
    assert!(all_of(&overlay, "ClusterRoleBinding").is_empty());
    assert_eq!(grants(one(&overlay, "Role", "machinist")), expected);
    let deployment = one(&overlay, "Deployment", "machinist");
    assert_eq!(env_value(deployment, "PLT_K8S_NAMESPACES").as_deref(), Some("machinist"));
}

#[test]
fn leader_election_is_a_role_on_one_lease_in_the_install_namespace() {
    let base = objects(&kustomize("base"));
    let chart = objects(&helm_template(&[]));
    let kustomized = one(&base, "Role", "machinist-leader-election");
    let charted = one(&chart, "Role", "rel-machinist-leader-election");
    assert_eq!(grants(kustomized), grants(charted));
    assert_eq!(charted["metadata"]["namespace"].as_str(), Some("ops"));
    let g = grants(charted);
    let on_lease = |verb: &str, name: &str| {
        ("coordination.k8s.io".to_string(), "leases".to_string(), verb.to_string(), name.to_string())
    };
    assert!(g.contains(&on_lease("update", "machinist-leader")) && g.contains(&on_lease("create", "*")));
    assert!(
        !g.iter().any(|(_, _, v, n)| v != "create" && n == "*"),
        "get/update only on machinist-leader: {g:?}"
    );
    // No lease rule cluster-wide.
    assert!(!base_clusterrole_grants().iter().any(|(g, _, _, _)| g == "coordination.k8s.io"));

    let off = objects(&helm_template(&["--set", "leaderElection.enabled=false"]));
    assert!(all_of(&off, "Role").is_empty());
    assert_eq!(
        env_value(one(&off, "Deployment", "rel-machinist"), "PLT_LEADER_ELECTION").as_deref(),
        Some("false")
    );
}

#[test]
fn ecs_settings_reach_the_environment_and_are_required_together() {
    let docs = objects(&helm_template(COMBINATIONS[2].1));
    let deployment = one(&docs, "Deployment", "rel-machinist");
    assert_eq!(env_value(deployment, "PLT_PROVIDER").as_deref(), Some("k8s,ecs"));
    assert_eq!(env_value(deployment, "PLT_ECS_REGION").as_deref(), Some("eu-west-1"));
    assert_eq!(env_value(deployment, "PLT_ECS_CLUSTERS").as_deref(), Some("prod,staging"));
    assert_eq!(env_value(deployment, "PLT_ECS_POLL_INTERVAL_SECS").as_deref(), Some("5"));
    let sa = one(&docs, "ServiceAccount", "rel-machinist");
    assert!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
            .as_str()
            .is_some_and(|a| a.contains(":role/"))
    );

    let err = helm_template_fails(&["--set", "providers={ecs}", "--set", "ecs.clusters={prod}"]);
    assert!(err.contains("ecs.region is required"), "{err}");
    let err = helm_template_fails(&["--set", "providers={ecs}", "--set", "ecs.region=us-east-1"]);
    assert!(err.contains("ecs.clusters is required"), "{err}");

    let overlay = objects(&kustomize("overlays/ecs"));
    let deployment = one(&overlay, "Deployment", "machinist");
    assert_eq!(env_value(deployment, "PLT_PROVIDER").as_deref(), Some("k8s,ecs"));
    assert!(
        env_value(deployment, "PLT_ECS_REGION").is_some()
            && env_value(deployment, "PLT_ECS_CLUSTERS").is_some()
    );
    let sa = one(&overlay, "ServiceAccount", "machinist");
    assert!(sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].is_string());
}

#[test]
fn values_schema_rejects_invalid_values() {
    for (args, needle) in [
        (&["--set", "replicaCount=one"][..], "replicaCount"),
        (&["--set", "auth.mode=bogus"][..], "auth"),
        (&["--set", "providers={gke}"][..], "providers"),
        (&["--set", "watchNamespaces={Bad_NS}"][..], "watchNamespaces"),
        (&["--set", "replicaCont=3"][..], "replicaCont"),
        (&["--set", "rateLimits.writes.identity=-1"][..], "rateLimits"),
        (&["--set", "rateLimits.writes.perIp=5"][..], "perIp"),
        (&["--set", "trustedProxyHops=two"][..], "trustedProxyHops"),
        (&["--set", "auth.tokensSecret.name=Bad_Name"][..], "tokensSecret"),
    ] {
        let err = helm_template_fails(args);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn the_grace_period_covers_the_shutdown_delay_and_the_drain() {
    let docs = objects(&helm_template(&[
        "--set",
        "shutdownDelaySeconds=20",
        "--set",
        "terminationGracePeriodSeconds=40",
    ]));
    let deployment = one(&docs, "Deployment", "rel-machinist");
    assert_eq!(env_value(deployment, "PLT_SHUTDOWN_DELAY_SECS").as_deref(), Some("20"));
    let err = helm_template_fails(&["--set", "shutdownDelaySeconds=20"]);
    assert!(err.contains("terminationGracePeriodSeconds must be at least"), "{err}");
}

#[test]
fn auth_mode_kubernetes_binds_the_auth_delegator_role() {
    let docs = objects(&helm_template(&["--set", "auth.mode=kubernetes"]));
    let binding = one(&docs, "ClusterRoleBinding", "rel-machinist-auth-delegator");
    assert_eq!(binding["roleRef"]["name"].as_str(), Some("system:auth-delegator"));
    let deployment = one(&docs, "Deployment", "rel-machinist");
    assert_eq!(env_value(deployment, "PLT_AUTH_MODE").as_deref(), Some("kubernetes"));
}

#[test]
fn auth_mode_kubernetes_overlay_binds_the_auth_delegator_role() {
    let docs = objects(&kustomize("overlays/kubernetes-auth"));
    let binding = one(&docs, "ClusterRoleBinding", "machinist-auth-delegator");
    assert_eq!(binding["roleRef"]["name"].as_str(), Some("system:auth-delegator"));
    assert_eq!(binding["subjects"][0]["name"].as_str(), Some("machinist"));
    let deployment = one(&docs, "Deployment", "machinist");
    assert_eq!(env_value(deployment, "PLT_AUTH_MODE").as_deref(), Some("kubernetes"));
    // The other installs do not delegate.
    for overlay in ["cluster-wide", "single-namespace", "ecs"] {
        let docs = objects(&kustomize(&format!("overlays/{overlay}")));
        assert!(
            all_of(&docs, "ClusterRoleBinding")
                .iter()
                .all(|b| b["roleRef"]["name"] != "system:auth-delegator"),
            "{overlay}"
        );
    }
}

/// The default of a `run` flag, by its environment variable, as the binary has it.
fn binary_default(env_name: &str) -> String {
    let cli = machinist::config::Cli::command();
    let run = cli.find_subcommand("run").expect("a run subcommand");
    let arg = run
        .get_arguments()
        .find(|a| a.get_env().and_then(|e| e.to_str()) == Some(env_name))
        .unwrap_or_else(|| panic!("no flag reads {env_name}"));
    arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect::<Vec<_>>().join(",")
}

const EDGE_ENV: [&str; 7] = [
    "PLT_RATE_LIMIT_WRITES_IDENTITY",
    "PLT_RATE_LIMIT_WRITES_IP",
    "PLT_RATE_LIMIT_WRITES_GLOBAL",
    "PLT_RATE_LIMIT_READS_IDENTITY",
    "PLT_RATE_LIMIT_READS_IP",
    "PLT_RATE_LIMIT_READS_GLOBAL",
    "PLT_TRUSTED_PROXY_HOPS",
];

#[test]
fn default_installs_pass_the_binarys_own_rate_limits_and_no_tokens_file() {
    let chart = objects(&helm_template(&[]));
    let base = objects(&kustomize("base"));
    for (label, deployment) in [
        ("chart", one(&chart, "Deployment", "rel-machinist")),
        ("kustomize", one(&base, "Deployment", "machinist")),
    ] {
        for name in EDGE_ENV {
            assert_eq!(env_value(deployment, name), Some(binary_default(name)), "{label}: {name}");
        }
        assert!(env(deployment, "PLT_AUTH_TOKENS_FILE").is_none(), "{label}: no tokens file without static");
        let volumes = &deployment["spec"]["template"]["spec"]["volumes"];
        assert!(strings_at(volumes, "name").iter().all(|v| v != "auth-tokens"), "{label}: {volumes:?}");
    }
}

fn strings_at(list: &Value, key: &str) -> Vec<String> {
    list.as_sequence()
        .map(|s| s.iter().filter_map(|x| x[key].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

#[test]
fn static_auth_mounts_the_tokens_secret_and_passes_the_limits() {
    let docs =
        objects(&helm_template(COMBINATIONS.iter().find(|(l, _)| *l == "static-auth").expect("combo").1));
    let deployment = one(&docs, "Deployment", "rel-machinist");
    assert_eq!(env_value(deployment, "PLT_AUTH_MODE").as_deref(), Some("static"));
    let file = env_value(deployment, "PLT_AUTH_TOKENS_FILE").expect("PLT_AUTH_TOKENS_FILE");
    assert_eq!(file, "/etc/machinist/auth/tokens.yaml");
    let pod = &deployment["spec"]["template"]["spec"];
    let mount = pod["containers"][0]["volumeMounts"]
        .as_sequence()
        .and_then(|m| m.iter().find(|m| m["name"] == "auth-tokens"))
        .expect("the tokens volume is mounted");
    let dir = mount["mountPath"].as_str().expect("mountPath");
    assert_eq!(Path::new(&file).parent(), Some(Path::new(dir)), "the file is in the mounted directory");
    assert_eq!(mount["readOnly"], Value::Bool(true));
    // A subPath mount would never see an edited Secret, and machinist reloads the file on change.
    assert!(mount.get("subPath").is_none(), "{mount:?}");
    let volume = pod["volumes"]
        .as_sequence()
        .and_then(|v| v.iter().find(|v| v["name"] == "auth-tokens"))
        .expect("the tokens volume");
    assert_eq!(volume["secret"]["secretName"].as_str(), Some("machinist-tokens"));
    assert_eq!(volume["secret"]["items"][0]["key"].as_str(), Some("tokens.yaml"));
    assert_eq!(volume["secret"]["items"][0]["path"].as_str(), Some("tokens.yaml"));
    for (name, value) in [
        ("PLT_RATE_LIMIT_WRITES_IDENTITY", "50"),
        ("PLT_RATE_LIMIT_WRITES_IP", "300"),
        ("PLT_RATE_LIMIT_READS_GLOBAL", "0"),
        ("PLT_TRUSTED_PROXY_HOPS", "1"),
    ] {
        assert_eq!(env_value(deployment, name).as_deref(), Some(value), "{name}");
    }
    // Large limits render as integers, not 1e+06.
    let docs = objects(&helm_template(&["--set", "rateLimits.reads.global=1000000"]));
    let deployment = one(&docs, "Deployment", "rel-machinist");
    assert_eq!(env_value(deployment, "PLT_RATE_LIMIT_READS_GLOBAL").as_deref(), Some("1000000"));

    let err = helm_template_fails(&["--set", "auth.mode=static"]);
    assert!(err.contains("auth.tokensSecret.name is required"), "{err}");
}

#[test]
fn install_notes_tell_how_to_reach_the_api() {
    let out = run(Command::new(&tools().helm).args([
        "install",
        "machinist",
        CHART,
        "--namespace",
        "tools",
        "--dry-run=client",
        "--set",
        "watchNamespaces={team-a}",
    ]));
    let notes = out.split("NOTES:").nth(1).expect("helm prints NOTES");
    for needed in [
        "kubectl -n tools port-forward service/machinist 3042:3042",
        "curl -s http://127.0.0.1:3042/providers",
        "http://machinist.tools.svc:3042",
        "watching namespaces team-a",
        "machinist.dev/client=true",
    ] {
        assert!(notes.contains(needed), "NOTES lack {needed:?}:\n{notes}");
    }
}

/// The binary's `run` flags by the environment variable each falls back to.
fn run_flags_by_env() -> BTreeMap<String, String> {
    let cli = machinist::config::Cli::command();
    let run = cli.find_subcommand("run").expect("a run subcommand");
    run.get_arguments()
        .filter_map(|a| Some((a.get_env()?.to_str()?.to_string(), a.get_long()?.to_string())))
        .collect()
}

/// Environment variables the manifests set that the binary does not read yet, each with its reason.
const NOT_YET_READ: &[&str] = &[];

/// Every machinist setting a rendered Deployment passes is one the binary knows (clap ignores an unknown or
/// misspelt variable silently), and its value parses: the same value given as the flag must be accepted.
fn assert_binary_accepts(label: &str, deployment: &Value, flags: &BTreeMap<String, String>) {
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut argv: Vec<String> = vec!["machinist".into()];
    argv.extend(strings(&container["args"]));
    for e in container["env"].as_sequence().expect("env") {
        let name = e["name"].as_str().expect("env name");
        if !(name.starts_with("PLT_") || name == "POD_NAME") || NOT_YET_READ.contains(&name) {
            continue;
        }
        let long = flags.get(name).unwrap_or_else(|| panic!("{label}: machinist does not read {name}"));
        // Downward-API values stand in as what the kubelet would fill in.
        let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("metadata.name") => "machinist-5d8f7-abcde".to_string(),
            Some("metadata.namespace") => "ops".to_string(),
            Some(other) => panic!("{label}: unexpected fieldRef {other}"),
            None => e["value"].as_str().unwrap_or_else(|| panic!("{label}: {name} has no value")).to_string(),
        };
        argv.push(format!("--{long}={value}"));
    }
    if let Err(e) = machinist::config::Cli::try_parse_from(&argv) {
        panic!("{label}: machinist rejects the manifest's configuration {argv:?}:\n{e}");
    }
}

#[test]
fn the_binary_accepts_the_configuration_every_install_gives_it() {
    let flags = run_flags_by_env();
    for name in ["PLT_LISTEN", "PLT_PROVIDER", "PLT_K8S_NAMESPACES", "POD_NAME"] {
        assert!(flags.contains_key(name), "the run subcommand no longer reads {name}: {flags:?}");
    }
    for (label, args) in COMBINATIONS {
        let docs = objects(&helm_template(args));
        assert_binary_accepts(label, one(&docs, "Deployment", "rel-machinist"), &flags);
    }
    for overlay in OVERLAYS {
        let docs = objects(&kustomize(&format!("overlays/{overlay}")));
        assert_binary_accepts(overlay, one(&docs, "Deployment", "machinist"), &flags);
    }
}

#[test]
fn chart_and_kustomize_crds_are_copies_of_the_generated_crd() {
    let generated = std::fs::read_to_string(format!("{ROOT}/crds/scalerequest.yaml")).expect("crds/");
    for copy in [format!("{CHART}/crds/scalerequest.yaml"), format!("{ROOT}/config/crd/scalerequest.yaml")] {
        let text = std::fs::read_to_string(&copy).unwrap_or_else(|e| panic!("{copy}: {e}"));
        assert!(generated == text, "{copy} is stale: run `just generate`");
    }
}

/// `kubectl apply -f crds/` applies every file of the directory: each must be a Kubernetes object (a
/// kustomization there made that command fail).
#[test]
fn crds_directory_holds_only_kubernetes_objects() {
    for entry in std::fs::read_dir(format!("{ROOT}/crds")).expect("crds/") {
        let path = entry.expect("dir entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        for doc in objects(&text) {
            assert_eq!(kind_of(&doc), "CustomResourceDefinition", "{}", path.display());
            assert_eq!(doc["apiVersion"].as_str(), Some("apiextensions.k8s.io/v1"), "{}", path.display());
        }
    }
}

fn aggregated(role: &Value) -> bool {
    role["metadata"]["labels"]
        .as_mapping()
        .is_some_and(|l| l.keys().any(|k| k.as_str().is_some_and(|k| k.contains("/aggregate-to-"))))
}

fn label(v: &Value, key: &str) -> Option<String> {
    v["metadata"]["labels"][key].as_str().map(String::from)
}

/// The chart and kustomize add ScaleRequests to the built-in view, edit and admin roles with the same rules;
/// the chart only while rbac.create and rbac.aggregateToDefaultRoles are on.
#[test]
fn scalerequests_are_aggregated_into_the_default_view_and_edit_roles() {
    let chart = objects(&helm_template(&[]));
    let base = objects(&kustomize("base"));
    let to = |role: &str| format!("rbac.authorization.k8s.io/aggregate-to-{role}");
    for (suffix, into, verbs) in [
        ("view", &["view", "edit", "admin"][..], &["get", "list", "watch"][..]),
        ("edit", &["edit", "admin"][..], &["create", "update", "patch", "delete", "deletecollection"][..]),
    ] {
        let charted = one(&chart, "ClusterRole", &format!("rel-machinist-scalerequests-{suffix}"));
        let kustomized = one(&base, "ClusterRole", &format!("machinist-scalerequests-{suffix}"));
        assert_eq!(grants(charted), grants(kustomized), "{suffix}");
        let expected: BTreeSet<_> = verbs
            .iter()
            .map(|v| {
                ("machinist.dev".to_string(), "scalerequests".to_string(), v.to_string(), "*".to_string())
            })
            .collect();
        assert_eq!(grants(charted), expected, "{suffix}: ScaleRequests only, never their status");
        for role in into {
            assert_eq!(label(charted, &to(role)).as_deref(), Some("true"), "{suffix} into {role}");
            assert_eq!(label(kustomized, &to(role)).as_deref(), Some("true"), "{suffix} into {role}");
        }
        if suffix == "edit" {
            assert!(label(charted, &to("view")).is_none(), "viewers may not create ScaleRequests");
        }
    }
    for off in ["rbac.aggregateToDefaultRoles=false", "rbac.create=false"] {
        let docs = objects(&helm_template(&["--set", off]));
        assert!(!all_of(&docs, "ClusterRole").iter().any(|r| aggregated(r)), "{off}");
    }
}

/// OpenShift's restricted SCC assigns the UID: both securityContexts are values, and the defaults are the
/// hardened ones (assert_hardened, for every combination).
#[test]
fn security_contexts_and_the_log_format_are_values() {
    let docs =
        objects(&helm_template(COMBINATIONS.iter().find(|(l, _)| *l == "openshift").expect("combo").1));
    let deployment = one(&docs, "Deployment", "rel-machinist");
    let pod = &deployment["spec"]["template"]["spec"]["securityContext"];
    assert!(pod.get("runAsUser").is_none() && pod.get("runAsGroup").is_none(), "{pod:?}");
    assert_eq!(env_value(deployment, "PLT_LOG_FORMAT").as_deref(), Some("json"));

    let docs = objects(&helm_template(&[]));
    let deployment = one(&docs, "Deployment", "rel-machinist");
    let pod = &deployment["spec"]["template"]["spec"]["securityContext"];
    assert_eq!(pod["runAsUser"].as_u64(), Some(65532));
    assert_eq!(env_value(deployment, "PLT_LOG_FORMAT").as_deref(), Some("text"));
    let docs = objects(&helm_template(&["--set", "securityContext.readOnlyRootFilesystem=false"]));
    let container = &one(&docs, "Deployment", "rel-machinist")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], Value::Bool(false));
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], Value::Bool(false), "merged");
    let err = helm_template_fails(&["--set", "logFormat=logfmt"]);
    assert!(err.contains("logFormat"), "{err}");
}

#[test]
fn alerts_are_one_file_and_name_only_existing_metrics() {
    let doc = std::fs::read_to_string(format!("{ROOT}/docs/alerts.yaml")).expect("docs/alerts.yaml");
    let copy =
        std::fs::read_to_string(format!("{CHART}/files/alerts.yaml")).expect("chart files/alerts.yaml");
    assert!(doc == copy, "charts/machinist/files/alerts.yaml must equal docs/alerts.yaml: copy it");

    let rendered = objects(&helm_template(&["--set", "prometheusRule.enabled=true"]));
    let rule = one(&rendered, "PrometheusRule", "rel-machinist");
    let alerts: Value = serde_yaml::from_str(&doc).expect("docs/alerts.yaml parses");
    assert_eq!(rule["spec"]["groups"], alerts["groups"], "the PrometheusRule carries docs/alerts.yaml");

    let metrics_src = std::fs::read_to_string(format!("{ROOT}/src/metrics.rs")).expect("src/metrics.rs");
    let names = regex::Regex::new(r"machinist_[a-z_]+").expect("regex");
    let mut exprs = 0;
    for rule in alerts["groups"][0]["rules"].as_sequence().expect("rules") {
        let expr = rule["expr"].as_str().expect("expr");
        exprs += 1;
        for m in names.find_iter(expr) {
            let name = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| m.as_str().strip_suffix(s))
                .unwrap_or(m.as_str());
            assert!(metrics_src.contains(&format!("\"{name}\"")), "alert uses unknown metric {name}: {expr}");
        }
        assert!(rule["labels"]["severity"].is_string() && rule["annotations"]["summary"].is_string());
    }
    assert!(exprs >= 3, "watch stale, reconcile failures and ECS throttling at least");
    for needed in
        ["machinist_watch_consecutive_errors", "machinist_reconcile_total", "machinist_ecs_throttled_total"]
    {
        assert!(doc.contains(needed), "docs/alerts.yaml has no alert on {needed}");
    }
}

#[test]
fn hand_written_yaml_passes_yamllint() {
    // config/crd/scalerequest.yaml is generated (`machinist crd`), not hand-written.
    let config = "{extends: default, ignore: config/crd/scalerequest.yaml, rules: {line-length: {max: 120}, \
                  document-start: disable, comments: {min-spaces-from-content: 1}}}";
    run(Command::new(&tools().yamllint).args(["--strict", "-d", config]).current_dir(ROOT).args([
        "config",
        "docs/alerts.yaml",
        "charts/machinist/Chart.yaml",
        "charts/machinist/values.yaml",
        "charts/machinist/files",
    ]));
}

/// The ECS SDK operations the provider calls (`client.<operation>()` in src/provider/ecs), as IAM action
/// names.
fn ecs_calls() -> BTreeSet<String> {
    let call = regex::Regex::new(r"client\s*\.\s*([a-z_]+)\(\)").expect("regex");
    let mut calls = BTreeSet::new();
    let mut dirs = vec![PathBuf::from(format!("{ROOT}/src/provider/ecs"))];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for path in entries.map(|e| e.expect("dir entry").path()) {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if path.is_dir() && name != "tests" {
                dirs.push(path);
            } else if name.ends_with(".rs") && name != "tests.rs" {
                let src = std::fs::read_to_string(&path).expect("read source");
                for c in call.captures_iter(&src) {
                    let pascal: String = c[1].split('_').map(|w| w[..1].to_uppercase() + &w[1..]).collect();
                    calls.insert(format!("ecs:{pascal}"));
                }
            }
        }
    }
    calls
}

#[test]
fn iam_policy_grants_exactly_the_ecs_calls_machinist_makes() {
    let text = std::fs::read_to_string(format!("{ROOT}/docs/iam-policy.json")).expect("docs/iam-policy.json");
    let policy: serde_json::Value = serde_json::from_str(&text).expect("docs/iam-policy.json is JSON");
    assert_eq!(policy["Version"], "2012-10-17");
    let mut granted = BTreeSet::new();
    for statement in policy["Statement"].as_array().expect("Statement") {
        assert_eq!(statement["Effect"], "Allow");
        for action in statement["Action"].as_array().expect("Action") {
            granted.insert(action.as_str().expect("action").to_string());
        }
    }
    let calls = ecs_calls();
    let missing: Vec<_> = calls.difference(&granted).collect();
    assert!(missing.is_empty(), "docs/iam-policy.json lacks {missing:?}");
    // The poller is what makes the read calls: once it exists, nothing in the policy may go unused.
    if Path::new(&format!("{ROOT}/src/provider/ecs/poll.rs")).exists() {
        let unused: Vec<_> = granted.difference(&calls).collect();
        assert!(unused.is_empty(), "docs/iam-policy.json grants unused {unused:?}");
    }
}
