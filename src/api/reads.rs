//! The GET routes of API.md: answered from a provider's cache, fragments copied into the body as they are.
//!
//! A read never awaits and never builds a shape: it checks the capability, asks `ReadModel`, and joins the
//! pre-serialized fragments. It must not parse or re-serialize them.

use axum::extract::State;
use axum::response::Response;

use crate::api::body;
use crate::api::extract::{ObjectPath, ReadQuery, ScopePath};
use crate::api::problem::{Problem, Problems};
use crate::api::respond::{array, fragment, json_body, json_bytes, push_array, require, wrapped};
use crate::api::state::ApiState;
use crate::cache::model::{Capabilities, ProviderInfo};
use crate::provider::Health;

/// One machine (k8s Pod / ecs Task).
#[utoipa::path(get, path = "/{provider}/machines/{scope}/{id}", tag = "machines",
    params(("provider" = String, Path, description = "k8s or ecs"),
           ("scope" = String, Path, description = "namespace (k8s) or cluster (ecs)"),
           ("id" = String, Path, description = "pod name or task id")),
    responses((status = 200, description = "The machine", body = crate::cache::model::Machine),
              Problems))]
pub async fn machine(path: ObjectPath) -> Result<Response, Problem> {
    require(&*path.provider, |c| c.machines, "machines")?;
    Ok(fragment(&path.provider.reads().machine(&path.scope, &path.name)?))
}

/// The machines of a scope; every `labels` pair must match.
#[utoipa::path(get, path = "/{provider}/machines/{scope}", tag = "machines",
    params(("provider" = String, Path, description = "k8s or ecs"),
           ("scope" = String, Path, description = "namespace (k8s) or cluster (ecs)"),
           ("labels" = Option<Vec<String>>, Query, description = "`key=value`, repeatable (`labels[]=` too); all must match")),
    responses((status = 200, description = "The machines", body = Vec<crate::cache::model::Machine>),
              Problems))]
pub async fn machines(path: ScopePath, query: ReadQuery) -> Result<Response, Problem> {
    require(&*path.provider, |c| c.machines, "machines")?;
    Ok(array(&path.provider.reads().machines(&path.scope, &query.labels)?))
}

/// The top-level controllers of a scope, or (`machineId`) the one owning a machine.
#[utoipa::path(get, path = "/{provider}/controllers/{scope}", tag = "controllers",
    params(("provider" = String, Path, description = "k8s or ecs"),
           ("scope" = String, Path, description = "namespace (k8s) or cluster (ecs)"),
           ("machineId" = Option<String>, Query, description = "only the top-level controller owning this machine")),
    responses((status = 200, description = "The controllers", body = body::ControllerList),
              Problems))]
pub async fn controllers(path: ScopePath, query: ReadQuery) -> Result<Response, Problem> {
    require(&*path.provider, |c| c.controllers, "controllers")?;
    let reads = path.provider.reads();
    let list = match &query.machine_id {
        Some(id) => reads.controller_of_machine(&path.scope, id)?,
        // The whole list is one shared buffer, rendered once per change of the scope.
        None => return Ok(json_body(reads.controller_list(&path.scope)?)),
    };
    let mut out = Vec::with_capacity(list.iter().map(|f| f.get().len() + 1).sum::<usize>() + 20);
    out.extend_from_slice(b"{\"controllers\":");
    push_array(&mut out, &list);
    out.push(b'}');
    Ok(json_bytes(out))
}

/// One controller with its machines; `kind`/`apiVersion` pin the kind on k8s.
#[utoipa::path(get, path = "/{provider}/controllers/{scope}/{name}", tag = "controllers",
    params(("provider" = String, Path, description = "k8s or ecs"),
           ("scope" = String, Path, description = "namespace (k8s) or cluster (ecs)"),
           ("name" = String, Path, description = "controller name"),
           ("kind" = Option<String>, Query, description = "k8s hint: Deployment, StatefulSet, ReplicaSet or ReplicationController; ignored on ecs"),
           ("apiVersion" = Option<String>, Query, description = "k8s hint, must match kind; ignored on ecs")),
    responses((status = 200, description = "The controller", body = body::ControllerEnvelope),
              Problems))]
