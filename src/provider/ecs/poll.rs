//! The ECS poller: per cluster, a full refresh (ListServices → DescribeServices ×10 → ListTasks →
//! DescribeTasks ×100, TAGS included, paginated) on the shared read budget, swapped into the cache at once;
//! a targeted refresh of one service and its tasks after our own writes; backoff on errors.
//!
//! It reads ECS and feeds the cache; it never writes to ECS and never answers a REST read.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_ecs::types::{DesiredStatus, ServiceField, TaskField};

use super::Inner;
use super::error::EcsError;
use super::map;
use crate::cache::model::{Machine, Service};
use crate::cache::{ControllerRecord, model::Labels};

/// ListServices / ListTasks page size (the API's maximum).
const LIST_PAGE: i32 = 100;
/// DescribeServices takes at most 10 services per call.
const DESCRIBE_SERVICES_BATCH: usize = 10;
/// DescribeTasks takes at most 100 tasks per call.
const DESCRIBE_TASKS_BATCH: usize = 100;

/// One cluster's state, as the cache wants it.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub controllers: Vec<ControllerRecord>,
    pub machines: Vec<Machine>,
    pub services: Vec<Service>,
}

/// What the poller remembers of a task between refreshes.
#[derive(Clone, Debug)]
pub(crate) struct KnownTask {
    pub arn: String,
    version: i64,
    last_status: String,
    labels: Labels,
    machine: Machine,
}

impl Inner {
    /// Every ARN of a paginated List call: `page(token)` sends one page request on the budget.
    async fn all_pages<F, Fut>(&self, mut page: F) -> Result<Vec<String>, EcsError>
    where
        F: FnMut(Option<String>) -> Fut,
        Fut: Future<Output = Result<(Vec<String>, Option<String>), EcsError>>,
    {
        let mut arns = Vec::new();
        let mut token: Option<String> = None;
        loop {
            self.budget.take().await;
            let (items, next) = page(token.take()).await?;
            arns.extend(items);
            match next {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(arns),
            }
        }
    }

    async fn list_service_arns(&self, cluster: &str) -> Result<Vec<String>, EcsError> {
        self.all_pages(|token| async move {
            let out = self
                .api
                .client
                .list_services()
                .cluster(cluster)
                .max_results(LIST_PAGE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| EcsError::from_sdk("ListServices", e))?;
            Ok((out.service_arns().to_vec(), out.next_token().map(String::from)))
        })
        .await
    }

    async fn describe_services(
        &self,
        cluster: &str,
        names: &[String],
    ) -> Result<Vec<aws_sdk_ecs::types::Service>, EcsError> {
        let mut services = Vec::with_capacity(names.len());
        for chunk in names.chunks(DESCRIBE_SERVICES_BATCH) {
            self.budget.take().await;
            let out = self
                .api
                .client
                .describe_services()
                .cluster(cluster)
                .set_services(Some(chunk.to_vec()))
                .include(ServiceField::Tags)
                .send()
                .await
                .map_err(|e| EcsError::from_sdk("DescribeServices", e))?;
            // A service deleted between List and Describe comes back as a MISSING failure: skip it.
            services.extend(out.services().iter().filter(|s| s.status() == Some("ACTIVE")).cloned());
        }
        Ok(services)
    }

    async fn list_task_arns(&self, cluster: &str, service: Option<&str>) -> Result<Vec<String>, EcsError> {
        self.all_pages(|token| async move {
            let out = self
                .api
                .client
                .list_tasks()
                .cluster(cluster)
                .set_service_name(service.map(String::from))
                .desired_status(DesiredStatus::Running)
                .max_results(LIST_PAGE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| EcsError::from_sdk("ListTasks", e))?;
            Ok((out.task_arns().to_vec(), out.next_token().map(String::from)))
        })
        .await
    }

    async fn describe_tasks(
        &self,
        cluster: &str,
        arns: &[String],
    ) -> Result<Vec<aws_sdk_ecs::types::Task>, EcsError> {
        let mut tasks = Vec::with_capacity(arns.len());
        for chunk in arns.chunks(DESCRIBE_TASKS_BATCH) {
            self.budget.take().await;
            let out = self
                .api
                .client
                .describe_tasks()
                .cluster(cluster)
                .set_tasks(Some(chunk.to_vec()))
                .include(TaskField::Tags)
                .send()
                .await
                .map_err(|e| EcsError::from_sdk("DescribeTasks", e))?;
            tasks.extend(out.tasks().iter().cloned());
        }
        Ok(tasks)
    }

    /// Map tasks to machines, reusing the previous projection of a task whose `version`, status and tags
    /// did not change; remembers the result (task id → ARN, for label writes).
    fn project_tasks(
        &self,
        cluster: &str,
        tasks: &[aws_sdk_ecs::types::Task],
        replace_all: bool,
    ) -> Vec<Machine> {
        let Ok(mut known) = self.known.lock() else { return Vec::new() };
        let previous = known.entry(cluster.to_string()).or_default();
        let mut next: HashMap<String, KnownTask> = HashMap::with_capacity(tasks.len());
        let mut machines = Vec::with_capacity(tasks.len());
        for task in tasks {
            let Some(arn) = task.task_arn() else { continue };
            let id = map::arn_name(arn).to_string();
            let last_status = task.last_status().unwrap_or_default();
            let labels = map::tags_to_labels(task.tags());
            let reusable = previous.get(&id).filter(|k| {
                k.version == task.version() && k.last_status == last_status && k.labels == labels
            });
            let machine = match reusable {
                Some(k) => k.machine.clone(),
                None => match map::task_to_machine(task) {
                    Some(m) => m,
                    None => continue,
                },
            };
            machines.push(machine.clone());
            next.insert(
                id,
                KnownTask {
                    arn: arn.to_string(),
                    version: task.version(),
                    last_status: last_status.to_string(),
                    labels,
                    machine,
                },
            );
        }
        if replace_all {
            *previous = next;
        } else {
            previous.extend(next);
        }
        machines
    }

