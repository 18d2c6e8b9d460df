//! ECS writes: UpdateService(desiredCount), DeleteService(force), TagResource/UntagResource for labels,
//! each followed by a targeted refresh so the next read sees it (read-your-writes).
//!
//! It decides nothing about desired state (the reconciler does) and never retries: retrying belongs to
//! the caller.

use std::collections::BTreeMap;

use aws_sdk_ecs::types::Tag;

use super::Inner;
use super::error::EcsError;
use crate::metrics::metrics;
use crate::provider::{ProviderError, Result};

/// ECS allows at most 50 user tags per resource.
pub const MAX_TAGS: usize = 50;

/// `machinist_provider_writes_total{provider="ecs",op,result}`, labelled like the reconciler's.
pub(crate) fn record<T>(op: &str, result: &Result<T>) {
    let label = match result {
        Ok(_) => "success",
        Err(e) => e.label(),
    };
    metrics().writes.with_label_values(&["ecs", op, label]).inc();
}

/// Validate a label change against ECS's tag rules and the 50-tag limit, given the current labels.
pub fn validate_labels(
    current: &BTreeMap<String, String>,
    change: &BTreeMap<String, Option<String>>,
) -> Result<()> {
    for (key, value) in change {
        let field = format!("labels.{key}");
        if key.is_empty() || key.chars().count() > 128 {
            return Err(ProviderError::invalid(field, "a tag key must be 1 to 128 characters"));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(ProviderError::invalid(field, "tag keys starting with aws: are reserved by AWS"));
        }
        if value.as_ref().is_some_and(|v| v.chars().count() > 256) {
            return Err(ProviderError::invalid(field, "a tag value must be at most 256 characters"));
        }
        let allowed = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c);
        if !key.chars().all(allowed) || !value.as_deref().unwrap_or_default().chars().all(allowed) {
            return Err(ProviderError::invalid(
                field,
                "tags may contain letters, digits, spaces and _ . : / = + - @ only",
            ));
        }
    }
    let mut after: Vec<&String> = current.keys().filter(|k| !matches!(change.get(*k), Some(None))).collect();
    after.extend(change.iter().filter(|(k, v)| v.is_some() && !current.contains_key(*k)).map(|(k, _)| k));
    if after.len() > MAX_TAGS {
        return Err(ProviderError::invalid(
            "labels",
            format!("ECS allows at most {MAX_TAGS} tags per task; this change would leave {}", after.len()),
        ));
    }
    Ok(())
}

impl Inner {
    /// Set a service's desiredCount. Returns `(previous, new)`; `previous` is the cached desired count.
    pub(crate) async fn scale_service(
        &self,
        cluster: &str,
        service: &str,
        desired: i32,
    ) -> Result<(i32, i32)> {
        if desired < 0 {
            return Err(ProviderError::invalid("replicas", "must be an integer >= 0"));
        }
        let previous = self.cache.resolve_controller(cluster, service, None)?.replicas;
        let out = self
            .api
            .client
            .update_service()
            .cluster(cluster)
            .service(service)
            .desired_count(desired)
            .send()
            .await
            .map_err(|e| EcsError::from_sdk("UpdateService", e));
        let out = out.map_err(|e| match e {
            EcsError::NotFound(_) => {
                ProviderError::NotFound(format!("service {service} not found in cluster {cluster}"))
            }
            other => other.into(),
        })?;
        let new = out.service().map(|s| s.desired_count()).unwrap_or(desired);
        self.sync_service(cluster, service).await.map_err(ProviderError::from)?;
        Ok((previous, new))
    }

    /// DeleteService(force): the service scales to 0 and goes INACTIVE.
    pub(crate) async fn delete_service(&self, cluster: &str, service: &str) -> Result<()> {
        self.cache.resolve_controller(cluster, service, None)?;
        let out = self
            .api
            .client
            .delete_service()
            .cluster(cluster)
            .service(service)
            .force(true)
            .send()
            .await
            .map_err(|e| EcsError::from_sdk("DeleteService", e));
        let out = out.map_err(|e| match e {
            EcsError::NotFound(_) => {
                ProviderError::NotFound(format!("service {service} not found in cluster {cluster}"))
            }
            other => other.into(),
        });
        record("delete_controller", &out);
        out?;
        self.sync_cluster(cluster).await.map_err(ProviderError::from)
    }

