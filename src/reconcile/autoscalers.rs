//! HorizontalPodAutoscaler lookups for the `ConflictingAutoscaler` condition of a ScaleRequest: which HPA,
//! if any, also scales a target.
//!
//! It only lists HPAs (one list per namespace at a time); it never writes and decides nothing: the
//! controller reports what it finds, and applies the request regardless.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, Shared};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use crate::cache::model::ControllerKind;

/// The (kind, target name, HPA name) of each HorizontalPodAutoscaler of a namespace; `None` when the API
/// server has no autoscaling/v2 (or this replica may not list it).
type Autoscalers = Option<Arc<Vec<(String, String, String)>>>;

/// One HPA list per namespace at a time: reconciles that need it while a list is in flight share its
/// answer. A burst of requests in one namespace would otherwise list the namespace's HPAs once per request.
/// A shared answer is at most one list round trip older than the request that joins it.
pub struct AutoscalerLists {
    client: Client,
    in_flight: Mutex<HashMap<String, Shared<BoxFuture<'static, Autoscalers>>>>,
}

impl AutoscalerLists {
    pub fn new(client: Client) -> AutoscalerLists {
        AutoscalerLists { client, in_flight: Mutex::new(HashMap::new()) }
    }

    /// An HPA whose `scaleTargetRef` names the target, as the `ConflictingAutoscaler` condition reports it.
    pub async fn conflicting(&self, ns: &str, kind: ControllerKind, name: &str) -> Option<String> {
        // An API server without autoscaling/v2 (or without the right to list it) has no autoscaler we can see.
        let hpas = self.get(ns).await?;
        hpas.iter().find(|(k, n, _)| k == kind.as_str() && n == name).map(|(_, _, hpa)| hpa.clone())
    }

    async fn get(&self, ns: &str) -> Autoscalers {
        let shared = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            in_flight
                .entry(ns.to_string())
                .or_insert_with(|| {
                    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(self.client.clone(), ns);
                    futures::FutureExt::shared(futures::FutureExt::boxed(async move {
                        let list = api.list(&ListParams::default()).await.ok()?;
                        let found = list.items.into_iter().map(|hpa| {
                            let target = &hpa.spec.scale_target_ref;
                            (target.kind.clone(), target.name.clone(), hpa.name_any())
                        });
                        Some(Arc::new(found.collect()))
                    }))
                })
                .clone()
        };
        let answer = shared.clone().await;
        // The first waiter to finish retires the list, so the next request lists again.
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if in_flight.get(ns).is_some_and(|f| f.ptr_eq(&shared)) {
            in_flight.remove(ns);
        }
        answer
    }
}
