//! The ECS poller: per cluster, a full refresh (ListServices → DescribeServices ×10 → ListTasks →
//! DescribeTasks ×100, TAGS included, paginated; DescribeTaskDefinition once per new definition, for its
//! health check) on the cluster's fair share of the read budget, swapped into the cache at once; a targeted
//! refresh of one service and its tasks after our own writes; a retry every interval on errors.
//!
//! Ordering without waiting: a full refresh reads ECS without holding the cluster's lock (it holds it only
//! to swap the snapshot in), so a write's targeted refresh never queues behind a budget-paced full one. A
//! targeted refresh that started after a full one began is applied again once that full snapshot lands, so
//! the older snapshot cannot undo it.
//!
//! It reads ECS and feeds the cache; it never writes to ECS and never answers a REST read.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
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
    /// Whether its task definition declares a health check (`None`: not known).
    checked: Option<bool>,
    machine: Machine,
}

/// Whether a call waits for the cluster's share of the read budget: the poller's do; a write's follow-up
/// reads do not (they are bounded by the write rate, and must not queue behind the poller).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pace {
    Budget,
    Now,
}

impl Inner {
    async fn pace(&self, cluster: &str, pace: Pace) {
        if pace == Pace::Budget {
            self.budget.take(cluster).await;
        }
    }

    /// Every ARN of a paginated List call: `page(token)` sends one page request.
    async fn all_pages<F, Fut>(&self, cluster: &str, pace: Pace, mut page: F) -> Result<Vec<String>, EcsError>
    where
        F: FnMut(Option<String>) -> Fut,
        Fut: Future<Output = Result<(Vec<String>, Option<String>), EcsError>>,
    {
        let mut arns = Vec::new();
        let mut token: Option<String> = None;
        loop {
            self.pace(cluster, pace).await;
            let (items, next) = page(token.take()).await?;
            arns.extend(items);
            match next {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(arns),
            }
        }
    }

