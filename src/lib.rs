//! machinist: one REST API and one data shape over Kubernetes and AWS ECS workloads.
//!
//! Watchers and pollers feed an in-memory `cache`; `api` serves reads from it and sends writes through
//! `reconcile`, which applies them with a `provider`; `app` assembles them (`app::OperatorBuilder`).
//! Imports point one way: api → (provider traits, cache reads) → cache; reconcile → provider.
//!
//! The embedded Kubernetes API server the tests and `machinist sandbox` run against is another crate,
//! `machinist-sandbox` (sandbox/), which this one never depends on.

pub mod api;
pub mod app;
pub mod cache;
pub mod config;
pub mod metrics;
pub mod provider;
pub mod reconcile;
pub mod serve;
pub mod telemetry;
