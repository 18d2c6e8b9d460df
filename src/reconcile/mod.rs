//! The one write path: the ScaleRequest custom resource and REST writes enter a keyed queue (latest desired
//! state wins per target), a pure planner decides, and the executor applies it with a provider.
//!
//! It serves no HTTP and owns no cache: it reads the target from the provider's cache and writes through a
//! [`run::Scaler`].

pub mod controller;
pub mod crd;
pub mod plan;
pub mod queue;
pub mod run;

pub use crd::{ScaleRequest, ScaleRequestSpec, ScaleRequestStatus, crd_yaml};
