//! machinist: one REST API and one data shape over Kubernetes and AWS ECS workloads.
//!
//! Watchers and pollers feed an in-memory `cache`; `api` serves reads from it and sends writes through
//! `reconcile`, which applies them with a `provider`. `sandbox` is an embedded Kubernetes API server for
//! trying machinist and for its tests; it shares no code with the rest.

pub mod api;
pub mod app;
pub mod cache;
pub mod config;
pub mod metrics;
pub mod provider;
pub mod reconcile;
pub mod sandbox;
pub mod sandbox_cmd;
pub mod serve;
pub mod telemetry;
