//! The REST API of API.md: the route table, the edge every API route goes through (classification, auth,
//! rate limits), extractors, problem+json errors, OpenAPI.
//!
//! It holds no kube `Client` and no AWS client: reads touch only a provider's cache through
//! `provider::ReadModel`, writes go through `provider::Writes`, and callers' tokens through
//! `provider::Reviewer`.

pub mod auth;
pub mod body;
pub mod extract;
pub mod health;
pub mod limits;
pub mod middleware;
pub mod names;
pub mod openapi;
pub mod problem;
pub mod reads;
pub mod respond;
pub mod routes;
pub mod state;
pub mod target;
pub mod writes;

#[cfg(test)]
mod tests;

pub use problem::Problem;
pub use routes::{openapi_json, router};
pub use state::ApiState;
