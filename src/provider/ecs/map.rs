//! ECS objects (SDK types) into machinist's served shapes, as API.md "Shapes" says for ecs.
//!
//! Pure functions: no I/O, no clock. SDK types stop here; the rest of machinist sees `cache::model` only.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_ecs::types::{HealthStatus, Tag};

use crate::cache::model::{Container, ControllerKind, ControllerRef, Labels, Machine, Resources};
use crate::cache::model::{Service, ServicePort};
use crate::cache::{ControllerRecord, Quantity, format_time};

/// The last segment of an ARN (`.../task/cluster/ID` → `ID`; `.../service/cluster/web` → `web`).
pub fn arn_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// Tags as labels; a tag without a value maps to `""`.
pub fn tags_to_labels(tags: &[Tag]) -> Labels {
    tags.iter()
        .filter_map(|t| t.key().map(|k| (k.to_string(), t.value().unwrap_or_default().to_string())))
        .collect()
}

/// `lastStatus` → the shared status vocabulary. Stopping tasks are `Running` while a container still
/// runs; a stopped task is `Succeeded` when every container that reported an exit code exited 0.
pub fn task_status(last_status: &str, containers: &[(Option<&str>, Option<i32>)]) -> &'static str {
    let exit_verdict = || {
        let codes: Vec<i32> = containers.iter().filter_map(|(_, code)| *code).collect();
        if codes.is_empty() {
            "Failed"
        } else if codes.iter().all(|c| *c == 0) {
            "Succeeded"
        } else {
            "Failed"
        }
    };
    match last_status {
        "PROVISIONING" | "PENDING" | "ACTIVATING" => "Pending",
        "RUNNING" => "Running",
        "DEACTIVATING" | "STOPPING" | "DEPROVISIONING"
            if containers.iter().any(|(s, _)| *s == Some("RUNNING")) =>
        {
            "Running"
        }
        "DEACTIVATING" | "STOPPING" | "DEPROVISIONING" => "Unknown",
        "STOPPED" | "DELETED" => exit_verdict(),
        _ => "Unknown",
    }
}

/// `ready` = RUNNING, no container UNHEALTHY, and: with a health check in the task definition
/// (`checked = Some(true)`), only HEALTHY; without one (`Some(false)`), RUNNING is enough (ECS then reports
/// `UNKNOWN`). When the definition could not be read (`None`), `UNKNOWN` is read as "no health check".
pub fn task_ready(
    last_status: &str,
    health: Option<&HealthStatus>,
    container_health: &[Option<&HealthStatus>],
    checked: Option<bool>,
) -> bool {
    if last_status != "RUNNING" {
        return false;
    }
    if container_health.iter().any(|h| matches!(h, Some(HealthStatus::Unhealthy))) {
        return false;
    }
    match checked {
        Some(true) => health.is_some_and(|h| h.as_str() == "HEALTHY"),
        Some(false) => health.is_none_or(|h| h.as_str() != "UNHEALTHY"),
        None => health.is_none_or(|h| matches!(h.as_str(), "HEALTHY" | "UNKNOWN")),
    }
}

/// ECS cpu (units, 1024 per vCPU, or `"1 vCPU"`) as a Kubernetes quantity: `256` → `250m`, `1024` → `1`.
/// Units that are not a whole number of millicores round up (`100` → `98m`).
pub fn cpu_quantity(cpu: &str) -> Option<String> {
    let cpu = cpu.trim();
    let units: u64 = if let Some(v) = cpu.strip_suffix("vCPU").or_else(|| cpu.strip_suffix("vcpu")) {
        let vcpu: f64 = v.trim().parse().ok()?;
        if !(vcpu.is_finite() && vcpu > 0.0) {
            return None;
        }
        (vcpu * 1024.0).round() as u64
    } else {
        cpu.parse().ok()?
    };
    if units == 0 {
        return None;
    }
    let millis = (units * 1000).div_ceil(1024);
    Some(if millis.is_multiple_of(1000) { format!("{}", millis / 1000) } else { format!("{millis}m") })
}

/// ECS memory (MiB, or `"1 GB"`) as a quantity: `512` → `512Mi`, `2048` → `2Gi`.
pub fn memory_quantity(memory: &str) -> Option<String> {
    let memory = memory.trim();
    let mib: u64 = if let Some(v) = memory.strip_suffix("GB").or_else(|| memory.strip_suffix("gb")) {
        let gb: f64 = v.trim().parse().ok()?;
        if !(gb.is_finite() && gb > 0.0) {
            return None;
        }
        (gb * 1024.0).round() as u64
    } else {
        memory.parse().ok()?
    };
    if mib == 0 {
        return None;
    }
    Quantity::parse(&format!("{mib}Mi")).map(Quantity::render)
}

