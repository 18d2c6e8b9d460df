//! The in-memory cache every REST read is answered from: compact models, projection, indexes by scope,
//! label pair and controller, owner resolution, readiness.
//!
//! It does no I/O and knows no HTTP. Its apply/delete/reset are synchronous and never hold a lock across
//! an `.await`.

pub mod model;
