//! The sandbox API server against real kube-rs 5 clients and raw HTTP: every request shape K8S-SANDBOX.md
//! records, plus the must-show behaviours of issue 3.

mod common;

#[path = "sandbox/bad_input.rs"]
mod bad_input;
#[path = "sandbox/crud.rs"]
mod crud;
#[path = "sandbox/hooks.rs"]
mod hooks;
#[path = "sandbox/kubectl_shapes.rs"]
mod kubectl_shapes;
#[path = "sandbox/watch.rs"]
mod watch;
#[path = "sandbox/writes.rs"]
mod writes;