    async fn list_service_arns(&self, cluster: &str) -> Result<Vec<String>, EcsError> {
        self.all_pages(cluster, Pace::Budget, |token| async move {
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
        pace: Pace,
    ) -> Result<Vec<aws_sdk_ecs::types::Service>, EcsError> {
        let mut services = Vec::with_capacity(names.len());
        for chunk in names.chunks(DESCRIBE_SERVICES_BATCH) {
            self.pace(cluster, pace).await;
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

    async fn list_task_arns(
        &self,
        cluster: &str,
        service: Option<&str>,
        pace: Pace,
    ) -> Result<Vec<String>, EcsError> {
        self.all_pages(cluster, pace, |token| async move {
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
        pace: Pace,
    ) -> Result<Vec<aws_sdk_ecs::types::Task>, EcsError> {
        let mut tasks = Vec::with_capacity(arns.len());
        for chunk in arns.chunks(DESCRIBE_TASKS_BATCH) {
            self.pace(cluster, pace).await;
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

    /// Whether each task definition of `tasks` declares a container health check, looked up once per
    /// definition ARN (definitions are immutable) and remembered. A definition that cannot be read now is
    /// left out: its tasks are judged as before (UNKNOWN health counts as no check) until a later refresh.
    async fn health_checks(
        &self,
        cluster: &str,
        tasks: &[aws_sdk_ecs::types::Task],
        pace: Pace,
    ) -> HashMap<String, bool> {
        let wanted: std::collections::BTreeSet<&str> =
            tasks.iter().filter_map(|t| t.task_definition_arn()).collect();
        let missing: Vec<String> = {
            let Ok(known) = self.task_definitions.lock() else { return HashMap::new() };
            wanted.iter().filter(|arn| !known.contains_key(**arn)).map(|arn| arn.to_string()).collect()
        };
        for arn in missing {
            self.pace(cluster, pace).await;
            let out = self.api.client.describe_task_definition().task_definition(&arn).send().await;
            match out {
                Ok(out) => {
                    let checked = out.task_definition().is_some_and(|d| {
                        d.container_definitions().iter().any(|c| c.health_check().is_some())
                    });
                    if let Ok(mut known) = self.task_definitions.lock() {
                        known.insert(arn, checked);
                    }
                }
                Err(e) => {
                    let e = EcsError::from_sdk("DescribeTaskDefinition", e);
                    tracing::debug!(cluster, definition = %arn, error = %e, "task definition unreadable for now");
                }
            }
        }
        let Ok(known) = self.task_definitions.lock() else { return HashMap::new() };
        wanted.iter().filter_map(|arn| known.get(*arn).map(|c| (arn.to_string(), *c))).collect()
    }

    /// Map tasks to machines, reusing the previous projection of a task whose `version`, status and tags
    /// did not change; remembers the result (task id → ARN, for label writes).
    fn project_tasks(
        &self,
        cluster: &str,
        tasks: &[aws_sdk_ecs::types::Task],
        checks: &HashMap<String, bool>,
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
            let checked = task.task_definition_arn().and_then(|d| checks.get(d).copied());
            let reusable = previous.get(&id).filter(|k| {
                k.version == task.version()
                    && k.last_status == last_status
                    && k.labels == labels
                    && k.checked == checked
            });
            let machine = match reusable {
                Some(k) => k.machine.clone(),
                None => match map::task_to_machine(task, checked) {
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
                    checked,
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
        let services = self.describe_services(cluster, &service_arns, Pace::Budget).await?;
        let task_arns = self.list_task_arns(cluster, None, Pace::Budget).await?;
        let tasks = self.describe_tasks(cluster, &task_arns, Pace::Budget).await?;
        let checks = self.health_checks(cluster, &tasks, Pace::Budget).await;
        let machines = self.project_tasks(cluster, &tasks, &checks, true);
        let mut controllers: Vec<_> = services.iter().filter_map(map::service_to_controller).collect();
        map::count_ready(&mut controllers, &machines);
        Ok(Snapshot {
            controllers,
            services: services.iter().filter_map(map::service_ports).collect(),
            machines,
        })
    }

    /// Refresh a cluster into the cache. ECS is read without the cluster's lock; the swap takes it, and
    /// re-applies the targeted refreshes that started after this one did (they are newer).
    pub(crate) async fn sync_cluster(&self, cluster: &str) -> Result<(), EcsError> {
        let started = self.seq.fetch_add(1, Ordering::SeqCst);
        match self.refresh_cluster(cluster).await {
            Ok(snap) => {
                let lock = self.lock_of(cluster);
                let _guard = lock.lock().await;
                self.cache.replace_scope(cluster, snap.controllers, snap.machines, snap.services);
                let newer: Vec<(ControllerRecord, Vec<Machine>)> = match self.recent.lock() {
                    Ok(mut recent) => {
                        let mine = recent.entry(cluster.to_string()).or_default();
                        mine.retain(|_, (seq, _, _)| *seq > started);
                        mine.values().map(|(_, c, m)| (c.clone(), m.clone())).collect()
                    }
                    Err(_) => Vec::new(),
                };
                for (controller, machines) in newer {
                    self.cache.upsert_controller(cluster, controller, machines);
                }
                self.refresh_ok(cluster);
                Ok(())
            }
            // Never seen: the configured name is wrong (or the cluster not created yet). A cluster that was
            // there keeps its last snapshot and counts as failing, like any other error.
            Err(EcsError::NotFound(message)) if !self.ever_refreshed(cluster) => {
                self.cluster_missing(cluster, &message);
                Err(EcsError::NotFound(message))
            }
            Err(e) => {
                self.refresh_failed(cluster, &e);
                Err(e)
            }
        }
    }

    /// The targeted refresh after a write: DescribeServices + ListTasks(serviceName) + DescribeTasks of
    /// one service, upserted into the cache. It does not wait for the read budget nor for a full refresh
    /// in progress. A service that is gone triggers a full refresh instead (the cache has no
    /// single-controller removal).
    pub(crate) async fn sync_service(&self, cluster: &str, name: &str) -> Result<(), EcsError> {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        let services = self.describe_services(cluster, &[name.to_string()], Pace::Now).await?;
        let Some(mut controller) = services.first().and_then(map::service_to_controller) else {
            return self.sync_cluster(cluster).await;
        };
        let task_arns = self.list_task_arns(cluster, Some(name), Pace::Now).await?;
        let tasks = self.describe_tasks(cluster, &task_arns, Pace::Now).await?;
        let checks = self.health_checks(cluster, &tasks, Pace::Now).await;
        let machines = self.project_tasks(cluster, &tasks, &checks, false);
        map::count_ready(std::slice::from_mut(&mut controller), &machines);
        let lock = self.lock_of(cluster);
        let _guard = lock.lock().await;
        if let Ok(mut recent) = self.recent.lock() {
            let mine = recent.entry(cluster.to_string()).or_default();
            // An older targeted refresh of the same service that finished later must not win either.
            if mine.get(name).is_some_and(|(newer, _, _)| *newer > seq) {
                return Ok(());
            }
            mine.insert(name.to_string(), (seq, controller.clone(), machines.clone()));
        }
        self.cache.upsert_controller(cluster, controller, machines);
        Ok(())
    }

    /// The poll loop of one cluster: refresh, then sleep the interval; after an error, try again within
    /// one interval (see [`backoff`]).
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
                    // A missing cluster was said once, as an error, by `cluster_missing`.
                    if !matches!(e, EcsError::NotFound(_)) || self.ever_refreshed(&cluster) {
                        tracing::warn!(cluster = %cluster, error = %e, failures, "ECS refresh failed");
                    }
                    backoff(&e, failures, self.interval)
                }
            };
            tokio::time::sleep(pause).await;
        }
    }
}

/// How long to wait after the `failures`-th failed refresh in a row. Throttling and transient errors are
/// retried within one interval (75 % to 100 % of it, jittered so clusters do not retry in step): a failing
/// refresh stops at its first failed call, so retrying at the poll pace costs no more than polling does,
/// and the cache catches up within one interval once ECS answers again. Refused credentials wait 12
/// intervals (1 s to 5 min): they rarely fix themselves within seconds.
pub(crate) fn backoff(error: &EcsError, _failures: u32, interval: Duration) -> Duration {
    match error {
        EcsError::Auth { .. } => (interval * 12)
            .clamp(Duration::from_secs(1), Duration::from_secs(300))
            .mul_f64(0.5 + fastrand::f64()),
        _ => interval.mul_f64(0.75 + 0.25 * fastrand::f64()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_retried_within_one_interval_and_refused_credentials_much_later() {
        let throttled = EcsError::Throttled { operation: "ListTasks", message: String::new() };
        let interval = Duration::from_secs(5);
        for failures in [1, 3, 40] {
            let wait = backoff(&throttled, failures, interval);
            assert!(wait >= Duration::from_millis(3750) && wait <= interval, "{wait:?}");
        }
        let auth =
            EcsError::Auth { operation: "ListServices", code: "AccessDenied".into(), message: String::new() };
        let wait = backoff(&auth, 1, interval);
        assert!(wait >= Duration::from_secs(30), "auth errors must not be retried quickly: {wait:?}");
        assert!(backoff(&auth, 1, Duration::from_millis(10)) >= Duration::from_millis(500));
    }
}
