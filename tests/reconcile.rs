//! The write path against the sandbox API server: real kube-rs clients, real watchers feeding the cache,
//! the reconciler, the ScaleRequest controller and the lease. Each test works in a fresh namespace.

mod common;

#[path = "reconcile/bed.rs"]
mod bed;
#[path = "reconcile/controller.rs"]
mod controller;
#[path = "reconcile/lease.rs"]
mod lease;
#[path = "reconcile/writes.rs"]
mod writes;