fn time(dt: Option<&aws_sdk_ecs::primitives::DateTime>) -> Option<String> {
    let dt = dt?;
    let ts = jiff::Timestamp::new(dt.secs(), dt.subsec_nanos() as i32).ok()?;
    Some(format_time(ts))
}

/// The service that started a task, from `group` (`service:NAME`).
pub fn service_of_group(group: Option<&str>) -> Option<&str> {
    group?.strip_prefix("service:").filter(|n| !n.is_empty())
}

/// One ECS task as a Machine; `checked`: whether its task definition declares a health check (`None`:
/// not known).
pub fn task_to_machine(task: &aws_sdk_ecs::types::Task, checked: Option<bool>) -> Option<Machine> {
    let arn = task.task_arn()?;
    let last_status = task.last_status().unwrap_or("UNKNOWN");
    let pairs: Vec<(Option<&str>, Option<i32>)> =
        task.containers().iter().map(|c| (c.last_status(), c.exit_code())).collect();
    let container_health: Vec<Option<&HealthStatus>> =
        task.containers().iter().map(|c| c.health_status()).collect();
    let ready = task_ready(last_status, task.health_status(), &container_health, checked);
    let mut resources = Resources::default();
    if let Some(cpu) = task.cpu().and_then(cpu_quantity) {
        resources.limits.insert("cpu".into(), cpu.clone());
        resources.requests.insert("cpu".into(), cpu);
    }
    if let Some(mem) = task.memory().and_then(memory_quantity) {
        resources.limits.insert("memory".into(), mem.clone());
        resources.requests.insert("memory".into(), mem);
    }
    let containers: Vec<Container> = task
        .containers()
        .iter()
        .map(|c| Container {
            name: c.name().unwrap_or_default().to_string(),
            image: c.image().unwrap_or_default().to_string(),
            image_digest: c.image_digest().filter(|d| !d.is_empty()).map(String::from),
            ready: c.last_status() == Some("RUNNING")
                && !matches!(c.health_status(), Some(HealthStatus::Unhealthy)),
            restart_count: 0,
        })
        .collect();
    let controller = service_of_group(task.group()).map(|name| ControllerRef {
        name: name.to_string(),
        kind: ControllerKind::Service.as_str().to_string(),
        api_version: ControllerKind::Service.api_version().to_string(),
    });
    Some(Machine {
        id: arn_name(arn).to_string(),
        status: task_status(last_status, &pairs).to_string(),
        provider_status: Some(last_status.to_string()),
        ready,
        start_time: time(task.started_at()),
        image: containers.first().map(|c| c.image.clone()).unwrap_or_default(),
        image_digest: containers.first().and_then(|c| c.image_digest.clone()),
        labels: tags_to_labels(task.tags()),
        controller,
        resources,
        containers,
    })
}

/// One ECS service as a controller record (its machines attach by `Machine.controller`).
/// `readyReplicas` starts as ECS's `runningCount`; [`count_ready`] replaces it with the ready tasks.
pub fn service_to_controller(svc: &aws_sdk_ecs::types::Service) -> Option<ControllerRecord> {
    Some(ControllerRecord {
        kind: ControllerKind::Service,
        name: svc.service_name()?.to_string(),
        replicas: svc.desired_count(),
        ready_replicas: svc.running_count(),
        labels: tags_to_labels(svc.tags()),
        provider_metadata: BTreeMap::new(),
    })
}

/// `readyReplicas` = the service's tasks that are `ready`, so it agrees with its machines: ECS's
/// `runningCount` also counts RUNNING tasks that fail their health check.
pub fn count_ready(controllers: &mut [ControllerRecord], machines: &[Machine]) {
    let mut ready: HashMap<&str, i32> = HashMap::new();
    for m in machines.iter().filter(|m| m.ready) {
        if let Some(c) = &m.controller {
            *ready.entry(c.name.as_str()).or_default() += 1;
        }
    }
    for c in controllers {
        c.ready_replicas = ready.get(c.name.as_str()).copied().unwrap_or(0);
    }
}