pub async fn controller(path: ObjectPath, query: ReadQuery) -> Result<Response, Problem> {
    require(&*path.provider, |c| c.controllers, "controllers")?;
    let kind = query.kind_hint(path.provider.name())?;
    Ok(wrapped("controller", &path.provider.reads().controller(&path.scope, &path.name, kind)?))
}

/// The services of a scope; every `labels` pair must match.
#[utoipa::path(get, path = "/{provider}/services/{scope}", tag = "services",
    params(("provider" = String, Path, description = "k8s or ecs"),
           ("scope" = String, Path, description = "namespace (k8s) or cluster (ecs)"),
           ("labels" = Option<Vec<String>>, Query, description = "`key=value`, repeatable (`labels[]=` too); all must match")),
    responses((status = 200, description = "The services", body = Vec<crate::cache::model::Service>),
              Problems))]
pub async fn services(path: ScopePath, query: ReadQuery) -> Result<Response, Problem> {
    require(&*path.provider, |c| c.services, "services")?;
    Ok(array(&path.provider.reads().services(&path.scope, &query.labels)?))
}

/// The Gateway API Gateways of a namespace, trimmed.
#[utoipa::path(get, path = "/{provider}/gateway/gateways/{scope}", tag = "gateway",
    params(("provider" = String, Path, description = "k8s"),
           ("scope" = String, Path, description = "namespace")),
    responses((status = 200, description = "The gateways", body = Vec<body::KubeObject>),
              Problems))]
pub async fn gateways(path: ScopePath) -> Result<Response, Problem> {
    require(&*path.provider, |c| c.gateways, "Gateway API gateways")?;
    Ok(array(&path.provider.reads().gateways(&path.scope)?))
}

/// One HTTPRoute, live, with its `status`; 404 when absent.
#[utoipa::path(get, path = "/{provider}/gateway/httproutes/{scope}/{name}", tag = "gateway",
    params(("provider" = String, Path, description = "k8s"),
           ("scope" = String, Path, description = "namespace"),
           ("name" = String, Path, description = "HTTPRoute name")),
    responses((status = 200, description = "The HTTPRoute", body = body::KubeObject),
              Problems))]
pub async fn httproute(path: ObjectPath) -> Result<Response, Problem> {
    require(&*path.provider, |c| c.httproutes, "HTTPRoutes")?;
    Ok(fragment(&path.provider.reads().httproute(&path.scope, &path.name)?))
}

/// Every provider machinist knows, enabled or not.
#[utoipa::path(get, path = "/providers", tag = "providers",
    responses((status = 200, description = "The providers", body = Vec<ProviderInfo>)))]
pub async fn providers(State(state): State<ApiState>) -> axum::Json<Vec<ProviderInfo>> {
    let mut out: Vec<ProviderInfo> = state
        .providers
        .iter()
        .map(|p| ProviderInfo {
            name: p.name().to_string(),
            enabled: true,
            capabilities: p.capabilities(),
            health: p.health(),
        })
        .collect();
    for name in crate::api::target::KNOWN_PROVIDERS {
        if !out.iter().any(|p| p.name == name) {
            out.push(ProviderInfo {
                name: name.to_string(),
                enabled: false,
                capabilities: Capabilities {
                    machines: false,
                    controllers: false,
                    scale: false,
                    labels: false,
                    services: false,
                    apply: false,
                    gateways: false,
                    httproutes: false,
                    scale_requests: false,
                },
                health: Health { healthy: false, synced: false, reason: Some("not enabled".into()) },
            });
        }
    }
    axum::Json(out)
}
