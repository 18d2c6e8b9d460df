//! The objects every cluster has before anyone writes: the `kubernetes` Service in `default`, the one Node
//! the simulated pods run on, an APIService per built-in group/version, and (kept up by a controller) a
//! `default` ServiceAccount in each namespace.
//!
//! It writes through the store like the apiserver's own bootstrap controllers do; it must not bypass
//! validation or hold state of its own.

use serde_json::{Value, json};

use super::registry::{Gvr, Registry};
use super::status::StatusError;
use super::store::Store;

/// The node every simulated pod runs on.
pub const NODE_NAME: &str = "sandbox-node";
/// The node's InternalIP (pods report it as `status.hostIP`).
pub const NODE_IP: &str = "10.0.0.10";
/// The `kubernetes` Service's ClusterIP: the first address of the service range, as kube-apiserver picks.
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

/// Creates what is missing (a `--state` file may have brought some back).
pub fn bootstrap(store: &Store) -> Result<(), StatusError> {
    ensure(store, &Gvr::services(), "default", kubernetes_service())?;
    ensure(store, &Gvr::nodes(), "", node())?;
    for svc in api_services(&Registry::builtin()) {
        ensure(store, &Gvr::apiservices(), "", svc)?;
    }
    for ns in store.list(&Gvr::namespaces(), None) {
        let name = ns.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        default_service_account(store, name)?;
    }
    Ok(())
}

/// The `default` ServiceAccount of a namespace, unless it exists or the namespace is going away.
pub fn default_service_account(store: &Store, ns: &str) -> Result<(), StatusError> {
    let Some(n) = store.get(&Gvr::namespaces(), "", ns) else { return Ok(()) };
    if n.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null())
        || store.get(&Gvr::serviceaccounts(), ns, "default").is_some()
    {
        return Ok(());
    }
    ensure(store, &Gvr::serviceaccounts(), ns, json!({"metadata": {"name": "default"}}))
}

fn ensure(store: &Store, gvr: &Gvr, ns: &str, obj: Value) -> Result<(), StatusError> {
    match store.create(gvr, ns, obj) {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

fn kubernetes_service() -> Value {
    json!({"metadata": {"name": "kubernetes",
            "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": KUBERNETES_SERVICE_IP, "clusterIPs": [KUBERNETES_SERVICE_IP],
            "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]},
        "status": {"loadBalancer": {}}})
}

fn node() -> Value {
    let capacity = json!({"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    let t = super::store::now();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": t, "lastTransitionTime": t})
    };
    json!({"metadata": {"name": NODE_NAME, "labels": {
            "kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "node-role.kubernetes.io/control-plane": ""}},
        "spec": {"podCIDR": "10.0.0.0/8", "podCIDRs": ["10.0.0.0/8"]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": NODE_IP}, {"type": "Hostname", "address": NODE_NAME}],
            "capacity": capacity, "allocatable": capacity,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "osImage": "machinist sandbox",
                "kernelVersion": "none", "containerRuntimeVersion": "none://0", "kubeletVersion": "v1.32.0",
                "kubeProxyVersion": "v1.32.0", "machineID": "sandbox", "systemUUID": "sandbox", "bootID": "sandbox"}}})
}

/// One APIService per built-in group/version, named `version.group` (`v1.` for the core group), all served
/// locally and Available, as kube-apiserver's autoregistration makes them.
fn api_services(reg: &Registry) -> Vec<Value> {
    let mut gvs: Vec<(String, String)> = vec![(String::new(), "v1".into())];
    for (g, vs) in reg.groups() {
        gvs.extend(vs.into_iter().map(|v| (g.clone(), v)));
    }
    let t = super::store::now();
    gvs.into_iter()
        .map(|(g, v)| {
            json!({"metadata": {"name": format!("{v}.{g}"), "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}},
                "spec": {"group": g, "version": v, "groupPriorityMinimum": 18000, "versionPriority": 15},
                "status": {"conditions": [{"type": "Available", "status": "True", "reason": "Local",
                    "message": "Local APIServices are always available", "lastTransitionTime": t}]}})
        })
        .collect()
}
