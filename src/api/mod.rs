//! The REST API of API.md: routes, extractors, problem+json errors, OpenAPI.
//!
//! It holds no kube `Client` and no AWS client: reads touch only a provider's cache through
//! `provider::ReadModel`, and the only await is a write through `provider::Writes`.