/// The ports an ECS service exposes: its load balancers' container ports, then its service registries'
/// ports, in that order, without duplicates. A service with neither exposes no Service.
pub fn service_ports(svc: &aws_sdk_ecs::types::Service) -> Option<Service> {
    let mut ports: Vec<ServicePort> = Vec::new();
    let mut push = |name: Option<&str>, port: Option<i32>| {
        if let Some(port) = port.filter(|p| *p > 0)
            && !ports.iter().any(|p| p.port == port)
        {
            ports.push(ServicePort { name: name.map(String::from), port, protocol: "TCP".into() });
        }
    };
    for lb in svc.load_balancers() {
        push(lb.container_name(), lb.container_port());
    }
    for reg in svc.service_registries() {
        push(reg.container_name(), reg.port().or(reg.container_port()));
    }
    if ports.is_empty() {
        return None;
    }
    Some(Service { name: svc.service_name()?.to_string(), labels: tags_to_labels(svc.tags()), ports })
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::primitives::DateTime;
    use aws_sdk_ecs::types::{self as t, LoadBalancer, ServiceRegistry};

    use super::*;

    fn tag(k: &str, v: &str) -> Tag {
        Tag::builder().key(k).value(v).build()
    }

    fn task(last: &str) -> t::Task {
        t::Task::builder()
            .task_arn("arn:aws:ecs:us-east-1:1:task/demo/abc123")
            .last_status(last)
            .group("service:web")
            .cpu("256")
            .memory("512")
            .started_at(DateTime::from_secs_and_nanos(1_735_689_600, 123_456_789))
            .tags(tag("app", "web"))
            .containers(
                t::Container::builder()
                    .name("app")
                    .image("nginx:1.25")
                    .image_digest("sha256:abc")
                    .last_status(last)
                    .build(),
            )
            .containers(t::Container::builder().name("side").image("envoy:1").last_status(last).build())
            .build()
    }

    #[test]
    fn running_task_maps_to_the_api_shape() {
        let m = task_to_machine(&task("RUNNING"), None).expect("mapped");
        let json = serde_json::to_value(&m).expect("serializable");
        assert_eq!(
            json,
            serde_json::json!({
                "id": "abc123", "status": "Running", "providerStatus": "RUNNING", "ready": true,
                "startTime": "2025-01-01T00:00:00.123Z", "image": "nginx:1.25", "imageDigest": "sha256:abc",
                "labels": {"app": "web"},
                "controller": {"name": "web", "kind": "Service", "apiVersion": "ecs"},
                "resources": {"limits": {"cpu": "250m", "memory": "512Mi"},
                              "requests": {"cpu": "250m", "memory": "512Mi"}},
                "containers": [
                    {"name": "app", "image": "nginx:1.25", "imageDigest": "sha256:abc", "ready": true, "restartCount": 0},
                    {"name": "side", "image": "envoy:1", "ready": true, "restartCount": 0}
                ]
            })
        );
    }

    #[test]
    fn status_vocabulary() {
        let running = [(Some("RUNNING"), None)];
        let stopped_ok = [(Some("STOPPED"), Some(0)), (Some("STOPPED"), Some(0))];
        let stopped_bad = [(Some("STOPPED"), Some(0)), (Some("STOPPED"), Some(137))];
        for s in ["PROVISIONING", "PENDING", "ACTIVATING"] {
            assert_eq!(task_status(s, &[]), "Pending");
        }
        assert_eq!(task_status("RUNNING", &running), "Running");
        for s in ["DEACTIVATING", "STOPPING", "DEPROVISIONING"] {
            assert_eq!(task_status(s, &running), "Running");
            assert_eq!(task_status(s, &stopped_ok), "Unknown");
        }
        assert_eq!(task_status("STOPPED", &stopped_ok), "Succeeded");
        assert_eq!(task_status("STOPPED", &stopped_bad), "Failed");
        assert_eq!(task_status("STOPPED", &[(Some("STOPPED"), None)]), "Failed");
        assert_eq!(task_status("WHATEVER", &[]), "Unknown");
    }

    #[test]
    fn readiness_follows_health() {
        assert!(task_ready("RUNNING", None, &[], None));
        assert!(task_ready("RUNNING", Some(&HealthStatus::Healthy), &[], None));
        assert!(task_ready("RUNNING", Some(&HealthStatus::UnknownValue), &[None], None));
        assert!(!task_ready("RUNNING", Some(&HealthStatus::Unhealthy), &[], None));
        assert!(!task_ready(
            "RUNNING",
            Some(&HealthStatus::UnknownValue),
            &[Some(&HealthStatus::Unhealthy)],
            None
        ));
        assert!(!task_ready("PENDING", Some(&HealthStatus::Healthy), &[], None));
        // With the task definition known: a declared health check must report HEALTHY; without one,
        // RUNNING is ready (ECS reports UNKNOWN then).
        let unknown = Some(&HealthStatus::UnknownValue);
        assert!(!task_ready("RUNNING", unknown, &[None], Some(true)), "checked, not yet HEALTHY");
        assert!(task_ready("RUNNING", Some(&HealthStatus::Healthy), &[None], Some(true)));
        assert!(task_ready("RUNNING", unknown, &[None], Some(false)));
        assert!(!task_ready("RUNNING", Some(&HealthStatus::Unhealthy), &[None], Some(false)));
        let m = task_to_machine(&task("STOPPING"), None).expect("mapped");
        assert!(!m.ready);
        assert_eq!((m.status.as_str(), m.provider_status.as_deref()), ("Unknown", Some("STOPPING")));
    }

    #[test]
    fn cpu_and_memory_quantities() {
        assert_eq!(cpu_quantity("256").as_deref(), Some("250m"));
        assert_eq!(cpu_quantity("512").as_deref(), Some("500m"));
        assert_eq!(cpu_quantity("1024").as_deref(), Some("1"));
        assert_eq!(cpu_quantity("4096").as_deref(), Some("4"));
        assert_eq!(cpu_quantity("100").as_deref(), Some("98m"));
        assert_eq!(cpu_quantity("1 vCPU").as_deref(), Some("1"));
        assert_eq!(cpu_quantity("0.5 vCPU").as_deref(), Some("500m"));
        assert_eq!(cpu_quantity("0"), None);
        assert_eq!(cpu_quantity("lots"), None);
        assert_eq!(memory_quantity("512").as_deref(), Some("512Mi"));
        assert_eq!(memory_quantity("2048").as_deref(), Some("2Gi"));
        assert_eq!(memory_quantity("3 GB").as_deref(), Some("3Gi"));
        assert_eq!(memory_quantity("-1"), None);
    }

    #[test]
    fn controller_from_group_only_for_services() {
        assert_eq!(service_of_group(Some("service:web")), Some("web"));
        assert_eq!(service_of_group(Some("family:web")), None);
        assert_eq!(service_of_group(Some("service:")), None);
        assert_eq!(service_of_group(None), None);
        let bare = t::Task::builder().task_arn("arn:aws:ecs:r:1:task/c/x").last_status("RUNNING").build();
        let m = task_to_machine(&bare, None).expect("mapped");
        assert_eq!(m.controller, None);
        assert_eq!(m.start_time, None);
        assert!(m.labels.is_empty() && m.resources.limits.is_empty());
    }

    #[test]
    fn service_maps_to_controller_and_ports() {
        let svc = t::Service::builder()
            .service_name("web")
            .desired_count(3)
            .running_count(2)
            .tags(tag("team", "a"))
            .load_balancers(LoadBalancer::builder().container_name("app").container_port(8080).build())
            .service_registries(ServiceRegistry::builder().registry_arn("arn:sd").port(9090).build())
            .service_registries(
                ServiceRegistry::builder().registry_arn("arn:sd2").container_port(8080).build(),
            )
            .build();
        let mut c = service_to_controller(&svc).expect("mapped");
        assert_eq!((c.name.as_str(), c.replicas, c.ready_replicas), ("web", 3, 2));
        // ECS counts both RUNNING tasks; only the healthy one is ready.
        let healthy = task_to_machine(&task("RUNNING"), None).expect("mapped");
        let unhealthy = task_to_machine(
            &t::Task::builder()
                .health_status(HealthStatus::Unhealthy)
                .set_containers(task("RUNNING").containers.clone())
                .task_arn("arn:aws:ecs:us-east-1:1:task/demo/def456")
                .last_status("RUNNING")
                .group("service:web")
                .build(),
            None,
        )
        .expect("mapped");
        assert!(healthy.ready && !unhealthy.ready);
        count_ready(std::slice::from_mut(&mut c), &[healthy, unhealthy]);
        assert_eq!(c.ready_replicas, 1, "readyReplicas counts ready tasks, not runningCount");
        assert_eq!(c.kind, ControllerKind::Service);
        assert!(c.provider_metadata.is_empty());
        assert_eq!(c.labels.get("team").map(String::as_str), Some("a"));
        let s = service_ports(&svc).expect("has ports");
        let ports: Vec<i32> = s.ports.iter().map(|p| p.port).collect();
        assert_eq!(ports, vec![8080, 9090]);
        assert_eq!(s.ports[0].name.as_deref(), Some("app"));
        let bare = t::Service::builder().service_name("batch").build();
        assert_eq!(service_ports(&bare), None);
    }
}
