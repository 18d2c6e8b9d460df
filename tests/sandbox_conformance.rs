//! The sandbox against what any Kubernetes client expects of a cluster (issue 16): server-side apply that
//! takes the name from the URL, metadata-only requests, aggregated discovery, the objects every cluster has,
//! Events, the TokenRequest / ephemeral-container / CSR subresources, and CRD schemas in OpenAPI.

mod common;

#[path = "sandbox/conformance/apply.rs"]
mod apply;
#[path = "sandbox/conformance/cluster.rs"]
mod cluster;
#[path = "sandbox/conformance/discovery.rs"]
mod discovery;
#[path = "sandbox/conformance/events.rs"]
mod events;
#[path = "sandbox/conformance/metadata.rs"]
mod metadata;
#[path = "sandbox/conformance/openapi.rs"]
mod openapi;
#[path = "sandbox/conformance/subresources.rs"]
mod subresources;