    /// A full refresh of one cluster. Does not touch the cache.
    pub(crate) async fn refresh_cluster(&self, cluster: &str) -> Result<Snapshot, EcsError> {
        let service_arns = self.list_service_arns(cluster).await?;
        let services = self.describe_services(cluster, &service_arns).await?;
        let task_arns = self.list_task_arns(cluster, None).await?;
        let tasks = self.describe_tasks(cluster, &task_arns).await?;
        let machines = self.project_tasks(cluster, &tasks, true);
        let mut controllers: Vec<_> = services.iter().filter_map(map::service_to_controller).collect();
        map::count_ready(&mut controllers, &machines);
        Ok(Snapshot {
            controllers,
            services: services.iter().filter_map(map::service_ports).collect(),
            machines,
        })
    }

    /// Refresh a cluster into the cache, serialized with targeted refreshes of the same cluster so an
    /// older full snapshot never lands after a newer targeted one.
    pub(crate) async fn sync_cluster(&self, cluster: &str) -> Result<(), EcsError> {
        let lock = self.lock_of(cluster);
        let _guard = lock.lock().await;
        let result = self.refresh_cluster(cluster).await;
        match result {
            Ok(snap) => {
                self.cache.replace_scope(cluster, snap.controllers, snap.machines, snap.services);
                self.health_ok(cluster);
                Ok(())
            }
            Err(e) => {
                self.health_fail(cluster, &e);
                Err(e)
            }
        }
    }

    /// The targeted refresh after a write: DescribeServices + ListTasks(serviceName) + DescribeTasks of
    /// one service, upserted into the cache. A service that is gone triggers a full refresh instead
    /// (the cache has no single-controller removal).
    pub(crate) async fn sync_service(&self, cluster: &str, name: &str) -> Result<(), EcsError> {
        let lock = self.lock_of(cluster);
        let guard = lock.lock().await;
        let services = self.describe_services(cluster, &[name.to_string()]).await?;
        let Some(mut controller) = services.first().and_then(map::service_to_controller) else {
            drop(guard);
            return self.sync_cluster(cluster).await;
        };
        let task_arns = self.list_task_arns(cluster, Some(name)).await?;
        let tasks = self.describe_tasks(cluster, &task_arns).await?;
        let machines = self.project_tasks(cluster, &tasks, false);
        map::count_ready(std::slice::from_mut(&mut controller), &machines);
        self.cache.upsert_controller(cluster, controller, machines);
        Ok(())
    }

    /// The poll loop of one cluster: refresh, then sleep the interval, or back off after an error.
    pub(crate) async fn run_cluster(&self, cluster: String) {
        let mut failures: u32 = 0;
        loop {
            let pause = match self.sync_cluster(&cluster).await {
                Ok(()) => {
                    failures = 0;
                    self.interval
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(cluster = %cluster, error = %e, failures, "ECS refresh failed");
                    backoff(&e, failures, self.interval)
                }
            };
            tokio::time::sleep(pause).await;
        }
    }
}

/// How long to wait after the `failures`-th failed refresh in a row. Throttling and transient errors
/// back off exponentially from the interval (max 60 s) with ±50 % jitter so clusters do not retry in step;
/// refused credentials wait 12 intervals (1 s to 5 min): they rarely fix themselves within seconds.
pub(crate) fn backoff(error: &EcsError, failures: u32, interval: Duration) -> Duration {
    let base = match error {
        EcsError::Auth { .. } => (interval * 12).clamp(Duration::from_secs(1), Duration::from_secs(300)),
        _ => {
            let exp = 2u32.saturating_pow(failures.saturating_sub(1).min(6));
            (interval * exp).min(Duration::from_secs(60))
        }
    };
    base.mul_f64(0.5 + fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let throttled = EcsError::Throttled { operation: "ListTasks", message: String::new() };
        let interval = Duration::from_secs(5);
        for _ in 0..50 {
            let first = backoff(&throttled, 1, interval);
            assert!(first >= Duration::from_millis(2500) && first <= Duration::from_millis(7500));
            let third = backoff(&throttled, 3, interval);
            assert!(third >= Duration::from_secs(10) && third <= Duration::from_secs(30));
            assert!(backoff(&throttled, 40, interval) <= Duration::from_secs(90));
        }
        let auth =
            EcsError::Auth { operation: "ListServices", code: "AccessDenied".into(), message: String::new() };
        let wait = backoff(&auth, 1, interval);
        assert!(wait >= Duration::from_secs(30), "auth errors must not be retried quickly: {wait:?}");
        assert!(backoff(&auth, 1, Duration::from_millis(10)) >= Duration::from_millis(500));
    }
}
