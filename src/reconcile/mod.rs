//! The one write path: the ScaleRequest custom resource and REST writes enter a keyed queue (latest desired
//! state wins per target), a pure planner decides, and the executor applies it with a provider.
//!
//! It serves no HTTP and owns no cache: it reads the target from the provider's cache and writes through a
//! `provider::scale::Scaler`. Providers reach it only through `provider::scale::WriteQueue`, so the arrow
//! runs reconcile → provider, never back.
//!
//! Wiring (see `app.rs`): one [`run::Reconciler`] per process over `Scalers { k8s, ecs }`; REST scales call
//! `Reconciler::scale_within(Source::Rest, write_timeout, ..)` (504 with Retry-After past the deadline, the
//! write goes on); the ScaleRequest [`controller`] calls `scale_within(Source::Crd, 30 s, ..)` and runs only
//! while `provider::k8s::lease::Elector` says this replica leads (`controller::run_while_leader`).
//! A caller whose count is superseded while it waits in the queue gets the outcome of the newer count: every
//! write means "set N", and the newest N is what the target has when the answer is sent.

mod autoscalers;
pub mod controller;
pub mod crd;
pub mod plan;
pub mod queue;
pub mod run;
pub mod status;

pub use crd::{ScaleRequest, ScaleRequestSpec, ScaleRequestStatus, crd_yaml};