    /// Merge labels into a task's tags (`None` removes a key), then refresh what the task belongs to.
    pub(crate) async fn patch_task_labels(
        &self,
        cluster: &str,
        id: &str,
        change: BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        let current = self.current_labels(cluster, id)?;
        validate_labels(&current, &change)?;
        let arn = self.task_arn(cluster, id).ok_or_else(|| not_found_task(cluster, id))?;
        let set: Vec<Tag> = change
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| Tag::builder().key(k).value(v).build()))
            .collect();
        let remove: Vec<String> = change
            .iter()
            .filter(|(k, v)| v.is_none() && current.contains_key(*k))
            .map(|(k, _)| k.clone())
            .collect();
        let map_err = |e: EcsError| match e {
            EcsError::NotFound(_) | EcsError::Invalid(_) => not_found_task(cluster, id),
            other => other.into(),
        };
        if !set.is_empty() {
            let out = self.api.client.tag_resource().resource_arn(&arn).set_tags(Some(set)).send().await;
            let out = out.map_err(|e| EcsError::from_sdk("TagResource", e)).map_err(map_err);
            record("patch_labels", &out);
            out?;
        }
        if !remove.is_empty() {
            let out =
                self.api.client.untag_resource().resource_arn(&arn).set_tag_keys(Some(remove)).send().await;
            let out = out.map_err(|e| EcsError::from_sdk("UntagResource", e)).map_err(map_err);
            record("patch_labels", &out);
            out?;
        }
        let controller = self.cache.machine(cluster, id).ok().and_then(|frag| {
            let m: crate::cache::model::Machine = serde_json::from_str(frag.get()).ok()?;
            m.controller.map(|c| c.name)
        });
        let synced = match controller {
            Some(service) => self.sync_service(cluster, &service).await,
            None => self.sync_cluster(cluster).await,
        };
        synced.map_err(ProviderError::from)
    }

    fn current_labels(&self, cluster: &str, id: &str) -> Result<BTreeMap<String, String>> {
        let frag = self.cache.machine(cluster, id)?;
        let machine: crate::cache::model::Machine = serde_json::from_str(frag.get())
            .map_err(|e| ProviderError::Upstream(format!("cached task {id} is unreadable: {e}")))?;
        Ok(machine.labels)
    }

    fn task_arn(&self, cluster: &str, id: &str) -> Option<String> {
        let known = self.known.lock().ok()?;
        known.get(cluster)?.get(id).map(|k| k.arn.clone())
    }
}

fn not_found_task(cluster: &str, id: &str) -> ProviderError {
    ProviderError::NotFound(format!("task {id} not found in cluster {cluster}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(n: usize) -> BTreeMap<String, String> {
        (0..n).map(|i| (format!("k{i}"), "v".to_string())).collect()
    }

    #[test]
    fn fifty_tags_are_allowed_fifty_one_are_not() {
        let add = |keys: std::ops::Range<usize>| -> BTreeMap<String, Option<String>> {
            keys.map(|i| (format!("k{i}"), Some("v".to_string()))).collect()
        };
        assert!(validate_labels(&labels(0), &add(0..50)).is_ok());
        let err = validate_labels(&labels(0), &add(0..51)).unwrap_err();
        assert!(matches!(err, ProviderError::Invalid { .. }), "{err:?}");
        assert!(err.to_string().contains("at most 50"));
        // Replacing an existing key does not add a tag; removing one makes room.
        assert!(validate_labels(&labels(50), &add(0..1)).is_ok());
        assert!(validate_labels(&labels(50), &add(50..51)).is_err());
        let mut swap = add(50..51);
        swap.insert("k0".into(), None);
        assert!(validate_labels(&labels(50), &swap).is_ok());
    }

    #[test]
    fn bad_tag_keys_and_values_are_rejected() {
        let one = |k: &str, v: Option<&str>| BTreeMap::from([(k.to_string(), v.map(String::from))]);
        assert!(validate_labels(&labels(0), &one("app", Some("web"))).is_ok());
        assert!(validate_labels(&labels(0), &one("", Some("x"))).is_err());
        assert!(validate_labels(&labels(0), &one("aws:owner", Some("x"))).is_err());
        assert!(validate_labels(&labels(0), &one(&"k".repeat(129), Some("x"))).is_err());
        assert!(validate_labels(&labels(0), &one("k", Some(&"v".repeat(257)))).is_err());
        assert!(validate_labels(&labels(0), &one("k", Some("semi;colon"))).is_err());
        assert!(validate_labels(&labels(0), &one("gone", None)).is_ok());
    }
}
